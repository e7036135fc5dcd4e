"""Streams: messages in order, with credit backpressure in both
directions. Mirrors ``gatewire::stream``.

A :class:`RecvStream` returns credit to the peer as the application takes
each message, so a slow consumer slows its producer instead of growing
memory: at most the stream's credit (``initial_stream_credit``, 1 MiB by
default) is ever buffered for it. A :class:`SendStream` waits while the
peer's credit is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections import deque
from typing import TYPE_CHECKING

from ..code import ErrorCode
from ..exceptions import Blocked, GatewireError, InvalidState, SendError, UnknownCall
from ..frame import Codec
from ..protocol import Message, new_message
from . import _compress
from .errors import ConnectionClosedError, LocalError, RpcError, Status, from_send

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["RecvStream", "SendStream"]


class Notify:
    """Wakes every waiter registered when :meth:`notify_all` is called (a
    waiter registered afterwards waits for the next call)."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def add(self, fut: asyncio.Future[None]) -> None:
        self._waiters.add(fut)

    def discard(self, fut: asyncio.Future[None]) -> None:
        self._waiters.discard(fut)

    def notify_all(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)


async def wait_any(*notifies: Notify) -> None:
    """Waits until one of ``notifies`` fires."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for n in notifies:
        n.add(fut)
    try:
        await fut
    finally:
        for n in notifies:
            n.discard(fut)


class StreamSlot:
    """The runtime's side of one stream: messages received and not yet
    taken (with the credit each returns), its end and its error."""

    __slots__ = ("end", "error", "local", "queue", "readable", "recv_done", "send_done", "writable")

    def __init__(self, *, local: bool, end: bool, send_done: bool) -> None:
        self.queue: deque[tuple[Message, int]] = deque()
        self.end = end
        """The peer ended its half."""
        self.error: RpcError | None = None
        self.readable = Notify()
        self.writable = Notify()
        self.local = local
        """We opened the stream."""
        self.recv_done = False
        """The application has seen the end (or the error)."""
        self.send_done = send_done
        """Our half is finished (or failed)."""

    def queued_bytes(self) -> int:
        """Bytes received and not yet taken."""
        return sum(len(m.body) for m, _ in self.queue)

    def wake(self) -> None:
        self.readable.notify_all()
        self.writable.notify_all()


def to_message(payload: Message | bytes | bytearray | memoryview, codec: int) -> Message:
    """``payload`` as a message: a :class:`~gatewire.Message` as it is,
    bytes with ``codec``."""
    if type(payload) is bytes and type(codec) is Codec:
        # The usual case, with nothing to check or convert.
        return new_message(codec, payload, None)
    if isinstance(payload, Message):
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        return Message(Codec(codec), bytes(payload))
    raise TypeError(f"a payload is bytes or a gatewire Message, not {type(payload).__name__}")


def decompressed(message: Message) -> Message:
    """``message`` decompressed, as the application sees it.

    Raises:
        LocalError: the body does not decompress to its declared size.
    """
    try:
        return _compress.decompress(message)
    except Status as s:
        raise LocalError(s.code, s.message) from None


class SendStream:
    """The sending half of a stream."""

    def __init__(self, conn: Connection, id: int) -> None:  # noqa: A002
        self._conn = conn
        self._id = id
        self._finished = False

    @property
    def id(self) -> int:
        """The stream id."""
        return self._id

    @property
    def finished(self) -> bool:
        """Whether our half has ended."""
        return self._finished

    def __repr__(self) -> str:
        return f"SendStream(id={self._id}, finished={self._finished})"

    async def send(
        self, payload: Message | bytes | bytearray | memoryview, *, codec: int = Codec.RAW
    ) -> None:
        """Sends a message, waiting while the peer's credit is spent.

        Cancel safety: if the task is cancelled while waiting, nothing was
        sent.

        Raises:
            RpcError: the stream or the connection ended (the stream's error,
                ``STREAM_CLOSED`` once our half is finished...).
        """
        await self._send(to_message(payload, codec), end=False)

    async def send_last(
        self, payload: Message | bytes | bytearray | memoryview, *, codec: int = Codec.RAW
    ) -> None:
        """Sends a last message and ends our half of the stream.

        Raises:
            RpcError: as :meth:`send`.
        """
        await self._send(to_message(payload, codec), end=True)

    async def finish(self) -> None:
        """Ends our half of the stream (an empty final message); does
        nothing if it has ended already.

        Raises:
            RpcError: as :meth:`send`.
        """
        if not self._finished:
            await self._send(Message(Codec.RAW, b""), end=True)

    async def _send(self, message: Message, *, end: bool) -> None:
        if self._finished:
            raise LocalError(ErrorCode.STREAM_CLOSED, "the stream's sending half is finished")
        conn = self._conn
        core = conn._core
        while True:
            slot = conn._streams.get(self._id)
            if slot is not None and slot.error is not None:
                raise slot.error
            if core.is_closed():
                raise conn._closed_error()
            try:
                core.send_stream_data(self._id, conn._prepare(message), end)
            except Blocked:
                conn._stats_credit_stalls += 1
                if slot is None:
                    await wait_any(conn._writable)
                else:
                    await wait_any(conn._writable, slot.writable)
                continue
            except UnknownCall:
                raise ConnectionClosedError(
                    ErrorCode.STREAM_CLOSED, "the stream has ended"
                ) from None
            except InvalidState as e:
                raise LocalError(ErrorCode.STREAM_CLOSED, e.what) from None
            except SendError as e:
                raise from_send(e) from None
            break
        if end:
            self._finished = True
            if slot is not None:
                slot.send_done = True
                conn._maybe_drop_stream(self._id)
        conn._pump()


class RecvStream:
    """The receiving half of a stream: an async iterator of messages that
    ends when the peer ends its half, granting credit to the peer as each
    message is taken.

    Use it as an async context manager (or call :meth:`cancel`) to cancel a
    stream we opened that is abandoned before the peer ended it.
    """

    def __init__(self, conn: Connection, id: int, opened_here: bool) -> None:  # noqa: A002
        self._conn = conn
        self._id = id
        self._opened_here = opened_here
        self._done = False

    @property
    def id(self) -> int:
        """The stream id."""
        return self._id

    def __repr__(self) -> str:
        return f"RecvStream(id={self._id}, done={self._done})"

    def __aiter__(self) -> RecvStream:
        return self

    async def __anext__(self) -> Message:
        message = await self.recv()
        if message is None:
            raise StopAsyncIteration
        return message

    async def __aenter__(self) -> RecvStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.cancel()

    async def recv(self) -> Message | None:
        """The next message, ``None`` once the peer ended its half.

        Raises:
            RpcError: the stream failed (the peer's ERROR, its deadline, the
                connection's end...), or a message does not decompress.
        """
        conn = self._conn
        while True:
            if self._done:
                return None
            slot = conn._streams.get(self._id)
            if slot is None:
                self._done = True
                return None
            if slot.queue:
                message, credit = slot.queue.popleft()
                with contextlib.suppress(GatewireError):
                    conn._core.grant_credit(self._id, credit)
                conn._pump()
                return decompressed(message)
            if slot.end:
                self._finish(slot)
                return None
            if slot.error is not None:
                self._finish(slot)
                raise slot.error
            await wait_any(slot.readable)

    def _finish(self, slot: StreamSlot) -> None:
        self._done = True
        slot.recv_done = True
        self._conn._maybe_drop_stream(self._id)

    def cancel(self) -> None:
        """Stops receiving. For a stream we opened that the peer has not
        ended, the peer is sent CANCEL and nothing more arrives."""
        conn = self._conn
        self._done = True
        if not self._opened_here:
            return
        slot = conn._streams.pop(self._id, None)
        ended = slot is None or slot.end or slot.error is not None
        if not ended:
            with contextlib.suppress(GatewireError):
                conn._core.cancel(self._id)
            if slot is not None:
                slot.error = LocalError(ErrorCode.CANCELLED, "the stream was cancelled")
                slot.wake()
            conn._pump()
