"""The echo peers: one small server and one small client per library.

Every server echoes whatever it is sent and returns the URLs it listens on;
every client offers ``call(payload) -> reply``, safe to run 64 at a time.
Each peer imports its library when it starts, so that a process loads only
the library it measures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

ECHO_METHOD = 1
"""The echo method of every gatewire peer (the interop service's)."""
ASYNC_ECHO_METHOD = 2
"""The Python gatewire server's echo as an ``async def`` handler."""

_LEN = struct.Struct("<I")


class Client(Protocol):
    async def call(self, payload: bytes) -> bytes: ...

    async def close(self) -> None: ...


Started = tuple[list[str], Callable[[], Awaitable[None]]]
Serve = Callable[[Path], Awaitable[Started]]
"""Starts a server (Unix sockets go in the given private directory):
returns its URLs and how to stop it."""


class Fifo:
    """Replies matched to calls in order, for echo servers that answer in
    order on one connection: ``expect`` before sending, ``resolve`` from the
    one reader."""

    def __init__(self) -> None:
        self._waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()

    def expect(self) -> asyncio.Future[bytes]:
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        return fut

    def resolve(self, reply: bytes) -> None:
        self._waiting.popleft().set_result(reply)

    def fail(self, error: BaseException) -> None:
        while self._waiting:
            self._waiting.popleft().set_exception(error)


# ----- gatewire --------------------------------------------------------------


async def serve_gatewire(tmp: Path) -> Started:
    import gatewire.aio as gw  # noqa: PLC0415

    router = gw.Router()

    # A plain function: called as the request is read, without a task.
    @router.unary(ECHO_METHOD)
    def echo(_ctx: gw.CallContext, request: gw.Message) -> gw.Message:
        return request

    @router.unary(ASYNC_ECHO_METHOD)
    async def echo_async(_ctx: gw.CallContext, request: gw.Message) -> gw.Message:
        return request

    urls = ["tcp://127.0.0.1:0", f"unix://{tmp / 'gw.sock'}", "ws://127.0.0.1:0/gw"]
    server = await gw.serve(urls, router)
    return server.urls, server.close


class GatewireClient:
    def __init__(self, conn: Any, method: int) -> None:
        self._conn = conn
        self._method = method

    @classmethod
    async def open(cls, url: str, method: int = ECHO_METHOD) -> GatewireClient:
        import gatewire.aio as gw  # noqa: PLC0415

        return cls(await gw.connect(url), method)

    @classmethod
    async def open_async(cls, url: str) -> GatewireClient:
        """Calling the ``async def`` echo."""
        return await cls.open(url, ASYNC_ECHO_METHOD)

    async def call(self, payload: bytes) -> bytes:
        reply = await self._conn.call(self._method, payload)
        return bytes(reply.body)

    async def close(self) -> None:
        await self._conn.close()


# ----- python-socketio -------------------------------------------------------


async def serve_socketio(_tmp: Path) -> Started:
    import socketio  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415

    # No HTTP compression; aiohttp's WebSocket answers permessage-deflate
    # only when the client offers it, and our client does not.
    sio = socketio.AsyncServer(async_mode="aiohttp", http_compression=False)
    app = web.Application()
    sio.attach(app)

    async def echo(_sid: str, data: Any) -> Any:
        return data

    sio.on("echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return [f"http://{host}:{port}"], runner.cleanup


class SocketIoClient:
    """Emit with acknowledgement. The payload travels as a 32-character
    string: a bytes payload costs socket.io a second WebSocket message (a
    binary attachment), so the string is its faster case."""

    def __init__(self, sio: Any) -> None:
        self._sio = sio

    @classmethod
    async def open(cls, url: str) -> SocketIoClient:
        import socketio  # noqa: PLC0415

        sio = socketio.AsyncClient(websocket_extra_options={"compress": 0})
        await sio.connect(url, transports=["websocket"])
        return cls(sio)

    async def call(self, payload: bytes) -> bytes:
        reply: str = await self._sio.call("echo", payload.hex()[: len(payload)])
        return reply.encode()

    async def close(self) -> None:
        await self._sio.disconnect()


# ----- websockets ------------------------------------------------------------


async def serve_websockets(_tmp: Path) -> Started:
    from websockets.asyncio.server import ServerConnection, serve  # noqa: PLC0415

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    server = await serve(echo, "127.0.0.1", 0, compression=None)
    port = next(iter(server.sockets)).getsockname()[1]

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return [f"ws://127.0.0.1:{port}"], close


class WebsocketsClient:
    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._fifo = Fifo()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> WebsocketsClient:
        from websockets.asyncio.client import connect  # noqa: PLC0415

        return cls(await connect(url, compression=None))

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

        try:
            async for message in self._ws:
                # A text message is echoed as text.
                self._fifo.resolve(message.encode() if isinstance(message, str) else message)
        except (ConnectionClosed, OSError) as e:
            self._fifo.fail(e)
        else:
            self._fifo.fail(ConnectionResetError("closed"))

    async def call(self, payload: bytes | memoryview | str) -> bytes:
        """``payload`` as one message (text for a ``str``), and the reply."""
        fut = self._fifo.expect()
        await self._ws.send(payload)
        return await fut

    async def close(self) -> None:
        await self._ws.close()
        await self._reader


# ----- grpcio ----------------------------------------------------------------

_GRPC_METHOD = "/bench.Echo/Echo"


async def serve_grpc(_tmp: Path) -> Started:
    import grpc  # noqa: PLC0415

    async def echo(request: bytes, _context: Any) -> bytes:
        return request

    # No serializers: requests and responses stay raw bytes.
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return [f"127.0.0.1:{port}"], lambda: server.stop(None)


class GrpcClient:
    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._echo = channel.unary_unary(_GRPC_METHOD)

    @classmethod
    async def open(cls, url: str) -> GrpcClient:
        import grpc  # noqa: PLC0415

        channel = grpc.aio.insecure_channel(url)
        await channel.channel_ready()
        return cls(channel)

    async def call(self, payload: bytes) -> bytes:
        reply: bytes = await self._echo(payload)
        return reply

    async def close(self) -> None:
        await self._channel.close()


# ----- pyzmq -----------------------------------------------------------------


async def serve_zmq(_tmp: Path) -> Started:
    import zmq  # noqa: PLC0415
    import zmq.asyncio  # noqa: PLC0415

    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind("tcp://127.0.0.1:*")
    url = sock.getsockopt_string(zmq.LAST_ENDPOINT)

    async def echo() -> None:
        while True:
            await sock.send_multipart(await sock.recv_multipart(copy=False), copy=False)

    task = asyncio.create_task(echo())

    async def close() -> None:
        task.cancel()
        sock.close(linger=0)
        ctx.term()

    return [url], close


class ZmqClient:
    """A DEALER: the ROUTER echo answers in order."""

    def __init__(self, ctx: Any, sock: Any) -> None:
        self._ctx = ctx
        self._sock = sock
        self._fifo = Fifo()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> ZmqClient:
        import zmq  # noqa: PLC0415
        import zmq.asyncio  # noqa: PLC0415

        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.connect(url)
        return cls(ctx, sock)

    async def _read(self) -> None:
        while True:
            self._fifo.resolve(await self._sock.recv())

    async def call(self, payload: bytes) -> bytes:
        fut = self._fifo.expect()
        await self._sock.send(payload)
        return await fut

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._sock.close(linger=0)
        self._ctx.term()


# ----- bare asyncio: streams over TCP ----------------------------------------


async def serve_streams(_tmp: Path) -> Started:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(4)
                body = await reader.readexactly(_LEN.unpack(header)[0])
                writer.write(header + body)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return [f"127.0.0.1:{port}"], close


class StreamsClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._fifo = Fifo()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> StreamsClient:
        host, port = url.rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def _read(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(4)
                self._fifo.resolve(await self._reader.readexactly(_LEN.unpack(header)[0]))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self._fifo.fail(e)

    async def call(self, payload: bytes) -> bytes:
        fut = self._fifo.expect()
        self._writer.write(_LEN.pack(len(payload)) + payload)
        await self._writer.drain()
        return await fut

    async def close(self) -> None:
        self._writer.close()
        await self._task


# ----- bare asyncio: a Protocol over a Unix socket ---------------------------


class _Frames(asyncio.Protocol):
    """Length-prefixed frames: ``on_frame`` gets each complete body."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = 0
        while len(buffer) - at >= 4:
            (n,) = _LEN.unpack_from(buffer, at)
            if len(buffer) - at - 4 < n:
                break
            self.on_frame(bytes(buffer[at + 4 : at + 4 + n]))
            at += 4 + n
        del buffer[:at]

    def on_frame(self, body: bytes) -> None:
        raise NotImplementedError


class _EchoProtocol(_Frames):
    def on_frame(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_LEN.pack(len(body)) + body)


async def serve_protocol(tmp: Path) -> Started:
    path = str(tmp / "echo.sock")
    server = await asyncio.get_running_loop().create_unix_server(_EchoProtocol, path)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return [path], close


class _ClientProtocol(_Frames):
    def __init__(self) -> None:
        super().__init__()
        self.fifo = Fifo()

    def on_frame(self, body: bytes) -> None:
        self.fifo.resolve(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fifo.fail(exc or ConnectionResetError("closed"))


class ProtocolClient:
    def __init__(self, transport: asyncio.Transport, protocol: _ClientProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    @classmethod
    async def open(cls, url: str) -> ProtocolClient:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_unix_connection(_ClientProtocol, url)
        return cls(transport, protocol)

    async def call(self, payload: bytes) -> bytes:
        fut = self._protocol.fifo.expect()
        self._transport.write(_LEN.pack(len(payload)) + payload)
        return await fut

    async def close(self) -> None:
        self._transport.close()


SERVERS: dict[str, Serve] = {
    "gatewire": serve_gatewire,
    "socketio": serve_socketio,
    "websockets": serve_websockets,
    "grpc": serve_grpc,
    "zmq": serve_zmq,
    "streams": serve_streams,
    "protocol": serve_protocol,
}

CLIENTS: dict[str, Callable[[str], Awaitable[Client]]] = {
    "gatewire": GatewireClient.open,
    "gatewire-async": GatewireClient.open_async,
    "socketio": SocketIoClient.open,
    "websockets": WebsocketsClient.open,
    "grpc": GrpcClient.open,
    "zmq": ZmqClient.open,
    "streams": StreamsClient.open,
    "protocol": ProtocolClient.open,
}
