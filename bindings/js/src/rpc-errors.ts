/**
 * Errors of the driver: what a call, a stream or a connection reports to
 * the application (the counterpart of the Rust runtime's `Error`), and the
 * {@link Status} a handler throws to answer with an error code.
 *
 * ```text
 * GatewireError
 * └── RpcError                    ask it: isTimeout, isClosed, isRemote, isRetryable, isCancelled
 *     ├── RemoteError       rpc.remote     the peer answered with an error code
 *     ├── DeadlineError     rpc.deadline   the call's deadline passed (here or at the peer)
 *     ├── ConnectionClosedError rpc.closed the connection ended (or never opened)
 *     ├── RefusedCallError  rpc.refused    not processed, safe to retry (peer REFUSED, GOAWAY, not sent)
 *     ├── AbortedError      rpc.aborted    the caller's AbortSignal fired; the peer got CANCEL
 *     ├── LocalError        rpc.local      rejected here (message too large, bad argument...)
 *     ├── TransportError    rpc.transport  the transport failed (reset, refused, bad WebSocket message)
 *     └── ConfigError       rpc.config     configuration or endpoint problem
 * ```
 *
 * `code` strings and the `is*` answers are stable; `message` texts are not.
 * `wireCode` is the protocol error code (the peer's for a remote error).
 *
 * @module
 */

import { ConnectionError, GatewireError, RefusedError, RemoteCloseError } from './errors.js';
import { ErrorCode, errorCodeLabel } from './wire.js';

/** Which kind of failure an {@link RpcError} is. */
export type RpcErrorKind = 'remote' | 'deadline' | 'closed' | 'refused' | 'aborted' | 'local' | 'transport' | 'config';

/** An error from a call, a stream or the connection. */
export abstract class RpcError extends GatewireError {
  /** The kind of failure. */
  abstract readonly kind: RpcErrorKind;

  constructor(
    /** The wire code: the peer's code for a remote error, or the code that describes a local condition. */
    readonly wireCode: ErrorCode,
    /** Human-readable detail (the peer's message for a remote error), when there is any. */
    readonly detail: string | undefined,
    what: string,
    cause?: unknown,
  ) {
    super(`${what}: ${errorCodeLabel(wireCode)}${detail === undefined ? '' : `: ${detail}`}`);
    if (cause !== undefined) {
      this.cause = cause;
    }
  }

  /** The call's deadline passed (here or at the peer), or the connection timed out. */
  get isTimeout(): boolean {
    return (
      this.kind === 'deadline' || this.wireCode === ErrorCode.DEADLINE_EXCEEDED || this.wireCode === ErrorCode.TIMEOUT
    );
  }

  /** The connection is gone; nothing more will succeed on it. */
  get isClosed(): boolean {
    return this.kind === 'closed' || this.kind === 'transport';
  }

  /** The peer sent this error. */
  get isRemote(): boolean {
    return this.kind === 'remote';
  }

  /** The call was not processed and may be retried (on a new connection if this one is closing). */
  get isRetryable(): boolean {
    return this.kind === 'refused';
  }

  /** The call was cancelled (by us, or the peer reports it cancelled). */
  get isCancelled(): boolean {
    return this.kind === 'aborted' || this.wireCode === ErrorCode.CANCELLED;
  }
}

/** The peer answered with an error code. */
export class RemoteError extends RpcError {
  readonly code = 'rpc.remote';
  readonly kind = 'remote';
  constructor(
    wireCode: ErrorCode,
    detail: string | undefined,
    /** Opaque detail bytes the peer attached. */
    readonly details?: Uint8Array | undefined,
  ) {
    super(wireCode, detail, 'peer returned');
  }
}

/** The call's deadline passed. */
export class DeadlineError extends RpcError {
  readonly code = 'rpc.deadline';
  readonly kind = 'deadline';
  constructor(detail?: string) {
    super(ErrorCode.DEADLINE_EXCEEDED, detail, 'deadline exceeded');
  }
}

/** The connection ended, or was never established. `cause` holds the core's {@link ConnectionError}, if any. */
export class ConnectionClosedError extends RpcError {
  readonly code = 'rpc.closed';
  readonly kind = 'closed';
  constructor(wireCode: ErrorCode, detail: string | undefined, cause?: unknown) {
    super(wireCode, detail, 'connection closed', cause);
  }
}

/** The call was not processed and is safe to retry. */
export class RefusedCallError extends RpcError {
  readonly code = 'rpc.refused';
  readonly kind = 'refused';
  constructor(wireCode: ErrorCode, detail: string | undefined, cause?: unknown) {
    super(wireCode, detail, 'refused, safe to retry', cause);
  }
}

/** The caller's `AbortSignal` fired; the peer was sent CANCEL. `cause` is the signal's reason. */
export class AbortedError extends RpcError {
  readonly code = 'rpc.aborted';
  readonly kind = 'aborted';
  constructor(reason?: unknown) {
    super(ErrorCode.CANCELLED, 'aborted by the caller', 'cancelled', reason);
  }
}

/** Rejected locally (a message over the peer's limit, a bad argument, a finished stream...). */
export class LocalError extends RpcError {
  readonly code = 'rpc.local';
  readonly kind = 'local';
  constructor(wireCode: ErrorCode, detail: string, cause?: unknown) {
    super(wireCode, detail, 'rejected locally', cause);
  }
}

/** The transport failed. */
export class TransportError extends RpcError {
  readonly code = 'rpc.transport';
  readonly kind = 'transport';
  constructor(detail: string, cause?: unknown) {
    super(ErrorCode.UNAVAILABLE, detail, 'transport error', cause);
  }
}

/** A configuration or endpoint problem. */
export class ConfigError extends RpcError {
  readonly code = 'rpc.config';
  readonly kind = 'config';
  constructor(detail: string, cause?: unknown) {
    super(ErrorCode.INTERNAL, detail, 'configuration error', cause);
  }
}

/** The error for a connection that ended because of `e` (from the core's `Closed` event). */
export function fromConnectionError(e: ConnectionError): RpcError {
  if (e instanceof RefusedError) {
    return new ConnectionClosedError(e.wireCode, e.reasonText ?? e.message, e);
  }
  if (e instanceof RemoteCloseError) {
    return new ConnectionClosedError(e.wireCode, e.reasonText ?? e.message, e);
  }
  return new ConnectionClosedError(e.wireCode, e.message, e);
}

/**
 * What a handler throws to answer with an error code: the caller gets a
 * {@link RemoteError} with this code and message. Any other thrown value
 * answers `INTERNAL` ("handler failed"), except an {@link RpcError} (say,
 * from a call the handler made), which passes its code and detail on.
 */
export class Status extends Error {
  constructor(
    /** Code sent in the ERROR frame (`NO_ERROR` is sent as `INTERNAL`). */
    readonly code: ErrorCode,
    message?: string,
    /** Opaque detail bytes sent with the error. */
    readonly details?: Uint8Array | undefined,
  ) {
    super(message ?? '');
    this.name = 'Status';
    this.statusMessage = message;
  }

  /** The message sent to the caller, if any. */
  readonly statusMessage: string | undefined;

  /** `INVALID_ARGUMENT`: the request could not be decoded or is invalid. */
  static invalidArgument(message: string): Status {
    return new Status(ErrorCode.INVALID_ARGUMENT, message);
  }

  /** `INTERNAL`: the handler failed. */
  static internal(message: string): Status {
    return new Status(ErrorCode.INTERNAL, message);
  }

  /** The status a handler's thrown value answers with. */
  static from(e: unknown): Status {
    if (e instanceof Status) {
      return e;
    }
    if (e instanceof RpcError) {
      return new Status(e.wireCode === ErrorCode.NO_ERROR ? ErrorCode.INTERNAL : e.wireCode, e.detail);
    }
    return new Status(ErrorCode.INTERNAL, 'handler failed');
  }
}
