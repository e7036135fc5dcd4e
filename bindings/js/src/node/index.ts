/**
 * gatewire for Node: everything the browser-safe entry point has, plus the
 * Node transports — TCP and Unix sockets (`node:net`), TLS (`node:tls`),
 * WebSocket client and server (the `ws` package, over `node:https` for
 * `wss://`) — a `connect` that dials every scheme, {@link serve}, and
 * handshake authentication (`TokenAuthenticator`, `MtlsAuthenticator`).
 *
 * ```ts
 * import { connect, serve, Router, TokenAuthenticator } from 'gatewire/node';
 * const server = await serve(['unix:///run/gw/gw.sock', 'tls://0.0.0.0:4443'], router, {
 *   tls: { certFile: 'server.pem', keyFile: 'server.key' },
 *   authenticator: new TokenAuthenticator().sha256Hex('desktop', DESKTOP_TOKEN_SHA256),
 * });
 * const conn = await connect('tls://gateway.internal:4443', { auth: token, tls: { caFile: 'ca.pem' } });
 * ```
 *
 * @module
 */

import { parseEndpoint } from '../endpoint.js';
import { connect as connectWith, type Connection, type ConnectOptions, type DialOptions } from '../peer.js';
import { ConfigError } from '../rpc-errors.js';
import type { Transport } from '../transport.js';
import { connectTcp, connectTls, connectUnix } from './net.js';
import type { TlsClientOptions } from './tls.js';
import { connectWebSocket } from './ws.js';

export * from '../index.js';
export {
  AnyAuthenticator,
  identityOf,
  MtlsAuthenticator,
  TokenAuthenticator,
  type AuthMethod,
  type Authenticator,
  type Authorizer,
  type Identity,
} from './auth.js';
export {
  checkSocketPath,
  connectTcp,
  connectTls,
  connectUnix,
  prepareUnixPath,
  SocketTransport,
  SUN_PATH_LEN,
  type SocketDialOptions,
} from './net.js';
export { connectWebSocket, NodeWebSocketTransport, type NodeWebSocketDialOptions } from './ws.js';
export { serve, Server, type ServeOptions } from './server.js';
export {
  ALPN,
  ALPN_HTTP11,
  AlpnError,
  CertificateVerifyError,
  certificateHasName,
  HostnameMismatchError,
  MIN_VERSION,
  TlsError,
  tlsInfoOf,
  type NodeTransportInfo,
  type PeerCertificate,
  type Pem,
  type TlsClientOptions,
  type TlsInfo,
  type TlsServerOptions,
} from './tls.js';

/** Options of Node's {@link connect}. */
export interface NodeConnectOptions extends ConnectOptions {
  /** WebSocket: an `Origin` header to send. */
  origin?: string | undefined;
  /** `tls://` and `wss://`: trust anchors, client certificate and server name (default: Node's roots, the URL's host). */
  tls?: TlsClientOptions | undefined;
}

/** Dials `tcp://`, `unix://`, `tls://`, `ws://` and `wss://` URLs with the Node transports. */
export function nodeDialer(
  extra: { origin?: string | undefined; tls?: TlsClientOptions | undefined } = {},
): (url: string, o: DialOptions) => Promise<Transport> {
  return (url, o) => {
    let e;
    try {
      e = parseEndpoint(url);
    } catch (err) {
      return Promise.reject(new ConfigError(err instanceof Error ? err.message : String(err), err));
    }
    switch (e.scheme) {
      case 'tcp':
        return connectTcp(e.host, e.port, o);
      case 'unix':
        return connectUnix(e.path, o);
      case 'tls':
        return connectTls(e.host, e.port, { ...o, tls: extra.tls });
      case 'ws':
      case 'wss':
        return connectWebSocket(url, { ...o, origin: extra.origin, tls: extra.tls });
    }
  };
}

/**
 * Connects to `target` — `tcp://host:port`, `unix:///path.sock`,
 * `tls://host:port`, `ws://host:port/path`, `wss://...`, or an established
 * transport — and completes the handshake.
 *
 * @throws {CertificateVerifyError} the server's certificate did not verify ({@link HostnameMismatchError}: not for this name).
 * @throws {TlsError} another TLS failure ({@link AlpnError}: the server does not speak gatewire over TLS).
 * @throws {ConnectionClosedError} the handshake failed; a server refusing our `auth` answers `UNAUTHENTICATED` (`wireCode`).
 */
export function connect(target: string | Transport, options: NodeConnectOptions = {}): Promise<Connection> {
  const { origin, tls, ...rest } = options;
  return connectWith(target, { ...rest, dialer: rest.dialer ?? nodeDialer({ origin, tls }) });
}
