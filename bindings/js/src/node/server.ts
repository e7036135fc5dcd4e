/**
 * A Node server: listeners on one or more endpoint URLs (`tcp://`,
 * `unix://`, `ws://`, and with the `tls` option `tls://` and `wss://`), a
 * connection per client, each served by one router.
 *
 * ```ts
 * import { serve, Router } from 'gatewire/node';
 * const server = await serve(['tcp://127.0.0.1:0', 'ws://127.0.0.1:0/rpc'], new Router().unary(1, (_c, m) => m));
 * console.log(server.endpoints); // the real ports
 * await server.close();          // stop accepting, close every connection gracefully
 * ```
 *
 * WebSocket listeners refuse, before any upgrade: a path other than the
 * listener's (404), a client that does not offer `gatewire.v1` (400), more
 * than one `Origin` header (400) and, when `wsOrigins` is set, a present
 * `Origin` not in it (403; a missing `Origin` means a non-browser client and
 * is let through). Plain HTTP requests get 426. Unix listeners bind as the
 * Rust runtime does ({@link prepareUnixPath}), set the socket's mode to
 * `0600` and remove the file on close.
 *
 * TLS listeners (`./tls.ts`) must finish the TLS handshake within the
 * handshake timeout; a client that fails it (bad certificate, plaintext, no
 * ALPN `gatewire/1` on `tls://`) is dropped before any gatewire frame is
 * read. With `authenticator`, each client's HELLO is checked and handlers
 * read its identity with `identityOf(ctx.connection)` (`./auth.ts`).
 *
 * @module
 */

import { chmodSync, statSync, unlinkSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';

import WebSocket, { WebSocketServer } from 'ws';

import { formatEndpoint, parseEndpoint, type Endpoint } from '../endpoint.js';
import { HEADER_LEN } from '../frame.js';
import { acceptConnection, type AcceptOptions, type Connection } from '../peer.js';
import type { Router } from '../router.js';
import { ConfigError } from '../rpc-errors.js';
import { ErrorCode } from '../wire.js';
import type { Transport } from '../transport.js';
import { authenticateHook, authorizeHook, type Authenticator, type Authorizer } from './auth.js';
import { adoptBlockReads, prepareUnixPath, SocketTransport } from './net.js';
import { acceptsPeer, ALPN, ALPN_HTTP11, serverTlsOptions, sessionInfo, type TlsServerOptions } from './tls.js';
import { NodeWebSocketTransport, SUBPROTOCOL } from './ws.js';

/** Options of {@link serve}. */
export interface ServeOptions extends Omit<AcceptOptions, 'router'> {
  /** Connections kept at once (default 10,000); more are closed as they arrive. */
  maxConnections?: number | undefined;
  /** WebSocket `Origin` allowlist, compared byte for byte; default empty (any). */
  wsOrigins?: readonly string[] | undefined;
  /** Certificate, key and client-certificate policy of the `tls://` and `wss://` listeners (required to bind them). */
  tls?: TlsServerOptions | undefined;
  /**
   * Decides from each client's HELLO whether to accept it, and who it is
   * (`TokenAuthenticator`, `MtlsAuthenticator`...). Not together with `authenticate`.
   */
  authenticator?: Authenticator | undefined;
  /**
   * Decides whether each call or stream a client opens may run, from the
   * client's identity and the method, before the method is looked up.
   * Calls from an identity that has expired are refused with
   * `UNAUTHENTICATED` whether or not this is given. Not together with
   * `authorize`.
   */
  authorizer?: Authorizer | undefined;
}

interface Listener {
  readonly endpoint: string;
  close(): Promise<void>;
}

/** Stops listening (connections already accepted are not waited for). */
function closeServer(server: net.Server): Promise<void> {
  if (server.listening) {
    server.close();
  }
  return Promise.resolve();
}

function listen(server: net.Server, target: { host: string; port: number } | { path: string }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: Error): void => reject(e);
    server.once('error', onError);
    const done = (): void => {
      server.off('error', onError);
      resolve();
    };
    if ('path' in target) {
      server.listen(target.path, done);
    } else {
      server.listen(target.port, target.host, done);
    }
  });
}

function boundPort(server: net.Server): number {
  const a = server.address();
  return typeof a === 'object' && a !== null ? a.port : 0;
}

function refuse(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** A running server. */
export class Server {
  /** The endpoints actually bound (with the real port for `:0`), in the order given. */
  readonly endpoints: readonly string[];
  readonly #listeners: Listener[];
  readonly #connections: Set<Connection>;
  readonly #stopAccepting: () => void;

  /** @internal */
  constructor(listeners: Listener[], connections: Set<Connection>, stopAccepting: () => void) {
    this.#listeners = listeners;
    this.#connections = connections;
    this.#stopAccepting = stopAccepting;
    this.endpoints = listeners.map((l) => l.endpoint);
  }

  /** The open connections. */
  connections(): Connection[] {
    return [...this.#connections].filter((c) => !c.isClosed);
  }

  /** Stops accepting; open connections stay. */
  async stop(): Promise<void> {
    this.#stopAccepting();
    await Promise.all(this.#listeners.map((l) => l.close()));
  }

  /**
   * Stops accepting and closes every connection gracefully (calls in
   * flight finish within the drain timeout); resolves when all are closed.
   */
  async close(): Promise<void> {
    const stopped = this.stop();
    await Promise.all([...this.#connections].map((c) => c.close()));
    await stopped;
  }

  /** Stops accepting and closes every connection at once. */
  async abort(): Promise<void> {
    const stopped = this.stop();
    for (const c of this.#connections) {
      c.abort();
    }
    await Promise.all([...this.#connections].map((c) => c.closed));
    await stopped;
  }
}

/**
 * Listens on every URL in `urls` and serves each client with `router`.
 * Resolves once all are bound.
 *
 * @throws {ConfigError} for a bad or unsupported URL, or a bind failure
 *   (listeners already bound are closed).
 */
export async function serve(urls: string | readonly string[], router: Router, options: ServeOptions = {}): Promise<Server> {
  const list = typeof urls === 'string' ? [urls] : [...urls];
  if (options.compression === true) {
    throw new ConfigError(
      'zstd compression is not supported by the TypeScript package: no browser has a zstd decoder with capped output',
    );
  }
  const endpoints: Endpoint[] = list.map((u) => {
    try {
      return parseEndpoint(u);
    } catch (e) {
      throw new ConfigError(e instanceof Error ? e.message : String(e), e);
    }
  });
  const maxConnections = options.maxConnections ?? 10_000;
  const connections = new Set<Connection>();
  /** Transports still in their handshake. */
  const handshaking = new Set<Transport>();
  let accepting = true;
  let live = 0;
  const { maxConnections: _m, wsOrigins: _o, tls: tlsOptions, authenticator, authorizer, ...connectionOptions } = options;
  if (authenticator !== undefined) {
    if (connectionOptions.authenticate !== undefined) {
      throw new ConfigError('give either authenticator or authenticate, not both');
    }
    connectionOptions.authenticate = authenticateHook(authenticator);
  }
  if (authenticator !== undefined || authorizer !== undefined) {
    if (connectionOptions.authorize !== undefined) {
      throw new ConfigError('give either authorizer or authorize, not both');
    }
    connectionOptions.authorize = authorizeHook(authorizer);
  }
  const accept = (transport: Transport): void => {
    if (!accepting || live >= maxConnections) {
      transport.abort();
      return;
    }
    live += 1;
    handshaking.add(transport);
    acceptConnection(transport, { ...connectionOptions, router }).then(
      (conn) => {
        handshaking.delete(transport);
        if (!accepting) {
          conn.abort(ErrorCode.UNAVAILABLE, 'server shutting down');
        }
        connections.add(conn);
        void conn.closed.then(() => {
          connections.delete(conn);
          live -= 1;
        });
      },
      () => {
        handshaking.delete(transport);
        live -= 1;
      },
    );
  };
  const maxFrame = options.limits?.maxFrame ?? 1 << 20;
  const handshakeMs = options.timeouts?.handshake ?? 10_000;
  const listeners: Listener[] = [];
  try {
    for (const e of endpoints) {
      listeners.push(await bind(e, accept, { maxFrame, handshakeMs, origins: options.wsOrigins ?? [], tls: tlsOptions }));
    }
  } catch (e) {
    await Promise.all(listeners.map((l) => l.close()));
    throw e instanceof ConfigError ? e : new ConfigError(e instanceof Error ? e.message : String(e), e);
  }
  return new Server(listeners, connections, () => {
    accepting = false;
    for (const t of handshaking) {
      t.abort();
    }
  });
}

interface BindOptions {
  maxFrame: number;
  handshakeMs: number;
  origins: readonly string[];
  tls: TlsServerOptions | undefined;
}

/** The TLS options of a `scheme` listener. */
function listenerTls(scheme: 'tls' | 'wss', o: BindOptions): tls.TlsOptions {
  if (o.tls === undefined) {
    throw new ConfigError(`${scheme}:// endpoints need a TLS configuration (the tls option)`);
  }
  return serverTlsOptions(o.tls, scheme === 'tls' ? ALPN : ALPN_HTTP11, o.handshakeMs);
}

function remote(socket: net.Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
}

async function bind(e: Endpoint, accept: (t: Transport) => void, o: BindOptions): Promise<Listener> {
  switch (e.scheme) {
    case 'tcp': {
      // Paused until the transport has set the socket to read into pooled blocks.
      const server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
        const address = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
        accept(new SocketTransport(socket, address, undefined, adoptBlockReads(socket)));
      });
      await listen(server, { host: e.host, port: e.port });
      const endpoint = formatEndpoint({ scheme: 'tcp', host: e.host, port: boundPort(server) });
      return { endpoint, close: () => closeServer(server) };
    }
    case 'unix': {
      const path = e.path;
      await prepareUnixPath(path);
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
        accept(new SocketTransport(socket, path, undefined, adoptBlockReads(socket)));
      });
      await listen(server, { path });
      chmodSync(path, 0o600);
      const { dev, ino } = statSync(path);
      return {
        endpoint: formatEndpoint(e),
        close: async () => {
          await closeServer(server);
          try {
            const st = statSync(path);
            if (st.dev === dev && st.ino === ino) {
              unlinkSync(path);
            }
          } catch {
            // Already gone.
          }
        },
      };
    }
    case 'tls': {
      const options = listenerTls('tls', o);
      const server = tls.createServer({ ...options, allowHalfOpen: true });
      server.on('secureConnection', (socket: tls.TLSSocket) => {
        if (!acceptsPeer(socket, 'tls')) {
          socket.destroy();
          return;
        }
        socket.setNoDelay(true);
        accept(new SocketTransport(socket, remote(socket), sessionInfo(socket, undefined)));
      });
      await listen(server, { host: e.host, port: e.port });
      const endpoint = formatEndpoint({ scheme: 'tls', host: e.host, port: boundPort(server) });
      return { endpoint, close: () => closeServer(server) };
    }
    case 'ws':
    case 'wss':
      return bindWs(e.scheme, e.host, e.port, e.path, accept, o);
  }
}

async function bindWs(
  scheme: 'ws' | 'wss',
  host: string,
  port: number,
  path: string,
  accept: (t: Transport) => void,
  o: BindOptions,
): Promise<Listener> {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: o.maxFrame + HEADER_LEN,
    perMessageDeflate: false,
    clientTracking: false,
    handleProtocols: (protocols: Set<string>) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  const wanted = path.split('?')[0] as string;
  const upgradeRequired = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { Connection: 'close', Upgrade: 'websocket' });
    res.end();
  };
  const server =
    scheme === 'wss' ? https.createServer(listenerTls('wss', o), upgradeRequired) : http.createServer(upgradeRequired);
  if (scheme === 'wss') {
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      if (!acceptsPeer(socket, 'wss')) {
        socket.destroy();
      }
    });
  }
  server.headersTimeout = o.handshakeMs;
  server.requestTimeout = o.handshakeMs;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const reqPath = (req.url ?? '/').split('?')[0];
    if (reqPath !== wanted) {
      refuse(socket, 404, 'Not Found');
      return;
    }
    const origins = req.headersDistinct['origin'] ?? [];
    if (origins.length > 1) {
      refuse(socket, 400, 'Bad Request');
      return;
    }
    const origin = origins[0];
    if (origin !== undefined && o.origins.length > 0 && !o.origins.includes(origin)) {
      refuse(socket, 403, 'Forbidden');
      return;
    }
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      refuse(socket, 400, 'Bad Request');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const address = `${scheme}://${remote(req.socket)}${reqPath}`;
      const session = req.socket instanceof tls.TLSSocket ? sessionInfo(req.socket, undefined) : undefined;
      accept(new NodeWebSocketTransport(ws, address, session));
    });
  });
  await listen(server, { host, port });
  const endpoint = formatEndpoint({ scheme, host, port: boundPort(server), path });
  return {
    endpoint,
    close: async () => {
      wss.close();
      server.closeIdleConnections?.();
      await closeServer(server);
    },
  };
}
