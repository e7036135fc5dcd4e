"""One benchmark process, started by ``run.py``:

    worker.py serve KIND            # an echo server (peers.SERVERS); prints "ready URL..."
    worker.py client KIND URL       # an echo client (peers.CLIENTS)
    worker.py sender KIND URL N     # a chart sender of N points (chart.SENDERS)

A server runs until its stdin closes. A client or sender prints "ready"
once connected, then runs one measurement per JSON line read from stdin
and prints its result as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peers import CLIENTS, SERVERS, Client

if TYPE_CHECKING:
    from chart import Points, Sender

PAYLOAD = bytes(range(32))
"""The request of every small call: 32 bytes."""


def _p(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


async def latency(client: Client, seconds: float) -> dict[str, Any]:
    """One call at a time for ``seconds``: p50 and p99 in µs."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    while (start := clock()) < end:
        await client.call(PAYLOAD)
        samples.append(clock() - start)
    samples.sort()
    return {"p50_us": _p(samples, 0.50), "p99_us": _p(samples, 0.99), "calls": len(samples)}


async def throughput(client: Client, seconds: float, in_flight: int) -> dict[str, Any]:
    """``in_flight`` callers in a loop for ``seconds``: calls per second
    (counted until the last call answered)."""
    done = 0
    end = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await client.call(PAYLOAD)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return {"calls_per_s": done / (time.perf_counter() - start), "calls": done}


WARM_UP_TRANSFERS = 12
WARM_UP_SECONDS = 2.0
"""A sender warms up with this many transfers, or fewer once they took this
long (one transfer of socket.io + JSON takes seconds)."""


async def bulk(sender: Sender, points: Points) -> dict[str, Any]:
    """The points sent until the peer acknowledges them: ms."""
    start = time.perf_counter()
    ack = await sender.send_points(points)
    ms = (time.perf_counter() - start) * 1000
    _check_ack(ack, points)
    return {"ms": ms}


async def bulk_with_pings(sender: Sender, points: Points) -> dict[str, Any]:
    """The same transfer with pings, one at a time, on the same connection
    for as long as it runs: each ping's round trip in ms."""
    start = time.perf_counter()
    transfer = asyncio.create_task(sender.send_points(points))
    await asyncio.sleep(0)  # the transfer starts before the first ping
    rtts: list[float] = []
    while not transfer.done():
        sent = time.perf_counter()
        await sender.ping()
        rtts.append((time.perf_counter() - sent) * 1000)
    ack = await transfer
    ms = (time.perf_counter() - start) * 1000
    _check_ack(ack, points)
    return {
        "ms": ms,
        "ping_p50_ms": statistics.median(rtts),
        "ping_max_ms": max(rtts),
        "pings": len(rtts),
    }


def _check_ack(ack: tuple[float, float, float], points: Points) -> None:
    expected = (float(len(points)), float(points[-1, 0]), float(points[-1, 1]))
    if ack != expected:
        raise RuntimeError(f"the peer acknowledged {ack}, expected {expected}")


async def _warm_up(client: Client) -> None:
    for _ in range(200):
        if len(await client.call(PAYLOAD)) != len(PAYLOAD):
            raise RuntimeError("the echo peer answered with a different length")


async def _commands() -> AsyncIterator[dict[str, Any]]:
    """JSON commands from stdin, until it closes."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        yield json.loads(line)


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(kind: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        urls, close = await SERVERS[kind](Path(tmp))
        sys.stdout.write("ready " + " ".join(urls) + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await close()


async def client(kind: str, url: str) -> None:
    peer = await CLIENTS[kind](url)
    await _warm_up(peer)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async for cmd in _commands():
        await _warm_up(peer)
        if cmd["shape"] == "latency":
            _reply(await latency(peer, cmd["seconds"]))
        else:
            _reply(await throughput(peer, cmd["seconds"], cmd["in_flight"]))
    await peer.close()


async def sender(kind: str, url: str, n: int) -> None:
    from chart import SENDERS, make_points  # noqa: PLC0415

    points = make_points(n)
    peer = await SENDERS[kind](url)
    # Past the peers' warm-up (V8 optimizes the Node peer's code on compiler
    # threads, which share the CPU when pinned): the first transfers of a
    # fresh pair run several times slower.
    start = time.perf_counter()
    for _ in range(WARM_UP_TRANSFERS):
        await bulk(peer, points)
        if time.perf_counter() - start > WARM_UP_SECONDS:
            break
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async for cmd in _commands():
        await peer.ping()
        if cmd["shape"] == "bulk":
            _reply(await bulk(peer, points))
        else:
            _reply(await bulk_with_pings(peer, points))
    await peer.close()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.ERROR)
    match argv:
        case ["serve", kind]:
            asyncio.run(serve(kind))
        case ["client", kind, url]:
            asyncio.run(client(kind, url))
        case ["sender", kind, url, n]:
            asyncio.run(sender(kind, url, int(n)))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
