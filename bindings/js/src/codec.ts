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
 * The {@link ReadBuffer} keeps the arrays it is given (short ones are
 * gathered into blocks of its own) and never writes over bytes it has
 * handed out. A payload that lies whole in one array is a zero-copy
 * `subarray` view of it; one that spans several is copied once, into an
 * array of exactly its length, when its last byte has arrived (a long one
 * also comes as its pieces, {@link Frame.parts}, and is copied only when
 * `payload` is read). Nothing is reserved ahead of the bytes received,
 * whatever length a header declares, and a payload stays valid for as long
 * as the application holds it.
 *
 * @module
 */

import { InsufficientSizeError, TruncatedError, type FrameError } from './errors.js';
import { decodeHeader, encodeHeader, HEADER_LEN, U32_MAX, type Header } from './frame.js';

/**
 * At most this many bytes are reserved ahead of what has arrived, so memory
 * follows the bytes received rather than the length a peer declared. (The
 * {@link ReadBuffer} now reserves nothing ahead at all.)
 */
export const RESERVE_STEP = 64 * 1024;

/** A frame: its header and a payload (`header.length === payload.length`). */
export interface Frame {
  /** The header. */
  header: Header;
  /** The payload bytes. */
  payload: Uint8Array;
  /**
   * Set by {@link FrameDecoder} on a long payload that spans several input
   * arrays: views of its pieces, in order. `payload` then gathers them into
   * one array when first read, so a reader that can use the pieces (the
   * reassembly of a fragmented message) avoids that copy.
   */
  readonly parts?: readonly Uint8Array[] | undefined;
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
  const h = frame.header;
  encodeHeader(h.length === frame.payload.length ? h : { ...h, length: frame.payload.length }, buf, offset);
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
 * Appended arrays at least this long are kept as they are; shorter ones are
 * copied into the buffer's own block, so that a peer dribbling tiny reads
 * cannot make it hold one array object per byte.
 */
const KEEP_MIN = 4 * 1024;

/** Size of the buffer's own blocks, where short appends are gathered. */
const BLOCK = 16 * 1024;

const EMPTY = new Uint8Array(0);

/**
 * A queue of received bytes, appended at the back and consumed at the
 * front. An appended array of {@link KEEP_MIN} bytes or more is kept, not
 * copied (do not modify it afterwards); shorter ones are copied into a
 * block the buffer owns. Bytes that lie in one array come out as zero-copy
 * views of it; bytes spanning several are copied once into a new array of
 * exactly their length. Nothing is reserved ahead of the bytes received,
 * and bytes once handed out are never overwritten.
 */
export class ReadBuffer {
  /** The arrays holding unconsumed bytes, from index `#head`; the first from `#offset`. */
  #chunks: Uint8Array[] = [];
  #head = 0;
  #offset = 0;
  #length = 0;
  /** The block short appends are copied into, and how much of it is used. */
  #block: Uint8Array = EMPTY;
  #blockUsed = 0;

  /** Unconsumed bytes. */
  get length(): number {
    return this.#length;
  }

  /** Bytes that can be appended without a new allocation (room left in the buffer's own block). */
  get capacity(): number {
    return this.#block.length - this.#blockUsed;
  }

  /** Whether no unconsumed byte is buffered. */
  isEmpty(): boolean {
    return this.#length === 0;
  }

  /** The unconsumed bytes, as one view (gathered into one new array first if they span several). */
  view(): Uint8Array {
    return this.#front(this.#length);
  }

  /**
   * Does nothing: the buffer keeps the arrays appended, or gathers short
   * ones into blocks of its own, and never reserves room ahead.
   */
  reserve(_additional: number): void {}

  /** Appends `data`: kept by reference when it is {@link KEEP_MIN} bytes or more, else copied. */
  append(data: Uint8Array): void {
    const n = data.length;
    if (n === 0) {
      return;
    }
    if (this.#head > 0) {
      // Forget the arrays consumed.
      this.#chunks.splice(0, this.#head);
      this.#head = 0;
    }
    this.#length += n;
    if (n >= KEEP_MIN) {
      this.#chunks.push(data);
      return;
    }
    const last = this.#chunks.length - 1;
    const tail = this.#chunks[last];
    const block = this.#block;
    const used = this.#blockUsed;
    if (block.length - used >= n) {
      block.set(data, used);
      this.#blockUsed = used + n;
      // Extend the last array when it is the block's tail, else add a view.
      if (tail !== undefined && tail.buffer === block.buffer && tail.byteOffset + tail.length === block.byteOffset + used) {
        this.#chunks[last] = block.subarray(used - tail.length, used + n);
      } else {
        this.#chunks.push(block.subarray(used, used + n));
      }
      return;
    }
    const next = new Uint8Array(BLOCK);
    next.set(data);
    this.#block = next;
    this.#blockUsed = n;
    this.#chunks.push(next.subarray(0, n));
  }

  /** Drops `n` bytes from the front. */
  advance(n: number): void {
    if (n > this.#length) {
      throw new RangeError(`cannot advance ${n} bytes past ${this.#length}`);
    }
    this.#length -= n;
    let left = n;
    while (left > 0) {
      const first = this.#chunks[this.#head] as Uint8Array;
      const rest = first.length - this.#offset;
      if (left < rest) {
        this.#offset += left;
        return;
      }
      left -= rest;
      this.#head += 1;
      this.#offset = 0;
    }
  }

  /** Removes and returns the first `n` bytes: a view when they lie in one array, else a copy. */
  take(n: number): Uint8Array {
    if (n > this.#length) {
      throw new RangeError(`cannot take ${n} bytes of ${this.#length}`);
    }
    const out = this.#front(n);
    this.advance(n);
    return out;
  }

  /**
   * Removes the first `n` bytes and returns them as views of the arrays
   * holding them (one view when they lie in one array), without copying.
   */
  takeParts(n: number): Uint8Array[] {
    if (n > this.#length) {
      throw new RangeError(`cannot take ${n} bytes of ${this.#length}`);
    }
    const parts: Uint8Array[] = [];
    for (let i = this.#head, from = this.#offset, at = 0; at < n; i++, from = 0) {
      const c = this.#chunks[i] as Uint8Array;
      const k = Math.min(c.length - from, n - at);
      parts.push(c.subarray(from, from + k));
      at += k;
    }
    this.advance(n);
    return parts;
  }

  /** Drops every buffered byte. */
  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
  }

  /** The first `n` unconsumed bytes (`n <= length`), not consumed: a view, or a copy when they span arrays. */
  #front(n: number): Uint8Array {
    const start = this.#offset;
    const first = this.#chunks[this.#head];
    if (first === undefined || n === 0) {
      return EMPTY;
    }
    if (first.length - start >= n) {
      return first.subarray(start, start + n);
    }
    const out = new Uint8Array(n);
    let at = 0;
    for (let i = this.#head, from = start; at < n; i++, from = 0) {
      const c = this.#chunks[i] as Uint8Array;
      const k = Math.min(c.length - from, n - at);
      out.set(from === 0 && k === c.length ? c : c.subarray(from, from + k), at);
      at += k;
    }
    return out;
  }
}

/** `parts` copied back to back into one new array of `length` bytes (their total). */
export function gather(parts: readonly Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1) {
    return parts[0] as Uint8Array;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A decoded frame whose payload spans several arrays: gathered when `payload` is first read. */
function splitFrame(header: Header, parts: Uint8Array[]): Frame {
  let payload: Uint8Array | undefined;
  return {
    header,
    parts,
    get payload(): Uint8Array {
      payload ??= gather(parts, header.length);
      return payload;
    },
  };
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
          if (buf.length < HEADER_LEN) {
            return undefined;
          }
          let header: Header;
          try {
            header = decodeHeader(buf.take(HEADER_LEN), this.#maxPayload) as Header;
          } catch (e) {
            this.#state = { kind: 'failed', error: e as FrameError };
            throw e;
          }
          this.#state = { kind: 'body', header };
          break;
        }
        case 'body': {
          const len = state.header.length;
          if (buf.length < len) {
            return undefined;
          }
          this.#state = HEAD;
          // A long payload spanning arrays comes as its pieces (copied
          // only if `payload` is read); a short one is copied at once.
          if (len >= KEEP_MIN) {
            const parts = buf.takeParts(len);
            if (parts.length > 1) {
              return splitFrame(state.header, parts);
            }
            return { header: state.header, payload: parts[0] as Uint8Array };
          }
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
