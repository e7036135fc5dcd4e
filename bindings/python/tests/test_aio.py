"""The asyncio layer against itself, on every transport: calls both ways,
concurrency, cancellation in both directions, deadlines, streams with a
slow consumer, graceful close during calls and connection loss.

No sleeps synchronize anything: tests wait on events (every wait bounded
by the run timeout); the only real time spent is in the deadline tests,
which need a deadline to pass.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
import struct
import tracemalloc

import pytest

import gatewire.aio as gw
from gatewire import Codec, ErrorCode, Message

from .aio_support import TRANSPORTS, pair, private_dir, run, until, url_for

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)


def _le(i: int) -> bytes:
    return struct.pack("<I", i)


def echo_router() -> gw.Router:
    router = gw.Router()

    @router.unary(1)
    async def echo(_ctx: gw.CallContext, m: Message) -> Message:
        return m

    @router.unary(4)
    async def callback(ctx: gw.CallContext, m: Message) -> Message:
        return await ctx.connection.call(100, m)

    return router


def client_router() -> gw.Router:
    router = gw.Router()

    @router.unary(100)
    async def client_echo(_ctx: gw.CallContext, m: Message) -> bytes:
        return b"client:" + m.body

    return router


class Gate:
    """Handlers that wait on ``release``, counting starts and cancels."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.cancelled = 0
        self.all_started = asyncio.Event()
        self.any_cancelled = asyncio.Event()
        self.expected = 1

    async def handler(self, _ctx: gw.CallContext, m: Message) -> Message:
        self.started += 1
        if self.started >= self.expected:
            self.all_started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            self.any_cancelled.set()
            raise
        return m


# ----- calls -----------------------------------------------------------------


def test_calls_both_ways(transport: str) -> None:
    async def main() -> None:
        async with pair(transport, echo_router(), client_router()) as (client, server_side, _):
            r = await client.call(1, b"hello")
            assert r.body == b"hello" and r.codec == Codec.RAW
            r = await client.call(1, b"[1]", codec=Codec.JSON)
            assert r.codec == Codec.JSON and r.body == b"[1]"
            r = await client.call(1, Message(Codec.POSTCARD, b"\x01"))
            assert r.codec == Codec.POSTCARD
            # The server's handler calls the client back.
            r = await client.call(4, b"ping")
            assert r.body == b"client:ping"
            # The server calls the client on its own.
            r = await server_side.call(100, b"direct")
            assert r.body == b"client:direct"
            assert client.role is gw.Role.CLIENT and server_side.role is gw.Role.SERVER
            assert client.peer is not None and client.peer.agent is not None
            assert client.peer.agent.startswith("gatewire-python/")

    run(main())


def test_endpoints_serve_and_connect_as_urls_do(transport: str) -> None:
    async def main() -> None:
        with private_dir() as d:
            one = gw.Endpoint.parse(url_for(transport, d))
            # One Endpoint, or a list that mixes Endpoints and URLs.
            mixed: list[str | gw.Endpoint] = [one, "tcp://127.0.0.1:0"]
            for urls in (one, mixed):
                async with await gw.serve(urls, echo_router()) as server:
                    bound = server.endpoints[0]
                    assert bound.scheme == transport
                    assert len(server.endpoints) == (1 if urls is one else 2)
                    targets: list[str | gw.Endpoint] = [bound, str(bound), *server.endpoints[1:]]
                    for target in targets:
                        conn = await gw.connect(target)
                        try:
                            assert (await conn.call(1, b"x")).body == b"x"
                        finally:
                            await conn.close()

    run(main())


def test_payload_sizes_both_ways(transport: str) -> None:
    # Frame sizes around every WebSocket length encoding (7-bit, 16-bit,
    # 64-bit; the 16-byte frame header included), whole and fragmented,
    # from the client (masked over WebSocket) and from the server. Random
    # bodies, so that compression (on by default) leaves their size.
    sizes = [0, 1, 109, 110, 111, 125, 65518, 65519, 65520, 70000, 300_000]

    async def main() -> None:
        async with pair(transport, echo_router(), client_router()) as (client, server_side, _):
            for n in sizes:
                body = random.Random(n).randbytes(n)
                r = await client.call(1, body)
                assert r.body == body, n
                r = await server_side.call(100, body)
                assert r.body == b"client:" + body, n

    run(main())


def test_thousand_concurrent_calls(transport: str) -> None:
    async def main() -> None:
        # 1,000 calls against the default max_in_flight of 100: the excess
        # waits for call slots (Blocked, then Writable) instead of failing.
        async with pair(transport, echo_router()) as (client, server_side, _):
            results = await asyncio.gather(*(client.call(1, _le(i)) for i in range(1000)))
            assert [r.body for r in results] == [_le(i) for i in range(1000)]
            assert client.stats().calls_out == 0
            assert server_side.stats().calls_in == 0
            assert client.stats().credit_stalls > 0

    run(main())


def test_errors_are_typed(transport: str) -> None:
    router = gw.Router()

    @router.unary(5)
    async def fail(_ctx: gw.CallContext, _m: Message) -> Message:
        raise gw.Status(0x8001, "requested error", b"\x01\x02")

    @router.unary(6)
    async def crash(_ctx: gw.CallContext, _m: Message) -> Message:
        raise RuntimeError("boom")

    @router.unary(7)
    async def refuse(_ctx: gw.CallContext, _m: Message) -> Message:
        raise gw.Status(ErrorCode.REFUSED, "busy")

    async def main() -> None:
        async with pair(transport, router) as (client, _, _):
            with pytest.raises(gw.RemoteError) as e:
                await client.call(5)
            assert e.value.code == 0x8001 and e.value.message == "requested error"
            assert e.value.details == b"\x01\x02"
            assert e.value.is_remote and not e.value.is_closed and not e.value.is_retryable
            with pytest.raises(gw.RemoteError) as e:
                await client.call(6)
            assert e.value.code == ErrorCode.INTERNAL and e.value.message == "handler failed"
            with pytest.raises(gw.RemoteError) as e:
                await client.call(99)
            assert e.value.code == ErrorCode.UNKNOWN_METHOD
            with pytest.raises(gw.RefusedCallError) as r:
                await client.call(7)
            assert r.value.is_retryable and r.value.code == ErrorCode.REFUSED
            rx = await client.server_stream(99)
            with pytest.raises(gw.RemoteError) as e:
                await rx.recv()
            assert e.value.code == ErrorCode.UNKNOWN_METHOD
            # Still usable afterwards.
            assert (await client.ping()) >= 0

    run(main())


class AsyncCallable:
    """A handler object whose ``__call__`` is ``async def``: a task."""

    async def __call__(self, _ctx: gw.CallContext, _m: Message) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        return task.get_name().encode()


def test_plain_function_handlers(transport: str) -> None:
    router = gw.Router()
    release = asyncio.Event()

    @router.unary(1)
    def echo(_ctx: gw.CallContext, m: Message) -> Message:
        return m

    @router.unary(2)
    def refuse(_ctx: gw.CallContext, _m: Message) -> bytes:
        raise gw.Status(0x8001, "requested error", b"\x01")

    @router.unary(3)
    def crash(_ctx: gw.CallContext, _m: Message) -> bytes:
        raise RuntimeError("boom")

    @router.unary(4)
    def wrong(_ctx: gw.CallContext, _m: Message) -> bytes:
        return 42  # type: ignore[return-value]

    async def later(m: Message) -> bytes:
        await release.wait()
        return b"later:" + m.body

    # A plain function returning an awaitable: awaited in a task.
    router.unary(5, lambda _ctx, m: later(m))
    router.unary(6, AsyncCallable())

    @router.unary(7)
    def big(_ctx: gw.CallContext, m: Message) -> bytes:
        # Incompressible: compression (on by default) leaves its size.
        return random.Random(m.body).randbytes(300_000)

    async def main() -> None:
        async with pair(transport, router) as (client, server_side, _):
            assert (await client.call(1, b"hello")).body == b"hello"
            # A compressible request and response (compression is on by
            # default): the handler sees the request decompressed.
            body = bytes(100_000)
            assert (await client.call(1, body)).body == body
            with pytest.raises(gw.RemoteError) as e:
                await client.call(2)
            assert e.value.code == 0x8001 and e.value.details == b"\x01"
            for method in (3, 4):
                with pytest.raises(gw.RemoteError) as e:
                    await client.call(method)
                assert e.value.code == ErrorCode.INTERNAL
                assert e.value.message == "handler failed"
            waiting = asyncio.ensure_future(client.call(5, b"x"))
            await until(lambda: server_side.stats().calls_in == 1, "the awaitable in a task")
            # Plain handlers answer while a task's answer is pending.
            assert (await client.call(1, b"y")).body == b"y"
            release.set()
            assert (await waiting).body == b"later:x"
            assert (await client.call(6)).body.startswith(b"gatewire-call-")
            # Many at once, among large answers that keep the writer busy:
            # every answer is written.
            calls = [client.call(7 if i % 50 == 0 else 1, _le(i)) for i in range(1000)]
            results = await asyncio.gather(*calls)
            for i, r in enumerate(results):
                big_body = random.Random(_le(i)).randbytes(300_000)
                assert r.body == (big_body if i % 50 == 0 else _le(i)), i
            assert server_side.stats().calls_in == 0

    run(main())


def test_plain_function_handler_edges(transport: str) -> None:
    router = gw.Router()
    seen: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("seen", default=None)
    held: list[asyncio.Future[bytes]] = []

    @router.unary(1)
    def remember(_ctx: gw.CallContext, m: Message) -> bytes:
        # Each call runs in a copy of the context: nothing carries over.
        before = seen.get()
        seen.set(m.body)
        return b"none" if before is None else before

    @router.unary(2)
    def cancelled(_ctx: gw.CallContext, _m: Message) -> bytes:
        raise asyncio.CancelledError

    @router.unary(3)
    def hold(_ctx: gw.CallContext, _m: Message) -> asyncio.Future[bytes]:
        held.append(asyncio.get_running_loop().create_future())
        return held[-1]

    async def main() -> None:
        async with pair(transport, router) as (client, server_side, _):
            assert (await client.call(1, b"a")).body == b"none"
            assert (await client.call(1, b"b")).body == b"none"
            # A CancelledError out of a plain function answers CANCELLED;
            # the connection goes on.
            with pytest.raises(gw.RemoteError) as e:
                await client.call(2)
            assert e.value.code == ErrorCode.CANCELLED
            assert server_side.stats().calls_in == 0
            # A future it returned is cancelled with the call.
            waiting = asyncio.ensure_future(client.call(3))
            await until(lambda: held and server_side.stats().calls_in == 1, "the held call")
            waiting.cancel()
            await until(held[0].cancelled, "the future cancelled")
            await until(lambda: server_side.stats().calls_in == 0, "the slot freed")
            assert (await client.call(1, b"c")).body == b"none"

    run(main())


def test_an_answer_that_cannot_be_sent_fails_the_call(transport: str) -> None:
    router = gw.Router()

    @router.unary(1)
    def precompressed(_ctx: gw.CallContext, _m: Message) -> Message:
        # Compressed by the handler, but the peers negotiated no compression.
        return Message.compressed(Codec.RAW, b"\x28\xb5\x2f\xfd", 100)

    async def main() -> None:
        async with pair(transport, router, server_options={"compression": False}) as (
            client,
            server_side,
            _,
        ):
            with pytest.raises(gw.RemoteError) as e:
                await client.call(1)
            assert e.value.code == ErrorCode.INTERNAL
            assert server_side.stats().calls_in == 0

    run(main())


def test_which_unary_handlers_run_inline(transport: str) -> None:
    del transport  # one router serves every transport

    def plain(_ctx: gw.CallContext, m: Message) -> Message:
        return m

    async def coroutine(_ctx: gw.CallContext, m: Message) -> Message:
        return m

    class Holder:
        async def method(self, _ctx: gw.CallContext, m: Message) -> Message:
            return m

        def sync_method(self, _ctx: gw.CallContext, m: Message) -> Message:
            return m

    router = gw.Router()
    assert router.runs_inline(1, plain)
    assert router.runs_inline(1, lambda _c, m: m)
    assert router.runs_inline(1, Holder().sync_method)
    assert not router.runs_inline(1, coroutine)
    assert not router.runs_inline(1, functools.partial(coroutine))
    assert not router.runs_inline(1, Holder().method)
    assert not router.runs_inline(1, AsyncCallable())
    # The answer follows the handler given, not the first one seen.
    assert router.runs_inline(2, plain) and not router.runs_inline(2, coroutine)


def test_message_limits(transport: str) -> None:
    router = gw.Router()

    @router.unary(1)
    async def grow(_ctx: gw.CallContext, _m: Message) -> bytes:
        return bytes(64 * 1024)

    async def main() -> None:
        async with pair(
            transport,
            router,
            server_options={"max_message": 16 * 1024, "compression": False},
            client_options={"max_message": 32 * 1024, "compression": False},
        ) as (client, _, _):
            # Larger than the server accepts: refused here, nothing sent.
            with pytest.raises(gw.LocalError) as e:
                await client.call(1, bytes(20 * 1024))
            assert e.value.code == ErrorCode.TOO_LARGE
            # A response larger than the client accepts: the handler's answer
            # becomes TOO_LARGE.
            with pytest.raises(gw.RemoteError) as r:
                await client.call(1, b"x")
            assert r.value.code == ErrorCode.TOO_LARGE

    run(main())


def test_events_both_ways(transport: str) -> None:
    async def main() -> None:
        got_server: asyncio.Queue[Message] = asyncio.Queue()
        got_client: asyncio.Queue[Message] = asyncio.Queue()
        server_router = gw.Router()

        @server_router.event(7)
        async def bounce(ctx: gw.CallContext, m: Message) -> None:
            await got_server.put(m)
            await ctx.connection.emit(8, m)

        cr = gw.Router().event(8, lambda _ctx, m: got_client.put(m))
        async with pair(transport, server_router, cr) as (client, server_side, _):
            for i in range(10):
                await client.emit(7, _le(i))
            for i in range(10):
                assert (await got_server.get()).body == _le(i)
                assert (await got_client.get()).body == _le(i)
            await server_side.emit(8, b"direct")
            assert (await got_client.get()).body == b"direct"
            # Without a handler an event is dropped and counted.
            await client.emit(55, b"nobody")
            await client.emit(7, b"after")
            assert (await got_server.get()).body == b"after"
            assert server_side.stats().events_dropped == 1

    run(main())


def test_ping(transport: str) -> None:
    async def main() -> None:
        async with pair(transport) as (client, server_side, _):
            assert await client.ping() >= 0
            assert await server_side.ping() >= 0
            # A flood of pings spends the peer's ping-strike budget: the
            # connection ends with a typed EXCESSIVE_LOAD.
            results = await asyncio.gather(
                *(client.ping() for _ in range(16)), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, gw.RpcError)]
            assert errors and all(e.is_closed for e in errors)
            assert errors[0].code == ErrorCode.EXCESSIVE_LOAD

    run(main())


# ----- cancellation and deadlines ------------------------------------------


def test_cancel_client_to_server(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        unwinding = asyncio.Event()
        finish_unwind = asyncio.Event()

        async def slow_unwind(ctx: gw.CallContext, m: Message) -> Message:
            try:
                return await gate.handler(ctx, m)
            finally:
                # A handler that takes time to clean up keeps its slot.
                unwinding.set()
                await finish_unwind.wait()

        router = gw.Router().unary(1, slow_unwind)
        async with pair(transport, router) as (client, server_side, _):
            task = asyncio.create_task(client.call(1, b"x"))
            await gate.all_started.wait()
            assert server_side.stats().calls_in == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await gate.any_cancelled.wait()
            await unwinding.wait()
            # Cancelled at the protocol level, but the handler still runs:
            # its concurrency slot is held.
            assert server_side.stats().calls_in == 1
            assert client.stats().calls_out == 0
            finish_unwind.set()
            await until(lambda: server_side.stats().calls_in == 0, "slot released")
            # The connection carries on.
            gate.release.set()
            assert (await client.call(1, b"y")).body == b"y"

    run(main())


def test_cancel_server_to_client(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        cr = gw.Router().unary(100, gate.handler)
        async with pair(transport, None, cr) as (client, server_side, _):
            task = asyncio.create_task(server_side.call(100, b"x"))
            await gate.all_started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await gate.any_cancelled.wait()
            await until(lambda: client.stats().calls_in == 0, "client slot released")
            assert gate.cancelled == 1

    run(main())


def test_deadline(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        remaining: list[float | None] = []

        async def observe(ctx: gw.CallContext, m: Message) -> Message:
            remaining.append(ctx.time_remaining())
            return await gate.handler(ctx, m)

        router = gw.Router().unary(6, observe)
        async with pair(transport, router) as (client, server_side, _):
            with pytest.raises(gw.DeadlineError) as e:
                await client.call(6, b"x", timeout=0.1)
            assert e.value.is_timeout and e.value.code == ErrorCode.DEADLINE_EXCEEDED
            # The deadline travelled: the handler saw it and was cancelled.
            assert remaining[0] is not None and 0 < remaining[0] <= 0.1
            await gate.any_cancelled.wait()
            await until(lambda: server_side.stats().calls_in == 0, "slot released")
            # A deadline that is met changes nothing.
            gate.release.set()
            assert (await client.call(6, b"y", timeout=10)).body == b"y"

    run(main())


# ----- streams ---------------------------------------------------------------


def test_bidirectional_stream(transport: str) -> None:
    router = gw.Router()

    @router.stream(2)
    async def echo(
        _ctx: gw.CallContext, first: Message, rx: gw.RecvStream, tx: gw.SendStream
    ) -> None:
        await tx.send(first)
        async for m in rx:
            await tx.send(m)

    async def main() -> None:
        async with pair(transport, router) as (client, _, _):
            tx, rx = await client.open_stream(2, b"open")
            assert (await rx.recv()) == Message(Codec.RAW, b"open")
            for i in range(100):
                await tx.send(_le(i), codec=Codec.JSON)
            await tx.send_last(b"last")
            got = [m async for m in rx]
            assert [m.body for m in got] == [_le(i) for i in range(100)] + [b"last"]
            assert all(m.codec == Codec.JSON for m in got[:100])
            with pytest.raises(gw.LocalError):
                await tx.send(b"too late")
            assert client._streams == {}

    run(main())


def test_slow_consumer_is_bounded(transport: str) -> None:
    credit = 64 * 1024
    size = 16 * 1024
    total = 8 << 20
    produced = 0
    consumed = 0
    worst = 0

    router = gw.Router()

    @router.stream(3)
    async def produce(
        _ctx: gw.CallContext, _first: Message, _rx: gw.RecvStream, tx: gw.SendStream
    ) -> None:
        nonlocal produced
        chunk = bytes(size)
        for _ in range(total // size):
            await tx.send(chunk)
            produced += size

    async def main() -> None:
        nonlocal consumed, worst
        async with pair(
            transport,
            router,
            server_options={"compression": False},
            client_options={"initial_stream_credit": credit, "compression": False},
        ) as (client, _, _):
            tracemalloc.start()
            try:
                rx = await client.server_stream(3)
                async for m in rx:
                    consumed += len(m.body)
                    slot = client._streams.get(rx.id)
                    if slot is not None:
                        assert slot.queued_bytes() <= credit
                    # The producer is never more than the credit (plus the
                    # message it was allowed to start) ahead.
                    worst = max(worst, produced - consumed)
                    assert produced - consumed <= credit + size
                    # A slow consumer: let everything else run first.
                    for _ in range(20):
                        await asyncio.sleep(0)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert consumed == total
            # 8 MiB went through; memory stayed near the credit (about
            # 0.4 MiB peak here, allocations of both ends included).
            assert peak < 2 << 20, peak

    run(main(), timeout=120)
    assert worst > 0


def _forever_router(size: int, cancelled: asyncio.Event) -> gw.Router:
    """Method 3 streams ``size``-byte messages until cancelled."""
    router = echo_router()

    @router.stream(3)
    async def forever(
        _ctx: gw.CallContext, _first: Message, _rx: gw.RecvStream, tx: gw.SendStream
    ) -> None:
        try:
            i = 0
            while True:
                await tx.send(_le(i) + bytes(size - 4))
                i += 1
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return router


def test_stream_cancelled_by_consumer(transport: str) -> None:
    async def main() -> None:
        cancelled = asyncio.Event()
        # 1 KiB messages, uncompressed: the credit in flight when the
        # consumer cancels is up to a thousand frames, dropped without charge
        # because the consumer ended the stream (see test_aio_hostile.py for
        # tiny messages; compression makes messages tiny on the wire too).
        async with pair(
            transport, _forever_router(1024, cancelled), server_options={"compression": False}
        ) as (client, server_side, _):
            async with await client.server_stream(3) as rx:
                for i in range(3):
                    m = await rx.recv()
                    assert m is not None and m.body[:4] == _le(i)
            await cancelled.wait()
            await until(lambda: server_side.stats().calls_in == 0, "stream slot released")
            assert client._streams == {}
            assert (await client.call(1, b"still open")).body == b"still open"

    run(main())


def test_stream_handler_error(transport: str) -> None:
    router = gw.Router()

    @router.stream(2)
    async def fail_after_two(
        _ctx: gw.CallContext, _first: Message, _rx: gw.RecvStream, tx: gw.SendStream
    ) -> None:
        await tx.send(b"1")
        await tx.send(b"2")
        raise gw.Status(0x8002, "stream failed")

    async def main() -> None:
        async with pair(transport, router) as (client, _, _):
            rx = await client.server_stream(2)
            got = [await rx.recv(), await rx.recv()]
            assert [m.body for m in got if m is not None] == [b"1", b"2"]
            with pytest.raises(gw.RemoteError) as e:
                await rx.recv()
            assert e.value.code == 0x8002 and e.value.message == "stream failed"
            assert await rx.recv() is None

    run(main())


# ----- compression -----------------------------------------------------------


def test_compression(transport: str) -> None:
    async def main() -> None:
        body = b"gatewire " * 40_000
        async with pair(transport, echo_router()) as (client, _, _):
            assert client.peer is not None and client.peer.compression
            before = client.stats().bytes_sent
            r = await client.call(1, body)
            assert r.body == body and r.uncompressed_len is None
            assert client.stats().bytes_sent - before < len(body) // 10
        # Off on one side: nothing is compressed.
        async with pair(transport, echo_router(), client_options={"compression": False}) as (
            client,
            _,
            _,
        ):
            assert client.peer is not None and not client.peer.compression
            before = client.stats().bytes_sent
            assert (await client.call(1, body)).body == body
            assert client.stats().bytes_sent - before >= len(body)

    run(main())


# ----- closing -----------------------------------------------------------------


def test_a_graceful_close_waits_for_no_timeout(transport: str) -> None:
    # Each step of a graceful close follows the peer's answer at once (the
    # PONG to the first GOAWAY's PING, the second GOAWAY, the end): with
    # every timeout on the way far beyond the run's bound, both ends close.
    never = {"timeouts": gw.Timeouts(goaway_grace=3_600_000, drain=3_600_000)}

    async def main() -> None:
        async with pair(transport, echo_router(), server_options=never, client_options=never) as (
            client,
            server_side,
            _,
        ):
            assert (await client.call(1, b"x")).body == b"x"
            await client.close()
            await server_side.wait_closed()

    run(main(), timeout=5)


def test_graceful_close_by_client_during_calls(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        gate.expected = 100
        router = gw.Router().unary(1, gate.handler)
        async with pair(transport, router) as (client, server_side, _):
            # 150 calls: 100 reach handlers (max_in_flight), 50 wait for a
            # call slot.
            calls = [asyncio.create_task(client.call(1, _le(i))) for i in range(150)]
            await gate.all_started.wait()
            closing = asyncio.create_task(client.close())
            await asyncio.sleep(0)
            with pytest.raises(gw.RefusedCallError) as e:
                await client.call(1, b"new")
            assert e.value.is_retryable
            gate.release.set()
            results = await asyncio.gather(*calls, return_exceptions=True)
            await closing
            done = [r for r in results if isinstance(r, Message)]
            refused = [r for r in results if isinstance(r, gw.RpcError) and r.is_retryable]
            # Every call completed or failed retryable.
            assert len(done) + len(refused) == 150, results
            assert len(done) >= 100
            assert [r.body for r in done] == [_le(i) for i in range(len(done))]
            assert client.is_closed and client.close_error is None
            assert await server_side.wait_closed() is None

    run(main())


def test_graceful_close_by_server_during_calls(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        gate.expected = 100
        router = gw.Router().unary(1, gate.handler)
        async with pair(transport, router) as (client, server_side, server):
            calls = [asyncio.create_task(client.call(1, _le(i))) for i in range(150)]
            await gate.all_started.wait()
            closing = asyncio.create_task(server.close())
            # The client learns of the GOAWAY: new calls are refused.
            await until(lambda: client._core._goaway_received is not None, "GOAWAY")
            with pytest.raises(gw.RefusedCallError):
                await client.call(1, b"new")
            gate.release.set()
            results = await asyncio.gather(*calls, return_exceptions=True)
            await closing
            done = [r for r in results if isinstance(r, Message)]
            refused = [r for r in results if isinstance(r, gw.RpcError) and r.is_retryable]
            assert len(done) + len(refused) == 150, results
            assert len(done) >= 100
            assert await client.wait_closed() is None
            assert server_side.is_closed

    run(main())


def test_connection_loss_fails_everything_at_once(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        gate.expected = 10
        router = gw.Router().unary(1, gate.handler)

        @router.stream(2)
        async def silent(
            _ctx: gw.CallContext, _first: Message, rx: gw.RecvStream, _tx: gw.SendStream
        ) -> None:
            async for _ in rx:
                pass

        async with pair(transport, router) as (client, server_side, _):
            calls = [asyncio.create_task(client.call(1, _le(i))) for i in range(10)]
            tx, rx = await client.open_stream(2)
            receiving = asyncio.create_task(rx.recv())
            await gate.all_started.wait()
            # The transport dies under the server: no GOAWAY, no close.
            server_side._transport.abort()
            results = await asyncio.gather(*calls, receiving, return_exceptions=True)
            assert all(isinstance(r, gw.RpcError) and r.is_closed for r in results), results
            error = await client.wait_closed()
            assert error is not None and error.is_closed
            # Everything after fails at once too, as not sent (retryable).
            with pytest.raises(gw.RefusedCallError):
                await client.call(1, b"late")
            with pytest.raises(gw.RpcError) as e:
                await tx.send(b"late")
            assert e.value.is_closed
            with pytest.raises(gw.RpcError) as e:
                await client.ping()
            assert e.value.is_closed
            # The server's handlers were cancelled.
            await until(lambda: gate.cancelled == 10, "handlers cancelled")

    run(main())


def test_abort_fails_calls_with_the_code(transport: str) -> None:
    async def main() -> None:
        gate = Gate()
        router = gw.Router().unary(1, gate.handler)
        async with pair(transport, router) as (client, server_side, _):
            call = asyncio.create_task(client.call(1))
            await gate.all_started.wait()
            server_side.abort(ErrorCode.EXCESSIVE_LOAD, "go away")
            with pytest.raises(gw.ConnectionClosedError) as e:
                await call
            assert e.value.code == ErrorCode.EXCESSIVE_LOAD and e.value.message == "go away"
            assert e.value.is_closed

    run(main())
