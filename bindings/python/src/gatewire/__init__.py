"""gatewire: a compact binary RPC protocol -- the sans-IO Python core.

This package implements the same wire rules as the Rust core
(``crates/gatewire-proto``, the single source of truth) and passes the same
golden vectors (``tests/vectors/``). Like the Rust core it performs **no**
I/O: no sockets, no clock, no asyncio. A runtime feeds it bytes and the
current time and carries out what it asks for.

Layers (mirroring ``gatewire_proto``):

- :mod:`gatewire.frame`: the 16-byte header, frame types, flags and the
  rules that need no connection state.
- :mod:`gatewire.codec`: whole frames over a byte stream.
- :mod:`gatewire.control`: the FlatBuffers control tables, verified before
  use.
- :mod:`gatewire.services`: derived method ids, type hashes and the
  acceptor's compatibility check of service descriptors.
- :mod:`gatewire.limits`: :class:`Limits` and :class:`Timeouts`.
- :mod:`gatewire.protocol`: the :class:`Connection` state machine.
- :mod:`gatewire.exceptions`: every exception, in one tree.

Runtime layers (they import nothing into this package; the core stays
I/O-free):

- :mod:`gatewire.aio`: the asyncio runtime (connect, serve, calls, streams,
  handlers) over TCP, Unix sockets and WebSocket;
- :mod:`gatewire.sync`: a blocking facade over it for scripts;
- :mod:`gatewire.interop`: the cross-language interop service and script.

Driving a connection: inputs are ``handle_*`` methods, application commands
are plain methods (``send_request``, ``cancel``, ``grant_credit``,
``close``...), outputs are ``poll_*`` methods. After any input or command a
runtime drains :meth:`Connection.poll_transmit` until ``None`` (writing the
frames; :meth:`Connection.transmit` gives them encoded, in batches), then
:meth:`Connection.poll_event` until ``None`` (delivering them), then arms a
timer for :meth:`Connection.poll_timeout` and calls
:meth:`Connection.handle_timeout` when it fires. Time is integer milliseconds
from an origin the runtime picks.
"""

from .code import ErrorCode
from .codec import Frame, FrameDecoder
from .control import (
    AdvertisedLimits,
    ErrorInfo,
    GoAwayInfo,
    Hello,
    HelloAck,
    MethodDesc,
    MethodKind,
    Service,
    ServiceList,
    Shape,
)
from .exceptions import (
    ApiError,
    Blocked,
    ConnectionClosed,
    ConnectionClosing,
    ConnectionFailed,
    ControlError,
    FrameError,
    GatewireError,
    IdsExhausted,
    InvalidArgument,
    InvalidLimit,
    InvalidState,
    MessageTooLarge,
    SendError,
    UnknownCall,
    Violation,
)
from .frame import HEADER_LEN, MAX_FRAME_CEILING, Codec, Flags, FrameType, Header
from .limits import Limits, Timeouts
from .protocol import (
    PROTOCOL_VERSION,
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
    PeerInfo,
    Pong,
    Request,
    Response,
    Role,
    Side,
    StreamData,
    StreamOpened,
    Writable,
)

__version__ = "0.1.0"

__all__ = [
    "HEADER_LEN",
    "MAX_FRAME_CEILING",
    "PROTOCOL_VERSION",
    "AdvertisedLimits",
    "ApiError",
    "Blocked",
    "CallFailed",
    "Cancelled",
    "Closed",
    "Codec",
    "Config",
    "Connected",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosing",
    "ConnectionFailed",
    "ControlError",
    "ErrorCode",
    "ErrorInfo",
    "Event",
    "EventReceived",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameType",
    "GatewireError",
    "GoAway",
    "GoAwayInfo",
    "Header",
    "Hello",
    "HelloAck",
    "HelloReceived",
    "IdsExhausted",
    "InvalidArgument",
    "InvalidLimit",
    "InvalidState",
    "Limits",
    "Message",
    "MessageTooLarge",
    "MethodDesc",
    "MethodKind",
    "PeerInfo",
    "Pong",
    "Request",
    "Response",
    "Role",
    "SendError",
    "Service",
    "ServiceList",
    "Shape",
    "Side",
    "StreamData",
    "StreamOpened",
    "Timeouts",
    "UnknownCall",
    "Violation",
    "Writable",
    "__version__",
]
