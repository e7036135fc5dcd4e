/**
 * Wire constants: error codes, frame types, flags and payload codecs
 * (`docs/PROTOCOL.md` §3 and §7), mirroring `gatewire-proto`'s `code.rs` and
 * `frame.rs`.
 *
 * Every value space is open. A value is a plain `number`; the constant objects
 * name the values this version knows, and the `*Name` helpers return
 * `undefined` for anything else, so an unknown value is preserved as it is and
 * never replaced by a default.
 *
 * @module
 */

/**
 * An error code as carried on the wire by ERROR, GOAWAY and a refusing
 * HELLO_ACK: a `u16`. Codes `0x8000..=0xFFFF` belong to applications.
 */
export type ErrorCode = number;

/** The error codes this version names. */
export const ErrorCode = Object.freeze({
  /** No error: a graceful GOAWAY. */
  NO_ERROR: 0x0000,
  /** The peer broke a rule of the protocol. */
  PROTOCOL_VIOLATION: 0x0001,
  /** The peer sent more than its credit, or a grant overflowed a window. */
  FLOW_CONTROL: 0x0002,
  /** A frame or message exceeded a size limit. */
  TOO_LARGE: 0x0003,
  /** No handler is registered for the method id. */
  UNKNOWN_METHOD: 0x0004,
  /** The call was not processed and is safe to retry. */
  REFUSED: 0x0005,
  /** The caller cancelled the call. */
  CANCELLED: 0x0006,
  /** The call's deadline passed before it completed. */
  DEADLINE_EXCEEDED: 0x0007,
  /** The peer did not authenticate, or its credentials were rejected. */
  UNAUTHENTICATED: 0x0008,
  /** The authenticated peer may not call this method. */
  PERMISSION_DENIED: 0x0009,
  /** The handler failed. */
  INTERNAL: 0x000a,
  /** The peer spent a budget (pings, cancels, resets, tiny frames...). */
  EXCESSIVE_LOAD: 0x000b,
  /** No protocol version, feature or schema in common. */
  INCOMPATIBLE: 0x000c,
  /** The connection saw no progress in time. */
  TIMEOUT: 0x000d,
  /** The endpoint is shutting down or cannot serve now. */
  UNAVAILABLE: 0x000e,
  /** A frame named a stream whose receiving half is closed. */
  STREAM_CLOSED: 0x000f,
  /** The peer's payload could not be decoded by the application. */
  INVALID_ARGUMENT: 0x0010,
} as const);

/** First code of the application-defined range. */
export const APPLICATION_ERROR_MIN = 0x8000;

const ERROR_CODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(ErrorCode).map(([name, value]) => [value, name]),
);

/** The code's name, or `undefined` for a code this version does not know. */
export function errorCodeName(code: ErrorCode): string | undefined {
  return ERROR_CODE_NAMES.get(code);
}

/** The code as a name, or `0x` and four hex digits for an unnamed code. */
export function errorCodeLabel(code: ErrorCode): string {
  return errorCodeName(code) ?? hex(code, 4);
}

/** Human-readable form: `REFUSED (0x0005)`, or `0x1234` for an unnamed code. */
export function displayErrorCode(code: ErrorCode): string {
  const name = errorCodeName(code);
  return name === undefined ? hex(code, 4) : `${name} (${hex(code, 4)})`;
}

/** Whether the code is in the application-defined range. */
export function isApplicationCode(code: ErrorCode): boolean {
  return code >= APPLICATION_ERROR_MIN;
}

/**
 * A frame type byte. Types `0x80..=0xFF` are extensions: a receiver that does
 * not know one ignores the frame (and charges it to a budget). Any other
 * unknown type is a protocol violation.
 */
export type FrameType = number;

/** The frame types this version defines (`docs/PROTOCOL.md` §3.2). */
export const FrameType = Object.freeze({
  /** Opens the connection (client → server). Payload: `Hello` table. */
  HELLO: 0x01,
  /** Accepts or refuses the connection (server → client). Payload: `HelloAck`. */
  HELLO_ACK: 0x02,
  /** Opens a unary call. `id`: new call id; `arg`: method id. */
  REQUEST: 0x03,
  /** Completes a unary call. `id`: the call. */
  RESPONSE: 0x04,
  /** Ends a call or stream with an error. `id`: the call; `arg`: error code. */
  ERROR: 0x05,
  /** A one-way message. `id`: new id; `arg`: method id. */
  EVENT: 0x06,
  /** Opens a stream. `id`: new stream id; `arg`: method id. */
  STREAM_OPEN: 0x07,
  /** A message on an open stream. `id`: the stream. */
  STREAM_DATA: 0x08,
  /** Grants credit. `id`: 0 for the connection or a stream; `arg`: bytes. */
  CREDIT: 0x09,
  /** The caller abandons a call or stream. `id`: the call. */
  CANCEL: 0x0a,
  /** Liveness probe; payload: 8 opaque bytes. */
  PING: 0x0b,
  /** Answer to PING; payload: the PING's 8 bytes. */
  PONG: 0x0c,
  /** Stop opening calls. `id`: last peer id processed; `arg`: error code. */
  GOAWAY: 0x0d,
  /** Next fragment of a message. `id`: the message's call or stream. */
  CONTINUATION: 0x0e,
} as const);

/** First type byte of the ignorable extension range. */
export const EXTENSION_MIN = 0x80;

const FRAME_TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(FrameType).map(([name, value]) => [value, name]),
);

/** The type's name, or `undefined` when this version does not define it. */
export function frameTypeName(type: FrameType): string | undefined {
  return FRAME_TYPE_NAMES.get(type);
}

/** Human-readable form: `REQUEST`, or `frame type 0x42`. */
export function displayFrameType(type: FrameType): string {
  return frameTypeName(type) ?? `frame type ${hex(type, 2)}`;
}

/** Whether the type is in the ignorable extension range. */
export function isExtension(type: FrameType): boolean {
  return type >= EXTENSION_MIN;
}

/**
 * Whether frames of this type start a message that may span several frames
 * and carries a payload codec (REQUEST, RESPONSE, EVENT, STREAM_OPEN,
 * STREAM_DATA).
 */
export function isMessageType(type: FrameType): boolean {
  return type === 0x03 || type === 0x04 || type === 0x06 || type === 0x07 || type === 0x08;
}

/** Whether a frame of this type opens a new id (REQUEST, EVENT, STREAM_OPEN). */
export function opensId(type: FrameType): boolean {
  return type === 0x03 || type === 0x06 || type === 0x07;
}

/**
 * Frame flag bits (`docs/PROTOCOL.md` §3.3). Bits `0x10..=0x80` are reserved
 * and MUST be zero.
 */
export type Flags = number;

/** The flag bits. */
export const Flags = Object.freeze({
  /** No flag. */
  NONE: 0x00,
  /** More fragments of this message follow as CONTINUATION frames. */
  MORE: 0x01,
  /** The body is compressed; four payload bytes give its decompressed size. */
  COMPRESSED: 0x02,
  /** The sender's half of the stream ends with this message. */
  END: 0x04,
  /** The first four payload bytes are a relative deadline in milliseconds. */
  DEADLINE: 0x08,
} as const);

/** Whether every bit of `bit` is set in `flags`. */
export function hasFlag(flags: Flags, bit: Flags): boolean {
  return (flags & bit) === bit;
}

/** The flags a frame of this type may carry. */
export function allowedFlags(type: FrameType): Flags {
  switch (type) {
    case 0x03:
      return Flags.MORE | Flags.COMPRESSED | Flags.DEADLINE;
    case 0x04:
    case 0x06:
      return Flags.MORE | Flags.COMPRESSED;
    case 0x07:
      return Flags.MORE | Flags.COMPRESSED | Flags.DEADLINE | Flags.END;
    case 0x08:
      return Flags.MORE | Flags.COMPRESSED | Flags.END;
    case 0x0e:
      return Flags.MORE;
    default:
      return type >= EXTENSION_MIN ? 0xff : 0;
  }
}

/**
 * The payload codec tag of a message (`docs/PROTOCOL.md` §5.3). Unknown values
 * are preserved for the application to judge.
 */
export type Codec = number;

/** The codecs this version names. */
export const Codec = Object.freeze({
  /** Opaque bytes. */
  RAW: 0,
  /** A FlatBuffers buffer. */
  FLATBUFFERS: 1,
  /** postcard (serde), for Rust ↔ Rust messages. */
  POSTCARD: 2,
  /** UTF-8 JSON. */
  JSON: 3,
} as const);

/** `0x` followed by `digits` lower-case hex digits. */
export function hex(value: number, digits: number): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}
