"""A small, bounds-checked FlatBuffers reader and writer for the control
tables of ``schema/gatewire.fbs``.

Python's ``flatbuffers`` package has no verifier, so the reader here *is* a
verifier: every read goes through the same checks, in the same order and
with the same accounting, as the Rust ``flatbuffers`` crate's ``Verifier``
(25.12.19) with the core's options -- depth 32, 10,000 tables, an apparent
size of at most four times the payload (at least 64 bytes), strict UTF-8 and
NUL-terminated strings, aligned scalars and offsets, required fields present.
Fields are verified and read in one pass, so nothing is read from an
unverified location. A buffer is accepted here exactly when the Rust core
accepts it.

The writer lays a buffer out front to back (vtable, table, then the objects
the table points to), which is a valid FlatBuffer though not byte-identical
to the Rust builder's back-to-front layout; both decode to the same values.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

__all__ = [
    "MAX_DEPTH",
    "MAX_TABLES",
    "FlatbufferError",
    "Reader",
    "TableRef",
    "Writer",
    "field_voffset",
]

MAX_DEPTH = 32
"""Nesting depth a control table may reach."""
MAX_TABLES = 10_000
"""Tables a control payload may contain."""

T = TypeVar("T")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


class FlatbufferError(Exception):
    """The verifier's finding (internal; surfaced as ``InvalidControl``)."""


def field_voffset(index: int) -> int:
    """The vtable offset of the field with schema index ``index``."""
    return 4 + 2 * index


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table whose vtable has been verified."""

    pos: int
    vtable: int
    vtable_len: int


class Reader:
    """Verifies while it reads. One instance per buffer, not reused."""

    __slots__ = ("_apparent", "_buf", "_depth", "_max_apparent", "_tables")

    def __init__(self, buf: bytes) -> None:
        self._buf = buf
        self._max_apparent = max(len(buf) * 4, 64)
        self._apparent = 0
        self._depth = 0
        self._tables = 0

    # ----- primitive checks (Verifier::is_aligned / range_in_buffer) -------

    @staticmethod
    def _aligned(pos: int, align: int, what: str) -> None:
        if pos % align != 0:
            raise FlatbufferError(f"type {what} at position {pos} is unaligned")

    def _range(self, pos: int, size: int) -> None:
        end = pos + size
        if end > len(self._buf):
            raise FlatbufferError(f"range [{pos}, {end}) is out of bounds")
        self._apparent += size
        if self._apparent > self._max_apparent:
            raise FlatbufferError("apparent size too large")

    def _in_buffer(self, pos: int, size: int, what: str) -> None:
        self._aligned(pos, size, what)
        self._range(pos, size)

    def _u16(self, pos: int) -> int:
        self._in_buffer(pos, 2, "u16")
        value: int = _U16.unpack_from(self._buf, pos)[0]
        return value

    def _u32(self, pos: int) -> int:
        self._in_buffer(pos, 4, "u32")
        value: int = _U32.unpack_from(self._buf, pos)[0]
        return value

    def _u64(self, pos: int) -> int:
        self._in_buffer(pos, 8, "u64")
        value: int = _U64.unpack_from(self._buf, pos)[0]
        return value

    def _deref_soffset(self, pos: int) -> int:
        self._in_buffer(pos, 4, "i32")
        offset: int = _I32.unpack_from(self._buf, pos)[0]
        # Signed offsets are subtracted.
        target = pos - offset
        if 0 <= target < len(self._buf):
            return target
        raise FlatbufferError(f"signed offset at position {pos} has value {offset} out of bounds")

    # ----- tables ------------------------------------------------------------

    def root(self, read: Callable[[TableRef], T]) -> T:
        """Reads the root table (``ForwardsUOffset<T>`` at position 0)."""
        return self._follow_table(0, read)

    def _follow_table(self, pos: int, read: Callable[[TableRef], T]) -> T:
        target = pos + self._u32(pos)
        table = self._visit_table(target)
        value = read(table)
        self._depth -= 1
        return value

    def _visit_table(self, pos: int) -> TableRef:
        vtable = self._deref_soffset(pos)
        vtable_len = self._u16(vtable)
        # vtable_len must be even.
        self._aligned(vtable + vtable_len, 2, "u16")
        self._range(vtable, vtable_len)
        self._tables += 1
        if self._tables > MAX_TABLES:
            raise FlatbufferError("too many tables")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise FlatbufferError("nested table depth limit reached")
        return TableRef(pos, vtable, vtable_len)

    def _field(self, table: TableRef, voffset: int) -> int | None:
        if voffset < table.vtable_len:
            field_offset = self._u16(table.vtable + voffset)
            if field_offset > 0:
                return table.pos + field_offset
        return None

    # ----- typed fields ------------------------------------------------------

    def u8(self, table: TableRef, voffset: int) -> int:
        """A ``ubyte`` field (default 0)."""
        pos = self._field(table, voffset)
        if pos is None:
            return 0
        self._in_buffer(pos, 1, "u8")
        return self._buf[pos]

    def bool(self, table: TableRef, voffset: int) -> bool:
        """A ``bool`` field (default false): any non-zero byte is true, as in
        Rust."""
        return self.u8(table, voffset) != 0

    def u16(self, table: TableRef, voffset: int) -> int:
        """A ``uint16`` field (default 0)."""
        pos = self._field(table, voffset)
        return 0 if pos is None else self._u16(pos)

    def u32(self, table: TableRef, voffset: int) -> int:
        """A ``uint32`` field (default 0)."""
        pos = self._field(table, voffset)
        return 0 if pos is None else self._u32(pos)

    def u64(self, table: TableRef, voffset: int) -> int:
        """A ``uint64`` field (default 0)."""
        pos = self._field(table, voffset)
        return 0 if pos is None else self._u64(pos)

    def table(self, table: TableRef, voffset: int, read: Callable[[TableRef], T]) -> T | None:
        """A sub-table field, read by ``read``."""
        pos = self._field(table, voffset)
        return None if pos is None else self._follow_table(pos, read)

    def _vector(self, pos: int, elem_size: int) -> tuple[int, int]:
        """``verify_vector_range``: (start, element count)."""
        count = self._u32(pos)
        start = pos + 4
        self._aligned(start, elem_size, "vector element")
        self._range(start, count * elem_size)
        return start, count

    def byte_vector(self, table: TableRef, voffset: int) -> bytes | None:
        """A ``[ubyte]`` field."""
        pos = self._field(table, voffset)
        if pos is None:
            return None
        start, count = self._vector(pos + self._u32(pos), 1)
        return self._buf[start : start + count]

    def u64_vector(self, table: TableRef, voffset: int) -> list[int] | None:
        """A ``[uint64]`` field."""
        pos = self._field(table, voffset)
        if pos is None:
            return None
        start, count = self._vector(pos + self._u32(pos), 8)
        return [_U64.unpack_from(self._buf, start + 8 * i)[0] for i in range(count)]

    def string(self, table: TableRef, voffset: int) -> str | None:
        """An optional ``string`` field: strict UTF-8, NUL-terminated."""
        pos = self._field(table, voffset)
        return None if pos is None else self._string(pos)

    def required_string(self, table: TableRef, voffset: int, name: str) -> str:
        """A ``string (required)`` field."""
        pos = self._field(table, voffset)
        if pos is None:
            raise FlatbufferError(f"missing required field `{name}`")
        return self._string(pos)

    def _string(self, pos: int) -> str:
        start, count = self._vector(pos + self._u32(pos), 1)
        end = start + count
        try:
            value = self._buf[start:end].decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            raise FlatbufferError(f"utf-8 error for string in [{start}, {end}): {e}") from None
        if end >= len(self._buf) or self._buf[end] != 0:
            raise FlatbufferError(f"string in [{start}, {end}) is missing its null terminator")
        return value

    def tables(
        self, table: TableRef, voffset: int, read: Callable[[TableRef], T]
    ) -> list[T] | None:
        """A vector-of-tables field."""
        pos = self._field(table, voffset)
        if pos is None:
            return None
        start, count = self._vector(pos + self._u32(pos), 4)
        return [self._follow_table(start + 4 * i, read) for i in range(count)]


# ----- writer -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class U8:
    """A ``ubyte`` or ``bool`` field value."""

    value: int


@dataclass(frozen=True, slots=True)
class U16:
    """A ``uint16`` field value."""

    value: int


@dataclass(frozen=True, slots=True)
class U32:
    """A ``uint32`` field value."""

    value: int


@dataclass(frozen=True, slots=True)
class U64:
    """A ``uint64`` field value."""

    value: int


@dataclass(frozen=True, slots=True)
class Str:
    """A ``string`` field value."""

    value: str


@dataclass(frozen=True, slots=True)
class Bytes:
    """A ``[ubyte]`` field value."""

    value: bytes


@dataclass(frozen=True, slots=True)
class U64s:
    """A ``[uint64]`` field value."""

    value: Sequence[int]


@dataclass(frozen=True, slots=True)
class Table:
    """A table: fields by schema index; ``None`` entries are absent."""

    fields: Sequence[Value | None]


@dataclass(frozen=True, slots=True)
class Tables:
    """A vector-of-tables field value."""

    value: Sequence[Table]


Value: TypeAlias = "U8 | U16 | U32 | U64 | Str | Bytes | U64s | Table | Tables"


def _inline_size(value: Value) -> int:
    if isinstance(value, U8):
        return 1
    if isinstance(value, U16):
        return 2
    if isinstance(value, U64):
        return 8
    return 4  # u32 and uoffsets


class Writer:
    """Serializes a :class:`Table` tree into one FlatBuffer."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def finish(self, root: Table) -> bytes:
        """The buffer whose root is ``root``."""
        self._buf = bytearray(4)
        pos = self._table(root)
        _U32.pack_into(self._buf, 0, pos)
        return bytes(self._buf)

    def _align(self, n: int) -> None:
        self._buf += bytes(-len(self._buf) % n)

    def _table(self, table: Table) -> int:
        present = [(i, v) for i, v in enumerate(table.fields) if v is not None]
        # Inline layout relative to the table start: soffset, then fields.
        layout: list[tuple[int, Value, int, int]] = []  # (index, value, offset, size)
        offset = 4
        table_align = 4
        for index, value in present:
            size = _inline_size(value)
            offset += -offset % size
            layout.append((index, value, offset, size))
            offset += size
            table_align = max(table_align, size)
        object_size = offset
        slots = max((i for i, _ in present), default=-1) + 1
        vtable_entries = [0] * slots
        for index, _, field_offset, _ in layout:
            vtable_entries[index] = field_offset
        # The vtable, before the table (positive soffset).
        self._align(2)
        vtable_pos = len(self._buf)
        self._buf += struct.pack(f"<{2 + slots}H", 4 + 2 * slots, object_size, *vtable_entries)
        self._align(table_align)
        table_pos = len(self._buf)
        self._buf += bytes(object_size)
        _I32.pack_into(self._buf, table_pos, table_pos - vtable_pos)
        children: list[tuple[int, Value]] = []
        for _, value, field_offset, _ in layout:
            at = table_pos + field_offset
            if isinstance(value, U8):
                self._buf[at] = value.value
            elif isinstance(value, U16):
                _U16.pack_into(self._buf, at, value.value)
            elif isinstance(value, U32):
                _U32.pack_into(self._buf, at, value.value)
            elif isinstance(value, U64):
                _U64.pack_into(self._buf, at, value.value)
            else:
                children.append((at, value))
        for at, value in children:
            _U32.pack_into(self._buf, at, self._object(value) - at)
        return table_pos

    def _object(self, value: Value) -> int:
        if isinstance(value, Table):
            return self._table(value)
        self._align(4)
        pos = len(self._buf)
        if isinstance(value, Str):
            data = value.value.encode("utf-8")
            self._buf += _U32.pack(len(data)) + data + b"\x00"
        elif isinstance(value, Bytes):
            self._buf += _U32.pack(len(value.value)) + value.value
        elif isinstance(value, U64s):
            # The elements (after the u32 length) are 8-aligned.
            self._buf += bytes(-(len(self._buf) + 4) % 8)
            pos = len(self._buf)
            self._buf += _U32.pack(len(value.value))
            self._buf += b"".join(_U64.pack(x) for x in value.value)
        elif isinstance(value, Tables):
            self._buf += _U32.pack(len(value.value)) + bytes(4 * len(value.value))
            for i, item in enumerate(value.value):
                at = pos + 4 + 4 * i
                _U32.pack_into(self._buf, at, self._table(item) - at)
        else:  # pragma: no cover - scalars are written inline
            raise TypeError(f"not an object: {value!r}")
        return pos
