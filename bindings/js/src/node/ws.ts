/**
 * WebSocket for Node over the `ws` package: the client (`ws://`, `wss://`)
 * and the server side of a listener. `wss://` verifies the server's
 * certificate and name as `tls://` does (see `./tls.ts`) and offers ALPN
 * `http/1.1`.
 *
 * Every gatewire frame is one binary message; both ends require the
 * `gatewire.v1` subprotocol. Incoming messages are capped at the gatewire
 * max frame plus the 16-byte header (`maxPayload`; a larger one closes the
 * connection with 1009 before it is buffered); a text message or an empty
 * binary message is a transport error (close 1003). permessage-deflate is
 * never negotiated (a compression bomb has nothing to inflate).
 *
 * Backpressure: `send` passes each frame to `ws.send` with the socket
 * corked, so a batch leaves in one write, and resolves when the last
 * frame's callback ran, i.e. the batch has been handed to the socket;
 * input is paused with `ws.pause()` while the protocol core is not
 * consuming.
 *
 * @module
 */

import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';

import WebSocket from 'ws';

import { parseEndpoint } from '../endpoint.js';
import { HEADER_LEN } from '../frame.js';
import { AbortedError, ConfigError, TransportError } from '../rpc-errors.js';
import type { AbortSignalLike } from '../runtime.js';
import type { Transport, TransportEvents } from '../transport.js';
import { SUBPROTOCOL } from '../transports/websocket.js';
import {
  ALPN_HTTP11,
  clientTlsOptions,
  sessionInfo,
  tlsErrorFrom,
  type NodeTransportInfo,
  type TlsClientOptions,
  type TlsInfo,
} from './tls.js';

export { SUBPROTOCOL };

/** How long a closing WebSocket waits for the peer's close frame before the socket is dropped (ms). */
const LINGER_MS = 2_000;

function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** `ws.send` options of every frame. */
const BINARY = { binary: true } as const;

/**
 * The socket under a `ws` WebSocket (`ws`'s `_socket`, which its typings
 * leave out), so that a batch of messages can be corked into one write.
 */
function socketOf(ws: WebSocket): Duplex | undefined {
  const socket = (ws as unknown as { _socket?: Duplex | null })._socket;
  return socket !== null && typeof socket?.cork === 'function' ? socket : undefined;
}

function toBytes(data: WebSocket.RawData): Uint8Array {
  if (Array.isArray(data)) {
    return view(Buffer.concat(data));
  }
  if (data instanceof ArrayBuffer) {
    return new Uint8Array(data);
  }
  return view(data);
}

/** An established `ws` WebSocket, as a `'message'` transport. */
export class NodeWebSocketTransport implements Transport {
  readonly framing = 'message';
  readonly info: NodeTransportInfo;
  readonly ws: WebSocket;
  #events: TransportEvents | undefined = undefined;
  readonly #early: ((e: TransportEvents) => void)[] = [];
  #ended = false;

  /**
   * Wraps an open `ws` socket that selected {@link SUBPROTOCOL}; `address` is
   * what `info.address` says, `tls` the session facts under `wss://`.
   */
  constructor(ws: WebSocket, address: string, tls?: TlsInfo) {
    this.ws = ws;
    this.info = tls === undefined ? { address } : { address, tls };
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      if (!isBinary) {
        this.#fail('text message received: gatewire frames travel as binary messages');
        return;
      }
      const bytes = toBytes(data);
      if (bytes.length === 0) {
        this.#fail('empty binary message received');
        return;
      }
      this.#emit((e) => e.onData(bytes));
    });
    ws.on('error', (err: Error) => this.#emit((e) => e.onError(err)));
    ws.on('close', (code: number, reason: Buffer) => {
      if (code === 1000 || code === 1001 || code === 1005) {
        this.#emit((e) => e.onClose());
      } else {
        const text = reason.length > 0 ? `: ${reason.toString()}` : '';
        this.#emit((e) => e.onError(new Error(`websocket closed with code ${code}${text}`)));
      }
      this.#ended = true;
    });
  }

  #emit(f: (e: TransportEvents) => void): void {
    if (this.#ended) {
      return;
    }
    const events = this.#events;
    if (events === undefined) {
      this.#early.push(f);
      return;
    }
    f(events);
  }

  #fail(message: string): void {
    // Close with our code first: the driver closes the transport as soon as
    // it hears of the error.
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(1003, 'binary messages only');
    }
    this.#emit((e) => e.onError(new Error(message)));
    this.#ended = true;
  }

  start(events: TransportEvents): void {
    this.#events = events;
    for (const f of this.#early.splice(0)) {
      f(events);
    }
  }

  send(frames: readonly Uint8Array[]): Promise<void> {
    const ws = this.ws;
    if (ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error('the websocket is not open'));
    }
    const last = frames.length - 1;
    if (last < 0) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      // One message per frame, but one system call per batch: `ws` corks
      // and uncorks the socket around each message, which nests inside ours.
      const socket = socketOf(ws);
      socket?.cork();
      try {
        for (let i = 0; i < last; i++) {
          ws.send(frames[i] as Uint8Array, BINARY);
        }
        // Writes complete in order, and a failed socket fails every pending
        // write: the last callback speaks for the batch.
        ws.send(frames[last] as Uint8Array, BINARY, (err?: Error) => {
          if (err !== undefined && err !== null) {
            reject(err);
          } else {
            resolve();
          }
        });
      } finally {
        socket?.uncork();
      }
    });
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  close(): void {
    const ws = this.ws;
    const s = ws.readyState;
    if (s === WebSocket.OPEN || s === WebSocket.CONNECTING) {
      ws.resume();
      ws.close(1000);
      // A peer that never answers the close handshake is dropped after a
      // while (ws itself would wait 30 s).
      const timer = setTimeout(() => ws.terminate(), LINGER_MS);
      timer.unref();
      ws.once('close', () => clearTimeout(timer));
    }
  }

  abort(): void {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      this.ws.terminate();
    }
  }
}

/** Options of {@link connectWebSocket}. */
export interface NodeWebSocketDialOptions {
  /** Give up after this long (ms). Default 10 s. */
  timeoutMs?: number | undefined;
  /** Abandon the dial. */
  signal?: AbortSignalLike | undefined;
  /** Largest gatewire frame payload accepted (default 1 MiB); messages are capped at this plus 16. */
  maxFrame?: number | undefined;
  /** An `Origin` header to send (non-browser clients normally send none). */
  origin?: string | undefined;
  /** `wss://`: trust anchors, client certificate and server name (default: Node's roots, the URL's host). */
  tls?: TlsClientOptions | undefined;
  /** Extra `ws` client options. */
  wsOptions?: WebSocket.ClientOptions | undefined;
}

/**
 * Connects to `url` (`ws://` or `wss://`) with the `gatewire.v1`
 * subprotocol and resolves once the upgrade completed.
 *
 * @throws {CertificateVerifyError} `wss://`: the server's certificate did not verify (`HostnameMismatchError`: not for this name).
 * @throws {TlsError} `wss://`: another TLS failure (our client certificate refused...).
 * @throws {TransportError} when the connection or upgrade fails, times out,
 *   or the server does not select the subprotocol.
 */
export function connectWebSocket(url: string, options: NodeWebSocketDialOptions = {}): Promise<NodeWebSocketTransport> {
  const signal = options.signal;
  if (signal?.aborted === true) {
    return Promise.reject(new AbortedError(signal.reason));
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  let secure: { host: string; tls: WebSocket.ClientOptions } | undefined;
  try {
    const endpoint = parseEndpoint(url);
    if (endpoint.scheme === 'wss') {
      // ws hands these to `https.request`, so node:tls's `checkServerIdentity`
      // signature is the one that applies, not the older one @types/ws declares.
      const tls = clientTlsOptions(options.tls ?? {}, endpoint.host, ALPN_HTTP11) as unknown as WebSocket.ClientOptions;
      secure = { host: endpoint.host, tls };
    }
  } catch (e) {
    return Promise.reject(e instanceof ConfigError ? e : new ConfigError(e instanceof Error ? e.message : String(e), e));
  }
  const ws = new WebSocket(url, SUBPROTOCOL, {
    ...options.wsOptions,
    ...secure?.tls,
    maxPayload: (options.maxFrame ?? 1 << 20) + HEADER_LEN,
    perMessageDeflate: false,
    handshakeTimeout: timeoutMs,
    ...(options.origin !== undefined ? { origin: options.origin } : {}),
  });
  let tlsSocket: TLSSocket | undefined;
  ws.once('upgrade', (res: IncomingMessage) => {
    if (secure !== undefined) {
      tlsSocket = res.socket as TLSSocket;
    }
  });
  return new Promise<NodeWebSocketTransport>((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | undefined): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.off('open', onOpen);
      ws.off('error', onError);
      ws.off('unexpected-response', onResponse);
      if (error !== undefined) {
        ws.on('error', () => undefined);
        ws.terminate();
        reject(error);
      } else {
        const tls = tlsSocket === undefined ? undefined : sessionInfo(tlsSocket, options.tls?.serverName ?? secure?.host);
        resolve(new NodeWebSocketTransport(ws, url, tls));
      }
    };
    const onOpen = (): void => {
      if (ws.protocol !== SUBPROTOCOL) {
        finish(new TransportError(`websocket server did not select the ${SUBPROTOCOL} subprotocol`));
      } else {
        finish(undefined);
      }
    };
    const onError = (e: Error): void =>
      finish(
        tlsErrorFrom(e, `TLS with ${url} failed`) ??
          new TransportError(`websocket connect to ${url} failed: ${e.message}`, e),
      );
    const onResponse = (_req: unknown, res: IncomingMessage): void => {
      res.resume();
      finish(new TransportError(`websocket upgrade refused with HTTP ${res.statusCode ?? 0}`));
    };
    const onAbort = (): void => finish(new AbortedError(signal?.reason));
    const timer = setTimeout(() => finish(new TransportError(`websocket connect to ${url} timed out`)), timeoutMs);
    ws.once('open', onOpen);
    ws.once('error', onError);
    ws.once('unexpected-response', onResponse);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
