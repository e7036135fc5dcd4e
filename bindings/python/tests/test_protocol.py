"""The connection state machine, driven through an in-memory pair with a
fake clock: unit tests and properties."""

from __future__ import annotations

import contextlib
import functools
import random
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gatewire import exceptions as ex
from gatewire.code import ErrorCode
from gatewire.codec import Frame
from gatewire.control import AdvertisedLimits, ErrorInfo, Hello, HelloAck
from gatewire.frame import Codec, Flags, FrameType, Header
from gatewire.limits import MIN_FRAME, Limits, Timeouts
from gatewire.protocol import (
    MIN_FRAGMENT,
    CallFailed,
    Cancelled,
    Closed,
    Config,
    Connected,
    Connection,
    Event,
    EventReceived,
    GoAway,
    HelloReceived,
    Message,
    Pong,
    Request,
    Response,
    Role,
    Side,
    StreamData,
    StreamOpened,
    Writable,
    max_fragments,
)

from .pair import Pair


def msg(body: bytes) -> Message:
    return Message(Codec.RAW, body)


def connected(client: Config | None = None, server: Config | None = None) -> Pair:
    p = Pair(client, server)
    p.connect()
    return p


def of(events: list[Event], cls: type[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, cls)]


def raw(ty: int, flags: int, id_: int, arg: int, payload: bytes) -> bytes:
    """One frame's bytes, header fields as given."""
    header = Header(len(payload), FrameType(ty), Flags(flags), id=id_, arg=arg)
    return Frame.new(header, payload).to_bytes()


# ----- handshake and API misuse ----------------------------------------------


def test_handshake() -> None:
    p = Pair()
    assert not p.client.is_connected()
    assert p.client.poll_timeout() == 10_000
    p.connect()
    assert p.client.peer() is not None
    assert p.client.calls_in_flight() == (0, 0)
    assert p.client.table_len() == 0
    assert p.client.wants_read()
    # Keepalive is the next deadline once connected.
    assert p.client.poll_timeout() == 20_000


def test_commands_before_the_handshake() -> None:
    p = Pair()
    with pytest.raises(ex.InvalidState):
        p.client.send_request(1, msg(b"x"))
    with pytest.raises(ex.InvalidState):
        p.client.ping()
    with pytest.raises(ex.InvalidState):
        p.server.accept()
    p.transmit("client")
    p.collect("server")
    with pytest.raises(ex.InvalidArgument):
        p.server.refuse(ErrorCode.NO_ERROR)


def test_refusal() -> None:
    p = Pair()
    p.transmit("client")
    p.collect("server")
    p.server.refuse(ErrorCode.UNAUTHENTICATED, "bad token")
    assert p.server.is_closed()
    p.transmit("server")
    closed = of(p.collect("client"), Closed)
    assert len(closed) == 1
    assert isinstance(closed[0], Closed)
    err = closed[0].error
    assert isinstance(err, ex.Refused)
    assert err.side is Side.REMOTE
    assert err.code == ErrorCode.UNAUTHENTICATED
    assert err.message == "bad token"
    assert err.kind == "refused.remote"


def test_argument_ranges() -> None:
    p = connected()
    with pytest.raises(ex.InvalidArgument):
        p.client.send_request(1 << 32, msg(b""))
    with pytest.raises(ex.InvalidArgument):
        p.client.send_request(1, msg(b""), deadline=-1)
    with pytest.raises(ex.InvalidArgument):
        Message(Codec.RAW, b"", uncompressed_len=-1)
    with pytest.raises(ex.UnknownCall) as e:
        p.server.send_response(7, msg(b""))
    assert isinstance(e.value, ex.SendError) and isinstance(e.value, ex.ApiError)
    with pytest.raises(ex.UnknownCall):
        p.client.grant_credit(3, 1)
    with pytest.raises(ex.UnknownCall):
        p.client.cancel(3)
    # Compressed sends need negotiated compression.
    with pytest.raises(ex.InvalidArgument):
        p.client.send_request(1, Message.compressed(0, b"zz", 10))


def test_limits_are_validated() -> None:
    with pytest.raises(ex.InvalidLimit) as e:
        Connection(Config(Role.CLIENT, limits=Limits(max_frame=10)), 0)
    assert e.value.name == "max_frame"
    with pytest.raises(ex.InvalidLimit) as e:
        Connection(Config(Role.CLIENT, limits=Limits(initial_stream_credit=0)), 0)
    assert e.value.name == "initial_stream_credit"
    # Windows are at least one minimum frame.
    for name in ("initial_stream_credit", "connection_credit"):
        with pytest.raises(ex.InvalidLimit) as e:
            Limits(**{name: MIN_FRAME - 1}).validate()
        assert (e.value.name, e.value.min) == (name, MIN_FRAME)
        Limits(**{name: MIN_FRAME}).validate()
    # The fragment count is derived from max_message, not configured.
    with pytest.raises(TypeError):
        Limits(max_fragments=10)  # type: ignore[call-arg]
    with pytest.raises(ex.InvalidLimit):
        Limits(small_frame_threshold=1 << 32).validate()
    with pytest.raises(ex.InvalidLimit):
        Timeouts(handshake=-1).validate()
    Timeouts(idle=None, keepalive_interval=None).validate()
    Limits().validate()


# ----- calls ---------------------------------------------------------------------


def test_unary_round_trip() -> None:
    p = connected()
    id_ = p.client.send_request(7, msg(b"ping"))
    assert id_ == 1
    p.drive()
    [req] = of(p.events["server"], Request)
    assert isinstance(req, Request)
    assert (req.id, req.method, req.message.body, req.deadline) == (1, 7, b"ping", None)
    assert p.server.calls_in_flight() == (0, 1)
    p.server.send_response(req.id, msg(b"pong"))
    p.drive()
    [resp] = of(p.events["client"], Response)
    assert isinstance(resp, Response)
    assert resp.message.body == b"pong"
    assert p.client.table_len() == p.server.table_len() == 0


def test_error_reply_carries_info() -> None:
    p = connected()
    p.client.send_request(1, msg(b""))
    p.drive()
    p.server.send_error(1, ErrorCode.UNKNOWN_METHOD, ErrorInfo(message="no such method"))
    p.drive()
    [failed] = of(p.events["client"], CallFailed)
    assert isinstance(failed, CallFailed)
    assert failed.code == ErrorCode.UNKNOWN_METHOD
    assert failed.info.message == "no such method"
    assert failed.side is Side.REMOTE


def test_one_way_events() -> None:
    p = connected()
    p.client.send_event(3, msg(b"e" * 100_000))
    p.drive()
    [ev] = of(p.events["server"], EventReceived)
    assert isinstance(ev, EventReceived)
    assert ev.method == 3 and ev.message.body == b"e" * 100_000
    assert p.server.table_len() == 0


def test_fragmented_message_survives_any_split() -> None:
    body = bytes(range(256)) * 800  # 200 KiB: several 64 KiB fragments
    rng = random.Random(7)

    def split(data: bytes) -> list[bytes]:
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(5)) if data else []
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    p = Pair(split=split)
    p.connect()
    p.client.send_request(1, msg(body))
    p.drive()
    sent = [f for f in p.sent["client"] if f.header.id == 1]
    assert [f.header.ty for f in sent][:2] == [FrameType.REQUEST, FrameType.CONTINUATION]
    [req] = of(p.events["server"], Request)
    assert isinstance(req, Request) and req.message.body == body


def test_stream_credit_blocks_and_resumes() -> None:
    server = Config(Role.SERVER, limits=Limits(initial_stream_credit=1024))
    p = connected(server=server)
    sid = p.client.open_stream(9, msg(b""))
    p.drive()
    [opened] = of(p.events["server"], StreamOpened)
    assert isinstance(opened, StreamOpened) and opened.id == sid
    p.client.send_stream_data(sid, msg(b"a" * 1024))
    with pytest.raises(ex.Blocked):
        p.client.send_stream_data(sid, msg(b"b"))
    p.drive()
    assert p.client.stream_send_credit(sid) == 0
    p.server.grant_credit(sid, 100)
    p.drive()
    assert Writable(sid) in p.events["client"]
    p.client.send_stream_data(sid, msg(b"b"), end=True)
    p.drive()
    data = of(p.events["server"], StreamData)
    assert [d.message.body for d in data if isinstance(d, StreamData)] == [b"a" * 1024, b"b"]
    p.server.finish(sid)
    p.drive()
    assert p.client.table_len() == p.server.table_len() == 0


def test_send_queue_blocks_and_resumes() -> None:
    p = connected(client=Config(Role.CLIENT, limits=Limits(max_send_queue=10)))
    p.client.send_request(1, msg(b"x" * 10))
    with pytest.raises(ex.Blocked):
        p.client.send_request(1, msg(b"y"))
    p.transmit("client")
    assert Writable(None) in p.collect("client")
    p.client.send_request(1, msg(b"y"))


def test_cancel_after_delivery() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"))
    p.drive()
    p.client.cancel(1)
    p.drive()
    assert Cancelled(1, ErrorCode.CANCELLED) in p.events["server"]
    # The handler answers: nothing is sent, the slot is freed.
    p.server.send_response(1, msg(b"late"))
    p.drive()
    assert not of(p.events["client"], Response)
    assert p.server.table_len() == 0 and p.server.calls_in_flight() == (0, 0)


def test_cancel_before_send_sends_nothing() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"))
    p.client.cancel(1)
    p.drive()
    assert not [f for f in p.sent["client"] if f.header.id == 1]


def test_deadline() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"), deadline=100)
    p.drive()
    [req] = of(p.events["server"], Request)
    assert isinstance(req, Request) and req.deadline == 100
    assert p.client.poll_timeout() == 100
    p.advance(100)
    p.drive()
    assert CallFailed(1, ErrorCode.DEADLINE_EXCEEDED, ErrorInfo(), Side.LOCAL) in p.events["client"]
    assert Cancelled(1, ErrorCode.DEADLINE_EXCEEDED) in p.events["server"]


def test_ping_rtt() -> None:
    p = connected()
    token = p.client.ping()
    p.transmit("client")
    p.now += 30
    p.transmit("server")
    assert Pong(token, 30) in p.collect("client")


def test_graceful_close_drains_calls() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"))
    p.drive()
    p.server.close(ErrorCode.NO_ERROR, "restart")
    p.drive()
    goaways = of(p.events["client"], GoAway)
    assert goaways and isinstance(goaways[-1], GoAway) and goaways[-1].last_id == 1
    with pytest.raises(ex.ConnectionClosing):
        p.client.send_request(1, msg(b"y"))
    p.server.send_response(1, msg(b"done"))
    p.drive()
    assert p.client.is_closed() and p.server.is_closed()
    assert Closed(None) in p.events["client"] and Closed(None) in p.events["server"]


def test_close_with_error_fails_calls() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"))
    p.drive()
    p.client.close(ErrorCode.INTERNAL, "bug")
    p.collect("client")
    failed = of(p.events["client"], CallFailed)
    assert failed == [CallFailed(1, ErrorCode.INTERNAL, ErrorInfo(), Side.LOCAL)]
    p.drive()
    closed = of(p.events["server"], Closed)
    assert len(closed) == 1 and isinstance(closed[0], Closed)
    assert isinstance(closed[0].error, ex.RemoteClosed)
    assert closed[0].error.code == ErrorCode.INTERNAL
    with pytest.raises(ex.ConnectionClosed):
        p.client.send_request(1, msg(b""))


def test_keepalive_closes_a_silent_peer() -> None:
    p = connected()
    p.advance(20_000)
    ping = p.client.poll_transmit()
    assert ping is not None and ping.header.ty == FrameType.PING
    p.advance(20_000)
    closed = of(p.collect("client"), Closed)
    assert len(closed) == 1 and isinstance(closed[0], Closed)
    err = closed[0].error
    assert isinstance(err, ex.TimerExpired) and err.kind == "timeout.keepalive"
    assert err.code == ErrorCode.TIMEOUT


def test_connection_lost() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"))
    p.client.handle_eof(p.now)
    events = p.collect("client")
    assert CallFailed(1, ErrorCode.UNAVAILABLE, ErrorInfo(), Side.LOCAL) in events
    closed = of(events, Closed)
    assert len(closed) == 1 and isinstance(closed[0], Closed)
    assert isinstance(closed[0].error, ex.ConnectionLost)


def test_input_pauses_while_replies_pile_up() -> None:
    server = Config(
        Role.SERVER,
        limits=Limits(max_pending_control=4, max_ping_strikes=1000),
        timeouts=Timeouts(min_ping_interval=0),
    )
    p = connected(server=server)
    ping = Frame.new(Header.new(FrameType.PING, 0, 0, 8), b"\x00" * 8).to_bytes()
    p.server.handle_bytes(p.now, ping * 10)
    assert not p.server.wants_read()
    # Four PONGs are queued; the other PINGs wait in the read buffer.
    assert len(p.server.read_buf()) == 6 * len(ping)
    pongs = 0
    while (f := p.server.poll_transmit()) is not None:
        assert f.header.ty == FrameType.PONG
        pongs += 1
    assert pongs == 10
    assert p.server.wants_read()


def test_message_preserving_transport() -> None:
    p = Pair()
    hello = p.client.poll_transmit()
    assert hello is not None
    p.server.handle_frame(p.now, hello.to_bytes())
    assert p.collect("server")
    p.server.handle_frame(p.now, hello.to_bytes() + b"\x00")
    closed = of(p.collect("server"), Closed)
    assert len(closed) == 1 and isinstance(closed[0], Closed)
    assert isinstance(closed[0].error, ex.Truncated)
    goaway = p.server.poll_transmit()
    assert goaway is not None and goaway.header.ty == FrameType.GOAWAY


def test_the_messages_of_one_read_are_taken_together() -> None:
    p = Pair()
    hello = p.client.poll_transmit()
    assert hello is not None
    p.server.handle_frame(p.now, hello.to_bytes())
    for e in p.collect("server"):
        if isinstance(e, HelloReceived):
            p.server.accept()
    # The server's HELLO_ACK and, in the same read, a request larger than
    # the handshake's frame limit: the limit rises between the two.
    big = bytes(20 * 1024)
    assert len(big) > Limits().max_handshake
    p.server.send_request(7, msg(big))
    frames = []
    while (f := p.server.poll_transmit()) is not None:
        frames.append(f.to_bytes())
    assert [Frame.decode_exact(f, 1 << 20).header.ty for f in frames] == [
        FrameType.HELLO_ACK,
        FrameType.REQUEST,
    ]
    p.client.handle_frames(p.now, frames)
    events = p.collect("client")
    assert not of(events, Closed)
    requests = of(events, Request)
    assert len(requests) == 1 and isinstance(requests[0], Request)
    assert requests[0].method == 7 and requests[0].message.body == big
    # After an error, the rest of the read is dropped.
    p.client.handle_frames(p.now, [frames[1][:-1], frames[1]])
    events = p.collect("client")
    assert not of(events, Request)
    closed = of(events, Closed)
    assert len(closed) == 1 and isinstance(closed[0], Closed)
    assert isinstance(closed[0].error, ex.Truncated)


def test_malformed_bytes_close_with_goaway() -> None:
    p = connected()
    p.server.handle_bytes(p.now, Header.new(0x20, 0, 0, 0).to_bytes())
    closed = of(p.collect("server"), Closed)
    assert len(closed) == 1 and isinstance(closed[0], Closed)
    err = closed[0].error
    assert isinstance(err, ex.UnknownType) and err.kind == "malformed.unknown_type"
    f = p.server.poll_transmit()
    assert f is not None and f.header.ty == FrameType.GOAWAY
    assert f.header.arg == ErrorCode.PROTOCOL_VIOLATION


def test_error_tree() -> None:
    assert ex.LimitExceeded("max_message", 2, 1).code == ErrorCode.TOO_LARGE
    assert ex.LimitExceeded("max_in_flight", 2, 1).code == ErrorCode.EXCESSIVE_LOAD
    assert ex.LimitExceeded("max_message", 2, 1).kind == "limit.max_message"
    assert ex.BudgetExhausted("stray frames").kind == "budget.stray_frames"
    assert ex.FlowControlError("connection").code == ErrorCode.FLOW_CONTROL
    assert ex.FrameTooLarge(2, 1).code == ErrorCode.TOO_LARGE
    assert ex.ConnectionLost().code == ErrorCode.UNAVAILABLE
    assert ex.UnexpectedFrame(FrameType.PING).reason() == "protocol violation"
    assert ex.Blocked().kind == "Blocked"
    for cls in (ex.FrameError, ex.ControlError, ex.Violation):
        assert issubclass(cls, ex.ConnectionFailed)
    assert issubclass(ex.ConnectionFailed, ex.GatewireError)
    assert issubclass(ex.InvalidLimit, ValueError)


# ----- fragments, windows, skipped events, GOAWAY, grants ---------------------------
# Outcomes as recorded from the Rust core (see directed.py, whose conversations
# the differential test replays against it).


def test_fragment_limit_is_derived_from_max_message() -> None:
    assert MIN_FRAGMENT == 256
    assert max_fragments(1024) == 6
    assert max_fragments(1 << 20) == 4098
    server = Config(Role.SERVER, limits=Limits(max_message=1024))

    def fragments(count: int) -> bytes:
        out = raw(FrameType.REQUEST, Flags.MORE, 1, 1, b"r")
        for i in range(1, count):
            out += raw(FrameType.CONTINUATION, Flags.MORE if i < count - 1 else 0, 1, 0, b"c")
        return out

    p = connected(server=server)
    p.server.handle_bytes(p.now, fragments(6))
    [req] = of(p.collect("server"), Request)
    assert isinstance(req, Request) and req.message.body == b"r" + b"c" * 5

    p = connected(server=server)
    p.server.handle_bytes(p.now, fragments(7))
    [closed] = of(p.collect("server"), Closed)
    assert isinstance(closed, Closed)
    err = closed.error
    assert isinstance(err, ex.LimitExceeded)
    assert (err.limit, err.value, err.max, err.code) == ("max_fragments", 7, 6, ErrorCode.TOO_LARGE)
    goaway = p.server.poll_transmit()
    assert goaway is not None and goaway.header.ty == FrameType.GOAWAY
    assert goaway.header.arg == ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    ("threshold", "first", "cut"),
    [(1000, 4700, 300), (256, 4800, None), (0, 4900, None), (0, 4744, 256)],
)
def test_credit_cut_frames_carry_at_least_min_fragment(
    threshold: int, first: int, cut: int | None
) -> None:
    """A frame cut short by credit is sent when it carries MIN_FRAGMENT bytes
    (or half the window), whatever ``small_frame_threshold`` is."""
    client = Config(Role.CLIENT, limits=Limits(small_frame_threshold=threshold))
    server = Config(Role.SERVER, limits=Limits(initial_stream_credit=5000))
    p = connected(client, server)
    sid = p.client.open_stream(1, msg(b""))
    p.drive()
    p.client.send_stream_data(sid, msg(b"a" * first))
    p.drive()
    p.client.send_stream_data(sid, msg(b"b" * 1000))
    frame = p.client.poll_transmit()
    if cut is None:
        assert frame is None
    else:
        assert frame is not None and frame.header.ty == FrameType.STREAM_DATA
        assert frame.header.flags.contains(Flags.MORE) and len(frame.payload) == cut
        p.server.handle_bytes(p.now, frame.to_bytes())
    p.drive()
    p.server.grant_credit(sid, 5000)
    p.drive()
    data = [e.message.body for e in of(p.events["server"], StreamData) if isinstance(e, StreamData)]
    assert data == [b"a" * first, b"b" * 1000]


@pytest.mark.parametrize("name", ["initial_stream_credit", "connection_credit"])
def test_advertised_windows_below_min_frame_are_refused(name: str) -> None:
    for value, ok in ((0, True), (1, False), (MIN_FRAME - 1, False), (MIN_FRAME, True)):
        limits = AdvertisedLimits(**{name: value})
        # In HELLO_ACK: the client closes with a violation.
        client = Connection(Config(Role.CLIENT), 0)
        assert client.poll_transmit() is not None
        ack = HelloAck(version=1, error_code=ErrorCode.NO_ERROR, limits=limits).encode()
        client.handle_bytes(0, raw(FrameType.HELLO_ACK, 0, 0, 0, ack))
        events = []
        while (e := client.poll_event()) is not None:
            events.append(e)
        if ok:
            assert client.is_connected() and of(events, Connected)
        else:
            [closed] = events
            assert isinstance(closed, Closed) and isinstance(closed.error, ex.InvalidPeerLimit)
            assert closed.error.name == name
            assert closed.error.kind == "violation.invalid_peer_limit"
            assert closed.error.code == ErrorCode.PROTOCOL_VIOLATION
        # In HELLO: the server refuses the handshake as incompatible.
        server = Connection(Config(Role.SERVER), 0)
        hello = Hello(min_version=1, max_version=1, limits=limits).encode()
        server.handle_bytes(0, raw(FrameType.HELLO, 0, 0, 0, hello))
        events = []
        while (e := server.poll_event()) is not None:
            events.append(e)
        if ok:
            assert not server.is_closed()
        else:
            [closed] = events
            assert isinstance(closed, Closed) and isinstance(closed.error, ex.Refused)
            assert closed.error.code == ErrorCode.INCOMPATIBLE
            assert closed.error.side is Side.LOCAL


@pytest.mark.parametrize("how", ["cancel", "cancel-ended", "deadline"])
def test_events_after_a_skipped_open_are_skipped(how: str) -> None:
    """A stream cancelled before the application saw it opened never
    surfaces: neither its data nor its cancellation."""
    p = connected()
    deadline = 10 if how == "deadline" else None
    sid = p.client.open_stream(1, msg(b"open"), deadline, end=how == "cancel-ended")
    if how != "cancel-ended":
        p.client.send_stream_data(sid, msg(b"data"))
        p.client.send_stream_data(sid, msg(b"last"), end=True)
    rid = p.client.send_request(2, msg(b"req"))
    p.transmit("client")
    if how == "deadline":
        p.advance(20)
    else:
        p.client.cancel(sid)
        p.transmit("client")
    events = p.collect("server")
    assert [e for e in events if getattr(e, "id", None) == sid] == []
    [req] = of(events, Request)
    assert isinstance(req, Request) and req.id == rid
    p.server.send_response(rid, msg(b"ok"))
    p.drive()
    assert Response(rid, msg(b"ok")) in p.events["client"]
    assert p.server.table_len() == 0 and p.server.calls_in_flight() == (0, 0)


def test_goaway_last_id_never_increases() -> None:
    p = connected()
    p.client.send_request(1, msg(b"x"))
    p.drive()
    p.server.close(ErrorCode.NO_ERROR)
    p.transmit("server")
    p.collect("client")
    p.transmit("client")  # the PONG: the server's final GOAWAY names id 1
    # An open past the final GOAWAY is refused, and raises the last peer id.
    p.server.handle_bytes(p.now, raw(FrameType.REQUEST, 0, 7, 1, b"x"))
    assert not of(p.collect("server"), Request)
    p.server.close(ErrorCode.INTERNAL)
    goaways = []
    while (f := p.server.poll_transmit()) is not None:
        if f.header.ty == FrameType.GOAWAY:
            goaways.append((f.header.id, f.header.arg))
    assert goaways == [(1, ErrorCode.NO_ERROR), (1, ErrorCode.INTERNAL)]


def test_a_grant_beyond_the_window_keeps_its_remainder() -> None:
    server = Config(Role.SERVER, limits=Limits(initial_stream_credit=1024))
    p = connected(server=server)
    sid = p.client.open_stream(1, msg(b""))
    p.drive()

    def stream_grants() -> list[int]:
        out = []
        while (f := p.server.poll_transmit()) is not None:
            if f.header.ty == FrameType.CREDIT and f.header.id == sid:
                out.append(f.header.arg)
            p.client.handle_bytes(p.now, f.to_bytes())
        return out

    p.server.grant_credit(sid, 0xFFFF_FFFF)
    # The window is full at 2^31 - 1; the rest stays pending.
    assert stream_grants() == [(1 << 31) - 1 - 1024]
    assert p.client.stream_send_credit(sid) == (1 << 31) - 1
    for _ in range(2):
        p.client.send_stream_data(sid, msg(b"d" * 600))
        p.drive()
        # The pending remainder refills what was consumed (600 >= half the
        # initial window), though the application granted only one byte.
        p.server.grant_credit(sid, 1)
        assert stream_grants() == [600]
        assert p.client.stream_send_credit(sid) == (1 << 31) - 1


# ----- properties ------------------------------------------------------------------

_FRAGMENTED = Limits(send_fragment=1024)

_req = st.tuples(st.just("req"), st.integers(0, 3000), st.none() | st.integers(0, 200))
_respond = st.tuples(st.just("respond"), st.integers(0, 50), st.booleans())
_cancel = st.tuples(st.just("cancel"), st.integers(0, 50), st.just(False))
_pump = st.tuples(st.just("pump"), st.just(0), st.just(False))
_advance = st.tuples(st.just("advance"), st.integers(0, 60), st.just(False))
ops = st.lists(
    st.one_of(_req, _req, _respond, _respond, _cancel, _pump, _pump, _advance),
    min_size=10,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 2**32))
def test_no_call_is_lost_or_duplicated(
    script: list[tuple[str, int, int | bool | None]], seed: int
) -> None:
    rng = random.Random(seed)

    def split(data: bytes) -> list[bytes]:
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4)))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    p = Pair(
        Config(Role.CLIENT, limits=_FRAGMENTED),
        Config(Role.SERVER, limits=_FRAGMENTED),
        split=split,
    )
    p.connect()
    opened: list[int] = []
    cancelled: set[int] = set()
    terminal: Counter[int] = Counter()
    seen: Counter[int] = Counter()
    pending: list[int] = []
    bodies: dict[int, bytes] = {}

    def on_event(side: str, e: Event) -> None:
        if side == "client" and isinstance(e, Response | CallFailed):
            assert e.id not in cancelled, f"event for cancelled call {e.id}"
            terminal[e.id] += 1
            if isinstance(e, CallFailed):
                event(f"call failed: {e.code.name}")
            if isinstance(e, Response):
                assert e.message.body == bodies[e.id][::-1]
        elif side == "server" and isinstance(e, Cancelled):
            event(f"server saw cancel: {e.code.name}")
        elif side == "server" and isinstance(e, Request):
            if len(e.message.body) > 1024:
                event("fragmented request")
            seen[e.id] += 1
            assert e.message.body == bodies[e.id]
            pending.append(e.id)
        assert not isinstance(e, Closed), e

    def answer(index: int, ok: bool) -> None:
        id_ = pending.pop(index % len(pending))
        if ok:
            p.server.send_response(id_, msg(bodies[id_][::-1]))
        else:
            p.server.send_error(id_, ErrorCode.INTERNAL, ErrorInfo(message="x"))

    for op, a, b in script:
        if op == "req":
            body = rng.randbytes(a)
            deadline = b if isinstance(b, int) and not isinstance(b, bool) else None
            try:
                id_ = p.client.send_request(1, msg(body), deadline)
            except ex.Blocked:
                continue
            opened.append(id_)
            bodies[id_] = body
        elif op == "respond" and pending:
            answer(a, bool(b))
        elif op == "cancel":
            live = [i for i in opened if i not in cancelled and not terminal[i]]
            if live:
                id_ = live[a % len(live)]
                try:
                    p.client.cancel(id_)
                except ex.UnknownCall:
                    continue  # completed already; its event is on the way
                cancelled.add(id_)
        elif op == "pump":
            p.transmit("client")
            p.transmit("server")
            for side in ("client", "server"):
                for e in p.collect(side):
                    on_event(side, e)
        elif op == "advance":
            p.advance(a)
            for side in ("client", "server"):
                for e in p.collect(side):
                    on_event(side, e)
    # Settle: the server answers everything it was given.
    for _ in range(100):
        p.drive(on_event)
        if not pending:
            break
        while pending:
            answer(0, True)
    p.advance(500)  # let any remaining deadline fire
    p.drive(on_event)
    for id_ in opened:
        assert terminal[id_] == (0 if id_ in cancelled else 1), id_
    assert all(n == 1 for n in seen.values())
    assert set(seen) <= set(opened)
    assert p.client.table_len() == p.server.table_len() == 0
    assert p.client.calls_in_flight() == p.server.calls_in_flight() == (0, 0)
    assert p.client.is_connected() and p.server.is_connected()


def test_transmit_takes_at_least_one_ready_frame() -> None:
    p = Pair()
    p.connect()
    ids = [p.client.send_request(1, msg(b"x" * 100)) for _ in range(3)]
    one = p.client.transmit(0)
    assert len(one) == 1 and len(one[0]) == 16 + 100
    rest = p.client.transmit(1 << 20)
    assert len(rest) == 2
    assert p.client.transmit(1 << 20) == []
    p.server.handle_bytes(p.now, b"".join(one + rest))
    assert [e.id for e in p.collect("server") if isinstance(e, Request)] == ids


_pings = st.tuples(st.just("ping"), st.integers(1, 8), st.just(False))
_ops_with_pings = st.lists(
    st.one_of(_req, _req, _respond, _respond, _cancel, _pump, _pump, _advance, _pings),
    min_size=10,
    max_size=80,
)


@settings(max_examples=100, deadline=None)
@given(_ops_with_pings, st.integers(0, 2**32))
def test_transmit_batches_what_poll_transmit_returns(
    script: list[tuple[str, int, int | bool | None]], seed: int
) -> None:
    """The same conversation drained frame by frame and in encoded batches
    of random limits: both sides write the same bytes and report the same
    events."""
    runs = []
    for batched in (False, True):
        rng = random.Random(seed)
        limit = functools.partial(
            random.Random(seed + 1).choice, [1, 16, 17, 600, 1040, 4096, 1 << 20]
        )

        # The server stops reading at four queued control frames (PONGs
        # here), so taking frames must resume its input.
        server_limits = replace(_FRAGMENTED, max_pending_control=4, max_ping_strikes=1000)
        p = Pair(
            Config(Role.CLIENT, limits=_FRAGMENTED),
            Config(Role.SERVER, limits=server_limits),
            batch=limit if batched else None,
        )
        p.connect()
        opened: list[int] = []
        requests: list[int] = []
        for op, a, b in script:
            if op == "req":
                deadline = b if isinstance(b, int) and not isinstance(b, bool) else None
                with contextlib.suppress(ex.Blocked):
                    opened.append(p.client.send_request(1, msg(rng.randbytes(a)), deadline))
            elif op == "respond" and requests:
                id_ = requests.pop(a % len(requests))
                with contextlib.suppress(ex.GatewireError):
                    if b:
                        p.server.send_response(id_, msg(rng.randbytes(a * 40)))
                    else:
                        p.server.send_error(id_, ErrorCode.INTERNAL, ErrorInfo(message="x"))
            elif op == "cancel" and opened:
                with contextlib.suppress(ex.UnknownCall):
                    p.client.cancel(opened[a % len(opened)])
            elif op == "pump":
                p.transmit("client")
                p.transmit("server")
            elif op == "advance":
                p.advance(a)
            elif op == "ping":
                for _ in range(a):
                    with contextlib.suppress(ex.InvalidState):
                        p.client.ping()
            for e in p.collect("server"):
                if isinstance(e, Request):
                    requests.append(e.id)
            p.collect("client")
        p.client.close(ErrorCode.NO_ERROR, None)
        p.drive()
        runs.append((bytes(p.wire["client"]), bytes(p.wire["server"]), p.events))
    assert runs[0] == runs[1]
