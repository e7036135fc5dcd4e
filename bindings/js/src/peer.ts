/**
 * The driver: a promise-based runtime around the sans-IO core (the
 * TypeScript counterpart of the Rust runtime's `conn.rs` and `stream.rs`).
 *
 * One {@link Connection} owns one core {@link CoreConnection} and one
 * {@link Transport}. Input (bytes or frames, end of input, errors) is fed to
 * the core as it arrives; every input or command is followed by a *pump*:
 * the core's events are routed (pending calls settle, stream queues fill,
 * handlers start), paused input resumes, the writer is woken and one timer
 * is armed for the core's next deadline. The writer drains the core's
 * frames in batches of up to {@link MAX_BATCH} bytes and awaits each
 * `transport.send`, so at most one batch waits outside the core.
 *
 * - Calls: `call` returns a promise; `timeoutMs` travels to the peer as the
 *   call's deadline (the peer stops its handler) and fails the call here at
 *   the same moment; an `AbortSignal` cancels it at the peer.
 * - Streams: the receive side is an async iterable that grants credit back
 *   as the application takes each message, so a slow consumer slows its
 *   producer; the send side waits while the peer's credit is spent.
 * - Sends that find the core's queue or the peer's call slots full wait for
 *   room (`Writable`); nothing is dropped and nothing grows without bound.
 * - When the connection ends, every pending call, stream and ping fails at
 *   once with the reason ({@link RpcError.isClosed}).
 * - zstd: this package never offers compression (no browser has a zstd
 *   decoder whose output can be capped), so peers never send compressed
 *   messages to it; `compression: true` is refused with a {@link ConfigError}.
 *
 * @module
 */

import type { ErrorInfo, Service } from './control.js';
import { encodeServiceList, utf8Encode } from './control.js';
import {
  bodyLength,
  Connection as CoreConnection,
  discardBody,
  message as makeMessage,
  type ConnectionEvent,
  type Message,
  type PeerInfo,
  type Role,
} from './connection.js';
import { encodeFrame, type Frame } from './codec.js';
import { encodeHeader, HEADER_LEN } from './frame.js';
import {
  ApiError,
  BlockedError,
  ClosedError,
  ClosingError,
  GatewireError,
  IdsExhaustedError,
  InvalidArgumentError,
  MessageTooLargeError,
  SendUnknownCallError,
} from './errors.js';
import type { Limits, Timeouts } from './limits.js';
import { Router } from './router.js';
import { LIST_SERVICES, REAUTHENTICATE } from './services.js';
import {
  AbortedError,
  ConfigError,
  ConnectionClosedError,
  DeadlineError,
  fromConnectionError,
  LocalError,
  RefusedCallError,
  RemoteError,
  RpcError,
  Status,
  TransportError,
} from './rpc-errors.js';
import {
  abortController,
  clearTimer,
  defer,
  deferred,
  now,
  setTimer,
  type AbortControllerLike,
  type AbortSignalLike,
  type Deferred,
  type TimerHandle,
} from './runtime.js';
import { MAX_BATCH, type Transport, type TransportEvents, type TransportInfo } from './transport.js';
import { dialWebSocket, type WebSocketConstructor } from './transports/websocket.js';
import { Codec, ErrorCode } from './wire.js';

/** The implementation name sent in the handshake. */
export const AGENT = 'gatewire-js/0.1.0';

/** How long a closed connection waits for its last frames to be written before the transport is dropped (ms). */
const LINGER_MS = 2_000;

/** What `call`, `emit` and streams accept as a message: bytes, a string (UTF-8) or a {@link Message}. */
export type Payload = Uint8Array | string | Message;

/** Options of one call. */
export interface CallOptions {
  /**
   * Deadline in milliseconds: it travels to the peer, which stops its
   * handler when it passes, and the call fails here at the same moment with
   * a {@link DeadlineError} (`isTimeout`). Waiting for a call slot counts.
   */
  timeoutMs?: number | undefined;
  /** Cancels the call: the peer gets CANCEL and the promise rejects with an {@link AbortedError}. */
  signal?: AbortSignalLike | undefined;
  /** Codec of a bytes or string payload (default `RAW`); a {@link Message} keeps its own unless this is set. */
  codec?: Codec | undefined;
}

/** Options of `emit` and of a stream's `send`. */
export interface SendOptions {
  /** Codec of a bytes or string payload (default `RAW`). */
  codec?: Codec | undefined;
  /** Stops waiting for room. */
  signal?: AbortSignalLike | undefined;
}

/** Options shared by `connect` and `serve`. */
export interface ConnectionOptions {
  /** Handlers for the calls, streams and events the peer sends us. */
  router?: Router | undefined;
  /** Limits to override (see `Limits`). */
  limits?: Partial<Limits> | undefined;
  /** Timeouts to override, in ms (see `Timeouts`); `handshake` also bounds the transport's own connect. */
  timeouts?: Partial<Timeouts> | undefined;
  /** Codecs to advertise. */
  codecs?: number[] | undefined;
  /**
   * Services this endpoint serves (descriptors, usually from generated
   * code): sent in the handshake and listed by the built-in `LIST_SERVICES`
   * method. A server refuses, with `INCOMPATIBLE` and a message naming the
   * difference, a client that uses a service it does not offer compatibly
   * (`docs/PROTOCOL.md` §10.3).
   */
  offers?: Service[] | undefined;
  /**
   * Services this endpoint calls on its peer: sent in the handshake and
   * listed by `LIST_SERVICES`. A client whose server does not offer them
   * compatibly fails to connect with `INCOMPATIBLE`.
   */
  uses?: Service[] | undefined;
  /** @deprecated The former name of {@link ConnectionOptions.offers}; used when `offers` is unset. */
  services?: Service[] | undefined;
  /** Implementation name sent in the handshake (default {@link AGENT}). */
  agent?: string | undefined;
  /**
   * zstd is not supported: leave this unset or `false`. `true` throws a
   * {@link ConfigError} (no browser ships a zstd decoder whose output can be
   * capped, so this package never offers compression; peers then send it
   * uncompressed messages).
   */
  compression?: boolean | undefined;
  /** Events queued per method for its handler before new ones are dropped (default 1024). */
  eventQueue?: number | undefined;
}

/** Options of `connect`. */
export interface ConnectOptions extends ConnectionOptions {
  /** Authentication payload sent in HELLO (a string is sent as UTF-8). Never put tokens in URLs. */
  auth?: Uint8Array | string | undefined;
  /** Abandons the connect. */
  signal?: AbortSignalLike | undefined;
  /**
   * Turns a URL into a transport. Default: `ws://` and `wss://` with the
   * host's `WebSocket` (`gatewire/node`'s `connect` adds `tcp://` and
   * `unix://` and uses the `ws` package).
   */
  dialer?: Dialer | undefined;
  /** The `WebSocket` constructor the default dialer uses (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor | undefined;
}

/** What a dialer gets besides the URL. */
export interface DialOptions {
  /** Give up after this long (ms): the handshake timeout. */
  timeoutMs: number;
  /** Abandon the dial. */
  signal?: AbortSignalLike | undefined;
  /** Largest frame payload we accept (a WebSocket message cap is this plus the 16-byte header). */
  maxFrame: number;
}

/** Turns an endpoint URL into an established transport. */
export type Dialer = (url: string, options: DialOptions) => Promise<Transport>;

/** Options of the server side of one connection. */
export interface AcceptOptions extends ConnectionOptions {
  /**
   * Decides whether a client may connect, from its HELLO `auth` payload and
   * what the transport knows. Return `false` (or throw a {@link Status}) to
   * refuse; refused clients get `UNAUTHENTICATED` (or the status code).
   * Default: everyone is accepted.
   */
  authenticate?: ((request: AuthRequest) => boolean | void | Promise<boolean | void>) | undefined;
  /**
   * Decides whether each incoming call or stream may run, before its method
   * is looked up (a caller that may not call a method cannot learn whether
   * it exists). Return `false` to deny with `PERMISSION_DENIED`, or throw a
   * {@link Status} to deny with its code; the handler never runs. Any other
   * exception denies with `PERMISSION_DENIED`. One-way events are not
   * authorized (as in the Rust runtime). Default: every call may run.
   */
  authorize?: ((call: AuthorizeRequest) => boolean | void) | undefined;
}

/** What an authorizer decides from. */
export interface AuthorizeRequest {
  /** The method called. */
  readonly method: number;
  /** The connection it came on (`identityOf(connection)` says who called). */
  readonly connection: Connection;
}

/** What an authenticator decides from. */
export interface AuthRequest {
  /** The HELLO's authentication payload. */
  readonly auth: Uint8Array | undefined;
  /** What the transport knows about the client. */
  readonly transport: TransportInfo;
  /** The client's implementation name. */
  readonly agent: string | undefined;
  /**
   * `true` for a re-authentication of a live connection (the built-in
   * REAUTHENTICATE, `docs/PROTOCOL.md` §10.4) rather than a HELLO.
   */
  readonly reauthenticate?: boolean | undefined;
}

/** What a handler knows about the call it serves. */
export interface CallContext {
  /** The call id (unique per direction on this connection; 0 for events). */
  readonly id: number;
  /** The method id. */
  readonly method: number;
  /** Milliseconds the caller allowed, counted from when the call arrived, if it said. */
  readonly deadline: number | undefined;
  /** Fires when the caller cancels, the deadline passes or the connection ends. */
  readonly signal: AbortSignalLike;
  /** The connection the call arrived on: handlers may call the peer back. */
  readonly connection: Connection;
}

/** Counters of one connection. */
export interface Stats {
  /** Frames written. */
  framesSent: number;
  /** Bytes written. */
  bytesSent: number;
  /** Bytes read. */
  bytesReceived: number;
  /** Transport writes (each carries a batch of frames). */
  writes: number;
  /** Sends that had to wait for credit, a call slot or queue room. */
  creditStalls: number;
  /** One-way events dropped (no handler, or its queue was full). */
  eventsDropped: number;
  /** Calls and streams we opened that are still open. */
  callsOut: number;
  /** Calls and streams the peer opened that are still open. */
  callsIn: number;
}

const EMPTY = new Uint8Array(0);
const EOF: unique symbol = Symbol('eof');

/** Input that the transport lent: `release` gives its memory back once the core no longer refers to it. */
class Lent {
  constructor(
    readonly data: Uint8Array,
    readonly release: () => void,
  ) {}
}

/** A bytes, string or message payload as a message. */
export function toMessage(payload: Payload, codec?: Codec): Message {
  if (payload instanceof Uint8Array) {
    return makeMessage(codec ?? Codec.RAW, payload);
  }
  if (typeof payload === 'string') {
    return makeMessage(codec ?? Codec.RAW, utf8Encode(payload));
  }
  if (typeof payload === 'object' && payload !== null && payload.body instanceof Uint8Array) {
    return codec === undefined ? payload : { codec, body: payload.body, uncompressedLen: payload.uncompressedLen };
  }
  throw new LocalError(ErrorCode.INVALID_ARGUMENT, 'a payload is a Uint8Array, a string or a Message');
}

function replyMessage(reply: unknown): Message {
  if (reply === undefined) {
    return makeMessage(Codec.RAW, EMPTY);
  }
  return toMessage(reply as Payload);
}

/** The error for a send the core refused (other than `BlockedError`). */
function fromSend(e: unknown): unknown {
  if (e instanceof MessageTooLargeError) {
    return new LocalError(ErrorCode.TOO_LARGE, e.message, e);
  }
  if (e instanceof ClosingError || e instanceof IdsExhaustedError) {
    return new RefusedCallError(ErrorCode.UNAVAILABLE, e.message, e);
  }
  if (e instanceof ClosedError) {
    return new ConnectionClosedError(ErrorCode.UNAVAILABLE, e.message, e);
  }
  if (e instanceof InvalidArgumentError) {
    return new LocalError(ErrorCode.INVALID_ARGUMENT, e.message, e);
  }
  if (e instanceof GatewireError && !(e instanceof RpcError)) {
    return new LocalError(ErrorCode.INTERNAL, e.message, e);
  }
  return e;
}

/** What {@link Driver.tryNow} returns when the core has no room. */
const BLOCKED: unique symbol = Symbol('blocked');

function checkTimeout(timeoutMs: number | undefined): void {
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs))) {
    throw new LocalError(ErrorCode.INVALID_ARGUMENT, 'timeoutMs must be a finite number >= 0');
  }
}

function checkAborted(signal: AbortSignalLike | undefined): void {
  if (signal?.aborted === true) {
    throw new AbortedError(signal.reason);
  }
}

function unref(handle: TimerHandle): void {
  const h = handle as { unref?: () => void } | null;
  if (h !== null && typeof h === 'object' && typeof h.unref === 'function') {
    h.unref();
  }
}

/**
 * Frame payloads at least this long go to a byte-stream transport as they
 * are rather than being copied into the batch buffer (the socket gathers
 * them in one `writev`).
 */
const BY_REFERENCE = 8 * 1024;

/** Frames taken from the core for one `transport.send`. */
interface Batch {
  /** What `transport.send` takes. */
  readonly chunks: Uint8Array[];
  /** Frames in it. */
  readonly frames: number;
  /** Bytes in it. */
  readonly bytes: number;
}

/** A FIFO queue with O(1) shift. */
class Queue<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(x: T): void {
    this.#items.push(x);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) {
      return undefined;
    }
    const x = this.#items[this.#head] as T;
    this.#items[this.#head] = undefined as T;
    this.#head += 1;
    if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return x;
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/** Waiters woken together. */
class Waiters {
  readonly #set = new Set<() => void>();

  add(wake: () => void): () => void {
    this.#set.add(wake);
    return () => this.#set.delete(wake);
  }

  wakeAll(): void {
    const all = [...this.#set];
    this.#set.clear();
    for (const w of all) {
      w();
    }
  }
}

/** What the driver holds for one stream. */
class StreamSlot {
  readonly queue = new Queue<{ message: Message; credit: number }>();
  end: boolean;
  error: RpcError | undefined = undefined;
  /** The receiving side is done (ended, failed or cancelled). */
  rxDone = false;
  /** Our sending half is finished (or never open). */
  txDone: boolean;
  readonly recv = new Waiters();
  readonly writable = new Waiters();

  constructor(end: boolean, txDone: boolean) {
    this.end = end;
    this.txDone = txDone;
  }

  wake(): void {
    this.recv.wakeAll();
    this.writable.wakeAll();
  }
}

interface PendingCall {
  resolve(m: Message): void;
  reject(e: unknown): void;
}

interface EventQueue {
  readonly queue: Queue<Message>;
  running: boolean;
}

/**
 * Waits until `subscribe`'s wake is called, the signal fires or the
 * deadline passes: resolves when woken, rejects with an
 * {@link AbortedError} or a {@link DeadlineError}.
 */
function waitFor(
  subscribe: (wake: () => void) => () => void,
  signal: AbortSignalLike | undefined,
  deadlineAt: number | undefined,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: TimerHandle | undefined;
    const cleanups: (() => void)[] = [];
    const done = (): void => {
      for (const c of cleanups) {
        c();
      }
      if (timer !== undefined) {
        clearTimer(timer);
      }
    };
    cleanups.push(
      subscribe(() => {
        done();
        resolve();
      }),
    );
    if (signal !== undefined) {
      const onAbort = (): void => {
        done();
        reject(new AbortedError(signal.reason));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      cleanups.push(() => signal.removeEventListener('abort', onAbort));
      if (signal.aborted) {
        onAbort();
        return;
      }
    }
    if (deadlineAt !== undefined) {
      timer = setTimer(
        () => {
          timer = undefined;
          done();
          reject(new DeadlineError('no room to send before the deadline'));
        },
        deadlineAt - now(),
      );
    }
  });
}

/**
 * What a handler gets. Its abort controller is made when the handler first
 * reads `signal` (most never do, and a Node `AbortController` costs
 * microseconds); an abort before that is remembered and the signal is born
 * aborted.
 */
class HandlerContext implements CallContext {
  #ctrl: AbortControllerLike | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;

  constructor(
    readonly id: number,
    readonly method: number,
    readonly deadline: number | undefined,
    readonly connection: Connection,
  ) {}

  get signal(): AbortSignalLike {
    if (this.#ctrl === undefined) {
      this.#ctrl = abortController();
      if (this.#aborted) {
        this.#ctrl.abort(this.#reason);
      }
    }
    return this.#ctrl.signal;
  }

  /** Fires the signal (the first reason wins, as with `AbortController`). */
  abort(reason: unknown): void {
    if (this.#aborted) {
      return;
    }
    this.#aborted = true;
    this.#reason = reason;
    this.#ctrl?.abort(reason);
  }
}

/** Everything one connection's driver holds; {@link Connection} is its public face. */
class Driver {
  readonly core: CoreConnection;
  readonly transport: Transport;
  readonly router: Router;
  readonly connection: Connection;
  readonly #options: AcceptOptions;
  readonly #eventQueueMax: number;

  readonly calls = new Map<number, PendingCall>();
  readonly streams = new Map<number, StreamSlot>();
  readonly #handlers = new Map<number, HandlerContext>();
  readonly #pings = new Map<bigint, Deferred<number>>();
  readonly #events = new Map<number, EventQueue>();
  /** Connection-level room: call slots, send queue, GOAWAY, or the end. */
  readonly writable = new Waiters();

  readonly connected = deferred<void>();
  readonly #closed = deferred<RpcError | undefined>();
  readonly #released = deferred<void>();
  closeError: RpcError | undefined = undefined;
  #isClosed = false;
  /** `close()` was called: a graceful shutdown of ours is under way. */
  shuttingDown = false;

  readonly #inbound = new Queue<Uint8Array | Lent | typeof EOF>();
  #paused = false;
  #pumping = false;
  #repump = false;
  #writing = false;
  #transportClosed = false;
  #timer: TimerHandle | undefined = undefined;
  #timerAt: number | undefined = undefined;
  #linger: TimerHandle | undefined = undefined;
  /** Events routed and inputs fed so far: either can queue frames. */
  #activity = 0;

  readonly stats = {
    framesSent: 0,
    bytesSent: 0,
    bytesReceived: 0,
    writes: 0,
    creditStalls: 0,
    eventsDropped: 0,
  };

  constructor(transport: Transport, role: Role, options: AcceptOptions & { auth?: Uint8Array | undefined }) {
    if (options.compression === true) {
      throw new ConfigError(
        'zstd compression is not supported by the TypeScript package: no browser has a zstd decoder with capped output',
      );
    }
    this.transport = transport;
    this.router = options.router ?? new Router();
    this.#options = options;
    this.#eventQueueMax = Math.max(1, Math.floor(options.eventQueue ?? 1024));
    try {
      this.core = new CoreConnection(
        {
          role,
          limits: options.limits,
          timeouts: options.timeouts,
          compression: false,
          codecs: options.codecs,
          services: options.offers ?? options.services,
          uses: options.uses,
          auth: options.auth,
          agent: options.agent ?? AGENT,
        },
        now(),
      );
    } catch (e) {
      throw new ConfigError(e instanceof Error ? e.message : String(e), e);
    }
    this.connection = new Connection(this);
    void this.connected.promise.catch(() => undefined);
  }

  /** Starts I/O. */
  start(): void {
    const events: TransportEvents = {
      onData: (data, release) => this.#onInput(release === undefined ? data : new Lent(data, release)),
      onClose: () => this.#onInput(EOF),
      onError: (error) => {
        // During our own graceful shutdown the peer may drop the transport
        // abruptly once it is done (a TCP reset instead of a WebSocket close
        // handshake): that is the end we asked for, and the core still
        // reports any call it cut short.
        if (this.closeError === undefined && !this.#isClosed && !this.shuttingDown) {
          this.closeError = new TransportError(error.message, error);
        }
        this.#onInput(EOF);
      },
    };
    this.transport.start(events);
    this.pump();
  }

  get closed(): Promise<RpcError | undefined> {
    return this.#closed.promise;
  }

  get released(): Promise<void> {
    return this.#released.promise;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** The error for anything attempted after the end. */
  closedError(): RpcError {
    return this.closeError ?? new ConnectionClosedError(ErrorCode.UNAVAILABLE, 'connection closed');
  }

  // ----- the pump ---------------------------------------------------------------

  /** Routes events and feeds held input until both are quiet, then wakes the writer and arms the timer. */
  pump(): void {
    if (this.#pumping) {
      this.#repump = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#repump = false;
        this.#dispatch();
        this.#feed();
      } while (this.#repump);
    } finally {
      this.#pumping = false;
    }
    this.#kickWriter();
    this.#armTimer();
  }

  #onInput(data: Uint8Array | Lent | typeof EOF): void {
    if (this.core.isClosed()) {
      if (data instanceof Lent) {
        data.release();
      }
      return;
    }
    if (data !== EOF) {
      this.stats.bytesReceived += data instanceof Lent ? data.data.length : data.length;
    }
    this.#inbound.push(data);
    this.pump();
  }

  /** Feeds held input while the core wants it; pauses the transport otherwise. */
  #feed(): void {
    const core = this.core;
    while (this.#inbound.length > 0) {
      if (core.isClosed()) {
        for (let x = this.#inbound.shift(); x !== undefined; x = this.#inbound.shift()) {
          if (x instanceof Lent) {
            x.release();
          }
        }
        break;
      }
      const next = this.#inbound.peek();
      if (next !== EOF && !core.wantsRead()) {
        break;
      }
      this.#inbound.shift();
      this.#activity += 1;
      const t = now();
      if (next === EOF) {
        core.handleEof(t);
      } else if (next instanceof Lent) {
        // A message transport's frame is kept as it is: its memory is never given back.
        if (this.transport.framing === 'message') {
          core.handleFrame(t, next.data);
        } else {
          core.handleBytes(t, next.data, next.release);
        }
      } else if (this.transport.framing === 'message') {
        core.handleFrame(t, next as Uint8Array);
      } else {
        core.handleBytes(t, next as Uint8Array);
      }
      this.#repump = true;
      this.#dispatch();
    }
    const hold = this.#inbound.length > 0;
    if (hold !== this.#paused && !this.#transportClosed) {
      this.#paused = hold;
      if (hold) {
        this.transport.pause?.();
      } else {
        this.transport.resume?.();
      }
    }
  }

  /**
   * Keeps one timer for the core's next deadline. A timer armed for an
   * earlier moment is kept (the keepalive deadline moves with every frame
   * received): firing early only makes the core find nothing due, and the
   * timer is then armed again.
   */
  #armTimer(): void {
    const at = this.core.pollTimeout();
    const armed = this.#timerAt;
    if (at === armed || (at !== undefined && armed !== undefined && armed < at)) {
      return;
    }
    if (this.#timer !== undefined) {
      clearTimer(this.#timer);
      this.#timer = undefined;
    }
    this.#timerAt = at;
    if (at !== undefined) {
      this.#timer = setTimer(() => {
        this.#timer = undefined;
        this.#timerAt = undefined;
        this.core.handleTimeout(now());
        this.pump();
      }, at - now());
    }
  }

  #kickWriter(): void {
    if (!this.#writing && !this.#transportClosed) {
      this.#writing = true;
      void this.#writeLoop();
    }
  }

  /**
   * Takes the core's next frames, at most {@link MAX_BATCH} bytes (plus one
   * frame), as the chunks {@link Transport.send} takes. Headers and
   * payloads are encoded into one new buffer, except that on a byte stream
   * a payload of {@link BY_REFERENCE} bytes or more (a view of a message
   * body the application handed over) is passed as it is, between two
   * pieces of that buffer; with message framing each frame is one chunk.
   */
  #collect(): Batch | undefined {
    const frames: Frame[] = [];
    const stream = this.transport.framing === 'stream';
    let bytes = 0;
    let copied = 0;
    while (bytes < MAX_BATCH) {
      const f = this.core.pollTransmit();
      if (f === undefined) {
        break;
      }
      frames.push(f);
      const n = f.payload.length;
      bytes += HEADER_LEN + n;
      copied += HEADER_LEN + (stream && n >= BY_REFERENCE ? 0 : n);
    }
    if (frames.length === 0) {
      return undefined;
    }
    const buf = new Uint8Array(copied);
    const chunks: Uint8Array[] = [];
    let at = 0;
    let start = 0;
    for (const f of frames) {
      if (stream && f.payload.length >= BY_REFERENCE) {
        encodeHeader(f.header, buf, at);
        at += HEADER_LEN;
        chunks.push(buf.subarray(start, at), f.payload);
        start = at;
      } else {
        at += encodeFrame(f, buf, at);
        if (!stream) {
          chunks.push(buf.subarray(start, at));
          start = at;
        }
      }
    }
    if (start < at) {
      chunks.push(buf.subarray(start, at));
    }
    return { chunks, frames: frames.length, bytes };
  }

  async #writeLoop(): Promise<void> {
    try {
      for (;;) {
        let batch: Batch | undefined;
        for (;;) {
          batch = this.#collect();
          // Polling frames can produce events (Writable) and let paused input
          // resume; routing events can queue frames (an ERROR for an unknown
          // method): take those too before going idle.
          const routed = this.#activity;
          this.#pumpNoWrite();
          if (batch !== undefined || routed === this.#activity) {
            break;
          }
        }
        if (batch === undefined) {
          if (this.core.isClosed()) {
            this.#closeTransport();
          }
          return;
        }
        this.stats.framesSent += batch.frames;
        this.stats.bytesSent += batch.bytes;
        this.stats.writes += 1;
        await this.transport.send(batch.chunks);
      }
    } catch (e) {
      // The write failed: the connection is lost.
      if (this.closeError === undefined && !this.#isClosed) {
        const msg = e instanceof Error ? e.message : String(e);
        this.closeError = new TransportError(`write failed: ${msg}`, e);
      }
      const t = now();
      this.core.handleEof(t);
      this.core.close(ErrorCode.UNAVAILABLE, 'write failed');
      while (this.core.pollTransmit() !== undefined) {
        // Nothing more can be written.
      }
      this.#abortTransport();
      this.#writing = false;
      this.pump();
    } finally {
      this.#writing = false;
    }
  }

  /** A pump that does not wake the writer (the writer calls it). */
  #pumpNoWrite(): void {
    const writing = this.#writing;
    this.#writing = true;
    try {
      this.pump();
    } finally {
      this.#writing = writing;
    }
  }

  #closeTransport(): void {
    if (this.#transportClosed) {
      return;
    }
    this.#transportClosed = true;
    if (this.#linger !== undefined) {
      clearTimer(this.#linger);
      this.#linger = undefined;
    }
    this.transport.close();
    this.#released.resolve();
  }

  #abortTransport(): void {
    if (this.#transportClosed) {
      return;
    }
    this.#transportClosed = true;
    if (this.#linger !== undefined) {
      clearTimer(this.#linger);
      this.#linger = undefined;
    }
    this.transport.abort();
    this.#released.resolve();
  }

  // ----- events -------------------------------------------------------------------

  #dispatch(): void {
    for (let e = this.core.pollEvent(); e !== undefined; e = this.core.pollEvent()) {
      this.#route(e);
    }
  }

  #route(e: ConnectionEvent): void {
    this.#activity += 1;
    switch (e.type) {
      case 'HelloReceived':
        this.#onHello(e.hello.auth, e.hello.agent);
        return;
      case 'Connected':
        this.connected.resolve();
        return;
      case 'Response': {
        const call = this.calls.get(e.id);
        if (call !== undefined) {
          this.calls.delete(e.id);
          call.resolve(e.message);
        }
        return;
      }
      case 'CallFailed': {
        const error = this.#callError(e.code, e.info, e.side);
        const call = this.calls.get(e.id);
        if (call !== undefined) {
          this.calls.delete(e.id);
          call.reject(error);
          return;
        }
        const slot = this.streams.get(e.id);
        if (slot !== undefined) {
          slot.error = error;
          slot.wake();
        }
        return;
      }
      case 'Request':
        this.#spawnUnary(e.id, e.method, e.message, e.deadline);
        return;
      case 'StreamOpened':
        this.#spawnStream(e.id, e.method, e.message, e.end, e.deadline);
        return;
      case 'StreamData': {
        const slot = this.streams.get(e.id);
        if (slot === undefined) {
          // Nobody receives on this stream any more.
          discardBody(e.message);
        } else {
          // An empty raw message with END (`finish`) only ends the half.
          const m = e.message;
          const bareEnd = e.end && bodyLength(m) === 0 && m.codec === Codec.RAW;
          if (!bareEnd) {
            const credit = bodyLength(m) + (m.uncompressedLen !== undefined ? 4 : 0);
            slot.queue.push({ message: m, credit });
          }
          if (e.end) {
            slot.end = true;
          }
          slot.wake();
        }
        return;
      }
      case 'Event':
        this.#onEvent(e.method, e.message);
        return;
      case 'Cancelled': {
        const ctx = this.#handlers.get(e.id);
        if (ctx !== undefined) {
          defer(() => ctx.abort(new RemoteError(e.code, 'cancelled by the caller')));
        }
        const slot = this.streams.get(e.id);
        if (slot !== undefined) {
          slot.error = new RemoteError(e.code, undefined);
          slot.wake();
        }
        return;
      }
      case 'Writable':
        if (e.id === undefined) {
          this.writable.wakeAll();
        } else {
          this.streams.get(e.id)?.writable.wakeAll();
        }
        return;
      case 'Pong': {
        const p = this.#pings.get(e.token);
        if (p !== undefined) {
          this.#pings.delete(e.token);
          p.resolve(e.rtt);
        }
        return;
      }
      case 'GoAway':
        // Callers waiting for room learn that no new call may start.
        this.writable.wakeAll();
        return;
      case 'Closed':
        this.#onClosed(e.error === undefined ? undefined : fromConnectionError(e.error));
        return;
    }
  }

  #callError(code: ErrorCode, info: ErrorInfo, side: 'local' | 'remote'): RpcError {
    if (code === ErrorCode.DEADLINE_EXCEEDED) {
      return side === 'remote' ? new RemoteError(code, info.message, info.details) : new DeadlineError();
    }
    if (side === 'remote') {
      return code === ErrorCode.REFUSED
        ? new RefusedCallError(code, info.message ?? 'refused by the peer')
        : new RemoteError(code, info.message, info.details);
    }
    if (this.closeError !== undefined) {
      return this.closeError;
    }
    const ce = this.core.closeError();
    return ce !== undefined ? fromConnectionError(ce) : new ConnectionClosedError(code, info.message);
  }

  #onClosed(error: RpcError | undefined): void {
    if (this.closeError === undefined) {
      this.closeError = error;
    }
    this.#isClosed = true;
    const reason = this.closedError();
    this.connected.reject(reason);
    for (const call of this.calls.values()) {
      call.reject(reason);
    }
    this.calls.clear();
    for (const slot of this.streams.values()) {
      if (slot.error === undefined && !slot.end) {
        slot.error = reason;
      }
      slot.wake();
    }
    for (const ctx of this.#handlers.values()) {
      defer(() => ctx.abort(reason));
    }
    for (const p of this.#pings.values()) {
      p.reject(reason);
    }
    this.#pings.clear();
    this.writable.wakeAll();
    this.#closed.resolve(this.closeError);
    // The writer sends what is left (a GOAWAY) and then closes the transport;
    // a transport that never takes it is dropped after a while.
    if (!this.#transportClosed) {
      this.#linger = setTimer(() => {
        this.#linger = undefined;
        this.#abortTransport();
      }, LINGER_MS);
      unref(this.#linger);
    }
    if (this.#timer !== undefined) {
      clearTimer(this.#timer);
      this.#timer = undefined;
      this.#timerAt = undefined;
    }
  }

  #onHello(auth: Uint8Array | undefined, agent: string | undefined): void {
    const authenticate = this.#options.authenticate;
    if (authenticate === undefined) {
      this.core.accept();
      return;
    }
    const decide = async (): Promise<void> => {
      let code: ErrorCode = ErrorCode.UNAUTHENTICATED;
      let reason: string | undefined = 'unauthenticated';
      let ok = false;
      try {
        ok = (await authenticate({ auth, transport: this.transport.info, agent })) !== false;
      } catch (e) {
        const s = e instanceof Status ? e : undefined;
        if (s !== undefined && s.code !== ErrorCode.NO_ERROR) {
          code = s.code;
          reason = s.statusMessage;
        }
      }
      if (this.core.isClosed()) {
        return;
      }
      try {
        if (ok) {
          this.core.accept();
        } else {
          this.core.refuse(code, reason);
        }
      } catch {
        // The handshake ended meanwhile (timeout).
      }
      this.pump();
    };
    void decide();
  }

  #onEvent(method: number, msg: Message): void {
    const handler = this.router.eventHandler(method);
    if (handler === undefined) {
      this.stats.eventsDropped += 1;
      discardBody(msg);
      return;
    }
    let q = this.#events.get(method);
    if (q === undefined) {
      q = { queue: new Queue<Message>(), running: false };
      this.#events.set(method, q);
    }
    if (q.queue.length >= this.#eventQueueMax) {
      this.stats.eventsDropped += 1;
      discardBody(msg);
      return;
    }
    q.queue.push(msg);
    if (!q.running) {
      q.running = true;
      const queue = q;
      defer(() => void this.#runEvents(method, handler, queue));
    }
  }

  async #runEvents(method: number, handler: (ctx: CallContext, m: Message) => unknown, q: EventQueue): Promise<void> {
    for (let m = q.queue.shift(); m !== undefined; m = q.queue.shift()) {
      const ctx = new HandlerContext(0, method, undefined, this.connection);
      try {
        await handler(ctx, m);
      } catch {
        // An event handler's failure concerns nobody else.
      }
    }
    q.running = false;
  }

  #spawnUnary(id: number, method: number, msg: Message, deadline: number | undefined): void {
    if (method === REAUTHENTICATE) {
      // Checks the credentials themselves: not subject to the authorizer.
      this.#reauthenticate(id, msg);
      return;
    }
    if (this.#denied(id, method)) {
      return;
    }
    if (method === LIST_SERVICES) {
      this.#listServices(id);
      return;
    }
    const handler = this.router.unaryHandler(method);
    if (handler === undefined) {
      this.core.sendError(id, ErrorCode.UNKNOWN_METHOD, { message: `no handler for method ${method}` });
      return;
    }
    const ctx = new HandlerContext(id, method, deadline, this.connection);
    this.#handlers.set(id, ctx);
    defer(() => {
      void (async () => {
        let outcome: { ok: true; reply: Message } | { ok: false; status: Status };
        try {
          const value = await handler(ctx, msg);
          try {
            outcome = { ok: true, reply: replyMessage(value) };
          } catch {
            // Not a reply: the handler's fault, not the caller's argument.
            outcome = { ok: false, status: new Status(ErrorCode.INTERNAL, 'handler failed') };
          }
        } catch (e) {
          outcome = { ok: false, status: Status.from(e) };
        }
        this.#handlers.delete(id);
        // A cancelled call's answer sends nothing and frees its slot.
        try {
          if (outcome.ok) {
            try {
              this.core.sendResponse(id, outcome.reply);
            } catch (e) {
              if (!(e instanceof MessageTooLargeError)) {
                throw e;
              }
              this.core.sendError(id, ErrorCode.TOO_LARGE, {
                message: `response of ${e.len} bytes exceeds the limit ${e.max}`,
              });
            }
          } else {
            this.#sendStatus(id, outcome.status);
          }
        } catch {
          // The call ended meanwhile (connection closed).
        }
        this.pump();
      })();
    });
  }

  /**
   * Answers the built-in REAUTHENTICATE (`docs/PROTOCOL.md` §10.4): the
   * `authenticate` hook decides on the new payload as on a HELLO (with
   * `reauthenticate: true`); without a hook the method is unknown.
   */
  #reauthenticate(id: number, msg: Message): void {
    const authenticate = this.#options.authenticate;
    const answer = (status: Status | undefined): void => {
      try {
        if (status === undefined) {
          this.core.sendResponse(id, makeMessage(Codec.RAW, new Uint8Array(0)));
        } else {
          this.#sendStatus(id, status);
        }
      } catch {
        // The call ended meanwhile (connection closed).
      }
      this.pump();
    };
    if (authenticate === undefined) {
      answer(new Status(ErrorCode.UNKNOWN_METHOD, 'this endpoint does not authenticate'));
      return;
    }
    void (async () => {
      let status: Status | undefined;
      try {
        const request = { auth: msg.body, transport: this.transport.info, agent: undefined, reauthenticate: true };
        if ((await authenticate(request)) === false) {
          status = new Status(ErrorCode.UNAUTHENTICATED, 'unauthenticated');
        }
      } catch (e) {
        const s = e instanceof Status && e.code !== ErrorCode.NO_ERROR ? e : undefined;
        status = s ?? new Status(ErrorCode.UNAUTHENTICATED, 'unauthenticated');
      }
      answer(status);
    })();
  }

  /**
   * Answers the built-in LIST_SERVICES (`docs/PROTOCOL.md` §10.4) with the
   * services this endpoint offers and uses, whatever handlers the router has.
   */
  #listServices(id: number): void {
    const list = {
      offers: this.#options.offers ?? this.#options.services ?? [],
      uses: this.#options.uses ?? [],
    };
    try {
      try {
        this.core.sendResponse(id, makeMessage(Codec.FLATBUFFERS, encodeServiceList(list)));
      } catch (e) {
        if (!(e instanceof MessageTooLargeError)) {
          throw e;
        }
        this.core.sendError(id, ErrorCode.TOO_LARGE, { message: `response of ${e.len} bytes exceeds the limit ${e.max}` });
      }
    } catch {
      // The call ended meanwhile (connection closed).
    }
  }

  /** Answers a call the authorizer denies; `true` when it did. */
  #denied(id: number, method: number): boolean {
    const authorize = this.#options.authorize;
    if (authorize === undefined) {
      return false;
    }
    let status: Status;
    try {
      if (authorize({ method, connection: this.connection }) !== false) {
        return false;
      }
      status = new Status(ErrorCode.PERMISSION_DENIED, `not allowed to call method ${method}`);
    } catch (e) {
      status = e instanceof Status ? e : new Status(ErrorCode.PERMISSION_DENIED, 'authorization failed');
    }
    try {
      this.#sendStatus(id, status);
    } catch {
      // The call ended meanwhile (connection closed).
    }
    return true;
  }

  #sendStatus(id: number, status: Status): void {
    const code = status.code === ErrorCode.NO_ERROR ? ErrorCode.INTERNAL : status.code;
    this.core.sendError(id, code, { message: status.statusMessage, details: status.details });
  }

  #spawnStream(id: number, method: number, msg: Message, end: boolean, deadline: number | undefined): void {
    if (this.#denied(id, method)) {
      return;
    }
    const handler = this.router.streamHandler(method);
    if (handler === undefined) {
      this.core.sendError(id, ErrorCode.UNKNOWN_METHOD, { message: `no stream handler for method ${method}` });
      return;
    }
    this.streams.set(id, new StreamSlot(end, false));
    const ctx = new HandlerContext(id, method, deadline, this.connection);
    this.#handlers.set(id, ctx);
    const rx = new RecvStream(this, id, false);
    const tx = new SendStream(this, id);
    defer(() => {
      void (async () => {
        let status: Status | undefined;
        try {
          await handler(ctx, msg, rx, tx);
        } catch (e) {
          status = Status.from(e);
        }
        this.#handlers.delete(id);
        if (status === undefined) {
          // Ends our half, unless the handler did (or the stream is gone).
          await this.#finishRemote(id, tx);
        } else {
          try {
            this.#sendStatus(id, status);
          } catch {
            // The stream ended meanwhile.
          }
        }
        // A receive the handler left pending learns that the stream is over.
        this.streams.get(id)?.wake();
        this.streams.delete(id);
        this.pump();
      })();
    });
  }

  /** `finish` on a stream the peer opened, waiting while the send queue is full. */
  async #finishRemote(id: number, tx: SendStream): Promise<void> {
    if (tx.finished) {
      return;
    }
    for (;;) {
      try {
        this.core.finish(id);
        return;
      } catch (e) {
        if (!(e instanceof BlockedError) || this.core.isClosed()) {
          return;
        }
      }
      this.pump();
      await waitFor((w) => this.writable.add(w), undefined, undefined);
    }
  }

  // ----- commands -------------------------------------------------------------------

  /**
   * Runs `op` on the core now: its value, or {@link BLOCKED} when the core
   * has no room (`op` threw `BlockedError`).
   */
  tryNow<T>(op: () => T, signal: AbortSignalLike | undefined, deadlineAt: number | undefined): T | typeof BLOCKED {
    if (this.core.isClosed()) {
      // Nothing was sent: the call is safe to retry elsewhere.
      const closed = this.closedError();
      throw new RefusedCallError(ErrorCode.UNAVAILABLE, `not sent: ${closed.detail ?? 'connection closed'}`, closed);
    }
    checkAborted(signal);
    if (deadlineAt !== undefined && now() >= deadlineAt) {
      throw new DeadlineError('no room to send before the deadline');
    }
    try {
      const v = op();
      this.pump();
      return v;
    } catch (e) {
      if (!(e instanceof BlockedError)) {
        throw fromSend(e);
      }
    }
    this.stats.creditStalls += 1;
    this.pump();
    return BLOCKED;
  }

  /**
   * Runs `op` on the core, waiting for room while it reports `BlockedError`;
   * `blocked`: a {@link tryNow} just found no room, so wait first.
   */
  async withRoom<T>(
    op: () => T,
    signal: AbortSignalLike | undefined,
    deadlineAt: number | undefined,
    blocked = false,
  ): Promise<T> {
    for (;;) {
      if (!blocked) {
        const v = this.tryNow(op, signal, deadlineAt);
        if (v !== BLOCKED) {
          return v;
        }
      }
      blocked = false;
      await waitFor((w) => this.writable.add(w), signal, deadlineAt);
    }
  }

  ping(): Promise<number> {
    let token: bigint;
    try {
      token = this.core.ping();
    } catch (e) {
      if (this.core.isClosed()) {
        return Promise.reject(this.closedError());
      }
      return Promise.reject(new LocalError(ErrorCode.UNAVAILABLE, e instanceof Error ? e.message : String(e), e));
    }
    const d = deferred<number>();
    this.#pings.set(token, d);
    this.pump();
    return d.promise;
  }
}

/** One end of a stream's messages: an async iterable that grants credit back as each message is taken. */
export class RecvStream implements AsyncIterable<Message> {
  readonly #driver: Driver;
  readonly #openedHere: boolean;
  #done = false;

  /** @internal */
  constructor(driver: Driver, id: number, openedHere: boolean) {
    this.#driver = driver;
    this.id = id;
    this.#openedHere = openedHere;
  }

  /** The stream id. */
  readonly id: number;

  /**
   * The next message, `undefined` once the peer ended its half. Taking a
   * message returns its bytes of credit to the peer.
   *
   * @throws {RpcError} when the stream failed (the peer's error, cancel,
   *   deadline, or the connection's end).
   */
  async next(): Promise<Message | undefined> {
    const d = this.#driver;
    for (;;) {
      if (this.#done) {
        return undefined;
      }
      const slot = d.streams.get(this.id);
      if (slot === undefined) {
        this.#finish(undefined);
        return undefined;
      }
      const item = slot.queue.shift();
      if (item !== undefined) {
        try {
          d.core.grantCredit(this.id, item.credit);
        } catch (e) {
          if (!(e instanceof ApiError)) {
            throw e;
          }
          // The stream is over in the core; nothing to grant.
        }
        d.pump();
        return item.message;
      }
      if (slot.end) {
        this.#finish(slot);
        return undefined;
      }
      if (slot.error !== undefined) {
        const error = slot.error;
        this.#finish(slot);
        throw error;
      }
      await new Promise<void>((resolve) => slot.recv.add(resolve));
    }
  }

  #finish(slot: StreamSlot | undefined): void {
    this.#done = true;
    if (slot !== undefined && this.#openedHere) {
      slot.rxDone = true;
      if (slot.txDone || slot.error !== undefined) {
        this.#driver.streams.delete(this.id);
      }
    }
  }

  /**
   * Stops receiving. On a stream we opened that the peer has not ended,
   * the peer gets CANCEL and our sending half fails too. On a stream the
   * peer opened this only stops iteration (the handler's return ends it).
   */
  cancel(): void {
    if (this.#done) {
      return;
    }
    this.#done = true;
    const d = this.#driver;
    if (!this.#openedHere) {
      return;
    }
    const slot = d.streams.get(this.id);
    const ended = slot === undefined || (slot.end && slot.queue.length === 0) || slot.error !== undefined;
    if (!ended && !d.core.isClosed()) {
      try {
        d.core.cancel(this.id);
      } catch {
        // Already over in the core.
      }
    }
    if (slot !== undefined) {
      slot.rxDone = true;
      slot.error ??= new AbortedError('stream cancelled');
      for (let item = slot.queue.shift(); item !== undefined; item = slot.queue.shift()) {
        discardBody(item.message);
      }
      slot.wake();
    }
    d.streams.delete(this.id);
    d.pump();
  }

  /** Iterates the messages; leaving the loop early (`break`) cancels a stream we opened. */
  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return {
      next: async (): Promise<IteratorResult<Message>> => {
        const m = await this.next();
        return m === undefined ? { done: true, value: undefined } : { done: false, value: m };
      },
      return: async (): Promise<IteratorResult<Message>> => {
        this.cancel();
        return { done: true, value: undefined };
      },
    };
  }
}

/** The sending half of a stream; it waits while the peer's credit is spent. */
export class SendStream {
  readonly #driver: Driver;
  #finished = false;

  /** @internal */
  constructor(driver: Driver, id: number) {
    this.#driver = driver;
    this.id = id;
  }

  /** The stream id. */
  readonly id: number;

  /** Whether our half has ended. */
  get finished(): boolean {
    return this.#finished;
  }

  async #send(msg: Message, end: boolean, signal: AbortSignalLike | undefined): Promise<void> {
    if (this.#finished) {
      throw new LocalError(ErrorCode.STREAM_CLOSED, "the stream's sending half is finished");
    }
    const d = this.#driver;
    const id = this.id;
    for (;;) {
      const slot = d.streams.get(id);
      if (slot?.error !== undefined) {
        throw slot.error;
      }
      if (d.core.isClosed()) {
        throw d.closedError();
      }
      checkAborted(signal);
      try {
        d.core.sendStreamData(id, msg, end);
        if (end) {
          this.#finished = true;
          if (slot !== undefined) {
            slot.txDone = true;
            if (slot.rxDone) {
              d.streams.delete(id);
            }
          }
        }
        d.pump();
        return;
      } catch (e) {
        if (e instanceof SendUnknownCallError) {
          throw new ConnectionClosedError(ErrorCode.STREAM_CLOSED, 'the stream has ended', e);
        }
        if (!(e instanceof BlockedError)) {
          throw fromSend(e);
        }
        d.stats.creditStalls += 1;
      }
      d.pump();
      await waitFor(
        (wake) => {
          const a = d.writable.add(wake);
          const b = slot?.writable.add(wake);
          return () => {
            a();
            b?.();
          };
        },
        signal,
        undefined,
      );
    }
  }

  /** Sends a message, waiting while the peer's credit is spent. */
  send(payload: Payload, options: SendOptions = {}): Promise<void> {
    return this.#send(toMessage(payload, options.codec), false, options.signal);
  }

  /** Sends a last message and ends our half of the stream. */
  sendLast(payload: Payload, options: SendOptions = {}): Promise<void> {
    return this.#send(toMessage(payload, options.codec), true, options.signal);
  }

  /** Ends our half of the stream (idempotent). */
  async finish(): Promise<void> {
    if (this.#finished) {
      return;
    }
    await this.#send(makeMessage(Codec.RAW, EMPTY), true, undefined);
  }
}

/** A stream we opened: our sender and the peer's messages. */
export interface StreamPair {
  /** The stream id. */
  readonly id: number;
  /** Our half: `send`, then `finish`. */
  readonly tx: SendStream;
  /** The peer's half. */
  readonly rx: RecvStream;
}

/** Options of `openStream` and `serverStream`. */
export interface StreamOptions {
  /** Deadline for the whole stream (ms), as for calls. */
  timeoutMs?: number | undefined;
  /** Cancels the stream at the peer. */
  signal?: AbortSignalLike | undefined;
  /** Codec of a bytes or string opening message. */
  codec?: Codec | undefined;
}

/** A gatewire connection: calls, events and streams in both directions over one transport. */
export class Connection {
  readonly #d: Driver;

  /** @internal Use {@link connect} or a server. */
  constructor(driver: Driver) {
    this.#d = driver;
  }

  /** What the peer agreed to in the handshake. */
  get peer(): Readonly<PeerInfo> | undefined {
    return this.#d.core.peer();
  }

  /** What the transport knows about the peer. */
  get transportInfo(): TransportInfo {
    return this.#d.transport.info;
  }

  /** Whether the connection has ended. */
  get isClosed(): boolean {
    return this.#d.isClosed;
  }

  /** Settles when the connection has ended: with why, or `undefined` for a graceful end. Never rejects. */
  get closed(): Promise<RpcError | undefined> {
    return this.#d.closed;
  }

  /** Counters, and calls in flight in each direction. */
  stats(): Stats {
    const [callsOut, callsIn] = this.#d.core.callsInFlight();
    return { ...this.#d.stats, callsOut, callsIn };
  }

  /**
   * Calls `method` and resolves with the response.
   *
   * @throws {RpcError} {@link RemoteError} (the peer's code), {@link DeadlineError},
   *   {@link AbortedError}, {@link RefusedCallError} (safe to retry),
   *   {@link ConnectionClosedError}, {@link LocalError}.
   */
  call(method: number, payload: Payload, options: CallOptions = {}): Promise<Message> {
    try {
      const d = this.#d;
      const msg = toMessage(payload, options.codec);
      const { signal, timeoutMs } = options;
      checkTimeout(timeoutMs);
      checkAborted(signal);
      const deadlineAt = timeoutMs === undefined ? undefined : now() + timeoutMs;
      const result = deferred<Message>();
      const pending: PendingCall = { resolve: result.resolve, reject: result.reject };
      const op = (): number => {
        const remaining = deadlineAt === undefined ? undefined : Math.max(0, deadlineAt - now());
        const id = d.core.sendRequest(method, msg, remaining);
        d.calls.set(id, pending);
        return id;
      };
      if (signal !== undefined) {
        return this.#callWithSignal(op, result, pending, signal, deadlineAt);
      }
      // The usual case, room to send now: the response settles the one
      // promise returned.
      if (d.tryNow(op, undefined, deadlineAt) !== BLOCKED) {
        return result.promise;
      }
      return d.withRoom(op, undefined, deadlineAt, true).then(() => result.promise);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #callWithSignal(
    op: () => number,
    result: Deferred<Message>,
    pending: PendingCall,
    signal: AbortSignalLike,
    deadlineAt: number | undefined,
  ): Promise<Message> {
    const d = this.#d;
    void result.promise.catch(() => undefined);
    const id = await d.withRoom(op, signal, deadlineAt);
    const onAbort = (): void => {
      if (d.calls.get(id) === pending) {
        d.calls.delete(id);
        try {
          d.core.cancel(id);
        } catch {
          // Already over in the core.
        }
        d.pump();
      }
      result.reject(new AbortedError(signal.reason));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) {
      onAbort();
    }
    try {
      return await result.promise;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Sends a one-way event (waits while the send queue is full). */
  async emit(method: number, payload: Payload, options: SendOptions = {}): Promise<void> {
    const d = this.#d;
    const msg = toMessage(payload, options.codec);
    await d.withRoom(() => d.core.sendEvent(method, msg), options.signal, undefined);
  }

  async #open(method: number, opening: Payload, options: StreamOptions, end: boolean): Promise<number> {
    const d = this.#d;
    const msg = toMessage(opening, options.codec);
    const { signal, timeoutMs } = options;
    checkTimeout(timeoutMs);
    checkAborted(signal);
    const deadlineAt = timeoutMs === undefined ? undefined : now() + timeoutMs;
    return d.withRoom(
      () => {
        const remaining = deadlineAt === undefined ? undefined : Math.max(0, deadlineAt - now());
        const id = d.core.openStream(method, msg, remaining, end);
        d.streams.set(id, new StreamSlot(false, end));
        return id;
      },
      signal,
      deadlineAt,
    );
  }

  #watch(rx: RecvStream, signal: AbortSignalLike | undefined): void {
    if (signal === undefined) {
      return;
    }
    const onAbort = (): void => rx.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) {
      onAbort();
    }
  }

  /**
   * Opens a stream to `method` with an opening message (empty by default).
   * Send with `tx` (and `finish` it: there is no destructor to do it for
   * you), receive from `rx`; leaving `rx`'s loop early cancels the stream.
   */
  async openStream(method: number, opening: Payload = EMPTY, options: StreamOptions = {}): Promise<StreamPair> {
    const id = await this.#open(method, opening, options, false);
    const rx = new RecvStream(this.#d, id, true);
    this.#watch(rx, options.signal);
    return { id, tx: new SendStream(this.#d, id), rx };
  }

  /** Opens a stream only the peer sends on (server streaming): `request` is the opening message. */
  async serverStream(method: number, request: Payload = EMPTY, options: StreamOptions = {}): Promise<RecvStream> {
    const id = await this.#open(method, request, options, true);
    const rx = new RecvStream(this.#d, id, true);
    this.#watch(rx, options.signal);
    return rx;
  }

  /**
   * Renews this connection's credentials (for instance a fresh JWT before
   * the current one expires) without reconnecting: the built-in
   * REAUTHENTICATE method (`docs/PROTOCOL.md` §10.4). The server checks
   * `auth` as in the handshake and requires the same subject.
   *
   * @throws {RemoteError} `UNAUTHENTICATED` when refused (the connection keeps
   *   its identity), `UNKNOWN_METHOD` when the server does not authenticate.
   */
  async reauthenticate(auth: Uint8Array | string): Promise<void> {
    await this.call(REAUTHENTICATE, auth);
  }

  /** Sends a PING; resolves with the round-trip time in ms. */
  ping(): Promise<number> {
    return this.#d.ping();
  }

  /**
   * Shuts down gracefully: the peer is told to open nothing new, calls in
   * flight in both directions finish (within the drain timeout), then the
   * connection closes. Resolves once it has and the transport is released.
   */
  async close(): Promise<void> {
    const d = this.#d;
    if (!d.core.isClosed()) {
      d.shuttingDown = true;
      d.core.close(ErrorCode.NO_ERROR);
      d.pump();
    }
    await d.closed;
    await d.released;
  }

  /** Closes at once with `code` (`NO_ERROR` is sent as `UNAVAILABLE`); every call in flight fails. */
  abort(code: ErrorCode = ErrorCode.UNAVAILABLE, reason = 'aborted'): void {
    const d = this.#d;
    if (!d.core.isClosed()) {
      d.core.close(code === ErrorCode.NO_ERROR ? ErrorCode.UNAVAILABLE : code, reason);
      d.pump();
    }
  }
}

/**
 * Drives an established transport: the handshake as `role`, then calls in
 * both directions. Resolves once the handshake completed.
 *
 * @throws {RpcError} when the handshake fails or is refused
 *   ({@link ConnectionClosedError} with the refusal code), or `signal` fires.
 */
export async function startConnection(
  transport: Transport,
  role: Role,
  options: AcceptOptions & { auth?: Uint8Array | undefined; signal?: AbortSignalLike | undefined } = {},
): Promise<Connection> {
  let driver: Driver;
  try {
    driver = new Driver(transport, role, options);
  } catch (e) {
    transport.abort();
    throw e;
  }
  driver.start();
  const signal = options.signal;
  const onAbort = (): void => {
    driver.connected.reject(new AbortedError(signal?.reason));
    driver.connection.abort(ErrorCode.CANCELLED, 'connect aborted');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted === true) {
    onAbort();
  }
  try {
    await driver.connected.promise;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return driver.connection;
}

function authBytes(auth: Uint8Array | string | undefined): Uint8Array | undefined {
  return typeof auth === 'string' ? utf8Encode(auth) : auth;
}

/** The handshake timeout of `options` (ms). */
export function handshakeTimeout(options: ConnectionOptions): number {
  return options.timeouts?.handshake ?? 10_000;
}

/**
 * Connects to `target` — an endpoint URL, dialled by `options.dialer`
 * (default: `WebSocket` for `ws://` and `wss://`; `gatewire/node` adds
 * `tcp://` and `unix://`), or an established {@link Transport} — and
 * completes the handshake.
 */
export async function connect(target: string | Transport, options: ConnectOptions = {}): Promise<Connection> {
  if (options.compression === true) {
    throw new ConfigError(
      'zstd compression is not supported by the TypeScript package: no browser has a zstd decoder with capped output',
    );
  }
  checkAborted(options.signal);
  let transport: Transport;
  if (typeof target === 'string') {
    const dialer: Dialer =
      options.dialer ??
      ((url, o) => dialWebSocket(url, { timeoutMs: o.timeoutMs, signal: o.signal, WebSocket: options.WebSocket }));
    transport = await dialer(target, {
      timeoutMs: handshakeTimeout(options),
      signal: options.signal,
      maxFrame: options.limits?.maxFrame ?? 1 << 20,
    });
  } else {
    transport = target;
  }
  return startConnection(transport, 'client', { ...options, auth: authBytes(options.auth) });
}

/** Serves one accepted transport with `router` (what servers do for each client). */
export function acceptConnection(transport: Transport, options: AcceptOptions = {}): Promise<Connection> {
  return startConnection(transport, 'server', options);
}
