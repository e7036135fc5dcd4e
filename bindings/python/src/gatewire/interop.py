"""The interop service and script, in Python: the counterpart of the Rust
reference peer (``crates/gatewire-interop``, binary ``interop-peer``), with
the same command line::

    # prints "listening <endpoint>" per URL, then serves until stdin closes
    python -m gatewire.interop serve URL...
    # runs the interop script against a server; exits 0 and prints "ok"
    python -m gatewire.interop client URL

The interop service (every language implements the same one):

====== ============= ===================================================================
method kind          behaviour
====== ============= ===================================================================
1      unary         echoes the request (body and codec)
2      stream        echoes every message, then ends when the caller ends
3      server stream request: u32 LE ``n``; replies ``n`` messages, each the u32 LE index
4      unary         calls method 100 on the caller with the request, returns its reply
5      unary         fails with code 0x8001, message "requested error"
6      unary         request: u32 LE milliseconds; sleeps that long, then echoes
7      event         sent back to the caller as event 8 with the same body
100    unary         served by the client: echoes with "client:" prepended
====== ============= ===================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import sys
from collections.abc import Sequence

from .aio import CallContext, Connection, RecvStream, RpcError, SendStream, Status
from .aio import Router as _Router
from .aio import connect as _connect
from .aio import serve as _serve
from .code import ErrorCode
from .frame import Codec
from .protocol import Message

__all__ = ["InteropFailure", "callbacks", "main", "script", "service"]


class InteropFailure(AssertionError):
    """An interop check failed."""


def _u32(message: Message) -> int:
    if len(message.body) < 4:
        raise Status.invalid_argument("u32 expected")
    return int(struct.unpack_from("<I", message.body)[0])


def _le(i: int) -> bytes:
    return struct.pack("<I", i)


def service() -> _Router:
    """The interop service (methods 1 to 7)."""
    router = _Router()

    @router.unary(1)
    async def echo(_ctx: CallContext, m: Message) -> Message:
        return m

    @router.stream(2)
    async def echo_stream(
        _ctx: CallContext, _first: Message, rx: RecvStream, tx: SendStream
    ) -> None:
        async for m in rx:
            await tx.send(m)

    @router.stream(3)
    async def count(_ctx: CallContext, first: Message, _rx: RecvStream, tx: SendStream) -> None:
        for i in range(_u32(first)):
            await tx.send(_le(i))

    @router.unary(4)
    async def callback(ctx: CallContext, m: Message) -> Message:
        return await ctx.connection.call(100, m)

    @router.unary(5)
    async def fail(_ctx: CallContext, _m: Message) -> Message:
        raise Status(ErrorCode(0x8001), "requested error")

    @router.unary(6)
    async def sleep(_ctx: CallContext, m: Message) -> Message:
        await asyncio.sleep(_u32(m) / 1000)
        return m

    @router.event(7)
    async def bounce(ctx: CallContext, m: Message) -> None:
        with contextlib.suppress(RpcError):
            await ctx.connection.emit(8, m)

    return router


def callbacks(events: asyncio.Queue[Message]) -> _Router:
    """The client's side of the service: the callback (100) and event 8,
    put on ``events``."""
    router = _Router()

    @router.unary(100)
    async def client_echo(_ctx: CallContext, m: Message) -> Message:
        return Message(m.codec, b"client:" + m.body)

    @router.event(8)
    async def on_event(_ctx: CallContext, m: Message) -> None:
        await events.put(m)

    return router


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise InteropFailure(f"interop check failed: {what}")


async def script(conn: Connection, events: asyncio.Queue[Message]) -> None:
    """The interop script (the same checks as the Rust ``script``), run
    against a server implementing the service; ``events`` receives event 8
    (see :func:`callbacks`).

    Raises:
        InteropFailure: a check failed.
        RpcError: a call failed unexpectedly.
    """
    r = await conn.call(1, b"hello")
    _check(r.body == b"hello", "echo")
    r = await conn.call(1, b'{"a":1}', codec=Codec.JSON)
    _check(r.body == b'{"a":1}' and r.codec == Codec.JSON, "echo keeps the codec")
    big = b"\x42" * 300_000
    r = await conn.call(1, big)
    _check(r.body == big, "large echo")
    tx, rx = await conn.open_stream(2, b"")
    for i in range(100):
        await tx.send(_le(i))
    await tx.finish()
    n = 0
    async for m in rx:
        _check(m.body == _le(n), "stream echo order")
        n += 1
    _check(n == 100, "stream echo count")
    rx = await conn.server_stream(3, _le(1000))
    n = 0
    async for m in rx:
        _check(m.body == _le(n), "server stream order")
        n += 1
    _check(n == 1000, "server stream count")
    r = await conn.call(4, b"ping")
    _check(r.body == b"client:ping", "callback")
    try:
        await conn.call(5, b"")
    except RpcError as e:
        _check(
            e.is_remote and e.code == 0x8001 and e.message == "requested error",
            "error code and message",
        )
    else:
        _check(False, "method 5 fails")
    try:
        await conn.call(6, _le(10_000), timeout=0.1)
    except RpcError as e:
        _check(e.is_timeout, "deadline")
    else:
        _check(False, "deadline")
    try:
        await conn.call(99, b"")
    except RpcError as e:
        _check(e.code == ErrorCode.UNKNOWN_METHOD, "unknown method")
    else:
        _check(False, "unknown method")
    await conn.emit(7, b"event")
    try:
        back = await asyncio.wait_for(events.get(), 10)
    except asyncio.TimeoutError:
        raise InteropFailure("event 8 never came") from None
    _check(back.body == b"event", "event round trip")


async def _client(url: str) -> None:
    events: asyncio.Queue[Message] = asyncio.Queue()
    conn = await _connect(url, router=callbacks(events))
    try:
        await asyncio.wait_for(script(conn, events), 60)
    finally:
        await conn.close()
    print("ok", flush=True)


async def _serve_until_stdin_closes(urls: Sequence[str]) -> None:
    server = await _serve(list(urls), service())
    for url in server.urls:
        print(f"listening {url}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the test closes our stdin.
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    await server.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) >= 2 and args[0] == "serve":
            asyncio.run(_serve_until_stdin_closes(args[1:]))
        elif len(args) == 2 and args[0] == "client":
            asyncio.run(_client(args[1]))
        else:
            print("usage: python -m gatewire.interop serve URL... | client URL", file=sys.stderr)
            return 2
    except (RpcError, InteropFailure) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
