"""Generated Python code (``examples/schemas/python``, written by
``gatewire gen --lang python``; pytest puts it on ``sys.path``):

- a generated client against the Rust reference server ``example-peer``
  (crate ``examples/schemas``) for every call kind, on every transport, with
  numpy arrays sent without a Python loop and received as views of the
  message; the blocking client too;
- the descriptors equal the Rust ones (LIST_SERVICES), and a schema
  mismatch is refused at connect with ``INCOMPATIBLE``;
- generated servers against generated clients, both directions of the chart
  scenario: the Python side *calls* the page's ``Chart`` service (served
  here by a Python page) and receives its ``Clicked`` events;
- the verifier: malformed payloads are ``INVALID_ARGUMENT`` (a handler's
  reply, a client's ``LocalError``), never another exception or a hang.

``example-peer`` is ``target/debug/example-peer`` (or
``GATEWIRE_EXAMPLE_PEER``); when it is missing it is built with
``cargo build --locked -p gatewire-example-schemas``, and the tests that
need it fail if cargo is not available.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from chart.Added import AddedT
from chart.ChartRef import ChartRefT
from chart.Clicked import ClickedT
from chart.CreateChart import CreateChartEnd, CreateChartStart, CreateChartT
from chart.Empty import EmptyT
from chart.Points import PointsT
from chart.Probe import ProbeT
from chart.ProbeReply import ProbeReplyT
from chart.SetTitle import SetTitleT
from chart.Title import TitleAddTitle, TitleEnd, TitleStart, TitleT
from chart_gatewire import (
    ChartClient,
    ChartEventsClient,
    ChartEventsHandler,
    ChartEventsService,
    ChartHandler,
    ChartService,
    ChartSyncClient,
)
from gateway.ChatMessage import ChatMessageT
from gateway.Config import ConfigT
from gateway.Dir import Dir
from gateway.Direction import DirectionT
from gateway.Empty import EmptyT as GatewayEmptyT
from gateway.Health import Health
from gateway.Sample import SampleT
from gateway.Setting import SettingT
from gateway.Status import StatusT
from gateway.TelemetryRequest import TelemetryRequestT
from gateway.Vec3 import Vec3T
from gateway_gatewire import GatewayClient, GatewayHandler, GatewayService
from hypothesis import given, settings
from hypothesis import strategies as st

import gatewire.aio as gw
from gatewire import Codec, ErrorCode, Message
from gatewire import codegen as gc
from gatewire import sync as gws
from gatewire.control import MethodKind, ServiceList
from gatewire.services import LIST_SERVICES

from .aio_support import TRANSPORTS, private_dir, run, url_for
from .rust_peers import PACKAGE_DIR, REPO, RustServer, rust_binary, serving

NO_CHART = 0x8001
"""The example services' application error for an unknown chart."""

# ----- the Rust reference server ---------------------------------------------------------


@pytest.fixture(scope="session")
def example_peer() -> Path:
    """The reference server's binary, built if missing."""
    return rust_binary("GATEWIRE_EXAMPLE_PEER", "example-peer", "gatewire-example-schemas")


@pytest.fixture(scope="module")
def rust_peer(example_peer: Path) -> Iterator[RustServer]:
    """``example-peer serve``; it prints ``drive Left 0.5`` per Drive event."""
    with serving(example_peer) as server:
        yield server


# ----- Python implementations of the example services ------------------------------------


class Page(ChartHandler):
    """The page's charts, as ``examples/schemas/src/impls.rs`` keeps them:
    by key, so creating one twice returns the first."""

    def __init__(self) -> None:
        self.charts: list[tuple[str, str, list[float], list[float]]] = []

    def _chart(self, chart: int) -> tuple[str, str, list[float], list[float]]:
        if chart >= len(self.charts):
            raise gw.Status(NO_CHART, f"no chart {chart}")
        return self.charts[chart]

    def _add(self, points: PointsT) -> int:
        xs = [] if points.xs is None else list(points.xs)
        ys = [] if points.ys is None else list(points.ys)
        if len(xs) != len(ys):
            raise gw.Status.invalid_argument("xs and ys differ in length")
        c = self._chart(points.chart)
        c[2].extend(float(x) for x in xs)
        c[3].extend(float(y) for y in ys)
        return len(c[2])

    async def create(self, ctx: gc.CallContext, request: CreateChartT) -> ChartRefT:
        for i, c in enumerate(self.charts):
            if c[0] == request.key:
                return ChartRefT(id=i)
        self.charts.append((request.key or "", request.title or "", [], []))
        return ChartRefT(id=len(self.charts) - 1)

    async def set_title(self, ctx: gc.CallContext, request: SetTitleT) -> EmptyT:
        key, _, xs, ys = self._chart(request.chart)
        self.charts[request.chart] = (key, request.title or "", xs, ys)
        return EmptyT()

    async def get_title(self, ctx: gc.CallContext, request: ChartRefT) -> TitleT:
        return TitleT(title=self._chart(request.id)[1])

    async def add_points(self, ctx: gc.CallContext, request: PointsT) -> AddedT:
        return AddedT(total=self._add(request))

    async def stream_points(self, ctx: gc.CallContext, items: gc.Source[PointsT]) -> AddedT:
        total = 0
        async for batch in items:
            total = self._add(batch)
        return AddedT(total=total)

    async def snapshot(
        self, ctx: gc.CallContext, request: ChartRefT, items: gc.Sink[PointsT]
    ) -> None:
        _, _, xs, ys = self._chart(request.id)
        for i in range(0, len(xs), 3):
            await items.send(
                PointsT(chart=request.id, xs=np.array(xs[i : i + 3]), ys=np.array(ys[i : i + 3]))
            )

    async def probe(self, ctx: gc.CallContext, request: ProbeT) -> ProbeReplyT:
        return ProbeReplyT(sentNs=request.sentNs, pageMs=1.5)


class Gateway(GatewayHandler):
    """The gateway of ``impls.rs``: drive commands go to a queue."""

    def __init__(self) -> None:
        self.drives: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
        self.seq = 0

    async def get_status(self, ctx: gc.CallContext, request: GatewayEmptyT) -> StatusT:
        return StatusT(name="gw-1", uptimeS=42, health=Health.Degraded, clients=1)

    async def get_config(self, ctx: gc.CallContext, request: GatewayEmptyT) -> ConfigT:
        return ConfigT(settings=[SettingT(key="mode", value="auto")])

    async def set_config(self, ctx: gc.CallContext, request: ConfigT) -> ConfigT:
        return request

    async def drive(self, ctx: gc.CallContext, event: DirectionT) -> None:
        await self.drives.put((event.dir, event.speed))

    async def chat(
        self,
        ctx: gc.CallContext,
        items: gc.Source[ChatMessageT],
        replies: gc.Sink[ChatMessageT],
    ) -> None:
        async for m in items:
            await replies.send(ChatMessageT(from_="gateway", text=f"re: {m.text}"))

    async def telemetry(
        self, ctx: gc.CallContext, request: TelemetryRequestT, items: gc.Sink[SampleT]
    ) -> None:
        for _ in range(request.count):
            seq = self.seq
            self.seq += 1
            position = Vec3T(x=float(seq), y=0.0, z=-1.0)
            await items.send(
                SampleT(seq=seq, timeMs=seq * 10, temperatureC=21.5, position=position)
            )


# ----- the checks every server passes ---------------------------------------------------


def assert_view(array: object) -> np.ndarray[Any, Any]:
    """``array`` is a numpy array reading the received message in place."""
    assert isinstance(array, np.ndarray), type(array)
    assert not array.flags.owndata
    assert isinstance(array.base, bytes), type(array.base)
    assert np.shares_memory(array, np.frombuffer(array.base, dtype=np.uint8))
    return array


async def exercise_chart(charts: ChartClient, key: str) -> None:
    """Every call kind of ``chart.Chart``, as the Rust test drives it, on a
    new chart ``key``."""
    # Unary, with the refresh rule: the same key gives the same chart.
    create = CreateChartT(key=key, title="T0")
    chart = (await charts.create(create)).id
    assert (await charts.create(create)).id == chart
    await charts.set_title(SetTitleT(chart=chart, title="Temperature"))
    assert (await charts.get_title(ChartRefT(id=chart))).title == "Temperature"
    with pytest.raises(gw.RemoteError) as e:
        await charts.get_title(ChartRefT(id=99))
    assert (e.value.code, e.value.message) == (NO_CHART, "no chart 99")
    # numpy arrays go out in one copy (no Python loop: see
    # test_numpy_vectors_are_packed_without_a_python_loop).
    added = await charts.add_points(
        PointsT(chart=chart, xs=np.array([0.0, 1.0]), ys=np.array([5.0, 6.0]))
    )
    assert added.total == 2
    probe = await charts.probe(ProbeT(sentNs=7), timeout=10)
    assert (probe.sentNs, probe.pageMs) == (7, 1.5)

    # Client streaming.
    sink, reply = await charts.stream_points()
    for i in range(4):
        x = float(i) + 2.0
        await sink.send(PointsT(chart=chart, xs=[x], ys=np.array([x * 10.0])))
    await sink.finish()
    assert (await reply).total == 6

    # Server streaming: float64 vectors as views of the received messages.
    xs: list[float] = []
    ys: list[float] = []
    async with await charts.snapshot(ChartRefT(id=chart)) as snapshot:
        async for batch in snapshot:
            xs.extend(assert_view(batch.xs).tolist())
            ys.extend(assert_view(batch.ys).tolist())
    assert xs == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert ys == [5.0, 6.0, 20.0, 30.0, 40.0, 50.0]


async def exercise_gateway(gateway: GatewayClient) -> None:
    """Every call kind of ``gateway.Gateway`` but the event (the caller
    checks it where the server reports it)."""
    status = await gateway.get_status(GatewayEmptyT())
    assert (status.name, status.uptimeS, status.health) == ("gw-1", 42, Health.Degraded)
    config = await gateway.get_config(GatewayEmptyT())
    assert config.settings is not None
    assert [(s.key, s.value) for s in config.settings] == [("mode", "auto")]
    changed = await gateway.set_config(
        ConfigT(settings=[SettingT(key="rate", value="10"), SettingT(key="x")])
    )
    assert changed.settings is not None
    assert [(s.key, s.value) for s in changed.settings] == [("rate", "10"), ("x", None)]

    # Bidirectional streaming: each message gets its reply.
    out, replies = await gateway.chat()
    for text in ("hello", "status?"):
        await out.send(ChatMessageT(from_="desk", text=text, sentMs=1))
        answer = await replies.next()
        assert answer is not None
        assert (answer.from_, answer.text) == ("gateway", f"re: {text}")
    await out.finish()
    assert await replies.next() is None

    # Server streaming with a struct inside (sequence numbers go on across
    # calls to the same server).
    seen: list[SampleT] = []
    async for sample in await gateway.telemetry(TelemetryRequestT(intervalMs=1, count=3)):
        seen.append(sample)
    first = seen[0].seq
    assert [s.seq for s in seen] == [first, first + 1, first + 2]
    for s in seen:
        assert s.position is not None
        assert (s.timeMs, s.temperatureC, s.position.x, s.position.z) == (
            s.seq * 10,
            21.5,
            float(s.seq),
            -1.0,
        )


# ----- against the Rust reference server ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_call_kind_against_rust(rust_peer: RustServer, transport: str) -> None:
    async def main() -> None:
        conn = await gw.connect(
            rust_peer.urls[transport],
            uses=[ChartService.descriptor(), GatewayService.descriptor()],
        )
        try:
            await exercise_chart(ChartClient(conn), f"main-{transport}")
            gateway = GatewayClient(conn)
            await exercise_gateway(gateway)
            await gateway.drive(DirectionT(dir=Dir.Left, speed=0.5))
            await asyncio.to_thread(rust_peer.expect_line, "drive Left 0.5")
        finally:
            await conn.close()
        assert conn.close_error is None

    run(main(), timeout=90)


def test_descriptors_equal_the_rust_ones(rust_peer: RustServer) -> None:
    async def main() -> None:
        async with await gw.connect(rust_peer.urls["tcp"]) as conn:
            reply = await conn.call(LIST_SERVICES, b"")
        offered = ServiceList.decode(reply.body).offers
        assert offered == (ChartService.descriptor(), GatewayService.descriptor())

    run(main())


def test_a_schema_mismatch_is_refused_at_connect(rust_peer: RustServer) -> None:
    base = ChartService.descriptor()
    snapshot = next(m for m in base.methods if m.id == ChartService.SNAPSHOT)
    methods = tuple(
        dataclasses.replace(m, kind=MethodKind.UNARY) if m is snapshot else m for m in base.methods
    )
    changed = dataclasses.replace(base, fingerprint=base.fingerprint ^ 1, methods=methods)

    async def main() -> None:
        with pytest.raises(gw.ConnectionClosedError) as e:
            await gw.connect(rust_peer.urls["tcp"], uses=[changed])
        assert e.value.code == ErrorCode.INCOMPATIBLE
        assert e.value.message is not None
        assert e.value.message.endswith(
            f"chart.Chart.Snapshot (method {ChartService.SNAPSHOT:08x}): the client calls it"
            " as unary, the server serves it as server streaming"
        )
        # The generated descriptors themselves connect.
        conn = await gw.connect(rust_peer.urls["tcp"], uses=[ChartService.descriptor()])
        await conn.close()

    run(main())


def test_sync_client_against_rust(rust_peer: RustServer) -> None:
    with gws.connect(rust_peer.urls["unix"], uses=[ChartService.descriptor()]) as conn:
        charts = ChartSyncClient(conn)
        chart = charts.create(CreateChartT(key="sync")).id
        charts.add_points(PointsT(chart=chart, xs=np.arange(5.0), ys=np.arange(5.0) * 2))
        with charts.snapshot(ChartRefT(id=chart), timeout=10) as batches:
            xs = [x for batch in batches for x in assert_view(batch.xs).tolist()]
        assert xs == [0.0, 1.0, 2.0, 3.0, 4.0]
        with pytest.raises(gw.RemoteError) as e:
            charts.get_title(ChartRefT(id=99))
        assert e.value.code == NO_CHART


def test_a_bad_payload_to_rust_is_invalid_argument(rust_peer: RustServer) -> None:
    async def main() -> None:
        async with await gw.connect(rust_peer.urls["tcp"]) as conn:
            with pytest.raises(gw.RemoteError) as e:
                await conn.call(ChartService.GET_TITLE, b"not a table")
            assert e.value.code == ErrorCode.INVALID_ARGUMENT

    run(main())


# ----- generated servers against generated clients -------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_gateway_python_server_python_client(transport: str) -> None:
    async def main() -> None:
        gateway = Gateway()
        router = GatewayService.route(gw.Router(), gateway)
        with private_dir() as d:
            async with (
                await gw.serve(
                    url_for(transport, d), router, offers=[GatewayService.descriptor()]
                ) as server,
                await gw.connect(server.urls[0], uses=[GatewayService.descriptor()]) as conn,
            ):
                client = GatewayClient(conn)
                await exercise_gateway(client)
                await client.drive(DirectionT(dir=Dir.Back, speed=2.0))
                assert await gateway.drives.get() == (Dir.Back, 2.0)

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_chart_scenario_python_server_calls_the_page(transport: str) -> None:
    """The chart scenario: the page (here a Python client) offers ``Chart``
    and uses ``ChartEvents``; the Python server offers ``ChartEvents`` and
    calls the page's charts."""

    async def main() -> None:
        clicks: asyncio.Queue[ClickedT] = asyncio.Queue()

        class Events(ChartEventsHandler):
            async def clicked(self, ctx: gc.CallContext, event: ClickedT) -> None:
                await clicks.put(event)

        with private_dir() as d:
            async with await gw.serve(
                url_for(transport, d),
                ChartEventsService.route(gw.Router(), Events()),
                offers=[ChartEventsService.descriptor()],
                uses=[ChartService.descriptor()],
            ) as server:
                page = await gw.connect(
                    server.urls[0],
                    router=ChartService.route(gw.Router(), Page()),
                    offers=[ChartService.descriptor()],
                    uses=[ChartEventsService.descriptor()],
                )
                try:
                    while not server.connections():
                        await asyncio.sleep(0)
                    await exercise_chart(ChartClient(server.connections()[0]), "main")
                    await ChartEventsClient(page).clicked(ClickedT(chart=0, x=1.5, y=-2.0))
                    click = await clicks.get()
                    assert (click.chart, click.x, click.y) == (0, 1.5, -2.0)
                finally:
                    await page.close()
                # A page without the Chart service is refused.
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0], uses=[ChartEventsService.descriptor()])
                assert e.value.code == ErrorCode.INCOMPATIBLE
                assert e.value.message == (
                    "chart.Chart: used by the server but not offered by the client"
                )

    run(main())


def test_a_bad_request_to_a_python_server_is_invalid_argument() -> None:
    async def main() -> None:
        gateway = Gateway()
        router = GatewayService.route(gw.Router(), gateway)
        with private_dir() as d:
            async with (
                await gw.serve(url_for("tcp", d), router) as server,
                await gw.connect(server.urls[0]) as conn,
            ):
                for body in (b"not a table", b"", b"\xff" * 64):
                    with pytest.raises(gw.RemoteError) as e:
                        await conn.call(GatewayService.SET_CONFIG, body)
                    assert e.value.code == ErrorCode.INVALID_ARGUMENT, body
                # A bad stream opening ends the stream with the same code.
                rx = await conn.server_stream(GatewayService.TELEMETRY, b"\x01\x02")
                with pytest.raises(gw.RemoteError) as e:
                    await rx.recv()
                assert e.value.code == ErrorCode.INVALID_ARGUMENT
                # A bad item in a stream fails the handler's iteration.
                tx, rx = await conn.open_stream(GatewayService.CHAT)
                await tx.send(b"garbage!")
                with pytest.raises(gw.RemoteError) as e:
                    await rx.recv()
                assert e.value.code == ErrorCode.INVALID_ARGUMENT
                # A bad event is dropped; the next one arrives.
                await conn.emit(GatewayService.DRIVE, b"\x00" * 3)
                good = GatewayClient(conn)
                await good.drive(DirectionT(dir=Dir.Right, speed=1.0))
                assert await gateway.drives.get() == (Dir.Right, 1.0)

    run(main())


def test_a_bad_reply_is_a_local_invalid_argument() -> None:
    router = gw.Router()

    @router.unary(ChartService.GET_TITLE)
    async def bad_title(_ctx: gw.CallContext, _m: Message) -> Message:
        return Message(Codec.FLATBUFFERS, b"\x04\x00\x00\x00garbage")

    @router.stream(ChartService.SNAPSHOT)
    async def bad_items(
        _ctx: gw.CallContext, _m: Message, _rx: gw.RecvStream, tx: gw.SendStream
    ) -> None:
        await tx.send(Message(Codec.JSON, b"{}"))

    async def main() -> None:
        with private_dir() as d:
            async with (
                await gw.serve(url_for("tcp", d), router) as server,
                await gw.connect(server.urls[0]) as conn,
            ):
                charts = ChartClient(conn)
                with pytest.raises(gw.LocalError) as e:
                    await charts.get_title(ChartRefT(id=0))
                assert e.value.code == ErrorCode.INVALID_ARGUMENT
                assert e.value.message is not None
                assert e.value.message.startswith("invalid chart.Title message: ")
                async with await charts.snapshot(ChartRefT(id=0)) as items:
                    with pytest.raises(gw.LocalError) as e:
                        await items.next()
                assert e.value.code == ErrorCode.INVALID_ARGUMENT
                assert e.value.message == (
                    "invalid chart.Points message: expected a FlatBuffers message, got codec 3"
                )
                # Client streaming whose peer never replies.
                sink, reply = await ChartClient(conn).stream_points()
                await sink.finish()
                with pytest.raises(gw.RemoteError) as e2:
                    await reply
                assert e2.value.code == ErrorCode.UNKNOWN_METHOD

    run(main())


# ----- the stubs ----------------------------------------------------------------------------


def test_stubs_describe_flatc_modules() -> None:
    """The ``.pyi`` stubs the generator writes beside flatc's modules name
    what those modules define, with matching signatures (mypy's
    ``stubtest``); mypy checks the rest through this file's imports."""
    examples = REPO / "examples" / "schemas" / "python"
    env = {**os.environ, "PYTHONPATH": str(examples)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "--mypy-config-file",
            str(PACKAGE_DIR / "pyproject.toml"),
            "chart",
            "gateway",
        ],
        cwd=PACKAGE_DIR,
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()


# ----- packing and the verifier -------------------------------------------------------------

POINTS = gc.Tables(
    {
        "chart.Points": (
            gc.Field(0, gc.SCALAR, 4),
            gc.Field(1, gc.VECTOR, 8, attr="xs", dtype="f8"),
            gc.Field(2, gc.VECTOR, 8, attr="ys", dtype="f8"),
        )
    }
).table("chart.Points", PointsT, PointsT.InitFromPackedBuf)
"""``chart.Points`` as the generated module describes it."""


def _table(name: str) -> gc.TableType[Any]:
    """A message type of the generated modules (their private variables)."""
    import chart_gatewire  # noqa: PLC0415
    import gateway_gatewire  # noqa: PLC0415

    for module in (chart_gatewire, gateway_gatewire):
        t = getattr(module, name, None)
        if isinstance(t, gc.TableType):
            return t
    raise AssertionError(name)


def test_numpy_vectors_are_packed_without_a_python_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def per_element(*_args: object) -> None:
        raise AssertionError("a float64 was packed one by one")

    monkeypatch.setattr(flatbuffers.builder.Builder, "PrependFloat64", per_element)
    xs = np.linspace(0.0, 1.0, 100_000)
    message = POINTS.pack(PointsT(chart=3, xs=xs, ys=xs[::-1]))
    back = POINTS.unpack(message)
    assert np.array_equal(assert_view(back.xs), xs)
    assert np.array_equal(assert_view(back.ys), xs[::-1])
    # Non-contiguous and big-endian arrays are written as little-endian
    # float64 all the same.
    big = np.arange(6.0).astype(">f8")[::2]
    back = POINTS.unpack(POINTS.pack(PointsT(xs=big)))
    assert assert_view(back.xs).tolist() == [0.0, 2.0, 4.0]


def test_numpy_arrays_of_another_dtype_are_refused() -> None:
    for array in (np.arange(3), np.arange(3.0, dtype=np.float32), np.zeros(2, dtype=bool)):
        with pytest.raises(TypeError, match=r"chart\.Points\.xs"):
            POINTS.pack(PointsT(xs=array))  # type: ignore[arg-type]
    # Lists go through flatc's loop.
    assert POINTS.unpack(POINTS.pack(PointsT(xs=[1.0, 2.0]))).xs is not None
    with pytest.raises(TypeError, match="expected a PointsT"):
        POINTS.pack(TitleT())  # type: ignore[arg-type]


def test_every_example_table_round_trips() -> None:
    config = _table("_T_GATEWAY_CONFIG")
    value = ConfigT(settings=[SettingT(key="k", value="ü"), SettingT(key="")])
    back = config.unpack(config.pack(value))
    assert back.settings is not None
    assert [(s.key, s.value) for s in back.settings] == [("k", "ü"), ("", None)]
    sample = _table("_T_GATEWAY_SAMPLE")
    back_sample = sample.unpack(sample.pack(SampleT(seq=2**64 - 1, position=Vec3T(1, 2, 3))))
    assert back_sample.seq == 2**64 - 1
    assert back_sample.position is not None
    assert (back_sample.position.x, back_sample.position.z) == (1.0, 3.0)
    empty = _table("_T_CHART_EMPTY")
    assert isinstance(empty.unpack(empty.pack(EmptyT())), EmptyT)


def _build(fill: Any) -> bytes:
    builder = flatbuffers.Builder(64)
    builder.Finish(fill(builder))
    return bytes(builder.Output())


def _reason(table: gc.TableType[Any], body: bytes) -> str:
    """Why ``body`` fails verification as a ``table``."""
    try:
        table.unpack(Message(Codec.FLATBUFFERS, body))
    except ValueError as e:
        return str(e)
    raise AssertionError(f"accepted as a {table.name}: {body!r}")


def test_malformed_payloads_are_refused() -> None:
    create = _table("_T_CHART_CREATE_CHART")
    title = _table("_T_CHART_TITLE")
    config = _table("_T_GATEWAY_CONFIG")

    # A required field missing (CreateChart.key).
    def no_key(b: Any) -> int:
        CreateChartStart(b)
        return int(CreateChartEnd(b))

    assert "required field 0 is missing" in _reason(create, _build(no_key))

    # A string that is not UTF-8, and one without its terminator.
    def bad_utf8(b: Any) -> int:
        s = b.CreateString(b"\xff\xfe")
        TitleStart(b)
        TitleAddTitle(b, s)
        return int(TitleEnd(b))

    good = bytearray(_build(bad_utf8))
    assert "not UTF-8" in _reason(title, bytes(good))
    at = good.index(b"\xff\xfe")
    good[at : at + 2] = b"ok"
    assert title.unpack(Message(Codec.FLATBUFFERS, bytes(good))).title == "ok"
    good[at + 2] = 1
    assert "no 0 terminator" in _reason(title, bytes(good))

    # Out of bounds, unaligned, and not a table at all.
    assert "outside the buffer" in _reason(title, b"\x00\x01")
    assert "outside the buffer" in _reason(title, b"\xfc\x00\x00\x00")
    assert "not aligned" in _reason(title, b"\x02\x00\x00\x00" + bytes(12))
    assert _reason(title, b"") == "range 0..4 is outside the buffer of 0 bytes"
    with pytest.raises(ValueError, match="codec 3"):
        title.unpack(Message(Codec.JSON, b"{}"))

    # Every truncation of a valid message fails cleanly (or still parses).
    full = config.pack(ConfigT(settings=[SettingT(key="a", value="b")] * 3)).body
    for n in range(len(full)):
        with contextlib.suppress(ValueError):
            config.unpack(Message(Codec.FLATBUFFERS, full[:n]))


def test_a_shared_subtable_cannot_amplify_the_work() -> None:
    """A vector of 2,000 offsets to one setting with a 1 KiB key: 4 KiB of
    offsets that would unpack as 2 MiB. The apparent-size bound (16 times
    the message) refuses it, as the Rust verifier does."""
    config = _table("_T_GATEWAY_CONFIG")
    n = 2000

    def shared(b: Any) -> int:
        key = b.CreateString("k" * 1024)
        b.StartObject(2)
        b.PrependUOffsetTRelativeSlot(0, key, 0)
        setting = b.EndObject()
        b.StartVector(4, n, 4)
        for _ in range(n):
            b.PrependUOffsetTRelative(setting)
        settings_vector = b.EndVector()
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, settings_vector, 0)
        return int(b.EndObject())

    body = _build(shared)
    assert len(body) < 16 * 1024
    assert "apparent size" in _reason(config, body)


def test_deep_nesting_is_bounded() -> None:
    """100 nested tables: the depth bound (64) refuses them before any
    unpacking recursion. A layout of a self-referencing table stands in for a
    recursive schema."""
    tables = gc.Tables({"t.Node": (gc.Field(0, gc.TABLE, table="t.Node", attr="next"),)})

    def nested(b: Any) -> int:
        inner = None
        for _ in range(100):
            b.StartObject(1)
            if inner is not None:
                b.PrependUOffsetTRelativeSlot(0, inner, 0)
            inner = b.EndObject()
        assert inner is not None
        return int(inner)

    body = _build(nested)
    with pytest.raises(ValueError, match="nested deeper than 64"):
        gc.verify(body, "t.Node", tables.layouts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256), st.integers(min_value=0, max_value=255))
def test_hostile_bytes_never_raise_anything_else(data: bytes, flip: int) -> None:
    """Random buffers, and valid ones with a byte changed: accepted or
    refused with ``ValueError`` (``INVALID_ARGUMENT``), nothing else."""
    config = _table("_T_GATEWAY_CONFIG")
    sample = _table("_T_GATEWAY_SAMPLE")
    valid = config.pack(ConfigT(settings=[SettingT(key="key", value="value")])).body
    mutated = bytearray(valid)
    mutated[flip % len(mutated)] ^= (flip | 1) & 0xFF
    for table in (config, sample, POINTS, _table("_T_CHART_CREATE_CHART")):
        for body in (data, bytes(mutated), valid[: flip % len(valid)]):
            with contextlib.suppress(ValueError):
                table.unpack(Message(Codec.FLATBUFFERS, body))
            codes = []
            try:
                table.request(Message(Codec.FLATBUFFERS, body))
            except gw.Status as e:
                codes.append(e.code)
            assert codes in ([], [ErrorCode.INVALID_ARGUMENT])


def test_struct_sizes_are_checked() -> None:
    sample = _table("_T_GATEWAY_SAMPLE")
    body = bytearray(sample.pack(SampleT(seq=1, position=Vec3T(1, 2, 3))).body)
    # Cut into the struct: its 12 bytes no longer fit.
    assert "outside the buffer" in _reason(sample, bytes(body[: len(body) - 8]))
    assert struct.unpack_from("<I", body)[0] < len(body)
