"""Services (``docs/PROTOCOL.md`` §10) in the sans-IO core: descriptors
round trip and are read back by the upstream FlatBuffers runtime, hostile
descriptors are rejected, the compatibility check's properties hold, and the
server runs it in the handshake before the application is asked."""

from __future__ import annotations

import re
import struct

import flatbuffers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewire import _flatbuffers as fb
from gatewire import exceptions as ex
from gatewire.code import ErrorCode
from gatewire.control import Hello, HelloAck, MethodDesc, MethodKind, Service, ServiceList, Shape
from gatewire.protocol import Closed, Config, Connected, HelloReceived, Role, Side
from gatewire.services import (
    LIST_SERVICES,
    RESERVED_METHODS,
    check,
    fnv1a32,
    fnv1a64,
    method_id,
    type_hash,
)

from .pair import Pair
from .services_support import changed_chart, chart

U64 = (1 << 64) - 1


# ----- hashes ------------------------------------------------------------------


def test_fnv_reference_values() -> None:
    assert fnv1a32(b"") == 0x811C_9DC5
    assert fnv1a32(b"a") == 0xE40C_292C
    assert fnv1a64(b"") == 0xCBF2_9CE4_8422_2325
    assert fnv1a64(b"a") == 0xAF63_DC4C_8601_EC8C
    assert method_id("chart.Chart", "SetTitle") == 0x3C55_3084
    assert LIST_SERVICES == RESERVED_METHODS == 0xFFFF_FF00


@given(st.text(), st.text())
def test_method_id_is_fnv1a32_of_the_path(service: str, method: str) -> None:
    # st.text() has no lone surrogates: every string has a UTF-8 form.
    assert method_id(service, method) == fnv1a32(f"{service}/{method}".encode())
    assert 0 <= method_id(service, method) <= 0xFFFF_FFFF


# ----- encoding ----------------------------------------------------------------

_u64 = st.integers(0, U64)
_name = st.text(max_size=12)
_method = st.builds(
    MethodDesc,
    name=_name,
    id=st.integers(0, 0xFFFF_FFFF),
    kind=st.integers(0, 255).map(MethodKind),
    request=_u64,
    response=_u64,
)
_shape = st.builds(
    Shape,
    name=_name,
    ty=_u64,
    fixed=st.booleans(),
    slots=st.lists(_u64, max_size=5).map(tuple),
)
_service = st.builds(
    Service,
    name=_name,
    fingerprint=_u64,
    methods=st.lists(_method, max_size=3).map(tuple),
    shapes=st.lists(_shape, max_size=3).map(tuple),
)
_services = st.lists(_service, max_size=3).map(tuple)
# Names that cannot spell "client" or "server", so that the party names in a
# message are the only ones.
_word = st.text("abxy._é", max_size=6)
_plain_services = st.lists(
    st.builds(
        Service,
        name=_word,
        fingerprint=st.integers(0, 3),
        methods=st.lists(
            st.builds(
                MethodDesc,
                name=_word,
                id=st.integers(0, 3),
                kind=st.integers(0, 5).map(MethodKind),
                request=st.integers(0, 2),
                response=st.integers(0, 2),
            ),
            max_size=3,
        ).map(tuple),
        shapes=st.lists(
            st.builds(
                Shape,
                name=_word,
                ty=st.integers(0, 3),
                fixed=st.booleans(),
                slots=st.lists(st.integers(0, 2), max_size=3).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    max_size=3,
).map(tuple)


@given(_services, _services)
def test_descriptors_round_trip(offers: tuple[Service, ...], uses: tuple[Service, ...]) -> None:
    listing = ServiceList(offers=offers, uses=uses)
    assert ServiceList.decode(listing.encode()) == listing
    hello = Hello(min_version=1, max_version=1, services=offers, uses=uses)
    assert Hello.decode(hello.encode()) == hello
    ack = HelloAck(version=1, services=uses, uses=offers)
    assert HelloAck.decode(ack.encode()) == ack


def test_upstream_flatbuffers_reads_our_service_list() -> None:
    listing = ServiceList(offers=(chart(),), uses=(Service("ui.Page", 7),))
    buf = listing.encode()
    n = flatbuffers.number_types

    def table(t: flatbuffers.table.Table, vt: int) -> flatbuffers.table.Table:
        return flatbuffers.table.Table(t.Bytes, t.Indirect(t.Offset(vt) + t.Pos))

    def item(t: flatbuffers.table.Table, vt: int, i: int) -> flatbuffers.table.Table:
        return flatbuffers.table.Table(t.Bytes, t.Indirect(t.Vector(t.Offset(vt)) + 4 * i))

    def scalar(t: flatbuffers.table.Table, vt: int, flags: object) -> int:
        o = t.Offset(vt)
        return 0 if o == 0 else int(t.Get(flags, o + t.Pos))

    root = flatbuffers.table.Table(
        bytearray(buf), flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)
    )
    svc = item(root, 4, 0)
    assert svc.String(svc.Offset(4) + svc.Pos) == b"chart.Chart"
    m = item(svc, 8, 1)
    assert m.String(m.Offset(4) + m.Pos) == b"Points"
    assert scalar(m, 6, n.Uint32Flags) == method_id("chart.Chart", "Points")
    assert scalar(m, 8, n.Uint8Flags) == MethodKind.SERVER_STREAMING
    assert scalar(m, 12, n.Uint64Flags) == type_hash("chart.Point")
    sh = item(svc, 10, 1)
    assert scalar(sh, 6, n.Uint64Flags) == type_hash("chart.Point")
    o = sh.Offset(10)
    start = sh.Vector(o)
    assert start % 8 == 0, "u64 vector elements are 8-aligned"
    assert [
        flatbuffers.encode.Get(flatbuffers.packer.uint64, sh.Bytes, start + 8 * i)
        for i in range(sh.VectorLen(o))
    ] == [fnv1a64(b"float64")] * 2
    used = item(root, 6, 0)
    assert scalar(used, 6, n.Uint64Flags) == 7
    assert used.Offset(8) == 0 and used.Offset(10) == 0
    # A struct shape carries fixed = true.
    fixed = ServiceList(offers=(Service("s", shapes=(Shape("t", 1, True, (2,)),)),))
    assert ServiceList.decode(fixed.encode()).offers[0].shapes[0].fixed


def test_service_list_must_not_be_empty() -> None:
    with pytest.raises(ex.MissingControl):
        ServiceList.decode(b"")
    assert ServiceList.decode(ServiceList().encode()) == ServiceList()


def test_encode_checks_descriptor_ranges() -> None:
    for bad in (
        Service("s", methods=(MethodDesc(id=1 << 32),)),
        Service("s", methods=(MethodDesc(request=1 << 64),)),
        Service("s", shapes=(Shape(slots=(1 << 64,)),)),
        Service("s", shapes=(Shape(ty=-1),)),
    ):
        with pytest.raises(ValueError, match="outside"):
            ServiceList(offers=(bad,)).encode()
    with pytest.raises(ValueError, match="method kind"):
        MethodKind(256)


def test_misaligned_slots_are_rejected() -> None:
    # [uint64] elements must be 8-aligned (Rust: Verifier::is_aligned::<u64>):
    # moving the vector by 4 bytes keeps it in bounds but misaligns it.
    buf = bytearray(
        ServiceList(offers=(Service("s", shapes=(Shape("t", 1, False, (5,)),)),)).encode()
    )
    at = buf.index(struct.pack("<IQ", 1, 5))
    shape_slot = next(
        p
        for p in range(0, len(buf) - 3, 4)
        if p + struct.unpack_from("<I", buf, p)[0] == at and p != at
    )
    buf += bytes(4)
    buf[at + 4 : at + 16] = buf[at : at + 12]
    struct.pack_into("<I", buf, shape_slot, at + 4 - shape_slot)
    with pytest.raises(ex.InvalidControl, match="unaligned"):
        ServiceList.decode(bytes(buf))


def test_a_service_without_name_is_rejected() -> None:
    # Service.name is required, as in the Rust verifier; Method and Shape
    # names are optional and read as "".
    nameless = fb.Table([fb.Tables([fb.Table([None, fb.U64(3)])])])
    with pytest.raises(ex.InvalidControl, match="name"):
        ServiceList.decode(fb.Writer().finish(nameless))
    bare = fb.Table([fb.Tables([fb.Table([fb.Str("s"), None, fb.Tables([fb.Table([])])])])])
    assert ServiceList.decode(fb.Writer().finish(bare)).offers[0].methods == (MethodDesc(),)


def test_a_bool_is_any_nonzero_byte() -> None:
    # As Rust reads a bool: 0 is false, anything else true.
    shape = fb.Table([fb.Str("t"), None, fb.U8(2)])
    buf = fb.Writer().finish(
        fb.Table([fb.Tables([fb.Table([fb.Str("s"), None, None, fb.Tables([shape])])])])
    )
    assert ServiceList.decode(buf).offers[0].shapes[0] == Shape(name="t", fixed=True)


# ----- the check's properties --------------------------------------------------


@given(_plain_services)
def test_a_side_is_compatible_with_itself(services: tuple[Service, ...]) -> None:
    # Unique names: the check looks offers up by name.
    unique = tuple({s.name: s for s in services}.values())
    for s in unique:
        if len({m.id for m in s.methods}) != len(s.methods):
            return
        if len({sh.ty for sh in s.shapes}) != len(s.shapes):
            return
    check(unique, (), (), unique)
    check((), unique, unique, ())


@given(_plain_services, _plain_services)
def test_roles_swap_symmetrically(offers: tuple[Service, ...], uses: tuple[Service, ...]) -> None:
    # The server offering what the client uses gives the same verdict as the
    # client offering what the server uses, with the party names swapped.
    def outcome(f: object) -> str | None:
        try:
            f()  # type: ignore[operator]
        except ex.Incompatible as e:
            return e.message
        return None

    a = outcome(lambda: check(offers, (), (), uses))
    b = outcome(lambda: check((), uses, offers, ()))
    if a is None or b is None:
        assert a == b
    elif "not offered" in a or "calls it as" in a:
        # The party names swap; the kind names ("client streaming") do not.
        swapped = re.sub(
            r"\b(client|server)\b(?! streaming)",
            lambda m: "server" if m.group(1) == "client" else "client",
            a,
        )
        assert b == swapped
    else:
        assert a == b


def test_added_methods_and_fields_are_compatible_both_ways() -> None:
    old, new = chart(), chart((("Clear", MethodKind.EVENT),), ("string",))
    check((old,), (), (), (new,))
    check((new,), (), (), (old,))


def test_bare_fingerprints() -> None:
    used = (Service("a.A", 7),)
    check((Service("a.A", 7),), (), (), used)
    check((Service("a.A", 0),), (), (), used)
    with pytest.raises(ex.Incompatible) as e:
        check((Service("a.A", 8),), (), (), used)
    assert e.value.message == (
        "a.A: fingerprints differ (0000000000000007, 0000000000000008) and a descriptor is missing"
    )
    assert e.value.code == ErrorCode.INCOMPATIBLE


def test_unknown_kinds_are_named() -> None:
    a = Service("x.X", 1, methods=(MethodDesc("M", 5, MethodKind(9)),))
    b = Service("x.X", 2, methods=(MethodDesc("M", 5, MethodKind.EVENT),))
    with pytest.raises(ex.Incompatible) as e:
        check((b,), (), (), (a,))
    assert e.value.message == (
        "x.X.M (method 00000005): the client calls it as unknown kind, "
        "the server serves it as event"
    )


# ----- the handshake -------------------------------------------------------------


def test_server_refuses_incompatible_client_before_the_application() -> None:
    changed = changed_chart()
    p = Pair(Config(Role.CLIENT, uses=(changed,)), Config(Role.SERVER, services=(chart(),)))
    p.drive(
        lambda side, e: pytest.fail(f"{side} asked: {e}") if isinstance(e, HelloReceived) else None
    )
    want = (
        "chart.Chart.SetTitle (method 3c553084): the client calls it as client streaming, "
        "the server serves it as unary"
    )
    for side, where in (("server", Side.LOCAL), ("client", Side.REMOTE)):
        closed = [e for e in p.events[side] if isinstance(e, Closed)]
        assert len(closed) == 1
        err = closed[0].error
        assert isinstance(err, ex.Refused)
        assert (err.code, err.side, err.message) == (ErrorCode.INCOMPATIBLE, where, want)


def test_evolved_client_connects_and_peers_learn_each_others_uses() -> None:
    ui = Service("ui.Page", 3)
    client = Config(
        Role.CLIENT, services=(ui,), uses=(chart((("Clear", MethodKind.EVENT),), ("string",)),)
    )
    p = Pair(client, Config(Role.SERVER, services=(chart(),), uses=(ui,)))
    p.connect()
    connected = next(e for e in p.events["client"] if isinstance(e, Connected))
    assert connected.peer.services == (chart(),)
    assert connected.peer.uses == (ui,)
    server_peer = p.server.peer()
    assert server_peer is not None
    assert server_peer.uses == client.uses
    assert server_peer.services == (ui,)
