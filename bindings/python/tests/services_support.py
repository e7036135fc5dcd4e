"""Service descriptors shared by the services tests and the directed
conversations: ``chart.Chart`` as ``crates/gatewire-vectors`` builds it."""

from __future__ import annotations

from dataclasses import replace

from gatewire.control import MethodDesc, MethodKind, Service, Shape
from gatewire.services import fnv1a64, method_id, type_hash


def chart(extra: tuple[tuple[str, int], ...] = (), extra_slots: tuple[str, ...] = ()) -> Service:
    """``chart.Chart`` as in the vectors (``crates/gatewire-vectors``)."""

    def method(name: str, kind: int, request: str, response: str) -> MethodDesc:
        return MethodDesc(
            name=name,
            id=method_id("chart.Chart", name),
            kind=MethodKind(kind),
            request=type_hash(request),
            response=type_hash(response),
        )

    methods = (
        method("SetTitle", MethodKind.UNARY, "chart.Title", "chart.Empty"),
        method("Points", MethodKind.SERVER_STREAMING, "chart.Empty", "chart.Point"),
        *(method(n, k, "chart.Title", "chart.Empty") for n, k in extra),
    )
    point = (fnv1a64(b"float64"), fnv1a64(b"float64"), *(fnv1a64(t.encode()) for t in extra_slots))

    def shape(name: str, slots: tuple[int, ...]) -> Shape:
        return Shape(name=name, ty=type_hash(name), fixed=False, slots=slots)

    return Service(
        name="chart.Chart",
        fingerprint=1 + 100 * len(methods) + len(point),
        methods=methods,
        shapes=(
            shape("chart.Title", (fnv1a64(b"string"),)),
            shape("chart.Point", point),
            shape("chart.Empty", ()),
        ),
    )


def changed_chart() -> Service:
    """``chart()`` with ``SetTitle`` made client streaming."""
    base = chart()
    first = replace(base.methods[0], kind=MethodKind.CLIENT_STREAMING)
    return replace(base, fingerprint=base.fingerprint ^ 1, methods=(first, *base.methods[1:]))
