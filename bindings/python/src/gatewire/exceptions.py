"""Every exception gatewire raises, split by who is at fault.

The tree mirrors the Rust core (``gatewire_proto``): malformed bytes, a peer
breaking the protocol, a limit exceeded, timers, and API misuse (never
caused by network input)::

    GatewireError
    ├── ConnectionFailed               why a connection ended (Rust ConnectionError)
    │   ├── FrameError                 malformed bytes (Rust FrameError), kind "malformed.*"
    │   │   ├── FrameTooLarge          len, max                 TOO_LARGE
    │   │   ├── ReservedByte           value                    PROTOCOL_VIOLATION
    │   │   ├── UnknownType            value
    │   │   ├── InvalidFlags           ty, flags
    │   │   ├── UnexpectedCodec        ty, codec
    │   │   ├── InvalidId              ty, id
    │   │   ├── InvalidArg             ty, arg
    │   │   ├── Truncated              have, need
    │   │   └── InvalidLength          ty, len
    │   ├── ControlError               a control table failed verification, kind "control"
    │   │   ├── InvalidControl         table, reason
    │   │   ├── MissingControl         table
    │   │   └── EmptyVersionRange      min, max
    │   ├── Violation                  a protocol rule broken, kind "violation.*"
    │   │   ├── UnexpectedFrame        ty
    │   │   ├── WrongParity            ty, id
    │   │   ├── IdNotIncreasing        id, last
    │   │   ├── UnopenedId             ty, id
    │   │   ├── InterleavedMessage     id
    │   │   ├── ShortPrelude           what
    │   │   ├── CompressionNotNegotiated
    │   │   ├── VersionNotOffered      version
    │   │   ├── InvalidPeerLimit       name
    │   │   └── GoAwayIncreased        last, previous
    │   ├── LimitExceeded              limit, value, max        TOO_LARGE / EXCESSIVE_LOAD
    │   ├── FlowControlError           window                   FLOW_CONTROL
    │   ├── BudgetExhausted            budget                   EXCESSIVE_LOAD
    │   ├── TimerExpired               what                     TIMEOUT
    │   ├── Refused                    code, side, message      the refusal code
    │   ├── RemoteClosed               code, message            the peer's code
    │   ├── LocalClosed                code, message            our code
    │   └── ConnectionLost                                      UNAVAILABLE
    ├── ApiError                       a command that should not have been given
    │   ├── InvalidState               what
    │   ├── InvalidArgument            what                     (also a ValueError)
    │   └── UnknownCall                id                       (also a SendError)
    ├── SendError                      a send_* / open_* command queued nothing
    │   ├── Blocked                    retry after a Writable event
    │   ├── MessageTooLarge            len, max
    │   ├── ConnectionClosing
    │   ├── ConnectionClosed
    │   ├── IdsExhausted
    │   └── UnknownCall                id
    ├── InvalidLimit                   name, value, min, max    (also a ValueError)
    ├── InsufficientSize               required, available
    └── Incompatible                   message                  services.check: INCOMPATIBLE

Every class has a stable ``kind`` string (the identifier the shared vectors
use); every :class:`ConnectionFailed` has ``code``, the :class:`ErrorCode` a
GOAWAY carries for it. The message text is not an API.

Python's builtin ``ConnectionError`` is an ``OSError``; the Rust
``ConnectionError`` is therefore called :class:`ConnectionFailed` here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .code import ErrorCode

if TYPE_CHECKING:
    from .frame import FrameType
    from .protocol import Side

__all__ = [
    "ApiError",
    "Blocked",
    "BudgetExhausted",
    "CompressionNotNegotiated",
    "ConnectionClosed",
    "ConnectionClosing",
    "ConnectionFailed",
    "ConnectionLost",
    "ControlError",
    "EmptyVersionRange",
    "FlowControlError",
    "FrameError",
    "FrameTooLarge",
    "GatewireError",
    "GoAwayIncreased",
    "IdNotIncreasing",
    "IdsExhausted",
    "Incompatible",
    "InsufficientSize",
    "InterleavedMessage",
    "InvalidArg",
    "InvalidArgument",
    "InvalidControl",
    "InvalidFlags",
    "InvalidId",
    "InvalidLength",
    "InvalidLimit",
    "InvalidPeerLimit",
    "InvalidState",
    "LimitExceeded",
    "LocalClosed",
    "MessageTooLarge",
    "MissingControl",
    "Refused",
    "RemoteClosed",
    "ReservedByte",
    "SendError",
    "ShortPrelude",
    "TimerExpired",
    "Truncated",
    "UnexpectedCodec",
    "UnexpectedFrame",
    "UnknownCall",
    "UnknownType",
    "UnopenedId",
    "VersionNotOffered",
    "Violation",
    "WrongParity",
]


class GatewireError(Exception):
    """Root of every gatewire exception."""

    _KIND: ClassVar[str] = "other"

    @property
    def kind(self) -> str:
        """A stable identifier of the condition (the one the shared vectors
        use)."""
        return self._KIND


# ----- connection errors ----------------------------------------------------


class ConnectionFailed(GatewireError):
    """Why a connection ended (other than gracefully). Mirrors Rust
    ``ConnectionError``; carried by the ``Closed`` event."""

    @property
    def code(self) -> ErrorCode:
        """The wire code for this error."""
        return ErrorCode.PROTOCOL_VIOLATION

    def reason(self) -> str:
        """The short static reason the GOAWAY we send for this error carries."""
        return "closed"


# ----- frame errors ---------------------------------------------------------


class FrameError(ConnectionFailed):
    """A frame that breaks a rule visible in the header alone (or a stream
    that ends inside a frame). Fatal to the connection."""

    def reason(self) -> str:
        return "malformed frame"


class FrameTooLarge(FrameError):
    """The payload length exceeds the receiver's limit."""

    _KIND: ClassVar[str] = "malformed.too_large"

    def __init__(self, len: int, max: int) -> None:  # noqa: A002
        super().__init__(f"frame length {len} exceeds limit {max}")
        self.len = len
        self.max = max

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.TOO_LARGE


class ReservedByte(FrameError):
    """The reserved header byte is not zero."""

    _KIND: ClassVar[str] = "malformed.reserved_byte"

    def __init__(self, value: int) -> None:
        super().__init__(f"reserved header byte is {value:#04x}, must be zero")
        self.value = value


class UnknownType(FrameError):
    """A type outside the defined and extension ranges."""

    _KIND: ClassVar[str] = "malformed.unknown_type"

    def __init__(self, value: int) -> None:
        super().__init__(f"unknown frame type {value:#04x}")
        self.value = value


class InvalidFlags(FrameError):
    """A flag bit that the frame type does not allow."""

    _KIND: ClassVar[str] = "malformed.invalid_flags"

    def __init__(self, ty: FrameType, flags: int) -> None:
        super().__init__(f"flags {flags:#04x} not allowed on {ty}")
        self.ty = ty
        self.flags = flags


class UnexpectedCodec(FrameError):
    """A codec byte on a frame that carries no message."""

    _KIND: ClassVar[str] = "malformed.unexpected_codec"

    def __init__(self, ty: FrameType, codec: int) -> None:
        super().__init__(f"codec {codec} not allowed on {ty}")
        self.ty = ty
        self.codec = codec


class InvalidId(FrameError):
    """The id is zero where a call is required, or non-zero on a
    connection-level frame."""

    _KIND: ClassVar[str] = "malformed.invalid_id"

    def __init__(self, ty: FrameType, id: int) -> None:  # noqa: A002
        super().__init__(f"id {id} not allowed on {ty}")
        self.ty = ty
        self.id = id


class InvalidArg(FrameError):
    """A non-zero ``arg`` where the type defines none, a zero credit, an ERROR
    with code ``NO_ERROR``, or an error code above ``0xFFFF``."""

    _KIND: ClassVar[str] = "malformed.invalid_arg"

    def __init__(self, ty: FrameType, arg: int) -> None:
        super().__init__(f"arg {arg} not allowed on {ty}")
        self.ty = ty
        self.arg = arg


class Truncated(FrameError):
    """The stream or message ended inside a frame."""

    _KIND: ClassVar[str] = "malformed.truncated"

    def __init__(self, have: int, need: int) -> None:
        super().__init__(f"frame truncated: {have} of {need} bytes")
        self.have = have
        self.need = need


class InvalidLength(FrameError):
    """A payload length the frame type does not allow."""

    _KIND: ClassVar[str] = "malformed.invalid_length"

    def __init__(self, ty: FrameType, len: int) -> None:  # noqa: A002
        super().__init__(f"payload of {len} bytes not allowed on {ty}")
        self.ty = ty
        self.len = len


# ----- control errors -------------------------------------------------------


class ControlError(ConnectionFailed):
    """A control payload that failed verification or breaks a rule of
    ``docs/PROTOCOL.md`` §4."""

    _KIND: ClassVar[str] = "control"

    def reason(self) -> str:
        return "malformed control payload"


class InvalidControl(ControlError):
    """The FlatBuffers verifier rejected the payload."""

    def __init__(self, table: str, reason: str) -> None:
        super().__init__(f"invalid {table} table: {reason}")
        self.table = table
        self.detail = reason


class MissingControl(ControlError):
    """The payload is empty where a table is required."""

    def __init__(self, table: str) -> None:
        super().__init__(f"missing {table} table")
        self.table = table


class EmptyVersionRange(ControlError):
    """``min_version`` is greater than ``max_version``."""

    def __init__(self, min: int, max: int) -> None:  # noqa: A002
        super().__init__(f"version range {min}..={max} is empty")
        self.min = min
        self.max = max


# ----- violations -----------------------------------------------------------


class Violation(ConnectionFailed):
    """A rule of ``docs/PROTOCOL.md`` that the peer broke (beyond the header
    rules of :class:`FrameError`)."""

    def reason(self) -> str:
        return "protocol violation"


class UnexpectedFrame(Violation):
    """A frame type that is not allowed in the current state."""

    _KIND: ClassVar[str] = "violation.unexpected_frame"

    def __init__(self, ty: FrameType) -> None:
        super().__init__(f"unexpected {ty} frame")
        self.ty = ty


class WrongParity(Violation):
    """An id of the wrong parity for the frame type."""

    _KIND: ClassVar[str] = "violation.wrong_parity"

    def __init__(self, ty: FrameType, id: int) -> None:  # noqa: A002
        super().__init__(f"{ty} with id {id} of the wrong parity")
        self.ty = ty
        self.id = id


class IdNotIncreasing(Violation):
    """A new id not above the previous one."""

    _KIND: ClassVar[str] = "violation.id_not_increasing"

    def __init__(self, id: int, last: int) -> None:  # noqa: A002
        super().__init__(f"new id {id} is not above the last id {last}")
        self.id = id
        self.last = last


class UnopenedId(Violation):
    """A frame naming an id that was never opened."""

    _KIND: ClassVar[str] = "violation.unopened_id"

    def __init__(self, ty: FrameType, id: int) -> None:  # noqa: A002
        super().__init__(f"{ty} names id {id}, which was never opened")
        self.ty = ty
        self.id = id


class InterleavedMessage(Violation):
    """A new message on an id whose previous message is still incomplete."""

    _KIND: ClassVar[str] = "violation.interleaved_message"

    def __init__(self, id: int) -> None:  # noqa: A002
        super().__init__(f"new message on id {id} before its previous message completed")
        self.id = id


class ShortPrelude(Violation):
    """The first frame of a message is too short for its prelude."""

    _KIND: ClassVar[str] = "violation.short_prelude"

    def __init__(self, what: str) -> None:
        super().__init__(f"first frame too short for its {what} prelude")
        self.what = what


class CompressionNotNegotiated(Violation):
    """A compressed message although we did not offer compression."""

    _KIND: ClassVar[str] = "violation.compression_not_negotiated"

    def __init__(self) -> None:
        super().__init__("compressed message without negotiated compression")


class VersionNotOffered(Violation):
    """The server chose a version the client did not offer."""

    _KIND: ClassVar[str] = "violation.version_not_offered"

    def __init__(self, version: int) -> None:
        super().__init__(f"server chose version {version}, which was not offered")
        self.version = version


class InvalidPeerLimit(Violation):
    """The peer advertised a limit below the protocol minimum."""

    _KIND: ClassVar[str] = "violation.invalid_peer_limit"

    def __init__(self, name: str) -> None:
        super().__init__(f"advertised limit {name} below the protocol minimum")
        self.name = name


class GoAwayIncreased(Violation):
    """A GOAWAY raised the last id of an earlier one."""

    _KIND: ClassVar[str] = "violation.goaway_increased"

    def __init__(self, last: int, previous: int) -> None:
        super().__init__(f"GOAWAY last id {last} above the previous {previous}")
        self.last = last
        self.previous = previous


# ----- other connection errors ---------------------------------------------


class LimitExceeded(ConnectionFailed):
    """The peer exceeded one of our limits (``limit`` is the field name in
    :class:`gatewire.limits.Limits`, or ``max_fragments``: fragments per
    message, derived from ``max_message`` by
    :func:`gatewire.protocol.max_fragments`)."""

    def __init__(self, limit: str, value: int, max: int) -> None:  # noqa: A002
        super().__init__(f"limit {limit} exceeded: {value} > {max}")
        self.limit = limit
        self.value = value
        self.max = max

    @property
    def kind(self) -> str:
        return f"limit.{self.limit}"

    @property
    def code(self) -> ErrorCode:
        if self.limit in ("max_message", "max_fragments", "max_frame"):
            return ErrorCode.TOO_LARGE
        return ErrorCode.EXCESSIVE_LOAD

    def reason(self) -> str:
        return self.limit


class FlowControlError(ConnectionFailed):
    """The peer sent beyond its connection credit or overflowed a window."""

    _KIND: ClassVar[str] = "flow_control"

    def __init__(self, window: str) -> None:
        super().__init__(f"flow control: {window}")
        self.window = window

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.FLOW_CONTROL

    def reason(self) -> str:
        return self.window


class BudgetExhausted(ConnectionFailed):
    """The peer spent a budget (``budget`` names it, e.g. ``"stray frames"``)."""

    def __init__(self, budget: str) -> None:
        super().__init__(f"budget for {budget} exhausted")
        self.budget = budget

    @property
    def kind(self) -> str:
        return "budget." + self.budget.replace(" ", "_")

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.EXCESSIVE_LOAD

    def reason(self) -> str:
        return self.budget


class TimerExpired(ConnectionFailed):
    """A timer expired: handshake, partial frame, partial message, keepalive
    or drain."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} timeout")
        self.what = what

    @property
    def kind(self) -> str:
        return "timeout." + self.what.replace(" ", "_")

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.TIMEOUT

    def reason(self) -> str:
        return self.what


class Refused(ConnectionFailed):
    """The handshake was refused (by us, ``side`` LOCAL, or by the peer)."""

    def __init__(self, code: ErrorCode, side: Side, message: str | None) -> None:
        super().__init__(f"handshake refused by {side.value} endpoint with {code}")
        self._code = code
        self.side = side
        self.message = message

    @property
    def kind(self) -> str:
        return f"refused.{self.side.value}"

    @property
    def code(self) -> ErrorCode:
        return self._code


class RemoteClosed(ConnectionFailed):
    """The peer closed the connection with an error GOAWAY."""

    _KIND: ClassVar[str] = "remote"

    def __init__(self, code: ErrorCode, message: str | None) -> None:
        super().__init__(f"peer closed the connection with {code}")
        self._code = code
        self.message = message

    @property
    def code(self) -> ErrorCode:
        return self._code


class LocalClosed(ConnectionFailed):
    """We closed the connection with an error code."""

    _KIND: ClassVar[str] = "local"

    def __init__(self, code: ErrorCode, message: str | None) -> None:
        super().__init__(f"closed locally with {code}")
        self._code = code
        self.message = message

    @property
    def code(self) -> ErrorCode:
        return self._code


class ConnectionLost(ConnectionFailed):
    """The transport ended before the connection was done."""

    _KIND: ClassVar[str] = "connection_lost"

    def __init__(self) -> None:
        super().__init__("connection lost")

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.UNAVAILABLE


# ----- API misuse -----------------------------------------------------------


class ApiError(GatewireError):
    """A command the application should not have given (never caused by
    network input)."""


class InvalidState(ApiError):
    """The command does not fit the connection's state."""

    _KIND: ClassVar[str] = "InvalidState"

    def __init__(self, what: str) -> None:
        super().__init__(f"invalid state: {what}")
        self.what = what


class InvalidArgument(ApiError, ValueError):
    """An argument is out of range."""

    _KIND: ClassVar[str] = "InvalidArgument"

    def __init__(self, what: str) -> None:
        super().__init__(f"invalid argument: {what}")
        self.what = what


class SendError(GatewireError):
    """Why a ``send_*`` or ``open_*`` command did not queue anything."""


class Blocked(SendError):
    """Out of credit, call slots or send queue; retry after a ``Writable``
    event. Nothing changed."""

    _KIND: ClassVar[str] = "Blocked"

    def __init__(self) -> None:
        super().__init__("blocked: retry after a Writable event")


class MessageTooLarge(SendError):
    """The message exceeds the peer's limit."""

    _KIND: ClassVar[str] = "TooLarge"

    def __init__(self, len: int, max: int) -> None:  # noqa: A002
        super().__init__(f"message of {len} bytes exceeds the peer's limit {max}")
        self.len = len
        self.max = max


class ConnectionClosing(SendError):
    """A shutdown is under way: no new calls."""

    _KIND: ClassVar[str] = "Closing"

    def __init__(self) -> None:
        super().__init__("the connection is shutting down")


class ConnectionClosed(SendError):
    """The connection is closed."""

    _KIND: ClassVar[str] = "Closed"

    def __init__(self) -> None:
        super().__init__("the connection is closed")


class IdsExhausted(SendError):
    """The id space is used up; open a new connection."""

    _KIND: ClassVar[str] = "IdsExhausted"

    def __init__(self) -> None:
        super().__init__("call ids exhausted")


class UnknownCall(ApiError, SendError):
    """No live call or stream has this id (or it is not ours to act on)."""

    _KIND: ClassVar[str] = "UnknownCall"

    def __init__(self, id: int) -> None:  # noqa: A002
        super().__init__(f"no call with id {id}")
        self.id = id


# ----- configuration and buffers -------------------------------------------


class InvalidLimit(GatewireError, ValueError):
    """A limit or timeout value outside its allowed range."""

    _KIND: ClassVar[str] = "InvalidLimit"

    def __init__(self, name: str, value: int, min: int, max: int) -> None:  # noqa: A002
        super().__init__(f"limit {name} = {value} is outside {min}..={max}")
        self.name = name
        self.value = value
        self.min = min
        self.max = max


class InsufficientSize(GatewireError):
    """The caller's buffer is too small; ``required`` bytes are needed."""

    _KIND: ClassVar[str] = "InsufficientSize"

    def __init__(self, required: int, available: int) -> None:
        super().__init__(f"buffer of {available} bytes is too small, {required} required")
        self.required = required
        self.available = available


class Incompatible(GatewireError):
    """Two endpoints' services cannot work together (``docs/PROTOCOL.md``
    §10.3), raised by :func:`gatewire.services.check`. ``message`` is the
    refusal message of the handshake, the same in every implementation; the
    acceptor refuses with ``INCOMPATIBLE``."""

    _KIND: ClassVar[str] = "Incompatible"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> ErrorCode:
        """``INCOMPATIBLE``, the code of the refusal."""
        return ErrorCode.INCOMPATIBLE
