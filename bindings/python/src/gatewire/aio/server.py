"""A server: listeners on one or more endpoints, a connection per peer.
Mirrors ``gatewire::Server``.

``tls://`` and ``wss://`` listeners need the ``tls_server`` option
(:class:`~gatewire.aio.TlsServerConfig`). The TLS handshake must finish
within ``timeouts.handshake``; a client that fails it (bad certificate, no
``gatewire/1`` ALPN on ``tls://``, plaintext) is dropped before any
gatewire frame is read. Unix listeners record each client's peer
credentials (Linux) for :class:`~gatewire.aio.auth.UnixPeerAuthenticator`.

WebSocket endpoints refuse, before any upgrade: a request path other than
the listener's (HTTP 404), a client that does not offer the
``gatewire.v1`` subprotocol (400), several ``Origin`` headers (400) and,
when ``ws_origins`` is set, a present ``Origin`` not in it (403).
permessage-deflate is never negotiated; messages above ``max_frame + 16``
bytes close the connection (1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import types
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..frame import HEADER_LEN
from ..protocol import Role
from . import _unix
from . import tls as _tls
from ._transport import (
    SUBPROTOCOL,
    WS_MAX_QUEUE,
    StreamTransport,
    Transport,
    TransportInfo,
    WsTransport,
    _peer_address,
    peer_credentials,
    tls_extra,
    websockets_module,
)
from .connection import Connection
from .endpoint import Endpoint
from .errors import ConfigError, RpcError, TransportError
from .options import Options
from .router import Router

__all__ = ["Server", "serve"]

_log = logging.getLogger("gatewire")


class Server:
    """A running server. :meth:`close` stops accepting, closes every
    connection gracefully and waits until they are closed; ``async with``
    does it on exit."""

    def __init__(self, options: Options, router: Router) -> None:
        self._options = options
        self._router = router
        self._endpoints: list[Endpoint] = []
        self._listeners: list[Any] = []
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = asyncio.Event()

    @property
    def endpoints(self) -> list[Endpoint]:
        """The endpoints actually bound (with the real port for ``:0``)."""
        return list(self._endpoints)

    @property
    def urls(self) -> list[str]:
        """The bound endpoints as URLs, in the order given to :func:`serve`."""
        return [str(e) for e in self._endpoints]

    def connections(self) -> list[Connection]:
        """The open connections (handshake completed)."""
        return [c for c in self._connections if c.peer is not None and not c.is_closed]

    def __repr__(self) -> str:
        return f"Server(urls={self.urls}, connections={len(self._connections)})"

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stops accepting, closes every connection gracefully (calls in
        flight finish within the drain timeout) and waits until they are
        closed."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        ws_servers = []
        for listener in self._listeners:
            if isinstance(listener, _unix.UnixListener | asyncio.Server):
                listener.close()
            else:
                listener.close(close_connections=False)
                ws_servers.append(listener)
        closing = [asyncio.ensure_future(c.close()) for c in list(self._connections)]
        if closing:
            await asyncio.wait(closing)
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        for ws in ws_servers:
            await ws.wait_closed()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Waits until :meth:`close` has finished."""
        await self._closed.wait()

    # ----- binding --------------------------------------------------------------

    async def _bind(self, endpoint: Endpoint) -> None:
        if endpoint.scheme in ("tls", "wss") and self._options.tls_server is None:
            raise ConfigError(
                f"{endpoint.scheme}:// endpoints need a TLS configuration (the tls_server option)"
            )
        try:
            if endpoint.scheme in ("tcp", "tls"):
                await self._bind_tcp(endpoint)
            elif endpoint.scheme == "unix":
                listener = await _unix.bind(endpoint.path, self._accepted(self._on_stream_unix))
                self._listeners.append(listener)
                self._endpoints.append(endpoint)
            else:
                await self._bind_ws(endpoint)
        except OSError as e:
            error = TransportError(f"cannot bind {endpoint}: {e}")
            error.__cause__ = e
            raise error from e

    async def _resolve(self, endpoint: Endpoint) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            endpoint.host, endpoint.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        if not infos:  # pragma: no cover - getaddrinfo raises instead
            raise OSError(f"cannot resolve {endpoint.host}")
        return str(infos[0][4][0]), endpoint.port

    @staticmethod
    def _bound(scheme: str, sock: socket.socket, path: str = "") -> Endpoint:
        name = sock.getsockname()
        return Endpoint(scheme, str(name[0]), int(name[1]), path)

    def _tls_context(self, scheme: str) -> dict[str, Any]:
        """``ssl`` and the TLS timeouts for a listener of ``scheme``."""
        config = self._options.tls_server
        assert config is not None
        handshake = self._options.timeouts.handshake / 1000
        return {"ssl": config.context(scheme), **tls_extra(handshake, self._options.linger)}

    async def _bind_tcp(self, endpoint: Endpoint) -> None:
        host, port = await self._resolve(endpoint)
        loop = asyncio.get_running_loop()
        if endpoint.scheme == "tls":
            server = await loop.create_server(
                self._accepted(self._on_stream_tls),
                host,
                port,
                reuse_address=True,
                **self._tls_context("tls"),
            )
        else:
            server = await loop.create_server(
                self._accepted(self._on_stream_tcp), host, port, reuse_address=True
            )
        self._listeners.append(server)
        self._endpoints.append(self._bound(endpoint.scheme, server.sockets[0]))

    def _accepted(
        self, on_stream: Callable[[StreamTransport], Coroutine[Any, Any, None]]
    ) -> Callable[[], StreamTransport]:
        """The protocol factory of a byte-stream listener: each accepted
        connection is served by ``on_stream`` in a task of its own."""
        loop = asyncio.get_running_loop()

        def accepted(stream: StreamTransport) -> None:
            task = loop.create_task(on_stream(stream), name="gatewire-accepted")
            self._tasks.add(task)
            task.add_done_callback(self._accept_ended)

        return lambda: StreamTransport(accepted)

    async def _bind_ws(self, endpoint: Endpoint) -> None:
        websockets_module()
        from websockets.asyncio.server import serve as ws_serve  # noqa: PLC0415 - optional
        from websockets.typing import Subprotocol  # noqa: PLC0415

        from ._ws import DirectServerConnection  # noqa: PLC0415 - needs websockets

        host, port = await self._resolve(endpoint)
        path = endpoint.path
        origins = self._options.ws_origins
        scheme = endpoint.scheme
        extra = self._tls_context("wss") if scheme == "wss" else {}

        def process_request(connection: Any, request: Any) -> Any:
            if request.path != path:
                return connection.respond(404, "not found\n")
            headers = request.headers
            seen = headers.get_all("Origin")
            if len(seen) > 1:
                return connection.respond(400, "several Origin headers\n")
            if origins and seen and seen[0] not in origins:
                return connection.respond(403, "origin not allowed\n")
            offered = [
                p.strip()
                for value in headers.get_all("Sec-WebSocket-Protocol")
                for p in value.split(",")
            ]
            if SUBPROTOCOL not in offered:
                return connection.respond(400, f"the {SUBPROTOCOL} subprotocol is required\n")
            return None

        async def handler(ws: Any) -> None:
            address = ws.remote_address
            peer = None
            if isinstance(address, tuple) and len(address) >= 2:
                host_ = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
                peer = f"{host_}:{address[1]}"
            info = TransportInfo(peer)
            if scheme == "wss":
                tls = self._tls_session(ws.transport.get_extra_info("ssl_object"), scheme)
                if tls is None:
                    return
                info = TransportInfo(peer, None, tls)
            await self._serve(WsTransport(ws, info))

        server = await ws_serve(
            handler,
            host,
            port,
            create_connection=DirectServerConnection,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            compression=None,  # never permessage-deflate: gatewire has zstd
            process_request=process_request,
            max_size=self._options.limits.max_frame + HEADER_LEN,
            max_queue=WS_MAX_QUEUE,
            open_timeout=self._options.timeouts.handshake / 1000,
            ping_interval=None,  # gatewire's own keepalive covers it
            close_timeout=max(self._options.linger, 0.1),
            server_header=None,
            reuse_address=True,
            **extra,
        )
        self._listeners.append(server)
        self._endpoints.append(self._bound(scheme, server.sockets[0], path))

    # ----- connections --------------------------------------------------------

    def _accept_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.error("serving an accepted connection failed", exc_info=error)

    async def _on_stream_tcp(self, stream: StreamTransport) -> None:
        stream.info = TransportInfo(_peer_address(stream))
        await self._serve(stream)

    async def _on_stream_tls(self, stream: StreamTransport) -> None:
        tls = self._tls_session(stream.get_extra_info("ssl_object"), "tls")
        if tls is None:
            await stream.close(self._options.linger)
            return
        stream.info = TransportInfo(_peer_address(stream), None, tls)
        await self._serve(stream)

    @staticmethod
    def _tls_session(ssl_object: Any, scheme: str) -> _tls.TlsInfo | None:
        """The facts of an accepted TLS session, or ``None`` when the client
        did not agree on the ALPN protocol (it is then dropped)."""
        if ssl_object is None:
            return None
        info = _tls.TlsInfo.from_ssl(ssl_object, None)
        try:
            _tls.check_alpn(info, scheme, "client")
        except RpcError as e:
            _log.debug("TLS client dropped: %s", e)
            return None
        return info

    async def _on_stream_unix(self, stream: StreamTransport) -> None:
        name = stream.get_extra_info("sockname")
        stream.info = TransportInfo(
            str(name) if name else None, peer_credentials(stream.get_extra_info("socket"))
        )
        await self._serve(stream)

    async def _serve(self, transport: Transport) -> None:
        if self._closing or len(self._connections) >= self._options.max_connections:
            transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = Connection(transport, Role.SERVER, self._options, self._router)
        self._connections.add(conn)
        try:
            try:
                await conn._handshake()
            except RpcError as e:
                _log.debug("handshake failed: %s", e)
                return
            await conn.wait_closed()
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)


async def serve(
    urls: str | Endpoint | Sequence[str | Endpoint],
    router: Router | None = None,
    **options: Any,
) -> Server:
    """Binds every URL and serves connections on all of them.

    Args:
        urls: ``tcp://host:port``, ``unix:///path``, ``ws://host:port/path``,
            ``tls://host:port`` and ``wss://host:port/path`` endpoints, as
            URLs or :class:`~gatewire.aio.endpoint.Endpoint` values (port
            ``0`` picks a free port; see :attr:`Server.urls`). TLS ones need
            the ``tls_server`` option.
        router: handlers for what clients send (and nothing else: a server
            calls its clients through :meth:`Server.connections` or
            :attr:`CallContext.connection`).
        **options: :class:`~gatewire.aio.options.Options` fields and
            individual :class:`~gatewire.limits.Limits` fields.

    Raises:
        ConfigError: a bad URL or option.
        TransportError: an endpoint cannot be bound (address in use, unsafe
            Unix socket directory...; ``__cause__`` is the :class:`OSError`).
    """
    opts = Options.from_kwargs(options)
    if isinstance(urls, bytes | bytearray | memoryview):
        raise TypeError("endpoints are URLs or Endpoint values, not bytes")
    endpoints = [Endpoint.of(u) for u in ([urls] if isinstance(urls, str | Endpoint) else urls)]
    server = Server(opts, router or Router())
    try:
        for endpoint in endpoints:
            await server._bind(endpoint)
    except BaseException:
        with contextlib.suppress(Exception):
            await server.close()
        raise
    return server
