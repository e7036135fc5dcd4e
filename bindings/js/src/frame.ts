/**
 * Frame header: layout, types, flags and the rules that need no connection
 * state (`docs/PROTOCOL.md` §3).
 *
 * Every frame is a fixed 16-byte little-endian header followed by `length`
 * payload bytes:
 *
 * ```text
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                   payload length (u32 LE)                     |  0
 * +---------------+---------------+---------------+---------------+
 * |     type      |     flags     |     codec     |  reserved (0) |  4
 * +---------------+---------------+---------------+---------------+
 * |                        id (u32 LE)                            |  8
 * +---------------------------------------------------------------+
 * |                        arg (u32 LE)                           | 12
 * +---------------------------------------------------------------+
 * |                   payload (length bytes) ...
 * ```
 *
 * {@link decodeHeader} checks everything that can be checked from the header
 * alone — the length against the caller's limit first, before a byte of
 * payload is buffered — so a decoder never reserves memory for a frame it
 * will reject.
 *
 * @module
 */

import {
  FrameTooLargeError,
  InsufficientSizeError,
  InvalidArgError,
  InvalidFlagsError,
  InvalidIdError,
  InvalidLengthError,
  ReservedByteError,
  UnexpectedCodecError,
  UnknownTypeError,
} from './errors.js';
import { allowedFlags, Codec, Flags, FrameType, frameTypeName, isExtension, isMessageType } from './wire.js';

export {
  allowedFlags,
  Codec,
  displayFrameType,
  EXTENSION_MIN,
  Flags,
  FrameType,
  frameTypeName,
  hasFlag,
  isExtension,
  isMessageType,
  opensId,
} from './wire.js';

/** Size of the fixed frame header in bytes. */
export const HEADER_LEN = 16;

/** Hard ceiling on a frame payload, whatever the configured limit: 16 MiB − 1. */
export const MAX_FRAME_CEILING = 0xff_ffff;

/** Payload length of PING and PONG frames. */
export const PING_PAYLOAD_LEN = 8;

/** Largest value of a `u32` field. */
export const U32_MAX = 0xffff_ffff;

/** A decoded frame header. All fields are unsigned integers. */
export interface Header {
  /** Payload length in bytes, not counting the header (`u32`). */
  length: number;
  /** Frame type (`u8`). */
  type: FrameType;
  /** Flag bits (`u8`). */
  flags: Flags;
  /** Payload codec (`u8`; message frames only, zero elsewhere). */
  codec: Codec;
  /** Call or stream id (`u32`); 0 for connection-level frames. */
  id: number;
  /** Type-specific argument (`u32`): method id, error code or credit. */
  arg: number;
}

/** A header with no flags, codec 0 and the given fields. */
export function newHeader(type: FrameType, id: number, arg: number, length: number): Header {
  return { length, type, flags: Flags.NONE, codec: Codec.RAW, id, arg };
}

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw new RangeError(`header ${name} ${v} is not a u32`);
  }
}

function checkU8(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) {
    throw new RangeError(`header ${name} ${v} is not a u8`);
  }
}

/**
 * Writes the 16 header bytes into `buf` at `offset`.
 *
 * @throws {InsufficientSizeError} when fewer than 16 bytes are available.
 * @throws {RangeError} when a field is outside its integer range.
 */
export function encodeHeader(h: Header, buf: Uint8Array, offset = 0): void {
  const available = Math.max(0, buf.length - offset);
  if (available < HEADER_LEN) {
    throw new InsufficientSizeError(HEADER_LEN, available);
  }
  checkU32('length', h.length);
  checkU8('type', h.type);
  checkU8('flags', h.flags);
  checkU8('codec', h.codec);
  checkU32('id', h.id);
  checkU32('arg', h.arg);
  const view = new DataView(buf.buffer, buf.byteOffset + offset, HEADER_LEN);
  view.setUint32(0, h.length, true);
  view.setUint8(4, h.type);
  view.setUint8(5, h.flags);
  view.setUint8(6, h.codec);
  view.setUint8(7, 0);
  view.setUint32(8, h.id, true);
  view.setUint32(12, h.arg, true);
}

/** The 16 header bytes. */
export function headerToBytes(h: Header): Uint8Array {
  const out = new Uint8Array(HEADER_LEN);
  encodeHeader(h, out);
  return out;
}

/**
 * Decodes and validates a header.
 *
 * Returns `undefined` when fewer than 16 bytes are given. The length is checked
 * against `maxPayload` (clamped to {@link MAX_FRAME_CEILING}) before anything
 * else, then the reserved byte, then {@link validateHeader}.
 *
 * @throws {FrameError} when the header breaks a rule.
 */
export function decodeHeader(buf: Uint8Array, maxPayload: number): Header | undefined {
  if (buf.length < HEADER_LEN) {
    return undefined;
  }
  const view = new DataView(buf.buffer, buf.byteOffset, HEADER_LEN);
  const header: Header = {
    length: view.getUint32(0, true),
    type: view.getUint8(4),
    flags: view.getUint8(5),
    codec: view.getUint8(6),
    id: view.getUint32(8, true),
    arg: view.getUint32(12, true),
  };
  const max = maxPayload > MAX_FRAME_CEILING ? MAX_FRAME_CEILING : maxPayload;
  if (header.length > max) {
    throw new FrameTooLargeError(header.length, max);
  }
  const reserved = view.getUint8(7);
  if (reserved !== 0) {
    throw new ReservedByteError(reserved);
  }
  validateHeader(header);
  return header;
}

/**
 * Checks the per-type rules of `docs/PROTOCOL.md` §3.4 (everything but the
 * length limit and the reserved byte), in this order: type, flags, codec, id,
 * arg, length.
 *
 * @throws {FrameError} naming the first rule broken.
 */
export function validateHeader(h: Header): void {
  const ty = h.type;
  if (frameTypeName(ty) === undefined && !isExtension(ty)) {
    throw new UnknownTypeError(ty);
  }
  if (isExtension(ty)) {
    return;
  }
  if ((h.flags & ~allowedFlags(ty) & 0xff) !== 0) {
    throw new InvalidFlagsError(ty, h.flags);
  }
  if (!isMessageType(ty) && h.codec !== Codec.RAW) {
    throw new UnexpectedCodecError(ty, h.codec);
  }
  const connectionLevel =
    ty === FrameType.HELLO || ty === FrameType.HELLO_ACK || ty === FrameType.PING || ty === FrameType.PONG;
  // CREDIT may name the connection (0) or a stream; GOAWAY names a last id.
  const anyId = ty === FrameType.CREDIT || ty === FrameType.GOAWAY;
  if (!anyId && connectionLevel !== (h.id === 0)) {
    throw new InvalidIdError(ty, h.id);
  }
  let argOk: boolean;
  switch (ty) {
    case FrameType.REQUEST:
    case FrameType.EVENT:
    case FrameType.STREAM_OPEN:
      argOk = true;
      break;
    case FrameType.ERROR:
      argOk = h.arg !== 0 && h.arg <= 0xffff;
      break;
    case FrameType.GOAWAY:
      argOk = h.arg <= 0xffff;
      break;
    case FrameType.CREDIT:
      argOk = h.arg !== 0;
      break;
    default:
      argOk = h.arg === 0;
  }
  if (!argOk) {
    throw new InvalidArgError(ty, h.arg);
  }
  let lenOk: boolean;
  switch (ty) {
    case FrameType.PING:
    case FrameType.PONG:
      lenOk = h.length === PING_PAYLOAD_LEN;
      break;
    case FrameType.CREDIT:
    case FrameType.CANCEL:
      lenOk = h.length === 0;
      break;
    case FrameType.CONTINUATION:
      lenOk = h.length !== 0;
      break;
    default:
      lenOk = true;
  }
  if (!lenOk) {
    throw new InvalidLengthError(ty, h.length);
  }
}
