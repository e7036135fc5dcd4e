/**
 * Every error the core raises, in one tree, split by who is at fault
 * (mirroring `gatewire-proto`'s `FrameError`, `ControlError`, `Violation`,
 * `ConnectionError`, `ApiError` and `SendError`).
 *
 * ```text
 * GatewireError                       root; `code` is a stable string
 * ├── FrameError                      malformed bytes (header rules)      "frame.*"
 * │   ├── FrameTooLargeError            frame.too_large
 * │   ├── ReservedByteError             frame.reserved_byte
 * │   ├── UnknownTypeError              frame.unknown_type
 * │   ├── InvalidFlagsError             frame.invalid_flags
 * │   ├── UnexpectedCodecError          frame.unexpected_codec
 * │   ├── InvalidIdError                frame.invalid_id
 * │   ├── InvalidArgError               frame.invalid_arg
 * │   ├── TruncatedError                frame.truncated
 * │   └── InvalidLengthError            frame.invalid_length
 * ├── InsufficientSizeError           caller's buffer too small           "frame.insufficient_size"
 * ├── InvalidLimitError               a limit outside its range           "limits.invalid"
 * ├── IncompatibleError               services cannot work together (§10.3) "services.incompatible"
 * ├── ControlError                    a control table failed verification "control.*"
 * │   ├── ControlInvalidError           control.invalid
 * │   ├── ControlMissingError           control.missing
 * │   └── EmptyVersionRangeError        control.empty_version_range
 * ├── Violation                       the peer broke a protocol rule      "violation.*"
 * │   ├── UnexpectedFrameViolation      violation.unexpected_frame
 * │   ├── WrongParityViolation          violation.wrong_parity
 * │   ├── IdNotIncreasingViolation      violation.id_not_increasing
 * │   ├── UnopenedIdViolation           violation.unopened_id
 * │   ├── InterleavedMessageViolation   violation.interleaved_message
 * │   ├── ShortPreludeViolation         violation.short_prelude
 * │   ├── CompressionNotNegotiatedViolation  violation.compression_not_negotiated
 * │   ├── VersionNotOfferedViolation    violation.version_not_offered
 * │   ├── InvalidPeerLimitViolation     violation.invalid_peer_limit
 * │   └── GoAwayIncreasedViolation      violation.goaway_increased
 * ├── ConnectionError                 why a connection ended              "connection.*"
 * │   ├── MalformedError                connection.malformed    (wraps a FrameError)
 * │   ├── ControlFailedError            connection.control      (wraps a ControlError)
 * │   ├── ProtocolViolationError        connection.violation    (wraps a Violation)
 * │   ├── LimitExceededError            connection.limit_exceeded
 * │   ├── FlowControlError              connection.flow_control
 * │   ├── BudgetExhaustedError          connection.budget
 * │   ├── TimeoutError                  connection.timeout
 * │   ├── RefusedError                  connection.refused
 * │   ├── RemoteCloseError              connection.remote
 * │   ├── LocalCloseError               connection.local
 * │   └── ConnectionLostError           connection.lost
 * ├── ApiError                        a command the application should not have given "api.*"
 * │   ├── InvalidStateError             api.invalid_state
 * │   ├── InvalidArgumentError          api.invalid_argument
 * │   └── UnknownCallError              api.unknown_call
 * └── SendError                       a send that queued nothing          "send.*"
 *     ├── BlockedError                  send.blocked
 *     ├── MessageTooLargeError          send.too_large
 *     ├── ClosingError                  send.closing
 *     ├── ClosedError                   send.closed
 *     ├── IdsExhaustedError             send.ids_exhausted
 *     └── SendUnknownCallError          send.unknown_call
 * ```
 *
 * `code` strings are stable; `message` texts are not an API. Errors that map
 * to a wire code carry it as `wireCode` (an open `u16`: unknown codes
 * received from a peer are preserved as they are). Where Rust returns
 * `SendError::Api(e)`, the TypeScript core throws the `ApiError` itself.
 *
 * @module
 */

import { displayErrorCode, displayFrameType, ErrorCode, hex } from './wire.js';

/** Root of every error the gatewire core raises. */
export abstract class GatewireError extends Error {
  /** A stable machine-readable identifier of the condition. */
  abstract readonly code: string;

  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

// ----- frames ---------------------------------------------------------------

/** A frame kind string: the part of `code` after `frame.`. */
export type FrameErrorKind =
  | 'too_large'
  | 'reserved_byte'
  | 'unknown_type'
  | 'invalid_flags'
  | 'unexpected_codec'
  | 'invalid_id'
  | 'invalid_arg'
  | 'truncated'
  | 'invalid_length';

/**
 * A frame that breaks a rule visible in the header alone. Every subclass is
 * fatal to the connection (`docs/PROTOCOL.md` §3.5).
 */
export abstract class FrameError extends GatewireError {
  /** Which rule was broken. */
  abstract readonly kind: FrameErrorKind;

  /** The wire code a GOAWAY reports for this error. */
  get wireCode(): ErrorCode {
    return ErrorCode.PROTOCOL_VIOLATION;
  }
}

/** The payload length exceeds the receiver's limit. */
export class FrameTooLargeError extends FrameError {
  readonly code = 'frame.too_large';
  readonly kind = 'too_large';
  constructor(
    /** Declared payload length. */
    readonly len: number,
    /** The limit in force. */
    readonly max: number,
  ) {
    super(`frame length ${len} exceeds limit ${max}`);
  }
  override get wireCode(): ErrorCode {
    return ErrorCode.TOO_LARGE;
  }
}

/** The reserved header byte is not zero. */
export class ReservedByteError extends FrameError {
  readonly code = 'frame.reserved_byte';
  readonly kind = 'reserved_byte';
  constructor(
    /** The byte's value. */
    readonly value: number,
  ) {
    super(`reserved header byte is ${hex(value, 2)}, must be zero`);
  }
}

/** A type outside the defined and extension ranges. */
export class UnknownTypeError extends FrameError {
  readonly code = 'frame.unknown_type';
  readonly kind = 'unknown_type';
  constructor(
    /** The type byte. */
    readonly type: number,
  ) {
    super(`unknown frame type ${hex(type, 2)}`);
  }
}

/** A flag bit that the frame type does not allow. */
export class InvalidFlagsError extends FrameError {
  readonly code = 'frame.invalid_flags';
  readonly kind = 'invalid_flags';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** Offending flags byte. */
    readonly flags: number,
  ) {
    super(`flags ${hex(flags, 2)} not allowed on ${displayFrameType(type)}`);
  }
}

/** A codec byte on a frame that carries no message. */
export class UnexpectedCodecError extends FrameError {
  readonly code = 'frame.unexpected_codec';
  readonly kind = 'unexpected_codec';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** Offending codec byte. */
    readonly codec: number,
  ) {
    super(`codec ${codec} not allowed on ${displayFrameType(type)}`);
  }
}

/** The id is zero where a call is required, or non-zero on a connection-level frame. */
export class InvalidIdError extends FrameError {
  readonly code = 'frame.invalid_id';
  readonly kind = 'invalid_id';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** Offending id. */
    readonly id: number,
  ) {
    super(`id ${id} not allowed on ${displayFrameType(type)}`);
  }
}

/**
 * A non-zero `arg` where the type defines none, a zero credit, an ERROR with
 * code `NO_ERROR`, or an error code above `0xFFFF`.
 */
export class InvalidArgError extends FrameError {
  readonly code = 'frame.invalid_arg';
  readonly kind = 'invalid_arg';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** Offending arg. */
    readonly arg: number,
  ) {
    super(`arg ${arg} not allowed on ${displayFrameType(type)}`);
  }
}

/** The stream or message ended inside a frame. */
export class TruncatedError extends FrameError {
  readonly code = 'frame.truncated';
  readonly kind = 'truncated';
  constructor(
    /** Bytes present. */
    readonly have: number,
    /** Bytes the frame needs. */
    readonly need: number,
  ) {
    super(`frame truncated: ${have} of ${need} bytes`);
  }
}

/** A payload length the frame type does not allow. */
export class InvalidLengthError extends FrameError {
  readonly code = 'frame.invalid_length';
  readonly kind = 'invalid_length';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** Declared length. */
    readonly len: number,
  ) {
    super(`payload of ${len} bytes not allowed on ${displayFrameType(type)}`);
  }
}

/** The caller's buffer is too small; `required` bytes are needed. */
export class InsufficientSizeError extends GatewireError {
  readonly code = 'frame.insufficient_size';
  constructor(
    /** Bytes needed. */
    readonly required: number,
    /** Bytes offered. */
    readonly available: number,
  ) {
    super(`buffer of ${available} bytes is too small, ${required} required`);
  }
}

/**
 * Two endpoints' services cannot work together (`docs/PROTOCOL.md` §10.3),
 * thrown by the services `check`. Unlike other errors, its `message` is an
 * API: it is the refusal message of the handshake, identical in every
 * implementation, and the acceptor refuses with `INCOMPATIBLE`.
 */
export class IncompatibleError extends GatewireError {
  readonly code = 'services.incompatible';
  /** The wire code of the refusal: `INCOMPATIBLE`. */
  readonly wireCode = ErrorCode.INCOMPATIBLE;
}

/** A limit or timeout value outside its allowed range. */
export class InvalidLimitError extends GatewireError {
  readonly code = 'limits.invalid';
  constructor(
    /** The option's name (`maxFrame`, `keepaliveInterval`...). */
    readonly limit: string,
    /** The value given. */
    readonly value: unknown,
    /** Smallest allowed. */
    readonly min: number,
    /** Largest allowed. */
    readonly max: number,
  ) {
    super(`limit ${limit} = ${String(value)} is outside ${min}..=${max}`);
  }
}

// ----- control tables -------------------------------------------------------

/** A control payload that failed verification or breaks a rule of `docs/PROTOCOL.md` §4. */
export abstract class ControlError extends GatewireError {}

/** The FlatBuffers verifier rejected the payload. */
export class ControlInvalidError extends ControlError {
  readonly code = 'control.invalid';
  constructor(
    /** Which table (`Hello`, `HelloAck`, `ErrorInfo`, `GoAway`). */
    readonly table: string,
    /** The verifier's finding. */
    readonly reason: string,
  ) {
    super(`invalid ${table} table: ${reason}`);
  }
}

/** The payload is empty where a table is required. */
export class ControlMissingError extends ControlError {
  readonly code = 'control.missing';
  constructor(
    /** Which table. */
    readonly table: string,
  ) {
    super(`missing ${table} table`);
  }
}

/** `minVersion` is greater than `maxVersion`. */
export class EmptyVersionRangeError extends ControlError {
  readonly code = 'control.empty_version_range';
  constructor(
    /** Lowest version offered. */
    readonly min: number,
    /** Highest version offered. */
    readonly max: number,
  ) {
    super(`version range ${min}..=${max} is empty`);
  }
}

// ----- protocol violations --------------------------------------------------

/** A rule of `docs/PROTOCOL.md` that the peer broke (beyond the header rules). */
export abstract class Violation extends GatewireError {}

/** A frame type that is not allowed in the current state. */
export class UnexpectedFrameViolation extends Violation {
  readonly code = 'violation.unexpected_frame';
  constructor(
    /** The frame type. */
    readonly type: number,
  ) {
    super(`unexpected ${displayFrameType(type)} frame`);
  }
}

/** An id of the wrong parity for the frame type. */
export class WrongParityViolation extends Violation {
  readonly code = 'violation.wrong_parity';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** The id. */
    readonly id: number,
  ) {
    super(`${displayFrameType(type)} with id ${id} of the wrong parity`);
  }
}

/** A new id not above the previous one. */
export class IdNotIncreasingViolation extends Violation {
  readonly code = 'violation.id_not_increasing';
  constructor(
    /** The id. */
    readonly id: number,
    /** The last id the peer opened. */
    readonly last: number,
  ) {
    super(`new id ${id} is not above the last id ${last}`);
  }
}

/** A frame naming an id that was never opened. */
export class UnopenedIdViolation extends Violation {
  readonly code = 'violation.unopened_id';
  constructor(
    /** Frame type. */
    readonly type: number,
    /** The id. */
    readonly id: number,
  ) {
    super(`${displayFrameType(type)} names id ${id}, which was never opened`);
  }
}

/** A new message on an id whose previous message is still incomplete. */
export class InterleavedMessageViolation extends Violation {
  readonly code = 'violation.interleaved_message';
  constructor(
    /** The id. */
    readonly id: number,
  ) {
    super(`new message on id ${id} before its previous message completed`);
  }
}

/** The first frame of a message is too short for its prelude. */
export class ShortPreludeViolation extends Violation {
  readonly code = 'violation.short_prelude';
  constructor(
    /** The prelude field: `deadline` or `uncompressed size`. */
    readonly what: string,
  ) {
    super(`first frame too short for its ${what} prelude`);
  }
}

/** A compressed message although we did not offer compression. */
export class CompressionNotNegotiatedViolation extends Violation {
  readonly code = 'violation.compression_not_negotiated';
  constructor() {
    super('compressed message without negotiated compression');
  }
}

/** The server chose a version the client did not offer. */
export class VersionNotOfferedViolation extends Violation {
  readonly code = 'violation.version_not_offered';
  constructor(
    /** The version chosen. */
    readonly version: number,
  ) {
    super(`server chose version ${version}, which was not offered`);
  }
}

/** The peer advertised a limit below the protocol minimum. */
export class InvalidPeerLimitViolation extends Violation {
  readonly code = 'violation.invalid_peer_limit';
  constructor(
    /**
     * The limit's protocol name (`max_frame`, `max_message`,
     * `initial_stream_credit`, `connection_credit`).
     */
    readonly limit: string,
  ) {
    super(`advertised limit ${limit} below the protocol minimum`);
  }
}

/** A GOAWAY raised the last id of an earlier one. */
export class GoAwayIncreasedViolation extends Violation {
  readonly code = 'violation.goaway_increased';
  constructor(
    /** New last id. */
    readonly last: number,
    /** Previous last id. */
    readonly previous: number,
  ) {
    super(`GOAWAY last id ${last} above the previous ${previous}`);
  }
}

// ----- connection errors ----------------------------------------------------

/** Who did something. */
export type Side = 'local' | 'remote';

/** Why a connection ended (other than gracefully). */
export abstract class ConnectionError extends GatewireError {
  /** The wire code for this error. */
  abstract readonly wireCode: ErrorCode;

  /** A short static reason for the GOAWAY we send. */
  abstract reason(): string;
}

/** Malformed bytes: a frame that breaks a header rule. */
export class MalformedError extends ConnectionError {
  readonly code = 'connection.malformed';
  constructor(
    /** The frame error. */
    readonly error: FrameError,
  ) {
    super(`malformed frame: ${error.message}`);
  }
  get wireCode(): ErrorCode {
    return this.error.wireCode;
  }
  reason(): string {
    return 'malformed frame';
  }
}

/** A control payload failed verification. */
export class ControlFailedError extends ConnectionError {
  readonly code = 'connection.control';
  readonly wireCode = ErrorCode.PROTOCOL_VIOLATION;
  constructor(
    /** The control error. */
    readonly error: ControlError,
  ) {
    super(`malformed control payload: ${error.message}`);
  }
  reason(): string {
    return 'malformed control payload';
  }
}

/** The peer broke a protocol rule. */
export class ProtocolViolationError extends ConnectionError {
  readonly code = 'connection.violation';
  readonly wireCode = ErrorCode.PROTOCOL_VIOLATION;
  constructor(
    /** The rule broken. */
    readonly violation: Violation,
  ) {
    super(`protocol violation: ${violation.message}`);
  }
  reason(): string {
    return 'protocol violation';
  }
}

/** The peer exceeded one of our limits. */
export class LimitExceededError extends ConnectionError {
  readonly code = 'connection.limit_exceeded';
  constructor(
    /**
     * The limit's protocol name (`max_message`, `max_fragments`,
     * `max_in_flight`...): it is the reason string of the GOAWAY we send.
     */
    readonly limit: string,
    /** The value seen. */
    readonly value: number,
    /** The limit. */
    readonly max: number,
  ) {
    super(`limit ${limit} exceeded: ${value} > ${max}`);
  }
  get wireCode(): ErrorCode {
    return this.limit === 'max_message' || this.limit === 'max_fragments' || this.limit === 'max_frame'
      ? ErrorCode.TOO_LARGE
      : ErrorCode.EXCESSIVE_LOAD;
  }
  reason(): string {
    return this.limit;
  }
}

/** The peer sent beyond its connection credit or overflowed a window. */
export class FlowControlError extends ConnectionError {
  readonly code = 'connection.flow_control';
  readonly wireCode = ErrorCode.FLOW_CONTROL;
  constructor(
    /** Which window. */
    readonly window: string,
  ) {
    super(`flow control: ${window}`);
  }
  reason(): string {
    return this.window;
  }
}

/** The peer spent a budget. */
export class BudgetExhaustedError extends ConnectionError {
  readonly code = 'connection.budget';
  readonly wireCode = ErrorCode.EXCESSIVE_LOAD;
  constructor(
    /** Which budget (`pings`, `stray frames`, `small frames`...). */
    readonly budget: string,
  ) {
    super(`budget for ${budget} exhausted`);
  }
  reason(): string {
    return this.budget;
  }
}

/** A timer expired: handshake, partial frame, keepalive, partial message or drain. */
export class TimeoutError extends ConnectionError {
  readonly code = 'connection.timeout';
  readonly wireCode = ErrorCode.TIMEOUT;
  constructor(
    /** Which timer. */
    readonly timer: string,
  ) {
    super(`${timer} timeout`);
  }
  reason(): string {
    return this.timer;
  }
}

/** The handshake was refused. */
export class RefusedError extends ConnectionError {
  readonly code = 'connection.refused';
  constructor(
    /** The refusal code. */
    readonly wireCode: ErrorCode,
    /** Who refused. */
    readonly side: Side,
    /** The reason given. */
    readonly reasonText: string | undefined,
  ) {
    super(`handshake refused by ${side === 'local' ? 'Local' : 'Remote'} endpoint with ${displayErrorCode(wireCode)}`);
  }
  reason(): string {
    return 'closed';
  }
}

/** The peer closed the connection with an error GOAWAY. */
export class RemoteCloseError extends ConnectionError {
  readonly code = 'connection.remote';
  constructor(
    /** The peer's code (preserved even when unknown). */
    readonly wireCode: ErrorCode,
    /** The peer's reason. */
    readonly reasonText: string | undefined,
  ) {
    super(`peer closed the connection with ${displayErrorCode(wireCode)}`);
  }
  reason(): string {
    return 'closed';
  }
}

/** We closed the connection with an error code. */
export class LocalCloseError extends ConnectionError {
  readonly code = 'connection.local';
  constructor(
    /** Our code. */
    readonly wireCode: ErrorCode,
    /** Our reason. */
    readonly reasonText: string | undefined,
  ) {
    super(`closed locally with ${displayErrorCode(wireCode)}`);
  }
  reason(): string {
    return 'closed';
  }
}

/** The transport ended before the connection was done. */
export class ConnectionLostError extends ConnectionError {
  readonly code = 'connection.lost';
  readonly wireCode = ErrorCode.UNAVAILABLE;
  constructor() {
    super('connection lost');
  }
  reason(): string {
    return 'closed';
  }
}

// ----- API misuse -----------------------------------------------------------

/** A command the application should not have given (never caused by network input). */
export abstract class ApiError extends GatewireError {}

/** The command does not fit the connection's state. */
export class InvalidStateError extends ApiError {
  readonly code = 'api.invalid_state';
  constructor(
    /** What is wrong. */
    readonly what: string,
  ) {
    super(`invalid state: ${what}`);
  }
}

/** An argument is out of range. */
export class InvalidArgumentError extends ApiError {
  readonly code = 'api.invalid_argument';
  constructor(
    /** What is wrong. */
    readonly what: string,
  ) {
    super(`invalid argument: ${what}`);
  }
}

/** No live call or stream has this id (or it is not ours to act on). */
export class UnknownCallError extends ApiError {
  readonly code = 'api.unknown_call';
  constructor(
    /** The id. */
    readonly id: number,
  ) {
    super(`no call with id ${id}`);
  }
}

// ----- send errors ----------------------------------------------------------

/** Why a `send*` or `open*` command did not queue anything. */
export abstract class SendError extends GatewireError {}

/**
 * Out of credit, call slots or send queue; retry after a `Writable` event.
 * Nothing changed.
 */
export class BlockedError extends SendError {
  readonly code = 'send.blocked';
  constructor() {
    super('blocked: retry after a Writable event');
  }
}

/** The message exceeds the peer's limit. */
export class MessageTooLargeError extends SendError {
  readonly code = 'send.too_large';
  constructor(
    /** Message size. */
    readonly len: number,
    /** The peer's limit. */
    readonly max: number,
  ) {
    super(`message of ${len} bytes exceeds the peer's limit ${max}`);
  }
}

/** A shutdown is under way: no new calls. */
export class ClosingError extends SendError {
  readonly code = 'send.closing';
  constructor() {
    super('the connection is shutting down');
  }
}

/** The connection is closed. */
export class ClosedError extends SendError {
  readonly code = 'send.closed';
  constructor() {
    super('the connection is closed');
  }
}

/** The id space is used up; open a new connection. */
export class IdsExhaustedError extends SendError {
  readonly code = 'send.ids_exhausted';
  constructor() {
    super('call ids exhausted');
  }
}

/** No live call or stream has this id. */
export class SendUnknownCallError extends SendError {
  readonly code = 'send.unknown_call';
  constructor(
    /** The id. */
    readonly id: number,
  ) {
    super(`no call with id ${id}`);
  }
}
