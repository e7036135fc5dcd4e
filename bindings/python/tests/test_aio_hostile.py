"""Hostile input against the runtime: raw sockets sending oversize frames or
garbage get a typed answer (a GOAWAY with the code, or a typed exception on
the Python side) and cost bounded memory; WebSocket framing abuse
(hostile inputs A1, A2, A8, H1, H2, H4)."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest

import gatewire.aio as gw
from gatewire import ErrorCode, Frame, FrameDecoder, FrameType, Message
from gatewire.exceptions import FrameError, FrameTooLarge
from gatewire.protocol import Config, Role
from gatewire.protocol import Connection as Core

from .aio_support import pair, private_dir, run, url_for

STREAM_TRANSPORTS = ("tcp", "unix")


def _header(length: int, ty: int, id_: int = 0, arg: int = 0, reserved: int = 0) -> bytes:
    return struct.pack("<IBBBBII", length, ty, 0, 0, reserved, id_, arg)


def _hello() -> bytes:
    core = Core(Config(Role.CLIENT), 0)
    out = bytearray()
    while (f := core.poll_transmit()) is not None:
        f.encode_to(out)
    return bytes(out)


async def _open_raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    e = gw.Endpoint.parse(url)
    if e.scheme == "unix":
        return await asyncio.open_unix_connection(e.path)
    return await asyncio.open_connection(e.host, e.port)


async def _read_frames(reader: asyncio.StreamReader, until_eof: bool = True) -> list[Frame]:
    frames: list[Frame] = []
    buf = bytearray()
    decoder = FrameDecoder(1 << 24)
    while chunk := await reader.read(65536):
        buf += chunk
        while (f := decoder.decode(buf)) is not None:
            frames.append(f)
        if not until_eof and frames:
            break
    return frames


async def _raw_session(url: str, data: bytes) -> list[Frame]:
    """Sends ``data`` on a raw connection and returns every frame the server
    sends until it closes."""
    reader, writer = await _open_raw(url)
    try:
        writer.write(data)
        await writer.drain()
        return await _read_frames(reader)
    finally:
        writer.close()


def _goaway_code(frames: list[Frame]) -> ErrorCode:
    assert frames and frames[-1].header.ty == FrameType.GOAWAY, frames
    return ErrorCode(frames[-1].header.arg)


# ----- raw byte-stream clients against a Python server -----------------------


@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        # A1: a length far beyond max_handshake, rejected from the header.
        ("oversize", _header(0xFFFF_FFFF, 0x01), ErrorCode.TOO_LARGE),
        ("reserved byte", _header(0, 0x01, reserved=1), ErrorCode.PROTOCOL_VIOLATION),
        ("unknown type", _header(0, 0x7F), ErrorCode.PROTOCOL_VIOLATION),
        ("not a hello", _header(8, 0x0B) + bytes(8), ErrorCode.PROTOCOL_VIOLATION),
        # The first four bytes of anything read as a length, checked first.
        ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrorCode.TOO_LARGE),
        ("garbage", bytes([8, 0, 0, 0, 0x44, 0xAA]) + bytes(58), ErrorCode.PROTOCOL_VIOLATION),
    ],
)
def test_raw_garbage_gets_a_typed_goaway(
    transport: str, name: str, data: bytes, code: ErrorCode
) -> None:
    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(url_for(transport, d), None) as server:
                frames = await _raw_session(server.urls[0], data)
                assert _goaway_code(frames) == code, name
                # The server carries on.
                async with await gw.connect(server.urls[0]) as conn:
                    assert await conn.ping() >= 0

    run(main())


@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
def test_oversize_frame_after_the_handshake(transport: str) -> None:
    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(url_for(transport, d), None, max_frame=4096) as server:
                reader, writer = await _open_raw(server.urls[0])
                writer.write(_hello())
                ack = await _read_frames(reader, until_eof=False)
                assert ack[0].header.ty == FrameType.HELLO_ACK
                # A REQUEST one byte over max_frame: refused from its header.
                writer.write(_header(4097, 0x03, id_=1, arg=1))
                await writer.drain()
                frames = await _read_frames(reader)
                writer.close()
                assert _goaway_code(frames) == ErrorCode.TOO_LARGE

    run(main())


@pytest.mark.parametrize("transport", STREAM_TRANSPORTS)
def test_declared_lengths_cost_no_memory(transport: str) -> None:
    """A2: 40 connections each declare a 1 MiB frame and send 100 bytes of
    it. Memory follows the bytes received, not the bytes declared (40 MiB)."""
    n = 40

    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(url_for(transport, d), None) as server:
                raws = [await _open_raw(server.urls[0]) for _ in range(n)]
                for reader, writer in raws:
                    writer.write(_hello())
                    await _read_frames(reader, until_eof=False)
                tracemalloc.start()
                try:
                    before, _ = tracemalloc.get_traced_memory()
                    for _, writer in raws:
                        writer.write(_header((1 << 20) - 1, 0x03, id_=1, arg=1) + bytes(100))
                        await writer.drain()
                    conns = list(server._connections)
                    expected = len(_hello()) + 16 + 100
                    while not all(c.stats().bytes_received >= expected for c in conns):
                        await asyncio.sleep(0)
                    after, _ = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                grown = after - before
                # About 60 KB here: a reassembly buffer holds what arrived.
                assert grown < 1 << 20, f"{grown} bytes for {n} partial frames"
                # Still serving.
                async with await gw.connect(server.urls[0]) as conn:
                    assert await conn.ping() >= 0
                for _, writer in raws:
                    writer.close()

    run(main())


# ----- a Python client against raw servers ------------------------------------


async def _raw_server(
    reply: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, str]:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reply(reader, writer)
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("answer", "code", "cause"),
    [
        (_header(0xFFFF_FFF0, 0x02), ErrorCode.TOO_LARGE, FrameTooLarge),
        (_header(0, 0x02, reserved=9), ErrorCode.PROTOCOL_VIOLATION, FrameError),
        (b"\xff" * 64, ErrorCode.TOO_LARGE, FrameTooLarge),
        (bytes([8, 0, 0, 0, 0x44, 0xAA]) + bytes(58), ErrorCode.PROTOCOL_VIOLATION, FrameError),
    ],
)
def test_client_gets_a_typed_error_from_a_hostile_server(
    answer: bytes, code: ErrorCode, cause: type[Exception]
) -> None:
    async def main() -> None:
        async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)  # the HELLO
            writer.write(answer)
            await writer.drain()

        server, url = await _raw_server(reply)
        try:
            tracemalloc.start()
            try:
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(url)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert e.value.code == code and e.value.is_closed
            assert isinstance(e.value.__cause__, cause)
            assert peak < 1 << 20
        finally:
            server.close()

    run(main())


def test_client_survives_a_server_that_closes_at_once() -> None:
    async def main() -> None:
        async def reply(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server, url = await _raw_server(reply)
        try:
            with pytest.raises(gw.RpcError) as e:
                await gw.connect(url)
            assert e.value.is_closed
        finally:
            server.close()

    run(main())


# ----- WebSocket framing abuse (H1, H2, H4) -------------------------------------


def test_ws_upgrade_refusals() -> None:
    from websockets.asyncio.client import connect  # noqa: PLC0415
    from websockets.exceptions import InvalidStatus  # noqa: PLC0415
    from websockets.typing import Origin, Subprotocol  # noqa: PLC0415

    async def main() -> None:
        async with await gw.serve(
            "ws://127.0.0.1:0/gw", None, ws_origins=["https://app.example"]
        ) as server:
            base = server.urls[0]
            proto = [Subprotocol("gatewire.v1")]
            cases: list[tuple[str, dict[str, object], int]] = [
                (base, {}, 400),  # no subprotocol
                (base, {"subprotocols": [Subprotocol("other")]}, 400),
                (base.replace("/gw", "/other"), {"subprotocols": proto}, 404),
                (base, {"subprotocols": proto, "origin": Origin("https://evil.example")}, 403),
            ]
            for uri, kwargs, status in cases:
                with pytest.raises(InvalidStatus) as e:
                    await connect(uri, proxy=None, **kwargs)  # type: ignore[arg-type]
                assert e.value.response.status_code == status, (uri, kwargs)
            # An allowed Origin, and none at all (a non-browser client).
            for origin in (Origin("https://app.example"), None):
                ws = await connect(base, proxy=None, subprotocols=proto, origin=origin)
                assert ws.subprotocol == "gatewire.v1"
                await ws.close()

    run(main())


def test_ws_never_negotiates_deflate() -> None:
    from websockets.asyncio.client import connect  # noqa: PLC0415
    from websockets.typing import Subprotocol  # noqa: PLC0415

    async def main() -> None:
        async with await gw.serve("ws://127.0.0.1:0/gw", None) as server:
            ws = await connect(
                server.urls[0],
                proxy=None,
                subprotocols=[Subprotocol("gatewire.v1")],
                compression="deflate",
            )
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.close()

    run(main())


@pytest.mark.parametrize(
    ("name", "message", "close_code", "goaway"),
    [
        ("text", "a text message", 1003, None),
        ("oversize", bytes(4096 + 17), 1009, None),
        ("two frames in one message", _hello() + _hello(), None, ErrorCode.PROTOCOL_VIOLATION),
        ("a short frame", _hello()[:10], None, ErrorCode.PROTOCOL_VIOLATION),
        ("empty", b"", None, ErrorCode.PROTOCOL_VIOLATION),
    ],
)
def test_ws_message_abuse(
    name: str, message: str | bytes, close_code: int | None, goaway: ErrorCode | None
) -> None:
    from websockets.asyncio.client import connect  # noqa: PLC0415
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415
    from websockets.typing import Subprotocol  # noqa: PLC0415

    async def main() -> None:
        async with await gw.serve("ws://127.0.0.1:0/gw", None, max_frame=4096) as server:
            ws = await connect(
                server.urls[0],
                proxy=None,
                subprotocols=[Subprotocol("gatewire.v1")],
                max_size=None,
            )
            await ws.send(message)
            frames: list[Frame] = []

            async def read_all() -> None:
                while True:
                    data = await ws.recv()
                    assert isinstance(data, bytes)
                    frames.append(Frame.decode_exact(data, 1 << 24))

            with pytest.raises(ConnectionClosed) as e:
                await read_all()
            if close_code is not None:
                assert e.value.rcvd is not None and e.value.rcvd.code == close_code, name
            if goaway is not None:
                assert _goaway_code(frames) == goaway, name
            async with await gw.connect(server.urls[0]) as conn:
                assert await conn.ping() >= 0

    run(main())


def test_ws_pings_and_fragmented_messages_from_a_client() -> None:
    # A client may ping at any time and may fragment a message. The server
    # reads unfragmented binary messages itself and leaves the rest to
    # websockets, which answers the pings and, from a fragmented message
    # on, reads the rest of the connection: nothing is lost or reordered.
    from websockets.asyncio.client import connect  # noqa: PLC0415
    from websockets.typing import Subprotocol  # noqa: PLC0415

    from gatewire.protocol import Response  # noqa: PLC0415

    router = gw.Router()

    @router.unary(1)
    def echo(_ctx: gw.CallContext, m: Message) -> Message:
        return m

    async def main() -> None:
        async with await gw.serve("ws://127.0.0.1:0/gw", router) as server:
            ws = await connect(
                server.urls[0],
                proxy=None,
                subprotocols=[Subprotocol("gatewire.v1")],
                compression=None,
            )
            core = Core(Config(Role.CLIENT), 0)

            async def exchange(fragment: bool) -> None:
                while (f := core.poll_transmit()) is not None:
                    data = f.to_bytes()
                    await (await ws.ping(b"between"))
                    if fragment:
                        await ws.send([data[:5], data[5:9], data[9:]])
                    else:
                        await ws.send(data)

            async def receive() -> bytes:
                message = await ws.recv()
                assert isinstance(message, bytes)
                return message

            async def answer(id_: int) -> Response:
                while True:
                    while (event := core.poll_event()) is not None:
                        if isinstance(event, Response) and event.id == id_:
                            return event
                    core.handle_frame(0, await receive())
                    await exchange(False)

            await exchange(False)
            # HELLO_ACK.
            core.handle_frame(0, await receive())
            assert core.is_connected()
            bodies = [bytes([i]) * (i * 97) for i in range(1, 9)]
            for i, body in enumerate(bodies):
                id_ = core.send_request(1, Message.raw(body))
                # From the fifth call on, every message is fragmented.
                await exchange(i >= 4)
                assert (await answer(id_)).message.body == body
            await ws.close()

    run(main())


def test_ws_client_refuses_a_text_message() -> None:
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415
    from websockets.typing import Subprotocol  # noqa: PLC0415

    async def main() -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.recv()  # HELLO
            await ws.send("text instead of a frame")
            await ws.wait_closed()

        async with serve(
            handler, "127.0.0.1", 0, subprotocols=[Subprotocol("gatewire.v1")]
        ) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(gw.TransportError, match="text message") as e:
                await gw.connect(f"ws://127.0.0.1:{port}/")
            assert e.value.is_closed

    run(main())


def test_ws_client_requires_the_subprotocol() -> None:
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415

    async def main() -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(gw.TransportError, match="subprotocol"):
                await gw.connect(f"ws://127.0.0.1:{port}/")

    run(main())


# ----- budgets ------------------------------------------------------------------


def test_cancel_of_tiny_message_stream_keeps_connection() -> None:
    cancelled = asyncio.Event()
    router = gw.Router()

    @router.unary(1)
    async def echo(_ctx: gw.CallContext, m: Message) -> Message:
        return m

    @router.stream(3)
    async def forever(
        _ctx: gw.CallContext, _first: Message, _rx: gw.RecvStream, tx: gw.SendStream
    ) -> None:
        try:
            while True:
                await tx.send(b"tiny")
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        async with pair("tcp", router) as (client, _, _):
            async with await client.server_stream(3) as rx:
                for _ in range(3):
                    await rx.recv()
            await cancelled.wait()
            assert (await client.call(1, b"still open")).body == b"still open"

    run(main())
