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
 * ## Lent input
 *
 * An array may be appended with a `release` callback: its owner (a
 * transport reading into recycled buffers) wants the memory back. The
 * buffer calls `release` once no unconsumed byte lies in the array and no
 * view of it is held outside: a short array is copied and released at once;
 * a payload or header short enough to be copied is copied; a long payload's
 * views are lent with the frame ({@link Frame.release}) and come back when
 * the reader releases the frame. A view handed out any other way pins the
 * array for good: `release` is then never called and the array is left to
 * the garbage collector. So bytes once handed out are never overwritten.
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
  /**
   * Set by {@link FrameDecoder} when the payload lies in arrays appended
   * with a `release` callback: call it once nothing refers to `payload` or
   * `parts` any more (their memory may then be reused). Calls after the
   * first do nothing. Never calling it is always safe: the arrays are then
   * left to the garbage collector.
   */
  readonly release?: (() => void) | undefined;
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
 * The claim of an array's owner on it: `release` runs when the last holder
 * drops it, unless a view of it escaped (`pinned`).
 */
class Lease {
  #refs = 1;
  #pinned = false;
  readonly #release: () => void;

  constructor(release: () => void) {
    this.#release = release;
  }

  retain(): void {
    this.#refs += 1;
  }

  /** A view escaped: the array must never be reused. */
  pin(): void {
    this.#pinned = true;
  }

  drop(): void {
    if (this.#refs <= 0) {
      return;
    }
    this.#refs -= 1;
    if (this.#refs === 0 && !this.#pinned) {
      this.#release();
    }
  }
}

/** Drops each lease once, however often the returned function is called. */
function dropAll(leases: readonly Lease[]): () => void {
  let done = false;
  return () => {
    if (done) {
      return;
    }
    done = true;
    for (const l of leases) {
      l.drop();
    }
  };
}

/**
 * A queue of received bytes, appended at the back and consumed at the
 * front. An appended array of {@link KEEP_MIN} bytes or more is kept, not
 * copied (do not modify it afterwards); shorter ones are copied into a
 * block the buffer owns. Bytes that lie in one array come out as zero-copy
 * views of it; bytes spanning several are copied once into a new array of
 * exactly their length. Nothing is reserved ahead of the bytes received,
 * and bytes once handed out are never overwritten. An array appended with a
 * `release` callback is lent (see the module docs): it is given back once
 * nothing refers to it.
 */
export class ReadBuffer {
  /** The arrays holding unconsumed bytes, from index `#head`; the first from `#offset`. */
  #chunks: Uint8Array[] = [];
  /** The lease of each array of `#chunks` that was lent (same index), else `undefined`. */
  #leases: (Lease | undefined)[] = [];
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

  /** The unconsumed bytes, as one view (gathered into one new array first if they span several, copied if they lie in a lent array). */
  view(): Uint8Array {
    return this.#front(this.#length, true);
  }

  /**
   * Does nothing: the buffer keeps the arrays appended, or gathers short
   * ones into blocks of its own, and never reserves room ahead.
   */
  reserve(_additional: number): void {}

  /**
   * Appends `data`: kept by reference when it is {@link KEEP_MIN} bytes or
   * more, else copied. With `release`, `data` is lent: `release` is called
   * once the buffer no longer refers to it and no view of it escaped (at
   * once when it was copied), at most once; until then its owner must not
   * modify it.
   */
  append(data: Uint8Array, release?: () => void): void {
    const n = data.length;
    if (n === 0) {
      release?.();
      return;
    }
    if (this.#head > 0) {
      // Forget the arrays consumed.
      this.#chunks.splice(0, this.#head);
      this.#leases.splice(0, this.#head);
      this.#head = 0;
    }
    this.#length += n;
    if (n >= KEEP_MIN) {
      this.#chunks.push(data);
      this.#leases.push(release === undefined ? undefined : new Lease(release));
      return;
    }
    this.#copyIn(data);
    release?.();
  }

  /** Copies `data` (shorter than a block) to the end of the buffer's own block. */
  #copyIn(data: Uint8Array): void {
    const n = data.length;
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
        this.#leases.push(undefined);
      }
      return;
    }
    const next = new Uint8Array(BLOCK);
    next.set(data);
    this.#block = next;
    this.#blockUsed = n;
    this.#chunks.push(next.subarray(0, n));
    this.#leases.push(undefined);
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
      this.#leases[this.#head]?.drop();
      this.#head += 1;
      this.#offset = 0;
    }
  }

  /**
   * Removes and returns the first `n` bytes: a view when they lie in one
   * array, else a copy. Bytes of a lent array come as a copy (in the
   * buffer's own block when they are short), so the array can be given back.
   */
  take(n: number): Uint8Array {
    if (n > this.#length) {
      throw new RangeError(`cannot take ${n} bytes of ${this.#length}`);
    }
    const out = this.#front(n, true);
    this.advance(n);
    return out;
  }

  /**
   * The first `n` bytes, not consumed, for the caller to read at once: a
   * view even of a lent array (a copy when they span arrays). The caller
   * must not keep it past the next call that changes the buffer.
   */
  peek(n: number): Uint8Array {
    if (n > this.#length) {
      throw new RangeError(`cannot peek ${n} bytes of ${this.#length}`);
    }
    return this.#front(n, false);
  }

  /**
   * Removes the first `n` bytes and returns them as views of the arrays
   * holding them (one view when they lie in one array), without copying.
   * The views keep lent arrays from ever being given back (see
   * {@link ReadBuffer.takeLent}).
   */
  takeParts(n: number): Uint8Array[] {
    const { parts, leases } = this.#parts(n);
    for (const l of leases) {
      l.pin();
    }
    return parts;
  }

  /**
   * Like {@link ReadBuffer.takeParts}, with `release` to call once nothing
   * refers to the views any more (`undefined` when no array was lent); not
   * calling it keeps the lent arrays from being given back, which is safe.
   */
  takeLent(n: number): { parts: Uint8Array[]; release: (() => void) | undefined } {
    const { parts, leases } = this.#parts(n);
    return { parts, release: leases.length === 0 ? undefined : dropAll(leases) };
  }

  #parts(n: number): { parts: Uint8Array[]; leases: Lease[] } {
    if (n > this.#length) {
      throw new RangeError(`cannot take ${n} bytes of ${this.#length}`);
    }
    const parts: Uint8Array[] = [];
    const leases: Lease[] = [];
    for (let i = this.#head, from = this.#offset, at = 0; at < n; i++, from = 0) {
      const c = this.#chunks[i] as Uint8Array;
      const k = Math.min(c.length - from, n - at);
      parts.push(c.subarray(from, from + k));
      const lease = this.#leases[i];
      if (lease !== undefined) {
        lease.retain();
        leases.push(lease);
      }
      at += k;
    }
    this.advance(n);
    return { parts, leases };
  }

  /** Drops every buffered byte (lent arrays are given back). */
  clear(): void {
    const leases = this.#leases.slice(this.#head);
    this.#chunks = [];
    this.#leases = [];
    this.#head = 0;
    this.#offset = 0;
    this.#length = 0;
    for (const l of leases) {
      l?.drop();
    }
  }

  /**
   * The first `n` unconsumed bytes (`n <= length`), not consumed: a view,
   * or a copy when they span arrays. With `keep`, the caller keeps the
   * result: bytes of a lent array are then copied.
   */
  #front(n: number, keep: boolean): Uint8Array {
    const start = this.#offset;
    const first = this.#chunks[this.#head];
    if (first === undefined || n === 0) {
      return EMPTY;
    }
    if (first.length - start >= n) {
      const v = first.subarray(start, start + n);
      if (!keep || this.#leases[this.#head] === undefined) {
        return v;
      }
      if (n >= KEEP_MIN) {
        return v.slice();
      }
      // A short copy goes to the buffer's own block, not to an array of its own.
      if (this.#block.length - this.#blockUsed < n) {
        this.#block = new Uint8Array(BLOCK);
        this.#blockUsed = 0;
      }
      const at = this.#blockUsed;
      this.#block.set(v, at);
      this.#blockUsed = at + n;
      return this.#block.subarray(at, at + n);
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
function splitFrame(header: Header, parts: Uint8Array[], release: (() => void) | undefined): Frame {
  let payload: Uint8Array | undefined;
  return {
    header,
    parts,
    release,
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
            // Read in place: the header is parsed before the bytes are consumed.
            header = decodeHeader(buf.peek(HEADER_LEN), this.#maxPayload) as Header;
          } catch (e) {
            buf.advance(HEADER_LEN);
            this.#state = { kind: 'failed', error: e as FrameError };
            throw e;
          }
          buf.advance(HEADER_LEN);
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
          // only if `payload` is read), lent when they lie in lent arrays;
          // a short one is a view, or a copy when it spans arrays or lies
          // in a lent one.
          if (len >= KEEP_MIN) {
            const { parts, release } = buf.takeLent(len);
            if (parts.length > 1) {
              return splitFrame(state.header, parts, release);
            }
            return { header: state.header, payload: parts[0] as Uint8Array, release };
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
