"""Interop with the Rust reference peer (``crates/gatewire-interop``, binary
``interop-peer``), both directions, on every transport:

- the Python interop script (:func:`gatewire.interop.script`, the same
  checks as the Rust ``script``) against ``interop-peer serve``;
- ``interop-peer client`` against a Python server implementing the interop
  service (:func:`gatewire.interop.service`);
- the blocking facade (:mod:`gatewire.sync`) driving ``interop-peer serve``.

The peer is ``target/debug/interop-peer`` (or ``GATEWIRE_INTEROP_PEER``);
when it is missing it is built with ``cargo build --locked -p
gatewire-interop``, and the tests fail if cargo is not available.
"""

from __future__ import annotations

import asyncio
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import gatewire.aio as gw
from gatewire import Codec, ErrorCode, Message, interop
from gatewire import sync as gws

from .aio_support import TRANSPORTS, private_dir, run, url_for
from .rust_peers import rust_binary, serving


@pytest.fixture(scope="session")
def interop_peer() -> Path:
    """The reference peer's binary, built if missing."""
    return rust_binary("GATEWIRE_INTEROP_PEER", "interop-peer", "gatewire-interop")


@pytest.fixture(scope="module")
def rust_server(interop_peer: Path) -> Iterator[dict[str, str]]:
    """``interop-peer serve`` on tcp, unix and ws; the URLs by scheme."""
    with serving(interop_peer) as server:
        yield server.urls


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
