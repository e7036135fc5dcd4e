"""Method ids, type hashes and the schema compatibility check of
``docs/PROTOCOL.md`` §10. Mirrors ``gatewire_proto::services``.

A method id is the 32-bit FNV-1a hash of ``service/method``. Type hashes,
slot hashes and fingerprints are 64-bit FNV-1a hashes of the canonical
strings of ``docs/SCHEMA.md`` §4. The acceptor of a connection compares the
services each side uses with the services the other side offers and refuses
the handshake with ``INCOMPATIBLE`` when they cannot work together
(:func:`check`; the core runs it on every HELLO).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .control import MethodDesc, MethodKind, Service, Shape
from .exceptions import Incompatible

__all__ = [
    "LIST_SERVICES",
    "REAUTHENTICATE",
    "RESERVED_METHODS",
    "Incompatible",
    "check",
    "fnv1a32",
    "fnv1a64",
    "method_id",
    "type_hash",
]

RESERVED_METHODS = 0xFFFF_FF00
"""Method ids from ``0xFFFF_FF00`` up are reserved for built-in methods."""

LIST_SERVICES = 0xFFFF_FF00
"""The built-in method answering with a
:class:`~gatewire.control.ServiceList` of what an endpoint offers and uses
(codec FLATBUFFERS). Its request is empty."""

REAUTHENTICATE = 0xFFFF_FF01
"""The built-in method that re-authenticates a live connection: its request
is a new authentication payload, as in HELLO's ``auth``; an empty response
means the server accepted it (``docs/PROTOCOL.md`` §10.4)."""

_FNV32_OFFSET = 0x811C_9DC5
_FNV32_PRIME = 0x0100_0193
_FNV64_OFFSET = 0xCBF2_9CE4_8422_2325
_FNV64_PRIME = 0x0000_0100_0000_01B3
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


def fnv1a32(data: bytes) -> int:
    """32-bit FNV-1a of ``data``."""
    h = _FNV32_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV32_PRIME) & _U32
    return h


def fnv1a64(data: bytes) -> int:
    """64-bit FNV-1a of ``data``."""
    h = _FNV64_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV64_PRIME) & _U64
    return h


def method_id(service: str, method: str) -> int:
    """The derived id of ``method`` in the fully qualified ``service``:
    FNV-1a 32 of the UTF-8 bytes of ``service/method``. An id at or above
    :data:`RESERVED_METHODS` cannot be used; the schema must give the method
    an explicit id."""
    return fnv1a32(f"{service}/{method}".encode())


def type_hash(name: str) -> int:
    """The type hash of a fully qualified table or struct name: FNV-1a 64
    of its UTF-8 bytes."""
    return fnv1a64(name.encode())


_Party = Literal["client", "server"]


def check(
    server_offers: Sequence[Service],
    server_uses: Sequence[Service],
    client_offers: Sequence[Service],
    client_uses: Sequence[Service],
) -> None:
    """The acceptor's check (``docs/PROTOCOL.md`` §10.3): every service one
    side uses must be offered by the other and compatible with the offer.

    Raises:
        Incompatible: the first difference found; its ``message`` is the
            refusal message, identical in every implementation.
    """
    _check_direction(client_uses, "client", server_offers)
    _check_direction(server_uses, "server", client_offers)


def _check_direction(uses: Sequence[Service], user: _Party, offers: Sequence[Service]) -> None:
    offerer: _Party = "server" if user == "client" else "client"
    # The last offer of a name wins, as in the Rust map.
    offered = {s.name: s for s in offers}
    for used in uses:
        offer = offered.get(used.name)
        if offer is None:
            raise Incompatible(f"{used.name}: used by the {user} but not offered by the {offerer}")
        _check_service(used, user, offer, offerer)


_KIND_NAMES = {
    MethodKind.UNARY: "unary",
    MethodKind.SERVER_STREAMING: "server streaming",
    MethodKind.CLIENT_STREAMING: "client streaming",
    MethodKind.BIDI_STREAMING: "bidirectional streaming",
    MethodKind.EVENT: "event",
}


def _kind_name(kind: int) -> str:
    return _KIND_NAMES.get(MethodKind(kind), "unknown kind")


def _described(s: Service) -> bool:
    return bool(s.methods) or bool(s.shapes)


def _check_service(a: Service, user: _Party, b: Service, offerer: _Party) -> None:
    if a.fingerprint != 0 and a.fingerprint == b.fingerprint:
        return
    if not _described(a) or not _described(b):
        if a.fingerprint != 0 and b.fingerprint != 0:
            raise Incompatible(
                f"{a.name}: fingerprints differ ({a.fingerprint:016x}, {b.fingerprint:016x}) "
                "and a descriptor is missing"
            )
        return
    methods: dict[int, MethodDesc] = {m.id: m for m in b.methods}
    for m in a.methods:
        o = methods.get(m.id)
        if o is None:
            continue
        if m.kind != o.kind:
            what = (
                f"the {user} calls it as {_kind_name(m.kind)}, "
                f"the {offerer} serves it as {_kind_name(o.kind)}"
            )
        elif m.request != o.request:
            what = "request types differ"
        elif m.response != o.response:
            what = "response types differ"
        else:
            continue
        raise Incompatible(f"{a.name}.{m.name} (method {m.id:08x}): {what}")
    shapes: dict[int, Shape] = {s.ty: s for s in b.shapes}
    for s in a.shapes:
        o2 = shapes.get(s.ty)
        if o2 is None:
            continue
        if s.fixed != o2.fixed:
            raise Incompatible(
                f"{a.name}: {s.name} is a struct on one side and a table on the other"
            )
        if s.fixed and len(s.slots) != len(o2.slots):
            raise Incompatible(f"{a.name}: struct {s.name} differs in size")
        for slot, (x, y) in enumerate(zip(s.slots, o2.slots, strict=False)):
            if x != y:
                raise Incompatible(
                    f"{a.name}: {s.name} field {slot} differs in type between client and server"
                )
