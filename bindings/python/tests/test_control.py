"""Control tables: round trips, read-back by the upstream FlatBuffers runtime,
and hostile inputs (each with why it must fail)."""

from __future__ import annotations

import contextlib
import struct

import flatbuffers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewire import exceptions as ex
from gatewire._flatbuffers import MAX_DEPTH, MAX_TABLES, Reader, TableRef
from gatewire.code import ErrorCode
from gatewire.control import AdvertisedLimits, ErrorInfo, GoAwayInfo, Hello, HelloAck, Service

from .vectorjson import load


def full_hello() -> Hello:
    return Hello(
        min_version=1,
        max_version=1,
        limits=AdvertisedLimits(
            max_frame=1 << 20,
            max_message=1 << 20,
            max_in_flight=100,
            initial_stream_credit=256 * 1024,
            connection_credit=4 << 20,
        ),
        compression=b"\x01",
        codecs=bytes([0, 1, 2, 3]),
        auth=b"token",
        services=(Service(name="chart.Chart", fingerprint=(1 << 64) - 2),),
        agent="gatewire-python/0.1",
    )


def test_hello_round_trip() -> None:
    h = full_hello()
    assert Hello.decode(h.encode()) == h


def test_hello_ack_round_trip() -> None:
    a = HelloAck(
        version=1,
        error_code=ErrorCode(0x8123),
        message="nope",
        limits=AdvertisedLimits(max_frame=64),
        codecs=b"\x00",
        services=(Service("a"), Service("b", 7)),
        agent="x",
    )
    assert HelloAck.decode(a.encode()) == a


def test_optional_tables() -> None:
    assert ErrorInfo.decode(b"") == ErrorInfo()
    assert ErrorInfo().encode() == b""
    e = ErrorInfo(message="boom", details=b"\x01\x02")
    assert ErrorInfo.decode(e.encode()) == e
    assert ErrorInfo.decode(ErrorInfo(details=b"").encode()) == ErrorInfo(details=b"")
    g = GoAwayInfo(message="bye")
    assert GoAwayInfo.decode(g.encode()) == g
    assert GoAwayInfo().encode() == b""
    assert GoAwayInfo.decode(b"") == GoAwayInfo()


def test_empty_and_garbage_are_rejected() -> None:
    with pytest.raises(ex.MissingControl):
        Hello.decode(b"")
    with pytest.raises(ex.MissingControl):
        HelloAck.decode(b"")
    with pytest.raises(ex.InvalidControl):
        Hello.decode(b"\xff" * 12)
    with pytest.raises(ex.InvalidControl):
        HelloAck.decode(b"\x01\x00\x00")


def test_version_range_must_not_be_empty() -> None:
    with pytest.raises(ex.EmptyVersionRange) as e:
        Hello.decode(Hello(min_version=3, max_version=2).encode())
    assert (e.value.min, e.value.max) == (3, 2)
    assert e.value.code == ErrorCode.PROTOCOL_VIOLATION


def test_encode_checks_ranges() -> None:
    with pytest.raises(ValueError, match="min_version"):
        Hello(min_version=0x1_0000).encode()
    with pytest.raises(ValueError, match="fingerprint"):
        Hello(services=(Service("s", 1 << 64),)).encode()


def test_rust_bytes_decode_to_the_vector_values() -> None:
    # The Rust-encoded buffers of control.json decode here (test_vectors
    # compares every field); the Python encoding of the same value decodes
    # to the same value.
    cases = {c["name"]: c for c in load("control.json")["cases"]}
    rust = Hello.decode(bytes.fromhex(cases["hello_full"]["hex"]))
    assert Hello.decode(rust.encode()) == rust


# ----- read-back by the upstream runtime ---------------------------------------


def test_upstream_flatbuffers_reads_our_hello() -> None:
    buf = full_hello().encode()
    root = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)
    t = flatbuffers.table.Table(bytearray(buf), root)
    n = flatbuffers.number_types

    def scalar(table: flatbuffers.table.Table, vt: int, flags: object) -> int:
        o = table.Offset(vt)
        return 0 if o == 0 else int(table.Get(flags, o + table.Pos))

    assert scalar(t, 4, n.Uint16Flags) == 1
    assert scalar(t, 6, n.Uint16Flags) == 1
    lim = flatbuffers.table.Table(t.Bytes, t.Indirect(t.Offset(8) + t.Pos))
    assert scalar(lim, 4, n.Uint32Flags) == 1 << 20
    assert scalar(lim, 12, n.Uint32Flags) == 4 << 20
    o = t.Offset(12)
    start = t.Vector(o)
    assert bytes(t.Bytes[start : start + t.VectorLen(o)]) == bytes([0, 1, 2, 3])
    o = t.Offset(16)
    assert t.VectorLen(o) == 1
    svc = flatbuffers.table.Table(t.Bytes, t.Indirect(t.Vector(o)))
    assert svc.String(svc.Offset(4) + svc.Pos) == b"chart.Chart"
    assert scalar(svc, 6, n.Uint64Flags) == (1 << 64) - 2
    assert t.String(t.Offset(18) + t.Pos) == b"gatewire-python/0.1"


# ----- malformed inputs ------------------------------------------------------------
# Hand-built buffers: each must be rejected, for the reason in its comment.


def test_string_without_nul_terminator() -> None:
    # Strings must be NUL-terminated (Rust verifier option
    # ignore_missing_null_terminator = false).
    buf = bytearray(GoAwayInfo(message="restart").encode())
    at = buf.index(b"restart") + len("restart")
    assert buf[at] == 0
    buf[at] = ord("!")
    with pytest.raises(ex.InvalidControl, match="null terminator"):
        GoAwayInfo.decode(bytes(buf))


def test_string_at_end_of_buffer() -> None:
    # The terminator would lie past the end of the buffer.
    buf = bytearray(GoAwayInfo(message="restart").encode())
    at = buf.index(b"restart") + len("restart")
    with pytest.raises(ex.InvalidControl):
        GoAwayInfo.decode(bytes(buf[:at]))


def test_overlong_and_surrogate_utf8() -> None:
    # Strict UTF-8: an overlong encoding and an encoded surrogate.
    for bad in (b"\xc0\xaf", b"\xed\xa0\x80"):
        buf = bytearray(GoAwayInfo(message="ab").encode())
        at = buf.index(b"ab")
        buf[at - 4 : at + 3] = struct.pack("<I", len(bad)) + bad + b"\x00"
        with pytest.raises(ex.InvalidControl, match="utf-8"):
            GoAwayInfo.decode(bytes(buf))


def test_unaligned_root_offset() -> None:
    # The root table's soffset must be 4-byte aligned.
    buf = bytearray(GoAwayInfo(message="restart").encode())
    root = struct.unpack_from("<I", buf)[0]
    struct.pack_into("<I", buf, 0, root + 1)
    with pytest.raises(ex.InvalidControl, match="unaligned"):
        GoAwayInfo.decode(bytes(buf))


def test_vtable_out_of_bounds() -> None:
    # The table's signed offset points before the buffer.
    buf = bytearray(GoAwayInfo(message="restart").encode())
    root = struct.unpack_from("<I", buf)[0]
    struct.pack_into("<i", buf, root, root + 2)
    with pytest.raises(ex.InvalidControl, match="out of bounds"):
        GoAwayInfo.decode(bytes(buf))


def test_odd_vtable_length() -> None:
    # A vtable length must be even.
    buf = bytearray(GoAwayInfo(message="restart").encode())
    root = struct.unpack_from("<I", buf)[0]
    vtable = root - struct.unpack_from("<i", buf, root)[0]
    struct.pack_into("<H", buf, vtable, 5)
    with pytest.raises(ex.InvalidControl, match="unaligned"):
        GoAwayInfo.decode(bytes(buf))


def test_vector_length_past_the_end() -> None:
    # A byte vector claiming more bytes than the buffer holds.
    buf = bytearray(ErrorInfo(details=b"\x01\x02\x03").encode())
    at = buf.index(b"\x03\x00\x00\x00\x01\x02\x03")
    struct.pack_into("<I", buf, at, 0xFFFF_FFF0)
    with pytest.raises(ex.InvalidControl, match="out of bounds"):
        ErrorInfo.decode(bytes(buf))


def test_missing_required_service_name() -> None:
    # Service.name is required: clear the name slot of the Service's vtable.
    h = Hello(min_version=1, max_version=1, services=(Service("svc", 1),)).encode()
    vtables: list[int] = []
    r = Reader(h)

    def read_hello(t: TableRef) -> None:
        r.tables(t, 16, lambda s: vtables.append(s.vtable))

    r.root(read_hello)
    buf = bytearray(h)
    struct.pack_into("<H", buf, vtables[0] + 4, 0)
    with pytest.raises(ex.InvalidControl, match="required"):
        Hello.decode(bytes(buf))


def many_services(n: int, pad: int) -> bytes:
    """A Hello whose services vector names one Service table ``n`` times (a
    DAG: few bytes, many table visits), followed by ``pad`` unused bytes
    (which raise the apparent-size bound, four times the payload)."""
    buf = bytearray()
    buf += struct.pack("<I", 24)  # root -> Hello table at 24
    buf += struct.pack("<9H", 18, 8, 0, 0, 0, 0, 0, 0, 4)  # Hello vtable at 4: services only
    buf += bytes(2)  # align to 24
    buf += struct.pack("<iI", 20, 4)  # Hello at 24: vtable at 4; services vector at 32
    buf += struct.pack("<I", n)  # vector at 32
    elems = len(buf)
    buf += bytes(4 * n)
    vtable = len(buf)
    buf += struct.pack("<3H", 6, 8, 4)  # Service vtable: name only
    buf += bytes(-len(buf) % 4)
    table = len(buf)
    buf += struct.pack("<iI", table - vtable, 4)  # Service: name string just after
    buf += struct.pack("<I", 1) + b"s\x00"
    for i in range(n):
        at = elems + 4 * i
        struct.pack_into("<I", buf, at, table - at)
    return bytes(buf) + bytes(pad)


def test_table_count_bound() -> None:
    # 10,000 tables (the Hello and 9,999 services) are allowed; one more is
    # not, even with ample apparent-size budget.
    decoded = Hello.decode(many_services(MAX_TABLES - 1, 200_000))
    assert len(decoded.services) == MAX_TABLES - 1
    with pytest.raises(ex.InvalidControl, match="too many tables"):
        Hello.decode(many_services(MAX_TABLES, 200_000))


def test_apparent_size_bound() -> None:
    # A small buffer that expands into far more than four times its size.
    with pytest.raises(ex.InvalidControl, match="apparent size"):
        Hello.decode(many_services(1000, 0))


def test_bounds_are_the_rust_ones() -> None:
    assert (MAX_DEPTH, MAX_TABLES) == (32, 10_000)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_accepted_or_rejected(data: bytes) -> None:
    for cls in (Hello, HelloAck, ErrorInfo, GoAwayInfo):
        with contextlib.suppress(ex.ControlError):
            cls.decode(data)


@given(st.data())
def test_mutated_valid_buffers_are_accepted_or_rejected(data: st.DataObject) -> None:
    buf = bytearray(full_hello().encode())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ex.ControlError):
        Hello.decode(bytes(buf))


services = st.builds(Service, st.text(max_size=20), st.integers(0, (1 << 64) - 1))


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.builds(
        AdvertisedLimits,
        *[st.integers(0, 0xFFFF_FFFF) for _ in range(5)],
    ),
    st.binary(max_size=8),
    st.binary(max_size=8),
    st.none() | st.binary(max_size=40),
    st.lists(services, max_size=4).map(tuple),
    st.none() | st.text(max_size=30),
)
def test_hello_round_trips(
    lo: int,
    hi: int,
    limits: AdvertisedLimits,
    compression: bytes,
    codecs: bytes,
    auth: bytes | None,
    svcs: tuple[Service, ...],
    agent: str | None,
) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    h = Hello(lo, hi, limits, compression, codecs, auth, svcs, agent)
    assert Hello.decode(h.encode()) == h


@given(st.none() | st.text(max_size=300), st.none() | st.binary(max_size=50))
def test_error_info_round_trips(message: str | None, details: bytes | None) -> None:
    e = ErrorInfo(message, details)
    assert ErrorInfo.decode(e.encode()) == e
