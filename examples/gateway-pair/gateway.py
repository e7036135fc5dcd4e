"""The gateway daemon of the desktop <-> gateway pair.

It serves ``gateway.Gateway`` (status, configuration, drive events, a chat
with a reply per message, a telemetry stream paced by the reader's credit)
on two endpoints at once:

- a Unix socket in a private ``0700`` directory, for local programs
  (``cli.py``); only processes of our own uid may connect;
- a local WebSocket, for the desktop page; only the page's own origin may
  connect.

It also serves the desktop page over plain HTTP on 127.0.0.1 and *uses* the
``chart.Chart`` service that the page offers: when a page connects, the
gateway creates a chart by key (twice: the second call returns the same
chart, so a page refresh or a retry never duplicates it), sets and reads back
its title, streams 1,000,000 (x, y) float64 points as numpy arrays, and
measures probe round trips while the points are in flight. It offers
``chart.ChartEvents`` and logs the clicks the page sends.

Run it by hand::

    target/tools/venv/bin/python examples/gateway-pair/gateway.py

then open the printed ``page`` URL (the page must be built first:
``examples/gateway-pair/README.md``). SIGINT or SIGTERM shut it down
gracefully: open streams are ended, calls in flight finish, every
connection closes with GOAWAY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import http.server
import json
import math
import os
import shutil
import signal
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[2]
"""The repository: the generated code, the page and the TypeScript package."""
sys.path.insert(0, str(ROOT / "examples" / "schemas" / "python"))

from chart.ChartRef import ChartRefT  # noqa: E402
from chart.Clicked import ClickedT  # noqa: E402
from chart.CreateChart import CreateChartT  # noqa: E402
from chart.Points import PointsT  # noqa: E402
from chart.Probe import ProbeT  # noqa: E402
from chart.SetTitle import SetTitleT  # noqa: E402
from chart_gatewire import (  # noqa: E402
    ChartClient,
    ChartEventsHandler,
    ChartEventsService,
    ChartService,
)
from gateway.ChatMessage import ChatMessageT  # noqa: E402
from gateway.Config import ConfigT  # noqa: E402
from gateway.Dir import Dir  # noqa: E402
from gateway.Direction import DirectionT  # noqa: E402
from gateway.Empty import EmptyT  # noqa: E402
from gateway.Health import Health  # noqa: E402
from gateway.Sample import SampleT  # noqa: E402
from gateway.Setting import SettingT  # noqa: E402
from gateway.Status import StatusT  # noqa: E402
from gateway.TelemetryRequest import TelemetryRequestT  # noqa: E402
from gateway.Vec3 import Vec3T  # noqa: E402
from gateway_gatewire import GatewayHandler, GatewayService  # noqa: E402

import gatewire.aio as gw  # noqa: E402
from gatewire import codegen as gc  # noqa: E402

WEB = Path(__file__).resolve().parent / "web"
"""The page: ``index.html`` and the compiled TypeScript in ``dist/``."""

CALL_TIMEOUT = 5.0
"""Seconds allowed for each small call to the page."""
TRANSFER_TIMEOUT = 60.0
"""Seconds allowed for the whole points stream."""
PROBE_TIMEOUT = 5.0
"""Seconds allowed for one probe round trip."""
IDLE_PROBES = 50
"""Probes measured after the transfer, one after the other."""
MAX_PROBES = 10_000
"""Probes kept per transfer (the probe loop stops there)."""
MAX_CHAT_TEXT = 4096
"""Characters of a chat message; longer ones are refused."""
MAX_PAGE_SESSIONS = 8
"""Pages whose charts are driven at once; more pages are served but their
charts are left alone."""
HTTP_THREADS = 16
"""HTTP requests served at once; more are closed."""
SPEED_LIMIT = 10.0
"""The highest ``max_speed`` setting, in m/s."""

T = TypeVar("T")


# ----- the timeline ----------------------------------------------------------------------


class Timeline:
    """Prints ``<ms since start> ms  <who>  <what>`` lines, flushed at once
    (the demo reads them as they come)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> float:
        """Milliseconds since the gateway started."""
        return (time.perf_counter() - self.start) * 1000

    def log(self, who: str, what: str) -> None:
        """Prints one line of the timeline."""
        print(f"{self.ms():9.1f} ms  {who:<9} {what}", flush=True)


# ----- the page over HTTP ----------------------------------------------------------------


class PageSite:
    """Serves the desktop page on 127.0.0.1 from a background thread: the
    HTML, the compiled page, the ``gatewire`` package (``bindings/js/dist``)
    and the ``flatbuffers`` ESM build, which ``index.html`` maps with an
    import map. Only GET, only those files, only to a ``Host`` naming this
    server (no DNS rebinding); at most :data:`HTTP_THREADS` requests at once.
    """

    MIME: ClassVar[dict[str, str]] = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".map": "application/json; charset=utf-8",
        ".json": "application/json; charset=utf-8",
    }

    def __init__(self, host: str, port: int, config: dict[str, str]) -> None:
        self._roots = {
            "/app/": WEB / "dist",
            "/lib/gatewire/": ROOT / "bindings" / "js" / "dist",
            "/lib/flatbuffers/": ROOT / "bindings" / "js" / "node_modules" / "flatbuffers" / "mjs",
        }
        self._config = config
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10
            server_version = "gateway-pair"
            sys_version = ""

            def do_GET(self) -> None:
                site._get(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            slots = threading.BoundedSemaphore(HTTP_THREADS)

            def process_request(self, request: Any, client_address: Any) -> None:
                if not self.slots.acquire(blocking=False):
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    self.slots.release()

        self._server = Server((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self.hosts = {f"{host}:{self.port}", f"localhost:{self.port}"}
        self.origins = tuple(f"http://{h}" for h in sorted(self.hosts))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="page-http", daemon=True
        )

    def start(self) -> None:
        """Starts serving."""
        self._thread.start()

    def close(self) -> None:
        """Stops serving and waits for the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _file(self, path: str) -> Path | None:
        if path in ("/", "/index.html"):
            index = WEB / "index.html"
            return index if index.is_file() else None
        for prefix, root in self._roots.items():
            if path.startswith(prefix):
                candidate = (root / path[len(prefix) :]).resolve()
                if candidate.is_relative_to(root.resolve()) and candidate.is_file():
                    return candidate
        return None

    def _get(self, request: http.server.BaseHTTPRequestHandler) -> None:
        if request.headers.get("Host") not in self.hosts:
            request.send_error(421, "unknown host")
            return
        path = unquote(urlsplit(request.path).path)
        body: bytes
        if path == "/gw.json":
            body, mime = json.dumps(self._config).encode(), self.MIME[".json"]
        else:
            file = self._file(path)
            mime = self.MIME.get(file.suffix, "") if file is not None else ""
            if file is None or not mime:
                request.send_error(404, "not found")
                return
            body = file.read_bytes()
        request.send_response(200)
        request.send_header("Content-Type", mime)
        request.send_header("Content-Length", str(len(body)))
        request.send_header("Cache-Control", "no-store")
        request.send_header("X-Content-Type-Options", "nosniff")
        request.end_headers()
        request.wfile.write(body)


# ----- the gateway -------------------------------------------------------------------------


@dataclasses.dataclass
class Peer:
    """A connection, as the gateway names it in the timeline."""

    label: str
    conn: gw.Connection
    is_page: bool
    charts: dict[str, int] = dataclasses.field(default_factory=dict)
    """The page's chart ids, by the keys we created them with."""


_MOVES = {
    Dir.Stop: (0.0, 0.0),
    Dir.Left: (-1.0, 0.0),
    Dir.Right: (1.0, 0.0),
    Dir.Forward: (0.0, 1.0),
    Dir.Back: (0.0, -1.0),
}
_DIR_NAMES = {value: name for name, value in vars(Dir).items() if isinstance(value, int)}


@dataclasses.dataclass
class Vehicle:
    """What the drive commands steer and the telemetry reports: a position
    that moves at ``speed`` in direction ``dir`` (x to the right, y
    forward), integrated when read."""

    dir: int = Dir.Stop
    speed: float = 0.0
    x: float = 0.0
    y: float = 0.0
    at: float = dataclasses.field(default_factory=time.monotonic)

    def advance(self) -> None:
        """Moves the position to now."""
        now = time.monotonic()
        dx, dy = _MOVES.get(self.dir, (0.0, 0.0))
        self.x += dx * self.speed * (now - self.at)
        self.y += dy * self.speed * (now - self.at)
        self.at = now


async def _until(stopping: asyncio.Event, aw: Awaitable[T]) -> tuple[bool, T | None]:
    """Waits for ``aw`` or for ``stopping``, whichever comes first: ``(True,
    result)``, or ``(False, None)`` once ``stopping`` is set (``aw`` is then
    cancelled)."""
    work = asyncio.ensure_future(aw)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not work.done():
            work.cancel()
            # Its outcome no longer matters; retrieve it so that it is not
            # reported as never retrieved.
            work.add_done_callback(lambda t: t.cancelled() or t.exception())
    if work.cancelled() or not work.done():
        return False, None
    return True, work.result()


class Gateway(GatewayHandler, ChartEventsHandler):
    """The gateway's services, shared by both endpoints, and the chart
    sessions it runs on the pages that connect."""

    def __init__(
        self,
        timeline: Timeline,
        *,
        name: str,
        points: int,
        batch: int,
        clients: Callable[[], int],
    ) -> None:
        self.timeline = timeline
        self.points = points
        self.batch = batch
        self.clients = clients
        self.started = time.monotonic()
        self.stopping = asyncio.Event()
        self.config = {"name": name, "mode": "normal", "max_speed": "2.0"}
        self.vehicle = Vehicle()
        self.peers: dict[gw.Connection, Peer] = {}
        self.sessions: set[asyncio.Task[None]] = set()
        self.watchers: set[asyncio.Task[None]] = set()
        self.rng = np.random.default_rng(7)
        self._counter = 0

    def log(self, who: str, what: str) -> None:
        self.timeline.log(who, what)

    # ----- peers ------------------------------------------------------------------------

    def peer(self, ctx: gc.CallContext) -> Peer:
        """The peer a call comes from. A connection is named at its first
        call; a page (it offers ``chart.Chart``) also gets its chart session
        started then (the page asks for the status as soon as it is
        connected)."""
        conn = ctx.connection
        known = self.peers.get(conn)
        if known is not None:
            return known
        self._counter += 1
        info = conn.peer
        offers = {s.name for s in info.services} if info is not None else set()
        is_page = ChartService.NAME in offers
        peer = Peer(f"{'page' if is_page else 'client'}#{self._counter}", conn, is_page)
        self.peers[conn] = peer
        transport = conn.transport_info
        if transport.credentials is not None:
            cred = transport.credentials
            where = f"unix socket, pid {cred.pid} uid {cred.uid}"
        else:
            where = f"WebSocket from {transport.address}"
        agent = info.agent if info is not None else None
        self.log(peer.label, f"connected over {where} ({agent})")
        watcher = asyncio.ensure_future(self._watch(peer))
        self.watchers.add(watcher)
        watcher.add_done_callback(self.watchers.discard)
        if is_page and not self.stopping.is_set():
            if len(self.sessions) < MAX_PAGE_SESSIONS:
                task = asyncio.ensure_future(self._chart_session(peer))
                self.sessions.add(task)
                task.add_done_callback(self.sessions.discard)
            else:
                self.log(peer.label, "too many pages at once: its charts are left alone")
        return peer

    async def _watch(self, peer: Peer) -> None:
        error = await peer.conn.wait_closed()
        self.log(
            peer.label, "disconnected gracefully" if error is None else f"disconnected: {error}"
        )
        self.peers.pop(peer.conn, None)

    # ----- gateway.Gateway ---------------------------------------------------------------

    async def get_status(self, ctx: gc.CallContext, request: EmptyT) -> StatusT:
        peer = self.peer(ctx)
        status = StatusT(
            name=self.config["name"],
            uptimeS=int(time.monotonic() - self.started),
            health=Health.Ok,
            clients=self.clients(),
        )
        self.log(peer.label, f"GetStatus -> {status.name}, {status.clients} client(s)")
        return status

    def _config(self) -> ConfigT:
        return ConfigT(settings=[SettingT(key=k, value=v) for k, v in self.config.items()])

    async def get_config(self, ctx: gc.CallContext, request: EmptyT) -> ConfigT:
        peer = self.peer(ctx)
        self.log(peer.label, f"GetConfig -> {self.config}")
        return self._config()

    async def set_config(self, ctx: gc.CallContext, request: ConfigT) -> ConfigT:
        peer = self.peer(ctx)
        changes: dict[str, str] = {}
        for setting in request.settings or []:
            key, value = setting.key or "", setting.value or ""
            problem = _check_setting(key, value)
            if problem is not None:
                self.log(peer.label, f"SetConfig refused: {problem}")
                raise gw.Status.invalid_argument(problem)
            changes[key] = value
        self.config.update(changes)
        self.vehicle.advance()
        self.vehicle.speed = min(self.vehicle.speed, float(self.config["max_speed"]))
        self.log(peer.label, f"SetConfig {changes} -> {self.config}")
        return self._config()

    async def drive(self, ctx: gc.CallContext, event: DirectionT) -> None:
        peer = self.peer(ctx)
        if event.dir not in _MOVES or not math.isfinite(event.speed):
            self.log(peer.label, f"drive event ignored: direction {event.dir}, speed {event.speed}")
            return
        speed = min(max(event.speed, 0.0), float(self.config["max_speed"]))
        self.vehicle.advance()
        self.vehicle.dir, self.vehicle.speed = event.dir, speed
        self.log(peer.label, f"drive {_DIR_NAMES[event.dir]} at {speed:.1f} m/s (event)")

    async def chat(
        self,
        ctx: gc.CallContext,
        items: gc.Source[ChatMessageT],
        replies: gc.Sink[ChatMessageT],
    ) -> None:
        peer = self.peer(ctx)
        self.log(peer.label, "chat opened")
        count = 0
        while True:
            more, message = await _until(self.stopping, items.next())
            if not more:
                await replies.send(self._chat("the gateway is shutting down: goodbye"))
                self.log(peer.label, f"chat ended by the shutdown after {count} message(s)")
                return
            if message is None:
                self.log(peer.label, f"chat closed by the peer after {count} message(s)")
                return
            text = message.text or ""
            if len(text) > MAX_CHAT_TEXT:
                raise gw.Status.invalid_argument(
                    f"chat messages hold at most {MAX_CHAT_TEXT} characters"
                )
            count += 1
            self.log(peer.label, f"chat <- {message.from_ or '?'}: {text!r}")
            await replies.send(self._chat(_answer(text, count, self.config, self.vehicle)))

    def _chat(self, text: str) -> ChatMessageT:
        return ChatMessageT(from_=self.config["name"], text=text, sentMs=int(time.time() * 1000))

    async def telemetry(
        self, ctx: gc.CallContext, request: TelemetryRequestT, items: gc.Sink[SampleT]
    ) -> None:
        peer = self.peer(ctx)
        # 0 ms: as fast as the reader's credit allows.
        interval = request.intervalMs / 1000
        limit = request.count or None
        until = f"{limit} samples" if limit else "cancelled"
        self.log(peer.label, f"telemetry opened: every {request.intervalMs} ms until {until}")
        start = time.perf_counter()
        seq = 0
        while limit is None or seq < limit:
            if self.stopping.is_set():
                break
            # Waits while the reader's credit is spent: a slow reader slows
            # us down instead of filling a buffer.
            await items.send(self._sample(seq))
            seq += 1
            if interval:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), interval)
            else:
                await asyncio.sleep(0)
        elapsed = (time.perf_counter() - start) * 1000
        why = "the shutdown" if self.stopping.is_set() and seq != limit else "its end"
        self.log(peer.label, f"telemetry closed by {why}: {seq} samples in {elapsed:.1f} ms")

    def _sample(self, seq: int) -> SampleT:
        self.vehicle.advance()
        uptime = time.monotonic() - self.started
        temperature = 21.5 + 1.5 * math.sin(uptime / 3) + 0.05 * float(self.rng.standard_normal())
        return SampleT(
            seq=seq,
            timeMs=int(uptime * 1000),
            temperatureC=temperature,
            position=Vec3T(x=self.vehicle.x, y=self.vehicle.y, z=0.0),
        )

    # ----- chart.ChartEvents ----------------------------------------------------------------

    async def clicked(self, ctx: gc.CallContext, event: ClickedT) -> None:
        peer = self.peer(ctx)
        key = next((k for k, v in peer.charts.items() if v == event.chart), None)
        name = repr(key) if key is not None else f"#{event.chart}"
        self.log(peer.label, f"clicked chart {name} at x={event.x:.3f}, y={event.y:.3f} (event)")

    # ----- the chart session ---------------------------------------------------------------

    async def _chart_session(self, peer: Peer) -> None:
        try:
            await self._drive_charts(peer)
        except gw.RpcError as e:
            # The page went away (a reload) or the gateway is stopping.
            self.log(peer.label, f"chart session ended: {e}")
        except Exception as e:
            self.log(peer.label, f"chart session FAILED: {e!r}")

    async def _drive_charts(self, peer: Peer) -> None:
        charts = ChartClient(peer.conn)
        n = self.points
        self.log(peer.label, "the page offers chart.Chart: driving its charts")

        # Create by key, twice: the page returns the chart it already has.
        main = await charts.create(
            CreateChartT(key="main", title="random walk"), timeout=CALL_TIMEOUT
        )
        again = await charts.create(
            CreateChartT(key="main", title="random walk"), timeout=CALL_TIMEOUT
        )
        peer.charts["main"] = main.id
        if again.id != main.id:
            raise SessionError(f"Create('main') returned chart {main.id}, then chart {again.id}")
        self.log(
            peer.label, f"Create 'main' -> chart {main.id}; again -> chart {again.id} (same chart)"
        )

        title = "Random walk from Python (numpy float64)"
        await charts.set_title(SetTitleT(chart=main.id, title=title), timeout=CALL_TIMEOUT)
        got = (await charts.get_title(ChartRefT(id=main.id), timeout=CALL_TIMEOUT)).title
        if got != title:
            raise SessionError(f"title read back as {got!r}, set {title!r}")
        self.log(peer.label, f"SetTitle, then GetTitle -> {got!r}")

        xs = np.arange(n, dtype=np.float64) * 1e-3
        ys = np.cumsum(self.rng.standard_normal(n))
        result = await self._stream_points(peer, charts, main.id, xs, ys)
        self.log(peer.label, f"probe round trip during the transfer: {_stats(result.probes)}")
        # The same probe with nothing else in flight, for comparison.
        idle = [await _probe(charts) for _ in range(IDLE_PROBES)]
        self.log(peer.label, f"probe round trip, idle: {_stats(idle)}")

        # The probes' round trips, as a second chart (the seed plotted its
        # ping times the same way).
        rtt = await charts.create(
            CreateChartT(key="probe-rtt", title="probe round trips during the transfer (ms)"),
            timeout=CALL_TIMEOUT,
        )
        peer.charts["probe-rtt"] = rtt.id
        during = np.asarray(result.probes, dtype=np.float64)
        added = await charts.add_points(
            PointsT(chart=rtt.id, xs=np.arange(len(during), dtype=np.float64), ys=during),
            timeout=CALL_TIMEOUT,
        )
        self.log(peer.label, f"AddPoints to 'probe-rtt' (chart {rtt.id}): {added.total} point(s)")

        mb = xs.nbytes + ys.nbytes
        self.log(
            peer.label,
            f"chart session done: {result.total:,} points ({mb / 1e6:.1f} MB) in"
            f" {result.ms:.1f} ms ({mb / 1e6 / (result.ms / 1000):.1f} MB/s),"
            f" {result.batches} batches, {result.stalls} wait(s) for credit;"
            f" probe idle p50 {_pct(idle, 50):.2f} ms;"
            f" during transfer p50 {_pct(result.probes, 50):.2f} ms"
            f" max {max(result.probes, default=0.0):.2f} ms (n={len(result.probes)})",
        )

    async def _stream_points(
        self,
        peer: Peer,
        charts: ChartClient,
        chart: int,
        xs: npt.NDArray[np.float64],
        ys: npt.NDArray[np.float64],
    ) -> Transfer:
        n = len(xs)
        done = asyncio.Event()
        probes: list[float] = []

        async def probe_loop() -> None:
            # One probe after the other, until the page has every point.
            while not done.is_set() and len(probes) < MAX_PROBES:
                probes.append(await _probe(charts))

        conn = peer.conn
        stalls = conn.stats().credit_stalls
        self.log(
            peer.label,
            f"StreamPoints: {n:,} points in batches of {self.batch:,}, probing meanwhile",
        )
        start = time.perf_counter()
        sink, reply = await charts.stream_points(timeout=TRANSFER_TIMEOUT)
        prober = asyncio.ensure_future(probe_loop())
        try:
            batches = 0
            for i in range(0, n, self.batch):
                # Slices are views: flatc copies each into the message once.
                await sink.send(
                    PointsT(chart=chart, xs=xs[i : i + self.batch], ys=ys[i : i + self.batch])
                )
                batches += 1
            await sink.finish()
            added = await reply
            ms = (time.perf_counter() - start) * 1000
        finally:
            done.set()
        await prober
        if added.total != n:
            raise SessionError(f"the page counted {added.total} points, {n} were sent")
        return Transfer(
            total=added.total,
            ms=ms,
            batches=batches,
            stalls=conn.stats().credit_stalls - stalls,
            probes=probes,
        )


@dataclasses.dataclass
class Transfer:
    """One points stream, measured."""

    total: int
    ms: float
    batches: int
    stalls: int
    probes: list[float]


class SessionError(Exception):
    """The page answered something the chart session did not expect."""


async def _probe(charts: ChartClient) -> float:
    """One probe round trip, in ms."""
    reply = await charts.probe(ProbeT(sentNs=time.monotonic_ns()), timeout=PROBE_TIMEOUT)
    return (time.monotonic_ns() - reply.sentNs) / 1e6


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def _stats(values: list[float]) -> str:
    return f"p50 {_pct(values, 50):.2f} ms, max {max(values, default=0.0):.2f} ms (n={len(values)})"


def _check_setting(key: str, value: str) -> str | None:
    """Why ``key = value`` cannot be applied, or ``None``."""
    if key == "name":
        return None if 0 < len(value) <= 64 else "name must hold 1 to 64 characters"
    if key == "mode":
        return None if value in ("eco", "normal", "sport") else "mode must be eco, normal or sport"
    if key == "max_speed":
        try:
            speed = float(value)
        except ValueError:
            return f"max_speed must be a number, not {value!r}"
        ok = math.isfinite(speed) and 0 <= speed <= SPEED_LIMIT
        return None if ok else f"max_speed must be within 0..{SPEED_LIMIT:g} m/s, not {value}"
    return f"unknown setting {key!r} (name, mode, max_speed)"


def _answer(text: str, count: int, config: dict[str, str], vehicle: Vehicle) -> str:
    """The gateway's reply to a chat message."""
    words = text.lower().split()
    if "where" in words or "position" in words:
        vehicle.advance()
        return f"#{count}: I am at x={vehicle.x:.2f} m, y={vehicle.y:.2f} m"
    if "mode" in words:
        return f"#{count}: mode {config['mode']}, max speed {config['max_speed']} m/s"
    return f"#{count}: received {text!r} ({len(text)} characters)"


# ----- main --------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    timeline = Timeline()
    private = tempfile.mkdtemp(prefix="gw-pair-")  # mode 0700
    unix_url = f"unix://{private}/gw.sock" if args.unix is None else f"unix://{args.unix}"
    servers: list[gw.Server] = []

    def clients() -> int:
        return sum(len(s.connections()) for s in servers)

    gateway = Gateway(
        timeline, name=args.name, points=args.points, batch=args.batch, clients=clients
    )
    site: PageSite | None = None
    try:
        ws_host = urlsplit(args.ws.replace("ws://", "http://", 1)).hostname or "127.0.0.1"
        # The page learns the WebSocket URL from /gw.json once it is bound.
        config: dict[str, str] = {}
        site = PageSite(ws_host, args.http_port, config)
        local = await gw.serve(
            [unix_url],
            GatewayService.route(gw.Router(), gateway),
            offers=[GatewayService.descriptor()],
            authenticator=gw.UnixPeerAuthenticator(),
        )
        servers.append(local)
        router = ChartEventsService.route(GatewayService.route(gw.Router(), gateway), gateway)
        desktop = await gw.serve(
            [args.ws],
            router,
            offers=[GatewayService.descriptor(), ChartEventsService.descriptor()],
            uses=[ChartService.descriptor()],
            ws_origins=site.origins,
        )
        servers.append(desktop)
        config["ws"] = desktop.urls[0]
        site.start()
        timeline.log("gateway", f"listening {local.urls[0]} (private directory, our uid only)")
        timeline.log("gateway", f"listening {desktop.urls[0]} (origin {site.url.rstrip('/')} only)")
        timeline.log("gateway", f"page {site.url}")
        if not (WEB / "dist").is_dir():
            timeline.log("gateway", "the page is not built: see examples/gateway-pair/README.md")
        timeline.log("gateway", "ready")

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

        open_calls = sum(c.stats().calls_in for s in servers for c in s.connections())
        timeline.log(
            "gateway",
            f"shutting down: GOAWAY to {clients()} connection(s), {open_calls} call(s)"
            " or stream(s) in flight finish first",
        )
        start = time.perf_counter()
        gateway.stopping.set()
        try:
            await asyncio.wait_for(asyncio.gather(*(s.close() for s in servers)), args.drain)
        except asyncio.TimeoutError:
            for s in servers:
                for c in s.connections():
                    c.abort()
            timeline.log("gateway", f"calls still running after {args.drain:g} s: aborted")
            return 1
        timeline.log(
            "gateway",
            f"closed gracefully in {(time.perf_counter() - start) * 1000:.1f} ms",
        )
        return 0
    finally:
        for s in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.close(), 1)
            for c in s.connections():
                c.abort()
        for task in gateway.sessions:
            task.cancel()
        pending = gateway.sessions | gateway.watchers
        if pending:
            await asyncio.wait(pending, timeout=2)
        if site is not None:
            site.close()
        shutil.rmtree(private, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="The gateway daemon of the desktop <-> gateway pair (see README.md).",
    )
    parser.add_argument(
        "--unix",
        metavar="PATH",
        help="Unix socket path (default: gw.sock in a fresh private 0700 directory)",
    )
    parser.add_argument(
        "--ws",
        metavar="URL",
        default="ws://127.0.0.1:0/gw",
        help="WebSocket endpoint (default: %(default)s, a port chosen by the OS)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=0,
        metavar="PORT",
        help="port of the page's HTTP server on the WebSocket's host (default: chosen by the OS)",
    )
    parser.add_argument("--name", default="gw-1", help="the gateway's name (default: %(default)s)")
    parser.add_argument(
        "--points",
        type=int,
        default=1_000_000,
        help="points sent to each page's chart (default: %(default)s)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=50_000,
        help="points per stream message; 16 bytes each (default: %(default)s = 800 kB)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time allowed for the graceful shutdown (default: %(default)s)",
    )
    args = parser.parse_args()
    if not 1 <= args.points <= 4_000_000:
        parser.error("--points must be within 1..4,000,000")
    if not 1 <= args.batch <= 60_000:
        parser.error("--batch must be within 1..60,000 (a message holds at most 1 MiB)")
    if not args.ws.startswith("ws://"):
        parser.error("--ws must be a ws:// URL")
    try:
        return asyncio.run(serve(args))
    except (gw.RpcError, OSError) as e:
        print(f"gateway: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
