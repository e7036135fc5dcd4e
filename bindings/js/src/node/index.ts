/**
 * gatewire for Node: everything the browser-safe entry point has, plus the
 * Node transports — TCP and Unix sockets (`node:net`), WebSocket client and
 * server (the `ws` package) — a `connect` that dials every scheme, and
 * {@link serve}.
 *
 * ```ts
 * import { connect, serve, Router } from 'gatewire/node';
 * const server = await serve(['unix:///run/gw/gw.sock', 'ws://127.0.0.1:8080/rpc'], router);
 * const conn = await connect('tcp://127.0.0.1:4000', { router: callbacks });
 * ```
 *
 * @module
 */

import { parseEndpoint } from '../endpoint.js';
import { connect as connectWith, type Connection, type ConnectOptions, type DialOptions } from '../peer.js';
import { ConfigError } from '../rpc-errors.js';
import type { Transport } from '../transport.js';
import { connectTcp, connectUnix } from './net.js';
import { connectWebSocket } from './ws.js';

export * from '../index.js';
export {
  checkSocketPath,
  connectTcp,
  connectUnix,
  prepareUnixPath,
  SocketTransport,
  SUN_PATH_LEN,
  type SocketDialOptions,
} from './net.js';
export { connectWebSocket, NodeWebSocketTransport, type NodeWebSocketDialOptions } from './ws.js';
export { serve, Server, type ServeOptions } from './server.js';

/** Options of Node's {@link connect}. */
export interface NodeConnectOptions extends ConnectOptions {
  /** WebSocket: an `Origin` header to send. */
  origin?: string | undefined;
}

/** Dials `tcp://`, `unix://`, `ws://` and `wss://` URLs with the Node transports. */
export function nodeDialer(extra: { origin?: string | undefined } = {}): (url: string, o: DialOptions) => Promise<Transport> {
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
      case 'ws':
      case 'wss':
        return connectWebSocket(url, { ...o, origin: extra.origin });
      default:
        return Promise.reject(new ConfigError(`${e.scheme}:// endpoints are not supported by this package yet`));
    }
  };
}

/**
 * Connects to `target` — `tcp://host:port`, `unix:///path.sock`,
 * `ws://host:port/path`, `wss://...`, or an established transport — and
 * completes the handshake.
 */
export function connect(target: string | Transport, options: NodeConnectOptions = {}): Promise<Connection> {
  const { origin, ...rest } = options;
  return connectWith(target, { ...rest, dialer: rest.dialer ?? nodeDialer({ origin }) });
}
