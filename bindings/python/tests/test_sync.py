"""The blocking facade (:mod:`gatewire.sync`) against a Python server
running on its own loop thread: calls from many threads, streams, typed
errors, and what happens after close."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pytest

import gatewire.aio as gw
from gatewire import Message, interop
from gatewire import sync as gws
from gatewire.sync import _LoopThread

from .aio_support import TRANSPORTS, private_dir, url_for


@pytest.fixture(params=TRANSPORTS)
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The interop service served on a background loop thread."""
    runner = _LoopThread()
    with private_dir() as d:
        server = runner.run(gw.serve(url_for(str(request.param), d), interop.service()))
        try:
            yield server.urls[0]
        finally:
            runner.run(server.close(), wait=30)
            runner.stop()


def _sync_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "gatewire-sync")


def test_calls_from_many_threads(server_url: str) -> None:
    with gws.connect(server_url) as conn:
        failures: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                for i in range(50):
                    body = struct.pack("<II", k, i)
                    assert conn.call(1, body).body == body
            except BaseException as e:
                failures.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not failures, failures
        assert [m.body for m in conn.server_stream(3, struct.pack("<I", 10))] == [
            struct.pack("<I", i) for i in range(10)
        ]


def test_connect_to_an_endpoint(server_url: str) -> None:
    with gws.connect(gw.Endpoint.parse(server_url)) as conn:
        assert conn.call(1, b"x").body == b"x"


def test_typed_errors_and_close(server_url: str) -> None:
    before = _sync_threads()
    conn = gws.connect(server_url)
    assert _sync_threads() == before + 1
    with pytest.raises(gw.RemoteError) as e:
        conn.call(5)
    assert e.value.code == 0x8001
    with pytest.raises(gw.DeadlineError):
        conn.call(6, struct.pack("<I", 10_000), timeout=0.05)
    assert conn.call(6, struct.pack("<I", 1), timeout=10).body == struct.pack("<I", 1)
    conn.emit(7, b"no handler here for 8: dropped")
    conn.close()
    conn.close()
    assert conn.is_closed
    # The loop thread is gone, and the connection says why calls fail.
    assert _sync_threads() == before
    with pytest.raises(gw.RefusedCallError):
        conn.call(1, b"late")
    with pytest.raises(gw.RefusedCallError):
        conn.server_stream(3, struct.pack("<I", 1))


def test_connect_failure_leaves_no_thread() -> None:
    before = _sync_threads()
    with pytest.raises(gw.TransportError):
        gws.connect("tcp://127.0.0.1:1")
    with pytest.raises(gw.ConfigError):
        gws.connect("bogus://x")
    assert _sync_threads() == before


def test_blocking_call_from_a_handler_is_refused(server_url: str) -> None:
    holder: list[gws.Connection] = []
    seen: list[BaseException] = []
    router = gw.Router()

    @router.unary(100)
    async def callback(_ctx: gw.CallContext, m: Message) -> Message:
        # A handler runs on the connection's loop: the blocking API would
        # wait for itself.
        try:
            holder[0].call(1, b"x")
        except RuntimeError as e:
            seen.append(e)
        return m

    with gws.connect(server_url, router=router) as conn:
        holder.append(conn)
        assert conn.call(4, b"cb").body == b"cb"
    assert seen and "own event loop thread" in str(seen[0])
