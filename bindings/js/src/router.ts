/**
 * Handlers for the calls, streams and events a peer sends us (the
 * counterpart of the Rust runtime's `Router`).
 *
 * Both ends of a connection have a router: a gateway calls a browser page
 * exactly as the page calls the gateway.
 *
 * ```ts
 * const router = new Router()
 *   .unary(1, (_ctx, req) => req)                          // echo
 *   .stream(3, async (_ctx, first, _rx, tx) => { await tx.send(first); })
 *   .event(7, (ctx, ev) => ctx.connection.emit(8, ev));
 * ```
 *
 * A unary handler returns the response (a {@link Message}, or bytes or a
 * string sent as `RAW`) or throws a {@link Status} to answer with an error
 * code; any other thrown value answers `INTERNAL`. A stream handler gets the
 * opening message, the peer's messages and a sender; returning ends our half
 * of the stream. Event handlers of one method run one at a time, in arrival
 * order. Every handler gets a {@link CallContext} whose `signal` fires when
 * the caller cancels, the deadline passes or the connection ends; the call's
 * slot (counted against `maxInFlight`) is held until the handler settles.
 *
 * @module
 */

import type { Message } from './connection.js';
import type { CallContext, RecvStream, SendStream } from './peer.js';

/** What a unary handler may return. */
export type Reply = Message | Uint8Array | string;

/** Serves unary calls. */
export type UnaryHandler = (ctx: CallContext, request: Message) => Reply | Promise<Reply>;

/** Serves streams: the opening message, the peer's messages and our sender. */
export type StreamHandler = (ctx: CallContext, first: Message, rx: RecvStream, tx: SendStream) => void | Promise<void>;

/** Handles one-way events. */
export type EventHandler = (ctx: CallContext, event: Message) => void | Promise<void>;

function checkMethod(method: number): void {
  if (!Number.isInteger(method) || method < 0 || method > 0xffff_ffff) {
    throw new RangeError('method must be an integer in 0..=0xFFFFFFFF');
  }
}

/** Handlers by method id. An empty router answers every call with `UNKNOWN_METHOD`. */
export class Router {
  readonly #unary = new Map<number, UnaryHandler>();
  readonly #streams = new Map<number, StreamHandler>();
  readonly #events = new Map<number, EventHandler>();

  /** Serves unary calls to `method`. */
  unary(method: number, handler: UnaryHandler): this {
    checkMethod(method);
    this.#unary.set(method, handler);
    return this;
  }

  /** Serves streams opened on `method`. */
  stream(method: number, handler: StreamHandler): this {
    checkMethod(method);
    this.#streams.set(method, handler);
    return this;
  }

  /** Handles one-way events on `method`. */
  event(method: number, handler: EventHandler): this {
    checkMethod(method);
    this.#events.set(method, handler);
    return this;
  }

  /** The unary handler of `method`, if any. */
  unaryHandler(method: number): UnaryHandler | undefined {
    return this.#unary.get(method);
  }

  /** The stream handler of `method`, if any. */
  streamHandler(method: number): StreamHandler | undefined {
    return this.#streams.get(method);
  }

  /** The event handler of `method`, if any. */
  eventHandler(method: number): EventHandler | undefined {
    return this.#events.get(method);
  }
}
