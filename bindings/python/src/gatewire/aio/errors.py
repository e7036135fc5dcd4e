"""What calls, streams and connections of the runtime layers report, and the
:class:`Status` a handler raises to answer with an error code.

The counterpart of the Rust runtime's ``gatewire::Error`` (an opaque error
that answers questions) and ``gatewire::Status``. Shared by
:mod:`gatewire.aio` and :mod:`gatewire.sync`::

    GatewireError                      (gatewire.exceptions)
    ├── RpcError                       ask it: code, is_timeout, is_closed,
    │   │                                  is_remote, is_retryable, is_cancelled
    │   ├── RemoteError                "rpc.remote"    the peer answered with an error code
    │   ├── DeadlineError              "rpc.deadline"  the deadline passed (here or at the peer)
    │   ├── ConnectionClosedError      "rpc.closed"    the connection ended (or never opened)
    │   ├── RefusedCallError           "rpc.refused"   not processed, safe to retry
    │   ├── LocalError                 "rpc.local"     rejected here (message too large...)
    │   ├── TransportError             "rpc.transport" the transport failed (reset, refused, bind)
    │   │   └── TlsError               "rpc.transport.tls" TLS failed (alert, certificate refused)
    │   │       ├── CertificateVerifyError       "….tls.certificate" the peer's certificate
    │   │       │   │                            did not verify (unknown CA, expired...)
    │   │       │   └── HostnameMismatchError    "….tls.hostname" not for the name dialled
    │   │       └── AlpnError                    "….tls.alpn" no gatewire/1 on tls://
    │   └── ConfigError                "rpc.config"    configuration or endpoint problem
    │       └── TlsConfigError         "rpc.config.tls" a certificate or key file unusable
    └── Status                         raised by a handler: the code and message sent back

``kind`` strings and the ``is_*`` answers are stable; message texts are not.
Cancelling the task that awaits a call raises :class:`asyncio.CancelledError`
as usual (the peer is sent CANCEL); no gatewire error is involved.

API misuse (a method id outside ``0..=0xFFFFFFFF``, a closed stream's
sender used again...) raises the core's :class:`~gatewire.exceptions.ApiError`
(or :class:`LocalError` where the Rust runtime reports one).
"""

from __future__ import annotations

from typing import ClassVar

from ..code import ErrorCode
from ..exceptions import (
    ConnectionClosed,
    ConnectionClosing,
    ConnectionFailed,
    GatewireError,
    IdsExhausted,
    MessageTooLarge,
    Refused,
    RemoteClosed,
    SendError,
)

__all__ = [
    "AlpnError",
    "CertificateVerifyError",
    "ConfigError",
    "ConnectionClosedError",
    "DeadlineError",
    "HostnameMismatchError",
    "LocalError",
    "RefusedCallError",
    "RemoteError",
    "RpcError",
    "Status",
    "TlsConfigError",
    "TlsError",
    "TransportError",
]


class RpcError(GatewireError):
    """An error from a call, a stream or the connection. Ask it questions
    rather than matching on the text.

    Attributes:
        code: the wire code: the peer's for a remote error, or the code that
            describes a local condition (``DEADLINE_EXCEEDED``,
            ``UNAVAILABLE``...).
        message: human-readable detail, when there is any (the peer's
            message for a remote error).
    """

    _KIND: ClassVar[str] = "rpc"
    _WHAT: ClassVar[str] = "error"

    def __init__(self, code: ErrorCode | int, message: str | None = None) -> None:
        code = code if isinstance(code, ErrorCode) else ErrorCode(code)
        text = f"{self._WHAT}: {code}"
        if message:
            text += f": {message}"
        super().__init__(text)
        self.code = code
        self.message = message

    @property
    def is_timeout(self) -> bool:
        """The call's deadline passed (here or at the peer), or the
        connection timed out."""
        return isinstance(self, DeadlineError) or self.code in (
            ErrorCode.DEADLINE_EXCEEDED,
            ErrorCode.TIMEOUT,
        )

    @property
    def is_closed(self) -> bool:
        """The connection is gone; nothing more will succeed on it."""
        return isinstance(self, ConnectionClosedError | TransportError)

    @property
    def is_remote(self) -> bool:
        """The peer sent this error."""
        return isinstance(self, RemoteError)

    @property
    def is_retryable(self) -> bool:
        """The call was not processed and may be retried (on a new
        connection if this one is closing)."""
        return isinstance(self, RefusedCallError)

    @property
    def is_cancelled(self) -> bool:
        """The call was cancelled (the peer reports ``CANCELLED``)."""
        return self.code == ErrorCode.CANCELLED


class RemoteError(RpcError):
    """The peer answered with an error code (anything but ``REFUSED``, which
    is a :class:`RefusedCallError`).

    Attributes:
        details: opaque detail bytes the peer attached, if any.
    """

    _KIND: ClassVar[str] = "rpc.remote"
    _WHAT: ClassVar[str] = "peer returned"

    def __init__(
        self, code: ErrorCode | int, message: str | None = None, details: bytes | None = None
    ) -> None:
        super().__init__(code, message)
        self.details = details


class DeadlineError(RpcError):
    """The call's deadline passed."""

    _KIND: ClassVar[str] = "rpc.deadline"
    _WHAT: ClassVar[str] = "deadline exceeded"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(ErrorCode.DEADLINE_EXCEEDED, message)


class ConnectionClosedError(RpcError):
    """The connection ended, or was never established. ``__cause__`` holds
    the core's :class:`~gatewire.exceptions.ConnectionFailed` when there is
    one (``FrameTooLarge``, ``RemoteClosed``, ``Refused``...)."""

    _KIND: ClassVar[str] = "rpc.closed"
    _WHAT: ClassVar[str] = "connection closed"


class RefusedCallError(RpcError):
    """The call was not processed and is safe to retry: the peer refused it
    (``REFUSED``: its GOAWAY or its concurrency limit), or it never left
    because the connection was closing or closed."""

    _KIND: ClassVar[str] = "rpc.refused"
    _WHAT: ClassVar[str] = "refused, safe to retry"


class LocalError(RpcError):
    """Rejected locally: a message over the peer's limit, a finished
    stream, a compressed message that does not decompress..."""

    _KIND: ClassVar[str] = "rpc.local"
    _WHAT: ClassVar[str] = "rejected locally"


class TransportError(RpcError):
    """The transport failed: connect or bind refused, reset, a WebSocket
    message that is not a binary gatewire frame... ``__cause__`` holds the
    underlying exception (usually an :class:`OSError`)."""

    _KIND: ClassVar[str] = "rpc.transport"
    _WHAT: ClassVar[str] = "transport error"

    def __init__(self, message: str, code: ErrorCode | int = ErrorCode.UNAVAILABLE) -> None:
        super().__init__(code, message)


class TlsError(TransportError):
    """TLS failed: a handshake that did not complete (the peer refused our
    certificate, no protocol version in common...) or an alert during the
    session. ``__cause__`` holds the :class:`ssl.SSLError`.

    Attributes:
        reason: OpenSSL's reason (``TLSV13_ALERT_CERTIFICATE_REQUIRED``,
            ``WRONG_VERSION_NUMBER``...), when there is one.
    """

    _KIND: ClassVar[str] = "rpc.transport.tls"
    _WHAT: ClassVar[str] = "TLS error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class CertificateVerifyError(TlsError):
    """The peer's certificate did not verify: issued by a CA we do not
    trust, expired, not meant for this use...

    Attributes:
        verify_code: OpenSSL's verification error code (``X509_V_ERR_*``).
        verify_message: its text (``unable to get local issuer
            certificate``...).
    """

    _KIND: ClassVar[str] = "rpc.transport.tls.certificate"

    def __init__(self, message: str, verify_code: int, verify_message: str) -> None:
        super().__init__(message, "CERTIFICATE_VERIFY_FAILED")
        self.verify_code = verify_code
        self.verify_message = verify_message


class HostnameMismatchError(CertificateVerifyError):
    """The server's certificate verified, but names neither the host we
    connected to nor the configured ``server_name``."""

    _KIND: ClassVar[str] = "rpc.transport.tls.hostname"


class AlpnError(TlsError):
    """The TLS peer did not agree on the ALPN protocol: on ``tls://`` it
    did not select ``gatewire/1`` (an HTTPS server, say)."""

    _KIND: ClassVar[str] = "rpc.transport.tls.alpn"

    def __init__(self, message: str) -> None:
        super().__init__(message, None)


class ConfigError(RpcError):
    """A configuration or endpoint problem (a bad URL, a limit out of
    range, an unsupported scheme, a missing optional dependency)."""

    _KIND: ClassVar[str] = "rpc.config"
    _WHAT: ClassVar[str] = "configuration error"

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL, message)


class TlsConfigError(ConfigError):
    """A TLS configuration that cannot be built: a certificate, key or CA
    file that cannot be read or parsed (the message names the file, never
    its content), or missing or contradictory arguments."""

    _KIND: ClassVar[str] = "rpc.config.tls"


class Status(GatewireError):
    """What a handler raises to answer with an error code: the caller gets
    a :class:`RemoteError` with this code, message and details.

    A handler that raises an :class:`RpcError` (say, from a call it made
    itself) answers with that error's code and message; any other exception
    answers ``INTERNAL`` ("handler failed").

    Raises:
        ValueError: from the constructor, for a code outside ``0..=0xFFFF``.
    """

    _KIND: ClassVar[str] = "status"

    def __init__(
        self, code: ErrorCode | int, message: str | None = None, details: bytes | None = None
    ) -> None:
        code = code if isinstance(code, ErrorCode) else ErrorCode(code)
        # NO_ERROR cannot travel in ERROR: it is sent as INTERNAL.
        if code == ErrorCode.NO_ERROR:
            code = ErrorCode.INTERNAL
        super().__init__(f"{code}: {message}" if message else str(code))
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def invalid_argument(cls, message: str) -> Status:
        """``INVALID_ARGUMENT``: the request could not be decoded or is
        invalid."""
        return cls(ErrorCode.INVALID_ARGUMENT, message)

    @classmethod
    def internal(cls, message: str) -> Status:
        """``INTERNAL``: the handler failed."""
        return cls(ErrorCode.INTERNAL, message)

    @classmethod
    def from_error(cls, error: RpcError) -> Status:
        """The status that passes an error on (its code and message)."""
        details = error.details if isinstance(error, RemoteError) else None
        return cls(error.code, error.message, details)


# ----- conversions from the core ----------------------------------------------


def from_connection(error: ConnectionFailed) -> ConnectionClosedError:
    """The error for a connection that ended because of ``error`` (the
    core's ``Closed`` event)."""
    message: str | None
    if isinstance(error, Refused | RemoteClosed) and error.message:
        message = error.message
    else:
        message = str(error)
    e = ConnectionClosedError(error.code, message)
    e.__cause__ = error
    return e


def from_send(error: SendError) -> RpcError:
    """The error for a ``send_*`` / ``open_*`` command the core refused
    (other than ``Blocked``, which the runtime waits out)."""
    if isinstance(error, MessageTooLarge):
        e: RpcError = LocalError(
            ErrorCode.TOO_LARGE,
            f"message of {error.len} bytes exceeds the peer's limit {error.max}",
        )
    elif isinstance(error, ConnectionClosing | IdsExhausted):
        e = RefusedCallError(ErrorCode.UNAVAILABLE, str(error))
    elif isinstance(error, ConnectionClosed):
        e = ConnectionClosedError(ErrorCode.UNAVAILABLE, str(error))
    else:
        e = LocalError(ErrorCode.INTERNAL, str(error))
    e.__cause__ = error
    return e


def unsent(closed: RpcError | None) -> RefusedCallError:
    """A call that never left because the connection had ended: safe to
    retry on another connection."""
    detail = closed.message if closed is not None and closed.message else "connection closed"
    e = RefusedCallError(ErrorCode.UNAVAILABLE, f"not sent: {detail}")
    e.__cause__ = closed
    return e
