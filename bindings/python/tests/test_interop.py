"""Interop with the Rust reference peer (``crates/gatewire-interop``, binary
``interop-peer``), both directions, on every transport:

- the Python interop script (:func:`gatewire.interop.script`, the same
  checks as the Rust ``script``) against ``interop-peer serve``;
- ``interop-peer client`` against a Python server implementing the interop
  service (:func:`gatewire.interop.service`);
- the blocking facade (:mod:`gatewire.sync`) driving ``interop-peer serve``.

The peer is ``target/debug/interop-peer`` (or ``GATEWIRE_INTEROP_PEER``);
when it is missing it is built with ``cargo build --locked -p
gatewire-interop``, and the tests are skipped if cargo is not available.
"""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import gatewire.aio as gw
from gatewire import Codec, ErrorCode, Message, interop
from gatewire import sync as gws

from .aio_support import TRANSPORTS, private_dir, run, url_for

REPO = Path(__file__).resolve().parents[3]
PACKAGE_DIR = Path(__file__).resolve().parents[1]
STARTUP = 60.0
"""Seconds the peer may take to print its endpoints."""


def _peer_path() -> Path:
    configured = os.environ.get("GATEWIRE_INTEROP_PEER")
    if configured:
        path = Path(configured)
        return path if path.is_absolute() else PACKAGE_DIR / path
    return REPO / "target" / "debug" / "interop-peer"


@pytest.fixture(scope="session")
def interop_peer() -> Path:
    """The reference peer's binary, built if missing."""
    path = _peer_path()
    if not path.exists():
        cargo = shutil.which("cargo")
        if cargo is None or not (REPO / "Cargo.toml").exists():
            pytest.skip(f"{path} is not built and cargo is not available")
        subprocess.run(
            [cargo, "build", "--locked", "--quiet", "-p", "gatewire-interop"],
            cwd=REPO,
            check=True,
            timeout=1800,
        )
    assert path.exists(), path
    return path


def _read_lines(stream: object, n: int, timeout: float) -> list[str]:
    """``n`` lines from a child's stdout, failing after ``timeout``."""
    lines: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line.decode() if isinstance(line, bytes) else str(line))
            if lines.qsize() >= n:
                return

    threading.Thread(target=reader, daemon=True).start()
    try:
        return [lines.get(timeout=timeout) for _ in range(n)]
    except queue.Empty:
        raise AssertionError("the interop peer did not print its endpoints in time") from None


@pytest.fixture(scope="module")
def rust_server(interop_peer: Path) -> Iterator[dict[str, str]]:
    """``interop-peer serve`` on tcp, unix and ws; the URLs by scheme."""
    directory = Path(tempfile.gettempdir()) / f"gatewire-py-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    sock = directory / "s.sock"
    proc = subprocess.Popen(
        [
            str(interop_peer),
            "serve",
            "tcp://127.0.0.1:0",
            f"unix://{sock}",
            "ws://127.0.0.1:0/gw",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        lines = _read_lines(proc.stdout, 3, STARTUP)
        urls = {}
        for line in lines:
            assert line.startswith("listening "), line
            url = line.split(" ", 1)[1].strip()
            urls[url.split("://", 1)[0]] = url
        assert sorted(urls) == sorted(TRANSPORTS), urls
        yield urls
    finally:
        # Closing stdin stops the peer; it must exit cleanly.
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            shutil.rmtree(directory, ignore_errors=True)
        assert code == 0, f"interop-peer serve exited with {code}"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_python_script_against_rust_server(rust_server: dict[str, str], transport: str) -> None:
    async def main() -> None:
        events: asyncio.Queue[Message] = asyncio.Queue()
        conn = await gw.connect(rust_server[transport], router=interop.callbacks(events))
        try:
            assert conn.peer is not None and conn.peer.agent is not None
            assert conn.peer.agent.startswith("gatewire-rust/")
            # The reference peer offers zstd: both sides compress large
            # messages when the zstandard package is installed.
            assert conn.peer.compression == gw.ZSTD_AVAILABLE
            await interop.script(conn, events)
        finally:
            await conn.close()
        assert conn.close_error is None

    run(main(), timeout=90)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rust_client_against_python_server(interop_peer: Path, transport: str) -> None:
    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(url_for(transport, d), interop.service()) as server:
                proc = await asyncio.create_subprocess_exec(
                    str(interop_peer),
                    "client",
                    server.urls[0],
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(proc.communicate(), 80)
                assert proc.returncode == 0, err.decode()
                assert out.decode().strip() == "ok"

    run(main(), timeout=90)


def test_python_cli_client_against_rust_server(rust_server: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gatewire.interop", "client", rust_server["tcp"]],
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "ok"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_facade_against_rust_server(rust_server: dict[str, str], transport: str) -> None:
    events: queue.Queue[Message] = queue.Queue()
    router = gw.Router()

    @router.unary(100)
    async def client_echo(_ctx: gw.CallContext, m: Message) -> Message:
        return Message(m.codec, b"client:" + m.body)

    @router.event(8)
    async def on_event(_ctx: gw.CallContext, m: Message) -> None:
        events.put(m)

    with gws.connect(rust_server[transport], router=router) as conn:
        assert conn.call(1, b"hello").body == b"hello"
        r = conn.call(1, b'{"a":1}', codec=Codec.JSON)
        assert r.body == b'{"a":1}' and r.codec == Codec.JSON
        big = b"\x42" * 300_000
        assert conn.call(1, big).body == big
        with conn.server_stream(3, struct.pack("<I", 1000)) as stream:
            bodies = [m.body for m in stream]
        assert bodies == [struct.pack("<I", i) for i in range(1000)]
        assert conn.call(4, b"ping").body == b"client:ping"
        with pytest.raises(gw.RemoteError) as e:
            conn.call(5)
        assert e.value.code == 0x8001 and e.value.message == "requested error"
        with pytest.raises(gw.DeadlineError):
            conn.call(6, struct.pack("<I", 10_000), timeout=0.1)
        with pytest.raises(gw.RemoteError) as e:
            conn.call(99)
        assert e.value.code == ErrorCode.UNKNOWN_METHOD
        conn.emit(7, b"event")
        assert events.get(timeout=10).body == b"event"
        assert conn.ping() >= 0

        # Thread-safe: calls from several threads at once.
        def worker(k: int, out: list[bool]) -> None:
            for i in range(25):
                body = struct.pack("<II", k, i)
                out.append(conn.call(1, body).body == body)

        results: list[bool] = []
        threads = [threading.Thread(target=worker, args=(k, results)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(results) == 200 and all(results)

        # A stream abandoned early is cancelled, and the connection carries
        # on. (500 messages: fewer frames than the stray-frame budget can be
        # in flight; see test_aio_hostile.py for longer streams of tiny
        # messages.)
        with conn.server_stream(3, struct.pack("<I", 500)) as stream:
            assert next(stream).body == struct.pack("<I", 0)
        assert conn.call(1, b"after").body == b"after"
    assert conn.is_closed
