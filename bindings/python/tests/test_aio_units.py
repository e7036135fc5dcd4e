"""Unit tests of the runtime's pieces: endpoint URLs, options,
decompression bounds (hostile input E1), safe Unix-socket binding
(hostile inputs I1 and I3), and how the transports pause and end reading."""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import socket
import stat

import pytest
import zstandard as zstd

import gatewire.aio as gw
from gatewire import Codec, ErrorCode, Limits, Message
from gatewire.aio import _compress
from gatewire.aio._transport import StreamTransport, WsTransport
from gatewire.aio.connection import _drop_unawaited
from gatewire.aio.endpoint import Endpoint, EndpointError
from gatewire.aio.options import Options

from .aio_support import private_dir, run, until

# ----- endpoints -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:4000", Endpoint("tcp", "127.0.0.1", 4000)),
        ("tcp://example.com:0", Endpoint("tcp", "example.com", 0)),
        ("unix:///run/gw/gw.sock", Endpoint("unix", path="/run/gw/gw.sock")),
        ("ws://localhost:8080/rpc", Endpoint("ws", "localhost", 8080, "/rpc")),
        ("ws://h:1", Endpoint("ws", "h", 1, "/")),
        ("tls://h:1", Endpoint("tls", "h", 1)),
        ("wss://h:443/a/b?x=1", Endpoint("wss", "h", 443, "/a/b?x=1")),
        ("tcp://[::1]:4000", Endpoint("tcp", "::1", 4000)),
        ("TCP://h:1", Endpoint("tcp", "h", 1)),
    ],
)
def test_endpoint_parses(url: str, expected: Endpoint) -> None:
    assert Endpoint.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:4000",
        "tcp://[::1]:0",
        "unix:///tmp/gatewire/gw.sock",
        "ws://localhost:8080/",
        "ws://[::]:9/a/b?token=no",
        "wss://[2001:db8::1]:443/rpc",
    ],
)
def test_endpoint_display_round_trips(url: str) -> None:
    e = Endpoint.parse(url)
    assert str(e) == url
    assert Endpoint.parse(str(e)) == e


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("127.0.0.1:4000", "no scheme"),
        ("http://h:1", "unknown endpoint scheme"),
        ("tcp://:1", "no host"),
        ("tcp://h", "no port"),
        ("tcp://h:", "no port"),
        ("tcp://h:65536", "invalid port"),
        ("tcp://h:+1", "invalid port"),
        ("tcp://::1:4000", "brackets"),
        ("tcp://user@h:1", "credentials"),
        ("tcp://h:1/path", "no path"),
        ("tcp://h$:1", "invalid host"),
        ("tcp://[h]:1", "only IPv6"),
        ("ws://h:1/a#frag", "fragments"),
        ("ws://h:1/a b", "visible ASCII"),
        ("unix://", "no path"),
        ("unix://relative.sock", "not absolute"),
        ("unix:///a\0b", "NUL"),
    ],
)
def test_endpoint_refusals(url: str, why: str) -> None:
    with pytest.raises(EndpointError, match=why) as e:
        Endpoint.parse(url)
    assert isinstance(e.value, gw.ConfigError)


def test_an_endpoint_is_a_url_or_an_endpoint() -> None:
    e = Endpoint.parse("ws://127.0.0.1:80/gw")
    assert Endpoint.of(e) is e
    assert Endpoint.of("ws://127.0.0.1:80/gw") == e
    for valid in ("tcp://[::1]:0", "unix:///run/gw.sock", "wss://example.org:443/"):
        assert Endpoint.of(Endpoint.parse(valid)) == Endpoint.parse(valid)
    with pytest.raises(EndpointError, match="no scheme"):
        Endpoint.of("127.0.0.1:80")
    with pytest.raises(TypeError, match="not bytes"):
        Endpoint.of(b"tcp://127.0.0.1:80")  # type: ignore[arg-type]
    # Built by hand: held to the rules of the URL it stands for.
    for bad, why in [
        (Endpoint("http", "127.0.0.1", 80, "/"), "unknown endpoint scheme"),
        (Endpoint("tcp", "127.0.0.1", 70000), "port"),
        (Endpoint("tcp", "127.0.0.1", -1), "port"),
        (Endpoint("ws", "127.0.0.1", 80, ""), "parses to"),
        (Endpoint("unix", path="relative.sock"), "not absolute"),
    ]:
        with pytest.raises(EndpointError, match=why):
            Endpoint.of(bad)

    async def main() -> None:
        with pytest.raises(EndpointError, match="port"):
            await gw.serve(Endpoint("tcp", "127.0.0.1", 70000))
        with pytest.raises(EndpointError, match="unknown endpoint scheme"):
            await gw.connect(Endpoint("http", "127.0.0.1", 80, "/"))
        with pytest.raises(TypeError, match="not bytes"):
            await gw.serve(b"tcp://127.0.0.1:0")  # type: ignore[arg-type]

    run(main())


def test_unsupported_and_bad_urls_are_config_errors() -> None:
    async def main() -> None:
        with pytest.raises(gw.ConfigError, match="tls_server"):
            await gw.serve("wss://127.0.0.1:0/")
        with pytest.raises(gw.ConfigError):
            await gw.connect("nope")

    run(main())


def test_connect_refused_is_a_transport_error() -> None:
    async def main() -> None:
        # A port nobody listens on: bind one, close it, connect.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with pytest.raises(gw.TransportError) as e:
            await gw.connect(f"tcp://127.0.0.1:{port}")
        assert e.value.is_closed and isinstance(e.value.__cause__, OSError)

    run(main())


# ----- options -----------------------------------------------------------------


def test_options_from_keywords() -> None:
    o = Options.from_kwargs({"max_frame": 4 << 20, "max_in_flight": 7, "compression": False})
    assert o.limits.max_frame == 4 << 20 and o.limits.max_in_flight == 7
    assert o.limits.max_message == Limits().max_message
    assert not o.offers_compression
    o = Options.from_kwargs({"limits": Limits(max_in_flight=3), "max_frame": 2048})
    assert o.limits.max_in_flight == 3 and o.limits.max_frame == 2048
    with pytest.raises(TypeError, match="unknown gatewire option"):
        Options.from_kwargs({"max_frames": 1})
    with pytest.raises(gw.ConfigError, match="max_frame"):
        Options.from_kwargs({"max_frame": 10})
    with pytest.raises(gw.ConfigError):
        Options.from_kwargs({"event_queue": 0})
    assert Options.from_kwargs({"ws_origins": ["https://a"]}).ws_origins == ("https://a",)


# ----- compression (hostile input E1) -----------------------------------------


def _compressed(body: bytes, declared: int, *, content_size: bool = True, **kw: int) -> Message:
    if kw:
        params = zstd.ZstdCompressionParameters.from_level(
            3, write_content_size=int(content_size), **kw
        )
        cctx = zstd.ZstdCompressor(compression_params=params)
    else:
        cctx = zstd.ZstdCompressor(level=3, write_content_size=content_size)
    return Message(Codec.RAW, cctx.compress(body), declared)


def test_compression_round_trip() -> None:
    m = Message(Codec.JSON, b"[" + b"1," * 10_000 + b"1]")
    c = _compress.Compressor(1).compress(m)
    assert c.uncompressed_len == len(m.body) and len(c.body) < 200 and c.codec == Codec.JSON
    assert _compress.decompress(c) == m
    # Incompressible bodies go as they are.
    noise = Message(Codec.RAW, os.urandom(4096))
    assert _compress.Compressor(1).compress(noise) is noise
    assert _compress.decompress(noise) is noise


def test_ultra_levels_stay_within_the_window_every_receiver_accepts() -> None:
    big = (b"telemetry sample 0123456789 " * 400_000)[: 9 << 20]
    packed = _compress.Compressor(22).compress(Message(Codec.RAW, big))
    assert packed.uncompressed_len == len(big)
    assert zstd.get_frame_parameters(packed.body).window_size <= 1 << _compress.WINDOW_LOG_MAX
    assert _compress.decompress(packed).body == big


@pytest.mark.parametrize("content_size", [True, False])
def test_lies_about_the_size_are_rejected(content_size: bool) -> None:
    body = bytes(10_000)
    for declared in (9_999, 10_001, 1):
        with pytest.raises(gw.Status) as e:
            _compress.decompress(_compressed(body, declared, content_size=content_size))
        assert e.value.code == ErrorCode.PROTOCOL_VIOLATION
    assert _compress.decompress(_compressed(body, 10_000, content_size=content_size)).body == body


def test_trailing_data_and_garbage_are_rejected() -> None:
    good = _compressed(bytes(10_000), 10_000)
    for body in (good.body + b"trailing", good.body + good.body, b"not zstd at all", b""):
        with pytest.raises(gw.Status):
            _compress.decompress(Message(Codec.RAW, body, 10_000))


def test_a_bomb_stops_at_the_declared_size() -> None:
    import tracemalloc  # noqa: PLC0415

    # 64 MiB of zeros compresses to a few KiB. Declared as 1 MiB it must
    # fail without producing (or allocating) more than about 1 MiB, whether
    # the frame states its real content size or states none.
    for content_size in (True, False):
        bomb = _compressed(bytes(64 << 20), 1 << 20, content_size=content_size)
        tracemalloc.start()
        try:
            with pytest.raises(gw.Status):
                _compress.decompress(bomb)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 << 20, peak


def test_a_huge_frame_content_size_allocates_nothing() -> None:
    # A hand-made frame whose header claims 2^40 bytes (8-byte content size
    # field) around a 4-byte raw block, while gatewire declared 4 bytes.
    # python-zstandard would allocate the claimed size; the header is
    # checked first, so nothing is allocated.
    frame = (
        b"\x28\xb5\x2f\xfd"  # magic
        + b"\xc0"  # descriptor: 8-byte content size, not single-segment
        + b"\x00"  # window descriptor: 1 KiB
        + (1 << 40).to_bytes(8, "little")
        + b"\x21\x00\x00"  # last block, raw, 4 bytes
        + b"abcd"
    )
    assert zstd.get_frame_parameters(frame).content_size == 1 << 40
    with pytest.raises(gw.Status, match="content size"):
        _compress.decompress(Message(Codec.RAW, frame, 4))
    # The same block with an honest header decompresses.
    honest = b"\x28\xb5\x2f\xfd" + b"\x20" + b"\x04" + b"\x21\x00\x00" + b"abcd"
    assert _compress.decompress(Message(Codec.RAW, honest, 4)).body == b"abcd"


def test_window_above_2_pow_23_is_refused() -> None:
    # Without a content size, a window log of 27 needs 128 MiB of window.
    body = os.urandom(1 << 16) * 160  # 10 MiB, repetitive at a long distance
    m = _compressed(body, len(body), content_size=False, window_log=27)
    with pytest.raises(gw.Status):
        _compress.decompress(m)


# ----- Unix sockets (hostile inputs I1, I3) -------------------------------------


def test_unix_bind_creates_a_private_directory_and_socket() -> None:
    async def main() -> None:
        with private_dir() as d:
            path = f"{d}/sub/dir/s.sock"
            server = await gw.serve(f"unix://{path}")
            try:
                assert stat.S_IMODE(os.stat(f"{d}/sub/dir").st_mode) == 0o700
                st = os.lstat(path)
                assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
                assert server.urls == [f"unix://{path}"]
                conn = await gw.connect(server.urls[0])
                await conn.close()
            finally:
                await server.close()
            # Closing removes the socket file.
            assert not os.path.exists(path)

    run(main())


def test_unix_bind_refuses_a_live_socket() -> None:
    async def main() -> None:
        with private_dir() as d:
            url = f"unix://{d}/s.sock"
            first = await gw.serve(url)
            try:
                with pytest.raises(gw.TransportError) as e:
                    await gw.serve(url)
                cause = e.value.__cause__
                assert isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
                # The first server is undisturbed.
                conn = await gw.connect(url)
                await conn.close()
            finally:
                await first.close()

    run(main())


def test_unix_bind_replaces_a_stale_socket() -> None:
    async def main() -> None:
        with private_dir() as d:
            path = f"{d}/s.sock"
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(path)
            stale.close()  # the file stays; nobody listens
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            server = await gw.serve(f"unix://{path}")
            try:
                conn = await gw.connect(f"unix://{path}")
                await conn.close()
            finally:
                await server.close()

    run(main())


def test_unix_bind_refuses_unsafe_paths() -> None:
    async def main() -> None:
        with private_dir() as d:
            # A symbolic link at the path.
            os.symlink(f"{d}/elsewhere", f"{d}/link.sock")
            with pytest.raises(gw.TransportError, match="symbolic link"):
                await gw.serve(f"unix://{d}/link.sock")
            # A regular file at the path.
            with open(f"{d}/file.sock", "w") as f:
                f.write("x")
            with pytest.raises(gw.TransportError, match="not a socket"):
                await gw.serve(f"unix://{d}/file.sock")
            # A directory others may write to.
            os.mkdir(f"{d}/open", 0o700)
            os.chmod(f"{d}/open", 0o777)
            with pytest.raises(gw.TransportError, match="writable by group or others") as e:
                await gw.serve(f"unix://{d}/open/s.sock")
            assert isinstance(e.value.__cause__, PermissionError)
            # A path longer than sun_path.
            with pytest.raises(gw.TransportError, match="sun_path"):
                await gw.serve(f"unix://{d}/{'x' * 120}.sock")
            # Nothing above was bound.
            assert sorted(os.listdir(d)) == ["file.sock", "link.sock", "open"]

    run(main())


def test_unix_bind_failure_leaves_no_listener() -> None:
    async def main() -> None:
        with private_dir() as d:
            # The second URL fails: the first listener is closed again.
            with pytest.raises(gw.TransportError):
                await gw.serve([f"unix://{d}/a.sock", f"unix://{d}/{'y' * 120}.sock"])
            assert not os.path.exists(f"{d}/a.sock")
            await asyncio.sleep(0)

    run(main())


def test_refused_connections_leave_no_task_behind() -> None:
    async def main() -> None:
        async with (
            await gw.serve("tcp://127.0.0.1:0", max_connections=1) as server,
            await gw.connect(server.urls[0]),
        ):
            for _ in range(5):
                # Over the limit: dropped at once.
                with pytest.raises(gw.RpcError):
                    await gw.connect(server.urls[0])
            # Only the live connection's task remains.
            await until(lambda: len(server._tasks) == 1, "refused tasks gone")

    run(main())


class _FakeSocket(asyncio.Transport):
    """Just enough of an asyncio transport to see what reading it is asked
    for."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def is_closing(self) -> bool:
        return False


def test_a_pause_asked_while_taking_early_input_holds() -> None:
    async def main() -> None:
        socket_ = _FakeSocket()
        stream = StreamTransport()
        stream.connection_made(socket_)
        # The peer's first bytes arrive before the connection starts...
        stream.data_received(b"hello")
        got: list[bytes] = []

        def received(chunks: list[bytes]) -> None:
            got.extend(chunks)
            # ...and the core, taking them, holds all it may.
            stream.pause_reading()

        settled: list[bytes] = []
        stream.start(received, lambda _error: None, lambda: settled.extend(got))
        assert got == [b"hello"]
        assert settled == [b"hello"], "what the early input produced goes out after it"
        assert not socket_.reading
        stream.resume_reading()
        assert socket_.reading

    run(main())


class _FakeWsTransport:
    def __init__(self, ws: _FakeWebSocket) -> None:
        self._ws = ws

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def abort(self) -> None:
        self._ws.closed = True
        self._ws.changed.set()


class _FakeWebSocket:
    """What a WebSocket transport uses of a ``websockets`` connection when
    reading: ``recv`` takes the messages already received without waiting
    (as websockets does), then waits, or raises once the connection is
    aborted."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = list(messages)
        self.closed = False
        self.changed = asyncio.Event()
        self.transport = _FakeWsTransport(self)

    async def recv(self) -> bytes:
        from websockets.exceptions import ConnectionClosedError  # noqa: PLC0415

        while not self.messages:
            if self.closed:
                raise ConnectionClosedError(None, None)
            self.changed.clear()
            await self.changed.wait()
        return self.messages.pop(0)


def test_a_websocket_pause_asked_while_taking_a_message_holds_the_next() -> None:
    async def main() -> None:
        ws = _FakeWebSocket([b"1", b"2", b"3"])
        transport = WsTransport(ws, "ws://fake")
        got: list[bytes] = []

        def received(messages: list[bytes]) -> None:
            got.extend(messages)
            if b"1" in messages:
                # The core holds all it may after the first message.
                transport.pause_reading()

        transport.start(received, lambda _error: None, lambda: None)
        # One turn of the reader: without the pause it would take all three
        # messages in it, since none of them has to be waited for.
        await asyncio.sleep(0)
        assert got == [b"1"]
        assert ws.messages == [b"2", b"3"]
        transport.resume_reading()
        await until(lambda: got == [b"1", b"2", b"3"], "the rest delivered after resuming")

    run(main())


def test_aborting_a_paused_websocket_reports_its_end() -> None:
    async def main() -> None:
        ws = _FakeWebSocket([b"1", b"2"])
        transport = WsTransport(ws, "ws://fake")
        got: list[bytes] = []
        ended: list[gw.RpcError | None] = []

        def received(messages: list[bytes]) -> None:
            got.extend(messages)
            transport.pause_reading()

        transport.start(received, ended.append, lambda: None)
        await asyncio.sleep(0)
        assert got == [b"1"]
        # Paused, and the connection goes: the reader must still see the end
        # rather than wait for a resume that never comes.
        transport.abort()
        await until(lambda: bool(ended), "the end reported")
        assert len(ended) == 1
        error = ended[0]
        assert isinstance(error, gw.RpcError)
        assert error.code == ErrorCode.UNAVAILABLE

    run(main())


# ----- plain-function handlers --------------------------------------------------


def test_an_awaitable_left_unawaited_by_a_cancelled_task_is_stopped() -> None:
    # What a plain-function handler returned to await, when the task that was
    # to await it is cancelled before it started (a cancel routed in the same
    # turn): a coroutine is closed, a future cancelled.
    async def main() -> None:
        async def never() -> bytes:
            raise AssertionError("not run")

        loop = asyncio.get_running_loop()
        started = loop.create_task(asyncio.sleep(0))
        started.cancel()
        with pytest.raises(asyncio.CancelledError):
            await started
        coro = never()
        future: asyncio.Future[bytes] = loop.create_future()
        _drop_unawaited(coro, started)
        _drop_unawaited(future, started)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        assert future.cancelled()
        # A task that ended otherwise leaves the awaitable alone.
        finished = loop.create_task(asyncio.sleep(0))
        await finished
        other: asyncio.Future[bytes] = loop.create_future()
        _drop_unawaited(other, finished)
        assert not other.done()

    run(main())
