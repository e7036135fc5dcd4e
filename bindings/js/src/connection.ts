/**
 * The connection state machine (a port of `gatewire-proto`'s
 * `connection` module; the Rust code is the source of truth).
 *
 * A {@link Connection} holds everything one gatewire connection knows: the
 * handshake, the table of calls and streams in both directions, credit
 * windows, reassembly of fragmented messages, keepalive and the two-phase
 * shutdown. It never performs I/O, never reads a clock and never awaits:
 * time comes in as milliseconds since any origin the runtime chooses.
 *
 * ## Polling order
 *
 * After every input (`handleBytes`, `handleFrame`, `handleEof`,
 * `handleTimeout`) or command (`sendRequest`, `cancel`, `close`...):
 *
 * 1. {@link Connection.pollTransmit} until `undefined`, writing each frame;
 * 2. {@link Connection.pollEvent} until `undefined`, delivering each event;
 * 3. {@link Connection.pollTimeout}, arming one timer that calls
 *    {@link Connection.handleTimeout}.
 *
 * Reading more input is allowed while {@link Connection.wantsRead} is true.
 * The core stops consuming input on its own when too many control replies or
 * undelivered events are queued, and resumes as they drain: this is how a
 * peer that floods PINGs or tiny events is held to bounded memory.
 *
 * ## Errors
 *
 * Commands throw: {@link SendError} subclasses (`BlockedError` means "retry
 * after a `Writable` event"; nothing changed) and {@link ApiError}
 * subclasses for misuse. Network input never throws: a broken peer ends the
 * connection with a `Closed` event carrying a {@link ConnectionError}.
 *
 * ## Buffers
 *
 * Received payloads are zero-copy views of the input where they lie whole
 * in one array given to `handleBytes` or `handleFrame` (so do not modify
 * those afterwards); the receive buffer never overwrites bytes it has
 * handed out. Input may be lent (`handleBytes` with a `release` callback):
 * it is given back once nothing refers to it, which happens when the bytes
 * were copied (short frames) and never when a view of them went to the
 * application. A message reassembled from several fragments keeps its
 * pieces until the application reads its body (they are gathered then) or
 * moves it ({@link moveBody}); the input is given back then. Message
 * bodies passed to `send*` are kept by reference, and
 * the frames' payloads are views of them, which the driver may hand to the
 * transport as they are: never modify a body after sending it.
 *
 * @module
 */

import { decodeExact, FrameDecoder, gather, newFrame, ReadBuffer, type Frame } from './codec.js';
import {
  decodeErrorInfo,
  decodeGoAway,
  decodeHello,
  decodeHelloAck,
  emptyAdvertisedLimits,
  encodeErrorInfo,
  encodeGoAway,
  encodeHello,
  encodeHelloAck,
  cloneService,
  utf8Decode,
  utf8Encode,
  type AdvertisedLimits,
  type ErrorInfo,
  type Hello,
  type Service,
} from './control.js';
import {
  BlockedError,
  BudgetExhaustedError,
  ClosedError,
  ClosingError,
  CompressionNotNegotiatedViolation,
  ConnectionError,
  ConnectionLostError,
  ControlError,
  ControlFailedError,
  FlowControlError,
  IncompatibleError,
  FrameError,
  GoAwayIncreasedViolation,
  IdNotIncreasingViolation,
  IdsExhaustedError,
  InterleavedMessageViolation,
  InvalidArgumentError,
  InvalidPeerLimitViolation,
  InvalidStateError,
  LimitExceededError,
  LocalCloseError,
  MalformedError,
  MessageTooLargeError,
  ProtocolViolationError,
  RefusedError,
  RemoteCloseError,
  SendUnknownCallError,
  ShortPreludeViolation,
  TimeoutError,
  UnexpectedFrameViolation,
  UnknownCallError,
  UnopenedIdViolation,
  VersionNotOfferedViolation,
  Violation,
  WrongParityViolation,
  type Side,
} from './errors.js';
import { check as checkServices } from './services.js';
import { MAX_FRAME_CEILING, newHeader, PING_PAYLOAD_LEN, U32_MAX, type Header } from './frame.js';
import {
  defaultLimits,
  defaultTimeouts,
  MAX_WINDOW,
  MIN_FRAME,
  validateLimits,
  validateTimeouts,
  type Limits,
  type Timeouts,
} from './limits.js';
import { Codec, ErrorCode, Flags, FrameType, hasFlag, isMessageType, opensId } from './wire.js';

export type { Side } from './errors.js';

/** The protocol version this package implements. */
export const PROTOCOL_VERSION = 1;

/** The compression algorithm id of zstd in HELLO and HELLO_ACK. */
export const COMPRESSION_ZSTD = 1;

/** Maximum outstanding {@link Connection.ping} probes. */
export const MAX_USER_PINGS = 16;

/** Undelivered events after which input is paused until they are polled. */
export const MAX_PENDING_EVENTS = 1024;

/**
 * Longest reason string we put in GOAWAY, a refusal or a shortened ERROR, in
 * UTF-8 bytes: well under the smallest frame limit a peer may advertise.
 */
export const MAX_REASON_LEN = 256;

/**
 * Calls this endpoint ended that it remembers, so frames the peer had in
 * flight for them are not charged as strays.
 */
export const MAX_ENDED_HERE = 1024;

/**
 * Smallest non-final fragment a sender emits: a frame that credit would cut
 * shorter waits for more credit instead.
 */
export const MIN_FRAGMENT = 256;

/**
 * Fragments a message of at most `maxMessage` bytes may span: every
 * non-final fragment carries at least {@link MIN_FRAGMENT} bytes.
 */
export function maxFragments(maxMessage: number): number {
  return Math.floor(maxMessage / MIN_FRAGMENT) + 2;
}

const PING_TOKEN_GOAWAY_BIT = 1n << 63n;
const PING_TOKEN_MASK = PING_TOKEN_GOAWAY_BIT - 1n;
const EMPTY: Uint8Array = new Uint8Array(0);

/**
 * Which end of the connection this is. The client sends HELLO and opens odd
 * ids; the server answers HELLO_ACK and opens even ids. Once connected both
 * may call the other.
 */
export type Role = 'client' | 'server';

/** A message body with its codec tag. */
export interface Message {
  /** Payload codec (`u8`). */
  codec: Codec;
  /** The body exactly as received: still compressed when `uncompressedLen` is set. */
  body: Uint8Array;
  /**
   * For a compressed body, the declared size after decompression (already
   * checked against the message limit). The runtime decompresses with its
   * output capped to this size.
   */
  uncompressedLen?: number | undefined;
}

/**
 * A message reassembled from several fragments. Its body stays in the
 * pieces it arrived in (lent input among them) until it is first read,
 * when they are gathered into one new array and the input is given back;
 * or until {@link moveBody} copies the pieces straight into the caller's
 * buffer. `body` is an own enumerable property (an accessor), so spreading
 * or cloning the message reads it.
 */
class PiecedMessage implements Message {
  readonly codec: Codec;
  readonly uncompressedLen: number | undefined;
  declare body: Uint8Array;
  #parts: readonly Uint8Array[] | undefined;
  readonly #length: number;
  #releases: (() => void)[];
  #body: Uint8Array = EMPTY;

  constructor(
    codec: Codec,
    uncompressedLen: number | undefined,
    parts: readonly Uint8Array[],
    length: number,
    releases: (() => void)[],
  ) {
    this.codec = codec;
    this.uncompressedLen = uncompressedLen;
    this.#parts = parts;
    this.#length = length;
    this.#releases = releases;
    Object.defineProperty(this, 'body', {
      enumerable: true,
      get: (): Uint8Array => this.#gathered(),
      set: (body: Uint8Array): void => this.#settle(body),
    });
  }

  /** The body's length, without gathering it. */
  size(): number {
    return this.#parts !== undefined ? this.#length : this.#body.length;
  }

  #gathered(): Uint8Array {
    const parts = this.#parts;
    if (parts !== undefined) {
      // A copy even of a lone piece: the lent input it lies in is given back.
      this.#settle(parts.length === 1 ? (parts[0] as Uint8Array).slice() : gather(parts, this.#length));
    }
    return this.#body;
  }

  /** Copies the body (its pieces, else the array it settled in) to `target` at `offset`, which then holds it. */
  moveInto(target: Uint8Array, offset: number): Uint8Array {
    const parts = this.#parts;
    const length = this.size();
    if (parts === undefined) {
      target.set(this.#body, offset);
    } else {
      let at = offset;
      for (const p of parts) {
        target.set(p, at);
        at += p.length;
      }
    }
    const view = target.subarray(offset, offset + length);
    this.#settle(view);
    return view;
  }

  /** Gives the lent input back without reading the body: for a message the application never sees. */
  discard(): void {
    this.#settle(EMPTY);
  }

  /** `body` is the body from now on; the pieces are dropped and the lent input given back. */
  #settle(body: Uint8Array): void {
    this.#body = body;
    this.#parts = undefined;
    const releases = this.#releases;
    this.#releases = [];
    for (const r of releases) {
      r();
    }
  }
}

/** The length of `m`'s body, without gathering a body still in pieces. */
export function bodyLength(m: Message): number {
  return m instanceof PiecedMessage ? m.size() : m.body.length;
}

/**
 * Gives back the lent input a received message's body still lies in, for
 * a message the application will never see (dropped by the driver).
 * Nothing may read the message's body afterwards.
 */
export function discardBody(m: Message): void {
  if (m instanceof PiecedMessage) {
    m.discard();
  }
}

/**
 * Copies `m`'s body into `target` at `offset` and returns the view of it
 * there; `m.body` is that view from then on (so it changes if `target`
 * is overwritten). The body is copied as received: still compressed when
 * `uncompressedLen` is set. A body that arrived in several fragments is
 * copied from the pieces it arrived in, once, without first being
 * gathered into an array of its own (and the input it lay in is given
 * back): for receiving a large upload into one buffer the application
 * keeps. Moving a body again copies it from where it was moved.
 *
 * @throws {TypeError} when `target` is not a `Uint8Array`.
 * @throws {RangeError} when the body does not fit in `target` at `offset`
 *   (nothing is copied then).
 */
export function moveBody(m: Message, target: Uint8Array, offset = 0): Uint8Array {
  if (!(target instanceof Uint8Array)) {
    throw new TypeError('moveBody: the target must be a Uint8Array');
  }
  const length = bodyLength(m);
  if (!Number.isInteger(offset) || offset < 0 || offset + length > target.length) {
    throw new RangeError(`a body of ${length} bytes does not fit at offset ${offset} of ${target.length} bytes`);
  }
  if (m instanceof PiecedMessage) {
    return m.moveInto(target, offset);
  }
  target.set(m.body, offset);
  const view = target.subarray(offset, offset + length);
  m.body = view;
  return view;
}

/** An uncompressed message. */
export function message(codec: Codec, body: Uint8Array): Message {
  return { codec, body, uncompressedLen: undefined };
}

/** Opaque bytes (`Codec.RAW`). */
export function rawMessage(body: Uint8Array): Message {
  return message(Codec.RAW, body);
}

/** A FlatBuffers buffer (`Codec.FLATBUFFERS`). */
export function flatbuffersMessage(body: Uint8Array): Message {
  return message(Codec.FLATBUFFERS, body);
}

/** A message whose body is already zstd-compressed from `uncompressedLen` bytes. */
export function compressedMessage(codec: Codec, body: Uint8Array, uncompressedLen: number): Message {
  return { codec, body, uncompressedLen };
}

/** What the peer agreed to in the handshake. */
export interface PeerInfo {
  /** The negotiated protocol version. */
  version: number;
  /** The peer's receive limits (protocol defaults filled in). */
  limits: AdvertisedLimits;
  /** Whether both sides decode zstd, so compressed messages may be sent. */
  compression: boolean;
  /** Codecs the peer understands. */
  codecs: number[];
  /** Services the peer offers. */
  services: Service[];
  /** The peer's implementation name. */
  agent: string | undefined;
  /** Services the peer uses. */
  uses: Service[];
}

/** Something the application must learn about (`type` names the Rust `Event` variant). */
export type ConnectionEvent =
  /** Server: a client said HELLO. Answer with `accept` or `refuse`. */
  | { readonly type: 'HelloReceived'; readonly hello: Hello }
  /** The handshake completed; calls may flow. */
  | { readonly type: 'Connected'; readonly peer: PeerInfo }
  /** The peer called a method; answer with `sendResponse` or `sendError`. `deadline`: ms allowed, counted from receipt. */
  | {
      readonly type: 'Request';
      readonly id: number;
      readonly method: number;
      readonly message: Message;
      readonly deadline: number | undefined;
    }
  /** A call we made completed. */
  | { readonly type: 'Response'; readonly id: number; readonly message: Message }
  /**
   * A call or stream we opened ended without a response: the peer sent
   * ERROR, its deadline passed, the peer's GOAWAY refused it, or the
   * connection ended. `side`: whether the peer sent the code.
   */
  | {
      readonly type: 'CallFailed';
      readonly id: number;
      readonly code: ErrorCode;
      readonly info: ErrorInfo;
      readonly side: Side;
    }
  /** A one-way message. */
  | { readonly type: 'Event'; readonly method: number; readonly message: Message }
  /** The peer opened a stream; `end`: the peer will send nothing more. */
  | {
      readonly type: 'StreamOpened';
      readonly id: number;
      readonly method: number;
      readonly message: Message;
      readonly end: boolean;
      readonly deadline: number | undefined;
    }
  /** A message on a stream; `end`: the peer will send nothing more on it. */
  | { readonly type: 'StreamData'; readonly id: number; readonly message: Message; readonly end: boolean }
  /**
   * A call or stream the peer opened was cancelled (by the peer, by its
   * deadline or by the connection ending). Stop the handler; its slot is held
   * until the application answers with `sendResponse`, `sendError` or
   * `finish` (which then send nothing).
   */
  | { readonly type: 'Cancelled'; readonly id: number; readonly code: ErrorCode }
  /**
   * A send that threw `BlockedError` may be retried: on the stream `id`, or
   * for the connection when `undefined` (send queue or call slots).
   */
  | { readonly type: 'Writable'; readonly id: number | undefined }
  /** The answer to {@link Connection.ping}; `rtt` in milliseconds. */
  | { readonly type: 'Pong'; readonly token: bigint; readonly rtt: number }
  /**
   * The peer is shutting down: calls above `lastId` were refused (each got a
   * `CallFailed` with `REFUSED`), and no new call may be opened.
   */
  | { readonly type: 'GoAway'; readonly lastId: number; readonly code: ErrorCode; readonly message: string | undefined }
  /**
   * The connection is over; nothing more will be sent or received. Every
   * call in flight has been reported before this event. `error` is
   * `undefined` for a graceful end.
   */
  | { readonly type: 'Closed'; readonly error: ConnectionError | undefined };

/** Everything a connection is configured with. */
export interface ConnectionConfig {
  /** Client or server. */
  role: Role;
  /** Size, count and budget limits. */
  limits: Limits;
  /** Timeouts, in milliseconds. */
  timeouts: Timeouts;
  /** Offer to decode zstd-compressed messages. Default `false`. */
  compression: boolean;
  /** Payload codecs to advertise. Default: raw, FlatBuffers, postcard, JSON. */
  codecs: number[];
  /** Services this endpoint offers (serves). */
  services: Service[];
  /**
   * Services this endpoint uses (calls on the peer). A server refuses a
   * client whose services are incompatible with these (§10.3).
   */
  uses: Service[];
  /** Authentication payload sent in HELLO (client only). */
  auth: Uint8Array | undefined;
  /** Implementation name sent in the handshake. */
  agent: string | undefined;
}

/** Options for a connection: the role, and any overrides of the defaults. */
export interface ConnectionOptions {
  /** Client or server. */
  role: Role;
  /** Limits to override; the rest keep their defaults. */
  limits?: Partial<Limits> | undefined;
  /** Timeouts to override (ms; `null` turns an optional timeout off). */
  timeouts?: Partial<Timeouts> | undefined;
  /** Offer zstd. */
  compression?: boolean | undefined;
  /** Codecs to advertise. */
  codecs?: number[] | undefined;
  /** Services offered. */
  services?: Service[] | undefined;
  /** Services used. */
  uses?: Service[] | undefined;
  /** Authentication payload (client). */
  auth?: Uint8Array | undefined;
  /** Implementation name. */
  agent?: string | undefined;
}

function merge<T extends object>(defaults: T, overrides: Partial<T> | undefined): T {
  const out = { ...defaults };
  if (overrides !== undefined) {
    for (const key of Object.keys(overrides) as (keyof T)[]) {
      const v = overrides[key];
      if (v !== undefined) {
        out[key] = v as T[keyof T];
      }
    }
  }
  return out;
}

/**
 * A full configuration from options, with every limit and timeout validated.
 *
 * @throws {InvalidLimitError} when a limit or timeout is out of range.
 */
export function connectionConfig(options: ConnectionOptions): ConnectionConfig {
  const config: ConnectionConfig = {
    role: options.role,
    limits: merge(defaultLimits(), options.limits),
    timeouts: merge(defaultTimeouts(), options.timeouts),
    compression: options.compression ?? false,
    codecs: options.codecs?.slice() ?? [0, 1, 2, 3],
    services: options.services?.map(cloneService) ?? [],
    uses: options.uses?.map(cloneService) ?? [],
    auth: options.auth,
    agent: options.agent,
  };
  if (config.role !== 'client' && config.role !== 'server') {
    throw new InvalidArgumentError(`role must be 'client' or 'server'`);
  }
  validateLimits(config.limits);
  validateTimeouts(config.timeouts);
  return config;
}

function advertised(c: ConnectionConfig): AdvertisedLimits {
  const l = c.limits;
  return {
    maxFrame: l.maxFrame,
    maxMessage: l.maxMessage,
    maxInFlight: l.maxInFlight,
    initialStreamCredit: l.initialStreamCredit,
    connectionCredit: l.connectionCredit,
  };
}

function compressionList(c: ConnectionConfig): number[] {
  return c.compression ? [COMPRESSION_ZSTD] : [];
}

// ----- small containers --------------------------------------------------------

/** A double-ended queue on a ring buffer (Rust's `VecDeque`). */
class Deque<T> {
  #items: (T | undefined)[] = new Array<T | undefined>(8);
  #head = 0;
  #len = 0;

  get length(): number {
    return this.#len;
  }

  #grow(): void {
    const cap = this.#items.length;
    const next = new Array<T | undefined>(cap * 2);
    for (let i = 0; i < this.#len; i++) {
      next[i] = this.#items[(this.#head + i) % cap];
    }
    this.#items = next;
    this.#head = 0;
  }

  pushBack(x: T): void {
    if (this.#len === this.#items.length) {
      this.#grow();
    }
    this.#items[(this.#head + this.#len) % this.#items.length] = x;
    this.#len += 1;
  }

  pushFront(x: T): void {
    if (this.#len === this.#items.length) {
      this.#grow();
    }
    this.#head = (this.#head - 1 + this.#items.length) % this.#items.length;
    this.#items[this.#head] = x;
    this.#len += 1;
  }

  popFront(): T | undefined {
    if (this.#len === 0) {
      return undefined;
    }
    const x = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
    this.#len -= 1;
    return x;
  }

  peekFront(): T | undefined {
    return this.#len === 0 ? undefined : this.#items[this.#head];
  }

  popBack(): T | undefined {
    if (this.#len === 0) {
      return undefined;
    }
    const at = (this.#head + this.#len - 1) % this.#items.length;
    const x = this.#items[at];
    this.#items[at] = undefined;
    this.#len -= 1;
    return x;
  }

  clear(): void {
    this.#items = new Array<T | undefined>(8);
    this.#head = 0;
    this.#len = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.#len; i++) {
      yield this.#items[(this.#head + i) % this.#items.length] as T;
    }
  }

  some(pred: (x: T) => boolean): boolean {
    for (const x of this) {
      if (pred(x)) {
        return true;
      }
    }
    return false;
  }

  /** Keeps the elements for which `pred` is true, in order. */
  retain(pred: (x: T) => boolean): void {
    const kept: T[] = [];
    for (const x of this) {
      if (pred(x)) {
        kept.push(x);
      }
    }
    this.clear();
    for (const x of kept) {
      this.pushBack(x);
    }
  }
}

/** An ordered set of (instant, id) pairs (Rust's `BTreeSet<(Instant, CallId)>`). */
class TimerSet {
  #items: [number, number][] = [];

  #search(at: number, id: number): number {
    let lo = 0;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const [a, i] = this.#items[mid] as [number, number];
      if (a < at || (a === at && i < id)) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  #isAt(pos: number, at: number, id: number): boolean {
    const e = this.#items[pos];
    return e !== undefined && e[0] === at && e[1] === id;
  }

  insert(at: number, id: number): void {
    const pos = this.#search(at, id);
    if (!this.#isAt(pos, at, id)) {
      this.#items.splice(pos, 0, [at, id]);
    }
  }

  remove(at: number, id: number): void {
    const pos = this.#search(at, id);
    if (this.#isAt(pos, at, id)) {
      this.#items.splice(pos, 1);
    }
  }

  first(): readonly [number, number] | undefined {
    return this.#items[0];
  }

  popFirst(): void {
    this.#items.shift();
  }

  clear(): void {
    this.#items = [];
  }
}

/**
 * A counter a peer spends by triggering work and earns back by useful
 * traffic. An exhausted budget ends the connection with GOAWAY(EXCESSIVE_LOAD).
 */
class Budget {
  #left: number;
  readonly #max: number;

  constructor(max: number) {
    this.#left = max;
    this.#max = max;
  }

  /** Spends `n`; `false` when the budget is exhausted. */
  charge(n: number): boolean {
    if (n <= this.#left) {
      this.#left -= n;
      return true;
    }
    this.#left = 0;
    return false;
  }

  /** Earns back `n`, up to the maximum. */
  refund(n: number): void {
    this.#left = Math.min(this.#left + n, this.#max);
  }
}

// ----- per-call state ---------------------------------------------------------

type Kind = 'unary' | 'stream' | 'event';

/** A message arriving in several frames. */
class Assembly {
  readonly ty: FrameType;
  readonly flags: Flags;
  readonly codec: Codec;
  readonly method: number;
  readonly deadline: number | undefined;
  readonly uncompressed: number | undefined;
  readonly #chunks: Uint8Array[];
  /** The fragments' `release` callbacks (lent input), called once the body is gathered or moved. */
  readonly #releases: (() => void)[] = [];
  bodyLen: number;
  fragments = 1;
  /** The message must be complete by then. */
  readonly expires: number;

  constructor(
    h: Header,
    first: Body,
    deadline: number | undefined,
    uncompressed: number | undefined,
    expires: number,
  ) {
    this.ty = h.type;
    this.flags = h.flags;
    this.codec = h.codec;
    this.method = h.arg;
    this.deadline = deadline;
    this.uncompressed = uncompressed;
    this.#chunks = [...first.parts];
    this.bodyLen = first.length;
    if (first.release !== undefined) {
      this.#releases.push(first.release);
    }
    this.expires = expires;
  }

  /** Adds a fragment's payload (its pieces when the decoder left them apart: they are copied only once, when the body is taken). */
  push(frame: Frame): void {
    if (frame.parts !== undefined) {
      for (const p of frame.parts) {
        this.#chunks.push(p);
      }
    } else {
      this.#chunks.push(frame.payload);
    }
    if (frame.release !== undefined) {
      this.#releases.push(frame.release);
    }
    this.bodyLen += frame.header.length;
  }

  /**
   * The complete message, its pieces left as they are: gathered or moved
   * only when the application takes the body (the lent input they lie in
   * is given back then).
   */
  message(): Message {
    return new PiecedMessage(this.codec, this.uncompressed, this.#chunks, this.bodyLen, this.#releases);
  }
}

/** A message's first-frame body past its prelude: its pieces, and the lent input's `release`. */
interface Body {
  readonly parts: readonly Uint8Array[];
  readonly length: number;
  readonly release: (() => void) | undefined;
}

/** One entry of the call table. */
class Call {
  method = 0;
  deadline: number | undefined = undefined;
  /** Our half may still send. */
  sendOpen = false;
  /** The peer's half may still send (for a call we opened: a response is still expected). */
  recvOpen: boolean;
  /** Credit the peer granted on this stream, minus bytes sent. */
  sendCredit = 0;
  /** Bytes the peer may still send on this stream. */
  recvCredit = 0;
  /** Consumed bytes not yet granted back. */
  grantPending = 0;
  /** Bytes credited back during reassembly, deducted from the application's next grants. */
  prepaid = 0;
  /** Stream bytes accepted by `sendStreamData` and not yet sent. */
  queued = 0;
  /** A send threw `Blocked`; report `Writable` when credit returns. */
  blocked = false;
  /** The peer knows the id (our opening frame is out, or the peer opened). */
  opened: boolean;
  /** Our queued messages on this id, by sequence number: they leave one after the other. */
  outSeqs: number[] = [];
  assembly: Assembly | undefined = undefined;
  /** The opening event was handed to the application. */
  delivered = false;
  /** The peer cancelled (or the deadline passed); the handler may still run. */
  cancelled = false;
  /** Counts against `maxInFlight` (peer-opened calls until the application answers). */
  slot = false;

  constructor(
    readonly kind: Kind,
    readonly origin: Side,
  ) {
    this.recvOpen = origin === 'local';
    this.opened = origin === 'remote';
  }
}

function satU32(n: number): number {
  return Math.min(n, U32_MAX);
}

function u32le(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
}

function u64le(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
}

function readU32le(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

/** A message's first frame past its `skip` prelude bytes, as pieces (without gathering a payload left in pieces). */
function firstBody(frame: Frame, skip: number): Body {
  const length = frame.header.length - skip;
  const parts = frame.parts;
  if (parts === undefined) {
    return { parts: [frame.payload.subarray(skip)], length, release: frame.release };
  }
  const out: Uint8Array[] = [];
  let left = skip;
  for (const p of parts) {
    if (left >= p.length) {
      left -= p.length;
      continue;
    }
    out.push(left > 0 ? p.subarray(left) : p);
    left = 0;
  }
  return { parts: out.length > 0 ? out : [EMPTY], length, release: frame.release };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A message accepted for sending, cut into frames as credit allows. */
class OutMessage {
  /** Order of acceptance. */
  seq = 0;
  readonly #ty: FrameType;
  readonly #arg: number;
  readonly #flags: Flags;
  readonly #codec: Codec;
  readonly #prelude: Uint8Array;
  #body: Uint8Array;
  #started = false;

  constructor(
    ty: FrameType,
    readonly id: number,
    arg: number,
    flags: Flags,
    prelude: Uint8Array,
    message: Message,
    /** Frames spend the stream's credit as well as the connection's. */
    readonly streamCredit: boolean,
  ) {
    if (message.uncompressedLen !== undefined) {
      flags |= Flags.COMPRESSED;
      prelude = concat(prelude, u32le(message.uncompressedLen));
    }
    this.#ty = ty;
    this.#arg = arg;
    this.#flags = flags;
    this.#codec = message.codec;
    this.#prelude = prelude;
    this.#body = message.body;
  }

  /** Payload bytes still to send. */
  remaining(): number {
    return (this.#started ? 0 : this.#prelude.length) + this.#body.length;
  }

  /** Bytes the next frame needs at least. */
  minFrame(): number {
    return this.#started ? 1 : this.#prelude.length;
  }

  isStarted(): boolean {
    return this.#started;
  }

  isEvent(): boolean {
    return this.#ty === FrameType.EVENT;
  }

  /** An opening frame (REQUEST, EVENT, STREAM_OPEN) not yet sent. */
  isUnsentOpen(): boolean {
    return !this.#started && opensId(this.#ty);
  }

  isDone(): boolean {
    return this.#started && this.#body.length === 0;
  }

  /** Cuts the next frame of at most `budget` payload bytes (`budget >= minFrame()`). */
  nextFrame(budget: number): Frame {
    if (this.#started) {
      const take = Math.min(budget, this.#body.length);
      const payload = this.#body.subarray(0, take);
      this.#body = this.#body.subarray(take);
      const h = newHeader(FrameType.CONTINUATION, this.id, 0, 0);
      h.flags = this.#body.length === 0 ? Flags.NONE : Flags.MORE;
      return newFrame(h, payload);
    }
    this.#started = true;
    const take = Math.min(Math.max(budget - this.#prelude.length, 0), this.#body.length);
    const part = this.#body.subarray(0, take);
    const payload = this.#prelude.length === 0 ? part : concat(this.#prelude, part);
    this.#body = this.#body.subarray(take);
    const h = newHeader(this.#ty, this.id, this.#arg, 0);
    h.flags = this.#body.length === 0 ? this.#flags : this.#flags | Flags.MORE;
    h.codec = this.#codec;
    return newFrame(h, payload);
  }
}

type Phase =
  /** Client: HELLO queued, awaiting HELLO_ACK. Server: awaiting HELLO. */
  | 'handshake'
  /** Server: HELLO received, awaiting accept/refuse. */
  | 'awaiting_accept'
  | 'open'
  | 'closed';

type Shutdown =
  | { readonly kind: 'none' }
  /** First GOAWAY (last = MAX) sent with a PING carrying this token. */
  | { readonly kind: 'announced'; readonly token: bigint; readonly deadline: number }
  /** Final GOAWAY sent; closing when drained or at the deadline. */
  | { readonly kind: 'draining'; readonly deadline: number };

const NO_SHUTDOWN: Shutdown = Object.freeze({ kind: 'none' });

interface PendingEvent {
  readonly event: ConnectionEvent;
  /** Connection credit to return when the event is delivered. */
  readonly credit: number;
  /** The call whose delivery this is (opens), to mark it delivered. */
  readonly opens: number | undefined;
}

/** Shortens `s` to at most {@link MAX_REASON_LEN} UTF-8 bytes, at a character boundary. */
export function truncateReason(s: string): string {
  const bytes = utf8Encode(s);
  if (bytes.length <= MAX_REASON_LEN) {
    return s;
  }
  let end = MAX_REASON_LEN;
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) {
    end -= 1;
  }
  return utf8Decode(bytes.subarray(0, end));
}

function messageLen(e: ConnectionEvent): number {
  switch (e.type) {
    case 'Request':
    case 'Response':
    case 'Event':
    case 'StreamOpened':
    case 'StreamData':
      return bodyLength(e.message);
    default:
      return 0;
  }
}

function violation(v: Violation): ProtocolViolationError {
  return new ProtocolViolationError(v);
}

function control<T>(decode: () => T): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof ControlError) {
      throw new ControlFailedError(e);
    }
    throw e;
  }
}

function clonePeer(p: PeerInfo): PeerInfo {
  return {
    version: p.version,
    limits: { ...p.limits },
    compression: p.compression,
    codecs: p.codecs.slice(),
    services: p.services.map(cloneService),
    agent: p.agent,
    uses: p.uses.map(cloneService),
  };
}

function checkInt(what: string, v: unknown, max: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${what} must be an integer in 0..=${max}`);
  }
}

function checkMessageArg(m: Message): void {
  checkInt('message codec', m.codec, 0xff);
  if (!(m.body instanceof Uint8Array)) {
    throw new InvalidArgumentError('message body must be a Uint8Array');
  }
  if (m.uncompressedLen !== undefined) {
    checkInt('uncompressedLen', m.uncompressedLen, U32_MAX);
  }
}

function checkDeadlineArg(deadline: number | undefined): void {
  if (deadline !== undefined && (typeof deadline !== 'number' || Number.isNaN(deadline) || deadline < 0)) {
    throw new InvalidArgumentError('deadline must be a non-negative number of milliseconds');
  }
}

/** One gatewire connection, as a deterministic state machine. */
export class Connection {
  readonly #config: ConnectionConfig;
  #phase: Phase = 'handshake';
  #peer: PeerInfo | undefined = undefined;
  #now: number;
  readonly #started: number;

  readonly #rx = new ReadBuffer();
  readonly #decoder: FrameDecoder;
  #partialSince: number | undefined = undefined;
  #inputBlocked = false;
  #eof = false;
  #eofDone = false;

  readonly #control = new Deque<Frame>();
  /** GOAWAY and PING of a graceful close, held until the calls opened before it are sent. */
  readonly #deferred = new Deque<Frame>();
  readonly #out = new Deque<OutMessage>();
  /** Fragmented events whose first frame is out and last is not. */
  #eventsSending = 0;
  /** Sequence number of the next message accepted for sending. */
  #nextSeq = 0;
  /** Unsent opening messages by sequence number: new ids leave in order. */
  readonly #opens = new Deque<number>();
  #queuedBytes = 0;
  #sendBlocked = false;

  readonly #events = new Deque<PendingEvent>();
  #eventBytes = 0;
  /**
   * Calls whose opening event was dropped undelivered; their later queued
   * events are dropped too.
   */
  readonly #skipped = new Set<number>();
  /** Calls this endpoint ended (the most recent {@link MAX_ENDED_HERE}). */
  readonly #endedHere = new Set<number>();
  readonly #endedOrder = new Deque<number>();

  readonly #calls = new Map<number, Call>();
  readonly #deadlines = new TimerSet();
  /** Completion deadlines of messages being reassembled (entries of finished messages are dropped lazily). */
  readonly #assembling = new TimerSet();
  #nextLocalId: number;
  #lastLocalId = 0;
  #lastPeerId = 0;
  #localInFlight = 0;
  #remoteInFlight = 0;
  #eventAssemblies = 0;

  #sendCredit = 0;
  #recvWindow: number;
  #recvUnreturned = 0;

  #lastRx: number;
  #lastActivity: number;
  #keepalivePing: number | undefined = undefined;
  #nextPingToken = 1n;
  #userPings: [bigint, number][] = [];
  #lastPeerPing: number | undefined = undefined;
  #sentMessageSincePeerPing = false;
  #pingStrikes = 0;

  readonly #earlyCancels: Budget;
  readonly #errorResets: Budget;
  readonly #strays: Budget;
  readonly #smallFrames: Budget;
  readonly #creditFrames: Budget;

  #shutdown: Shutdown = NO_SHUTDOWN;
  #goawaySent: number | undefined = undefined;
  #goawayReceived: number | undefined = undefined;
  #closeError: ConnectionError | undefined = undefined;

  /**
   * A new connection at time `now` (milliseconds). A client queues its HELLO
   * at once.
   *
   * @throws {InvalidLimitError} when a limit or timeout is out of range
   *   (limits are checked once, at configuration time).
   */
  constructor(options: ConnectionOptions, now: number) {
    const config = connectionConfig(options);
    this.#config = config;
    const l = config.limits;
    this.#now = now;
    this.#started = now;
    this.#decoder = new FrameDecoder(l.maxHandshake);
    this.#nextLocalId = config.role === 'client' ? 1 : 2;
    this.#recvWindow = l.connectionCredit;
    this.#lastRx = now;
    this.#lastActivity = now;
    this.#earlyCancels = new Budget(l.earlyCancelBudget);
    this.#errorResets = new Budget(l.errorResetBudget);
    this.#strays = new Budget(l.strayFrameBudget);
    this.#smallFrames = new Budget(l.smallFrameBudget);
    this.#creditFrames = new Budget(satU32(l.creditFramesPerData * 10));
    if (config.role === 'client') {
      const hello: Hello = {
        minVersion: PROTOCOL_VERSION,
        maxVersion: PROTOCOL_VERSION,
        limits: advertised(config),
        compression: compressionList(config),
        codecs: config.codecs.slice(),
        auth: config.auth,
        services: config.services,
        agent: config.agent,
        uses: config.uses,
      };
      this.#pushControl(FrameType.HELLO, 0, 0, encodeHello(hello));
    }
  }

  // ----- getters ----------------------------------------------------------------

  /** Client or server. */
  role(): Role {
    return this.#config.role;
  }

  /** The configuration. */
  config(): Readonly<ConnectionConfig> {
    return this.#config;
  }

  /** What the peer agreed to, once known. */
  peer(): Readonly<PeerInfo> | undefined {
    return this.#peer;
  }

  /** Whether the handshake has completed and the connection is not closed. */
  isConnected(): boolean {
    return this.#phase === 'open';
  }

  /** Whether the connection is over. The runtime closes the transport once `pollTransmit` is drained. */
  isClosed(): boolean {
    return this.#phase === 'closed';
  }

  /** The error that ended the connection, if any. */
  closeError(): ConnectionError | undefined {
    return this.#closeError;
  }

  /** Whether the runtime may read more input now. */
  wantsRead(): boolean {
    return !this.isClosed() && !this.#eof && !this.#inputPaused();
  }

  /**
   * Calls and streams open in each direction: [opened by us, opened by the
   * peer (counting handlers still running after a cancel)].
   */
  callsInFlight(): [number, number] {
    return [this.#localInFlight, this.#remoteInFlight];
  }

  /** Entries in the call table (both directions, including messages being reassembled). Zero at quiescence. */
  tableLen(): number {
    return this.#calls.size;
  }

  /** Bytes accepted by `send*` and not yet returned by `pollTransmit`. */
  queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Connection credit we may still spend. */
  sendCredit(): number {
    return this.#sendCredit;
  }

  /** Send credit left on a stream, if it exists. */
  streamSendCredit(id: number): number | undefined {
    const c = this.#calls.get(id);
    return c !== undefined && c.kind === 'stream' ? c.sendCredit : undefined;
  }

  // ----- inputs -----------------------------------------------------------------

  /**
   * Bytes from a byte-stream transport. Payloads are views of them where
   * they can be (see `ReadBuffer`): do not modify `data` afterwards. With
   * `release`, `data` is lent: `release` is called (at most once) when
   * nothing refers to it any more, and until then it must not be modified;
   * it may never be called, when a view of `data` went to the application.
   */
  handleBytes(now: number, data: Uint8Array, release?: () => void): void {
    if (this.isClosed()) {
      release?.();
      return;
    }
    this.#rx.append(data, release);
    this.#now = now;
    this.#processInput();
  }

  /**
   * One whole frame from a message-preserving transport (a WebSocket binary
   * message). Anything but exactly one frame is a protocol error. The
   * payload is a view of `message`: do not reuse it.
   */
  handleFrame(now: number, message: Uint8Array): void {
    this.#now = now;
    if (this.isClosed()) {
      return;
    }
    let frame: Frame;
    try {
      frame = decodeExact(message, this.#decoder.maxPayload);
    } catch (e) {
      if (e instanceof FrameError) {
        this.#fail(new MalformedError(e));
        return;
      }
      throw e;
    }
    this.#dispatch(frame);
  }

  /**
   * The peer will send nothing more (end of stream, or a half-close). Calls
   * we opened fail; calls the peer opened that are fully received may still
   * be answered; nothing new is opened.
   */
  handleEof(now: number): void {
    this.#now = now;
    if (this.isClosed() || this.#eof) {
      return;
    }
    this.#eof = true;
    // Runs `finishEof` once every buffered frame is processed (at once, or
    // when paused input resumes).
    this.#processInput();
  }

  #finishEof(): void {
    if (this.isClosed() || this.#eofDone) {
      return;
    }
    this.#eofDone = true;
    try {
      this.#decoder.decodeEof(this.#rx);
    } catch (e) {
      if (e instanceof FrameError) {
        this.#fail(new MalformedError(e));
        return;
      }
      throw e;
    }
    // Calls we opened can never be answered now: the connection is lost.
    if (this.#phase !== 'open' || [...this.#calls.values()].some((c) => c.origin === 'local')) {
      this.#fail(new ConnectionLostError());
      return;
    }
    // A half-close: calls the peer opened and fully sent may still be
    // answered; those it was still sending are cancelled.
    for (const id of this.#sortedIds((c) => c.recvOpen)) {
      this.#cancelRemoteCall(id, ErrorCode.CANCELLED);
    }
    if (this.#goawayReceived === undefined) {
      this.#goawayReceived = this.#lastLocalId;
    }
    this.#maybeFinish();
  }

  /** Time has passed (`now` in milliseconds); fire whatever expired. */
  handleTimeout(now: number): void {
    this.#now = now;
    if (this.isClosed()) {
      return;
    }
    const t = this.#config.timeouts;
    if (this.#phase !== 'open' && now >= this.#started + t.handshake) {
      this.#fail(new TimeoutError('handshake'));
      return;
    }
    if (this.#partialSince !== undefined && now >= this.#partialSince + t.partialFrame) {
      this.#fail(new TimeoutError('partial frame'));
      return;
    }
    if (this.#phase === 'open') {
      if (t.keepaliveInterval !== null) {
        if (this.#keepalivePing !== undefined) {
          if (now >= this.#keepalivePing + t.keepaliveTimeout) {
            this.#fail(new TimeoutError('keepalive'));
            return;
          }
        } else if (now >= this.#lastRx + t.keepaliveInterval) {
          this.#keepalivePing = now;
          const token = this.#takePingToken();
          this.#pushControl(FrameType.PING, 0, 0, u64le(token));
        }
      }
      if (t.idle !== null) {
        if (this.#calls.size === 0 && this.#shutdown.kind === 'none' && now >= this.#lastActivity + t.idle) {
          this.close(ErrorCode.NO_ERROR, 'idle timeout');
        }
      }
    }
    for (;;) {
      const first = this.#assembling.first();
      // While input is paused the rest of the message may be waiting in our
      // own buffer: the deadline applies to the peer only.
      if (first === undefined || first[0] > now || this.#inputBlocked) {
        break;
      }
      this.#assembling.popFirst();
      const [at, id] = first;
      if (this.#calls.get(id)?.assembly?.expires === at) {
        this.#fail(new TimeoutError('partial message'));
        return;
      }
    }
    for (;;) {
      const first = this.#deadlines.first();
      if (first === undefined || first[0] > now) {
        break;
      }
      this.#deadlines.popFirst();
      const id = first[1];
      const call = this.#calls.get(id);
      if (call === undefined) {
        continue;
      }
      if (call.origin === 'local') {
        this.#failLocalCall(id, ErrorCode.DEADLINE_EXCEEDED, {}, 'local');
      } else {
        this.#cancelRemoteCall(id, ErrorCode.DEADLINE_EXCEEDED);
      }
    }
    const s = this.#shutdown;
    if (s.kind === 'announced' && now >= s.deadline) {
      this.#sendFinalGoaway();
    } else if (s.kind === 'draining' && now >= s.deadline) {
      this.#fail(new TimeoutError('drain'));
      return;
    }
    this.#maybeFinish();
  }

  // ----- handshake commands -------------------------------------------------------

  /**
   * Server: accept the client's HELLO and complete the handshake.
   *
   * @throws {InvalidStateError} when no HELLO awaits an answer.
   */
  accept(): void {
    if (this.#phase !== 'awaiting_accept') {
      throw new InvalidStateError('accept needs a HELLO awaiting an answer');
    }
    const ack = {
      version: PROTOCOL_VERSION,
      errorCode: ErrorCode.NO_ERROR,
      message: undefined,
      limits: advertised(this.#config),
      compression: compressionList(this.#config),
      codecs: this.#config.codecs.slice(),
      services: this.#config.services,
      agent: this.#config.agent,
      uses: this.#config.uses,
    };
    this.#pushControl(FrameType.HELLO_ACK, 0, 0, encodeHelloAck(ack));
    this.#openConnection();
  }

  /**
   * Server: refuse the client's HELLO with `code` and close.
   *
   * @throws {InvalidStateError} when no HELLO awaits an answer.
   * @throws {InvalidArgumentError} for `NO_ERROR` or a code outside `u16`.
   */
  refuse(code: ErrorCode, message?: string): void {
    if (this.#phase !== 'awaiting_accept') {
      throw new InvalidStateError('refuse needs a HELLO awaiting an answer');
    }
    checkInt('error code', code, 0xffff);
    if (code === ErrorCode.NO_ERROR) {
      throw new InvalidArgumentError('a refusal needs an error code');
    }
    this.#sendRefusal(code, message);
    this.#finishClosed(new RefusedError(code, 'local', message));
  }

  #sendRefusal(code: ErrorCode, message: string | undefined): void {
    const ack = {
      version: PROTOCOL_VERSION,
      errorCode: code,
      message: message === undefined ? undefined : truncateReason(message),
      limits: emptyAdvertisedLimits(),
      compression: [],
      codecs: [],
      services: [],
      agent: undefined,
      uses: [],
    };
    this.#pushControl(FrameType.HELLO_ACK, 0, 0, encodeHelloAck(ack));
  }

  // ----- call commands ------------------------------------------------------------

  #checkCanOpen(): void {
    if (this.#phase === 'closed') {
      throw new ClosedError();
    }
    if (this.#phase !== 'open') {
      throw new InvalidStateError('the handshake has not completed');
    }
    if (this.#shutdown.kind !== 'none' || this.#goawayReceived !== undefined || this.#eof) {
      throw new ClosingError();
    }
    if (this.#nextLocalId > this.#config.limits.maxLocalId) {
      throw new IdsExhaustedError();
    }
  }

  #peerLimits(): AdvertisedLimits {
    return this.#peer?.limits ?? emptyAdvertisedLimits();
  }

  #checkMessage(message: Message): void {
    const peer = this.#peerLimits();
    const len = message.body.length;
    if (len > peer.maxMessage) {
      throw new MessageTooLargeError(len, peer.maxMessage);
    }
    const n = message.uncompressedLen;
    if (n !== undefined) {
      if (!(this.#peer?.compression ?? false)) {
        throw new InvalidArgumentError('compression was not negotiated');
      }
      if (n > peer.maxMessage) {
        throw new MessageTooLargeError(n, peer.maxMessage);
      }
    }
  }

  #checkQueue(): void {
    if (this.#queuedBytes >= this.#config.limits.maxSendQueue) {
      this.#sendBlocked = true;
      throw new BlockedError();
    }
  }

  #openCall(
    kind: Kind,
    ty: FrameType,
    method: number,
    message: Message,
    deadline: number | undefined,
    end: boolean,
  ): number {
    checkInt('method', method, U32_MAX);
    checkMessageArg(message);
    checkDeadlineArg(deadline);
    this.#checkCanOpen();
    this.#checkMessage(message);
    const peerMax = this.#peer?.limits.maxInFlight ?? 0;
    if (kind !== 'event' && this.#localInFlight >= peerMax) {
      this.#sendBlocked = true;
      throw new BlockedError();
    }
    this.#checkQueue();
    const id = this.#nextLocalId;
    this.#nextLocalId += 2;
    this.#lastLocalId = id;
    let flags = end ? Flags.END : Flags.NONE;
    let prelude: Uint8Array = EMPTY;
    // The deadline travels in whole milliseconds (at most u32::MAX); the
    // local timer uses the same value so both ends agree.
    const ms = deadline === undefined ? undefined : Math.min(Math.floor(deadline), U32_MAX);
    if (ms !== undefined) {
      flags |= Flags.DEADLINE;
      prelude = u32le(ms);
    }
    if (kind !== 'event') {
      const peer = this.#peerLimits();
      const call = new Call(kind, 'local');
      call.sendOpen = kind === 'stream' && !end;
      call.sendCredit = peer.initialStreamCredit;
      call.recvCredit = this.#config.limits.initialStreamCredit;
      if (ms !== undefined) {
        const at = this.#now + ms;
        call.deadline = at;
        this.#deadlines.insert(at, id);
      }
      this.#calls.set(id, call);
      this.#localInFlight += 1;
    }
    this.#enqueue(new OutMessage(ty, id, method, flags, prelude, message, false));
    return id;
  }

  /**
   * Calls `method` with `message` and returns the call id. The response
   * arrives as a `Response` or `CallFailed` event with that id. `deadline`
   * (ms) travels to the peer, which stops work when it passes; we fail the
   * call locally at the same moment.
   *
   * @throws {SendError} `BlockedError` (retry after `Writable`),
   *   `MessageTooLargeError`, `ClosingError`, `ClosedError`, `IdsExhaustedError`.
   * @throws {ApiError} before the handshake, or for a bad argument.
   */
  sendRequest(method: number, message: Message, deadline?: number): number {
    return this.#openCall('unary', FrameType.REQUEST, method, message, deadline, false);
  }

  /**
   * Sends a one-way message.
   *
   * @throws {SendError} as {@link Connection.sendRequest}.
   * @throws {ApiError} as {@link Connection.sendRequest}.
   */
  sendEvent(method: number, message: Message): void {
    this.#openCall('event', FrameType.EVENT, method, message, undefined, false);
  }

  /**
   * Opens a stream with an opening message (which may be empty) and returns
   * its id. With `end`, we send nothing more (a server-streaming call).
   *
   * @throws {SendError} as {@link Connection.sendRequest}.
   * @throws {ApiError} as {@link Connection.sendRequest}.
   */
  openStream(method: number, message: Message, deadline?: number, end = false): number {
    return this.#openCall('stream', FrameType.STREAM_OPEN, method, message, deadline, end);
  }

  /**
   * Answers a call the peer made. On a call that was cancelled this sends
   * nothing and frees its slot.
   *
   * @throws {SendError} `SendUnknownCallError`, `ClosedError`, `MessageTooLargeError`.
   */
  sendResponse(id: number, message: Message): void {
    checkMessageArg(message);
    const call = this.#calls.get(id);
    if (call === undefined || call.origin !== 'remote' || call.kind !== 'unary' || !call.slot) {
      throw new SendUnknownCallError(id);
    }
    if (call.cancelled) {
      this.#releaseRemote(id);
      return;
    }
    if (this.isClosed()) {
      throw new ClosedError();
    }
    this.#checkMessage(message);
    this.#enqueue(new OutMessage(FrameType.RESPONSE, id, 0, Flags.NONE, EMPTY, message, false));
    this.#errorResets.refund(1);
    this.#releaseRemote(id);
  }

  /**
   * Ends a call or stream the peer opened with an error. On a call that was
   * cancelled this sends nothing and frees its slot.
   *
   * @throws {SendUnknownCallError} when no live call the peer opened has this id.
   * @throws {InvalidArgumentError} for `NO_ERROR` or a code outside `u16`.
   */
  sendError(id: number, code: ErrorCode, info: ErrorInfo = {}): void {
    const call = this.#calls.get(id);
    if (call === undefined || call.origin !== 'remote' || !call.slot) {
      throw new SendUnknownCallError(id);
    }
    checkInt('error code', code, 0xffff);
    if (code === ErrorCode.NO_ERROR) {
      throw new InvalidArgumentError('ERROR needs a code other than NO_ERROR');
    }
    if (call.cancelled || this.isClosed()) {
      this.#releaseRemote(id);
      return;
    }
    this.#purgeOut(id);
    const maxFrame = this.#peer?.limits.maxFrame ?? 0;
    let payload = encodeErrorInfo(info);
    if (payload.length > maxFrame) {
      // ERROR is never fragmented: keep a shortened message only.
      const message = info.message === undefined ? undefined : truncateReason(info.message);
      payload = encodeErrorInfo({ message, details: undefined });
    }
    this.#pushControl(FrameType.ERROR, id, code, payload);
    // ERROR ends the stream in both directions: later data from the peer,
    // including the rest of a message it was sending, is stray.
    this.#rememberEnded(id);
    call.recvOpen = false;
    call.assembly = undefined;
    this.#releaseRemote(id);
  }

  /**
   * Sends a message on a stream; with `end`, our half of the stream ends.
   * Throws `BlockedError` (and changes nothing) when the stream's credit is
   * spent by messages already accepted; a `Writable` event follows.
   *
   * @throws {SendError} `SendUnknownCallError`, `BlockedError`, `ClosedError`, `MessageTooLargeError`.
   * @throws {InvalidStateError} when our sending half is closed.
   */
  sendStreamData(id: number, message: Message, end = false): void {
    checkMessageArg(message);
    const call = this.#calls.get(id);
    if (call === undefined || call.kind !== 'stream') {
      throw new SendUnknownCallError(id);
    }
    if (call.cancelled) {
      if (end) {
        this.#releaseRemote(id);
      }
      return;
    }
    if (!call.sendOpen) {
      throw new InvalidStateError("the stream's sending half is closed");
    }
    if (this.isClosed()) {
      throw new ClosedError();
    }
    this.#checkMessage(message);
    if (call.queued >= call.sendCredit && !(end && message.body.length === 0)) {
      call.blocked = true;
      throw new BlockedError();
    }
    this.#checkQueue();
    const preludeLen = message.uncompressedLen !== undefined ? 4 : 0;
    call.queued += message.body.length + preludeLen;
    let flags: Flags = Flags.NONE;
    if (end) {
      call.sendOpen = false;
      flags = Flags.END;
    }
    const remote = call.origin === 'remote';
    this.#enqueue(new OutMessage(FrameType.STREAM_DATA, id, 0, flags, EMPTY, message, true));
    if (end && remote) {
      this.#errorResets.refund(1);
      this.#releaseRemote(id);
    }
    this.#maybeRemove(id);
  }

  /**
   * Ends our half of a stream with an empty final message.
   *
   * @throws as {@link Connection.sendStreamData}.
   */
  finish(id: number): void {
    this.sendStreamData(id, { codec: Codec.RAW, body: EMPTY, uncompressedLen: undefined }, true);
  }

  /**
   * Returns `n` bytes of credit to the peer on stream `id`, after the
   * application consumed that much. Grants are coalesced: a CREDIT frame goes
   * out once half the initial window has accumulated.
   *
   * @throws {UnknownCallError} when `id` is not a live stream.
   */
  grantCredit(id: number, n: number): void {
    const call = this.#calls.get(id);
    if (call === undefined || call.kind !== 'stream') {
      throw new UnknownCallError(id);
    }
    checkInt('credit', n, U32_MAX);
    if (!call.recvOpen) {
      return;
    }
    // Bytes already credited back while the message was reassembled are
    // not granted twice.
    const prepaid = Math.min(call.prepaid, n);
    call.prepaid -= prepaid;
    call.grantPending = satU32(call.grantPending + (n - prepaid));
    this.#flushPendingGrant(id);
  }

  /**
   * Stream bytes buffered for reassembly are credited back at once: a
   * message larger than the window could otherwise never complete.
   */
  #creditReassembly(id: number, n: number): void {
    const call = this.#calls.get(id);
    if (call !== undefined) {
      call.grantPending = satU32(call.grantPending + n);
      call.prepaid = satU32(call.prepaid + n);
    }
    this.#flushPendingGrant(id);
  }

  /**
   * Sends a stream's accumulated grant when it is large enough (or the peer
   * is out of credit), once the peer has seen the stream.
   */
  #flushPendingGrant(id: number): void {
    const threshold = Math.max(Math.floor(this.#config.limits.initialStreamCredit / 2), 1);
    const call = this.#calls.get(id);
    if (call === undefined || call.kind !== 'stream' || !call.opened || !call.recvOpen) {
      return;
    }
    const room = Math.max(MAX_WINDOW - call.recvCredit, 0);
    const grant = Math.min(call.grantPending, room);
    if (grant > 0 && (grant >= threshold || call.recvCredit <= 0)) {
      call.grantPending -= grant;
      call.recvCredit += grant;
      this.#pushControl(FrameType.CREDIT, id, grant, EMPTY);
    }
  }

  /**
   * Abandons a call or stream we opened: the peer gets CANCEL, queued frames
   * are dropped, and no event for it follows.
   *
   * @throws {UnknownCallError} when no live call we opened has this id.
   */
  cancel(id: number): void {
    const call = this.#calls.get(id);
    if (call === undefined || call.origin !== 'local') {
      throw new UnknownCallError(id);
    }
    this.#rememberEnded(id);
    const neverSent = this.#purgeOut(id);
    // A call whose opening frame never left needs no CANCEL: the peer has
    // not seen its id.
    if (!this.isClosed() && !neverSent) {
      this.#pushControl(FrameType.CANCEL, id, 0, EMPTY);
    }
    this.#removeCall(id);
    this.#maybeFinish();
  }

  /**
   * Sends a PING and returns its token; a `Pong` event with the token
   * reports the round trip.
   *
   * @throws {InvalidStateError} before the handshake, or with
   *   {@link MAX_USER_PINGS} pings outstanding.
   */
  ping(): bigint {
    if (this.#phase !== 'open') {
      throw new InvalidStateError('ping needs an open connection');
    }
    if (this.#userPings.length >= MAX_USER_PINGS) {
      throw new InvalidStateError('too many pings outstanding');
    }
    const token = this.#takePingToken();
    this.#userPings.push([token, this.#now]);
    this.#pushControl(FrameType.PING, 0, 0, u64le(token));
    return token;
  }

  /**
   * Closes the connection. With `NO_ERROR` this is the two-phase graceful
   * shutdown: GOAWAY(last = MAX) and a PING, then on the PONG (or after
   * `goawayGrace`) GOAWAY(last peer id), then calls in flight finish within
   * `drain`. With any other code the connection closes at once after a
   * GOAWAY carrying it.
   *
   * @throws {InvalidArgumentError} for a code outside `u16`.
   */
  close(code: ErrorCode, message?: string): void {
    checkInt('error code', code, 0xffff);
    if (this.isClosed()) {
      return;
    }
    if (code !== ErrorCode.NO_ERROR || this.#phase !== 'open') {
      const c = code === ErrorCode.NO_ERROR ? ErrorCode.UNAVAILABLE : code;
      this.#deferred.clear();
      this.#pushGoaway(this.#lastPeerId, c, message);
      this.#finishClosed(new LocalCloseError(c, message));
      return;
    }
    if (this.#shutdown.kind !== 'none') {
      return;
    }
    const token = this.#takePingToken() | PING_TOKEN_GOAWAY_BIT;
    this.#pushGoaway(U32_MAX, ErrorCode.NO_ERROR, message);
    this.#pushControl(FrameType.PING, 0, 0, u64le(token));
    if (this.#out.some((m) => m.isUnsentOpen())) {
      // Calls we opened before closing must reach the peer before our
      // GOAWAY does, or the peer could close without seeing them.
      const ping = this.#control.popBack() as Frame;
      const goaway = this.#control.popBack() as Frame;
      this.#deferred.pushBack(goaway);
      this.#deferred.pushBack(ping);
    }
    this.#shutdown = { kind: 'announced', token, deadline: this.#now + this.#config.timeouts.goawayGrace };
  }

  // ----- outputs --------------------------------------------------------------------

  /**
   * The next frame to write, if any. Control frames go first; messages take
   * turns frame by frame, so a bulk transfer delays a small call by at most
   * one fragment.
   */
  pollTransmit(): Frame | undefined {
    const frame = this.#nextFrame();
    if (frame !== undefined) {
      this.#resumeInput();
    } else {
      this.#maybeFinish();
    }
    return frame;
  }

  /** The next event for the application, if any. */
  pollEvent(): ConnectionEvent | undefined {
    for (;;) {
      const pending = this.#events.popFront();
      if (pending === undefined) {
        return undefined;
      }
      this.#eventBytes = Math.max(0, this.#eventBytes - messageLen(pending.event));
      this.#returnConnectionCredit(pending.credit);
      if (pending.opens !== undefined) {
        const call = this.#calls.get(pending.opens);
        if (call !== undefined && !call.cancelled) {
          call.delivered = true;
          this.#earlyCancels.refund(1);
        } else {
          // Cancelled (or the connection failed) before the application saw
          // it: it never hears of the call.
          this.#skipped.add(pending.opens);
          this.#afterPoll();
          continue;
        }
      }
      const ev = pending.event;
      const followsSkipped = (ev.type === 'StreamData' || ev.type === 'Cancelled') && this.#skipped.has(ev.id);
      this.#afterPoll();
      if (followsSkipped) {
        continue;
      }
      return ev;
    }
  }

  #afterPoll(): void {
    if (this.#events.length === 0) {
      // No queued event can name a skipped call any more, and the calls
      // themselves are gone.
      this.#skipped.clear();
    }
    this.#resumeInput();
  }

  /** When {@link Connection.handleTimeout} should next be called (ms, same origin as `now`). */
  pollTimeout(): number | undefined {
    if (this.isClosed()) {
      return undefined;
    }
    const t = this.#config.timeouts;
    let next: number | undefined;
    const consider = (at: number): void => {
      next = next === undefined ? at : Math.min(next, at);
    };
    if (this.#phase !== 'open') {
      consider(this.#started + t.handshake);
    }
    if (this.#partialSince !== undefined) {
      consider(this.#partialSince + t.partialFrame);
    }
    if (this.#phase === 'open') {
      if (t.keepaliveInterval !== null) {
        if (this.#keepalivePing !== undefined) {
          consider(this.#keepalivePing + t.keepaliveTimeout);
        } else {
          consider(this.#lastRx + t.keepaliveInterval);
        }
      }
      if (t.idle !== null && this.#calls.size === 0 && this.#shutdown.kind === 'none') {
        consider(this.#lastActivity + t.idle);
      }
    }
    const deadline = this.#deadlines.first();
    if (deadline !== undefined) {
      consider(deadline[0]);
    }
    const assembling = this.#assembling.first();
    if (assembling !== undefined && !this.#inputBlocked) {
      consider(assembling[0]);
    }
    const s = this.#shutdown;
    if (s.kind !== 'none') {
      consider(s.deadline);
    }
    return next;
  }

  // ----- internals: input -------------------------------------------------------------

  #inputPaused(): boolean {
    return (
      this.#control.length >= this.#config.limits.maxPendingControl ||
      this.#events.length >= MAX_PENDING_EVENTS ||
      this.#eventBytes >= this.#config.limits.connectionCredit
    );
  }

  #resumeInput(): void {
    if (this.#inputBlocked && !this.#inputPaused()) {
      this.#processInput();
    }
  }

  #processInput(): void {
    this.#inputBlocked = false;
    for (;;) {
      if (this.isClosed()) {
        break;
      }
      if (this.#inputPaused()) {
        this.#inputBlocked = true;
        break;
      }
      let frame: Frame | undefined;
      try {
        frame = this.#decoder.decode(this.#rx);
      } catch (e) {
        if (e instanceof FrameError) {
          this.#fail(new MalformedError(e));
          continue;
        }
        throw e;
      }
      if (frame === undefined) {
        break;
      }
      this.#partialSince = undefined;
      this.#dispatch(frame);
    }
    if (this.isClosed()) {
      this.#rx.clear();
      return;
    }
    if (this.#inputBlocked) {
      // Whole frames wait for the application, not for the peer.
      this.#partialSince = undefined;
    } else {
      if (this.#decoder.isMidFrame(this.#rx) && this.#partialSince === undefined) {
        this.#partialSince = this.#now;
      }
      if (this.#eof) {
        this.#finishEof();
      }
    }
  }

  /** Runs `onFrame`, ending the connection on a `ConnectionError`. */
  #dispatch(frame: Frame): void {
    try {
      this.#onFrame(frame);
    } catch (e) {
      if (e instanceof ConnectionError) {
        this.#fail(e);
        return;
      }
      throw e;
    }
  }

  #onFrame(frame: Frame): void {
    const h = frame.header;
    this.#lastRx = this.#now;
    this.#keepalivePing = undefined;
    switch (this.#phase) {
      case 'handshake':
      case 'awaiting_accept':
        this.#onHandshakeFrame(frame);
        return;
      case 'closed':
        return;
      case 'open':
        break;
    }
    if (isMessageType(h.type) || h.type === FrameType.CONTINUATION) {
      this.#lastActivity = this.#now;
    }
    switch (h.type) {
      case FrameType.HELLO:
      case FrameType.HELLO_ACK:
        throw violation(new UnexpectedFrameViolation(h.type));
      case FrameType.REQUEST:
      case FrameType.EVENT:
      case FrameType.STREAM_OPEN:
        this.#onOpen(frame);
        return;
      case FrameType.RESPONSE:
        this.#onResponse(frame);
        return;
      case FrameType.STREAM_DATA:
        this.#onStreamData(frame);
        return;
      case FrameType.CONTINUATION:
        this.#onContinuation(frame);
        return;
      case FrameType.ERROR:
        this.#onError(frame);
        return;
      case FrameType.CREDIT:
        this.#onCredit(h);
        return;
      case FrameType.CANCEL:
        this.#onCancel(h);
        return;
      case FrameType.PING:
        this.#onPing(frame);
        return;
      case FrameType.PONG:
        this.#onPong(frame);
        return;
      case FrameType.GOAWAY:
        this.#onGoaway(frame);
        return;
      default:
        this.#stray();
    }
  }

  #onHandshakeFrame(frame: Frame): void {
    const h = frame.header;
    if (h.type === FrameType.GOAWAY) {
      this.#onGoaway(frame);
      return;
    }
    const role = this.#config.role;
    if (role === 'server' && this.#phase === 'handshake' && h.type === FrameType.HELLO) {
      const hello = control(() => decodeHello(frame.payload));
      if (hello.minVersion > PROTOCOL_VERSION || hello.maxVersion < PROTOCOL_VERSION) {
        const msg = 'no protocol version in common';
        this.#sendRefusal(ErrorCode.INCOMPATIBLE, msg);
        throw new RefusedError(ErrorCode.INCOMPATIBLE, 'local', msg);
      }
      const peer = this.#peerInfo(
        PROTOCOL_VERSION,
        hello.limits,
        hello.compression,
        hello.codecs.slice(),
        [hello.services.map(cloneService), hello.uses.map(cloneService)],
        hello.agent,
      );
      if (peer instanceof Violation) {
        const msg = 'advertised limits out of range';
        this.#sendRefusal(ErrorCode.INCOMPATIBLE, msg);
        throw new RefusedError(ErrorCode.INCOMPATIBLE, 'local', msg);
      }
      try {
        checkServices(this.#config.services, this.#config.uses, hello.services, hello.uses);
      } catch (e) {
        if (!(e instanceof IncompatibleError)) {
          throw e;
        }
        this.#sendRefusal(ErrorCode.INCOMPATIBLE, e.message);
        throw new RefusedError(ErrorCode.INCOMPATIBLE, 'local', e.message);
      }
      this.#peer = peer;
      this.#phase = 'awaiting_accept';
      this.#pushEvent({ type: 'HelloReceived', hello }, 0, undefined);
      return;
    }
    if (role === 'client' && this.#phase === 'handshake' && h.type === FrameType.HELLO_ACK) {
      const ack = control(() => decodeHelloAck(frame.payload));
      if (ack.errorCode !== ErrorCode.NO_ERROR) {
        throw new RefusedError(ack.errorCode, 'remote', ack.message);
      }
      if (ack.version !== PROTOCOL_VERSION) {
        throw violation(new VersionNotOfferedViolation(ack.version));
      }
      const peer = this.#peerInfo(
        ack.version,
        ack.limits,
        ack.compression,
        ack.codecs,
        [ack.services, ack.uses],
        ack.agent,
      );
      if (peer instanceof Violation) {
        throw violation(peer);
      }
      this.#peer = peer;
      this.#openConnection();
      return;
    }
    throw violation(new UnexpectedFrameViolation(h.type));
  }

  #peerInfo(
    version: number,
    a: AdvertisedLimits,
    compression: readonly number[],
    codecs: number[],
    [services, uses]: [Service[], Service[]],
    agent: string | undefined,
  ): PeerInfo | Violation {
    // Zero means "the default"; anything else must leave room for a prelude
    // and a reason string.
    for (const [name, v] of [
      ['max_frame', a.maxFrame],
      ['max_message', a.maxMessage],
      ['initial_stream_credit', a.initialStreamCredit],
      ['connection_credit', a.connectionCredit],
    ] as const) {
      if (v !== 0 && v < MIN_FRAME) {
        return new InvalidPeerLimitViolation(name);
      }
    }
    const d = defaultLimits();
    const or = (v: number, dflt: number): number => (v === 0 ? dflt : v);
    const limits: AdvertisedLimits = {
      maxFrame: Math.min(or(a.maxFrame, d.maxFrame), MAX_FRAME_CEILING),
      maxMessage: or(a.maxMessage, d.maxMessage),
      maxInFlight: or(a.maxInFlight, d.maxInFlight),
      initialStreamCredit: Math.min(or(a.initialStreamCredit, d.initialStreamCredit), MAX_WINDOW),
      connectionCredit: Math.min(or(a.connectionCredit, d.connectionCredit), MAX_WINDOW),
    };
    return {
      version,
      limits,
      compression: this.#config.compression && compression.includes(COMPRESSION_ZSTD),
      codecs,
      services,
      agent,
      uses,
    };
  }

  #openConnection(): void {
    this.#phase = 'open';
    this.#decoder.setMaxPayload(this.#config.limits.maxFrame);
    const peer = this.#peer as PeerInfo;
    this.#sendCredit = peer.limits.connectionCredit;
    this.#lastRx = this.#now;
    this.#lastActivity = this.#now;
    this.#pushEvent({ type: 'Connected', peer: clonePeer(peer) }, 0, undefined);
  }

  /** Parses the prelude of a message's first frame; returns its length (`skip`: the body follows it). */
  #prelude(
    h: Header,
    frame: Frame,
  ): { skip: number; deadline: number | undefined; uncompressed: number | undefined } {
    // The prelude is read from the first piece when it holds it, so that
    // a payload left in pieces is not gathered for it.
    const need = (hasFlag(h.flags, Flags.DEADLINE) ? 4 : 0) + (hasFlag(h.flags, Flags.COMPRESSED) ? 4 : 0);
    let head = EMPTY;
    if (need > 0) {
      const first = frame.parts?.[0];
      head = first !== undefined && first.length >= need ? first : frame.payload;
    }
    let skip = 0;
    const take = (what: string): number => {
      if (h.length - skip < 4) {
        throw violation(new ShortPreludeViolation(what));
      }
      const v = readU32le(head.subarray(skip));
      skip += 4;
      return v;
    };
    const deadline = hasFlag(h.flags, Flags.DEADLINE) ? take('deadline') : undefined;
    let uncompressed: number | undefined;
    const max = this.#config.limits.maxMessage;
    if (hasFlag(h.flags, Flags.COMPRESSED)) {
      const n = take('uncompressed size');
      if (!this.#config.compression) {
        throw violation(new CompressionNotNegotiatedViolation());
      }
      if (n > max) {
        throw new LimitExceededError('max_message', n, max);
      }
      uncompressed = n;
    }
    if (h.length - skip > max) {
      throw new LimitExceededError('max_message', h.length - skip, max);
    }
    return { skip, deadline, uncompressed };
  }

  /** Starts reassembling a message; it must complete within the partial-frame timeout. */
  #startAssembly(
    h: Header,
    first: Body,
    deadline: number | undefined,
    uncompressed: number | undefined,
  ): Assembly {
    const expires = this.#now + this.#config.timeouts.partialFrame;
    this.#assembling.insert(expires, h.id);
    return new Assembly(h, first, deadline, uncompressed, expires);
  }

  /** Charges connection credit for a message frame. */
  #chargeConnection(len: number): void {
    this.#recvWindow -= len;
    if (this.#recvWindow < 0) {
      throw new FlowControlError('connection');
    }
    // Non-final small frames are charged by `chargeSmall`; larger ones earn
    // their length back.
    if (len >= this.#config.limits.smallFrameThreshold) {
      this.#smallFrames.refund(len);
    }
  }

  #chargeSmall(h: Header): void {
    const threshold = this.#config.limits.smallFrameThreshold;
    const nonFinal =
      hasFlag(h.flags, Flags.MORE) ||
      (h.type === FrameType.STREAM_DATA && !hasFlag(h.flags, Flags.END) && h.length === 0);
    if (nonFinal && h.length < threshold && !this.#smallFrames.charge(threshold - h.length)) {
      throw new BudgetExhaustedError('small frames');
    }
  }

  /**
   * A frame naming a call this endpoint ended (cancel, deadline, error): the
   * peer may have had frames in flight, bounded by the credit it had, so
   * they cost nothing. Other strays are charged.
   */
  #strayOn(id: number): void {
    if (!this.#endedHere.has(id)) {
      this.#stray();
    }
  }

  /** Remembers a call this endpoint ended, for `strayOn`; the oldest is forgotten past {@link MAX_ENDED_HERE}. */
  #rememberEnded(id: number): void {
    if (!this.#endedHere.has(id)) {
      this.#endedHere.add(id);
      this.#endedOrder.pushBack(id);
      if (this.#endedOrder.length > MAX_ENDED_HERE) {
        const old = this.#endedOrder.popFront();
        if (old !== undefined) {
          this.#endedHere.delete(old);
        }
      }
    }
  }

  #stray(): void {
    if (this.#shutdown.kind !== 'none' || this.#goawaySent !== undefined) {
      return;
    }
    if (!this.#strays.charge(1)) {
      throw new BudgetExhaustedError('stray frames');
    }
  }

  #isLocalId(id: number): boolean {
    return (id % 2 === 1) === (this.#config.role === 'client');
  }

  /**
   * Classifies an id that names no live call: opened before (a stray frame,
   * dropped and counted) or never opened (a violation).
   */
  #unknownId(ty: FrameType, id: number): void {
    const last = this.#isLocalId(id) ? this.#lastLocalId : this.#lastPeerId;
    if (id > last) {
      throw violation(new UnopenedIdViolation(ty, id));
    }
    this.#strayOn(id);
  }

  #onOpen(frame: Frame): void {
    const h = frame.header;
    if (this.#isLocalId(h.id)) {
      throw violation(new WrongParityViolation(h.type, h.id));
    }
    if (h.id <= this.#lastPeerId) {
      throw violation(new IdNotIncreasingViolation(h.id, this.#lastPeerId));
    }
    this.#lastPeerId = h.id;
    this.#chargeConnection(h.length);
    this.#chargeSmall(h);
    if (this.#eofDone || (this.#goawaySent !== undefined && h.id > this.#goawaySent)) {
      // Refused by our GOAWAY: the peer knows it was not processed.
      this.#returnConnectionCredit(h.length);
      return;
    }
    const { skip, deadline, uncompressed } = this.#prelude(h, frame);
    const kind: Kind = h.type === FrameType.REQUEST ? 'unary' : h.type === FrameType.STREAM_OPEN ? 'stream' : 'event';
    const limits = this.#config.limits;
    if (kind === 'event') {
      if (hasFlag(h.flags, Flags.MORE)) {
        if (this.#eventAssemblies >= limits.maxInFlight) {
          throw new LimitExceededError('max_in_flight', this.#eventAssemblies + 1, limits.maxInFlight);
        }
        this.#eventAssemblies += 1;
        const call = new Call('event', 'remote');
        call.recvOpen = true;
        call.assembly = this.#startAssembly(h, firstBody(frame, skip), undefined, uncompressed);
        this.#returnConnectionCredit(h.length);
        this.#calls.set(h.id, call);
        return;
      }
      const message: Message = { codec: h.codec, body: frame.payload.subarray(skip), uncompressedLen: uncompressed };
      this.#strays.refund(1);
      this.#pushEvent({ type: 'Event', method: h.arg, message }, h.length, undefined);
      return;
    }
    if (this.#remoteInFlight >= limits.maxInFlight) {
      this.#returnConnectionCredit(h.length);
      if (!this.#errorResets.charge(1)) {
        throw new BudgetExhaustedError('refused calls');
      }
      this.#pushControl(FrameType.ERROR, h.id, ErrorCode.REFUSED, EMPTY);
      return;
    }
    const call = new Call(kind, 'remote');
    call.slot = true;
    call.recvOpen = true;
    call.sendOpen = true;
    call.method = h.arg;
    call.recvCredit = limits.initialStreamCredit;
    call.sendCredit = this.#peer?.limits.initialStreamCredit ?? 0;
    if (deadline !== undefined) {
      const at = this.#now + deadline;
      call.deadline = at;
      this.#deadlines.insert(at, h.id);
    }
    this.#remoteInFlight += 1;
    if (hasFlag(h.flags, Flags.MORE)) {
      call.assembly = this.#startAssembly(h, firstBody(frame, skip), deadline, uncompressed);
      this.#returnConnectionCredit(h.length);
      this.#calls.set(h.id, call);
      return;
    }
    const end = hasFlag(h.flags, Flags.END);
    if (kind === 'unary' || end) {
      call.recvOpen = false;
    }
    this.#calls.set(h.id, call);
    const message: Message = { codec: h.codec, body: frame.payload.subarray(skip), uncompressedLen: uncompressed };
    this.#deliverOpen(h.type, h.id, h.arg, message, deadline, end, h.length);
  }

  #deliverOpen(
    ty: FrameType,
    id: number,
    method: number,
    message: Message,
    deadline: number | undefined,
    end: boolean,
    credit: number,
  ): void {
    this.#strays.refund(1);
    const event: ConnectionEvent =
      ty === FrameType.REQUEST
        ? { type: 'Request', id, method, message, deadline }
        : { type: 'StreamOpened', id, method, message, end, deadline };
    this.#pushEvent(event, credit, id);
  }

  #onResponse(frame: Frame): void {
    const h = frame.header;
    if (!this.#isLocalId(h.id)) {
      throw violation(new WrongParityViolation(h.type, h.id));
    }
    this.#chargeConnection(h.length);
    this.#chargeSmall(h);
    const call = this.#calls.get(h.id);
    if (call === undefined) {
      this.#returnConnectionCredit(h.length);
      this.#unknownId(h.type, h.id);
      return;
    }
    if (call.kind !== 'unary' || call.assembly !== undefined) {
      throw violation(new UnexpectedFrameViolation(h.type));
    }
    const { skip, uncompressed } = this.#prelude(h, frame);
    if (hasFlag(h.flags, Flags.MORE)) {
      call.assembly = this.#startAssembly(h, firstBody(frame, skip), undefined, uncompressed);
      this.#returnConnectionCredit(h.length);
      return;
    }
    this.#completeResponse(h.id, { codec: h.codec, body: frame.payload.subarray(skip), uncompressedLen: uncompressed }, h.length);
  }

  #completeResponse(id: number, message: Message, credit: number): void {
    this.#removeCall(id);
    this.#strays.refund(1);
    this.#errorResets.refund(1);
    this.#pushEvent({ type: 'Response', id, message }, credit, undefined);
    this.#maybeFinish();
  }

  #onStreamData(frame: Frame): void {
    const h = frame.header;
    this.#chargeConnection(h.length);
    this.#chargeSmall(h);
    const call = this.#calls.get(h.id);
    if (call === undefined) {
      this.#returnConnectionCredit(h.length);
      this.#unknownId(h.type, h.id);
      return;
    }
    if (call.kind !== 'stream') {
      throw violation(new UnexpectedFrameViolation(h.type));
    }
    if (call.assembly !== undefined) {
      throw violation(new InterleavedMessageViolation(h.id));
    }
    if (call.cancelled) {
      this.#returnConnectionCredit(h.length);
      this.#strayOn(h.id);
      return;
    }
    if (!call.recvOpen) {
      this.#returnConnectionCredit(h.length);
      this.#resetStream(h.id, ErrorCode.STREAM_CLOSED);
      return;
    }
    call.recvCredit -= h.length;
    if (call.recvCredit < 0) {
      this.#returnConnectionCredit(h.length);
      this.#resetStream(h.id, ErrorCode.FLOW_CONTROL);
      return;
    }
    const { skip, uncompressed } = this.#prelude(h, frame);
    if (hasFlag(h.flags, Flags.MORE)) {
      call.assembly = this.#startAssembly(h, firstBody(frame, skip), undefined, uncompressed);
      this.#returnConnectionCredit(h.length);
      this.#creditReassembly(h.id, h.length);
      return;
    }
    const message: Message = { codec: h.codec, body: frame.payload.subarray(skip), uncompressedLen: uncompressed };
    this.#completeStreamData(h.id, message, hasFlag(h.flags, Flags.END), h.length);
  }

  #completeStreamData(id: number, message: Message, end: boolean, credit: number): void {
    if (end) {
      const call = this.#calls.get(id);
      if (call !== undefined) {
        call.recvOpen = false;
      }
    }
    this.#strays.refund(1);
    this.#pushEvent({ type: 'StreamData', id, message, end }, credit, undefined);
    this.#maybeRemove(id);
    this.#maybeFinish();
  }

  #onContinuation(frame: Frame): void {
    const h = frame.header;
    this.#chargeConnection(h.length);
    this.#chargeSmall(h);
    const maxMessage = this.#config.limits.maxMessage;
    const fragmentLimit = maxFragments(maxMessage);
    const call = this.#calls.get(h.id);
    if (call === undefined) {
      this.#returnConnectionCredit(h.length);
      this.#unknownId(h.type, h.id);
      return;
    }
    const a = call.assembly;
    if (a === undefined) {
      if (call.cancelled) {
        this.#returnConnectionCredit(h.length);
        this.#strayOn(h.id);
        return;
      }
      throw violation(new UnexpectedFrameViolation(h.type));
    }
    if (a.ty === FrameType.STREAM_DATA) {
      call.recvCredit -= h.length;
      if (call.recvCredit < 0) {
        this.#returnConnectionCredit(h.length);
        this.#resetStream(h.id, ErrorCode.FLOW_CONTROL);
        return;
      }
    }
    a.fragments += 1;
    if (a.fragments > fragmentLimit) {
      throw new LimitExceededError('max_fragments', a.fragments, fragmentLimit);
    }
    const total = a.bodyLen + h.length;
    if (total > maxMessage) {
      throw new LimitExceededError('max_message', total, maxMessage);
    }
    const stream = a.ty === FrameType.STREAM_DATA;
    a.push(frame);
    this.#returnConnectionCredit(h.length);
    if (stream) {
      this.#creditReassembly(h.id, h.length);
    }
    if (hasFlag(h.flags, Flags.MORE)) {
      return;
    }
    call.assembly = undefined;
    const message = a.message();
    const end = hasFlag(a.flags, Flags.END);
    switch (a.ty) {
      case FrameType.RESPONSE:
        this.#completeResponse(h.id, message, 0);
        return;
      case FrameType.STREAM_DATA:
        this.#completeStreamData(h.id, message, end, 0);
        return;
      case FrameType.EVENT:
        this.#calls.delete(h.id);
        this.#eventAssemblies -= 1;
        this.#strays.refund(1);
        this.#pushEvent({ type: 'Event', method: a.method, message }, 0, undefined);
        return;
      default:
        if (a.ty === FrameType.REQUEST || end) {
          call.recvOpen = false;
        }
        this.#deliverOpen(a.ty, h.id, a.method, message, a.deadline, end, 0);
    }
  }

  #onError(frame: Frame): void {
    const h = frame.header;
    if (!this.#isLocalId(h.id)) {
      throw violation(new WrongParityViolation(h.type, h.id));
    }
    const info = control(() => decodeErrorInfo(frame.payload));
    if (!this.#calls.has(h.id)) {
      this.#unknownId(h.type, h.id);
      return;
    }
    this.#failLocalCall(h.id, h.arg & 0xffff, info, 'remote');
    this.#maybeFinish();
  }

  #onCredit(h: Header): void {
    if (!this.#creditFrames.charge(1)) {
      throw new BudgetExhaustedError('credit frames');
    }
    const n = h.arg;
    if (h.id === 0) {
      if (this.#sendCredit + n > MAX_WINDOW) {
        throw new FlowControlError('connection credit overflow');
      }
      this.#sendCredit += n;
      return;
    }
    const call = this.#calls.get(h.id);
    if (call === undefined) {
      this.#unknownId(h.type, h.id);
      return;
    }
    if (call.kind !== 'stream') {
      throw violation(new UnexpectedFrameViolation(h.type));
    }
    if (call.sendCredit + n > MAX_WINDOW) {
      this.#resetStream(h.id, ErrorCode.FLOW_CONTROL);
      return;
    }
    call.sendCredit += n;
    if (call.blocked && call.queued < call.sendCredit) {
      call.blocked = false;
      this.#pushEvent({ type: 'Writable', id: h.id }, 0, undefined);
    }
  }

  #onCancel(h: Header): void {
    if (this.#isLocalId(h.id)) {
      throw violation(new WrongParityViolation(h.type, h.id));
    }
    const call = this.#calls.get(h.id);
    if (call === undefined) {
      this.#unknownId(h.type, h.id);
      return;
    }
    if (call.cancelled) {
      this.#stray();
      return;
    }
    if (!call.delivered && !this.#earlyCancels.charge(1)) {
      throw new BudgetExhaustedError('early cancels');
    }
    this.#cancelRemoteCall(h.id, ErrorCode.CANCELLED);
    this.#maybeFinish();
  }

  #onPing(frame: Frame): void {
    const prev = this.#lastPeerPing;
    if (prev !== undefined) {
      const quick = Math.max(0, this.#now - prev) < this.#config.timeouts.minPingInterval;
      if (!quick) {
        this.#pingStrikes = 0;
      } else if (!this.#sentMessageSincePeerPing) {
        this.#pingStrikes += 1;
        if (this.#pingStrikes > this.#config.limits.maxPingStrikes) {
          throw new BudgetExhaustedError('pings');
        }
      }
    }
    this.#lastPeerPing = this.#now;
    this.#sentMessageSincePeerPing = false;
    this.#pushControl(FrameType.PONG, 0, 0, frame.payload);
  }

  #onPong(frame: Frame): void {
    const p = frame.payload;
    const token =
      p.length >= PING_PAYLOAD_LEN ? new DataView(p.buffer, p.byteOffset, PING_PAYLOAD_LEN).getBigUint64(0, true) : 0n;
    const s = this.#shutdown;
    if (s.kind === 'announced' && token === s.token) {
      this.#sendFinalGoaway();
      return;
    }
    const pos = this.#userPings.findIndex(([t]) => t === token);
    if (pos >= 0) {
      const [[, sent]] = this.#userPings.splice(pos, 1) as [[bigint, number]];
      const rtt = Math.max(0, this.#now - sent);
      this.#pushEvent({ type: 'Pong', token, rtt }, 0, undefined);
      return;
    }
    if ((token & PING_TOKEN_MASK) < this.#nextPingToken) {
      return;
    }
    this.#stray();
  }

  #onGoaway(frame: Frame): void {
    const h = frame.header;
    const info = control(() => decodeGoAway(frame.payload));
    const code = h.arg & 0xffff;
    const refuseAbove = (last: number): void => {
      for (const id of this.#sortedIds((c, cid) => c.origin === 'local' && cid > last)) {
        this.#failLocalCall(id, ErrorCode.REFUSED, {}, 'remote');
      }
    };
    if (code !== ErrorCode.NO_ERROR || this.#phase !== 'open') {
      // Calls above `last` were not processed: they fail as REFUSED (safe to
      // retry) before the rest fail with the peer's code.
      refuseAbove(h.id);
      throw new RemoteCloseError(code, info.message);
    }
    const prev = this.#goawayReceived;
    if (prev !== undefined && h.id > prev) {
      throw violation(new GoAwayIncreasedViolation(h.id, prev));
    }
    this.#goawayReceived = h.id;
    refuseAbove(h.id);
    this.#pushEvent({ type: 'GoAway', lastId: h.id, code, message: info.message }, 0, undefined);
    this.#maybeFinish();
  }

  /** Ends a stream because of something the peer sent on it. */
  #resetStream(id: number, code: ErrorCode): void {
    if (!this.#errorResets.charge(1)) {
      throw new BudgetExhaustedError('error resets');
    }
    const call = this.#calls.get(id);
    if (call === undefined) {
      return;
    }
    this.#purgeOut(id);
    if (call.origin === 'local') {
      this.#pushControl(FrameType.CANCEL, id, 0, EMPTY);
      this.#failLocalCall(id, code, {}, 'local');
    } else {
      this.#pushControl(FrameType.ERROR, id, code, EMPTY);
      this.#cancelRemoteCall(id, code);
    }
  }

  // ----- internals: call table ----------------------------------------------------------

  /** Ids of the calls matching `pred`, in ascending order (Rust iterates a BTreeMap). */
  #sortedIds(pred: (c: Call, id: number) => boolean): number[] {
    const ids: number[] = [];
    for (const [id, c] of this.#calls) {
      if (pred(c, id)) {
        ids.push(id);
      }
    }
    return ids.sort((a, b) => a - b);
  }

  #removeCall(id: number): void {
    const call = this.#calls.get(id);
    if (call === undefined) {
      return;
    }
    this.#calls.delete(id);
    if (call.deadline !== undefined) {
      this.#deadlines.remove(call.deadline, id);
    }
    if (call.origin === 'local') {
      if (call.kind !== 'event') {
        this.#localInFlight -= 1;
        if (this.#sendBlocked) {
          this.#sendBlocked = false;
          this.#pushEvent({ type: 'Writable', id: undefined }, 0, undefined);
        }
      }
    } else if (call.kind === 'event') {
      this.#eventAssemblies -= 1;
    } else {
      this.#remoteInFlight -= 1;
    }
  }

  /**
   * Removes a call once both halves are closed, its frames are out and (for
   * a call the peer opened) the application has finished with it.
   */
  #maybeRemove(id: number): void {
    const c = this.#calls.get(id);
    if (c !== undefined) {
      const done = !c.sendOpen && !c.recvOpen && c.queued === 0 && c.assembly === undefined;
      if (done && !c.slot) {
        this.#removeCall(id);
      }
    }
  }

  /** A call the peer opened is finished from the application's side. */
  #releaseRemote(id: number): void {
    const call = this.#calls.get(id);
    if (call !== undefined) {
      call.slot = false;
      call.sendOpen = false;
      if (call.cancelled || call.kind === 'unary') {
        call.recvOpen = false;
      }
      if (call.deadline !== undefined) {
        this.#deadlines.remove(call.deadline, id);
        call.deadline = undefined;
      }
    }
    this.#maybeRemove(id);
    this.#maybeFinish();
  }

  #failLocalCall(id: number, code: ErrorCode, info: ErrorInfo, side: Side): void {
    this.#rememberEnded(id);
    this.#purgeOut(id);
    this.#removeCall(id);
    const full: ErrorInfo = { message: info.message, details: info.details };
    this.#pushEvent({ type: 'CallFailed', id, code, info: full, side }, 0, undefined);
  }

  /**
   * Ends a call the peer opened from the protocol's side. A handler the
   * application is running learns of it through `Cancelled` and keeps its
   * slot until it answers; otherwise the entry goes at once.
   */
  #cancelRemoteCall(id: number, code: ErrorCode): void {
    this.#rememberEnded(id);
    this.#purgeOut(id);
    const call = this.#calls.get(id);
    if (call === undefined) {
      return;
    }
    if (call.kind === 'event') {
      this.#removeCall(id);
      return;
    }
    call.cancelled = true;
    call.recvOpen = false;
    call.sendOpen = false;
    call.assembly = undefined;
    call.queued = 0;
    if (call.deadline !== undefined) {
      this.#deadlines.remove(call.deadline, id);
      call.deadline = undefined;
    }
    if (call.delivered && call.slot) {
      this.#pushEvent({ type: 'Cancelled', id, code }, 0, undefined);
    } else {
      // Never seen by the application, or already answered: no handler to
      // wait for.
      call.slot = false;
      this.#maybeRemove(id);
    }
  }

  /** Drops every queued frame of `id`; returns whether the call's opening frame was among them. */
  #purgeOut(id: number): boolean {
    let removed = 0;
    let openUnsent = false;
    this.#out.retain((m) => {
      if (m.id === id) {
        removed += m.remaining();
        openUnsent ||= m.isUnsentOpen();
        return false;
      }
      return true;
    });
    this.#queuedBytes -= removed;
    const call = this.#calls.get(id);
    if (call !== undefined) {
      call.queued = 0;
      call.outSeqs = [];
    }
    if (openUnsent) {
      this.#opens.retain((seq) => this.#out.some((m) => m.seq === seq));
    }
    return openUnsent;
  }

  // ----- internals: output ---------------------------------------------------------------

  #pushControl(ty: FrameType, id: number, arg: number, payload: Uint8Array): void {
    this.#control.pushBack(newFrame(newHeader(ty, id, arg, 0), payload));
  }

  #pushGoaway(last: number, code: ErrorCode, message: string | undefined): void {
    const info = { message: message === undefined ? undefined : truncateReason(message) };
    // The last id only ever decreases.
    const clamped = this.#goawaySent === undefined ? last : Math.min(this.#goawaySent, last);
    this.#goawaySent = clamped;
    this.#pushControl(FrameType.GOAWAY, clamped, code, encodeGoAway(info));
  }

  #sendFinalGoaway(): void {
    this.#pushGoaway(this.#lastPeerId, ErrorCode.NO_ERROR, undefined);
    if (this.#deferred.length > 0) {
      // The first GOAWAY is still held behind calls opened before the close:
      // the final one replaces it there, keeping the order.
      const last = this.#control.popBack() as Frame;
      this.#deferred.clear();
      this.#deferred.pushBack(last);
    }
    this.#shutdown = { kind: 'draining', deadline: this.#now + this.#config.timeouts.drain };
    this.#maybeFinish();
  }

  #pushEvent(event: ConnectionEvent, credit: number, opens: number | undefined): void {
    this.#eventBytes += messageLen(event);
    this.#events.pushBack({ event, credit, opens });
  }

  #returnConnectionCredit(n: number): void {
    if (n === 0 || this.isClosed()) {
      return;
    }
    this.#recvWindow += n;
    this.#recvUnreturned += n;
    const window = this.#config.limits.connectionCredit;
    // Hand credit back once half the window is used, so a sender never
    // stalls while data is being consumed.
    if (this.#recvUnreturned >= Math.floor(window / 2)) {
      const grant = this.#recvUnreturned > U32_MAX ? MAX_WINDOW : this.#recvUnreturned;
      this.#recvUnreturned = 0;
      this.#pushControl(FrameType.CREDIT, 0, grant, EMPTY);
    }
  }

  #enqueue(msg: OutMessage): void {
    msg.seq = this.#nextSeq;
    this.#nextSeq += 1;
    if (msg.isUnsentOpen()) {
      this.#opens.pushBack(msg.seq);
    }
    this.#calls.get(msg.id)?.outSeqs.push(msg.seq);
    this.#queuedBytes += msg.remaining();
    this.#out.pushBack(msg);
  }

  #takePingToken(): bigint {
    const t = this.#nextPingToken;
    this.#nextPingToken += 1n;
    return t;
  }

  #nextFrame(): Frame | undefined {
    if (this.#deferred.length > 0 && !this.#out.some((m) => m.isUnsentOpen())) {
      // Every call opened before `close` has gone out: the GOAWAY may follow them.
      for (let f = this.#deferred.popBack(); f !== undefined; f = this.#deferred.popBack()) {
        this.#control.pushFront(f);
      }
    }
    const ctl = this.#control.popFront();
    if (ctl !== undefined) {
      return ctl;
    }
    const limits = this.#config.limits;
    const peer = this.#peerLimits();
    const fragment = Math.min(peer.maxFrame, limits.sendFragment);
    const small = MIN_FRAGMENT;
    const asLen = (credit: number): number => Math.max(credit, 0);
    const rounds = this.#out.length;
    for (let i = 0; i < rounds; i++) {
      const msg = this.#out.popFront();
      if (msg === undefined) {
        return undefined;
      }
      const call = this.#calls.get(msg.id);
      // New ids go out in increasing order, the messages of one id one after
      // the other, and at most `maxInFlight` fragmented events are in
      // progress at once.
      const waitsTurn =
        (msg.isUnsentOpen() && this.#opens.peekFront() !== msg.seq) ||
        (call !== undefined && call.outSeqs[0] !== msg.seq) ||
        (!msg.isStarted() && msg.isEvent() && this.#eventsSending >= peer.maxInFlight);
      let credit = asLen(this.#sendCredit);
      let window = peer.connectionCredit;
      if (msg.streamCredit) {
        credit = Math.min(credit, call === undefined ? 0 : asLen(call.sendCredit));
        window = Math.min(window, peer.initialStreamCredit);
      }
      const budget = Math.min(credit, fragment);
      // A frame cut short by credit must be worth sending: wait for at least
      // a small frame's worth (or half the window, if smaller).
      const worth = Math.max(Math.min(small, Math.floor(window / 2), fragment), 1);
      const tooSmall = budget < msg.remaining() && budget < worth;
      if (waitsTurn || budget < msg.minFrame() || tooSmall) {
        this.#out.pushBack(msg);
        continue;
      }
      const opening = !msg.isStarted();
      if (msg.isUnsentOpen()) {
        this.#opens.popFront();
      }
      const frame = msg.nextFrame(budget);
      const len = frame.payload.length;
      const done = msg.isDone();
      this.#queuedBytes -= len;
      this.#sendCredit -= len;
      if (msg.isEvent() && opening !== done) {
        // A fragmented event starts (or ends) being reassembled.
        this.#eventsSending += opening ? 1 : -1;
      }
      const c = this.#calls.get(msg.id);
      if (c !== undefined) {
        if (done) {
          c.outSeqs.shift();
        }
        if (opening) {
          c.opened = true;
        }
        if (msg.streamCredit) {
          c.sendCredit -= len;
          c.queued -= len;
        }
      }
      if (opening) {
        this.#flushPendingGrant(msg.id);
      }
      this.#sentMessageSincePeerPing = true;
      this.#creditFrames.refund(limits.creditFramesPerData);
      if (!done) {
        this.#out.pushBack(msg);
      } else if (msg.streamCredit) {
        this.#maybeRemove(msg.id);
        this.#maybeFinish();
      }
      if (this.#sendBlocked && this.#queuedBytes < limits.maxSendQueue) {
        this.#sendBlocked = false;
        this.#pushEvent({ type: 'Writable', id: undefined }, 0, undefined);
      }
      return frame;
    }
    return undefined;
  }

  // ----- internals: closing ------------------------------------------------------------

  /** Ends the connection because of `error`: a GOAWAY with its code, then every call fails. */
  #fail(error: ConnectionError): void {
    if (this.isClosed()) {
      return;
    }
    const sendable = !(
      error instanceof RefusedError ||
      error instanceof RemoteCloseError ||
      error instanceof ConnectionLostError
    );
    this.#deferred.clear();
    this.#opens.clear();
    // Nothing queued goes out after a connection error, except our own
    // refusing HELLO_ACK and the GOAWAY that reports the error.
    if (!(error instanceof RefusedError && error.side === 'local')) {
      this.#control.clear();
      this.#out.clear();
      this.#queuedBytes = 0;
    }
    if (sendable && !this.#eof) {
      this.#pushGoaway(this.#lastPeerId, error.wireCode, error.reason());
    }
    this.#finishClosed(error);
  }

  #finishClosed(error: ConnectionError | undefined): void {
    if (this.isClosed()) {
      return;
    }
    const code = error === undefined ? ErrorCode.UNAVAILABLE : error.wireCode;
    for (const id of this.#sortedIds(() => true)) {
      const call = this.#calls.get(id) as Call;
      if (call.kind === 'event') {
        continue;
      }
      if (call.origin === 'local') {
        this.#pushEvent(
          { type: 'CallFailed', id, code, info: { message: undefined, details: undefined }, side: 'local' },
          0,
          undefined,
        );
      } else if (call.delivered && !call.cancelled && call.slot) {
        this.#pushEvent({ type: 'Cancelled', id, code }, 0, undefined);
      }
    }
    this.#calls.clear();
    this.#deadlines.clear();
    this.#assembling.clear();
    this.#out.clear();
    this.#queuedBytes = 0;
    this.#localInFlight = 0;
    this.#remoteInFlight = 0;
    this.#eventAssemblies = 0;
    this.#userPings = [];
    this.#phase = 'closed';
    this.#closeError = error;
    this.#pushEvent({ type: 'Closed', error }, 0, undefined);
  }

  /** Closes gracefully once a shutdown (ours or the peer's) has drained. */
  #maybeFinish(): void {
    if (this.#phase !== 'open' || this.#calls.size !== 0 || this.#out.length !== 0) {
      return;
    }
    if (this.#shutdown.kind === 'draining' || this.#goawayReceived !== undefined) {
      this.#finishClosed(undefined);
    }
  }
}
