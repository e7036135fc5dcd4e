"""Transports: byte streams (TCP, Unix sockets, TLS) and WebSocket (plain
and over TLS), behind one small interface the connection driver uses.
Mirrors ``gatewire::transport``.

A transport says whether it keeps message boundaries
(:attr:`Transport.message_framing`): byte streams carry frames back to back
and the core's decoder splits them; WebSocket carries exactly one gatewire
frame per **binary** message (a text message fails the read).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import secrets
import socket
import ssl
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..code import ErrorCode
from ..frame import HEADER_LEN
from . import tls as _tls
from .endpoint import Endpoint
from .errors import ConfigError, RpcError, TransportError

if TYPE_CHECKING:
    from .options import Options

__all__ = [
    "SUBPROTOCOL",
    "StreamTransport",
    "Transport",
    "TransportInfo",
    "UnixCredentials",
    "WsTransport",
    "open_transport",
    "websockets_module",
]

SUBPROTOCOL = "gatewire.v1"
"""The WebSocket subprotocol gatewire requires of both ends."""

WS_MAX_QUEUE = 16
"""Incoming WebSocket messages ``websockets`` queues before it pauses
reading from the socket, on a connection it reads itself (see ``_ws``);
each is at most ``max_frame + 16`` bytes."""

NOTSENT_LOWAT = 32 * 1024
"""Unsent bytes the kernel may hold for a TCP socket before it reports it
as not writable (``TCP_NOTSENT_LOWAT``, Linux), as in the Rust runtime:
frames wait in the protocol core, where a ping or a small call can still
overtake a bulk transfer, instead of behind megabytes in the kernel."""

EARLY_INPUT = 64 * 1024
"""Bytes a byte stream reads before the connection starts processing them
(a peer may send its HELLO at once); reading pauses beyond."""

_WS_TOO_BIG = 1009
_WS_UNSUPPORTED_DATA = 1003


@dataclass(frozen=True, slots=True)
class UnixCredentials:
    """The credentials of the process at the other end of a Unix socket."""

    uid: int
    """User id."""
    gid: int
    """Group id."""
    pid: int | None
    """Process id."""


@dataclass(frozen=True, slots=True)
class TransportInfo:
    """What the transport knows about the peer (Rust's
    ``transport::PeerInfo``)."""

    address: str | None = None
    """A printable address: ``127.0.0.1:4000``, a socket path, a URL."""
    credentials: UnixCredentials | None = None
    """Unix peer credentials, recorded when the connection was accepted
    (Linux)."""
    tls: _tls.TlsInfo | None = None
    """TLS session facts (``tls://``, ``wss://``): version, ALPN, and the
    peer's verified certificate, if it sent one."""


def peer_credentials(sock: socket.socket | None) -> UnixCredentials | None:
    """``SO_PEERCRED`` of a connected Unix socket (Linux), else ``None``."""
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return UnixCredentials(uid=uid, gid=gid, pid=pid or None)


def tls_extra(handshake: float, linger: float) -> dict[str, Any]:
    """Keyword arguments of asyncio's TLS connect and serve calls: the
    handshake deadline and how long a closing session waits for the peer's
    ``close_notify``."""
    extra: dict[str, Any] = {"ssl_handshake_timeout": handshake}
    if sys.version_info >= (3, 11):
        extra["ssl_shutdown_timeout"] = max(linger, 0.1)
    return extra


def websockets_module() -> Any:
    """The ``websockets`` package, imported on first use.

    Raises:
        ConfigError: it is not installed.
    """
    try:
        import websockets  # noqa: PLC0415 - optional dependency
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "ws:// endpoints need the websockets package (pip install 'gatewire[ws]')"
        ) from None
    return websockets


Received = Callable[[list[bytes]], None]
"""Called with what a transport reads, in order: a chunk of a byte stream
(one item), or whole frames, one per message, for a message-framed one
(all those of one read, when it reads the messages itself)."""
Ended = Callable[[RpcError | None], None]
"""Called once when the peer's side ends: ``None`` for a clean end of the
stream (or a half-close), else the error that ended the transport."""
Settled = Callable[[], None]
"""Called after what one read brought has all gone to ``Received`` (one
chunk of a byte stream, the messages of one WebSocket read, or those
``websockets`` had queued)."""


class Transport(abc.ABC):
    """One established connection's bytes.

    Reading is pushed: :meth:`start` hands the transport the callbacks that
    receive what it reads, from the event loop's own callbacks, so input is
    processed the moment it arrives. Only one :meth:`write` may be in
    progress at a time.
    """

    message_framing: bool
    """Whether every chunk read is exactly one frame (WebSocket)."""
    info: TransportInfo
    """What the transport knows of the peer."""

    @property
    def peer(self) -> str | None:
        """The peer's address."""
        return self.info.address

    @abc.abstractmethod
    def start(self, received: Received, ended: Ended, settled: Settled) -> None:
        """Starts reading (nothing is read before): what is read goes to
        ``received``, ``settled`` is called once what one read brought has
        all been given (one chunk, or several messages), and the end of
        input goes, once, to ``ended``."""

    @abc.abstractmethod
    def pause_reading(self) -> None:
        """Reads nothing more until :meth:`resume_reading` (the protocol
        core holds as much input as it may)."""

    @abc.abstractmethod
    def resume_reading(self) -> None:
        """Reads again after :meth:`pause_reading`."""

    @abc.abstractmethod
    async def write(self, frames: list[bytes]) -> None:
        """Writes encoded frames (possibly none), in order, and waits until
        the transport accepts more.

        Raises:
            TransportError: the transport failed.
        """

    def can_write_now(self) -> bool:
        """Whether :meth:`write_now` may be called: the transport is open
        and its write buffer is below its high-water mark. ``False`` by
        default: every write goes through :meth:`write`."""
        return False

    def write_now(self, frames: list[bytes]) -> None:
        """Writes encoded frames, in order, without waiting (only when
        :meth:`can_write_now`). Whatever the socket does not take at once
        stays buffered; :meth:`can_write_now` then turns ``False`` once the
        buffer passes its high-water mark.

        Raises:
            TransportError: the transport failed.
        """
        raise NotImplementedError

    @abc.abstractmethod
    async def close(self, linger: float) -> None:
        """Closes: stops delivering input, ends our side, waits up to
        ``linger`` seconds for the peer's side to end (discarding what it
        still sends), then drops the socket. Never raises."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drops the socket at once."""


class StreamTransport(asyncio.Protocol, Transport):
    """TCP, a Unix-domain socket or TLS: the asyncio protocol of the socket
    itself, so what arrives reaches the core within the loop's read
    callback (no reader task to wake).

    Create it as the protocol of ``loop.create_connection`` (or
    ``create_unix_connection``, ``create_server``...). What arrives before
    :meth:`start` is held, up to :data:`EARLY_INPUT` bytes before reading
    pauses. ``accepted``, if given, is called once the connection is made
    (a server's accept).
    """

    message_framing = False

    def __init__(self, accepted: Callable[[StreamTransport], None] | None = None) -> None:
        self.info = TransportInfo()
        self._accepted = accepted
        self._socket: asyncio.Transport | None = None
        self._tls = False
        self._received: Received | None = None
        self._settled: Settled | None = None
        self._ended: Ended | None = None
        self._early: bytearray | None = bytearray()
        """Input held until :meth:`start`."""
        self._paused = False
        self._eof = False
        self._lost = False
        self._lost_error: Exception | None = None
        self._aborted = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._peer_done: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # ----- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._socket = transport
        self._tls = transport.get_extra_info("sslcontext") is not None
        self._closed = asyncio.get_running_loop().create_future()
        _tune(transport.get_extra_info("socket"))
        if self._accepted is not None:
            self._accepted(self)

    def data_received(self, data: bytes) -> None:
        received = self._received
        if received is not None:
            received([data])
            if self._settled is not None:
                self._settled()
        elif self._early is not None:
            # Not started yet. (Pausing a TLS transport before then would
            # also hold back the end of our handshake, in asyncio.)
            self._early += data
            if len(self._early) >= EARLY_INPUT:
                self.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        _wake(self._peer_done)
        self._end(None)
        # Keep our side open: the peer half-closed and still reads (TLS has
        # no half-close; asyncio closes it whatever is returned).
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._lost_error = exc
        self._write_paused = False
        _wake(self._drained)
        _wake(self._peer_done)
        _wake(self._closed)
        if exc is not None:
            self._end(_read_error(exc))
        elif self._aborted or not self._eof:
            # Our side was dropped, not a half-close by the peer.
            self._end(TransportError("connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        _wake(self._drained)

    # ----- Transport ----------------------------------------------------------

    def _end(self, error: RpcError | None) -> None:
        ended, self._ended = self._ended, None
        self._received = None
        self._settled = None
        if ended is not None:
            ended(error)

    def get_extra_info(self, name: str) -> Any:
        """The socket transport's ``get_extra_info``."""
        return None if self._socket is None else self._socket.get_extra_info(name)

    def start(self, received: Received, ended: Ended, settled: Settled) -> None:
        early, self._early = self._early, None
        self._received = received
        self._settled = settled
        self._ended = ended
        # Resumed first: taking the early input may pause reading again
        # (nothing can arrive in between, within this callback).
        self.resume_reading()
        if early:
            received([bytes(early)])
            settled()
        if self._lost:
            error = self._lost_error
            self._end(None if error is None and self._eof else _read_error(error))
        elif self._eof:
            self._end(None)

    def pause_reading(self) -> None:
        if not self._paused and not self._eof and not self._lost and self._socket is not None:
            self._paused = True
            self._socket.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and not self._eof and not self._lost and self._socket is not None:
            self._paused = False
            self._socket.resume_reading()

    def _write_failed(self, e: BaseException | None) -> TransportError:
        lost = self._lost_error
        if isinstance(lost, ssl.SSLError):
            # The session ended with a TLS alert (the peer refused our
            # certificate...): that, not the failed write, is the cause.
            return _tls.tls_error("TLS session failed", lost)
        cause = e or lost or ConnectionResetError("connection lost")
        return _io_error("write failed", cause)

    async def write(self, frames: list[bytes]) -> None:
        if frames:
            self.write_now(frames)
        while self._write_paused:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        if self._lost:
            raise self._write_failed(None)

    def can_write_now(self) -> bool:
        socket_ = self._socket
        return not self._write_paused and socket_ is not None and not socket_.is_closing()

    def write_now(self, frames: list[bytes]) -> None:
        socket_ = self._socket
        if self._lost or socket_ is None:
            raise self._write_failed(None)
        try:
            socket_.write(b"".join(frames) if len(frames) > 1 else frames[0])
        except (OSError, RuntimeError) as e:
            raise self._write_failed(e) from e

    async def close(self, linger: float) -> None:
        socket_ = self._socket
        if socket_ is None:
            return
        self._received = None
        self._settled = None
        self._ended = None
        self._early = None
        loop = asyncio.get_running_loop()
        try:
            if not socket_.is_closing() and socket_.can_write_eof() and not self._lost:
                socket_.write_eof()
                if not self._eof:
                    # Read (and drop) until the peer closes too, so the last
                    # frames we wrote are not cut off by a reset.
                    self._peer_done = loop.create_future()
                    self.resume_reading()
                    await asyncio.wait_for(asyncio.shield(self._peer_done), linger)
        except (OSError, RuntimeError, asyncio.TimeoutError):
            pass
        finally:
            # Over TLS (no half-close), this sends close_notify and waits for
            # the peer's.
            socket_.close()
            closed = self._closed
            try:
                if closed is not None:
                    await asyncio.wait_for(asyncio.shield(closed), max(linger, 0.1))
            except (OSError, RuntimeError, asyncio.TimeoutError):
                socket_.abort()

    def abort(self) -> None:
        self._aborted = True
        if self._socket is not None:
            self._socket.abort()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _read_error(e: BaseException | None) -> TransportError:
    if e is None:
        return TransportError("connection lost")
    if isinstance(e, ssl.SSLError):
        return _tls.tls_error("TLS read failed", e)
    return _io_error("read failed", e)


class WsTransport(Transport):
    """A WebSocket connection (the ``websockets`` package, either end)."""

    message_framing = True

    def __init__(self, ws: Any, info: TransportInfo | str | None) -> None:
        from websockets.protocol import State  # noqa: PLC0415 - optional dependency

        transport = getattr(ws, "transport", None)
        _tune(None if transport is None else transport.get_extra_info("socket"))
        self._ws = ws
        self._open = State.OPEN
        self.info = info if isinstance(info, TransportInfo) else TransportInfo(address=info)
        self._reading: asyncio.Task[None] | None = None
        # Read in the socket's callback where the connection allows it
        # (``_ws.DirectReading``); else each message is taken from
        # ``recv()`` by a task.
        self._direct = ws if hasattr(ws, "gw_attach") else None
        self._may_read = asyncio.Event()
        self._may_read.set()
        self._aborted = False
        # Batched writes use the connection's sans-I/O protocol object
        # (websockets 16's asyncio API); without it every frame goes
        # through ``send``.
        # Frames are encoded here only without extensions (gatewire never
        # negotiates permessage-deflate).
        self._batched = (
            all(
                hasattr(ws, name)
                for name in ("protocol", "send_in_progress", "paused", "transport")
            )
            and hasattr(getattr(ws, "protocol", None), "send_binary")
            and not getattr(ws.protocol, "extensions", None)
        )
        if self._batched:
            from websockets.protocol import Side  # noqa: PLC0415 - optional dependency

            from ._ws import apply_mask, binary_head  # noqa: PLC0415 - needs websockets

            self._apply_mask = apply_mask
            self._head = binary_head
            self._masked = ws.protocol.side is Side.CLIENT

    def start(self, received: Received, ended: Ended, settled: Settled) -> None:
        if self._direct is not None:
            self._direct.gw_attach(received, settled)
        self._reading = asyncio.get_running_loop().create_task(
            self._read_loop(received, ended, settled), name="gatewire-ws-reader"
        )

    def pause_reading(self) -> None:
        # Once aborted, the reader runs until it sees the end.
        if not self._aborted:
            self._may_read.clear()
            if self._direct is not None:
                self._direct.gw_pause()

    def resume_reading(self) -> None:
        self._may_read.set()
        if self._direct is not None:
            self._direct.gw_resume()

    async def _read_loop(self, received: Received, ended: Ended, settled: Settled) -> None:
        # Messages websockets reads itself (all of them, or all from one it
        # was handed on, see ``_ws``) are taken one at a time here, and not
        # while paused (its queue then fills and it stops reading from the
        # socket); ``settled`` follows in the next turn of the loop, after
        # all those that were already queued. This task also sees the end.
        loop = asyncio.get_running_loop()
        settling: asyncio.Handle | None = None

        def settle() -> None:
            nonlocal settling
            settling = None
            settled()

        error: RpcError | None = None
        try:
            while True:
                if not self._may_read.is_set():
                    await self._may_read.wait()
                message = await self._recv()
                if message is None:
                    break
                received([message])
                if settling is None:
                    settling = loop.call_soon(settle)
        except RpcError as e:
            error = e
        except asyncio.CancelledError:
            return
        ended(error)

    async def _recv(self) -> bytes | None:
        websockets = websockets_module()
        try:
            message = await self._ws.recv()
        except websockets.exceptions.ConnectionClosedOK:
            return None
        except websockets.exceptions.ConnectionClosed as e:
            code = ErrorCode.UNAVAILABLE
            sent = e.sent
            if sent is not None and sent.code == _WS_TOO_BIG:
                code = ErrorCode.TOO_LARGE
            raise _error(f"websocket closed: {e}", code, e) from e
        except ssl.SSLError as e:
            raise _tls.tls_error("TLS read failed", e) from e
        except OSError as e:
            raise _io_error("read failed", e) from e
        if isinstance(message, str):
            # gatewire frames travel as binary messages only.
            with contextlib.suppress(Exception):
                await self._ws.close(_WS_UNSUPPORTED_DATA, "gatewire frames are binary messages")
            raise TransportError("websocket text message (gatewire frames are binary)")
        return bytes(message)

    async def write(self, frames: list[bytes]) -> None:
        websockets = websockets_module()
        try:
            if frames and self._is_open():
                self.write_now(frames)
            else:
                # Closing: send() raises the reason.
                for f in frames:
                    await self._ws.send(f)
            await self._ws.drain()
        except websockets.exceptions.ConnectionClosed as e:
            raise _error(f"websocket closed: {e}", ErrorCode.UNAVAILABLE, e) from e
        except OSError as e:
            raise _io_error("write failed", e) from e

    def _is_open(self) -> bool:
        ws = self._ws
        return (
            self._batched
            and ws.protocol.state is self._open
            and ws.send_in_progress is None
            and not ws.transport.is_closing()
        )

    def can_write_now(self) -> bool:
        return self._is_open() and not self._ws.paused

    def write_now(self, frames: list[bytes]) -> None:
        # One binary message per frame (docs/PROTOCOL.md §2.2), all written
        # to the socket at once: ``send`` would write (a syscall) and drain
        # per message. The frames are encoded here rather than by the
        # protocol object, which copies each body twice more; nothing of
        # its own is waiting to be written while it is open (``_is_open``),
        # so the order of the stream is kept.
        masked = self._masked
        mask = self._apply_mask
        head_of = self._head
        transport = self._ws.transport
        parts: list[bytes] = []
        # A fresh masking key per frame, drawn for the whole batch at once.
        keys = secrets.token_bytes(4 * len(frames)) if masked else b""
        for i, f in enumerate(frames):
            head = head_of(len(f), masked)
            if masked:
                key = keys[4 * i : 4 * i + 4]
                parts += (head + key, mask(f, key))
            else:
                parts += (head, f)
        try:
            transport.write(b"".join(parts))
        except (OSError, RuntimeError) as e:
            raise _io_error("write failed", e) from e

    async def close(self, linger: float) -> None:
        self._stop_reading()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), max(linger, 0.1))
        self.abort()

    def _stop_reading(self) -> None:
        if self._direct is not None:
            self._direct.gw_hand_over()
        reading, self._reading = self._reading, None
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()

    def abort(self) -> None:
        # The reader sees the connection closed and reports it (even when
        # reading was paused, or is asked to pause by what it still takes).
        self._aborted = True
        self._may_read.set()
        try:
            if self._direct is not None:
                self._direct.gw_hand_over()
        finally:
            transport = getattr(self._ws, "transport", None)
            if transport is not None:
                transport.abort()


def _tune(sock: socket.socket | None) -> None:
    """TCP options (TCP, TLS and WebSocket alike): ``TCP_NODELAY`` (frames
    are written in batches: no need to wait for more) and
    :data:`NOTSENT_LOWAT` where the platform has it."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, NOTSENT_LOWAT)


def _error(message: str, code: ErrorCode, cause: BaseException) -> TransportError:
    e = TransportError(message, code)
    e.__cause__ = cause
    return e


def _io_error(what: str, e: BaseException) -> TransportError:
    return _error(f"{what}: {e}", ErrorCode.UNAVAILABLE, e)


def _peer_address(stream: StreamTransport) -> str | None:
    name = stream.get_extra_info("peername")
    if isinstance(name, tuple) and len(name) >= 2:
        host = f"[{name[0]}]" if ":" in str(name[0]) else str(name[0])
        return f"{host}:{name[1]}"
    return str(name) if name else None


async def open_transport(endpoint: Endpoint, options: Options) -> Transport:
    """Connects to ``endpoint``, transport handshakes included (TLS,
    WebSocket upgrade), within ``options.connect_timeout``.

    Raises:
        TlsError: the TLS handshake failed (:class:`CertificateVerifyError`,
            :class:`HostnameMismatchError`, :class:`AlpnError`...).
        TransportError: connecting failed or timed out.
        ConfigError: a missing optional dependency.
    """
    try:
        return await asyncio.wait_for(_open(endpoint, options), options.connect_timeout)
    except asyncio.TimeoutError as e:
        raise _error(
            f"connecting to {endpoint} did not finish within {options.connect_timeout} s",
            ErrorCode.UNAVAILABLE,
            e,
        ) from e
    except ssl.SSLError as e:
        raise _tls.tls_error(f"TLS handshake with {endpoint} failed", e) from e
    except OSError as e:
        raise _io_error(f"cannot connect to {endpoint}", e) from e


def _client_tls(endpoint: Endpoint, options: Options) -> tuple[ssl.SSLContext, str]:
    config = options.tls_client or _tls.default_client_config()
    return config.context(endpoint.scheme), config.name_for(endpoint.host)


def _session(ssl_object: Any, endpoint: Endpoint, server_name: str, close: Any) -> _tls.TlsInfo:
    """The TLS facts of a fresh client connection, once its ALPN is checked
    (``close`` drops it otherwise)."""
    info = _tls.TlsInfo.from_ssl(ssl_object, server_name)
    try:
        _tls.check_alpn(info, endpoint.scheme, "server")
    except RpcError:
        close()
        raise
    return info


async def _open(endpoint: Endpoint, options: Options) -> Transport:
    loop = asyncio.get_running_loop()
    if endpoint.scheme == "tcp":
        _, stream = await loop.create_connection(StreamTransport, endpoint.host, endpoint.port)
        stream.info = TransportInfo(_peer_address(stream))
        return stream
    if endpoint.scheme == "unix":
        _, stream = await loop.create_unix_connection(StreamTransport, endpoint.path)
        stream.info = TransportInfo(endpoint.path)
        return stream
    if endpoint.scheme == "tls":
        context, name = _client_tls(endpoint, options)
        socket_, stream = await loop.create_connection(
            StreamTransport,
            endpoint.host,
            endpoint.port,
            ssl=context,
            server_hostname=name,
            **tls_extra(options.connect_timeout, options.linger),
        )
        session = _session(socket_.get_extra_info("ssl_object"), endpoint, name, socket_.abort)
        stream.info = TransportInfo(_peer_address(stream), None, session)
        return stream
    websockets = websockets_module()
    from websockets.asyncio.client import connect  # noqa: PLC0415 - optional dependency
    from websockets.typing import Origin, Subprotocol  # noqa: PLC0415

    uri = f"{endpoint.scheme}://{endpoint.authority}{endpoint.path}"
    extra: dict[str, Any] = {}
    name = ""
    if endpoint.scheme == "wss":
        context, name = _client_tls(endpoint, options)
        extra = {"ssl": context, "server_hostname": name}
        extra.update(tls_extra(options.connect_timeout, options.linger))
    from ._ws import DirectClientConnection  # noqa: PLC0415 - needs websockets

    opener = connect(
        uri,
        create_connection=DirectClientConnection,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        compression=None,  # never permessage-deflate: gatewire has zstd
        max_size=options.limits.max_frame + HEADER_LEN,
        max_queue=WS_MAX_QUEUE,
        origin=None if options.ws_origin is None else Origin(options.ws_origin),
        proxy=None,
        open_timeout=options.connect_timeout,
        ping_interval=None,  # gatewire's own keepalive covers it
        close_timeout=max(options.linger, 0.1),
        user_agent_header=None,
        **extra,
    )
    try:
        ws = await opener
    except websockets.exceptions.InvalidHandshake as e:
        # A TLS alert during the upgrade (the server refused our
        # certificate) reaches websockets as the end of the stream; the
        # connection keeps the TLS error.
        lost = getattr(getattr(opener, "connection", None), "recv_exc", None)
        if isinstance(lost, ssl.SSLError):
            raise _tls.tls_error(f"TLS with {endpoint} failed", lost) from e
        raise _error(
            f"websocket upgrade to {endpoint} refused: {e}", ErrorCode.UNAVAILABLE, e
        ) from e
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        raise TransportError(f"websocket server did not select the {SUBPROTOCOL} subprotocol")
    tls: _tls.TlsInfo | None = None
    if endpoint.scheme == "wss":
        ssl_object = ws.transport.get_extra_info("ssl_object")
        tls = _session(ssl_object, endpoint, name, ws.transport.abort)
    return WsTransport(ws, TransportInfo(uri, None, tls))
