"""A blocking facade over :mod:`gatewire.aio`, for scripts and threads
that do not run an event loop::

    from gatewire.sync import connect

    with connect("unix:///run/gateway/gw.sock") as conn:
        reply = conn.call(1, b"status", timeout=5)
        for message in conn.server_stream(3, (10).to_bytes(4, "little")):
            print(message.body)

Each :class:`Connection` runs its own asyncio event loop on a background
(daemon) thread; every method hands a coroutine to that loop and waits for
its result, so a connection may be used from any number of threads at
once. Errors are the same as in :mod:`gatewire.aio`
(:class:`~gatewire.aio.RpcError` and its subclasses).

Interrupting a blocked call (``KeyboardInterrupt``, or a ``wait`` timeout
given to the method) cancels the call at the peer, as cancelling the task
does in :mod:`gatewire.aio`.

Handlers (``router``) are the :mod:`gatewire.aio` ones: coroutines that run
on the connection's loop thread. A handler must not call this facade's
blocking methods on its own connection (that would wait for itself); it
uses :attr:`~gatewire.aio.CallContext.connection` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import types
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from .. import aio
from ..aio import TransportInfo
from ..code import ErrorCode
from ..frame import Codec
from ..protocol import Message

__all__ = ["Connection", "ServerStream", "connect"]

_T = TypeVar("_T")


class _LoopThread:
    """An event loop running on a daemon thread until stopped."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="gatewire-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop's own thread."""
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, _T], wait: float | None = None) -> _T:
        """Runs ``coro`` on the loop and returns its result, waiting at most
        ``wait`` seconds (then the coroutine is cancelled and
        :class:`TimeoutError` raised).

        Raises:
            RuntimeError: called from the loop's own thread (it would wait
                for itself), or the loop has stopped.
        """
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(
                "a gatewire.sync method was called from its own event loop thread"
                " (a handler): use the aio connection there"
            )
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the connection's event loop has stopped")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(wait)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"no result within {wait} s") from None
        except BaseException:
            # KeyboardInterrupt and friends: cancel the work on the loop.
            fut.cancel()
            raise

    def stop(self) -> None:
        """Stops the loop (cancelling what still runs) and joins the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join()


class ServerStream(Iterator[Message]):
    """The messages of a server stream, as a blocking iterator. Use it as a
    context manager (or call :meth:`close`) to cancel a stream abandoned
    before its end."""

    def __init__(self, runner: _LoopThread, rx: aio.RecvStream) -> None:
        self._runner = runner
        self._rx = rx
        self._done = False

    @property
    def id(self) -> int:
        """The stream id."""
        return self._rx.id

    def __iter__(self) -> ServerStream:
        return self

    def __next__(self) -> Message:
        if self._done:
            raise StopIteration
        message = self._runner.run(self._rx.recv())
        if message is None:
            self._done = True
            raise StopIteration
        return message

    def close(self) -> None:
        """Cancels the stream if the peer has not ended it."""
        if not self._done:
            self._done = True

            async def cancel() -> None:
                self._rx.cancel()

            self._runner.run(cancel())

    def __enter__(self) -> ServerStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


class Connection:
    """A blocking gatewire connection. Thread-safe. Close it with
    :meth:`close` (graceful; also stops its loop thread) or use it as a
    context manager."""

    def __init__(self, runner: _LoopThread, conn: aio.Connection) -> None:
        self._runner = runner
        self._conn = conn
        self._lock = threading.Lock()
        self._stopped = False

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._stopped:
            coro.close()
            raise aio.RefusedCallError(ErrorCode.UNAVAILABLE, "not sent: the connection is closed")
        return self._runner.run(coro)

    @property
    def aio(self) -> aio.Connection:
        """The underlying asyncio connection (use it only on its loop:
        :attr:`loop`)."""
        return self._conn

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the connection runs on."""
        return self._runner.loop

    @property
    def is_closed(self) -> bool:
        """Whether the connection has ended."""
        return self._conn.is_closed

    @property
    def transport_info(self) -> TransportInfo:
        """What the transport knows about the server: its address and, over
        TLS, the session and the server's verified certificate."""
        return self._conn.transport_info

    def __repr__(self) -> str:
        return f"gatewire.sync.Connection({self._conn!r})"

    def call(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
        timeout: float | None = None,
    ) -> Message:
        """Calls ``method`` and waits for the response; ``timeout`` (seconds)
        travels to the peer as the deadline. As
        :meth:`gatewire.aio.Connection.call`.

        Raises:
            RpcError: the call failed (``is_timeout``, ``is_remote``...).
        """
        return self._run(self._conn.call(method, payload, codec=codec, timeout=timeout))

    def emit(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
    ) -> None:
        """Sends a one-way event.

        Raises:
            RpcError: the event could not be sent.
        """
        self._run(self._conn.emit(method, payload, codec=codec))

    def server_stream(
        self,
        method: int,
        payload: Message | bytes | bytearray | memoryview = b"",
        *,
        codec: int = Codec.RAW,
        timeout: float | None = None,
    ) -> ServerStream:
        """Opens a server stream; iterate over the result for its messages
        (each taken message grants credit back to the peer).

        Raises:
            RpcError: the stream could not be opened; iterating raises the
                stream's error.
        """
        rx = self._run(self._conn.server_stream(method, payload, codec=codec, timeout=timeout))
        return ServerStream(self._runner, rx)

    def reauthenticate(self, auth: bytes | str) -> None:
        """Renews this connection's credentials without reconnecting. As
        :meth:`gatewire.aio.Connection.reauthenticate`.

        Raises:
            RemoteError: the server refused the new credentials.
        """
        self._run(self._conn.reauthenticate(auth))

    def ping(self) -> float:
        """The round-trip time in seconds.

        Raises:
            RpcError: the connection ended first.
        """
        return self._run(self._conn.ping())

    def close(self) -> None:
        """Closes gracefully (calls in flight in other threads finish), then
        stops the connection's loop thread. Does nothing the second time.
        Afterwards every method raises :class:`~gatewire.aio.RefusedCallError`.

        Raises:
            RuntimeError: called from a handler on the connection's own loop.
        """
        if self._runner.in_loop_thread():
            raise RuntimeError("gatewire.sync close() called from its own event loop thread")
        with self._lock:
            if self._stopped:
                return
            try:
                self._runner.run(self._conn.close())
            finally:
                self._stopped = True
                self._runner.stop()

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


def connect(
    url: str | aio.Endpoint, *, router: aio.Router | None = None, **options: Any
) -> Connection:
    """Connects to ``url`` and completes the handshake; arguments as
    :func:`gatewire.aio.connect`.

    Raises:
        RpcError: connecting failed (:class:`~gatewire.aio.ConfigError`,
            :class:`~gatewire.aio.TransportError`,
            :class:`~gatewire.aio.ConnectionClosedError`).
    """
    runner = _LoopThread()
    try:
        conn = runner.run(aio.connect(url, router=router, **options))
    except BaseException:
        runner.stop()
        raise
    return Connection(runner, conn)
