"""Control payloads: the FlatBuffers tables of ``schema/gatewire.fbs`` as
plain Python values. Mirrors ``gatewire_proto::control``.

Decoding verifies the buffer first (see :mod:`gatewire._flatbuffers`):
every offset is bounds-checked, depth is at most 32, at most 10,000 tables,
strings are strict UTF-8, ``Service.name`` is required. Nothing is read from
an unverified location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from . import _flatbuffers as fb
from .code import ErrorCode
from .exceptions import EmptyVersionRange, InvalidControl, MissingControl
from .frame import U16_MAX, U32_MAX, U64_MAX

U8_MAX = 0xFF

__all__ = [
    "MAX_DEPTH",
    "MAX_TABLES",
    "AdvertisedLimits",
    "ErrorInfo",
    "GoAwayInfo",
    "Hello",
    "HelloAck",
    "MethodDesc",
    "MethodKind",
    "Service",
    "ServiceList",
    "Shape",
]

MAX_DEPTH = fb.MAX_DEPTH
"""Nesting depth a control table may reach."""
MAX_TABLES = fb.MAX_TABLES
"""Tables a control payload may contain."""

_V = fb.field_voffset


def _check(what: str, value: int, maximum: int) -> int:
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} = {value} is outside 0..={maximum}")
    return value


def _u16(what: str, value: int) -> fb.U16 | None:
    return fb.U16(_check(what, value, U16_MAX)) if value else None


def _u32(what: str, value: int) -> fb.U32 | None:
    return fb.U32(_check(what, value, U32_MAX)) if value else None


def _u64(what: str, value: int) -> fb.U64 | None:
    return fb.U64(_check(what, value, U64_MAX)) if value else None


def _str(value: str | None) -> fb.Str | None:
    return None if value is None else fb.Str(value)


def _nonempty(value: bytes) -> fb.Bytes | None:
    return fb.Bytes(bytes(value)) if value else None


@dataclass(frozen=True, slots=True)
class AdvertisedLimits:
    """Receive limits as advertised in HELLO and HELLO_ACK. Zero means "not
    stated": the protocol default applies. All fields are u32."""

    max_frame: int = 0
    """Largest frame payload accepted, in bytes."""
    max_message: int = 0
    """Largest message accepted, in bytes."""
    max_in_flight: int = 0
    """Calls and streams the peer may have open at once."""
    initial_stream_credit: int = 0
    """Initial per-stream credit, in bytes."""
    connection_credit: int = 0
    """Initial connection credit, in bytes."""

    def _table(self) -> fb.Table:
        return fb.Table(
            [
                _u32("max_frame", self.max_frame),
                _u32("max_message", self.max_message),
                _u32("max_in_flight", self.max_in_flight),
                _u32("initial_stream_credit", self.initial_stream_credit),
                _u32("connection_credit", self.connection_credit),
            ]
        )

    @staticmethod
    def _read(r: fb.Reader, t: fb.TableRef) -> AdvertisedLimits:
        return AdvertisedLimits(
            max_frame=r.u32(t, _V(0)),
            max_message=r.u32(t, _V(1)),
            max_in_flight=r.u32(t, _V(2)),
            initial_stream_credit=r.u32(t, _V(3)),
            connection_credit=r.u32(t, _V(4)),
        )


_KIND_NAMES: dict[int, str] = {
    0: "UNARY",
    1: "SERVER_STREAMING",
    2: "CLIENT_STREAMING",
    3: "BIDI_STREAMING",
    4: "EVENT",
}


class MethodKind(int):
    """How a method is called (``docs/SCHEMA.md`` §2): a ``ubyte``.

    Known kinds are class attributes (``MethodKind.UNARY``); any other value
    in ``0..=255`` is kept as it is and has ``name`` ``None``.

    Raises:
        ValueError: from the constructor, for a value outside ``0..=255``.
    """

    __slots__ = ()

    UNARY: ClassVar[MethodKind]
    """REQUEST and one RESPONSE."""
    SERVER_STREAMING: ClassVar[MethodKind]
    """One request opens a stream; the callee sends the items."""
    CLIENT_STREAMING: ClassVar[MethodKind]
    """The caller sends the items; the callee answers with one message."""
    BIDI_STREAMING: ClassVar[MethodKind]
    """Both sides send items."""
    EVENT: ClassVar[MethodKind]
    """A one-way EVENT."""

    def __new__(cls, value: int) -> MethodKind:
        if not 0 <= value <= U8_MAX:
            raise ValueError(f"method kind {value} is outside 0..=255")
        return super().__new__(cls, value)

    @property
    def name(self) -> str | None:
        """The kind's name, or ``None`` for a kind this version does not know."""
        return _KIND_NAMES.get(int(self))

    def __repr__(self) -> str:
        name = self.name
        return f"MethodKind.{name}" if name is not None else f"MethodKind({int(self)})"


for _value, _name in _KIND_NAMES.items():
    setattr(MethodKind, _name, MethodKind(_value))


@dataclass(frozen=True, slots=True)
class MethodDesc:
    """One method of a service descriptor (``docs/PROTOCOL.md`` §10.2)."""

    name: str = ""
    """The method's name within its service."""
    id: int = 0
    """The method id (u32)."""
    kind: MethodKind = MethodKind.UNARY
    """The call kind."""
    request: int = 0
    """Type hash of the request, opening or event table (u64)."""
    response: int = 0
    """Type hash of the response or stream item table (u64)."""

    def _table(self) -> fb.Table:
        kind = _check("kind", int(self.kind), U8_MAX)
        return fb.Table(
            [
                fb.Str(self.name),
                _u32("id", self.id),
                fb.U8(kind) if kind else None,
                _u64("request", self.request),
                _u64("response", self.response),
            ]
        )

    @staticmethod
    def _read(r: fb.Reader, t: fb.TableRef) -> MethodDesc:
        return MethodDesc(
            name=r.string(t, _V(0)) or "",
            id=r.u32(t, _V(1)),
            kind=MethodKind(r.u8(t, _V(2))),
            request=r.u64(t, _V(3)),
            response=r.u64(t, _V(4)),
        )


@dataclass(frozen=True, slots=True)
class Shape:
    """The wire shape of a table or struct: one hash per field slot, in
    field-id order (``docs/PROTOCOL.md`` §10.2)."""

    name: str = ""
    """Fully qualified type name."""
    ty: int = 0
    """Type hash of the table or struct (u64)."""
    fixed: bool = False
    """A struct: the slots must match exactly. A table may gain slots."""
    slots: tuple[int, ...] = ()
    """One hash (u64) per field slot."""

    def _table(self) -> fb.Table:
        for slot in self.slots:
            _check("slot", slot, U64_MAX)
        return fb.Table(
            [
                fb.Str(self.name),
                _u64("type", self.ty),
                fb.U8(1) if self.fixed else None,
                fb.U64s(tuple(self.slots)),
            ]
        )

    @staticmethod
    def _read(r: fb.Reader, t: fb.TableRef) -> Shape:
        return Shape(
            name=r.string(t, _V(0)) or "",
            ty=r.u64(t, _V(1)),
            fixed=r.bool(t, _V(2)),
            slots=tuple(r.u64_vector(t, _V(3)) or ()),
        )


@dataclass(frozen=True, slots=True)
class Service:
    """A service an endpoint offers or uses: its name, fingerprint and
    descriptor (``docs/PROTOCOL.md`` §10)."""

    name: str
    """Fully qualified service name."""
    fingerprint: int = 0
    """Hash of the service's canonical description (u64); 0 means unknown."""
    methods: tuple[MethodDesc, ...] = ()
    """The service's methods. Empty: no descriptor, only the fingerprint."""
    shapes: tuple[Shape, ...] = ()
    """The shapes of the tables and structs its methods reach."""

    def _table(self) -> fb.Table:
        return fb.Table(
            [
                fb.Str(self.name),
                _u64("fingerprint", self.fingerprint),
                fb.Tables([m._table() for m in self.methods]) if self.methods else None,
                fb.Tables([s._table() for s in self.shapes]) if self.shapes else None,
            ]
        )

    @staticmethod
    def _read(r: fb.Reader, t: fb.TableRef) -> Service:
        # Fields are verified in schema order, as the Rust verifier does.
        name = r.required_string(t, _V(0), "name")
        fingerprint = r.u64(t, _V(1))
        methods = r.tables(t, _V(2), lambda m: MethodDesc._read(r, m))
        shapes = r.tables(t, _V(3), lambda s: Shape._read(r, s))
        return Service(
            name=name,
            fingerprint=fingerprint,
            methods=tuple(methods or ()),
            shapes=tuple(shapes or ()),
        )


def _services(services: tuple[Service, ...]) -> fb.Tables | None:
    return fb.Tables([s._table() for s in services]) if services else None


def _read_services(r: fb.Reader, t: fb.TableRef, voffset: int) -> tuple[Service, ...]:
    v = r.tables(t, voffset, lambda s: Service._read(r, s))
    return tuple(v) if v is not None else ()


def _read_limits(r: fb.Reader, t: fb.TableRef, voffset: int) -> AdvertisedLimits:
    v = r.table(t, voffset, lambda lt: AdvertisedLimits._read(r, lt))
    return v if v is not None else AdvertisedLimits()


@dataclass(frozen=True, slots=True)
class Hello:
    """The HELLO table."""

    min_version: int = 0
    """Lowest protocol version the client speaks (u16)."""
    max_version: int = 0
    """Highest protocol version the client speaks (u16)."""
    limits: AdvertisedLimits = field(default_factory=AdvertisedLimits)
    """The client's receive limits."""
    compression: bytes = b""
    """Compression algorithms the client decodes."""
    codecs: bytes = b""
    """Payload codecs the client understands."""
    auth: bytes | None = None
    """Opaque authentication payload."""
    services: tuple[Service, ...] = ()
    """Services the client offers."""
    agent: str | None = None
    """Implementation name, for logs."""
    uses: tuple[Service, ...] = ()
    """Services the client uses."""

    def encode(self) -> bytes:
        """Serializes the table.

        Raises:
            ValueError: a field is out of its range.
        """
        root = fb.Table(
            [
                _u16("min_version", self.min_version),
                _u16("max_version", self.max_version),
                self.limits._table(),
                _nonempty(self.compression),
                _nonempty(self.codecs),
                None if self.auth is None else fb.Bytes(bytes(self.auth)),
                _services(self.services),
                _str(self.agent),
                _services(self.uses),
            ]
        )
        return fb.Writer().finish(root)

    @classmethod
    def decode(cls, buf: bytes) -> Hello:
        """Verifies and reads the table.

        Raises:
            gatewire.exceptions.ControlError: the payload is empty, fails
                verification, or has an empty version range.
        """
        if not buf:
            raise MissingControl("Hello")
        r = fb.Reader(bytes(buf))
        try:
            hello = r.root(lambda t: cls._read(r, t))
        except fb.FlatbufferError as e:
            raise InvalidControl("Hello", str(e)) from None
        if hello.min_version > hello.max_version:
            raise EmptyVersionRange(hello.min_version, hello.max_version)
        return hello

    @classmethod
    def _read(cls, r: fb.Reader, t: fb.TableRef) -> Hello:
        return cls(
            min_version=r.u16(t, _V(0)),
            max_version=r.u16(t, _V(1)),
            limits=_read_limits(r, t, _V(2)),
            compression=r.byte_vector(t, _V(3)) or b"",
            codecs=r.byte_vector(t, _V(4)) or b"",
            auth=r.byte_vector(t, _V(5)),
            services=_read_services(r, t, _V(6)),
            agent=r.string(t, _V(7)),
            uses=_read_services(r, t, _V(8)),
        )


@dataclass(frozen=True, slots=True)
class HelloAck:
    """The HELLO_ACK table."""

    version: int = 0
    """The version chosen (u16); meaningless when refused."""
    error_code: ErrorCode = ErrorCode.NO_ERROR
    """``NO_ERROR`` to accept; anything else refuses."""
    message: str | None = None
    """Human-readable reason for a refusal."""
    limits: AdvertisedLimits = field(default_factory=AdvertisedLimits)
    """The server's receive limits."""
    compression: bytes = b""
    """Compression algorithms the server decodes."""
    codecs: bytes = b""
    """Payload codecs the server understands."""
    services: tuple[Service, ...] = ()
    """Services the server offers."""
    agent: str | None = None
    """Implementation name, for logs."""
    uses: tuple[Service, ...] = ()
    """Services the server uses."""

    def encode(self) -> bytes:
        """Serializes the table.

        Raises:
            ValueError: a field is out of its range.
        """
        root = fb.Table(
            [
                _u16("version", self.version),
                _u16("error_code", int(self.error_code)),
                _str(self.message),
                self.limits._table(),
                _nonempty(self.compression),
                _nonempty(self.codecs),
                _services(self.services),
                _str(self.agent),
                _services(self.uses),
            ]
        )
        return fb.Writer().finish(root)

    @classmethod
    def decode(cls, buf: bytes) -> HelloAck:
        """Verifies and reads the table.

        Raises:
            gatewire.exceptions.ControlError: the payload is empty or fails
                verification.
        """
        if not buf:
            raise MissingControl("HelloAck")
        r = fb.Reader(bytes(buf))
        try:
            return r.root(lambda t: cls._read(r, t))
        except fb.FlatbufferError as e:
            raise InvalidControl("HelloAck", str(e)) from None

    @classmethod
    def _read(cls, r: fb.Reader, t: fb.TableRef) -> HelloAck:
        return cls(
            version=r.u16(t, _V(0)),
            error_code=ErrorCode(r.u16(t, _V(1))),
            message=r.string(t, _V(2)),
            limits=_read_limits(r, t, _V(3)),
            compression=r.byte_vector(t, _V(4)) or b"",
            codecs=r.byte_vector(t, _V(5)) or b"",
            services=_read_services(r, t, _V(6)),
            agent=r.string(t, _V(7)),
            uses=_read_services(r, t, _V(8)),
        )


@dataclass(frozen=True, slots=True)
class ServiceList:
    """The answer of the built-in method ``LIST_SERVICES``
    (``docs/PROTOCOL.md`` §10.4)."""

    offers: tuple[Service, ...] = ()
    """Services the endpoint serves."""
    uses: tuple[Service, ...] = ()
    """Services the endpoint calls on its peer."""

    def encode(self) -> bytes:
        """Serializes the table.

        Raises:
            ValueError: a field is out of its range.
        """
        return fb.Writer().finish(fb.Table([_services(self.offers), _services(self.uses)]))

    @classmethod
    def decode(cls, buf: bytes) -> ServiceList:
        """Verifies and reads the table.

        Raises:
            gatewire.exceptions.ControlError: the payload is empty or fails
                verification.
        """
        if not buf:
            raise MissingControl("ServiceList")
        r = fb.Reader(bytes(buf))
        try:
            return r.root(
                lambda t: cls(offers=_read_services(r, t, _V(0)), uses=_read_services(r, t, _V(1)))
            )
        except fb.FlatbufferError as e:
            raise InvalidControl("ServiceList", str(e)) from None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The optional detail of an ERROR frame."""

    message: str | None = None
    """Human-readable message."""
    details: bytes | None = None
    """Opaque application detail."""

    def encode(self) -> bytes:
        """Serializes the table; an empty value encodes to no bytes at all."""
        if self.message is None and self.details is None:
            return b""
        root = fb.Table(
            [_str(self.message), None if self.details is None else fb.Bytes(bytes(self.details))]
        )
        return fb.Writer().finish(root)

    @classmethod
    def decode(cls, buf: bytes) -> ErrorInfo:
        """Verifies and reads the table; an empty payload is an empty value.

        Raises:
            gatewire.exceptions.ControlError: the payload fails verification.
        """
        if not buf:
            return cls()
        r = fb.Reader(bytes(buf))
        try:
            return r.root(
                lambda t: cls(message=r.string(t, _V(0)), details=r.byte_vector(t, _V(1)))
            )
        except fb.FlatbufferError as e:
            raise InvalidControl("ErrorInfo", str(e)) from None


@dataclass(frozen=True, slots=True)
class GoAwayInfo:
    """The optional detail of a GOAWAY frame."""

    message: str | None = None
    """Human-readable reason."""

    def encode(self) -> bytes:
        """Serializes the table; an empty value encodes to no bytes at all."""
        if self.message is None:
            return b""
        return fb.Writer().finish(fb.Table([fb.Str(self.message)]))

    @classmethod
    def decode(cls, buf: bytes) -> GoAwayInfo:
        """Verifies and reads the table; an empty payload is an empty value.

        Raises:
            gatewire.exceptions.ControlError: the payload fails verification.
        """
        if not buf:
            return cls()
        r = fb.Reader(bytes(buf))
        try:
            return r.root(lambda t: cls(message=r.string(t, _V(0))))
        except fb.FlatbufferError as e:
            raise InvalidControl("GoAway", str(e)) from None
