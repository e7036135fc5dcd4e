"""Wire error codes (``docs/PROTOCOL.md`` §7).

Mirrors ``gatewire_proto::code``. The code space is open: a value without a
name here is preserved as it is, never replaced by a default. Codes
``0x8000..=0xFFFF`` belong to applications.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ErrorCode"]

_NAMES: dict[int, str] = {
    0x0000: "NO_ERROR",
    0x0001: "PROTOCOL_VIOLATION",
    0x0002: "FLOW_CONTROL",
    0x0003: "TOO_LARGE",
    0x0004: "UNKNOWN_METHOD",
    0x0005: "REFUSED",
    0x0006: "CANCELLED",
    0x0007: "DEADLINE_EXCEEDED",
    0x0008: "UNAUTHENTICATED",
    0x0009: "PERMISSION_DENIED",
    0x000A: "INTERNAL",
    0x000B: "EXCESSIVE_LOAD",
    0x000C: "INCOMPATIBLE",
    0x000D: "TIMEOUT",
    0x000E: "UNAVAILABLE",
    0x000F: "STREAM_CLOSED",
    0x0010: "INVALID_ARGUMENT",
}


class ErrorCode(int):
    """An error code as carried on the wire by ERROR, GOAWAY and a refusing
    HELLO_ACK: a 16-bit unsigned integer.

    Known codes are class attributes (``ErrorCode.REFUSED``); any other value
    in ``0..=0xFFFF`` is kept as it is and has ``name`` ``None``.

    Raises:
        ValueError: from the constructor, for a value outside ``0..=0xFFFF``.
    """

    __slots__ = ()

    NO_ERROR: ClassVar[ErrorCode]
    """No error: a graceful GOAWAY."""
    PROTOCOL_VIOLATION: ClassVar[ErrorCode]
    """The peer broke a rule of the protocol."""
    FLOW_CONTROL: ClassVar[ErrorCode]
    """The peer sent more than its credit, or a grant overflowed a window."""
    TOO_LARGE: ClassVar[ErrorCode]
    """A frame or message exceeded a size limit."""
    UNKNOWN_METHOD: ClassVar[ErrorCode]
    """No handler is registered for the method id."""
    REFUSED: ClassVar[ErrorCode]
    """The call was not processed and is safe to retry."""
    CANCELLED: ClassVar[ErrorCode]
    """The caller cancelled the call."""
    DEADLINE_EXCEEDED: ClassVar[ErrorCode]
    """The call's deadline passed before it completed."""
    UNAUTHENTICATED: ClassVar[ErrorCode]
    """The peer did not authenticate, or its credentials were rejected."""
    PERMISSION_DENIED: ClassVar[ErrorCode]
    """The authenticated peer may not call this method."""
    INTERNAL: ClassVar[ErrorCode]
    """The handler failed."""
    EXCESSIVE_LOAD: ClassVar[ErrorCode]
    """The peer spent a budget (pings, cancels, resets, tiny frames...)."""
    INCOMPATIBLE: ClassVar[ErrorCode]
    """No protocol version, feature or schema in common."""
    TIMEOUT: ClassVar[ErrorCode]
    """The connection saw no progress in time."""
    UNAVAILABLE: ClassVar[ErrorCode]
    """The endpoint is shutting down or cannot serve now."""
    STREAM_CLOSED: ClassVar[ErrorCode]
    """A frame named a stream whose receiving half is closed."""
    INVALID_ARGUMENT: ClassVar[ErrorCode]
    """The peer's payload could not be decoded by the application."""

    APPLICATION_MIN: ClassVar[int] = 0x8000
    """First code of the application-defined range."""

    def __new__(cls, value: int) -> ErrorCode:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"error code {value} is outside 0..=0xffff")
        return super().__new__(cls, value)

    @property
    def name(self) -> str | None:
        """The code's name, or ``None`` for a code this version does not know."""
        return _NAMES.get(int(self))

    def is_application(self) -> bool:
        """Whether the code is in the application-defined range."""
        return int(self) >= ErrorCode.APPLICATION_MIN

    @classmethod
    def from_name(cls, name: str) -> ErrorCode:
        """The code called ``name``, or parsed from ``0x``-prefixed hex.

        Raises:
            ValueError: for an unknown name or an out-of-range value.
        """
        if name.startswith("0x"):
            return cls(int(name[2:], 16))
        for value, known in _NAMES.items():
            if known == name:
                return cls(value)
        raise ValueError(f"unknown error code name {name!r}")

    def __repr__(self) -> str:
        name = self.name
        return f"ErrorCode.{name}" if name is not None else f"ErrorCode({int(self):#06x})"

    def __str__(self) -> str:
        name = self.name
        return f"{name} ({int(self):#06x})" if name is not None else f"{int(self):#06x}"


for _value, _name in _NAMES.items():
    setattr(ErrorCode, _name, ErrorCode(_value))
