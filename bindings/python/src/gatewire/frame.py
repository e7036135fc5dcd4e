"""Frame header: layout, types, flags and the rules that need no connection
state. Mirrors ``gatewire_proto::frame``.

Every frame is a fixed 16-byte little-endian header followed by ``length``
payload bytes (``docs/PROTOCOL.md`` §3)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +---------------------------------------------------------------+
    |                   payload length (u32 LE)                     |  0
    +---------------+---------------+---------------+---------------+
    |     type      |     flags     |     codec     |  reserved (0) |  4
    +---------------+---------------+---------------+---------------+
    |                        id (u32 LE)                            |  8
    +---------------------------------------------------------------+
    |                        arg (u32 LE)                           | 12
    +---------------------------------------------------------------+
    |                   payload (length bytes) ...

:meth:`Header.decode` checks everything that can be checked from the header
alone -- the length against the caller's limit first, before a byte of
payload is buffered -- so a decoder never holds memory for a frame it will
reject.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from .exceptions import (
    FrameTooLarge,
    InsufficientSize,
    InvalidArg,
    InvalidFlags,
    InvalidId,
    InvalidLength,
    ReservedByte,
    UnexpectedCodec,
    UnknownType,
)

__all__ = [
    "HEADER_LEN",
    "MAX_FRAME_CEILING",
    "PING_PAYLOAD_LEN",
    "U16_MAX",
    "U32_MAX",
    "U64_MAX",
    "Codec",
    "Flags",
    "FrameType",
    "Header",
    "pack_header",
    "trusted_constructor",
    "trusted_header",
]

_T = TypeVar("_T")

HEADER_LEN = 16
"""Size of the fixed frame header in bytes."""

MAX_FRAME_CEILING = (1 << 24) - 1
"""Hard ceiling on a frame payload, whatever the configured limit: 16 MiB - 1."""

PING_PAYLOAD_LEN = 8
"""Payload length of PING and PONG frames."""

U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF

_HEADER = struct.Struct("<IBBBBII")

pack_header: Callable[[int, int, int, int, int, int, int], bytes] = _HEADER.pack
"""Packs length, type, flags, codec, the reserved 0, id and argument into
the 16 header bytes, unchecked: for values the protocol core built itself."""


def _check_u8(what: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} is outside 0..=255")


_TYPE_NAMES: dict[int, str] = {
    0x01: "HELLO",
    0x02: "HELLO_ACK",
    0x03: "REQUEST",
    0x04: "RESPONSE",
    0x05: "ERROR",
    0x06: "EVENT",
    0x07: "STREAM_OPEN",
    0x08: "STREAM_DATA",
    0x09: "CREDIT",
    0x0A: "CANCEL",
    0x0B: "PING",
    0x0C: "PONG",
    0x0D: "GOAWAY",
    0x0E: "CONTINUATION",
}


class Flags(int):
    """Frame flag bits (``docs/PROTOCOL.md`` §3.3). Bits ``0x10..=0x80`` are
    reserved and MUST be zero (extension frames aside)."""

    __slots__ = ()

    MORE: ClassVar[Flags]
    """More fragments of this message follow as CONTINUATION frames."""
    COMPRESSED: ClassVar[Flags]
    """The body is compressed; four payload bytes after any deadline give its
    decompressed size."""
    END: ClassVar[Flags]
    """The sender's half of the stream ends with this message."""
    DEADLINE: ClassVar[Flags]
    """The first four payload bytes are a relative deadline in milliseconds."""
    NONE: ClassVar[Flags]
    """No flag."""

    def __new__(cls, value: int) -> Flags:
        _check_u8("flags", value)
        return super().__new__(cls, value)

    def contains(self, other: int) -> bool:
        """Whether every bit of ``other`` is set."""
        return self & other == other

    def union(self, other: int) -> Flags:
        """The union of both sets."""
        return Flags(int(self) | int(other))

    def without(self, other: int) -> Flags:
        """``self`` with the bits of ``other`` cleared."""
        return Flags(int(self) & ~int(other) & 0xFF)

    def __repr__(self) -> str:
        return f"Flags({int(self):#04x})"

    __str__ = __repr__


Flags.MORE = Flags(0x01)
Flags.COMPRESSED = Flags(0x02)
Flags.END = Flags(0x04)
Flags.DEADLINE = Flags(0x08)
Flags.NONE = Flags(0)


class FrameType(int):
    """A frame type byte (``docs/PROTOCOL.md`` §3.2).

    Types ``0x80..=0xFF`` are extensions: a receiver that does not know one
    ignores the frame (and charges it to a budget). Any other unknown type is
    a protocol violation.
    """

    __slots__ = ()

    HELLO: ClassVar[FrameType]
    """Opens the connection (client -> server). Payload: ``Hello`` table."""
    HELLO_ACK: ClassVar[FrameType]
    """Accepts or refuses the connection. Payload: ``HelloAck`` table."""
    REQUEST: ClassVar[FrameType]
    """Opens a unary call. ``id``: new call id; ``arg``: method id."""
    RESPONSE: ClassVar[FrameType]
    """Completes a unary call. ``id``: the call."""
    ERROR: ClassVar[FrameType]
    """Ends a call or stream with an error. ``arg``: error code."""
    EVENT: ClassVar[FrameType]
    """A one-way message. ``id``: new id; ``arg``: method id."""
    STREAM_OPEN: ClassVar[FrameType]
    """Opens a stream. ``id``: new stream id; ``arg``: method id."""
    STREAM_DATA: ClassVar[FrameType]
    """A message on an open stream."""
    CREDIT: ClassVar[FrameType]
    """Grants credit. ``id``: 0 for the connection or a stream; ``arg``: bytes."""
    CANCEL: ClassVar[FrameType]
    """The caller abandons a call or stream."""
    PING: ClassVar[FrameType]
    """Liveness probe; payload: 8 opaque bytes."""
    PONG: ClassVar[FrameType]
    """Answer to PING; payload: the PING's 8 bytes."""
    GOAWAY: ClassVar[FrameType]
    """Stop opening calls. ``id``: last peer-initiated id that may be
    processed; ``arg``: error code. Payload: optional ``GoAway`` table."""
    CONTINUATION: ClassVar[FrameType]
    """Next fragment of a message."""

    EXTENSION_MIN: ClassVar[int] = 0x80
    """First type byte of the ignorable extension range."""

    def __new__(cls, value: int) -> FrameType:
        _check_u8("frame type", value)
        return super().__new__(cls, value)

    @property
    def name(self) -> str | None:
        """The type's name, or ``None`` when this version does not define it."""
        return _TYPE_NAMES.get(int(self))

    def is_extension(self) -> bool:
        """Whether the type is in the ignorable extension range."""
        return self >= 0x80

    def is_message(self) -> bool:
        """Whether frames of this type start a message that may span several
        frames and carries a payload codec."""
        return self in (0x03, 0x04, 0x06, 0x07, 0x08)

    def opens_id(self) -> bool:
        """Whether a frame of this type opens a new id."""
        return self in (0x03, 0x06, 0x07)

    def allowed_flags(self) -> Flags:
        """The flags a frame of this type may carry."""
        v = int(self)
        if v == 0x03:
            return Flags(0x01 | 0x02 | 0x08)
        if v in (0x04, 0x06):
            return Flags(0x01 | 0x02)
        if v == 0x07:
            return Flags(0x01 | 0x02 | 0x08 | 0x04)
        if v == 0x08:
            return Flags(0x01 | 0x02 | 0x04)
        if v == 0x0E:
            return Flags.MORE
        if v >= 0x80:
            return Flags(0xFF)
        return Flags.NONE

    def __repr__(self) -> str:
        name = self.name
        return f"FrameType.{name}" if name is not None else f"FrameType({int(self):#04x})"

    def __str__(self) -> str:
        name = self.name
        return name if name is not None else f"frame type {int(self):#04x}"


for _value, _name in _TYPE_NAMES.items():
    setattr(FrameType, _name, FrameType(_value))


_CODEC_NAMES = {0: "RAW", 1: "FLATBUFFERS", 2: "POSTCARD", 3: "JSON"}


class Codec(int):
    """The payload codec tag of a message (``docs/PROTOCOL.md`` §5.3).
    Unknown values are preserved for the application to judge."""

    __slots__ = ()

    RAW: ClassVar[Codec]
    """Opaque bytes."""
    FLATBUFFERS: ClassVar[Codec]
    """A FlatBuffers buffer."""
    POSTCARD: ClassVar[Codec]
    """postcard (serde), for Rust <-> Rust messages."""
    JSON: ClassVar[Codec]
    """UTF-8 JSON."""

    def __new__(cls, value: int) -> Codec:
        _check_u8("codec", value)
        return super().__new__(cls, value)

    @property
    def name(self) -> str | None:
        """The codec's name, or ``None`` for a value this version does not know."""
        return _CODEC_NAMES.get(int(self))

    def __repr__(self) -> str:
        name = self.name
        return f"Codec.{name}" if name is not None else f"Codec({int(self)})"

    def __str__(self) -> str:
        name = self.name
        return name if name is not None else f"Codec({int(self)})"


Codec.RAW = Codec(0)
Codec.FLATBUFFERS = Codec(1)
Codec.POSTCARD = Codec(2)
Codec.JSON = Codec(3)

_CONNECTION_LEVEL = (0x01, 0x02, 0x0B, 0x0C)

# Every byte value as its wire type, built once: decoding a header looks
# them up instead of constructing (and range-checking) three objects.
_FRAME_TYPES = tuple(FrameType(v) for v in range(256))
_FLAGS = tuple(Flags(v) for v in range(256))
_CODECS = tuple(Codec(v) for v in range(256))
_ALLOWED_FLAGS = tuple(int(t.allowed_flags()) for t in _FRAME_TYPES)


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded frame header.

    Attributes:
        length: payload length in bytes, not counting the header (u32).
        ty: frame type.
        flags: flag bits.
        codec: payload codec (message frames only; zero elsewhere).
        id: call or stream id; 0 for connection-level frames (u32).
        arg: type-specific argument: method id, error code or credit (u32).

    Raises:
        ValueError: from the constructor, when a field is out of its range.
    """

    length: int
    ty: FrameType
    flags: Flags = Flags.NONE
    codec: Codec = Codec.RAW
    id: int = 0
    arg: int = 0

    def __post_init__(self) -> None:
        if not (
            0 <= self.length <= U32_MAX and 0 <= self.id <= U32_MAX and 0 <= self.arg <= U32_MAX
        ):
            for what, value in (("length", self.length), ("id", self.id), ("arg", self.arg)):
                if not 0 <= value <= U32_MAX:
                    raise ValueError(f"header {what} {value} is outside 0..=0xffffffff")
        # Plain ints are accepted and normalized to the wire types.
        if type(self.ty) is not FrameType:
            object.__setattr__(self, "ty", FrameType(self.ty))
        if type(self.flags) is not Flags:
            object.__setattr__(self, "flags", Flags(self.flags))
        if type(self.codec) is not Codec:
            object.__setattr__(self, "codec", Codec(self.codec))

    @classmethod
    def new(cls, ty: int, id: int, arg: int, length: int) -> Header:  # noqa: A002
        """A header with no flags, codec 0 and the given fields."""
        return cls(length=length, ty=FrameType(ty), id=id, arg=arg)

    def to_bytes(self) -> bytes:
        """The 16 header bytes."""
        return pack_header(self.length, self.ty, self.flags, self.codec, 0, self.id, self.arg)

    def encode(self, buf: bytearray | memoryview, offset: int = 0) -> None:
        """Writes the 16 header bytes into ``buf`` at ``offset``.

        Raises:
            InsufficientSize: when ``buf`` has fewer than 16 bytes from ``offset``.
        """
        available = max(0, len(buf) - offset)
        if available < HEADER_LEN:
            raise InsufficientSize(HEADER_LEN, available)
        _HEADER.pack_into(
            buf, offset, self.length, self.ty, self.flags, self.codec, 0, self.id, self.arg
        )

    @staticmethod
    def decode(buf: bytes | bytearray | memoryview, max_payload: int) -> Header | None:
        """Decodes and validates a header.

        Returns ``None`` when fewer than 16 bytes are given. The length is
        checked against ``max_payload`` (clamped to :data:`MAX_FRAME_CEILING`)
        before anything else, so a caller can reject a frame before buffering
        its payload.

        Raises:
            gatewire.exceptions.FrameError: the header breaks a rule.
        """
        if len(buf) < HEADER_LEN:
            return None
        length, ty, flags, codec, reserved, id_, arg = _HEADER.unpack_from(buf, 0)
        limit = min(max_payload, MAX_FRAME_CEILING)
        if length > limit:
            raise FrameTooLarge(length, limit)
        if reserved != 0:
            raise ReservedByte(reserved)
        _check_rules(length, ty, flags, codec, id_, arg)
        return trusted_header(length, _FRAME_TYPES[ty], _FLAGS[flags], _CODECS[codec], id_, arg)

    def validate(self) -> None:
        """Checks the per-type rules of ``docs/PROTOCOL.md`` §3.4 (everything
        but the length limit and the reserved byte), in the Rust core's order:
        type, flags, codec, id, arg, length.

        Raises:
            gatewire.exceptions.FrameError: the first rule broken.
        """
        _check_rules(self.length, int(self.ty), int(self.flags), int(self.codec), self.id, self.arg)


def _rules(v: int) -> tuple[int, bool, int, int, int, int, int, int] | None:
    """The rules of type byte ``v``: the flag bits it must not carry, whether
    it may name a codec, and the ranges of its id, arg and length; ``None``
    for an unknown core type. Extension types (``0x80..=0xFF``) are checked
    by whoever knows them."""
    if v >= 0x80:
        return (0, True, 0, U32_MAX, 0, U32_MAX, 0, U32_MAX)
    if v not in _TYPE_NAMES:
        return None
    forbidden = ~_ALLOWED_FLAGS[v] & 0xFF
    codec = v in (0x03, 0x04, 0x06, 0x07, 0x08)
    any_, zero, nonzero = (0, U32_MAX), (0, 0), (1, U32_MAX)
    # CREDIT may name the connection (0) or a stream; GOAWAY names a last id.
    ids = any_ if v in (0x09, 0x0D) else zero if v in _CONNECTION_LEVEL else nonzero
    args = {
        0x03: any_,
        0x06: any_,
        0x07: any_,
        0x05: (1, U16_MAX),
        0x0D: (0, U16_MAX),
        0x09: nonzero,
    }.get(v, zero)
    lengths = {
        0x0B: (PING_PAYLOAD_LEN, PING_PAYLOAD_LEN),
        0x0C: (PING_PAYLOAD_LEN, PING_PAYLOAD_LEN),
        0x09: zero,
        0x0A: zero,
        0x0E: nonzero,
    }.get(v, any_)
    return (forbidden, codec, *ids, *args, *lengths)


_RULES = tuple(_rules(v) for v in range(256))


def _check_rules(length: int, ty: int, flags: int, codec: int, id_: int, arg: int) -> None:
    """:meth:`Header.validate` on the header's fields as integers."""
    rules = _RULES[ty]
    if rules is None:
        raise UnknownType(ty)
    forbidden, any_codec, id_lo, id_hi, arg_lo, arg_hi, len_lo, len_hi = rules
    if flags & forbidden:
        raise InvalidFlags(_FRAME_TYPES[ty], flags)
    if codec and not any_codec:
        raise UnexpectedCodec(_FRAME_TYPES[ty], codec)
    if not id_lo <= id_ <= id_hi:
        raise InvalidId(_FRAME_TYPES[ty], id_)
    if not arg_lo <= arg <= arg_hi:
        raise InvalidArg(_FRAME_TYPES[ty], arg)
    if not len_lo <= length <= len_hi:
        raise InvalidLength(_FRAME_TYPES[ty], length)


def trusted_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of the frozen, slotted dataclass ``cls`` that sets the
    fields (all of them, in order, positionally) without the checks and
    conversions of ``__init__``/``__post_init__``: for values the protocol
    core built or decoded itself, already of their types and in range.

    The fields are stored into an instance of a plain class with the same
    slots, which then becomes a ``cls``: a frozen class refuses ordinary
    assignment, and setting each slot through its descriptor costs about
    twice as much. A header built this way costs about a quarter of
    ``Header(...)``, a message about two fifths of ``Message(...)``; both
    count on every frame."""
    if cls.__bases__ != (object,) or "__weakref__" in vars(cls):
        raise TypeError(f"{cls.__name__} must derive from object alone, without __weakref__")
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    twin = type(f"_{cls.__name__}Fields", (), {"__slots__": tuple(vars(cls)["__slots__"])})
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin}
    lines = [f"def make({', '.join(names)}):", "    obj = new(twin)"]
    lines += [f"    obj.{name} = {name}" for name in names]
    lines += ["    obj.__class__ = cls", "    return obj"]
    # The source is built from the field names only.
    exec("\n".join(lines), namespace)
    make: Callable[..., _T] = namespace["make"]
    return make


trusted_header: Callable[[int, FrameType, Flags, Codec, int, int], Header] = trusted_constructor(
    Header
)
"""``Header(length, ty, flags, codec, id, arg)`` for fields already of their
wire types and in range (frames the core builds, headers it decoded)."""
