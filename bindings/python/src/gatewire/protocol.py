"""The connection state machine (sans-IO). Mirrors
``gatewire_proto::connection``, rule for rule.

A :class:`Connection` holds everything one gatewire connection knows: the
handshake, the table of calls and streams in both directions, credit windows,
reassembly of fragmented messages, keepalive and the two-phase shutdown. It
never performs I/O and never reads a clock: time is an input, ``now``, in
integer milliseconds since an origin the runtime chooses, and deadlines come
back in the same terms from :meth:`Connection.poll_timeout`. Every duration
(deadlines, round-trip times, :class:`~gatewire.limits.Timeouts`) is integer
milliseconds.

Polling order
-------------

After every input (``handle_bytes``, ``handle_frame`` or ``handle_frames``
for the messages of one read, ``handle_eof``, ``handle_timeout``) or
command (``send_request``, ``cancel``, ``close``...):

1. :meth:`Connection.poll_transmit` until ``None``, writing each frame;
2. :meth:`Connection.poll_event` until ``None``, delivering each event;
3. :meth:`Connection.poll_timeout`, arming one timer that calls
   :meth:`Connection.handle_timeout`.

Reading more input is allowed while :meth:`Connection.wants_read` is true.
The core stops consuming input on its own when too many control replies or
undelivered events are queued, and resumes as they drain: this is how a
peer that floods PINGs or tiny events is held to bounded memory.

Backpressure
------------

A send past the credit, the call slots or the send queue raises
:class:`~gatewire.exceptions.Blocked` and changes nothing; a later
:class:`Writable` event says retry. There is no waiting in the core.
"""

from __future__ import annotations

import enum
import struct
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, overload

from .code import ErrorCode
from .codec import Frame, FrameDecoder
from .control import AdvertisedLimits, ErrorInfo, GoAwayInfo, Hello, HelloAck, Service
from .exceptions import (
    Blocked,
    BudgetExhausted,
    CompressionNotNegotiated,
    ConnectionClosed,
    ConnectionClosing,
    ConnectionFailed,
    ConnectionLost,
    FlowControlError,
    FrameError,
    GoAwayIncreased,
    IdNotIncreasing,
    IdsExhausted,
    Incompatible,
    InterleavedMessage,
    InvalidArgument,
    InvalidPeerLimit,
    InvalidState,
    LimitExceeded,
    LocalClosed,
    MessageTooLarge,
    Refused,
    RemoteClosed,
    ShortPrelude,
    TimerExpired,
    UnexpectedFrame,
    UnknownCall,
    UnopenedId,
    VersionNotOffered,
    Violation,
    WrongParity,
)
from .frame import (
    MAX_FRAME_CEILING,
    PING_PAYLOAD_LEN,
    U32_MAX,
    U64_MAX,
    Codec,
    Flags,
    FrameType,
    Header,
    pack_header,
    trusted_constructor,
    trusted_header,
)
from .limits import MAX_WINDOW, MIN_FRAME, Limits, Timeouts
from .services import check as check_services

__all__ = [
    "COMPRESSION_ZSTD",
    "MAX_PENDING_EVENTS",
    "MAX_REASON_LEN",
    "MAX_USER_PINGS",
    "MIN_FRAGMENT",
    "PROTOCOL_VERSION",
    "CallFailed",
    "Cancelled",
    "Closed",
    "Config",
    "Connected",
    "Connection",
    "Event",
    "EventReceived",
    "GoAway",
    "HelloReceived",
    "Message",
    "PeerInfo",
    "Pong",
    "Request",
    "Response",
    "Role",
    "Side",
    "StreamData",
    "StreamOpened",
    "Writable",
    "max_fragments",
    "new_message",
]

PROTOCOL_VERSION = 1
"""The protocol version this package implements."""

COMPRESSION_ZSTD = 1
"""The compression algorithm id of zstd in HELLO and HELLO_ACK."""

MAX_USER_PINGS = 16
"""Maximum outstanding :meth:`Connection.ping` probes."""

MAX_PENDING_EVENTS = 1024
"""Undelivered events after which input is paused until they are polled."""

MAX_REASON_LEN = 256

#: Calls this endpoint ended that it remembers, so frames the peer had in
#: flight for them are not charged as strays.
MAX_ENDED_HERE = 1024
"""Longest reason string we put in GOAWAY, a refusal or a shortened ERROR,
in bytes."""

MIN_FRAGMENT = 256
"""Smallest non-final fragment a sender emits: a frame that credit would cut
shorter waits for more credit instead."""


def max_fragments(max_message: int) -> int:
    """Fragments a message of at most ``max_message`` bytes may span: every
    non-final fragment carries at least :data:`MIN_FRAGMENT` bytes."""
    return max_message // MIN_FRAGMENT + 2


_PING_TOKEN_GOAWAY_BIT = 1 << 63
_U64 = struct.Struct("<Q")


class Role(enum.Enum):
    """Which end of the connection this is. The client sends HELLO and opens
    odd ids; the server answers HELLO_ACK and opens even ids. Once connected
    both may call the other."""

    CLIENT = "client"
    SERVER = "server"


class Side(enum.Enum):
    """Who did something."""

    LOCAL = "local"
    REMOTE = "remote"


def _u32_arg(what: str, value: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= U32_MAX:
        raise InvalidArgument(f"{what} must be in 0..=0xffffffff")
    return value


@dataclass(frozen=True, slots=True)
class Message:
    """A message body with its codec tag.

    Attributes:
        codec: payload codec.
        body: the body exactly as received: still compressed when
            ``uncompressed_len`` is set.
        uncompressed_len: for a compressed body, the declared size after
            decompression (already checked against the message limit). The
            runtime decompresses with its output capped to this size.

    Raises:
        InvalidArgument: from the constructor, for an out-of-range field.
    """

    codec: Codec
    body: bytes
    uncompressed_len: int | None = None

    def __post_init__(self) -> None:
        if type(self.codec) is not Codec:
            if not isinstance(self.codec, int) or not 0 <= self.codec <= 0xFF:
                raise InvalidArgument("codec must be in 0..=255")
            object.__setattr__(self, "codec", Codec(self.codec))
        if type(self.body) is not bytes:
            object.__setattr__(self, "body", bytes(self.body))
        if self.uncompressed_len is not None:
            _u32_arg("uncompressed_len", self.uncompressed_len)

    @classmethod
    def raw(cls, body: bytes) -> Message:
        """Opaque bytes (:attr:`Codec.RAW`)."""
        return cls(Codec.RAW, body)

    @classmethod
    def flatbuffers(cls, body: bytes) -> Message:
        """A FlatBuffers buffer (:attr:`Codec.FLATBUFFERS`)."""
        return cls(Codec.FLATBUFFERS, body)

    @classmethod
    def compressed(cls, codec: int, body: bytes, uncompressed_len: int) -> Message:
        """A message whose body is already zstd-compressed from
        ``uncompressed_len`` bytes."""
        return cls(Codec(codec), body, uncompressed_len)


def _default_codecs() -> bytes:
    return bytes([0, 1, 2, 3])


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a connection is configured with."""

    role: Role
    """Client or server."""
    limits: Limits = field(default_factory=Limits)
    """Size, count and budget limits."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    """Timeouts."""
    compression: bool = False
    """Offer to decode zstd-compressed messages. Default ``False``."""
    codecs: bytes = field(default_factory=_default_codecs)
    """Payload codecs to advertise. Default: raw, FlatBuffers, postcard, JSON."""
    services: tuple[Service, ...] = ()
    """Services this endpoint offers (serves)."""
    uses: tuple[Service, ...] = ()
    """Services this endpoint uses (calls on the peer). A server refuses a
    client whose services are incompatible with these (§10.3)."""
    auth: bytes | None = None
    """Authentication payload sent in HELLO (client only)."""
    agent: str | None = None
    """Implementation name sent in the handshake."""

    @classmethod
    def client(cls) -> Config:
        """Defaults for a client."""
        return cls(Role.CLIENT)

    @classmethod
    def server(cls) -> Config:
        """Defaults for a server."""
        return cls(Role.SERVER)

    def _advertised(self) -> AdvertisedLimits:
        lim = self.limits
        return AdvertisedLimits(
            max_frame=lim.max_frame,
            max_message=lim.max_message,
            max_in_flight=lim.max_in_flight,
            initial_stream_credit=lim.initial_stream_credit,
            connection_credit=lim.connection_credit,
        )

    def _compression_list(self) -> bytes:
        return bytes([COMPRESSION_ZSTD]) if self.compression else b""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """What the peer agreed to in the handshake."""

    version: int
    """The negotiated protocol version."""
    limits: AdvertisedLimits
    """The peer's receive limits (protocol defaults filled in)."""
    compression: bool
    """Whether both sides decode zstd, so compressed messages may be sent."""
    codecs: bytes
    """Codecs the peer understands."""
    services: tuple[Service, ...]
    """Services the peer offers."""
    agent: str | None
    """The peer's implementation name."""
    uses: tuple[Service, ...] = ()
    """Services the peer uses."""


# ----- events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """Server: a client said HELLO. Answer with :meth:`Connection.accept` or
    :meth:`Connection.refuse`."""

    hello: Hello


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake completed; calls may flow."""

    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class Request:
    """The peer called a method; answer with ``send_response`` or
    ``send_error``. ``deadline``: milliseconds the caller allows, counted
    from receipt."""

    id: int
    method: int
    message: Message
    deadline: int | None


@dataclass(frozen=True, slots=True)
class Response:
    """A call we made completed."""

    id: int
    message: Message


@dataclass(frozen=True, slots=True)
class CallFailed:
    """A call or stream we opened ended without a response: the peer sent
    ERROR, its deadline passed, the peer's GOAWAY refused it, or the
    connection ended. ``side``: whether the peer sent the code (``REMOTE``)
    or we concluded it."""

    id: int
    code: ErrorCode
    info: ErrorInfo
    side: Side


@dataclass(frozen=True, slots=True)
class EventReceived:
    """A one-way message (Rust ``Event::Event``)."""

    method: int
    message: Message


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream. ``end``: the peer will send nothing more;
    ``deadline``: milliseconds the caller allows, counted from receipt."""

    id: int
    method: int
    message: Message
    end: bool
    deadline: int | None


@dataclass(frozen=True, slots=True)
class StreamData:
    """A message on a stream. ``end``: the peer will send nothing more on it."""

    id: int
    message: Message
    end: bool


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A call or stream the peer opened was cancelled (by the peer, by its
    deadline or by the connection ending). Stop the handler; its slot is held
    until the application answers with ``send_response``, ``send_error`` or
    ``finish`` (which then send nothing)."""

    id: int
    code: ErrorCode


@dataclass(frozen=True, slots=True)
class Writable:
    """A send that raised ``Blocked`` may be retried: on the stream ``id``,
    or for the connection when ``None`` (send queue or call slots)."""

    id: int | None


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to :meth:`Connection.ping`; ``rtt`` in milliseconds."""

    token: int
    rtt: int


@dataclass(frozen=True, slots=True)
class GoAway:
    """The peer is shutting down: calls above ``last_id`` were refused (each
    got a ``CallFailed`` with ``REFUSED``), and no new call may be opened."""

    last_id: int
    code: ErrorCode
    message: str | None


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over; nothing more will be sent or received. Every
    call in flight has been reported before this event. ``error`` is
    ``None`` for a graceful end."""

    error: ConnectionFailed | None


Event: TypeAlias = (
    HelloReceived
    | Connected
    | Request
    | Response
    | CallFailed
    | EventReceived
    | StreamOpened
    | StreamData
    | Cancelled
    | Writable
    | Pong
    | GoAway
    | Closed
)
"""Something the application must learn about."""

# What the core builds from frames it decoded (fields already checked).
new_message: Callable[[Codec, bytes, int | None], Message] = trusted_constructor(Message)
"""``Message(codec, body, uncompressed_len)`` for a :class:`Codec`, ``bytes``
and a size already checked (or ``None``)."""
_new_request: Callable[[int, int, Message, int | None], Request] = trusted_constructor(Request)
_new_response: Callable[[int, Message], Response] = trusted_constructor(Response)
_new_frame: Callable[[Header, bytes], Frame] = trusted_constructor(Frame)


_MESSAGE_EVENTS = (Request, Response, EventReceived, StreamOpened, StreamData)


def _message_len(e: Event) -> int:
    if isinstance(e, _MESSAGE_EVENTS):
        return len(e.message.body)
    return 0


def _truncate_reason(s: str) -> str:
    raw = s.encode("utf-8")
    if len(raw) <= MAX_REASON_LEN:
        return s
    # Cut at a character boundary: the incomplete tail is dropped.
    return raw[:MAX_REASON_LEN].decode("utf-8", errors="ignore")


# ----- internals ----------------------------------------------------------------


class _Phase(enum.Enum):
    HANDSHAKE = enum.auto()
    """Client: HELLO queued, awaiting HELLO_ACK. Server: awaiting HELLO."""
    AWAITING_ACCEPT = enum.auto()
    """Server: HELLO received, awaiting accept/refuse."""
    OPEN = enum.auto()
    CLOSED = enum.auto()


@dataclass(frozen=True, slots=True)
class _Announced:
    """First GOAWAY (last = MAX) sent with a PING carrying this token."""

    token: int
    deadline: int


@dataclass(frozen=True, slots=True)
class _Draining:
    """Final GOAWAY sent; closing when drained or at the deadline."""

    deadline: int


class _Kind(enum.Enum):
    UNARY = enum.auto()
    STREAM = enum.auto()
    EVENT = enum.auto()
    """A one-way message being reassembled."""


_VIEW_MIN = 1024
"""Body parts at least this large are cut as views (one copy fewer)."""

_OPENING = (FrameType.REQUEST, FrameType.EVENT, FrameType.STREAM_OPEN)
"""The frame types that open an id."""

# The members of these enums as module constants, for the code that runs on
# every frame: a member looked up on its enum class costs several times a
# global.
_LOCAL, _REMOTE = Side.LOCAL, Side.REMOTE
_HANDSHAKE, _AWAITING_ACCEPT = _Phase.HANDSHAKE, _Phase.AWAITING_ACCEPT
_OPEN, _CLOSED = _Phase.OPEN, _Phase.CLOSED
_UNARY, _STREAM, _EVENT = _Kind.UNARY, _Kind.STREAM, _Kind.EVENT


class _Budget:
    """A counter a peer spends by triggering work and earns back by useful
    traffic. An exhausted budget ends the connection with
    GOAWAY(EXCESSIVE_LOAD)."""

    __slots__ = ("_left", "_max")

    def __init__(self, maximum: int) -> None:
        self._left = maximum
        self._max = maximum

    def charge(self, n: int) -> bool:
        """Spends ``n``; ``False`` when the budget is exhausted."""
        if self._left >= n:
            self._left -= n
            return True
        self._left = 0
        return False

    def refund(self, n: int) -> None:
        """Earns back ``n``, up to the maximum."""
        left = self._left + n
        self._left = left if left < self._max else self._max


class _SortedSet:
    """An ordered set of ``(instant, id)`` pairs (Rust ``BTreeSet``)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[tuple[int, int]] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    def insert(self, item: tuple[int, int]) -> None:
        i = bisect_left(self._items, item)
        if i == len(self._items) or self._items[i] != item:
            self._items.insert(i, item)

    def remove(self, item: tuple[int, int]) -> None:
        i = bisect_left(self._items, item)
        if i < len(self._items) and self._items[i] == item:
            del self._items[i]

    def first(self) -> tuple[int, int] | None:
        return self._items[0] if self._items else None

    def pop_first(self) -> None:
        del self._items[0]

    def clear(self) -> None:
        self._items.clear()


class _Assembly:
    """A message arriving in several frames."""

    __slots__ = (
        "codec",
        "deadline",
        "expires",
        "flags",
        "fragments",
        "length",
        "method",
        "parts",
        "ty",
        "uncompressed",
    )

    def __init__(
        self,
        h: Header,
        first: bytes,
        deadline: int | None,
        uncompressed: int | None,
        expires: int,
    ) -> None:
        self.ty = h.ty
        self.flags = h.flags
        self.codec = h.codec
        self.method = h.arg
        self.deadline = deadline
        self.uncompressed = uncompressed
        self.parts = [first]
        """The fragments' payloads, joined once the message is complete."""
        self.length = len(first)
        self.fragments = 1
        self.expires = expires
        """The message must be complete by then."""


class _Call:
    """One entry of the call table."""

    __slots__ = (
        "assembly",
        "blocked",
        "cancelled",
        "deadline",
        "delivered",
        "grant_pending",
        "kind",
        "method",
        "opened",
        "origin",
        "out_seqs",
        "prepaid",
        "queued",
        "recv_credit",
        "recv_open",
        "send_credit",
        "send_open",
        "slot",
    )

    def __init__(self, kind: _Kind, origin: Side) -> None:
        self.kind = kind
        self.origin = origin
        self.method = 0
        self.deadline: int | None = None
        self.send_open = False
        """Our half may still send."""
        self.recv_open = origin is _LOCAL
        """The peer's half may still send (for a call we opened: a response
        is still expected)."""
        self.send_credit = 0
        """Credit the peer granted on this stream, minus bytes sent."""
        self.recv_credit = 0
        """Bytes the peer may still send on this stream."""
        self.grant_pending = 0
        """Consumed bytes not yet granted back."""
        self.prepaid = 0
        """Bytes credited back during reassembly, deducted from the
        application's next grants."""
        self.queued = 0
        """Stream bytes accepted by ``send_stream_data`` and not yet sent."""
        self.blocked = False
        """A send raised ``Blocked``; report ``Writable`` when credit returns."""
        self.opened = origin is _REMOTE
        """The peer knows the id (our opening frame is out, or the peer
        opened)."""
        self.out_seqs: deque[int] = deque()
        """Our queued messages on this id, by sequence number: they leave
        one after the other."""
        self.assembly: _Assembly | None = None
        self.delivered = False
        """The opening event was handed to the application."""
        self.cancelled = False
        """The peer cancelled (or the deadline passed); the handler may
        still run."""
        self.slot = False
        """Counts against ``max_in_flight`` (peer-opened calls until the
        application answers)."""


class _OutMessage:
    """A message accepted for sending, cut into frames as credit allows."""

    __slots__ = (
        "_body",
        "_pos",
        "arg",
        "codec",
        "event",
        "flags",
        "id",
        "opens",
        "prelude",
        "seq",
        "started",
        "stream_credit",
        "ty",
    )

    def __init__(
        self,
        ty: FrameType,
        id: int,  # noqa: A002
        arg: int,
        flags: Flags,
        prelude: bytes,
        message: Message,
        stream_credit: bool,
    ) -> None:
        if message.uncompressed_len is not None:
            flags = flags.union(Flags.COMPRESSED)
            prelude = prelude + struct.pack("<I", message.uncompressed_len)
        self.id = id
        self.seq = 0
        """Order of acceptance."""
        self.ty = ty
        self.arg = arg
        self.flags = flags
        codec = message.codec
        self.codec = codec if type(codec) is Codec else Codec(codec)
        self.prelude = prelude
        self._body = message.body
        self._pos = 0
        self.started = False
        self.stream_credit = stream_credit
        """Frames spend the stream's credit as well as the connection's."""
        self.opens = ty in _OPENING
        """The first frame opens the id (REQUEST, EVENT, STREAM_OPEN)."""
        self.event = ty == FrameType.EVENT

    def _part(self, n: int) -> bytes | memoryview:
        """The next ``n`` bytes of the body (a view when large)."""
        at = self._pos
        if n < _VIEW_MIN:
            return self._body[at : at + n]
        return memoryview(self._body)[at : at + n]

    def _body_left(self) -> int:
        return len(self._body) - self._pos

    def remaining(self) -> int:
        """Payload bytes still to send."""
        return (0 if self.started else len(self.prelude)) + self._body_left()

    def min_frame(self) -> int:
        """Bytes the next frame needs at least."""
        return 1 if self.started else len(self.prelude)

    def is_event(self) -> bool:
        return self.event

    def is_unsent_open(self) -> bool:
        """An opening frame (REQUEST, EVENT, STREAM_OPEN) not yet sent."""
        return not self.started and self.opens

    def is_done(self) -> bool:
        return self.started and self._body_left() == 0

    def cut(self, budget: int) -> tuple[FrameType, Flags, Codec, int, bytes | memoryview]:
        """Cuts the next frame of at most ``budget`` payload bytes
        (``budget >= min_frame()``): its type, flags, codec, argument and
        payload (the id is the message's). A large part of the body comes as
        a view, copied once when the frame is encoded."""
        if self.started:
            left = len(self._body) - self._pos
            take = min(budget, left)
            payload = self._part(take)
            self._pos += take
            flags = Flags.NONE if take == left else Flags.MORE
            return FrameType.CONTINUATION, flags, Codec.RAW, 0, payload
        self.started = True
        left = len(self._body) - self._pos
        take = min(max(budget - len(self.prelude), 0), left)
        if not take:
            payload = self.prelude
        elif take == len(self._body) and not self.prelude:
            payload = self._body
        elif self.prelude:
            payload = self.prelude + self._part(take)
        else:
            payload = self._part(take)
        self._pos += take
        flags = self.flags if take == left else self.flags.union(Flags.MORE)
        return self.ty, flags, self.codec, self.arg, payload


@dataclass(slots=True)
class _PendingEvent:
    event: Event
    credit: int
    """Connection credit to return when the event is delivered."""
    opens: int | None
    """The call whose delivery this is (opens), to mark it delivered."""
    size: int
    """What the event counts against the event queue's bytes."""


def _control_frame(ty: FrameType, id: int, arg: int, payload: bytes) -> Frame:  # noqa: A002
    return Frame(Header(len(payload), ty, Flags.NONE, Codec.RAW, id, arg), payload)


class Connection:
    """One gatewire connection, as a deterministic state machine.

    Args:
        config: the configuration; its limits and timeouts are validated.
        now: the current time in milliseconds.

    Raises:
        InvalidLimit: a limit or timeout is out of range.
    """

    def __init__(self, config: Config, now: int) -> None:
        config.limits.validate()
        config.timeouts.validate()
        lim = config.limits
        self._config = config
        self._phase = _HANDSHAKE
        self._peer: PeerInfo | None = None
        self._peer_lim = AdvertisedLimits()
        """The peer's limits (the protocol defaults until it told us)."""
        self._now = now
        self._started = now

        self._rx = bytearray()
        self._decoder = FrameDecoder(lim.max_handshake)
        self._partial_since: int | None = None
        self._input_blocked = False
        self._eof = False
        self._eof_done = False

        self._control: deque[Frame] = deque()
        # GOAWAY and PING of a graceful close, held until the calls opened
        # before it are sent.
        self._deferred: deque[Frame] = deque()
        self._out: deque[_OutMessage] = deque()
        # Fragmented events whose first frame is out and last is not.
        self._events_sending = 0
        # Sequence number of the next message accepted for sending.
        self._next_seq = 0
        # Unsent opening messages by sequence number: new ids leave in order.
        self._opens: deque[int] = deque()
        self._queued_bytes = 0
        self._send_blocked = False

        self._events: deque[_PendingEvent] = deque()
        self._event_bytes = 0
        # Calls whose opening event was dropped undelivered; their later
        # queued events are dropped too.
        self._skipped: set[int] = set()
        # Calls this endpoint ended (the most recent MAX_ENDED_HERE): frames
        # the peer had in flight for them are not charged as strays.
        self._ended_here: set[int] = set()
        self._ended_order: deque[int] = deque()

        self._calls: dict[int, _Call] = {}
        self._deadlines = _SortedSet()
        # Completion deadlines of messages being reassembled (entries of
        # finished messages are dropped lazily).
        self._assembling = _SortedSet()
        self._next_local_id = 1 if config.role is Role.CLIENT else 2
        self._last_local_id = 0
        self._last_peer_id = 0
        self._local_in_flight = 0
        self._remote_in_flight = 0
        self._event_assemblies = 0

        self._send_credit = 0
        self._recv_window = lim.connection_credit
        self._recv_unreturned = 0

        self._last_rx = now
        self._last_activity = now
        self._keepalive_ping: int | None = None
        self._next_ping_token = 1
        self._user_pings: list[tuple[int, int]] = []
        self._last_peer_ping: int | None = None
        self._sent_message_since_peer_ping = False
        self._ping_strikes = 0

        self._early_cancels = _Budget(lim.early_cancel_budget)
        self._error_resets = _Budget(lim.error_reset_budget)
        self._strays = _Budget(lim.stray_frame_budget)
        self._small_frames = _Budget(lim.small_frame_budget)
        self._credit_frames = _Budget(min(lim.credit_frames_per_data * 10, U32_MAX))
        self._send_sizes = self._sizes()
        self._local_parity = 1 if config.role is Role.CLIENT else 0
        """Our ids are odd on the client, even on the server."""

        self._shutdown: _Announced | _Draining | None = None
        self._goaway_sent: int | None = None
        self._goaway_received: int | None = None
        self._close_error: ConnectionFailed | None = None

        if config.role is Role.CLIENT:
            hello = Hello(
                min_version=PROTOCOL_VERSION,
                max_version=PROTOCOL_VERSION,
                limits=config._advertised(),
                compression=config._compression_list(),
                codecs=config.codecs,
                auth=config.auth,
                services=config.services,
                agent=config.agent,
                uses=config.uses,
            )
            self._push_control(FrameType.HELLO, 0, 0, hello.encode())

    # ----- getters -----------------------------------------------------------

    def role(self) -> Role:
        """Client or server."""
        return self._config.role

    def config(self) -> Config:
        """The configuration."""
        return self._config

    def peer(self) -> PeerInfo | None:
        """What the peer agreed to, once connected."""
        return self._peer

    def is_connected(self) -> bool:
        """Whether the handshake has completed and the connection is not
        closed."""
        return self._phase is _OPEN

    def is_closed(self) -> bool:
        """Whether the connection is over. The runtime closes the transport
        once ``poll_transmit`` is drained."""
        return self._phase is _CLOSED

    def close_error(self) -> ConnectionFailed | None:
        """The error that ended the connection, if any."""
        return self._close_error

    def wants_read(self) -> bool:
        """Whether the runtime may read more input now."""
        return not self.is_closed() and not self._eof and not self._input_paused()

    def calls_in_flight(self) -> tuple[int, int]:
        """Calls and streams open in each direction: (opened by us, opened by
        the peer, counting handlers still running after a cancel)."""
        return (self._local_in_flight, self._remote_in_flight)

    def table_len(self) -> int:
        """Entries in the call table (both directions, including messages
        being reassembled). Zero at quiescence."""
        return len(self._calls)

    def queued_bytes(self) -> int:
        """Bytes accepted by ``send_*`` and not yet returned by
        ``poll_transmit``."""
        return self._queued_bytes

    def send_credit(self) -> int:
        """Connection credit we may still spend."""
        return self._send_credit

    def stream_send_credit(self, id: int) -> int | None:  # noqa: A002
        """Send credit left on a stream, if it exists."""
        call = self._calls.get(id)
        return call.send_credit if call is not None and call.kind is _STREAM else None

    def read_buf(self) -> bytearray:
        """The buffer a runtime may read into directly (then call
        :meth:`handle_buffered`) instead of passing bytes to
        :meth:`handle_bytes`."""
        return self._rx

    # ----- inputs ------------------------------------------------------------

    def handle_bytes(self, now: int, data: bytes | bytearray | memoryview) -> None:
        """Bytes from a byte-stream transport."""
        if self.is_closed():
            return
        self._rx += data
        self.handle_buffered(now)

    def handle_buffered(self, now: int) -> None:
        """Processes bytes already placed in :meth:`read_buf`."""
        self._now = now
        self._process_input()

    def handle_frame(self, now: int, message: bytes | bytearray | memoryview) -> None:
        """One whole frame from a message-preserving transport (a WebSocket
        binary message). Anything but exactly one frame is a protocol error."""
        self.handle_frames(now, (message,))

    def handle_frames(self, now: int, messages: Iterable[bytes | bytearray | memoryview]) -> None:
        """Several messages of a message-preserving transport, in order (all
        those one read brought), each one whole frame, as by
        :meth:`handle_frame`; those after an error are dropped."""
        self._now = now
        decoder = self._decoder
        for message in messages:
            if self.is_closed():
                return
            try:
                # The limit rises once the handshake completes.
                frame = Frame.decode_exact(message, decoder.max_payload)
            except FrameError as e:
                self._fail(e)
                return
            try:
                self._on_frame(frame)
            except ConnectionFailed as e:
                self._fail(e)

    def handle_eof(self, now: int) -> None:
        """The peer will send nothing more (end of stream, or a half-close).
        Calls we opened fail; calls the peer opened that are fully received
        may still be answered; nothing new is opened."""
        self._now = now
        if self.is_closed() or self._eof:
            return
        self._eof = True
        # Runs `_finish_eof` once every buffered frame is processed (at once,
        # or when paused input resumes).
        self._process_input()

    def _finish_eof(self) -> None:
        if self.is_closed() or self._eof_done:
            return
        self._eof_done = True
        try:
            self._decoder.decode_eof(self._rx)
        except FrameError as e:
            self._fail(e)
            return
        # Calls we opened can never be answered now: the connection is lost.
        if self._phase is not _OPEN or any(c.origin is _LOCAL for c in self._calls.values()):
            self._fail(ConnectionLost())
            return
        # A half-close: calls the peer opened and fully sent may still be
        # answered; those it was still sending are cancelled.
        for id_ in sorted(i for i, c in self._calls.items() if c.recv_open):
            self._cancel_remote_call(id_, ErrorCode.CANCELLED)
        if self._goaway_received is None:
            self._goaway_received = self._last_local_id
        self._maybe_finish()

    def handle_timeout(self, now: int) -> None:
        """Time has passed; fire whatever expired."""
        self._now = now
        if self.is_closed():
            return
        t = self._config.timeouts
        if self._phase is not _OPEN and now >= self._started + t.handshake:
            self._fail(TimerExpired("handshake"))
            return
        if self._partial_since is not None and now >= self._partial_since + t.partial_frame:
            self._fail(TimerExpired("partial frame"))
            return
        if self._phase is _OPEN:
            interval = t.keepalive_interval
            if interval is not None:
                sent = self._keepalive_ping
                if sent is not None:
                    if now >= sent + t.keepalive_timeout:
                        self._fail(TimerExpired("keepalive"))
                        return
                elif now >= self._last_rx + interval:
                    self._keepalive_ping = now
                    token = self._take_ping_token()
                    self._push_control(FrameType.PING, 0, 0, _U64.pack(token))
            idle = t.idle
            if (
                idle is not None
                and not self._calls
                and self._shutdown is None
                and now >= self._last_activity + idle
            ):
                self.close(ErrorCode.NO_ERROR, "idle timeout")
        while (first := self._assembling.first()) is not None:
            at, id_ = first
            # While input is paused the rest of the message may be waiting in
            # our own buffer: the deadline applies to the peer only.
            if at > now or self._input_blocked:
                break
            self._assembling.pop_first()
            call = self._calls.get(id_)
            if call is not None and call.assembly is not None and call.assembly.expires == at:
                self._fail(TimerExpired("partial message"))
                return
        while (first := self._deadlines.first()) is not None:
            at, id_ = first
            if at > now:
                break
            self._deadlines.pop_first()
            call = self._calls.get(id_)
            if call is None:
                continue
            if call.origin is _LOCAL:
                self._fail_local_call(id_, ErrorCode.DEADLINE_EXCEEDED, ErrorInfo(), _LOCAL)
            else:
                self._cancel_remote_call(id_, ErrorCode.DEADLINE_EXCEEDED)
        shutdown = self._shutdown
        if isinstance(shutdown, _Announced) and now >= shutdown.deadline:
            self._send_final_goaway()
        elif isinstance(shutdown, _Draining) and now >= shutdown.deadline:
            self._fail(TimerExpired("drain"))
            return
        self._maybe_finish()

    # ----- handshake commands --------------------------------------------------

    def accept(self) -> None:
        """Server: accept the client's HELLO and complete the handshake.

        Raises:
            InvalidState: no HELLO is awaiting an answer.
        """
        if self._phase is not _AWAITING_ACCEPT:
            raise InvalidState("accept needs a HELLO awaiting an answer")
        c = self._config
        ack = HelloAck(
            version=PROTOCOL_VERSION,
            error_code=ErrorCode.NO_ERROR,
            message=None,
            limits=c._advertised(),
            compression=c._compression_list(),
            codecs=c.codecs,
            services=c.services,
            agent=c.agent,
            uses=c.uses,
        )
        self._push_control(FrameType.HELLO_ACK, 0, 0, ack.encode())
        self._open_connection()

    def refuse(self, code: ErrorCode | int, message: str | None = None) -> None:
        """Server: refuse the client's HELLO with ``code`` and close.

        Raises:
            InvalidState: no HELLO is awaiting an answer.
            InvalidArgument: ``code`` is ``NO_ERROR`` or not a 16-bit code.
        """
        if self._phase is not _AWAITING_ACCEPT:
            raise InvalidState("refuse needs a HELLO awaiting an answer")
        code = _error_code_arg(code)
        if code == ErrorCode.NO_ERROR:
            raise InvalidArgument("a refusal needs an error code")
        self._send_refusal(code, message)
        self._finish_closed(Refused(code, _LOCAL, message))

    def _send_refusal(self, code: ErrorCode, message: str | None) -> None:
        ack = HelloAck(
            version=PROTOCOL_VERSION,
            error_code=code,
            message=None if message is None else _truncate_reason(message),
        )
        self._push_control(FrameType.HELLO_ACK, 0, 0, ack.encode())

    # ----- call commands ---------------------------------------------------------

    def _check_can_open(self) -> None:
        if self._phase is _CLOSED:
            raise ConnectionClosed()
        if self._phase is not _OPEN:
            raise InvalidState("the handshake has not completed")
        if self._shutdown is not None or self._goaway_received is not None or self._eof:
            raise ConnectionClosing()
        if self._next_local_id > self._config.limits.max_local_id:
            raise IdsExhausted()

    def _peer_limits(self) -> AdvertisedLimits:
        return self._peer_lim

    def _check_message(self, message: Message) -> None:
        peer = self._peer_lim
        n = len(message.body)
        if n > peer.max_message:
            raise MessageTooLarge(n, peer.max_message)
        if message.uncompressed_len is not None:
            if self._peer is None or not self._peer.compression:
                raise InvalidArgument("compression was not negotiated")
            if message.uncompressed_len > peer.max_message:
                raise MessageTooLarge(message.uncompressed_len, peer.max_message)

    def _check_queue(self) -> None:
        if self._queued_bytes >= self._config.limits.max_send_queue:
            self._send_blocked = True
            raise Blocked()

    def _open_call(
        self,
        kind: _Kind,
        ty: FrameType,
        method: int,
        message: Message,
        deadline: int | None,
        end: bool,
    ) -> int:
        _u32_arg("method", method)
        if deadline is not None and (not isinstance(deadline, int) or deadline < 0):
            raise InvalidArgument("deadline must be a non-negative number of milliseconds")
        self._check_can_open()
        self._check_message(message)
        peer_max = self._peer.limits.max_in_flight if self._peer is not None else 0
        if (
            kind is not _EVENT and self._local_in_flight >= peer_max
        ) or self._queued_bytes >= self._config.limits.max_send_queue:
            self._send_blocked = True
            raise Blocked()
        id_ = self._next_local_id
        self._next_local_id += 2
        self._last_local_id = id_
        flags = Flags.END if end else Flags.NONE
        prelude = b""
        # The deadline travels in whole milliseconds (at most u32::MAX); the
        # local timer uses the same value so both ends agree.
        if deadline is not None:
            deadline = min(deadline, U32_MAX)
            flags = flags.union(Flags.DEADLINE)
            prelude = struct.pack("<I", deadline)
        if kind is not _EVENT:
            call = _Call(kind, _LOCAL)
            call.send_open = kind is _STREAM and not end
            call.send_credit = self._peer_lim.initial_stream_credit
            call.recv_credit = self._config.limits.initial_stream_credit
            if deadline is not None:
                at = self._now + deadline
                call.deadline = at
                self._deadlines.insert((at, id_))
            self._calls[id_] = call
            self._local_in_flight += 1
        self._enqueue(_OutMessage(ty, id_, method, flags, prelude, message, False))
        return id_

    def send_request(self, method: int, message: Message, deadline: int | None = None) -> int:
        """Calls ``method`` with ``message``. The response arrives as
        :class:`Response` or :class:`CallFailed` with the returned id.
        ``deadline`` (milliseconds) travels to the peer, which stops work
        when it passes; we fail the call locally at the same moment.

        Returns:
            The call id.

        Raises:
            SendError: ``Blocked``, ``MessageTooLarge``, ``ConnectionClosing``,
                ``ConnectionClosed`` or ``IdsExhausted``.
            ApiError: ``InvalidState`` before the handshake, or
                ``InvalidArgument``.
        """
        return self._open_call(_UNARY, FrameType.REQUEST, method, message, deadline, False)

    def send_event(self, method: int, message: Message) -> None:
        """Sends a one-way message.

        Raises:
            SendError: as :meth:`send_request`.
            ApiError: as :meth:`send_request`.
        """
        self._open_call(_EVENT, FrameType.EVENT, method, message, None, False)

    def open_stream(
        self, method: int, message: Message, deadline: int | None = None, end: bool = False
    ) -> int:
        """Opens a stream with an opening message (which may be empty). With
        ``end``, we send nothing more (a server-streaming call).

        Returns:
            The stream id.

        Raises:
            SendError: as :meth:`send_request`.
            ApiError: as :meth:`send_request`.
        """
        return self._open_call(_STREAM, FrameType.STREAM_OPEN, method, message, deadline, end)

    def send_response(self, id: int, message: Message) -> None:  # noqa: A002
        """Answers a call the peer made. On a call that was cancelled this
        sends nothing and frees its slot.

        Raises:
            UnknownCall: no call of the peer's awaits an answer with this id.
            SendError: ``ConnectionClosed`` or ``MessageTooLarge``.
            InvalidArgument: the message is compressed without negotiation.
        """
        call = self._calls.get(id)
        if call is None or call.origin is not _REMOTE or call.kind is not _UNARY:
            raise UnknownCall(id)
        if not call.slot:
            raise UnknownCall(id)
        if call.cancelled:
            self._release_remote(id)
            return
        if self.is_closed():
            raise ConnectionClosed()
        self._check_message(message)
        self._enqueue(_OutMessage(FrameType.RESPONSE, id, 0, Flags.NONE, b"", message, False))
        self._error_resets.refund(1)
        self._release_remote(id)

    def send_error(
        self,
        id: int,  # noqa: A002
        code: ErrorCode | int,
        info: ErrorInfo | None = None,
    ) -> None:
        """Ends a call or stream the peer opened with an error. On a call that
        was cancelled this sends nothing and frees its slot.

        Raises:
            UnknownCall: no call of the peer's awaits an answer with this id.
            InvalidArgument: ``code`` is ``NO_ERROR`` or not a 16-bit code.
        """
        info = info if info is not None else ErrorInfo()
        call = self._calls.get(id)
        if call is None or call.origin is not _REMOTE or not call.slot:
            raise UnknownCall(id)
        code = _error_code_arg(code)
        if code == ErrorCode.NO_ERROR:
            raise InvalidArgument("ERROR needs a code other than NO_ERROR")
        if call.cancelled or self.is_closed():
            self._release_remote(id)
            return
        self._purge_out(id)
        max_frame = self._peer.limits.max_frame if self._peer is not None else 0
        payload = info.encode()
        if len(payload) > max_frame:
            # ERROR is never fragmented: keep a shortened message only.
            short = ErrorInfo(
                message=None if info.message is None else _truncate_reason(info.message),
                details=None,
            )
            payload = short.encode()
        self._push_control(FrameType.ERROR, id, int(code), payload)
        # ERROR ends the stream in both directions: later data from the peer,
        # including the rest of a message it was sending, is stray.
        self._remember_ended(id)
        call.recv_open = False
        call.assembly = None
        self._release_remote(id)

    def send_stream_data(self, id: int, message: Message, end: bool = False) -> None:  # noqa: A002
        """Sends a message on a stream; with ``end``, our half of the stream
        ends. Raises ``Blocked`` (and changes nothing) when the stream's
        credit is spent by messages already accepted; :class:`Writable`
        follows.

        Raises:
            UnknownCall: no stream has this id.
            Blocked: out of stream credit or send queue.
            InvalidState: our half of the stream is closed.
            SendError: ``ConnectionClosed`` or ``MessageTooLarge``.
        """
        call = self._calls.get(id)
        if call is None or call.kind is not _STREAM:
            raise UnknownCall(id)
        if call.cancelled:
            if end:
                self._release_remote(id)
            return
        if not call.send_open:
            raise InvalidState("the stream's sending half is closed")
        if self.is_closed():
            raise ConnectionClosed()
        self._check_message(message)
        if call.queued >= call.send_credit and not (end and not message.body):
            call.blocked = True
            raise Blocked()
        self._check_queue()
        prelude_len = 4 if message.uncompressed_len is not None else 0
        call.queued += len(message.body) + prelude_len
        if end:
            call.send_open = False
            flags = Flags.END
        else:
            flags = Flags.NONE
        remote = call.origin is _REMOTE
        self._enqueue(_OutMessage(FrameType.STREAM_DATA, id, 0, flags, b"", message, True))
        if end and remote:
            self._error_resets.refund(1)
            self._release_remote(id)
        self._maybe_remove(id)

    def finish(self, id: int) -> None:  # noqa: A002
        """Ends our half of a stream with an empty final message.

        Raises:
            As :meth:`send_stream_data`.
        """
        self.send_stream_data(id, Message(Codec.RAW, b""), True)

    def grant_credit(self, id: int, n: int) -> None:  # noqa: A002
        """Returns ``n`` bytes of credit to the peer on stream ``id``, after
        the application consumed that much. Grants are coalesced: a CREDIT
        frame goes out once half the initial window has accumulated.

        Raises:
            UnknownCall: no stream has this id.
            InvalidArgument: ``n`` is not a u32.
        """
        _u32_arg("n", n)
        call = self._calls.get(id)
        if call is None or call.kind is not _STREAM:
            raise UnknownCall(id)
        if not call.recv_open:
            return
        # Bytes already credited back while the message was reassembled are
        # not granted twice.
        prepaid = min(call.prepaid, n)
        call.prepaid -= prepaid
        call.grant_pending = min(call.grant_pending + n - prepaid, U32_MAX)
        self._flush_pending_grant(id)

    def _credit_reassembly(self, id_: int, n: int) -> None:
        """Stream bytes buffered for reassembly are credited back at once: a
        message larger than the window could otherwise never complete."""
        call = self._calls.get(id_)
        if call is not None:
            call.grant_pending = min(call.grant_pending + n, U32_MAX)
            call.prepaid = min(call.prepaid + n, U32_MAX)
        self._flush_pending_grant(id_)

    def _flush_pending_grant(self, id_: int) -> None:
        """Sends a stream's accumulated grant when it is large enough (or the
        peer is out of credit), once the peer has seen the stream."""
        call = self._calls.get(id_)
        if call is None or call.kind is not _STREAM or not call.opened or not call.recv_open:
            return
        threshold = max(self._config.limits.initial_stream_credit // 2, 1)
        room = max(MAX_WINDOW - call.recv_credit, 0)
        grant = min(call.grant_pending, room)
        if grant > 0 and (grant >= threshold or call.recv_credit <= 0):
            call.grant_pending -= grant
            call.recv_credit += grant
            self._push_control(FrameType.CREDIT, id_, grant, b"")

    def cancel(self, id: int) -> None:  # noqa: A002
        """Abandons a call or stream we opened: the peer gets CANCEL, queued
        frames are dropped, and no event for it follows.

        Raises:
            UnknownCall: no call of ours has this id.
        """
        call = self._calls.get(id)
        if call is None or call.origin is not _LOCAL:
            raise UnknownCall(id)
        self._remember_ended(id)
        never_sent = self._purge_out(id)
        # A call whose opening frame never left needs no CANCEL: the peer has
        # not seen its id.
        if not self.is_closed() and not never_sent:
            self._push_control(FrameType.CANCEL, id, 0, b"")
        self._remove_call(id)
        self._maybe_finish()

    def ping(self) -> int:
        """Sends a PING; :class:`Pong` with the returned token reports the
        round trip.

        Raises:
            InvalidState: the connection is not open, or 16 pings are
                outstanding.
        """
        if self._phase is not _OPEN:
            raise InvalidState("ping needs an open connection")
        if len(self._user_pings) >= MAX_USER_PINGS:
            raise InvalidState("too many pings outstanding")
        token = self._take_ping_token()
        self._user_pings.append((token, self._now))
        self._push_control(FrameType.PING, 0, 0, _U64.pack(token))
        return token

    def close(self, code: ErrorCode | int, message: str | None = None) -> None:
        """Closes the connection. With ``NO_ERROR`` this is the two-phase
        graceful shutdown: GOAWAY(last = MAX) and a PING, then on the PONG
        (or after ``goaway_grace``) GOAWAY(last peer id), then calls in
        flight finish within ``drain``. With any other code the connection
        closes at once after a GOAWAY carrying it.

        Raises:
            InvalidArgument: ``code`` is not a 16-bit code.
        """
        code = _error_code_arg(code)
        if self.is_closed():
            return
        if code != ErrorCode.NO_ERROR or self._phase is not _OPEN:
            if code == ErrorCode.NO_ERROR:
                code = ErrorCode.UNAVAILABLE
            self._deferred.clear()
            self._push_goaway(self._last_peer_id, code, message)
            self._finish_closed(LocalClosed(code, message))
            return
        if self._shutdown is not None:
            return
        token = self._take_ping_token() | _PING_TOKEN_GOAWAY_BIT
        self._push_goaway(U32_MAX, ErrorCode.NO_ERROR, message)
        self._push_control(FrameType.PING, 0, 0, _U64.pack(token))
        if any(m.is_unsent_open() for m in self._out):
            # Calls we opened before closing must reach the peer before our
            # GOAWAY does, or the peer could close without seeing them.
            ping = self._control.pop()
            goaway = self._control.pop()
            self._deferred.append(goaway)
            self._deferred.append(ping)
        self._shutdown = _Announced(token, self._now + self._config.timeouts.goaway_grace)

    # ----- outputs -----------------------------------------------------------

    def poll_transmit(self) -> Frame | None:
        """The next frame to write, if any. Control frames go first; messages
        take turns frame by frame, so a bulk transfer delays a small call by
        at most one fragment."""
        frame = self._next_frame(False)
        if frame is None:
            self._maybe_finish()
        elif self._input_blocked:
            self._resume_input()
        return frame

    def transmit(self, limit: int) -> list[bytes]:
        """The frames :meth:`poll_transmit` would return next, encoded (one
        ``bytes`` per frame), until they reach ``limit`` bytes: at least one
        frame when any is ready, none when nothing is. For a runtime writing
        batches; cheaper than encoding each :class:`Frame`."""
        frames: list[bytes] = []
        size = 0
        while True:
            frame = self._next_frame(True)
            if frame is None:
                self._maybe_finish()
                break
            frames.append(frame)
            size += len(frame)
            if self._input_blocked:
                self._resume_input()
            if size >= limit:
                break
        return frames

    def poll_event(self) -> Event | None:
        """The next event for the application, if any."""
        events = self._events
        while events:
            pending = events.popleft()
            left = self._event_bytes - pending.size
            self._event_bytes = left if left > 0 else 0
            self._return_connection_credit(pending.credit)
            if pending.opens is not None:
                call = self._calls.get(pending.opens)
                if call is not None and not call.cancelled:
                    call.delivered = True
                    self._early_cancels.refund(1)
                else:
                    # Cancelled (or the connection failed) before the
                    # application saw it: it never hears of the call.
                    self._skipped.add(pending.opens)
                    self._after_poll()
                    continue
            event = pending.event
            skipped = self._skipped
            follows_skipped = (
                bool(skipped) and isinstance(event, StreamData | Cancelled) and event.id in skipped
            )
            self._after_poll()
            if follows_skipped:
                continue
            return event
        return None

    def _after_poll(self) -> None:
        if not self._events:
            # No queued event can name a skipped call any more, and the
            # calls themselves are gone.
            self._skipped.clear()
        self._resume_input()

    def poll_timeout(self) -> int | None:
        """When :meth:`handle_timeout` should next be called (milliseconds,
        same origin as ``now``)."""
        if self.is_closed():
            return None
        t = self._config.timeouts
        candidates: list[int] = []
        if self._phase is not _OPEN:
            candidates.append(self._started + t.handshake)
        if self._partial_since is not None:
            candidates.append(self._partial_since + t.partial_frame)
        if self._phase is _OPEN:
            if t.keepalive_interval is not None:
                if self._keepalive_ping is not None:
                    candidates.append(self._keepalive_ping + t.keepalive_timeout)
                else:
                    candidates.append(self._last_rx + t.keepalive_interval)
            if t.idle is not None and not self._calls and self._shutdown is None:
                candidates.append(self._last_activity + t.idle)
        first = self._deadlines.first()
        if first is not None:
            candidates.append(first[0])
        first = self._assembling.first()
        if first is not None and not self._input_blocked:
            candidates.append(first[0])
        if self._shutdown is not None:
            candidates.append(self._shutdown.deadline)
        return min(candidates) if candidates else None

    # ----- internals: input --------------------------------------------------

    def _input_paused(self) -> bool:
        return (
            len(self._control) >= self._config.limits.max_pending_control
            or len(self._events) >= MAX_PENDING_EVENTS
            or self._event_bytes >= self._config.limits.connection_credit
        )

    def _resume_input(self) -> None:
        if self._input_blocked and not self._input_paused():
            self._process_input()

    def _process_input(self) -> None:
        self._input_blocked = False
        while True:
            if self.is_closed():
                break
            if self._input_paused():
                self._input_blocked = True
                break
            try:
                frame = self._decoder.decode(self._rx)
            except FrameError as e:
                self._fail(e)
                continue
            if frame is None:
                break
            self._partial_since = None
            try:
                self._on_frame(frame)
            except ConnectionFailed as e:
                self._fail(e)
        if self.is_closed():
            self._rx.clear()
            return
        if self._input_blocked:
            # Whole frames wait for the application, not for the peer.
            self._partial_since = None
        else:
            if self._decoder.is_mid_frame(self._rx) and self._partial_since is None:
                self._partial_since = self._now
            if self._eof:
                self._finish_eof()

    def _on_frame(self, frame: Frame) -> None:
        h = frame.header
        self._last_rx = self._now
        self._keepalive_ping = None
        if self._phase in (_HANDSHAKE, _AWAITING_ACCEPT):
            self._on_handshake_frame(frame)
            return
        if self._phase is _CLOSED:
            return
        ty = h.ty
        if ty in _ACTIVITY:
            self._last_activity = self._now
        on_frame = _ON_FRAME.get(ty)
        if on_frame is not None:
            on_frame(self, frame)
        elif ty in (FrameType.HELLO, FrameType.HELLO_ACK):
            raise UnexpectedFrame(ty)
        else:
            self._stray()

    def _on_handshake_frame(self, frame: Frame) -> None:
        h = frame.header
        if h.ty == FrameType.GOAWAY:
            self._on_goaway(frame)
            return
        role = self._config.role
        if role is Role.SERVER and self._phase is _HANDSHAKE and h.ty == FrameType.HELLO:
            hello = Hello.decode(frame.payload)
            if hello.min_version > PROTOCOL_VERSION or hello.max_version < PROTOCOL_VERSION:
                msg = "no protocol version in common"
                self._send_refusal(ErrorCode.INCOMPATIBLE, msg)
                raise Refused(ErrorCode.INCOMPATIBLE, _LOCAL, msg)
            try:
                peer = self._peer_info(
                    PROTOCOL_VERSION,
                    hello.limits,
                    hello.compression,
                    hello.codecs,
                    (hello.services, hello.uses),
                    hello.agent,
                )
            except Violation:
                msg = "advertised limits out of range"
                self._send_refusal(ErrorCode.INCOMPATIBLE, msg)
                raise Refused(ErrorCode.INCOMPATIBLE, _LOCAL, msg) from None
            c = self._config
            try:
                check_services(c.services, c.uses, hello.services, hello.uses)
            except Incompatible as e:
                self._send_refusal(ErrorCode.INCOMPATIBLE, e.message)
                raise Refused(ErrorCode.INCOMPATIBLE, _LOCAL, e.message) from None
            self._peer = peer
            self._peer_lim = peer.limits
            self._phase = _AWAITING_ACCEPT
            self._push_event(HelloReceived(hello), 0, None)
            return
        if role is Role.CLIENT and self._phase is _HANDSHAKE and h.ty == FrameType.HELLO_ACK:
            ack = HelloAck.decode(frame.payload)
            if ack.error_code != ErrorCode.NO_ERROR:
                raise Refused(ack.error_code, _REMOTE, ack.message)
            if ack.version != PROTOCOL_VERSION:
                raise VersionNotOffered(ack.version)
            self._peer = self._peer_info(
                ack.version,
                ack.limits,
                ack.compression,
                ack.codecs,
                (ack.services, ack.uses),
                ack.agent,
            )
            self._peer_lim = self._peer.limits
            self._open_connection()
            return
        raise UnexpectedFrame(h.ty)

    def _peer_info(
        self,
        version: int,
        advertised: AdvertisedLimits,
        compression: bytes,
        codecs: bytes,
        services: tuple[tuple[Service, ...], tuple[Service, ...]],
        agent: str | None,
    ) -> PeerInfo:
        a = advertised
        # Zero means "the default"; anything else must leave room for a
        # prelude and a reason string.
        for name, v in (
            ("max_frame", a.max_frame),
            ("max_message", a.max_message),
            ("initial_stream_credit", a.initial_stream_credit),
            ("connection_credit", a.connection_credit),
        ):
            if v != 0 and v < MIN_FRAME:
                raise InvalidPeerLimit(name)
        d = Limits()

        def or_default(v: int, default: int) -> int:
            return default if v == 0 else v

        limits = AdvertisedLimits(
            max_frame=min(or_default(a.max_frame, d.max_frame), MAX_FRAME_CEILING),
            max_message=or_default(a.max_message, d.max_message),
            max_in_flight=or_default(a.max_in_flight, d.max_in_flight),
            initial_stream_credit=min(
                or_default(a.initial_stream_credit, d.initial_stream_credit), MAX_WINDOW
            ),
            connection_credit=min(or_default(a.connection_credit, d.connection_credit), MAX_WINDOW),
        )
        return PeerInfo(
            version=version,
            limits=limits,
            compression=self._config.compression and COMPRESSION_ZSTD in compression,
            codecs=codecs,
            services=services[0],
            agent=agent,
            uses=services[1],
        )

    def _open_connection(self) -> None:
        self._phase = _OPEN
        self._decoder.set_max_payload(self._config.limits.max_frame)
        peer = self._peer
        if peer is None:  # pragma: no cover - set before every call
            raise AssertionError("peer info is set before the connection opens")
        self._send_credit = peer.limits.connection_credit
        self._send_sizes = self._sizes()
        self._last_rx = self._now
        self._last_activity = self._now
        self._push_event(Connected(peer), 0, None)

    def _sizes(self) -> tuple[int, int, int, int]:
        """What cutting frames for the peer needs, fixed once it is known:
        the largest fragment, the least frame worth sending when the
        connection's credit (or a stream's) cuts a message short, and the
        peer's ``max_in_flight``."""
        lim = self._config.limits
        peer = self._peer_limits()
        fragment = min(peer.max_frame, lim.send_fragment)
        # A frame cut short by credit must be worth sending: wait for at
        # least a small frame's worth (or half the window, if smaller).
        conn_worth = max(min(MIN_FRAGMENT, peer.connection_credit // 2, fragment), 1)
        window = min(peer.connection_credit, peer.initial_stream_credit)
        stream_worth = max(min(MIN_FRAGMENT, window // 2, fragment), 1)
        return fragment, conn_worth, stream_worth, peer.max_in_flight

    def _prelude(self, h: Header, payload: bytes) -> tuple[int | None, int | None, bytes]:
        """Parses the prelude of a message's first frame: (deadline ms,
        uncompressed size, the rest of the payload)."""
        limit = self._config.limits.max_message
        if not h.flags & (Flags.DEADLINE | Flags.COMPRESSED):
            # No prelude: the payload is the message.
            if len(payload) > limit:
                raise LimitExceeded("max_message", len(payload), limit)
            return None, None, payload
        at = 0

        def take(what: str) -> int:
            nonlocal at
            if len(payload) - at < 4:
                raise ShortPrelude(what)
            (v,) = struct.unpack_from("<I", payload, at)
            at += 4
            return int(v)

        deadline = take("deadline") if h.flags & Flags.DEADLINE else None
        uncompressed: int | None = None
        if h.flags & Flags.COMPRESSED:
            n = take("uncompressed size")
            if not self._config.compression:
                raise CompressionNotNegotiated()
            if n > self._config.limits.max_message:
                raise LimitExceeded("max_message", n, self._config.limits.max_message)
            uncompressed = n
        rest = payload[at:] if at else payload
        if len(rest) > limit:
            raise LimitExceeded("max_message", len(rest), limit)
        return deadline, uncompressed, rest

    def _start_assembly(
        self, h: Header, first: bytes, deadline: int | None, uncompressed: int | None
    ) -> _Assembly:
        """Starts reassembling a message; it must complete within the
        partial-frame timeout."""
        expires = self._now + self._config.timeouts.partial_frame
        self._assembling.insert((expires, h.id))
        return _Assembly(h, first, deadline, uncompressed, expires)

    def _charge_connection(self, n: int) -> None:
        """Charges connection credit for a message frame."""
        self._recv_window -= n
        if self._recv_window < 0:
            raise FlowControlError("connection")
        if n >= self._config.limits.small_frame_threshold:
            # Non-final small frames are charged by the caller.
            self._small_frames.refund(n)

    def _charge_small(self, h: Header) -> None:
        threshold = self._config.limits.small_frame_threshold
        non_final = h.flags & Flags.MORE or (
            h.ty == FrameType.STREAM_DATA and not h.flags & Flags.END and h.length == 0
        )
        if (
            non_final
            and h.length < threshold
            and not self._small_frames.charge(threshold - h.length)
        ):
            raise BudgetExhausted("small frames")

    def _stray_on(self, id_: int) -> None:
        """A frame naming a call this endpoint ended: the peer may have had
        frames in flight, bounded by its credit, so they cost nothing."""
        if id_ not in self._ended_here:
            self._stray()

    def _remember_ended(self, id_: int) -> None:
        if id_ not in self._ended_here:
            self._ended_here.add(id_)
            self._ended_order.append(id_)
            if len(self._ended_order) > MAX_ENDED_HERE:
                self._ended_here.discard(self._ended_order.popleft())

    def _stray(self) -> None:
        if self._shutdown is not None or self._goaway_sent is not None:
            return
        if not self._strays.charge(1):
            raise BudgetExhausted("stray frames")

    def _is_local_id(self, id_: int) -> bool:
        return id_ & 1 == self._local_parity

    def _unknown_id(self, ty: FrameType, id_: int) -> None:
        """Classifies an id that names no live call: opened before (a stray
        frame, dropped and counted) or never opened (a violation)."""
        last = self._last_local_id if self._is_local_id(id_) else self._last_peer_id
        if id_ > last:
            raise UnopenedId(ty, id_)
        self._stray_on(id_)

    def _on_open(self, frame: Frame) -> None:
        h = frame.header
        lim = self._config.limits
        if self._is_local_id(h.id):
            raise WrongParity(h.ty, h.id)
        if h.id <= self._last_peer_id:
            raise IdNotIncreasing(h.id, self._last_peer_id)
        self._last_peer_id = h.id
        self._charge_connection(h.length)
        self._charge_small(h)
        if self._eof_done or (self._goaway_sent is not None and h.id > self._goaway_sent):
            # Refused by our GOAWAY: the peer knows it was not processed.
            self._return_connection_credit(h.length)
            return
        deadline, uncompressed, payload = self._prelude(h, frame.payload)
        if h.ty == FrameType.REQUEST:
            kind = _UNARY
        elif h.ty == FrameType.STREAM_OPEN:
            kind = _STREAM
        else:
            kind = _EVENT
        if kind is _EVENT:
            if h.flags & Flags.MORE:
                if self._event_assemblies >= lim.max_in_flight:
                    raise LimitExceeded(
                        "max_in_flight", self._event_assemblies + 1, lim.max_in_flight
                    )
                self._event_assemblies += 1
                call = _Call(_EVENT, _REMOTE)
                call.recv_open = True
                call.assembly = self._start_assembly(h, payload, None, uncompressed)
                self._return_connection_credit(h.length)
                self._calls[h.id] = call
                return
            message = new_message(h.codec, payload, uncompressed)
            self._strays.refund(1)
            self._push_event(EventReceived(h.arg, message), h.length, None)
            return
        if self._remote_in_flight >= lim.max_in_flight:
            self._return_connection_credit(h.length)
            if not self._error_resets.charge(1):
                raise BudgetExhausted("refused calls")
            self._push_control(FrameType.ERROR, h.id, int(ErrorCode.REFUSED), b"")
            return
        call = _Call(kind, _REMOTE)
        call.slot = True
        call.recv_open = True
        call.send_open = True
        call.method = h.arg
        call.recv_credit = lim.initial_stream_credit
        call.send_credit = self._peer.limits.initial_stream_credit if self._peer is not None else 0
        if deadline is not None:
            at = self._now + deadline
            call.deadline = at
            self._deadlines.insert((at, h.id))
        self._remote_in_flight += 1
        if h.flags & Flags.MORE:
            call.assembly = self._start_assembly(h, payload, deadline, uncompressed)
            self._return_connection_credit(h.length)
            self._calls[h.id] = call
            return
        end = bool(h.flags & Flags.END)
        if kind is _UNARY or end:
            call.recv_open = False
        self._calls[h.id] = call
        message = new_message(h.codec, payload, uncompressed)
        self._deliver_open(h.ty, h.id, h.arg, message, deadline, end, h.length)

    def _deliver_open(
        self,
        ty: FrameType,
        id_: int,
        method: int,
        message: Message,
        deadline: int | None,
        end: bool,
        credit: int,
    ) -> None:
        self._strays.refund(1)
        event: Event
        if ty == FrameType.REQUEST:
            event = _new_request(id_, method, message, deadline)
        else:
            event = StreamOpened(id_, method, message, end, deadline)
        self._push_event(event, credit, id_)

    def _on_response(self, frame: Frame) -> None:
        h = frame.header
        if not self._is_local_id(h.id):
            raise WrongParity(h.ty, h.id)
        self._charge_connection(h.length)
        self._charge_small(h)
        call = self._calls.get(h.id)
        if call is None:
            self._return_connection_credit(h.length)
            self._unknown_id(h.ty, h.id)
            return
        if call.kind is not _UNARY or call.assembly is not None:
            raise UnexpectedFrame(h.ty)
        _, uncompressed, payload = self._prelude(h, frame.payload)
        if h.flags & Flags.MORE:
            call.assembly = self._start_assembly(h, payload, None, uncompressed)
            self._return_connection_credit(h.length)
            return
        self._complete_response(h.id, new_message(h.codec, payload, uncompressed), h.length)

    def _complete_response(self, id_: int, message: Message, credit: int) -> None:
        self._remove_call(id_)
        self._strays.refund(1)
        self._error_resets.refund(1)
        self._push_event(_new_response(id_, message), credit, None)
        self._maybe_finish()

    def _on_stream_data(self, frame: Frame) -> None:
        h = frame.header
        self._charge_connection(h.length)
        self._charge_small(h)
        call = self._calls.get(h.id)
        if call is None:
            self._return_connection_credit(h.length)
            self._unknown_id(h.ty, h.id)
            return
        if call.kind is not _STREAM:
            raise UnexpectedFrame(h.ty)
        if call.assembly is not None:
            raise InterleavedMessage(h.id)
        if call.cancelled:
            self._return_connection_credit(h.length)
            self._stray_on(h.id)
            return
        if not call.recv_open:
            self._return_connection_credit(h.length)
            self._reset_stream(h.id, ErrorCode.STREAM_CLOSED)
            return
        call.recv_credit -= h.length
        if call.recv_credit < 0:
            self._return_connection_credit(h.length)
            self._reset_stream(h.id, ErrorCode.FLOW_CONTROL)
            return
        _, uncompressed, payload = self._prelude(h, frame.payload)
        if h.flags & Flags.MORE:
            call.assembly = self._start_assembly(h, payload, None, uncompressed)
            self._return_connection_credit(h.length)
            self._credit_reassembly(h.id, h.length)
            return
        message = Message(h.codec, payload, uncompressed)
        self._complete_stream_data(h.id, message, bool(h.flags & Flags.END), h.length)

    def _complete_stream_data(self, id_: int, message: Message, end: bool, credit: int) -> None:
        if end:
            call = self._calls.get(id_)
            if call is not None:
                call.recv_open = False
        self._strays.refund(1)
        self._push_event(StreamData(id_, message, end), credit, None)
        self._maybe_remove(id_)
        self._maybe_finish()

    def _on_continuation(self, frame: Frame) -> None:
        h = frame.header
        self._charge_connection(h.length)
        self._charge_small(h)
        max_message = self._config.limits.max_message
        most_fragments = max_fragments(max_message)
        call = self._calls.get(h.id)
        if call is None:
            self._return_connection_credit(h.length)
            self._unknown_id(h.ty, h.id)
            return
        assembly = call.assembly
        if assembly is None:
            if call.cancelled:
                self._return_connection_credit(h.length)
                self._stray_on(h.id)
                return
            raise UnexpectedFrame(h.ty)
        if assembly.ty == FrameType.STREAM_DATA:
            call.recv_credit -= h.length
            if call.recv_credit < 0:
                self._return_connection_credit(h.length)
                self._reset_stream(h.id, ErrorCode.FLOW_CONTROL)
                return
        assembly.fragments += 1
        if assembly.fragments > most_fragments:
            raise LimitExceeded("max_fragments", assembly.fragments, most_fragments)
        total = assembly.length + h.length
        if total > max_message:
            raise LimitExceeded("max_message", total, max_message)
        stream = assembly.ty == FrameType.STREAM_DATA
        assembly.parts.append(frame.payload)
        assembly.length = total
        self._return_connection_credit(h.length)
        if stream:
            self._credit_reassembly(h.id, h.length)
        if h.flags & Flags.MORE:
            return
        a = assembly
        call.assembly = None
        message = Message(a.codec, b"".join(a.parts), a.uncompressed)
        end = bool(a.flags & Flags.END)
        if a.ty == FrameType.RESPONSE:
            self._complete_response(h.id, message, 0)
        elif a.ty == FrameType.STREAM_DATA:
            self._complete_stream_data(h.id, message, end, 0)
        elif a.ty == FrameType.EVENT:
            del self._calls[h.id]
            self._event_assemblies -= 1
            self._strays.refund(1)
            self._push_event(EventReceived(a.method, message), 0, None)
        else:
            if a.ty == FrameType.REQUEST or end:
                call.recv_open = False
            self._deliver_open(a.ty, h.id, a.method, message, a.deadline, end, 0)

    def _on_error(self, frame: Frame) -> None:
        h = frame.header
        if not self._is_local_id(h.id):
            raise WrongParity(h.ty, h.id)
        info = ErrorInfo.decode(frame.payload)
        if h.id not in self._calls:
            self._unknown_id(h.ty, h.id)
            return
        self._fail_local_call(h.id, ErrorCode(h.arg & 0xFFFF), info, _REMOTE)
        self._maybe_finish()

    def _on_credit_frame(self, frame: Frame) -> None:
        self._on_credit(frame.header)

    def _on_cancel_frame(self, frame: Frame) -> None:
        self._on_cancel(frame.header)

    def _on_credit(self, h: Header) -> None:
        if not self._credit_frames.charge(1):
            raise BudgetExhausted("credit frames")
        n = h.arg
        if h.id == 0:
            if self._send_credit + n > MAX_WINDOW:
                raise FlowControlError("connection credit overflow")
            self._send_credit += n
            return
        call = self._calls.get(h.id)
        if call is None:
            self._unknown_id(h.ty, h.id)
            return
        if call.kind is not _STREAM:
            raise UnexpectedFrame(h.ty)
        if call.send_credit + n > MAX_WINDOW:
            self._reset_stream(h.id, ErrorCode.FLOW_CONTROL)
            return
        call.send_credit += n
        if call.blocked and call.queued < call.send_credit:
            call.blocked = False
            self._push_event(Writable(h.id), 0, None)

    def _on_cancel(self, h: Header) -> None:
        if self._is_local_id(h.id):
            raise WrongParity(h.ty, h.id)
        call = self._calls.get(h.id)
        if call is None:
            self._unknown_id(h.ty, h.id)
            return
        if call.cancelled:
            self._stray()
            return
        if not call.delivered and not self._early_cancels.charge(1):
            raise BudgetExhausted("early cancels")
        self._cancel_remote_call(h.id, ErrorCode.CANCELLED)
        self._maybe_finish()

    def _on_ping(self, frame: Frame) -> None:
        prev = self._last_peer_ping
        if prev is not None:
            quick = max(0, self._now - prev) < self._config.timeouts.min_ping_interval
            if not quick:
                self._ping_strikes = 0
            elif not self._sent_message_since_peer_ping:
                self._ping_strikes += 1
                if self._ping_strikes > self._config.limits.max_ping_strikes:
                    raise BudgetExhausted("pings")
        self._last_peer_ping = self._now
        self._sent_message_since_peer_ping = False
        self._push_control(FrameType.PONG, 0, 0, frame.payload)

    def _on_pong(self, frame: Frame) -> None:
        payload = frame.payload
        token = _U64.unpack_from(payload)[0] if len(payload) >= PING_PAYLOAD_LEN else 0
        shutdown = self._shutdown
        if isinstance(shutdown, _Announced) and token == shutdown.token:
            self._send_final_goaway()
            return
        for i, (t, sent) in enumerate(self._user_pings):
            if t == token:
                del self._user_pings[i]
                self._push_event(Pong(token, max(0, self._now - sent)), 0, None)
                return
        if token & ~_PING_TOKEN_GOAWAY_BIT & U64_MAX < self._next_ping_token:
            return
        self._stray()

    def _refuse_above(self, last: int) -> None:
        refused = sorted(i for i, c in self._calls.items() if c.origin is _LOCAL and i > last)
        for id_ in refused:
            self._fail_local_call(id_, ErrorCode.REFUSED, ErrorInfo(), _REMOTE)

    def _on_goaway(self, frame: Frame) -> None:
        h = frame.header
        info = GoAwayInfo.decode(frame.payload)
        code = ErrorCode(h.arg & 0xFFFF)
        if code != ErrorCode.NO_ERROR or self._phase is not _OPEN:
            # Calls above `last` were not processed: they fail as REFUSED
            # (safe to retry) before the rest fail with the peer's code.
            self._refuse_above(h.id)
            raise RemoteClosed(code, info.message)
        prev = self._goaway_received
        if prev is not None and h.id > prev:
            raise GoAwayIncreased(h.id, prev)
        self._goaway_received = h.id
        self._refuse_above(h.id)
        self._push_event(GoAway(h.id, code, info.message), 0, None)
        self._maybe_finish()

    def _reset_stream(self, id_: int, code: ErrorCode) -> None:
        """Ends a stream because of something the peer sent on it."""
        if not self._error_resets.charge(1):
            raise BudgetExhausted("error resets")
        call = self._calls.get(id_)
        if call is None:
            return
        if call.origin is _LOCAL:
            self._purge_out(id_)
            self._push_control(FrameType.CANCEL, id_, 0, b"")
            self._fail_local_call(id_, code, ErrorInfo(), _LOCAL)
        else:
            self._purge_out(id_)
            self._push_control(FrameType.ERROR, id_, int(code), b"")
            self._cancel_remote_call(id_, code)

    # ----- internals: call table -----------------------------------------------

    def _remove_call(self, id_: int) -> None:
        call = self._calls.pop(id_, None)
        if call is None:
            return
        if call.deadline is not None:
            self._deadlines.remove((call.deadline, id_))
        if call.origin is _LOCAL:
            if call.kind is not _EVENT:
                self._local_in_flight -= 1
                if self._send_blocked:
                    self._send_blocked = False
                    self._push_event(Writable(None), 0, None)
        elif call.kind is _EVENT:
            self._event_assemblies -= 1
        else:
            self._remote_in_flight -= 1

    def _maybe_remove(self, id_: int) -> None:
        """Removes a call once both halves are closed, its frames are out and
        (for a call the peer opened) the application has finished with it."""
        c = self._calls.get(id_)
        if c is None:
            return
        done = not c.send_open and not c.recv_open and c.queued == 0 and c.assembly is None
        if done and not c.slot:
            self._remove_call(id_)

    def _release_remote(self, id_: int) -> None:
        """A call the peer opened is finished from the application's side."""
        call = self._calls.get(id_)
        if call is not None:
            call.slot = False
            call.send_open = False
            if call.cancelled or call.kind is _UNARY:
                call.recv_open = False
            if call.deadline is not None:
                self._deadlines.remove((call.deadline, id_))
                call.deadline = None
        self._maybe_remove(id_)
        self._maybe_finish()

    def _fail_local_call(self, id_: int, code: ErrorCode, info: ErrorInfo, side: Side) -> None:
        self._remember_ended(id_)
        self._purge_out(id_)
        self._remove_call(id_)
        self._push_event(CallFailed(id_, code, info, side), 0, None)

    def _cancel_remote_call(self, id_: int, code: ErrorCode) -> None:
        """Ends a call the peer opened from the protocol's side. A handler the
        application is running learns of it through ``Cancelled`` and keeps
        its slot until it answers; otherwise the entry goes at once."""
        self._remember_ended(id_)
        self._purge_out(id_)
        call = self._calls.get(id_)
        if call is None:
            return
        if call.kind is _EVENT:
            self._remove_call(id_)
            return
        call.cancelled = True
        call.recv_open = False
        call.send_open = False
        call.assembly = None
        call.queued = 0
        if call.deadline is not None:
            self._deadlines.remove((call.deadline, id_))
            call.deadline = None
        if call.delivered and call.slot:
            self._push_event(Cancelled(id_, code), 0, None)
        else:
            # Never seen by the application, or already answered: no handler
            # to wait for.
            call.slot = False
            self._maybe_remove(id_)

    def _purge_out(self, id_: int) -> bool:
        """Drops every queued frame of ``id_``; returns whether the call's
        opening frame was among them (so the peer never saw the id)."""
        removed = 0
        open_unsent = False
        kept: deque[_OutMessage] = deque()
        for m in self._out:
            if m.id == id_:
                removed += m.remaining()
                open_unsent = open_unsent or m.is_unsent_open()
            else:
                kept.append(m)
        if len(kept) != len(self._out):
            self._out = kept
        self._queued_bytes -= removed
        call = self._calls.get(id_)
        if call is not None:
            call.queued = 0
            call.out_seqs.clear()
        if open_unsent:
            live = {m.seq for m in self._out}
            self._opens = deque(seq for seq in self._opens if seq in live)
        return open_unsent

    # ----- internals: output -----------------------------------------------------

    def _push_control(self, ty: FrameType, id_: int, arg: int, payload: bytes) -> None:
        self._control.append(_control_frame(ty, id_, arg, payload))

    def _push_goaway(self, last: int, code: ErrorCode, message: str | None) -> None:
        info = GoAwayInfo(message=None if message is None else _truncate_reason(message))
        # The last id only ever decreases.
        if self._goaway_sent is not None:
            last = min(self._goaway_sent, last)
        self._goaway_sent = last
        self._push_control(FrameType.GOAWAY, last, int(code), info.encode())

    def _send_final_goaway(self) -> None:
        self._push_goaway(self._last_peer_id, ErrorCode.NO_ERROR, None)
        if self._deferred:
            # The first GOAWAY is still held behind calls opened before the
            # close: the final one replaces it there, keeping the order.
            last = self._control.pop()
            self._deferred.clear()
            self._deferred.append(last)
        self._shutdown = _Draining(self._now + self._config.timeouts.drain)
        self._maybe_finish()

    def _push_event(self, event: Event, credit: int, opens: int | None) -> None:
        size = _message_len(event)
        self._event_bytes += size
        self._events.append(_PendingEvent(event, credit, opens, size))

    def _return_connection_credit(self, n: int) -> None:
        if n == 0 or self._phase is _CLOSED:
            return
        self._recv_window += n
        self._recv_unreturned += n
        window = self._config.limits.connection_credit
        # Hand credit back once half the window is used, so a sender never
        # stalls while data is being consumed.
        if self._recv_unreturned >= window // 2:
            grant = self._recv_unreturned if self._recv_unreturned <= U32_MAX else MAX_WINDOW
            self._recv_unreturned = 0
            self._push_control(FrameType.CREDIT, 0, grant, b"")

    def _enqueue(self, msg: _OutMessage) -> None:
        """Queues a message just built (nothing of it sent)."""
        seq = self._next_seq
        msg.seq = seq
        self._next_seq = seq + 1
        if msg.opens:
            self._opens.append(seq)
        call = self._calls.get(msg.id)
        if call is not None:
            call.out_seqs.append(seq)
        self._queued_bytes += len(msg.prelude) + len(msg._body)
        self._out.append(msg)

    def _take_ping_token(self) -> int:
        t = self._next_ping_token
        self._next_ping_token += 1
        return t

    @overload
    def _next_frame(self, encode: Literal[False]) -> Frame | None: ...

    @overload
    def _next_frame(self, encode: Literal[True]) -> bytes | None: ...

    def _next_frame(self, encode: bool) -> Frame | bytes | None:
        """The next frame (its wire bytes with ``encode``), or ``None``.
        Taking a frame may free room for input: the caller resumes it."""
        if self._deferred and not any(m.is_unsent_open() for m in self._out):
            # Every call opened before `close` has gone out: the GOAWAY may
            # follow them.
            while self._deferred:
                self._control.appendleft(self._deferred.pop())
        if self._control:
            control = self._control.popleft()
            return control.to_bytes() if encode else control
        out = self._out
        if not out:
            return None
        fragment, conn_worth, stream_worth, max_in_flight = self._send_sizes
        # What the connection's credit allows any message (a stream's own
        # credit may allow less).
        conn_budget = self._send_credit
        if conn_budget > fragment:
            conn_budget = fragment
        elif conn_budget < 0:
            conn_budget = 0
        calls = self._calls
        opens = self._opens
        for _ in range(len(out)):
            msg = out.popleft()
            call = calls.get(msg.id)
            started = msg.started
            unsent_open = not started and msg.opens
            # New ids go out in increasing order, the messages of one id one
            # after the other, and at most `max_in_flight` fragmented events
            # are in progress at once.
            if (
                (unsent_open and (not opens or opens[0] != msg.seq))
                or (call is not None and (not call.out_seqs or call.out_seqs[0] != msg.seq))
                or (not started and msg.event and self._events_sending >= max_in_flight)
            ):
                out.append(msg)
                continue
            budget = conn_budget
            worth = conn_worth
            if msg.stream_credit:
                budget = min(budget, max(call.send_credit, 0) if call is not None else 0)
                worth = stream_worth
            left = len(msg._body) - msg._pos
            if started:
                remaining = left
                min_frame = 1
            else:
                min_frame = len(msg.prelude)
                remaining = left + min_frame
            if budget < min_frame or (budget < remaining and budget < worth):
                out.append(msg)
                continue
            opening = not started
            if unsent_open:
                opens.popleft()
            ty, flags, codec, arg, payload = msg.cut(budget)
            n = len(payload)
            # Started now: done once the body is out.
            done = msg._pos == len(msg._body)
            self._queued_bytes -= n
            self._send_credit -= n
            if msg.event and opening != done:
                # A fragmented event starts (or ends) being reassembled.
                self._events_sending += 1 if opening else -1
            if call is not None:
                if done:
                    call.out_seqs.popleft()
                if opening:
                    call.opened = True
                if msg.stream_credit:
                    call.send_credit -= n
                    call.queued -= n
            if opening and call is not None and call.kind is _STREAM:
                self._flush_pending_grant(msg.id)
            self._sent_message_since_peer_ping = True
            self._credit_frames.refund(self._config.limits.credit_frames_per_data)
            if not done:
                out.append(msg)
            elif msg.stream_credit:
                self._maybe_remove(msg.id)
                self._maybe_finish()
            if self._send_blocked and self._queued_bytes < self._config.limits.max_send_queue:
                self._send_blocked = False
                self._push_event(Writable(None), 0, None)
            if encode:
                return pack_header(n, ty, flags, codec, 0, msg.id, arg) + payload
            header = trusted_header(n, ty, flags, codec, msg.id, arg)
            return _new_frame(header, payload if type(payload) is bytes else bytes(payload))
        return None

    # ----- internals: closing -------------------------------------------------

    def _fail(self, error: ConnectionFailed) -> None:
        """Ends the connection because of ``error``: a GOAWAY with its code,
        then every call fails."""
        if self.is_closed():
            return
        sendable = not isinstance(error, Refused | RemoteClosed | ConnectionLost)
        self._deferred.clear()
        self._opens.clear()
        # Nothing queued goes out after a connection error, except our own
        # refusing HELLO_ACK and the GOAWAY that reports the error.
        if not (isinstance(error, Refused) and error.side is _LOCAL):
            self._control.clear()
            self._out.clear()
            self._queued_bytes = 0
        if sendable and not self._eof:
            self._push_goaway(self._last_peer_id, error.code, error.reason())
        self._finish_closed(error)

    def _finish_closed(self, error: ConnectionFailed | None) -> None:
        if self.is_closed():
            return
        code = ErrorCode.UNAVAILABLE if error is None else error.code
        for id_ in sorted(self._calls):
            call = self._calls[id_]
            if call.kind is _EVENT:
                continue
            if call.origin is _LOCAL:
                self._push_event(CallFailed(id_, code, ErrorInfo(), _LOCAL), 0, None)
            elif call.delivered and not call.cancelled and call.slot:
                self._push_event(Cancelled(id_, code), 0, None)
        self._calls.clear()
        self._deadlines.clear()
        self._assembling.clear()
        self._out.clear()
        self._queued_bytes = 0
        self._local_in_flight = 0
        self._remote_in_flight = 0
        self._event_assemblies = 0
        self._user_pings.clear()
        self._phase = _CLOSED
        self._close_error = error
        self._push_event(Closed(error), 0, None)

    def _maybe_finish(self) -> None:
        """Closes gracefully once a shutdown (ours or the peer's) has
        drained."""
        if self._phase is not _OPEN or self._calls or self._out:
            return
        if isinstance(self._shutdown, _Draining) or self._goaway_received is not None:
            self._finish_closed(None)

    def __repr__(self) -> str:
        return (
            f"Connection(role={self._config.role.value}, phase={self._phase.name.lower()}, "
            f"calls={len(self._calls)}, queued_bytes={self._queued_bytes})"
        )


_ACTIVITY = frozenset(
    (
        FrameType.REQUEST,
        FrameType.RESPONSE,
        FrameType.EVENT,
        FrameType.STREAM_OPEN,
        FrameType.STREAM_DATA,
        FrameType.CONTINUATION,
    )
)
"""Frames that count as activity for the idle timeout: message frames."""

_ON_FRAME: dict[FrameType, Callable[[Connection, Frame], None]] = {
    FrameType.REQUEST: Connection._on_open,
    FrameType.EVENT: Connection._on_open,
    FrameType.STREAM_OPEN: Connection._on_open,
    FrameType.RESPONSE: Connection._on_response,
    FrameType.STREAM_DATA: Connection._on_stream_data,
    FrameType.CONTINUATION: Connection._on_continuation,
    FrameType.ERROR: Connection._on_error,
    FrameType.CREDIT: Connection._on_credit_frame,
    FrameType.CANCEL: Connection._on_cancel_frame,
    FrameType.PING: Connection._on_ping,
    FrameType.PONG: Connection._on_pong,
    FrameType.GOAWAY: Connection._on_goaway,
}
"""What an open connection does with each frame type (others are strays,
or a violation for a HELLO)."""


def _error_code_arg(code: ErrorCode | int) -> ErrorCode:
    if isinstance(code, ErrorCode):
        return code
    if not isinstance(code, int) or not 0 <= code <= 0xFFFF:
        raise InvalidArgument("an error code must be in 0..=0xffff")
    return ErrorCode(code)
