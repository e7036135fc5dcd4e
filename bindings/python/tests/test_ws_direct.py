"""Reading WebSocket messages in the socket's callback (``gatewire.aio._ws``):
the connection objects of both sides, fed bytes as a socket would, with any
split, against what ``websockets`` itself makes of the same bytes."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosedError
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Frame
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

import gatewire.aio as gw
from gatewire.aio._transport import WsTransport
from gatewire.aio._ws import DirectClientConnection, DirectReading, DirectServerConnection

from .aio_support import run, until

SIDES = ("server", "client")
LIMIT = 70_000
"""The connections' message size limit in these tests."""


class _Socket:
    """The asyncio transport under a connection: what it was asked to do."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class _Server:
    """What a server connection tells its server."""

    def start_connection_handler(self, connection: object) -> None:
        pass


def _connection(
    side: str, after_head: bytes = b"", cut: int | None = None
) -> tuple[DirectReading, _Socket]:
    """A connection of ``side`` (in a running loop), opened by a handshake
    read through it; ``after_head`` arrives with the handshake's last byte,
    in one read, or in two cut at ``cut``."""

    def read(data: bytes) -> None:
        at = len(data) if cut is None else cut
        for piece in (data[:at], data[at:]):
            if piece:
                connection.data_received(piece)

    connection: DirectReading
    socket_ = _Socket()
    if side == "server":
        server_protocol = ServerProtocol(max_size=LIMIT)
        connection = DirectServerConnection(
            server_protocol, cast(Any, _Server()), ping_interval=None
        )
        connection.connection_made(cast(Any, socket_))
        client = ClientProtocol(parse_uri("ws://localhost/"))
        read(client.connect().serialize() + after_head)
        # What websockets' handshake does once the request is read.
        request = cast(Any, connection).request
        server_protocol.send_response(server_protocol.accept(request))
        cast(Any, connection).send_data()
    else:
        client_protocol = ClientProtocol(parse_uri("ws://localhost/"), max_size=LIMIT)
        connection = DirectClientConnection(client_protocol, ping_interval=None)
        connection.connection_made(cast(Any, socket_))
        request = client_protocol.connect()
        client_protocol.send_request(request)
        server = ServerProtocol()
        server.receive_data(request.serialize())
        response = server.accept(cast(Any, server.events_received()[0]))
        read(response.serialize() + after_head)
    assert cast(Any, connection).protocol.state is State.OPEN
    socket_.written.clear()
    return connection, socket_


def _frame(side: str, opcode: Any, data: bytes, fin: bool = True) -> bytes:
    """A frame as the peer of ``side`` sends it (a client masks)."""
    return Frame(opcode, data, fin).serialize(mask=side == "server")


def _pong(side: str, data: bytes) -> bytes:
    """The PONG ``side`` answers a PING with (a client masks, with a random
    key: compared by what it carries)."""
    return Frame(OP_PONG, data).serialize(mask=side == "client")


def _parse(side: str, data: bytes) -> list[Frame]:
    """Frames ``side`` wrote, as its peer reads them."""
    if side == "server":
        peer: Any = ClientProtocol(parse_uri("ws://localhost/"), state=State.OPEN, max_size=None)
    else:
        peer = ServerProtocol(state=State.OPEN, max_size=None)
    peer.receive_data(data)
    return [e for e in peer.events_received() if isinstance(e, Frame)]


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


SIZES = st.one_of(
    st.integers(0, 130),
    st.sampled_from([125, 126, 127, 65535, 65536, LIMIT]),
    st.integers(0, LIMIT),
)
ITEMS = st.lists(
    st.tuples(st.sampled_from(["binary", "binary", "ping", "pong"]), SIZES, st.integers(0, 255)),
    max_size=12,
)


@pytest.mark.parametrize("side", SIDES)
@settings(max_examples=60, deadline=None)
@given(items=ITEMS, cuts=st.lists(st.integers(0, 1 << 20), max_size=30))
def test_messages_are_given_in_order_with_any_split(
    side: str, items: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    async def main() -> None:
        connection, socket_ = _connection(side)
        log: list[object] = []
        connection.gw_attach(log.extend, lambda: log.append("settled"))
        stream = bytearray()
        messages: list[bytes] = []
        pings: list[bytes] = []
        for kind, size, fill in items:
            # Control frames carry at most 125 bytes.
            data = bytes([fill]) * (size if kind == "binary" else size % 126)
            if kind == "binary":
                stream += _frame(side, OP_BINARY, data)
                messages.append(data)
            elif kind == "ping":
                stream += _frame(side, OP_PING, data)
                pings.append(data)
            else:
                stream += _frame(side, OP_PONG, data)
        for piece in _cut(bytes(stream), cuts):
            before = len(log)
            connection.data_received(piece)
            new = log[before:]
            # Each read that gave messages is followed by one `settled`.
            if any(isinstance(x, bytes) for x in new):
                assert new[-1] == "settled" and new.count("settled") == 1
            else:
                assert new == []
        assert [x for x in log if isinstance(x, bytes)] == messages
        assert connection.gw_direct
        # websockets answered the PINGs it was handed, and saw nothing else.
        answered = _parse(side, bytes(socket_.written))
        assert [(f.opcode, f.data) for f in answered] == [(OP_PONG, p) for p in pings]
        assert socket_.reading

    run(main())


async def _take(connection: DirectReading, n: int) -> list[bytes | str]:
    ws = cast(Any, connection)
    return [await ws.recv() for _ in range(n)]


@pytest.mark.parametrize("side", SIDES)
def test_a_fragmented_or_text_message_hands_the_rest_over(side: str) -> None:
    async def main() -> None:
        for rest in (
            [_frame(side, OP_TEXT, b"text")],
            [
                _frame(side, OP_BINARY, b"frag", fin=False),
                _frame(side, OP_CONT, b"mented"),
            ],
        ):
            connection, _ = _connection(side)
            got: list[bytes] = []
            connection.gw_attach(got.extend, lambda: None)
            after = _frame(side, OP_BINARY, b"after")
            stream = _frame(side, OP_BINARY, b"before") + b"".join(rest) + after
            # Split inside the handed-over frames: websockets must still
            # see them whole and in order.
            connection.data_received(stream[:9])
            connection.data_received(stream[9:])
            assert got == [b"before"]
            assert not connection.gw_direct
            first = "text" if rest[0][0] & 0x0F == OP_TEXT.value else b"fragmented"
            assert await _take(connection, 2) == [first, b"after"]
            # Everything from then on goes through websockets too.
            connection.data_received(_frame(side, OP_BINARY, b"later"))
            assert await _take(connection, 1) == [b"later"]
            assert got == [b"before"]

    run(main())


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize(
    ("name", "close_code"),
    [
        ("oversize", 1009),
        ("reserved bit", 1002),
        ("wrong mask bit", 1002),
        ("long ping", 1002),
    ],
)
def test_a_frame_websockets_refuses_is_refused_by_it(side: str, name: str, close_code: int) -> None:
    async def main() -> None:
        connection, socket_ = _connection(side)
        got: list[bytes] = []
        connection.gw_attach(got.extend, lambda: None)
        if name == "oversize":
            bad = _frame(side, OP_BINARY, bytes(LIMIT + 1))
        elif name == "reserved bit":
            bad = bytes([0x82 | 0x40]) + _frame(side, OP_BINARY, b"x")[1:]
        elif name == "wrong mask bit":
            # Masked from a server, unmasked from a client.
            bad = Frame(OP_BINARY, b"x").serialize(mask=side == "client")
        else:
            # A PING of 126 bytes, masked (with a zero key) by a client.
            bit, key = (0x80, bytes(4)) if side == "server" else (0, b"")
            bad = bytes([0x89, bit | 126, 0, 126]) + key + bytes(126)
        connection.data_received(_frame(side, OP_BINARY, b"ok") + bad)
        assert got == [b"ok"]
        closes = [f for f in _parse(side, bytes(socket_.written)) if f.opcode.value == 8]
        assert closes and int.from_bytes(closes[0].data[:2], "big") == close_code, name
        connection.connection_lost(None)
        with pytest.raises(ConnectionClosedError):
            await _take(connection, 1)

    run(main())


@pytest.mark.parametrize("side", SIDES)
def test_a_pause_holds_messages_until_resumed(side: str) -> None:
    async def main() -> None:
        connection, socket_ = _connection(side)
        got: list[list[bytes]] = []
        # As the connection does: it pauses once what a read brought is in.
        connection.gw_attach(got.append, connection.gw_pause)
        connection.data_received(b"".join(_frame(side, OP_BINARY, m) for m in (b"1", b"2")))
        assert got == [[b"1", b"2"]], "the messages of one read, together"
        assert not socket_.reading
        # What arrives meanwhile is held.
        connection.data_received(b"".join(_frame(side, OP_BINARY, m) for m in (b"3", b"4")))
        assert got == [[b"1", b"2"]]
        connection.gw_resume()
        assert socket_.reading
        # Given from the loop, not from within the resume.
        assert got == [[b"1", b"2"]]
        await until(lambda: len(got) == 2, "the held messages given")
        assert got == [[b"1", b"2"], [b"3", b"4"]]

    run(main())


@pytest.mark.parametrize("side", SIDES)
def test_input_before_attaching_is_held_and_bounded(side: str) -> None:
    async def main() -> None:
        connection, socket_ = _connection(side)
        message = bytes(1000)
        n = connection.early_limit // 1000 + 1
        for _ in range(n):
            connection.data_received(_frame(side, OP_BINARY, message))
        assert not socket_.reading
        got: list[bytes] = []
        connection.gw_attach(got.extend, lambda: None)
        assert got == [message] * n
        assert socket_.reading

    run(main())


def test_what_websockets_already_holds_keeps_it_reading() -> None:
    async def main() -> None:
        # A server connection is open once its response is sent, before it
        # reads again. Had bytes reached websockets' own frame parser by
        # then (half a frame), the connection would stay with websockets.
        connection, _ = _connection("server")
        whole = _frame("server", OP_BINARY, b"early")
        cast(Any, connection).protocol.receive_data(whole[:3])
        got: list[bytes] = []
        connection.gw_attach(got.extend, lambda: None)
        connection.data_received(whole[3:])
        assert not connection.gw_direct
        assert got == []
        assert await _take(connection, 1) == [b"early"]

    run(main())


@pytest.mark.parametrize("side", SIDES)
def test_handing_over_gives_websockets_the_held_bytes(side: str) -> None:
    async def main() -> None:
        connection, socket_ = _connection(side)
        got: list[bytes] = []
        connection.gw_attach(got.extend, connection.gw_pause)
        connection.data_received(_frame(side, OP_BINARY, b"1"))
        assert got == [b"1"]
        stream = b"".join(_frame(side, OP_BINARY, m) for m in (b"2", b"3"))
        # Held by the pause: a whole message and part of the next.
        connection.data_received(stream[:-2])
        connection.gw_hand_over()
        assert socket_.reading
        connection.data_received(stream[-2:])
        assert await _take(connection, 2) == [b"2", b"3"]
        assert got == [b"1"]

    run(main())


def test_the_end_comes_after_the_messages_held_by_a_pause() -> None:
    async def main() -> None:
        connection, _ = _connection("client")
        transport = WsTransport(connection, "ws://fake")
        got: list[bytes] = []
        ended: list[gw.RpcError | None] = []
        transport.start(got.extend, ended.append, transport.pause_reading)
        queue = cast(Any, connection).recv_messages.frames
        await until(lambda: queue.get_waiter is not None, "the reader waiting for websockets")
        connection.data_received(_frame("client", OP_BINARY, b"1"))
        assert got == [b"1"]
        connection.data_received(b"".join(_frame("client", OP_BINARY, m) for m in (b"2", b"3")))
        assert got == [b"1"]
        # The connection drops while two messages are held: they go to
        # websockets' queue, from which the reader, which was already
        # waiting on it, takes one, then holds until resumed.
        connection.connection_lost(None)
        await until(lambda: queue.get_waiter is None, "the reader seeing the end")
        assert got == [b"1", b"2"] and ended == []
        # One message a turn while websockets reads (each `settled` pauses).
        transport.resume_reading()
        await until(lambda: got == [b"1", b"2", b"3"], "the last message given")
        transport.resume_reading()
        await until(lambda: bool(ended), "the end reported")
        assert isinstance(ended[0], gw.RpcError)

    run(main())


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("back", [0, 1, 2, 3, 4, 5])
def test_frames_read_with_the_handshake_are_read_here(side: str, back: int) -> None:
    # A server may send its first messages right behind its 101 response
    # (and a hasty client behind its request): websockets gets the HTTP
    # head only, whatever the reads, and the messages come from here.
    async def main() -> None:
        frames = b"".join(_frame(side, OP_BINARY, m) for m in (b"a", b"b"))
        # In one read, or in two cut `back` bytes before the end of the
        # head (inside its blank line, or just before it).
        cut = None if back == 0 else -len(frames) - back
        connection, _ = _connection(side, frames, cut)
        got: list[bytes] = []
        connection.gw_attach(got.extend, lambda: None)
        assert connection.gw_direct
        assert got == [b"a", b"b"]

    run(main())


@pytest.mark.parametrize("side", SIDES)
def test_a_partial_frame_then_the_end(side: str) -> None:
    # The peer stops in the middle of a frame: what was whole was given,
    # the rest is websockets' to judge (no close frame: 1006), and aborting
    # afterwards raises nothing.
    async def main() -> None:
        connection, _ = _connection(side)
        transport = WsTransport(connection, "ws://fake")
        got: list[bytes] = []
        ended: list[gw.RpcError | None] = []
        transport.start(got.extend, ended.append, lambda: None)
        whole = _frame(side, OP_BINARY, bytes(300))
        connection.data_received(_frame(side, OP_BINARY, b"ok") + whole[:50])
        assert got == [b"ok"]
        connection.eof_received()
        assert not connection.gw_direct
        transport.abort()
        connection.connection_lost(None)
        await until(lambda: bool(ended), "the end reported")
        assert got == [b"ok"]
        assert isinstance(ended[0], gw.RpcError)
        assert ended[0].code == gw.ErrorCode.UNAVAILABLE

    run(main())


@pytest.mark.parametrize("side", SIDES)
def test_closing_hands_the_peers_close_frame_to_websockets(side: str) -> None:
    # Closing a connection that is read here but was never attached (a
    # handshake refused by gatewire): the peer's close frame, held here,
    # reaches websockets, which completes the closing handshake.
    async def main() -> None:
        connection, _ = _connection(side)
        protocol = cast(Any, connection).protocol
        connection.data_received(Frame(OP_CLOSE, b"\x03\xe8").serialize(mask=side == "server"))
        assert protocol.close_rcvd is None
        closing = asyncio.create_task(cast(Any, connection).close())
        await until(lambda: protocol.close_rcvd is not None, "the peer's close frame read")
        connection.connection_lost(None)
        await closing

    run(main())


def test_messages_websockets_reads_are_settled_together() -> None:
    # From a fragmented message on, websockets reads the connection: the
    # messages it had queued together are followed by one `settled`, so
    # their answers go out in one write.
    async def main() -> None:
        connection, _ = _connection("client")
        transport = WsTransport(connection, "ws://fake")
        log: list[object] = []
        transport.start(log.extend, lambda _error: None, lambda: log.append("settled"))
        connection.data_received(
            _frame("client", OP_BINARY, b"frag", fin=False)
            + _frame("client", OP_CONT, b"mented")
            + _frame("client", OP_BINARY, b"a")
            + _frame("client", OP_BINARY, b"b")
        )
        await until(lambda: "settled" in log, "settled")
        assert log == [b"fragmented", b"a", b"b", "settled"]
        connection.data_received(_frame("client", OP_BINARY, b"c"))
        await until(lambda: log.count("settled") == 2, "settled again")
        assert log[4:] == [b"c", "settled"]

    run(main())
