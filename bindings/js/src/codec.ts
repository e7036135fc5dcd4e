/**
 * Whole frames: encoding into caller-owned buffers and incremental decoding
 * from a byte stream.
 *
 * {@link FrameDecoder.decode} follows the tokio-util decoder contract: a
 * frame when one is complete, `undefined` when more bytes are needed (nothing is
 * consumed), a thrown {@link FrameError} when the stream is unusable. After an
 * error the decoder throws the same error forever: a framing error is fatal
 * and nothing after it is delivered.
 *
 * Payloads are zero-copy `subarray` views of the {@link ReadBuffer}. The read
 * buffer never writes over bytes it has handed out: when it needs room it
 * moves the unread bytes to a fresh allocation, so a payload stays valid for
 * as long as the application holds it.
 *
 * @module
 */

import { InsufficientSizeError, TruncatedError, type FrameError } from './errors.js';
import { decodeHeader, encodeHeader, HEADER_LEN, U32_MAX, type Header } from './frame.js';

/**
 * At most this many bytes are reserved ahead of what has arrived, so memory
 * follows the bytes received rather than the length a peer declared.
 */
export const RESERVE_STEP = 64 * 1024;

/** Smallest allocation the read buffer makes, to amortize tiny reads. */
const MIN_ALLOCATION = 4 * 1024;

/** A frame: its header and a payload (`header.length === payload.length`). */
export interface Frame {
  /** The header. */
  header: Header;
  /** The payload bytes. */
  payload: Uint8Array;
}

/**
 * A frame with `header.length` set from the payload.
 *
 * @throws {RangeError} when the payload is longer than `u32::MAX` bytes.
 */
export function newFrame(header: Header, payload: Uint8Array): Frame {
  if (payload.length > U32_MAX) {
    throw new RangeError('frame payload longer than u32::MAX');
  }
  return { header: { ...header, length: payload.length }, payload };
}

/** Bytes a frame occupies on a byte stream. */
export function encodedLen(frame: Frame): number {
  return HEADER_LEN + frame.payload.length;
}

/**
 * Writes header and payload into `buf` at `offset` and returns the bytes
 * written.
 *
 * @throws {InsufficientSizeError} with the exact size required.
 */
export function encodeFrame(frame: Frame, buf: Uint8Array, offset = 0): number {
  const required = encodedLen(frame);
  const available = Math.max(0, buf.length - offset);
  if (available < required) {
    throw new InsufficientSizeError(required, available);
  }
  encodeHeader({ ...frame.header, length: frame.payload.length }, buf, offset);
  buf.set(frame.payload, offset + HEADER_LEN);
  return required;
}

/** Header and payload as one new buffer. */
export function frameToBytes(frame: Frame): Uint8Array {
  const out = new Uint8Array(encodedLen(frame));
  encodeFrame(frame, out);
  return out;
}

/** Several frames back to back as one new buffer. */
export function framesToBytes(frames: readonly Frame[]): Uint8Array {
  let total = 0;
  for (const f of frames) {
    total += encodedLen(f);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const f of frames) {
    at += encodeFrame(f, out, at);
  }
  return out;
}

/**
 * Decodes exactly one frame from a message-preserving transport (one
 * WebSocket binary message): trailing or missing bytes are an error. The
 * payload is a view of `message`.
 *
 * @throws {FrameError}
 */
export function decodeExact(message: Uint8Array, maxPayload: number): Frame {
  const header = decodeHeader(message, maxPayload);
  if (header === undefined) {
    throw new TruncatedError(message.length, HEADER_LEN);
  }
  const need = HEADER_LEN + header.length;
  if (message.length !== need) {
    throw new TruncatedError(message.length, need);
  }
  return { header, payload: message.subarray(HEADER_LEN) };
}

/**
 * A growable byte queue for received bytes: appended at the back, consumed at
 * the front as zero-copy views. Bytes once handed out are never overwritten.
 */
export class ReadBuffer {
  #buf: Uint8Array = new Uint8Array(0);
  #start = 0;
  #end = 0;

  /** Unconsumed bytes. */
  get length(): number {
    return this.#end - this.#start;
  }

  /** Bytes that can be appended without a new allocation. */
  get capacity(): number {
    return this.#buf.length - this.#start;
  }

  /** Whether no unconsumed byte is buffered. */
  isEmpty(): boolean {
    return this.#end === this.#start;
  }

  /** The unconsumed bytes (a view, valid until the next mutation's growth). */
  view(): Uint8Array {
    return this.#buf.subarray(this.#start, this.#end);
  }

  /** Makes room for at least `additional` more bytes. */
  reserve(additional: number): void {
    if (this.#buf.length - this.#end >= additional) {
      return;
    }
    const len = this.length;
    const needed = len + additional;
    const size = Math.max(needed, 2 * len, MIN_ALLOCATION);
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(this.#start, this.#end));
    // The old allocation is left as it is: views handed out keep it alive.
    this.#buf = next;
    this.#start = 0;
    this.#end = len;
  }

  /** Appends a copy of `data`. */
  append(data: Uint8Array): void {
    if (data.length === 0) {
      return;
    }
    this.reserve(data.length);
    this.#buf.set(data, this.#end);
    this.#end += data.length;
  }

  /** Drops `n` bytes from the front. */
  advance(n: number): void {
    if (n > this.length) {
      throw new RangeError(`cannot advance ${n} bytes past ${this.length}`);
    }
    this.#start += n;
  }

  /** Removes and returns the first `n` bytes as a view. */
  take(n: number): Uint8Array {
    if (n > this.length) {
      throw new RangeError(`cannot take ${n} bytes of ${this.length}`);
    }
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Drops every buffered byte. */
  clear(): void {
    this.#start = this.#end;
  }
}

type DecoderState = { readonly kind: 'head' } | { readonly kind: 'body'; readonly header: Header } | { readonly kind: 'failed'; readonly error: FrameError };

const HEAD: DecoderState = Object.freeze({ kind: 'head' });

/** Incremental frame decoder for byte-stream transports. */
export class FrameDecoder {
  #maxPayload: number;
  #state: DecoderState = HEAD;

  /** A decoder that rejects payloads longer than `maxPayload` bytes. */
  constructor(maxPayload: number) {
    this.#maxPayload = maxPayload;
  }

  /** The payload limit in force. */
  get maxPayload(): number {
    return this.#maxPayload;
  }

  /** Changes the payload limit for frames whose header has not been read. */
  setMaxPayload(maxPayload: number): void {
    this.#maxPayload = maxPayload;
  }

  /** Whether a frame has started but not completed (bytes are buffered, or a header has been read). */
  isMidFrame(buf: ReadBuffer): boolean {
    return this.#state.kind === 'body' || !buf.isEmpty();
  }

  /**
   * Decodes the next frame from the front of `buf`: the frame, or `undefined` when
   * more bytes are needed.
   *
   * @throws {FrameError} the same error on every call once the stream is broken.
   */
  decode(buf: ReadBuffer): Frame | undefined {
    for (;;) {
      const state = this.#state;
      switch (state.kind) {
        case 'failed':
          throw state.error;
        case 'head': {
          let header: Header | undefined;
          try {
            header = decodeHeader(buf.view(), this.#maxPayload);
          } catch (e) {
            this.#state = { kind: 'failed', error: e as FrameError };
            throw e;
          }
          if (header === undefined) {
            buf.reserve(HEADER_LEN - buf.length);
            return undefined;
          }
          buf.advance(HEADER_LEN);
          this.#state = { kind: 'body', header };
          break;
        }
        case 'body': {
          const len = state.header.length;
          if (buf.length < len) {
            const missing = len - buf.length;
            buf.reserve(Math.min(missing, RESERVE_STEP));
            return undefined;
          }
          this.#state = HEAD;
          return { header: state.header, payload: buf.take(len) };
        }
      }
    }
  }

  /**
   * At end of stream: returns when no partial frame is left.
   *
   * @throws {TruncatedError} when a frame is incomplete (or the sticky error).
   */
  decodeEof(buf: ReadBuffer): void {
    const state = this.#state;
    switch (state.kind) {
      case 'failed':
        throw state.error;
      case 'head':
        if (buf.isEmpty()) {
          return;
        }
        throw new TruncatedError(buf.length, HEADER_LEN);
      case 'body':
        throw new TruncatedError(HEADER_LEN + buf.length, HEADER_LEN + state.header.length);
    }
  }
}
