"""Handlers for the calls, streams and events a peer sends us. Mirrors
``gatewire::Router``.

Both ends of a connection have a :class:`Router`: a gateway calls the
desktop exactly as the desktop calls the gateway. Methods register a
handler directly (chaining) or as a decorator::

    router = Router()

    @router.unary(1)
    async def echo(ctx: CallContext, request: Message) -> Message:
        return request

    router.event(7, on_event).stream(2, on_stream)

A unary handler returns the response (a :class:`~gatewire.Message`, or
bytes sent as ``Codec.RAW``) or raises :class:`~gatewire.aio.Status`. A
stream handler gets the opening message, a :class:`RecvStream` of the
peer's messages and a :class:`SendStream`; returning ends our half of the
stream. An event handler returns nothing; events of one method are handled
one at a time, in arrival order.

Handlers run as asyncio tasks. When the caller cancels, or the call's
deadline passes, the task is cancelled (:class:`asyncio.CancelledError` is
raised inside the handler); the call's concurrency slot is released only
once the task has finished, so cancelled work never lets more handlers run
than ``max_in_flight``.

A unary handler may instead be a plain function (``def``), for answers that
need no waiting: it is called as the request is read, in a copy of the
context but without a task of its own (``asyncio.current_task()`` is not
its own), and its answer goes out with that turn's other writes. It must
not block: the connection reads nothing else meanwhile. It has answered
before a cancel or a deadline could stop it. If it returns an awaitable,
that is awaited in a task as above.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias, TypeVar, overload

from ..protocol import Message

if TYPE_CHECKING:
    from ._transport import TransportInfo
    from .auth import Identity
    from .connection import Connection
    from .stream import RecvStream, SendStream

__all__ = ["CallContext", "EventHandler", "Payload", "Router", "StreamHandler", "UnaryHandler"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows about the call it serves.

    Attributes:
        id: the call id (unique per direction on this connection; ``0`` for
            an event).
        method: the method id.
        deadline: when the caller stops waiting, in the event loop's clock
            (``loop.time()``), if it said.
        connection: the connection the call arrived on: handlers may call
            the peer back.
    """

    id: int
    method: int
    deadline: float | None
    connection: Connection

    def time_remaining(self) -> float | None:
        """Seconds until the deadline (negative once passed), or ``None``."""
        if self.deadline is None:
            return None
        return self.deadline - asyncio.get_running_loop().time()

    @property
    def peer(self) -> str | None:
        """The peer's address, as the transport knows it."""
        return self.connection.remote_address

    @property
    def transport_info(self) -> TransportInfo:
        """What the transport knows about the peer: address, Unix
        credentials, TLS session and the peer's verified certificate."""
        return self.connection.transport_info

    @property
    def identity(self) -> Identity | None:
        """Server side: who the caller authenticated as in the handshake
        (anonymous without an authenticator; see :mod:`gatewire.aio.auth`).
        Client side: ``None``."""
        return self.connection.identity


Payload: TypeAlias = "Message | bytes | bytearray | memoryview"
UnaryHandler: TypeAlias = Callable[[CallContext, Message], "Awaitable[Payload] | Payload"]
StreamHandler: TypeAlias = Callable[
    [CallContext, Message, "RecvStream", "SendStream"], Awaitable[None]
]
EventHandler: TypeAlias = Callable[[CallContext, Message], Awaitable[None]]

U = TypeVar("U", bound=UnaryHandler)
S = TypeVar("S", bound=StreamHandler)
E = TypeVar("E", bound=EventHandler)


class Router:
    """Handlers by method id. A method without a handler is answered
    ``UNKNOWN_METHOD`` (calls and streams) or dropped (events)."""

    def __init__(self) -> None:
        self.unary_handlers: dict[int, UnaryHandler] = {}
        self.stream_handlers: dict[int, StreamHandler] = {}
        self.event_handlers: dict[int, EventHandler] = {}
        self._inline: dict[int, tuple[UnaryHandler, bool]] = {}

    def __repr__(self) -> str:
        return (
            f"Router(unary={sorted(self.unary_handlers)}, streams={sorted(self.stream_handlers)},"
            f" events={sorted(self.event_handlers)})"
        )

    @overload
    def unary(self, method: int) -> Callable[[U], U]: ...
    @overload
    def unary(self, method: int, handler: UnaryHandler) -> Router: ...
    def unary(self, method: int, handler: UnaryHandler | None = None) -> Router | Callable[[U], U]:
        """Serves unary calls to ``method``: ``handler(ctx, request)``
        returns the response."""
        _check_method(method)
        if handler is not None:
            self.unary_handlers[method] = handler
            return self

        def register(h: U) -> U:
            self.unary_handlers[method] = h
            return h

        return register

    def runs_inline(self, method: int, handler: UnaryHandler) -> bool:
        """Whether ``handler``, the unary handler of ``method``, is a plain
        function (called at once) rather than an ``async def`` one (run as a
        task)."""
        known = self._inline.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        try:
            # An instance of a class with ``async def __call__`` is one too.
            call = type(handler).__call__
        except AttributeError:
            call = None
        inline = not (inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call))
        self._inline[method] = (handler, inline)
        return inline

    @overload
    def stream(self, method: int) -> Callable[[S], S]: ...
    @overload
    def stream(self, method: int, handler: StreamHandler) -> Router: ...
    def stream(
        self, method: int, handler: StreamHandler | None = None
    ) -> Router | Callable[[S], S]:
        """Serves streams opened on ``method``: ``handler(ctx, opening, rx,
        tx)``; returning ends our half (raising ends the stream with
        ERROR)."""
        _check_method(method)
        if handler is not None:
            self.stream_handlers[method] = handler
            return self

        def register(h: S) -> S:
            self.stream_handlers[method] = h
            return h

        return register

    @overload
    def event(self, method: int) -> Callable[[E], E]: ...
    @overload
    def event(self, method: int, handler: EventHandler) -> Router: ...
    def event(self, method: int, handler: EventHandler | None = None) -> Router | Callable[[E], E]:
        """Handles one-way events on ``method``, one at a time per
        connection, in arrival order."""
        _check_method(method)
        if handler is not None:
            self.event_handlers[method] = handler
            return self

        def register(h: E) -> E:
            self.event_handlers[method] = h
            return h

        return register


def _check_method(method: int) -> None:
    if not isinstance(method, int) or not 0 <= method <= 0xFFFF_FFFF:
        raise ValueError(f"method id {method!r} is outside 0..=0xffffffff")
