"""The desktop <-> gateway demo: a Python gateway daemon, a local client on
its Unix socket, and a desktop page in headless Chromium on its WebSocket.

It builds the page (tsc), starts ``gateway.py``, runs ``cli.py`` against the
Unix socket, opens the page in headless Chromium (``desktop.mjs``), lets the
gateway drive the page's charts (1,000,000 points, probes in flight), clicks
a chart, reloads the page and checks that no chart is duplicated, then stops
the gateway gracefully and prints a summary. It exits with status 1 when any
step fails or a bound is exceeded.

``--serve`` keeps the gateway and the page running for a browser of your own
instead, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
JS = ROOT / "bindings" / "js"
GENERATED_TS = ROOT / "examples" / "schemas" / "ts"

_GATEWAY_LINE = re.compile(r"^\s*\d+\.\d ms  (\S+)\s+(.*)$")
_SESSION = re.compile(
    r"chart session done: (?P<points>[\d,]+) points \((?P<mb>[\d.]+) MB\) in (?P<ms>[\d.]+) ms"
    r" \((?P<rate>[\d.]+) MB/s\), (?P<batches>\d+) batches, (?P<stalls>\d+) wait\(s\) for credit;"
    r" probe idle p50 (?P<idle>[\d.]+) ms; during transfer p50 (?P<p50>[\d.]+) ms"
    r" max (?P<max>[\d.]+) ms \(n=(?P<n>\d+)\)"
)


class DemoError(Exception):
    """A step failed; the message says which and why."""


class Interrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM reached the demo."""


def _stop_on_signals() -> None:
    """Turns the first SIGINT or SIGTERM into :class:`Interrupted` (the
    children run in their own process groups, so the demo stops them in
    order); later ones are ignored while it does."""

    def handler(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class Timeline:
    """The demo's output: ``<ms> ms  <who>  <what>`` lines from every
    process, in the order they arrive."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self._lock = threading.Lock()

    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    def log(self, who: str, what: str) -> None:
        with self._lock:
            print(f"{self.ms():9.1f} ms  {who:<9} {what}", flush=True)


class Child:
    """A process whose output lines are shown on the timeline as they come
    and queued for :meth:`expect`."""

    def __init__(
        self,
        timeline: Timeline,
        name: str,
        argv: list[str],
        show: Callable[[str], tuple[str, str] | None],
        *,
        stdin: bool = False,
    ) -> None:
        self.name = name
        self.timeline = timeline
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            # Its own process group: Ctrl-C reaches the demo only, which
            # then stops its children in order.
            start_new_session=True,
        )
        self._threads = [
            threading.Thread(target=self._read_out, args=(show,), daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_out(self, show: Callable[[str], tuple[str, str] | None]) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            shown = show(line)
            if shown is not None:
                self.timeline.log(*shown)
            self.lines.put(line)
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.rstrip("\n")
            self.errors.append(line)
            self.timeline.log(f"{self.name}!", line)

    def expect(self, pattern: str, deadline: Deadline, what: str) -> re.Match[str]:
        """Waits for an output line matching ``pattern``; earlier lines are
        skipped.

        Raises:
            DemoError: the process ended first, or ``deadline`` passed.
        """
        rx = re.compile(pattern)
        while True:
            try:
                line = self.lines.get(timeout=deadline.left(what))
            except queue.Empty:
                raise DemoError(f"{self.name}: no {what} within {deadline.seconds:g} s") from None
            if line is None:
                self.lines.put(None)
                raise DemoError(f"{self.name} ended (status {self.proc.wait()}) before {what}")
            match = rx.search(line)
            if match is not None:
                return match

    def send(self, line: str) -> None:
        """Writes a command line to the process."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise DemoError(f"{self.name} no longer reads commands: {e}") from None

    def wait(self, seconds: float) -> int:
        """Waits for the process to exit; kills its process group after
        ``seconds``."""
        try:
            code = self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DemoError(f"{self.name} did not exit within {seconds:g} s") from None
        for t in self._threads:
            t.join(timeout=5)
        return code

    def kill(self) -> None:
        """Kills the process and its process group (Chromium included)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@dataclasses.dataclass
class Deadline:
    """A bound on one step, within the demo's overall budget."""

    seconds: float
    overall: float

    def __post_init__(self) -> None:
        self.at = min(time.monotonic() + self.seconds, self.overall)

    def left(self, what: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise DemoError(f"no {what} within {self.seconds:g} s (or the demo's --timeout)")
        return left


# ----- steps ------------------------------------------------------------------------------------


def _node(args: argparse.Namespace) -> str:
    node = args.node or shutil.which("node")
    if node is None:
        raise DemoError("node is not on PATH (Node >= 20; or pass --node)")
    return node


def check_setup(args: argparse.Namespace) -> None:
    """Raises DemoError naming the setup step that is missing."""
    missing = []
    if not (JS / "dist" / "index.js").is_file():
        missing.append(
            "the TypeScript package is not built: (cd bindings/js && npm ci && npm run build)"
        )
    if not (JS / "node_modules" / ".bin" / "tsc").exists():
        missing.append("bindings/js/node_modules is missing: (cd bindings/js && npm ci)")
    for stub in ("gateway_gatewire.ts", "chart_gatewire.ts"):
        if not (GENERATED_TS / stub).is_file():
            missing.append(f"examples/schemas/ts/{stub} is missing: cargo xtask codegen")
    if not args.serve and not Path(args.chromium).exists():
        missing.append(
            f"no Chromium at {args.chromium}: apt-get install -y chromium (or --chromium PATH)"
        )
    try:
        import flatbuffers  # noqa: F401, PLC0415
        import numpy  # noqa: F401, PLC0415
        import websockets  # noqa: F401, PLC0415

        import gatewire  # noqa: F401, PLC0415
    except ImportError as e:
        missing.append(
            f"{e.name} is not importable by {sys.executable}:"
            " pip install -e 'bindings/python[test]' in the venv that runs the demo"
        )
    if missing:
        raise DemoError("setup missing:\n  " + "\n  ".join(missing))


def build_page(timeline: Timeline, deadline: Deadline) -> float:
    """Compiles the page (and the generated TypeScript it imports) into
    ``web/dist``; returns the milliseconds it took."""
    start = time.perf_counter()
    shutil.rmtree(HERE / "web" / "dist", ignore_errors=True)
    tsc = JS / "node_modules" / ".bin" / "tsc"
    try:
        done = subprocess.run(
            [str(tsc), "-p", str(HERE / "web" / "tsconfig.json")],
            capture_output=True,
            text=True,
            timeout=deadline.left("page build"),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DemoError("tsc did not finish in time") from None
    if done.returncode != 0:
        raise DemoError(f"tsc failed:\n{done.stdout}{done.stderr}")
    ms = (time.perf_counter() - start) * 1000
    timeline.log(
        "demo", f"page built: tsc -p web/tsconfig.json in {ms:.0f} ms (strict, ESM, no bundler)"
    )
    return ms


def _show_gateway(line: str) -> tuple[str, str]:
    match = _GATEWAY_LINE.match(line)
    return (match.group(1), match.group(2)) if match else ("gateway", line)


@dataclasses.dataclass
class Endpoints:
    unix: str
    ws: str
    page: str


def start_gateway(
    timeline: Timeline, args: argparse.Namespace, deadline: Deadline
) -> tuple[Child, Endpoints]:
    argv = [sys.executable, str(HERE / "gateway.py"), "--points", str(args.points)]
    argv += ["--batch", str(args.batch), "--ws", f"ws://127.0.0.1:{args.ws_port}/gw"]
    argv += ["--http-port", str(args.http_port)]
    gateway = Child(timeline, "gateway", argv, _show_gateway)
    unix = gateway.expect(r"listening (unix://\S+)", deadline, "Unix socket").group(1)
    ws = gateway.expect(r"listening (ws://\S+)", deadline, "WebSocket").group(1)
    page = gateway.expect(r"page (http://\S+)", deadline, "page URL").group(1)
    gateway.expect(r"\bready$", deadline, "readiness")
    return gateway, Endpoints(unix, ws, page)


def run_cli(timeline: Timeline, unix: str, deadline: Deadline) -> list[str]:
    """Runs cli.py commands against the Unix socket; returns them."""
    commands = [["status"], ["config"], ["drive", "right", "1.5"], ["telemetry", "20"]]
    checks = ["status: gw-1", "max_speed = 2.0", "drive: sent right", "telemetry: 20 samples"]
    for command, check in zip(commands, checks, strict=True):
        argv = [sys.executable, str(HERE / "cli.py"), unix, *command]
        timeline.log("demo", f"cli.py {unix} {' '.join(command)}")
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=deadline.left("cli command"),
                check=False,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            )
        except subprocess.TimeoutExpired:
            raise DemoError(f"cli.py {' '.join(command)} did not finish in time") from None
        for line in done.stdout.splitlines():
            timeline.log("cli", line)
        if done.returncode != 0 or check not in done.stdout:
            raise DemoError(f"cli.py {' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return [" ".join(c) for c in commands]


def _show_desktop(line: str) -> tuple[str, str] | None:
    for prefix, who in (("[desktop] ", "desktop"), ("[chromium] ", "chromium")):
        if line.startswith(prefix):
            return who, line[len(prefix) :]
    if line.startswith("@"):
        # Answers to the demo's commands: shown by the step that reads them.
        return None
    return "desktop", line


def _answer(desktop: Child, what: str, deadline: Deadline) -> dict[str, Any]:
    match = desktop.expect(rf"^@(?:{what}|error) (.*)$", deadline, f"@{what}")
    if match.group(0).startswith("@error"):
        raise DemoError(f"desktop: {json.loads(match.group(1))}")
    value = json.loads(match.group(1))
    if not isinstance(value, dict):
        raise DemoError(f"desktop: unexpected answer {match.group(0)}")
    return value


def check_charts(charts: dict[str, Any], points: int) -> dict[str, Any]:
    """The page holds each chart once, on one canvas; 'main' holds every
    point. Returns 'main'."""
    listed = charts.get("charts", [])
    keys = [c["key"] for c in listed]
    if sorted(keys) != ["main", "probe-rtt"] or charts.get("canvases") != len(keys):
        raise DemoError(f"charts duplicated or missing: {keys}, {charts.get('canvases')} canvases")
    for c in listed:
        if c["canvases"] != 1:
            raise DemoError(f"chart {c['key']!r} is drawn on {c['canvases']} canvases")
    main = next(c for c in listed if c["key"] == "main")
    if main["points"] != points:
        raise DemoError(f"chart 'main' holds {main['points']} points, {points} were sent")
    if charts.get("pageErrors"):
        raise DemoError(f"the page reported {charts['pageErrors']} error(s)")
    return dict(main)


@dataclasses.dataclass
class Results:
    tsc_ms: float = 0.0
    endpoints: Endpoints | None = None
    cli: list[str] = dataclasses.field(default_factory=list)
    browser: str = ""
    pages: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sessions: list[dict[str, str]] = dataclasses.field(default_factory=list)
    charts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    clicked: bool = False
    closed: dict[str, Any] = dataclasses.field(default_factory=dict)
    shutdown_ms: float = 0.0


def run_desktop(
    timeline: Timeline,
    args: argparse.Namespace,
    gateway: Child,
    endpoints: Endpoints,
    results: Results,
    overall: float,
) -> None:
    argv = [_node(args), str(HERE / "desktop.mjs"), endpoints.page]
    argv += ["--chromium", args.chromium, "--timeout-ms", str(int(args.step_timeout * 1000))]
    if args.page_credit is not None:
        argv += ["--query", f"credit={args.page_credit}"]
    desktop = Child(timeline, "desktop", argv, _show_desktop, stdin=True)
    step = args.step_timeout
    try:
        browser = desktop.expect(r"^\[chromium\] (\S+)", Deadline(step, overall), "Chromium")
        results.browser = browser.group(1)
        for load in ("load", "reload"):
            if load == "reload":
                timeline.log("demo", "reloading the page: the gateway re-sends its charts by key")
                desktop.send("reload")
            page = _answer(desktop, "page", Deadline(step, overall))
            results.pages.append(page)
            timeline.log("demo", f"page done ({load}) in {page['loadMs']} ms")
            session = gateway.expect(
                rf"{_SESSION.pattern}|chart session (?:FAILED|ended): .*",
                Deadline(step, overall),
                "chart session",
            )
            if session.group("points") is None:
                raise DemoError(f"gateway: {session.group(0)}")
            results.sessions.append(session.groupdict())
            desktop.send("inspect")
            charts = _answer(desktop, "charts", Deadline(step, overall))
            main = check_charts(charts, args.points)
            results.charts.append(charts)
            timeline.log(
                "demo",
                f"charts on the page: {charts['canvases']} canvases, 'main' holds"
                f" {main['points']:,} points (not duplicated)",
            )
            if load == "load":
                desktop.send("click main")
                _answer(desktop, "clicked", Deadline(step, overall))
                gateway.expect(r"clicked chart 'main'", Deadline(step, overall), "the click")
                results.clicked = True

        # The page keeps its chat and telemetry streams open: the gateway's
        # graceful shutdown must end them and close the connection cleanly.
        desktop.send("await-close")
        start = time.perf_counter()
        timeline.log("demo", "SIGTERM to the gateway: graceful shutdown")
        gateway.proc.send_signal(signal.SIGTERM)
        gateway.expect(r"closed gracefully", Deadline(args.drain, overall), "graceful close")
        code = gateway.wait(args.drain)
        results.shutdown_ms = (time.perf_counter() - start) * 1000
        if code != 0:
            raise DemoError(f"the gateway exited with status {code}")
        closed = _answer(desktop, "closed", Deadline(step, overall))
        results.closed = closed
        if not (
            closed.get("graceful") and closed.get("chatEnded") and closed.get("telemetryEnded")
        ):
            raise DemoError(f"the page did not see a graceful close: {closed}")
        desktop.send("exit")
        bye = _answer(desktop, "bye", Deadline(step, overall))
        if desktop.wait(step) != 0 or bye.get("pageErrors"):
            raise DemoError(f"the desktop failed: {bye}")
    finally:
        if desktop.proc.poll() is None:
            with contextlib.suppress(DemoError, OSError):
                assert desktop.proc.stdin is not None
                desktop.proc.stdin.close()
                desktop.wait(10)
        desktop.kill()


def summary(results: Results) -> None:
    e = results.endpoints
    assert e is not None
    out = [
        ("build", f"page compiled by tsc in {results.tsc_ms:.0f} ms"),
        ("gateway", f"gateway.py (gatewire.aio): {e.unix} and {e.ws}; page {e.page}"),
        (
            "cli",
            f"{len(results.cli)} commands over the Unix socket (gatewire.sync,"
            f" GatewaySyncClient): {', '.join(results.cli)}",
        ),
    ]
    first = results.pages[0] if results.pages else {}
    if first:
        out.append(
            (
                "desktop",
                f"Chromium {results.browser} (headless) over WebSocket, connected in"
                f" {first['connectMs']} ms: status, config (max_speed=99 refused:"
                f" {first['refusedCode']}), {first['drives']} drive events,"
                f" {len(first['chatReplies'])} chat replies, {first['samples']} telemetry samples",
            )
        )
    for i, s in enumerate(results.sessions):
        out.append(
            (
                "chart" if i == 0 else "again",
                f"{s['points']} points ({s['mb']} MB float64) in {s['ms']} ms ({s['rate']} MB/s),"
                f" {s['batches']} batches, {s['stalls']} waits for the page's credit",
            )
        )
        out.append(
            (
                "probe",
                f"round trip idle p50 {s['idle']} ms; while the points were in flight"
                f" p50 {s['p50']} ms, max {s['max']} ms ({s['n']} probes)",
            )
        )
    if len(results.charts) == 2:
        c = results.charts[1]
        out.append(
            (
                "refresh",
                f"after the reload: {len(c['charts'])} charts on {c['canvases']} canvases,"
                " 'main' created twice by key -> one chart (not duplicated)",
            )
        )
    if results.clicked:
        out.append(
            ("click", "a click on chart 'main' reached the gateway (chart.ChartEvents/Clicked)")
        )
    if results.closed:
        out.append(
            (
                "shutdown",
                f"SIGTERM -> GOAWAY; the gateway ended the page's chat and telemetry streams;"
                f" the page saw a graceful close; gateway exit 0 in {results.shutdown_ms:.0f} ms",
            )
        )
    print(flush=True)
    print("summary", flush=True)
    for who, what in out:
        print(f"  {who:<9} {what}", flush=True)


def demo(args: argparse.Namespace) -> int:
    timeline = Timeline()
    overall = time.monotonic() + args.timeout
    results = Results()
    gateway: Child | None = None
    try:
        check_setup(args)
        results.tsc_ms = build_page(timeline, Deadline(120, overall))
        gateway, results.endpoints = start_gateway(
            timeline, args, Deadline(args.step_timeout, overall)
        )
        if args.serve:
            return serve(timeline, gateway, results.endpoints, args)
        results.cli = run_cli(
            timeline, results.endpoints.unix, Deadline(args.step_timeout, overall)
        )
        run_desktop(timeline, args, gateway, results.endpoints, results, overall)
        if gateway.errors:
            raise DemoError(f"the gateway wrote {len(gateway.errors)} line(s) to stderr")
    except DemoError as e:
        timeline.log("demo", f"FAILED: {e}")
        return 1
    except Interrupted as e:
        timeline.log("demo", f"{e}: stopped before the end")
        return 130
    finally:
        if gateway is not None and gateway.proc.poll() is None:
            gateway.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(DemoError):
                gateway.wait(args.drain)
            gateway.kill()
    summary(results)
    print(f"  {'result':<9} ok in {timeline.ms() / 1000:.1f} s", flush=True)
    return 0


def serve(
    timeline: Timeline, gateway: Child, endpoints: Endpoints, args: argparse.Namespace
) -> int:
    """Keeps the gateway running for a browser until Ctrl-C."""
    timeline.log("demo", f"open {endpoints.page} in a browser; Ctrl-C stops the gateway")
    timeline.log(
        "demo",
        f"and from another shell: python examples/gateway-pair/cli.py {endpoints.unix} status",
    )
    try:
        while gateway.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.proc.wait(timeout=3600)
    except Interrupted as e:
        timeline.log("demo", f"{e}: stopping the gateway gracefully")
        gateway.proc.send_signal(signal.SIGTERM)
    code = gateway.wait(args.drain)
    timeline.log("demo", f"gateway exited with status {code}")
    return 0 if code == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(
            "The desktop <-> gateway demo: builds the page, starts gateway.py, runs cli.py on its"
            " Unix socket, drives the page in headless Chromium over its WebSocket (1,000,000"
            " chart points with probes in flight, a click, a reload that must not duplicate"
            " charts), stops the gateway gracefully and prints a summary. Exits 1 on failure."
        ),
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="only build the page and run the gateway for a browser of your own; Ctrl-C stops it",
    )
    parser.add_argument(
        "--points", type=int, default=1_000_000, help="chart points (default: %(default)s)"
    )
    parser.add_argument(
        "--batch", type=int, default=50_000, help="points per stream message (default: %(default)s)"
    )
    parser.add_argument(
        "--page-credit",
        type=int,
        metavar="KIB",
        help="the page's receive window per stream, in KiB (default: the protocol's 256):"
        " a larger one queues the probes behind more bulk data",
    )
    parser.add_argument(
        "--http-port", type=int, default=0, help="the page's HTTP port (default: chosen by the OS)"
    )
    parser.add_argument(
        "--ws-port",
        type=int,
        default=0,
        help="the gateway's WebSocket port (default: chosen by the OS)",
    )
    parser.add_argument(
        "--chromium",
        default=os.environ.get("GATEWIRE_CHROMIUM", "/usr/bin/chromium"),
        help="the Chromium binary (default: $GATEWIRE_CHROMIUM or %(default)s)",
    )
    parser.add_argument("--node", help="the node binary (default: node on PATH)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds for the whole demo (default: %(default)s)",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=30.0,
        help="seconds for each step (default: %(default)s)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=15.0,
        help="seconds for the graceful shutdown (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.page_credit is not None and not 1 <= args.page_credit <= 1 << 20:
        parser.error("--page-credit must be within 1..1048576 KiB")
    _stop_on_signals()
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
