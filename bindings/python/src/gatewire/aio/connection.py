"""The connection driver: the sans-IO core on asyncio. Mirrors
``gatewire::Connection`` (``crates/gatewire/src/conn.rs``).

Two tasks per connection surround the core: a reader feeds it bytes (or
whole WebSocket frames) while :meth:`~gatewire.protocol.Connection.wants_read`
allows, and a writer drains the core's frames, encoded by
:meth:`~gatewire.protocol.Connection.transmit` in batches of up to 64 KiB (as
the Rust runtime), so reading never waits for writing. While the writer is
idle and the transport's buffer has room, the frames queued during one turn
of the loop are written together by one callback, without waking it; the
writer takes over whenever a write must wait (backpressure). One timer,
re-armed from :meth:`~gatewire.protocol.Connection.poll_timeout`, fires the
core's deadlines (handshake, keepalive, call deadlines, drain...). After
every input or command the runtime routes the core's events: responses to
the pending-call map, stream data to stream queues, requests to handler
tasks, or straight to a plain-function handler, whose answer goes out with
the rest of that turn's writes. Everything runs on the event loop's thread:
there is no lock, and the only user code that runs while events are routed
is a plain-function handler (or, with an eager task factory, the first
steps of a handler task); the routing is not re-entered meanwhile.

Cancel safety
-------------

- Cancelling the task awaiting :meth:`Connection.call` cancels the call:
  the peer is sent CANCEL and its handler task is cancelled. No response is
  delivered afterwards.
- A handler task is cancelled when the caller cancels or its deadline
  passes; the call's concurrency slot is released only once the task has
  finished, so cancelled work never lets more handlers run than
  ``max_in_flight``.
- :meth:`RecvStream.cancel` (or leaving ``async with rx``) on a stream we
  opened, before the peer ended it, cancels the stream.
- Cancelling :meth:`SendStream.send` while it waits for credit sends
  nothing.

Connection loss
---------------

When a connection ends for any reason, every pending call, stream and ping
fails at once with an :class:`RpcError` whose ``is_closed`` is true (or
``is_retryable`` for work that never left); nothing waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import math
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from ..code import ErrorCode
from ..control import ErrorInfo, ServiceList
from ..exceptions import (
    Blocked,
    GatewireError,
    InvalidArgument,
    InvalidState,
    MessageTooLarge,
    SendError,
)
from ..frame import Codec, trusted_constructor
from ..protocol import (
    CallFailed,
    Cancelled,
    Closed,
    Config,
    Connected,
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
from ..protocol import Connection as Core
from ..services import LIST_SERVICES, REAUTHENTICATE
from . import _compress, auth
from .errors import (
    ConnectionClosedError,
    DeadlineError,
    LocalError,
    RefusedCallError,
    RemoteError,
    RpcError,
    Status,
    from_connection,
    from_send,
    unsent,
)
from .router import CallContext, EventHandler, Payload, Router, StreamHandler, UnaryHandler
from .stream import Notify, RecvStream, SendStream, StreamSlot, to_message, wait_any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from ._transport import Transport, TransportInfo
    from .options import Options

__all__ = ["MAX_BATCH", "Connection", "Stats"]

MAX_BATCH = 64 * 1024
"""Frames are gathered into one write until it holds this many bytes (the
Rust runtime's batch)."""

_log = logging.getLogger("gatewire")

_T = TypeVar("_T")
_E = TypeVar("_E", bound=RpcError)


class _Blocked:
    """The core had no room for a command."""


_BLOCKED = _Blocked()


def _clone(error: _E) -> _E:
    """A copy of ``error`` for one more waiter (each raise gets its own
    traceback)."""
    e = BaseException.__new__(type(error), *error.args)
    e.__dict__.update(error.__dict__)
    e.__cause__ = error.__cause__
    return e


def _remote_error(code: ErrorCode, message: str | None, details: bytes | None) -> RpcError:
    if code == ErrorCode.REFUSED:
        return RefusedCallError(code, message)
    return RemoteError(code, message, details)


def _deadline_ms(timeout: float | None) -> int | None:
    if timeout is None:
        return None
    if math.isnan(timeout) or timeout < 0:
        raise ValueError("timeout must be a non-negative number of seconds")
    return max(0, math.ceil(timeout * 1000 - 1e-6))


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of a connection's counters."""

    frames_sent: int
    """Frames written."""
    bytes_sent: int
    """Bytes written."""
    bytes_received: int
    """Bytes read."""
    writes: int
    """Transport writes (each carries a batch of frames)."""
    credit_stalls: int
    """Sends that had to wait for credit, a call slot or queue room."""
    events_dropped: int
    """One-way events dropped: no handler, or its queue was full."""
    calls_out: int
    """Calls and streams we opened that are still open."""
    calls_in: int
    """Calls and streams the peer opened that are still open (counting
    handlers still running after a cancel)."""


class Connection:
    """A gatewire connection on asyncio. Either end may call the other.

    Get one from :func:`gatewire.aio.connect` (client) or from a handler's
    :attr:`CallContext.connection` / :meth:`Server.connections` (server).
    Close it with :meth:`close` (graceful) or :meth:`abort`; ``async with``
    closes it on exit.
    """

    def __init__(self, transport: Transport, role: Role, options: Options, router: Router) -> None:
        from .. import __version__  # noqa: PLC0415 - the package imports this module

        self._loop = asyncio.get_running_loop()
        self._epoch = self._loop.time()
        self._last_now = 0
        self._transport = transport
        self._framed = transport.message_framing
        self._options = options
        self._router = router
        config = Config(
            role=role,
            limits=options.limits,
            timeouts=options.timeouts,
            compression=options.offers_compression,
            auth=options.auth if role is Role.CLIENT else None,
            agent=options.agent or f"gatewire-python/{__version__}",
            services=options.offers,
            uses=options.uses,
        )
        self._core = Core(config, 0)
        self._compressor: _compress.Compressor | None = None
        self._identity: auth.Identity | None = None

        self._calls: dict[int, asyncio.Future[Message]] = {}
        self._streams: dict[int, StreamSlot] = {}
        self._handlers: dict[int, asyncio.Task[object]] = {}
        self._pings: dict[int, asyncio.Future[float]] = {}
        self._event_queues: dict[int, asyncio.Queue[Message | None]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._close_error: RpcError | None = None
        self._closed = asyncio.Event()
        self._writable = Notify()
        self._write_wake = asyncio.Event()
        self._write_idle = False
        """The writer waits for work, holding no frames: :meth:`_pump`
        may write itself."""
        self._flush_handle: asyncio.Handle | None = None
        self._write_error: RpcError | None = None
        """A failed inline write, for the writer to handle."""
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self._abort_handle: asyncio.TimerHandle | None = None
        self._dispatching = False
        self._writer: asyncio.Task[None] | None = None

        self._stats_frames_sent = 0
        self._stats_bytes_sent = 0
        self._stats_bytes_received = 0
        self._stats_writes = 0
        self._stats_credit_stalls = 0
        self._stats_events_dropped = 0

    # ----- lifecycle ------------------------------------------------------------

    def _start(self) -> None:
        """Starts reading and the writer task (and sends HELLO, for a
        client)."""
        self._writer = self._loop.create_task(self._write_loop(), name="gatewire-writer")
        self._transport.start(self._received, self._ended, self._settled)
        self._pump()

    async def _handshake(self) -> None:
        """Runs the connection until the handshake completes.

        Raises:
            RpcError: the handshake failed (refused, timed out, transport
                error); the transport is closed by then.
        """
        self._start()
        try:
            await asyncio.shield(self._connected)
        except RpcError:
            await self.wait_closed()
            raise
        except BaseException:
            self.abort(ErrorCode.UNAVAILABLE, "handshake abandoned")
            raise

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"Connection(role={self._core.role().value}, peer={self._transport.peer!r},"
            f" closed={self.is_closed})"
        )

    # ----- getters --------------------------------------------------------------

    @property
    def role(self) -> Role:
        """Client or server."""
        return self._core.role()

    @property
    def peer(self) -> PeerInfo | None:
        """What the peer agreed to in the handshake (its limits, whether zstd
        is on, its agent...)."""
        return self._core.peer()

    @property
    def remote_address(self) -> str | None:
        """The peer's address, as the transport knows it."""
        return self._transport.peer

    @property
    def transport_info(self) -> TransportInfo:
        """What the transport knows about the peer: its address, Unix
        credentials, the TLS session and the peer's verified certificate."""
        return self._transport.info

    @property
    def identity(self) -> auth.Identity | None:
        """Server side: who the client authenticated as, in the handshake or
        its latest re-authentication (anonymous without an authenticator).
        Client side: ``None``."""
        return self._identity

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed.is_set()

    @property
    def close_error(self) -> RpcError | None:
        """Why the connection ended (``None`` while open or after a graceful
        end)."""
        return self._close_error

    def stats(self) -> Stats:
        """Counters, and calls in flight in each direction."""
        calls_out, calls_in = self._core.calls_in_flight()
        return Stats(
            frames_sent=self._stats_frames_sent,
            bytes_sent=self._stats_bytes_sent,
            bytes_received=self._stats_bytes_received,
            writes=self._stats_writes,
            credit_stalls=self._stats_credit_stalls,
            events_dropped=self._stats_events_dropped,
            calls_out=calls_out,
            calls_in=calls_in,
        )

    # ----- commands -------------------------------------------------------------

    async def call(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
        timeout: float | None = None,
    ) -> Message:
        """Calls ``method`` and waits for the response.

        Args:
            method: the method id.
            payload: the request: bytes (tagged ``codec``) or a
                :class:`~gatewire.Message`.
            codec: the codec tag of a bytes payload. Default ``RAW``.
            timeout: seconds; travels to the peer as the call's deadline
                (whole milliseconds, rounded up), which stops its handler
                when it passes; the call then fails with
                :class:`DeadlineError`.

        Returns:
            The response (decompressed).

        Raises:
            RemoteError: the peer answered with an error code.
            DeadlineError: the deadline passed.
            RefusedCallError: not processed (peer's GOAWAY or limit, or the
                connection was closing): safe to retry.
            ConnectionClosedError: the connection ended.
            LocalError: the request is larger than the peer accepts, or the
                response does not decompress.

        Cancelling the awaiting task sends CANCEL to the peer.
        """
        message = to_message(payload, codec)
        deadline = _deadline_ms(timeout)
        fut: asyncio.Future[Message] = self._loop.create_future()

        def op() -> int:
            id_ = self._core.send_request(method, self._prepare(message), deadline)
            self._calls[id_] = fut
            return id_

        # Without a coroutine of its own when there is room (the usual case).
        id_ = self._send_now(op)
        if isinstance(id_, _Blocked):
            id_ = await self._with_room(op)
        try:
            response = await fut
        except asyncio.CancelledError:
            if self._calls.pop(id_, None) is not None:
                with contextlib.suppress(GatewireError):
                    self._core.cancel(id_)
                self._pump()
            raise
        return _decompressed(response)

    async def emit(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
    ) -> None:
        """Sends a one-way event (waiting for send-queue room).

        Raises:
            RpcError: as :meth:`call` (never a remote error).
        """
        message = to_message(payload, codec)
        await self._with_room(lambda: self._core.send_event(method, self._prepare(message)))

    async def open_stream(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
        timeout: float | None = None,
    ) -> tuple[SendStream, RecvStream]:
        """Opens a stream to ``method`` with an opening message.

        Returns:
            The :class:`SendStream` (``finish`` ends our half) and the
            :class:`RecvStream` (an async iterator granting credit as it is
            consumed; leave ``async with rx`` or call ``rx.cancel()`` to
            abandon the stream early).

        Raises:
            RpcError: as :meth:`call`.
        """
        message = to_message(payload, codec)
        deadline = _deadline_ms(timeout)

        def op() -> int:
            id_ = self._core.open_stream(method, self._prepare(message), deadline, False)
            self._streams[id_] = StreamSlot(local=True, end=False, send_done=False)
            return id_

        id_ = await self._with_room(op)
        return SendStream(self, id_), RecvStream(self, id_, True)

    async def server_stream(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
        timeout: float | None = None,
    ) -> RecvStream:
        """Opens a stream that only the peer sends on: the opening message
        is the request, and our half ends with it.

        Raises:
            RpcError: as :meth:`call`.
        """
        message = to_message(payload, codec)
        deadline = _deadline_ms(timeout)

        def op() -> int:
            id_ = self._core.open_stream(method, self._prepare(message), deadline, True)
            self._streams[id_] = StreamSlot(local=True, end=False, send_done=True)
            return id_

        id_ = await self._with_room(op)
        return RecvStream(self, id_, True)

    async def reauthenticate(self, auth: bytes | str) -> None:
        """Client side: renews this connection's credentials (for instance a
        fresh JWT before the current one expires) without reconnecting, with
        the built-in REAUTHENTICATE method (``docs/PROTOCOL.md`` §10.4). The
        server checks ``auth`` as in the handshake and requires the same
        subject.

        Raises:
            RemoteError: ``UNAUTHENTICATED`` when the server refused it (the
                connection keeps its identity), ``UNKNOWN_METHOD`` when the
                server does not authenticate.
        """
        payload = auth.encode() if isinstance(auth, str) else bytes(auth)
        await self.call(REAUTHENTICATE, payload)

    async def ping(self) -> float:
        """Sends a PING and returns the round-trip time in seconds.

        Raises:
            ConnectionClosedError: the connection ended first.
            LocalError: 16 pings are already outstanding.
        """
        if self._core.is_closed():
            raise self._closed_error()
        try:
            token = self._core.ping()
        except InvalidState as e:
            raise LocalError(ErrorCode.UNAVAILABLE, e.what) from None
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[token] = fut
        self._pump()
        try:
            return await fut
        finally:
            self._pings.pop(token, None)

    async def close(self) -> None:
        """Shuts down gracefully and returns once closed: the peer is told to
        open nothing new (GOAWAY), calls in flight in both directions finish
        (within ``timeouts.drain``), then the connection closes. Calls
        started after this fail with :class:`RefusedCallError`."""
        if not self._core.is_closed():
            self._core.close(ErrorCode.NO_ERROR)
            self._pump()
        await self.wait_closed()

    def abort(self, code: ErrorCode | int = ErrorCode.UNAVAILABLE, reason: str = "aborted") -> None:
        """Closes at once with ``code`` (``NO_ERROR`` is sent as
        ``UNAVAILABLE``); every call in flight fails."""
        if not self._core.is_closed():
            code = ErrorCode(code)
            self._core.close(ErrorCode.UNAVAILABLE if code == ErrorCode.NO_ERROR else code, reason)
            self._pump()

    async def wait_closed(self) -> RpcError | None:
        """Waits until the connection has ended and its transport is closed;
        returns why, or ``None`` for a graceful end."""
        await self._closed.wait()
        if self._writer is not None:
            await asyncio.wait([self._writer])
        return self._close_error

    # ----- internals: commands ---------------------------------------------------

    def _send_now(self, op: Callable[[], _T]) -> _T | _Blocked:
        """Runs ``op`` on the core: its value, or :data:`_BLOCKED` while the
        core has no room (``op`` raised ``Blocked``)."""
        if self._core.is_closed():
            # Nothing was sent: the call is safe to retry elsewhere.
            raise unsent(self._close_error)
        try:
            value = op()
        except Blocked:
            self._stats_credit_stalls += 1
            return _BLOCKED
        except SendError as e:
            raise from_send(e) from None
        self._pump()
        return value

    async def _with_room(self, op: Callable[[], _T]) -> _T:
        """Runs ``op`` on the core, waiting for room while it raises
        ``Blocked``."""
        while isinstance(value := self._send_now(op), _Blocked):
            await wait_any(self._writable)
        return value

    def _prepare(self, message: Message) -> Message:
        """Compresses an outgoing message when both sides negotiated zstd
        and it is worth it."""
        threshold = self._options.compression_threshold
        if (
            threshold is None
            or message.uncompressed_len is not None
            or len(message.body) < threshold
        ):
            return message
        peer = self._core.peer()
        if peer is None or not peer.compression:
            return message
        if self._compressor is None:
            self._compressor = _compress.Compressor(self._options.compression_level)
        return self._compressor.compress(message)

    def _closed_error(self) -> RpcError:
        if self._close_error is not None:
            return _clone(self._close_error)
        return ConnectionClosedError(ErrorCode.UNAVAILABLE, "connection closed")

    def _maybe_drop_stream(self, id_: int) -> None:
        slot = self._streams.get(id_)
        if slot is not None and slot.local and slot.recv_done and slot.send_done:
            del self._streams[id_]

    # ----- internals: driving the core -------------------------------------------

    def _now(self) -> int:
        now = int((self._loop.time() - self._epoch) * 1000)
        self._last_now = max(self._last_now, now)
        return self._last_now

    def _pump(self, now: bool = False) -> None:
        """After any input or command: route events, then have what the core
        has to send written (by :meth:`_flush` while the writer is idle,
        else by the writer), the timer re-armed and reading paused or
        resumed.

        ``now``: nothing else can add to this write in this turn of the loop
        (the input just read has been handled; the last running handler has
        answered), so it need not wait for the next turn."""
        self._dispatch()
        if self._write_idle:
            if now:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                self._flush()
            elif self._flush_handle is None:
                # Once the loop has run what is ready now: the frames queued
                # meanwhile go out in one write.
                self._flush_handle = self._loop.call_soon(self._flush)
            return
        self._write_wake.set()
        self._after_output()

    def _after_output(self) -> None:
        """Re-arms the timer, and pauses or resumes reading as the core
        wants."""
        self._arm_timer()
        self._update_reading()

    def _update_reading(self) -> None:
        """Pauses or resumes reading as the core wants."""
        wants = self._core.wants_read()
        if wants == self._read_paused:
            self._read_paused = not wants
            if wants:
                self._transport.resume_reading()
            elif not self._core.is_closed():
                self._transport.pause_reading()

    def _take_batch(self) -> list[bytes]:
        """Frames from the core, up to ``MAX_BATCH`` bytes."""
        batch = self._core.transmit(MAX_BATCH)
        if batch:
            self._stats_frames_sent += len(batch)
            self._stats_bytes_sent += sum(map(len, batch))
            self._stats_writes += 1
        return batch

    def _flush(self) -> None:
        """Writes the core's frames without the writer task, while it is
        idle (it holds no frames, so order is kept) and the transport takes
        them without waiting. Anything else (the buffer is full, the core
        closed, a failure) is left to the writer."""
        self._flush_handle = None
        transport = self._transport
        while True:
            if not self._write_idle or not transport.can_write_now():
                self._write_wake.set()
                break
            batch = self._take_batch()
            if not batch:
                if self._core.is_closed():
                    self._write_wake.set()
                break
            try:
                transport.write_now(batch)
            except RpcError as e:
                self._write_error = e
                self._write_wake.set()
                break
            except Exception:  # pragma: no cover - a bug; close rather than hang
                _log.exception("gatewire write failed")
                self.abort(ErrorCode.INTERNAL, "internal error")
                break
            # Taking frames may have queued events (Writable...).
            self._dispatch()
        # Taking frames may also have moved the core's deadlines or let it
        # read again.
        self._after_output()

    def _arm_timer(self) -> None:
        at = self._core.poll_timeout()
        if at is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer_at <= at:
                # The earlier timer fires first and re-arms.
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(self._epoch + at / 1000, self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        # The loop may fire a timer up to its clock resolution early.
        self._last_now = max(self._last_now, at)
        self._core.handle_timeout(self._now())
        self._pump()

    def _received(self, chunks: list[bytes]) -> None:
        """What the transport read (from the loop's read callback): a chunk
        of a byte stream or WebSocket messages. What it produces waits for
        :meth:`_settled`."""
        core = self._core
        if core.is_closed():
            return
        self._stats_bytes_received += sum(map(len, chunks))
        try:
            now = self._now()
            if self._framed:
                core.handle_frames(now, chunks)
            else:
                for chunk in chunks:
                    core.handle_bytes(now, chunk)
        except Exception:  # pragma: no cover - a bug; close rather than hang
            _log.exception("gatewire reader failed")
            self.abort(ErrorCode.INTERNAL, "internal error")

    def _settled(self) -> None:
        """Everything one read brought has been given to :meth:`_received`:
        its events are routed, and what they produced goes out now, in one
        write (nothing else can add to it in this turn of the loop). The
        core may have closed meanwhile, with events and frames still to
        give."""
        try:
            self._pump(now=True)
        except Exception:  # pragma: no cover - a bug; close rather than hang
            _log.exception("gatewire reader failed")
            self.abort(ErrorCode.INTERNAL, "internal error")

    def _ended(self, error: RpcError | None) -> None:
        """The end of the transport's input: ``None`` for a clean end."""
        core = self._core
        if core.is_closed():
            return
        try:
            if error is None:
                core.handle_eof(self._now())
            else:
                _log.debug("read failed: %s", error)
                if self._close_error is None:
                    self._close_error = error
                # A failed transport carries no more answers: no half-close,
                # the connection ends here.
                core.handle_eof(self._now())
                core.close(ErrorCode.UNAVAILABLE, "read failed")
            self._pump()
        except Exception:  # pragma: no cover - a bug; close rather than hang
            _log.exception("gatewire reader failed")
            self.abort(ErrorCode.INTERNAL, "internal error")

    async def _write_loop(self) -> None:
        core = self._core
        transport = self._transport
        failed = False
        try:
            while True:
                self._write_wake.clear()
                error, self._write_error = self._write_error, None
                batch = [] if error is not None else self._take_batch()
                self._dispatch()
                self._after_output()
                if not batch and error is None:
                    if core.is_closed():
                        break
                    self._write_idle = True
                    try:
                        await self._write_wake.wait()
                    finally:
                        self._write_idle = False
                    continue
                try:
                    if error is not None:
                        raise error
                    await transport.write(batch)
                except RpcError as e:
                    _log.debug("write failed: %s", e)
                    failed = True
                    if core.is_closed() and core.close_error() is None:
                        # The connection had already ended gracefully and
                        # the peer closed the transport first: nothing lost.
                        break
                    if self._close_error is None:
                        self._close_error = e
                    core.handle_eof(self._now())
                    core.close(ErrorCode.UNAVAILABLE, "write failed")
                    self._pump()
                    break
        except asyncio.CancelledError:
            failed = True
        except Exception:  # pragma: no cover - a bug; close rather than hang
            _log.exception("gatewire writer failed")
            failed = True
            self.abort(ErrorCode.INTERNAL, "internal error")
        finally:
            await self._shutdown_transport(failed)

    async def _shutdown_transport(self, failed: bool) -> None:
        try:
            if failed:
                self._transport.abort()
            else:
                await self._transport.close(self._options.linger)
        except BaseException:
            self._transport.abort()
            raise
        finally:
            if self._abort_handle is not None:
                self._abort_handle.cancel()
            if not self._closed.is_set():
                # The writer was cancelled from outside: end the connection.
                self.abort(ErrorCode.UNAVAILABLE, "runtime stopped")
                self._closed.set()

    def _force_abort(self) -> None:
        """The writer did not finish in time after the close (the peer is not
        reading): drop the socket."""
        if self._writer is not None and not self._writer.done():
            self._transport.abort()

    # ----- internals: events -----------------------------------------------------

    def _dispatch(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while (event := self._core.poll_event()) is not None:
                self._on_event(event)
        finally:
            self._dispatching = False

    def _on_event(self, event: Event) -> None:
        # The most frequent first.
        if isinstance(event, Response):
            fut = self._calls.pop(event.id, None)
            if fut is not None and not fut.done():
                fut.set_result(event.message)
        elif isinstance(event, Request):
            self._spawn_unary(event)
        elif isinstance(event, HelloReceived):
            self._on_hello(event)
        elif isinstance(event, Connected):
            if not self._connected.done():
                self._connected.set_result(None)
        elif isinstance(event, CallFailed):
            self._on_call_failed(event)
        elif isinstance(event, StreamOpened):
            self._spawn_stream(event)
        elif isinstance(event, StreamData):
            slot = self._streams.get(event.id)
            if slot is not None:
                m = event.message
                # An empty raw message with END (`finish`) only ends the half.
                bare_end = (
                    event.end and not m.body and m.codec == Codec.RAW and m.uncompressed_len is None
                )
                if not bare_end:
                    credit = len(m.body) + (4 if m.uncompressed_len is not None else 0)
                    slot.queue.append((m, credit))
                slot.end = slot.end or event.end
                slot.wake()
        elif isinstance(event, EventReceived):
            self._on_event_received(event)
        elif isinstance(event, Cancelled):
            task = self._handlers.get(event.id)
            if task is not None:
                self._cancel_handler(event.id, task)
            slot = self._streams.get(event.id)
            if slot is not None:
                slot.error = _remote_error(event.code, None, None)
                slot.wake()
        elif isinstance(event, Writable):
            if event.id is None:
                self._writable.notify_all()
            else:
                slot = self._streams.get(event.id)
                if slot is not None:
                    slot.writable.notify_all()
        elif isinstance(event, Pong):
            pong = self._pings.pop(event.token, None)
            if pong is not None and not pong.done():
                pong.set_result(event.rtt / 1000)
        elif isinstance(event, GoAway):
            _log.debug("peer is going away: last id %d, %s", event.last_id, event.code)
            # Callers waiting for room learn that no new call may start.
            self._writable.notify_all()
        elif isinstance(event, Closed):
            self._on_closed(event)

    def _on_hello(self, event: HelloReceived) -> None:
        verdict = auth.authenticate(
            self._options.authenticator, event.hello.auth, self._transport.info
        )
        with contextlib.suppress(GatewireError):
            if isinstance(verdict, auth.Identity):
                self._identity = verdict
                self._core.accept()
            else:
                self._core.refuse(verdict.code, verdict.message)

    def _denied(self, id_: int, method: int) -> bool:
        """Answers a call the identity may not make (expired, or the
        authorizer says no); ``True`` when it did."""
        status = auth.check_call(self._identity, self._options.authorizer, method)
        if status is None:
            return False
        with contextlib.suppress(GatewireError):
            self._core.send_error(id_, status.code, ErrorInfo(status.message, status.details))
        return True

    def _on_call_failed(self, event: CallFailed) -> None:
        error: RpcError
        if event.code == ErrorCode.DEADLINE_EXCEEDED:
            error = DeadlineError(event.info.message)
        elif event.side is Side.REMOTE:
            error = _remote_error(event.code, event.info.message, event.info.details)
        elif self._core.is_closed():
            if self._close_error is not None:
                error = _clone(self._close_error)
            else:
                cause = self._core.close_error()
                if cause is not None:
                    error = from_connection(cause)
                else:
                    error = ConnectionClosedError(event.code, event.info.message)
        else:
            # We reset the stream (the peer broke its flow control...).
            error = LocalError(event.code, event.info.message)
        fut = self._calls.pop(event.id, None)
        if fut is not None:
            if not fut.done():
                fut.set_exception(error)
            return
        slot = self._streams.get(event.id)
        if slot is not None:
            slot.error = error
            slot.wake()

    def _on_closed(self, event: Closed) -> None:
        if event.error is not None and self._close_error is None:
            self._close_error = from_connection(event.error)
        if self._close_error is not None:
            _log.debug("connection closed: %s", self._close_error)
        error = self._closed_error()
        if not self._connected.done():
            self._connected.set_exception(error)
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(_clone(error))
        self._calls.clear()
        for slot in self._streams.values():
            if slot.error is None and not slot.end:
                slot.error = _clone(error)
            slot.wake()
        for id_, task in list(self._handlers.items()):
            self._cancel_handler(id_, task)
        for pong in self._pings.values():
            if not pong.done():
                pong.set_exception(_clone(error))
        self._pings.clear()
        for queue in self._event_queues.values():
            queue.put_nowait(None)
        self._event_queues.clear()
        self._writable.notify_all()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._closed.set()
        self._write_wake.set()
        if self._abort_handle is None:
            self._abort_handle = self._loop.call_later(
                self._options.linger + 1.0, self._force_abort
            )

    # ----- internals: handlers ---------------------------------------------------

    def _context(self, id_: int, method: int, deadline: int | None) -> CallContext:
        at = None if deadline is None else self._loop.time() + deadline / 1000
        return _new_context(id_, method, at, self)

    def _spawn_unary(self, event: Request) -> None:
        if event.method == REAUTHENTICATE:
            self._reauthenticate(event.id, event.message)
            return
        if self._denied(event.id, event.method):
            return
        if event.method == LIST_SERVICES:
            self._list_services(event.id)
            return
        handler = self._router.unary_handlers.get(event.method)
        if handler is None:
            info = ErrorInfo(message=f"no handler for method {event.method}")
            with contextlib.suppress(GatewireError):
                self._core.send_error(event.id, ErrorCode.UNKNOWN_METHOD, info)
            return
        id_ = event.id
        ctx = self._context(id_, event.method, event.deadline)
        coro: Coroutine[object, object, None]
        pending: Awaitable[object] | None = None
        if self._router.runs_inline(event.method, handler):
            # A plain function: answered now, without a task, in a copy of
            # the context (as a task would be).
            answer: Message | None = None
            try:
                request = _compress.decompress(event.message)
                reply = contextvars.copy_context().run(handler, ctx, request)
                if isinstance(reply, _REPLIES):
                    answer = to_message(reply, Codec.RAW)
                elif not inspect.isawaitable(reply):
                    raise TypeError(
                        f"a unary handler returns bytes or a gatewire Message,"
                        f" not {type(reply).__name__}"
                    )
            except Exception as e:
                self._finish_unary(id_, _handler_failed(ctx.method, e))
                return
            except asyncio.CancelledError:
                self._finish_unary(id_, None)
                return
            except BaseException:
                self._finish_unary(id_, None)
                raise
            if answer is not None:
                self._finish_unary(id_, answer)
                return
            pending = cast("Awaitable[Payload]", reply)
            coro = self._await_unary(id_, ctx.method, pending)
        else:
            coro = self._run_unary(id_, handler, ctx, event.message)
        task: asyncio.Task[object] = self._loop.create_task(coro, name=f"gatewire-call-{id_}")
        if pending is not None:
            task.add_done_callback(functools.partial(_drop_unawaited, pending))
        # An eager task factory may have run the handler to its end (and
        # answered) inside create_task.
        if not task.done():
            self._handlers[id_] = task

    def _reauthenticate(self, id_: int, message: Message) -> None:
        """Answers the built-in REAUTHENTICATE (``docs/PROTOCOL.md`` §10.4):
        the authenticator checks the new payload as in the handshake, and an
        identity for the same subject replaces the current one. Allowed
        after the current identity expired, and not subject to the
        authorizer: the credentials themselves are checked."""
        verdict: auth.Identity | Status
        if self._options.authenticator is None:
            verdict = Status(ErrorCode.UNKNOWN_METHOD, "this endpoint does not authenticate")
        else:
            try:
                payload = bytes(_compress.decompress(message).body)
            except GatewireError:
                payload = b""
            verdict = auth.authenticate(self._options.authenticator, payload, self._transport.info)
            current = self._identity
            if (
                isinstance(verdict, auth.Identity)
                and current is not None
                and verdict.subject != current.subject
            ):
                verdict = Status(
                    ErrorCode.UNAUTHENTICATED, "re-authentication must name the same subject"
                )
        try:
            if isinstance(verdict, auth.Identity):
                self._identity = verdict
                self._core.send_response(id_, Message(Codec.RAW, b""))
            else:
                info = ErrorInfo(verdict.message, verdict.details)
                self._core.send_error(id_, verdict.code, info)
        except GatewireError as e:
            _log.debug("REAUTHENTICATE answer for call %d not sent: %s", id_, e)

    def _list_services(self, id_: int) -> None:
        """Answers the built-in LIST_SERVICES (``docs/PROTOCOL.md`` §10.4)
        with the services this endpoint offers and uses, whatever handlers
        the router has."""
        listing = ServiceList(offers=self._options.offers, uses=self._options.uses)
        try:
            try:
                self._core.send_response(id_, Message(Codec.FLATBUFFERS, listing.encode()))
            except MessageTooLarge as e:
                info = ErrorInfo(message=f"response of {e.len} bytes exceeds the limit {e.max}")
                self._core.send_error(id_, ErrorCode.TOO_LARGE, info)
        except GatewireError as e:
            _log.debug("LIST_SERVICES answer for call %d not sent: %s", id_, e)

    async def _run_unary(
        self, id_: int, handler: UnaryHandler, ctx: CallContext, message: Message
    ) -> None:
        """Runs a handler, then answers as the task ends (no done-callback:
        that would cost a turn of the loop per call). A task cancelled before
        it started never runs this: :meth:`_cancel_handler` covers it."""
        outcome: Message | Status | None = None
        try:
            # An `async def` handler (``Router.runs_inline``).
            reply = cast("Awaitable[Payload]", handler(ctx, _compress.decompress(message)))
            outcome = to_message(await reply, Codec.RAW)
        except Exception as e:
            outcome = _handler_failed(ctx.method, e)
        finally:
            # Cancelled: `outcome` is None.
            self._finish_unary(id_, outcome)

    async def _await_unary(self, id_: int, method: int, reply: Awaitable[Payload]) -> None:
        """Answers with what a plain-function handler returned to await."""
        outcome: Message | Status | None = None
        try:
            outcome = to_message(await reply, Codec.RAW)
        except Exception as e:
            outcome = _handler_failed(method, e)
        finally:
            self._finish_unary(id_, outcome)

    def _cancel_handler(self, id_: int, task: asyncio.Task[object]) -> None:
        """Cancels a handler task (the caller cancelled, the deadline passed,
        the connection ended)."""
        task.cancel()
        task.add_done_callback(functools.partial(self._handler_ended, id_))

    def _handler_ended(self, id_: int, task: asyncio.Task[object]) -> None:
        """A cancelled handler task is done. A unary one that was cancelled
        before it started has not answered (its coroutine never ran): answer
        CANCELLED and free the slot now. (A stream handler's own callback
        has already run.)"""
        if self._handlers.get(id_) is task:
            self._finish_unary(id_, None)

    def _finish_unary(self, id_: int, outcome: Message | Status | None) -> None:
        """The handler has ended (``None``: cancelled): answer, and free the
        call's slot."""
        self._handlers.pop(id_, None)
        core = self._core
        try:
            if isinstance(outcome, Message):
                try:
                    core.send_response(id_, self._prepare(outcome))
                except MessageTooLarge as e:
                    info = ErrorInfo(message=f"response of {e.len} bytes exceeds the limit {e.max}")
                    core.send_error(id_, ErrorCode.TOO_LARGE, info)
                except InvalidArgument as e:
                    # Compressed by the handler without negotiation.
                    _log.error("handler result for call %d not sendable: %s", id_, e)
                    core.send_error(id_, ErrorCode.INTERNAL, ErrorInfo(message="handler failed"))
            elif isinstance(outcome, Status):
                core.send_error(id_, outcome.code, ErrorInfo(outcome.message, outcome.details))
            else:
                core.send_error(id_, ErrorCode.CANCELLED)
        except GatewireError as e:
            _log.debug("handler result for call %d not sent: %s", id_, e)
        if self._dispatching:
            # Answered while events are routed (a plain-function handler, or
            # an eager task): what routes them writes the answers next.
            if not self._write_idle:
                self._write_wake.set()
            return
        self._pump(now=not self._handlers)

    def _spawn_stream(self, event: StreamOpened) -> None:
        if self._denied(event.id, event.method):
            return
        handler = self._router.stream_handlers.get(event.method)
        if handler is None:
            info = ErrorInfo(message=f"no stream handler for method {event.method}")
            with contextlib.suppress(GatewireError):
                self._core.send_error(event.id, ErrorCode.UNKNOWN_METHOD, info)
            return
        self._streams[event.id] = StreamSlot(local=False, end=event.end, send_done=False)
        ctx = self._context(event.id, event.method, event.deadline)
        rx = RecvStream(self, event.id, False)
        tx = SendStream(self, event.id)
        task: asyncio.Task[object] = self._loop.create_task(
            self._run_stream(handler, ctx, event.message, rx, tx),
            name=f"gatewire-stream-{event.id}",
        )
        self._handlers[event.id] = task
        task.add_done_callback(functools.partial(self._finish_stream, event.id))

    async def _run_stream(
        self,
        handler: StreamHandler,
        ctx: CallContext,
        message: Message,
        rx: RecvStream,
        tx: SendStream,
    ) -> Status | None:
        try:
            opening = _compress.decompress(message)
            await handler(ctx, opening, rx, tx)
            return None
        except Status as s:
            return s
        except RpcError as e:
            return Status.from_error(e)
        except Exception:
            _log.exception("stream handler for method %d failed", ctx.method)
            return Status.internal("handler failed")

    def _finish_stream(self, id_: int, task: asyncio.Task[object]) -> None:
        self._handlers.pop(id_, None)
        outcome = None if task.cancelled() else task.result()
        core = self._core
        try:
            if isinstance(outcome, Status):
                core.send_error(id_, outcome.code, ErrorInfo(outcome.message, outcome.details))
            elif task.cancelled():
                core.send_error(id_, ErrorCode.CANCELLED)
            else:
                try:
                    core.finish(id_)
                except Blocked:
                    # The send queue is full: end the half once there is room.
                    self._spawn_side(self._finish_later(id_))
        except GatewireError as e:
            _log.debug("end of stream %d not sent: %s", id_, e)
        self._streams.pop(id_, None)
        self._pump()

    async def _finish_later(self, id_: int) -> None:
        while not self._core.is_closed():
            await wait_any(self._writable)
            try:
                self._core.finish(id_)
            except Blocked:
                continue
            except GatewireError:
                pass
            self._pump()
            return

    def _spawn_side(self, coro: Coroutine[object, object, None]) -> None:
        task = self._loop.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _on_event_received(self, event: EventReceived) -> None:
        handler = self._router.event_handlers.get(event.method)
        if handler is None:
            self._stats_events_dropped += 1
            _log.debug("event %d without a handler dropped", event.method)
            return
        queue = self._event_queues.get(event.method)
        if queue is None:
            queue = asyncio.Queue()
            self._event_queues[event.method] = queue
            self._spawn_side(self._event_loop(event.method, handler, queue))
        if queue.qsize() >= self._options.event_queue:
            self._stats_events_dropped += 1
            return
        queue.put_nowait(event.message)

    async def _event_loop(
        self, method: int, handler: EventHandler, queue: asyncio.Queue[Message | None]
    ) -> None:
        while (message := await queue.get()) is not None:
            try:
                event = _compress.decompress(message)
            except Status as s:
                _log.warning("dropping an event of method %d: %s", method, s)
                continue
            try:
                await handler(CallContext(0, method, None, self), event)
            except Exception:
                _log.exception("event handler for method %d failed", method)


_new_context: Callable[[int, int, float | None, Connection], CallContext] = trusted_constructor(
    CallContext
)
"""``CallContext(id, method, deadline, connection)`` for fields the
connection already has in range."""

_REPLIES = (Message, bytes, bytearray, memoryview)
"""What a plain-function handler answers with directly."""


def _drop_unawaited(reply: Awaitable[object], task: asyncio.Task[object]) -> None:
    """The task that was to await what a plain-function handler returned is
    done: if it was cancelled (perhaps before it started), that awaitable is
    stopped too."""
    if task.cancelled():
        if inspect.iscoroutine(reply):
            reply.close()
        elif isinstance(reply, asyncio.Future):
            reply.cancel()


def _handler_failed(method: int, e: Exception) -> Status:
    """What a handler's exception answers."""
    if isinstance(e, Status):
        return e
    if isinstance(e, RpcError):
        return Status.from_error(e)
    _log.error("handler for method %d failed", method, exc_info=e)
    return Status.internal("handler failed")


def _decompressed(message: Message) -> Message:
    try:
        return _compress.decompress(message)
    except Status as s:
        raise LocalError(s.code, s.message) from None


async def start(transport: Transport, role: Role, options: Options, router: Router) -> Connection:
    """Drives a connection over an established transport and returns it
    once the handshake has completed.

    Raises:
        RpcError: the handshake failed.
    """
    conn = Connection(transport, role, options, router)
    await conn._handshake()
    return conn
