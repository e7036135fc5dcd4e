#!/usr/bin/env python3
"""The Python benchmark: gatewire's Python package against its peers, in one
run, pinned (``taskset -c 0``) and unpinned, repetitions interleaved
(A, B, A, B...), medians reported. JSON lines on stdout (one per measurement,
then the medians and the goals), a readable summary on stderr.

    python3 bindings/python/bench/run.py --setup   # venv, npm packages, JS build, Rust peer
    python3 bindings/python/bench/run.py           # the full run (sets up what is missing)
    python3 bindings/python/bench/run.py --quick   # tiny counts, one repetition

What it measures (see README.md): small calls Python client -> Python
server (and -> the Rust peer) for sequential latency and throughput with 64
in flight; 1,000,000 (x, y) float64 points Python -> Node until the Node
peer acknowledges; and a small call answered during that transfer.

Only the standard library is used here; the measured processes run in the
venv ``target/bench-venv``. Before each timed repetition the runner waits
until no build is running (rustc, cargo, cc1, ld, tsc, node --test) and
records any wait; a repetition during which a build started is measured
again.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[2]
VENV = ROOT / "target" / "bench-venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = BENCH / "requirements.txt"
NODE_DIR = BENCH / "node"
JS_DIR = ROOT / "bindings" / "js"
JS_ENTRY = JS_DIR / "dist" / "node" / "index.js"
INTEROP_PEER = Path(
    os.environ.get("GATEWIRE_INTEROP_PEER", ROOT / "target" / "release" / "interop-peer")
)

BUILD_TOOLS = frozenset(
    {
        "rustc",
        "cargo",
        "cc1",
        "cc1plus",
        "collect2",
        "ld",
        "ld.bfd",
        "ld.gold",
        "ld.lld",
        "rust-lld",
    }
)
"""Process names that mean something is being built (plus ``tsc`` and
``node --test``, recognised from their command line)."""

IN_FLIGHT = 64
RETRIES = 3
"""Times a disturbed repetition is measured again."""
OTHERS_MAX = 0.1
"""A repetition during which other processes used more than this much of
a CPU is disturbed."""
STRICT_WAIT = 300
"""Seconds a disturbed repetition waits at most for the machine to idle."""
PF_KTHREAD = 0x00200000
OURS: set[int] = set()
"""The runner, its ancestors and its children."""


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ----- setup -----------------------------------------------------------------


def _run(argv: list[str | Path], cwd: Path = ROOT) -> None:
    log("+", " ".join(str(a) for a in argv))
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, stdout=sys.stderr)


def setup(force: bool) -> None:
    """Installs what the run needs, rebuilds the JS package when its sources
    changed and the Rust peer when cargo says so; with ``force``, everything
    again."""
    digest = hashlib.sha256(
        REQUIREMENTS.read_bytes() + (ROOT / "bindings/python/pyproject.toml").read_bytes()
    ).hexdigest()
    stamp = VENV / ".bench-requirements"
    if force or not stamp.exists() or stamp.read_text() != digest:
        _run([sys.executable, "-m", "venv", VENV])
        _run([PYTHON, "-m", "pip", "install", "-q", "-r", REQUIREMENTS])
        _run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "-e", ROOT / "bindings/python"])
        stamp.write_text(digest)
    if force or not (NODE_DIR / "node_modules").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR)
    if force or not (JS_DIR / "node_modules").exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR)
    built = JS_ENTRY.stat().st_mtime if JS_ENTRY.exists() else 0.0
    if force or any(p.stat().st_mtime > built for p in (JS_DIR / "src").rglob("*.ts")):
        _run(["npm", "run", "build"], cwd=JS_DIR)
    if "GATEWIRE_INTEROP_PEER" not in os.environ:
        _run(["cargo", "build", "--release", "--locked", "-p", "gatewire-interop"])


# ----- builds in progress ----------------------------------------------------


def _ancestors() -> set[int]:
    """This process and its ancestors (``cargo xtask bench`` is a cargo)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return pids


OURS.update(_ancestors())


def builds_running() -> list[str]:
    """The build processes running now, as ``name[pid]``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in OURS:
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if stat[stat.rindex(")") + 2] == "Z":
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if name == "node" and ("--test" in args or any(Path(a).name == "tsc" for a in args[1:3])):
            name = "tsc" if "--test" not in args else "node --test"
        elif name not in BUILD_TOOLS:
            continue
        found.append(f"{name}[{entry.name}]")
    return found


def cpu_ticks() -> dict[int, int]:
    """CPU time (user + system, in clock ticks) of every user-space process."""
    ticks = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if not int(fields[6]) & PF_KTHREAD:
            ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def others_cpu(before: dict[int, int], after: dict[int, int], seconds: float) -> float:
    """CPUs' worth of time used by processes other than the benchmark's."""
    used = sum(t - before.get(pid, 0) for pid, t in after.items() if pid not in OURS)
    return used / os.sysconf("SC_CLK_TCK") / seconds


def wait_quiet(strict: bool) -> tuple[float, list[str]]:
    """Waits until no build runs and, if ``strict``, until other processes
    use less than ``OTHERS_MAX`` of a CPU over a second (at most
    ``STRICT_WAIT`` seconds). Returns the seconds waited and the names of
    the builds that ran."""
    start = time.monotonic()
    seen: set[str] = set()
    announced = 0.0
    while True:
        running = builds_running()
        if not running and strict and time.monotonic() - start < STRICT_WAIT:
            before = cpu_ticks()
            time.sleep(1.0)
            busy = others_cpu(before, cpu_ticks(), 1.0)
            if busy > OTHERS_MAX:
                running = [f"other processes ({busy:.0%} of a CPU)"]
        if not running:
            return time.monotonic() - start, sorted(seen)
        seen.update(r.split("[")[0] for r in running if "%" not in r)
        now = time.monotonic()
        if not announced or now - announced > 30:
            log(f"waiting: {', '.join(sorted(running)[:6])}")
            announced = now
        time.sleep(1.0)


# ----- processes -------------------------------------------------------------


class Proc:
    """A child process spoken to by lines on stdin and stdout."""

    def __init__(self, name: str, argv: list[str], pinned: bool) -> None:
        self.name = name
        prefix = ["taskset", "-c", "0"] if pinned else []
        self._p = subprocess.Popen(
            prefix + argv, cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        OURS.add(self._p.pid)
        assert self._p.stdin is not None and self._p.stdout is not None
        self._stdin = self._p.stdin
        self._fd = self._p.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = b""

    def readline(self, timeout: float, watch: list[str] | None = None) -> str:
        """The next line. With ``watch``, builds seen running meanwhile are
        added to it."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no answer within {timeout:.0f} s")
                if sel.select(min(left, 0.5)):
                    chunk = os.read(self._fd, 65536)
                    if not chunk:
                        raise RuntimeError(f"{self.name} exited ({self._p.wait()})")
                    self._buffer += chunk
                elif watch is not None:
                    watch.extend(b for b in builds_running() if b not in watch)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def send(self, obj: dict[str, Any]) -> None:
        self._stdin.write(json.dumps(obj).encode() + b"\n")
        self._stdin.flush()

    def stop(self) -> None:
        """Closes stdin (every child exits on it), then insists."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._p.wait(10)
        except subprocess.TimeoutExpired:
            self._p.terminate()
            try:
                self._p.wait(5)
            except subprocess.TimeoutExpired:
                self._p.kill()
                self._p.wait()


# ----- what is measured ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    impl: str
    transport: str
    peer: str
    """The server's language: python, rust or node."""
    server: str
    url: int
    """Which of the server's URLs."""
    worker: tuple[str, ...]
    """The client's worker arguments before the URL."""

    @property
    def key(self) -> str:
        suffix = "" if self.peer in ("python", "node") else f" ({self.peer} server)"
        return f"{self.impl} / {self.transport}{suffix}"


ECHO_CASES = [
    Case("gatewire", "tcp", "python", "py-gatewire", 0, ("client", "gatewire")),
    Case("gatewire", "unix", "python", "py-gatewire", 1, ("client", "gatewire")),
    Case("gatewire", "ws", "python", "py-gatewire", 2, ("client", "gatewire")),
    Case(
        "gatewire, async def handler",
        "tcp",
        "python",
        "py-gatewire",
        0,
        ("client", "gatewire-async"),
    ),
    Case("gatewire", "tcp", "rust", "rust-gatewire", 0, ("client", "gatewire")),
    Case("gatewire", "unix", "rust", "rust-gatewire", 1, ("client", "gatewire")),
    Case("gatewire", "ws", "rust", "rust-gatewire", 2, ("client", "gatewire")),
    Case("python-socketio", "ws", "python", "py-socketio", 0, ("client", "socketio")),
    Case("websockets", "ws", "python", "py-websockets", 0, ("client", "websockets")),
    Case("grpcio", "http2", "python", "py-grpc", 0, ("client", "grpc")),
    Case("pyzmq", "tcp", "python", "py-zmq", 0, ("client", "zmq")),
    Case("asyncio streams", "tcp", "python", "py-streams", 0, ("client", "streams")),
    Case("asyncio Protocol", "unix", "python", "py-protocol", 0, ("client", "protocol")),
]

CHART_CASES = [
    Case("socket.io + JSON", "ws", "node", "node-socketio", 0, ("sender", "socketio-json")),
    Case(
        "socket.io + MessagePack + zstd",
        "ws",
        "node",
        "node-socketio",
        0,
        ("sender", "socketio-msgpack-zstd"),
    ),
    Case("raw float64", "tcp", "node", "node-raw", 0, ("sender", "raw")),
    Case("raw float64", "ws", "node", "node-raw", 1, ("sender", "raw-ws")),
    Case("gatewire", "tcp", "node", "node-gatewire", 0, ("sender", "gatewire")),
    Case("gatewire", "ws", "node", "node-gatewire", 1, ("sender", "gatewire")),
    Case(
        "gatewire, 1 MiB messages, 4 MiB stream credit",
        "tcp",
        "node",
        "node-gatewire",
        2,
        ("sender", "gatewire-big"),
    ),
]


def server_argv(server: str, tmp: Path) -> list[str]:
    kind = server.split("-", 1)[1]
    if server.startswith("py-"):
        return [str(PYTHON), "worker.py", "serve", kind]
    if server.startswith("node-"):
        return ["node", "node/server.mjs", kind]
    return [
        str(INTEROP_PEER),
        "serve",
        "tcp://127.0.0.1:0",
        f"unix://{tmp / 'gw.sock'}",
        "ws://127.0.0.1:0/gw",
    ]


@dataclass(frozen=True)
class Settings:
    reps: int
    seconds: float
    points: int
    modes: tuple[str, ...]
    only: str | None


def commands(case: Case, s: Settings) -> list[dict[str, Any]]:
    if case.worker[0] == "client":
        return [
            {"shape": "latency", "seconds": s.seconds},
            {"shape": "throughput", "seconds": s.seconds, "in_flight": IN_FLIGHT},
        ]
    return [{"shape": "bulk"}, {"shape": "bulk_ping"}]


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def started(cases: list[Case], s: Settings, pinned: bool) -> Iterator[dict[Case, Proc]]:
    """Every server and client of ``cases``, ready; all stopped on exit."""
    procs: list[Proc] = []
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    try:
        servers: dict[str, Proc] = {}
        for name in dict.fromkeys(c.server for c in cases):
            servers[name] = Proc(name, server_argv(name, tmp), pinned)
            procs.append(servers[name])
        urls: dict[str, list[str]] = {}
        expected = {"rust-gatewire": 3}
        for name, proc in servers.items():
            found: list[str] = []
            while len(found) < expected.get(name, 1):
                word, *rest = proc.readline(60).split()
                if word in ("ready", "listening"):
                    found += rest
            urls[name] = found
        clients: dict[Case, Proc] = {}
        for case in cases:
            argv = [str(PYTHON), "worker.py", *case.worker, urls[case.server][case.url]]
            if case.worker[0] == "sender":
                argv.append(str(s.points))
            clients[case] = Proc(case.key, argv, pinned)
            procs.append(clients[case])
        for proc in clients.values():
            if proc.readline(120) != "ready":
                raise RuntimeError(f"{proc.name} did not start")
        yield clients
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(proc: Proc, cmd: dict[str, Any]) -> dict[str, Any]:
    """One repetition, once no build runs; again if a build ran or other
    processes were busy meanwhile."""
    waited, waited_for = 0.0, []
    for attempt in range(RETRIES + 1):
        w, names = wait_quiet(strict=attempt > 0)
        waited += w
        waited_for += names
        disturbed: list[str] = []
        before, start = cpu_ticks(), time.monotonic()
        proc.send(cmd)
        result: dict[str, Any] = json.loads(proc.readline(600, disturbed))
        others = others_cpu(before, cpu_ticks(), time.monotonic() - start)
        disturbed += builds_running()
        if others > OTHERS_MAX:
            disturbed.append(f"other processes ({others:.0%} of a CPU)")
        if not disturbed or attempt == RETRIES:
            break
        log(f"  {proc.name}: disturbed by {disturbed[0]}: again")
    result["others_cpu"] = round(others, 3)
    result["waited_s"] = round(waited, 1)
    if waited_for:
        result["waited_for"] = sorted(set(waited_for))
    if disturbed:
        result["disturbed_by"] = sorted({d.split("[")[0] for d in disturbed})
    return result


def run_mode(mode: str, s: Settings, cases: list[Case]) -> list[dict[str, Any]]:
    pinned = mode == "pinned"
    cpus = os.sched_getaffinity(0)
    # The runner itself keeps off CPU 0 while it watches for builds.
    os.sched_setaffinity(0, cpus - {0} if pinned and len(cpus) > 1 else cpus)
    records = []
    try:
        with started(cases, s, pinned) as clients:
            for rep in range(s.reps):
                for kind in ("client", "sender"):
                    group = [c for c in cases if c.worker[0] == kind]
                    shapes = commands(group[0], s) if group else []
                    for cmd in shapes:
                        for case in group:
                            result = measure(clients[case], cmd)
                            record = {
                                "bench": "python",
                                "case": case.key,
                                "mode": mode,
                                "rep": rep,
                                "shape": cmd["shape"],
                                "impl": case.impl,
                                "transport": case.transport,
                                "server": case.peer,
                                **result,
                            }
                            emit(record)
                            records.append(record)
                log(f"{mode}: repetition {rep + 1}/{s.reps} done")
    finally:
        os.sched_setaffinity(0, cpus)
    return records


# ----- medians, goals, summary -----------------------------------------------

METRICS = ("p50_us", "p99_us", "calls_per_s", "ms", "ping_p50_ms", "ping_max_ms", "pings")


def medians(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, float]]:
    """(mode, shape, case key) -> the median of each metric."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["mode"], r["shape"], r["case"]), []).append(r)
    return {
        k: {m: statistics.median(r[m] for r in rs) for m in METRICS if m in rs[0]}
        for k, rs in groups.items()
    }


@dataclass(frozen=True)
class Goal:
    text: str
    shape: str
    metric: str
    ours: str
    theirs: str
    target: float
    at_least: bool
    """Met when ours / theirs >= target (else <= target)."""


def goals() -> list[Goal]:
    tput, lat = ("throughput", "calls_per_s"), ("latency", "p50_us")
    sio, grpc = "python-socketio / ws", "grpcio / http2"
    raw, sio_json = "raw float64 / tcp", "socket.io + JSON / ws"
    bare = {
        "tcp": "asyncio streams / tcp",
        "unix": "asyncio Protocol / unix",
        "ws": "websockets / ws",
    }
    out = []
    for t, floor in bare.items():
        ours, rust = f"gatewire / {t}", f"gatewire / {t} (rust server)"
        out += [
            Goal(f"{ours} throughput >= 10x {sio}", *tput, ours, sio, 10, True),
            Goal(f"{ours} throughput >= 10x {grpc}", *tput, ours, grpc, 10, True),
            Goal(f"{ours} throughput >= 0.6x {floor}", *tput, ours, floor, 0.6, True),
            Goal(f"{rust} throughput >= 15x {sio}", *tput, rust, sio, 15, True),
            Goal(f"{ours} latency p50 <= 1.5x {floor}", *lat, ours, floor, 1.5, False),
        ]
    for t in ("tcp", "ws"):
        ours = f"gatewire / {t}"
        out += [
            Goal(f"transfer: {ours} <= 1.5x {raw}", "bulk", "ms", ours, raw, 1.5, False),
            Goal(
                f"transfer: {ours} >= 40x faster than {sio_json}",
                "bulk",
                "ms",
                sio_json,
                ours,
                40,
                True,
            ),
            Goal(
                f"worst ping during the transfer: {ours} <= 5 ms",
                "bulk_ping",
                "ping_max_ms",
                ours,
                "",
                5,
                False,
            ),
        ]
    return out


def evaluate(
    med: dict[tuple[str, str, str], dict[str, float]], modes: tuple[str, ...]
) -> list[dict[str, Any]]:
    rows = []
    for g in goals():
        row: dict[str, Any] = {"bench": "python", "goal": g.text}
        for mode in modes:
            a = med.get((mode, g.shape, g.ours), {}).get(g.metric)
            b = med.get((mode, g.shape, g.theirs), {}).get(g.metric) if g.theirs else 1.0
            if a is None or b is None:
                continue
            value = a / b
            row[mode] = round(value, 3)
            if mode == "pinned" or "pinned" not in modes:
                row["met"] = value >= g.target if g.at_least else value <= g.target
        if len(row) > 2:
            rows.append(row)
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    for at_least, form in ((1e5, "{:.0f}k"), (1e4, "{:.1f}k")):
        if v >= at_least:
            return form.format(v / 1000)
    for at_least, form in ((1000, "{:,.0f}"), (100, "{:.0f}"), (10, "{:.1f}")):
        if v >= at_least:
            return form.format(v)
    return f"{v:.2f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def summary(
    med: dict[tuple[str, str, str], dict[str, float]],
    goal_rows: list[dict[str, Any]],
    s: Settings,
    cases: list[Case],
) -> str:
    out = []
    for mode in s.modes:
        echo = [
            [
                c.key,
                _fmt(med.get((mode, "latency", c.key), {}).get("p50_us")),
                _fmt(med.get((mode, "latency", c.key), {}).get("p99_us")),
                _fmt(med.get((mode, "throughput", c.key), {}).get("calls_per_s")),
            ]
            for c in cases
            if c.worker[0] == "client"
        ]
        if echo:
            out.append(f"\nsmall calls, {mode} (32 B, medians of {s.reps}):")
            out.append(table(["impl / transport", "p50 µs", "p99 µs", "calls/s @64"], echo))
        chart = []
        for c in cases:
            if c.worker[0] != "sender":
                continue
            bulk = med.get((mode, "bulk", c.key), {})
            ping = med.get((mode, "bulk_ping", c.key), {})
            chart.append(
                [
                    c.key,
                    _fmt(bulk.get("ms")),
                    _fmt(ping.get("ping_p50_ms")),
                    _fmt(ping.get("ping_max_ms")),
                    f"{ping['pings']:.0f}" if "pings" in ping else "",
                    _fmt(ping.get("ms")),
                ]
            )
        if chart:
            out.append(f"\n{s.points:,} points Python -> Node, {mode} (medians of {s.reps}):")
            headers = ["impl / transport", "ms", "ping p50 ms", "ping max", "pings", "ms w/ pings"]
            out.append(table(headers, chart))
    if goal_rows:
        out.append("\ngoals (ratios of medians in this run; met/missed from the pinned ones):")
        rows = [
            [
                g["goal"],
                _fmt(g.get("pinned")),
                _fmt(g.get("unpinned")),
                "met" if g["met"] else "MISSED",
            ]
            for g in goal_rows
        ]
        out.append(table(["goal", "pinned", "unpinned", ""], rows))
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--setup", action="store_true", help="install everything again, then exit")
    ap.add_argument("--quick", action="store_true", help="tiny counts, one repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 5; --quick: 1)")
    ap.add_argument("--seconds", type=float, help="per small-call measurement (default 1)")
    ap.add_argument("--points", type=int, help="points per transfer (default 1,000,000)")
    ap.add_argument("--modes", default="pinned,unpinned", help="pinned,unpinned (default both)")
    ap.add_argument(
        "--only", help="only the cases whose name contains one of these (comma-separated)"
    )
    args = ap.parse_args()
    # Stopped from outside: stop the children on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    setup(args.setup)
    if args.setup:
        return
    s = Settings(
        reps=args.reps or (1 if args.quick else 5),
        seconds=args.seconds or (0.05 if args.quick else 1.0),
        points=args.points or (20_000 if args.quick else 1_000_000),
        modes=tuple(args.modes.split(",")),
        only=args.only,
    )
    wanted = [w for w in (s.only or "").split(",") if w]
    cases = [c for c in ECHO_CASES + CHART_CASES if not wanted or any(w in c.key for w in wanted)]
    start = time.monotonic()
    node = subprocess.run(["node", "--version"], check=True, capture_output=True, text=True)
    emit(
        {
            "bench": "python",
            "settings": {**s.__dict__, "in_flight": IN_FLIGHT, "payload_bytes": 32},
            "cpus": os.cpu_count(),
            "node": node.stdout.strip(),
        }
    )
    records = []
    for mode in s.modes:
        records += run_mode(mode, s, cases)
    med = medians(records)
    for (mode, shape, key), values in sorted(med.items()):
        emit({"bench": "python", "median": key, "mode": mode, "shape": shape, **values})
    goal_rows = evaluate(med, s.modes)
    for row in goal_rows:
        emit(row)
    log(summary(med, goal_rows, s, cases))
    waits = [r["waited_s"] for r in records if r["waited_s"]]
    log(
        f"\n{len(records)} measurements in {time.monotonic() - start:.0f} s;"
        f" waited for builds before {len(waits)} of them ({sum(waits):.0f} s)"
        + "".join(
            f"; {r['impl']} / {r['transport']} {r['shape']} rep {r['rep']} disturbed"
            for r in records
            if "disturbed_by" in r
        )
    )


if __name__ == "__main__":
    main()
