"""gatewire on asyncio: calls, events and streams with backpressure over
TCP, Unix sockets, WebSocket and TLS. The counterpart of the Rust ``gatewire``
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
- this package adds transports (asyncio streams for ``tcp://``,
  ``unix://`` and ``tls://``, the ``websockets`` package for ``ws://`` and
  ``wss://``), the connection driver (:class:`Connection`), handlers
  (:class:`Router`), streams and a :class:`Server`;
- :mod:`gatewire.sync` wraps it in a blocking API for scripts.

Optional dependencies: ``websockets`` for ``ws://`` and ``wss://`` (extra
``ws``) and ``zstandard`` for compression (extra ``zstd``; zstd is offered
in the handshake only when it is installed).

Security
--------

``tls://`` and ``wss://`` use the standard :mod:`ssl` module
(:mod:`gatewire.aio.tls`): servers take ``tls_server=TlsServerConfig(...)``
(certificate and key files, optional client certificates) or an
:class:`ssl.SSLContext`; clients verify the server against
``tls_client=TlsClientConfig(ca_file=...)`` or the system's trust store.
A server's ``authenticator`` decides in the handshake who may connect
(static tokens, client certificates, Unix credentials:
:mod:`gatewire.aio.auth`), an ``authorizer`` decides per call, and handlers
read :attr:`CallContext.identity` and :attr:`CallContext.transport_info`.
Clients send a token with ``token=...``; tokens never go in URLs::

    tls = gw.TlsServerConfig("server.pem", "server.key", client_ca_file="clients.pem",
                             client_auth_optional=True)
    auth = gw.AnyAuthenticator(gw.MtlsAuthenticator(), gw.TokenAuthenticator().token("app", tok))
    server = await gw.serve(["tls://0.0.0.0:4443"], router, tls_server=tls, authenticator=auth)

    conn = await gw.connect("tls://gateway.internal:4443", token=tok,
                            tls_client=gw.TlsClientConfig(ca_file="ca.pem"))

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
from ._transport import SUBPROTOCOL, TransportInfo, UnixCredentials, open_transport
from .auth import (
    AnyAuthenticator,
    Authenticator,
    AuthMethod,
    Authorizer,
    Identity,
    MtlsAuthenticator,
    TokenAuthenticator,
    UnixPeerAuthenticator,
)
from .connection import Connection, Stats, start
from .endpoint import Endpoint, EndpointError
from .errors import (
    AlpnError,
    CertificateVerifyError,
    ConfigError,
    ConnectionClosedError,
    DeadlineError,
    HostnameMismatchError,
    LocalError,
    RefusedCallError,
    RemoteError,
    RpcError,
    Status,
    TlsConfigError,
    TlsError,
    TransportError,
)
from .options import Options
from .router import CallContext, EventHandler, Payload, Router, StreamHandler, UnaryHandler
from .server import Server, serve
from .stream import RecvStream, SendStream
from .tls import ClientAuth, PeerCertificate, TlsClientConfig, TlsInfo, TlsServerConfig

__all__ = [
    "SUBPROTOCOL",
    "ZSTD_AVAILABLE",
    "AlpnError",
    "AnyAuthenticator",
    "AuthMethod",
    "Authenticator",
    "Authorizer",
    "CallContext",
    "CertificateVerifyError",
    "ClientAuth",
    "Codec",
    "ConfigError",
    "Connection",
    "ConnectionClosedError",
    "DeadlineError",
    "Endpoint",
    "EndpointError",
    "ErrorCode",
    "EventHandler",
    "HostnameMismatchError",
    "Identity",
    "Limits",
    "LocalError",
    "Message",
    "MtlsAuthenticator",
    "Options",
    "Payload",
    "PeerCertificate",
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
    "TlsClientConfig",
    "TlsConfigError",
    "TlsError",
    "TlsInfo",
    "TlsServerConfig",
    "TokenAuthenticator",
    "TransportError",
    "TransportInfo",
    "UnaryHandler",
    "UnixCredentials",
    "UnixPeerAuthenticator",
    "connect",
    "serve",
]


async def connect(
    url: str | Endpoint, *, router: Router | None = None, **options: Any
) -> Connection:
    """Connects to ``url`` and completes the handshake.

    Args:
        url: ``tcp://host:port``, ``unix:///path``, ``ws://host:port/path``,
            ``tls://host:port`` or ``wss://host:port/path``, or an
            :class:`Endpoint` (one of :attr:`Server.endpoints`...).
        router: handlers for what the server sends us (callbacks, events,
            streams). Default: none (calls are answered ``UNKNOWN_METHOD``).
        **options: :class:`Options` fields (``timeouts``, ``compression``,
            ``auth``, ``tls_client``, ``connect_timeout``...), ``token`` (a
            string or bytes sent as ``auth``) and individual
            :class:`~gatewire.limits.Limits` fields (``max_frame``,
            ``max_in_flight``...).

    Raises:
        ConfigError: a bad URL or option.
        CertificateVerifyError: the server's certificate did not verify
            (:class:`HostnameMismatchError`: not for this name).
        TlsError: another TLS failure (:class:`AlpnError`: the server does
            not speak gatewire over TLS; a refused client certificate).
        TransportError: the transport could not connect.
        ConnectionClosedError: the handshake failed (refused, timed out, a
            malformed or oversize frame from the peer: ``__cause__`` holds
            the core's error). A server that refuses our credentials
            answers ``UNAUTHENTICATED`` (its ``code``).
    """
    opts = Options.from_kwargs(options)
    endpoint = Endpoint.of(url)
    transport = await open_transport(endpoint, opts)
    try:
        return await start(transport, Role.CLIENT, opts, router or Router())
    except BaseException:
        transport.abort()
        raise
