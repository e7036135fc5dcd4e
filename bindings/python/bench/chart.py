"""The chart scenario: (x, y) float64 points from Python to a Node peer
(``node/server.mjs``) until it acknowledges, and a small ping on the same
connection. Every sender offers ``send_points(points) -> ack`` and
``ping()``; the ack is (count, last x, last y) as the peer decoded them.

The points are a numpy array of shape (n, 2). What each sender does to the
array (``tolist()``, JSON, MessagePack, zstd; nothing for the raw sockets and
gatewire, which send views of its buffer) is part of the timed transfer, as
it is part of what a program does to send. No sender loops over the points
in Python.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from peers import ECHO_METHOD, Fifo, WebsocketsClient

Points = npt.NDArray[np.float64]
Ack = tuple[float, float, float]

GW_POINTS_METHOD = 10
"""The Node peer's stream that receives points."""

GW_CHUNK = 256 * 1024
"""Bytes per stream message with default limits: a quarter of the default
message limit and of the receiver's default stream credit (1 MiB each), so
the sender fills the window while the receiver consumes it."""

GW_BIG_CHUNK = 1 << 20
"""Bytes per stream message when the receiver raised its stream credit to
4 MiB: the largest message the default limit accepts."""

_PING = bytes(range(32))
_RAW_HEADER = struct.Struct("<BI")
_RAW_POINTS = 1
_RAW_PING = 2


class Sender(Protocol):
    async def send_points(self, points: Points) -> Ack: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def make_points(n: int, seed: int = 1) -> Points:
    """A chart's series: x evenly spaced, y a random walk."""
    rng = np.random.default_rng(seed)
    points = np.empty((n, 2), dtype=np.float64)
    points[:, 0] = np.arange(n, dtype=np.float64) * 0.001
    points[:, 1] = np.cumsum(rng.standard_normal(n))
    return points


def _ack(values: Any) -> Ack:
    count, x, y = (float(v) for v in values)
    return count, x, y


def _thesis_message(points: Points) -> dict[str, Any]:
    """The thesis's ``addPoints`` request: a list of [x, y] pairs."""
    return {
        "id": str(uuid.uuid4()),
        "method": "addPoints",
        "param": {"data_points": points.tolist()},
    }


class _SocketIo:
    def __init__(self, sio: Any) -> None:
        self._sio = sio

    @classmethod
    async def connect(cls, url: str) -> Any:
        import socketio  # noqa: PLC0415

        # Library defaults (long-polling, then the WebSocket upgrade).
        sio = socketio.AsyncClient()
        await sio.connect(url)
        return cls(sio)

    async def ping(self) -> None:
        await self._sio.call("echo", _PING.hex())

    async def close(self) -> None:
        await self._sio.disconnect()


class SocketIoJson(_SocketIo):
    """socket.io with its default JSON encoding, as the thesis sent."""

    async def send_points(self, points: Points) -> Ack:
        return _ack(await self._sio.call("addPoints", _thesis_message(points)))


class SocketIoMsgpackZstd(_SocketIo):
    """The thesis's MessagePack + zstd, as one binary socket.io message."""

    def __init__(self, sio: Any) -> None:
        import zstandard  # noqa: PLC0415

        super().__init__(sio)
        self._zstd = zstandard.ZstdCompressor()

    async def send_points(self, points: Points) -> Ack:
        import msgpack  # noqa: PLC0415

        blob = self._zstd.compress(msgpack.packb(_thesis_message(points)))
        return _ack(await self._sio.call("addPointsPacked", blob))


class RawSocket:
    """The floor: the array's bytes over a bare asyncio TCP stream, one
    length-prefixed frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._fifo = Fifo()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> RawSocket:
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def _read(self) -> None:
        try:
            while True:
                _, n = _RAW_HEADER.unpack(await self._reader.readexactly(_RAW_HEADER.size))
                self._fifo.resolve(await self._reader.readexactly(n))
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self._fifo.fail(e)

    async def _send(self, kind: int, body: memoryview | bytes) -> bytes:
        fut = self._fifo.expect()
        self._writer.write(_RAW_HEADER.pack(kind, len(body)))
        self._writer.write(body)
        await self._writer.drain()
        return await fut

    async def send_points(self, points: Points) -> Ack:
        reply = await self._send(_RAW_POINTS, points.data.cast("B"))
        return _ack(np.frombuffer(reply, dtype=np.float64))

    async def ping(self) -> None:
        await self._send(_RAW_PING, _PING)

    async def close(self) -> None:
        self._writer.close()
        await self._task


class RawWebSocket:
    """The WebSocket floor: the array's bytes as one binary message over a
    bare ``websockets`` connection (no compression) to a bare ``ws`` server;
    a ping is a text message, echoed."""

    def __init__(self, client: WebsocketsClient) -> None:
        self._client = client

    @classmethod
    async def connect(cls, url: str) -> RawWebSocket:
        return cls(await WebsocketsClient.open(url))

    async def send_points(self, points: Points) -> Ack:
        reply = await self._client.call(points.data.cast("B"))
        return _ack(np.frombuffer(reply, dtype=np.float64))

    async def ping(self) -> None:
        await self._client.call(_PING.hex())

    async def close(self) -> None:
        await self._client.close()


class Gatewire:
    """gatewire: the points as a stream of ``chunk``-byte messages (credit
    backpressure; other calls interleave between its frames); the peer
    answers on the stream once it has them all."""

    def __init__(self, conn: Any, chunk: int) -> None:
        self._conn = conn
        self._chunk = chunk

    @classmethod
    async def connect(cls, url: str, chunk: int = GW_CHUNK) -> Gatewire:
        import gatewire.aio as gw  # noqa: PLC0415

        return cls(await gw.connect(url), chunk)

    @classmethod
    async def connect_big(cls, url: str) -> Gatewire:
        return await cls.connect(url, GW_BIG_CHUNK)

    async def send_points(self, points: Points) -> Ack:
        data = points.data.cast("B")
        tx, rx = await self._conn.open_stream(GW_POINTS_METHOD, struct.pack("<Q", len(data)))
        for at in range(0, len(data), self._chunk):
            await tx.send(data[at : at + self._chunk])
        await tx.finish()
        reply = await rx.recv()
        assert reply is not None and await rx.recv() is None
        return _ack(np.frombuffer(reply.body, dtype=np.float64))

    async def ping(self) -> None:
        await self._conn.call(ECHO_METHOD, _PING)

    async def close(self) -> None:
        await self._conn.close()


SENDERS: dict[str, Callable[[str], Awaitable[Sender]]] = {
    "socketio-json": SocketIoJson.connect,
    "socketio-msgpack-zstd": SocketIoMsgpackZstd.connect,
    "raw": RawSocket.connect,
    "raw-ws": RawWebSocket.connect,
    "gatewire": Gatewire.connect,
    "gatewire-big": Gatewire.connect_big,
}
