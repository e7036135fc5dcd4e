/**
 * The WebSocket transport for browsers (and any host with a standard
 * `WebSocket`: Deno, Bun, Node ≥ 22).
 *
 * Every gatewire frame travels as exactly one **binary** message
 * (`binaryType = 'arraybuffer'`); the client asks for the `gatewire.v1`
 * subprotocol and fails unless the server selects it. A text message or an
 * empty binary message is a transport error (the connection ends).
 *
 * Backpressure: a browser `WebSocket` reports neither when a message has
 * been written nor when its buffer drains, so `send` resolves at once and
 * nothing polls `bufferedAmount`. What bounds the browser's buffer is the
 * protocol: message data needs the peer's credit, which the peer returns
 * only as its application consumes, so at most the peer's connection
 * credit (4 MiB by default) of messages plus a few control frames can be
 * outstanding; beyond that, sends wait inside the driver.
 *
 * Input cannot be paused either: frames that arrive while the protocol core
 * is not consuming are held by the driver (the browser would hold them
 * anyway). The browser does not cap incoming message size before buffering
 * a message; the core then refuses any frame above its `maxFrame`.
 *
 * @module
 */

import type { AbortSignalLike } from '../runtime.js';
import { AbortedError, ConfigError, TransportError } from '../rpc-errors.js';
import { clearTimer, setTimer } from '../runtime.js';
import type { Transport, TransportEvents, TransportInfo } from '../transport.js';
import { parseEndpoint } from '../endpoint.js';

/** The WebSocket subprotocol gatewire requires of both ends. */
export const SUBPROTOCOL = 'gatewire.v1';

const CONNECTING = 0;
const OPEN = 1;

/* eslint-disable @typescript-eslint/no-explicit-any -- event parameters are `any` so that
   the host's own `WebSocket` (whose handlers take its `MessageEvent` and `CloseEvent`)
   fits this interface without a cast. */
/** The part of the standard `WebSocket` this transport uses: the host's `WebSocket` class fits it. */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  /** `ev.data`: an `ArrayBuffer` (binary) or a string (text). */
  onmessage: ((ev: any) => void) | null;
  /** `ev.code`, `ev.reason`. */
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** A `WebSocket` constructor (the host's own, or a compatible one). */
export type WebSocketConstructor = new (url: string, protocols: string | string[]) => WebSocketLike;

/** Options of {@link dialWebSocket}. */
export interface WebSocketDialOptions {
  /** Give up after this long (ms). Default 10 s. */
  timeoutMs?: number | undefined;
  /** Abandon the dial. */
  signal?: AbortSignalLike | undefined;
  /** The constructor to use; default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor | undefined;
}

/** An established WebSocket, as a `'message'` transport. */
export class WebSocketTransport implements Transport {
  readonly framing = 'message';
  readonly info: TransportInfo;
  readonly #ws: WebSocketLike;
  #events: TransportEvents | undefined = undefined;
  /** What happened before `start`. */
  readonly #early: ((e: TransportEvents) => void)[] = [];
  #ended = false;

  /** Wraps an open WebSocket that selected {@link SUBPROTOCOL}. */
  constructor(ws: WebSocketLike, url: string) {
    this.#ws = ws;
    this.info = { address: url };
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (ev: { data: unknown }) => this.#onMessage(ev.data);
    ws.onclose = (ev: { code: number; reason: string }) => {
      // A close frame arrived (1000 normal, 1001 going away, 1005 no status):
      // the peer ended on purpose, even if our reply could not be sent
      // (`wasClean` false). 1006 (no close frame) and error codes are failures.
      if (ev.code === 1000 || ev.code === 1001 || ev.code === 1005) {
        this.#emit((e) => e.onClose());
      } else {
        this.#emit((e) => e.onError(new Error(`websocket closed with code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}`)));
      }
    };
    // Browsers give no detail on `error`; the `close` that follows reports it.
    ws.onerror = null;
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
    this.abort();
    this.#emit((e) => e.onError(new Error(message)));
    this.#ended = true;
  }

  #onMessage(data: unknown): void {
    if (this.#ended) {
      return;
    }
    if (typeof data === 'string') {
      this.#fail('text message received: gatewire frames travel as binary messages');
      return;
    }
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) {
      bytes = new Uint8Array(data);
    } else if (ArrayBuffer.isView(data)) {
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      this.#fail('unexpected websocket message type (binaryType must be arraybuffer)');
      return;
    }
    if (bytes.length === 0) {
      this.#fail('empty binary message received');
      return;
    }
    this.#emit((e) => e.onData(bytes));
  }

  start(events: TransportEvents): void {
    this.#events = events;
    for (const f of this.#early.splice(0)) {
      f(events);
    }
  }

  send(frames: readonly Uint8Array[]): Promise<void> {
    if (this.#ws.readyState !== OPEN) {
      return Promise.reject(new Error('the websocket is not open'));
    }
    for (const f of frames) {
      this.#ws.send(f);
    }
    return Promise.resolve();
  }

  close(): void {
    const s = this.#ws.readyState;
    if (s === CONNECTING || s === OPEN) {
      this.#ws.close(1000);
    }
  }

  abort(): void {
    const s = this.#ws.readyState;
    if (s === CONNECTING || s === OPEN) {
      // Scripts may only send 1000 or 3000-4999.
      this.#ws.close(4000, 'aborted');
    }
  }
}

/**
 * Opens a WebSocket to `url` (`ws://` or `wss://`) asking for the
 * `gatewire.v1` subprotocol, and resolves once it is open and the server
 * selected it.
 *
 * @throws {TransportError} when the connection fails, times out or the
 *   server does not select the subprotocol.
 */
export function dialWebSocket(url: string, options: WebSocketDialOptions = {}): Promise<WebSocketTransport> {
  const endpoint = parseEndpoint(url);
  if (endpoint.scheme !== 'ws' && endpoint.scheme !== 'wss') {
    return Promise.reject(
      new ConfigError(`${endpoint.scheme}:// endpoints need gatewire/node; the browser entry point dials ws:// and wss://`),
    );
  }
  const Ctor =
    options.WebSocket ?? (globalThis as unknown as { WebSocket?: WebSocketConstructor | undefined }).WebSocket;
  if (Ctor === undefined) {
    return Promise.reject(new ConfigError('this host has no WebSocket: pass options.WebSocket or use gatewire/node'));
  }
  const signal = options.signal;
  if (signal?.aborted === true) {
    return Promise.reject(new AbortedError(signal.reason));
  }
  return new Promise<WebSocketTransport>((resolve, reject) => {
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url, SUBPROTOCOL);
    } catch (e) {
      reject(new TransportError(e instanceof Error ? e.message : String(e), e));
      return;
    }
    ws.binaryType = 'arraybuffer';
    let settled = false;
    const finish = (error: Error | undefined): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimer(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.onopen = null;
      ws.onclose = null;
      ws.onerror = null;
      if (error !== undefined) {
        try {
          ws.close(4000, 'connect failed');
        } catch {
          // Already closed.
        }
        reject(error);
      } else {
        resolve(new WebSocketTransport(ws, url));
      }
    };
    const onAbort = (): void => finish(new AbortedError(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimer(
      () => finish(new TransportError(`websocket connect to ${url} timed out`)),
      options.timeoutMs ?? 10_000,
    );
    ws.onopen = () => {
      if (ws.protocol !== SUBPROTOCOL) {
        finish(new TransportError(`websocket server did not select the ${SUBPROTOCOL} subprotocol`));
      } else {
        finish(undefined);
      }
    };
    ws.onerror = () => undefined;
    ws.onclose = (ev: { code: number }) =>
      finish(new TransportError(`websocket connect to ${url} failed (code ${ev.code})`));
  });
}
