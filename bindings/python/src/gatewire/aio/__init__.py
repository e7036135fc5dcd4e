"""gatewire on asyncio: calls, events and streams with backpressure over
TCP, Unix sockets and WebSocket. The counterpart of the Rust ``gatewire``
crate, driving the sans-IO core in :mod:`gatewire.protocol`.

Either end may call the other: a :class:`Router` on each side serves what
the peer sends::

    import gatewire.aio as gw

    router = gw.Router()

    @router.unary(1)
    async def echo(ctx: gw.CallContext, request: gw.Message) -> gw.Message:
        return request

    server = await gw.serve(["unix:///run/gateway/gw.sock", "ws://127.0.0.1:8080/gw"], router)

    conn = await gw.connect("unix:///run/gateway/gw.sock")
    reply = await conn.call(1, b"status", timeout=5)
    await conn.close()
    await server.close()

Layers
------

- :mod:`gatewire.protocol` holds every protocol rule and no I/O;
- this package adds transports (asyncio streams for ``tcp://`` and
  ``unix://``, the ``websockets`` package for ``ws://``), the connection
  driver (:class:`Connection`), handlers (:class:`Router`), streams and a
  :class:`Server`;
- :mod:`gatewire.sync` wraps it in a blocking API for scripts.

Optional dependencies: ``websockets`` for ``ws://`` (extra ``ws``) and
``zstandard`` for compression (extra ``zstd``; zstd is offered in the
handshake only when it is installed). ``tls://`` and ``wss://`` parse but
are not supported by this package yet.

Cancel safety and connection loss: see :mod:`gatewire.aio.connection`.
Errors: :mod:`gatewire.aio.errors`.
"""

from __future__ import annotations

from typing import Any

from ..code import ErrorCode
from ..frame import Codec
from ..limits import Limits, Timeouts
from ..protocol import Message, PeerInfo, Role
from ._compress import AVAILABLE as ZSTD_AVAILABLE
from ._transport import SUBPROTOCOL, open_transport
from .connection import Connection, Stats, start
from .endpoint import Endpoint, EndpointError
from .errors import (
    ConfigError,
    ConnectionClosedError,
    DeadlineError,
    LocalError,
    RefusedCallError,
    RemoteError,
    RpcError,
    Status,
    TransportError,
)
from .options import Options
from .router import CallContext, EventHandler, Router, StreamHandler, UnaryHandler
from .server import Server, serve
from .stream import RecvStream, SendStream

__all__ = [
    "SUBPROTOCOL",
    "ZSTD_AVAILABLE",
    "CallContext",
    "Codec",
    "ConfigError",
    "Connection",
    "ConnectionClosedError",
    "DeadlineError",
    "Endpoint",
    "EndpointError",
    "ErrorCode",
    "EventHandler",
    "Limits",
    "LocalError",
    "Message",
    "Options",
    "PeerInfo",
    "RecvStream",
    "RefusedCallError",
    "RemoteError",
    "Role",
    "Router",
    "RpcError",
    "SendStream",
    "Server",
    "Stats",
    "Status",
    "StreamHandler",
    "Timeouts",
    "TransportError",
    "UnaryHandler",
    "connect",
    "serve",
]


async def connect(url: str, *, router: Router | None = None, **options: Any) -> Connection:
    """Connects to ``url`` and completes the handshake.

    Args:
        url: ``tcp://host:port``, ``unix:///path`` or ``ws://host:port/path``.
        router: handlers for what the server sends us (callbacks, events,
            streams). Default: none (calls are answered ``UNKNOWN_METHOD``).
        **options: :class:`Options` fields (``timeouts``, ``compression``,
            ``auth``, ``connect_timeout``...) and individual
            :class:`~gatewire.limits.Limits` fields (``max_frame``,
            ``max_in_flight``...).

    Raises:
        ConfigError: a bad URL or option.
        TransportError: the transport could not connect.
        ConnectionClosedError: the handshake failed (refused, timed out, a
            malformed or oversize frame from the peer: ``__cause__`` holds
            the core's error).
    """
    opts = Options.from_kwargs(options)
    endpoint = Endpoint.parse(url)
    transport = await open_transport(endpoint, opts)
    try:
        return await start(transport, Role.CLIENT, opts, router or Router())
    except BaseException:
        transport.abort()
        raise
