"""Helpers for the runtime tests: a bounded ``asyncio.run``, endpoint URLs
per transport, and a server + client pair. No sleeps: tests wait on
events, and every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import gatewire.aio as gw

T = TypeVar("T")

TRANSPORTS = ("tcp", "unix", "ws")
"""Every transport the Python package serves and connects."""

WAIT = 30.0
"""Bound on any single test's asyncio run, in seconds."""


def run(coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
    """Runs ``coro`` in a fresh event loop, failing after ``timeout``."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.contextmanager
def private_dir() -> Iterator[str]:
    """A fresh mode-0700 directory under the temp dir (short enough for
    ``sun_path``), removed afterwards."""
    d = tempfile.mkdtemp(prefix="gw-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def url_for(transport: str, directory: str) -> str:
    """A bindable URL of ``transport`` (port 0, or a socket in
    ``directory``)."""
    if transport == "tcp":
        return "tcp://127.0.0.1:0"
    if transport == "unix":
        return f"unix://{directory}/s.sock"
    return "ws://127.0.0.1:0/gw"


@contextlib.asynccontextmanager
async def pair(
    transport: str,
    server_router: gw.Router | None = None,
    client_router: gw.Router | None = None,
    *,
    server_options: dict[str, Any] | None = None,
    client_options: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[gw.Connection, gw.Connection, gw.Server]]:
    """A server on ``transport`` and a client connected to it:
    ``(client, server side of the connection, server)``. Both are closed on
    exit."""
    with private_dir() as d:
        server = await gw.serve([url_for(transport, d)], server_router, **(server_options or {}))
        try:
            client = await gw.connect(
                server.urls[0], router=client_router, **(client_options or {})
            )
            try:
                # The server registers its side once its handshake is done,
                # which may be just after the client's.
                while not server.connections():
                    await asyncio.sleep(0)
                yield client, server.connections()[0], server
            finally:
                await client.close()
        finally:
            await server.close()


async def until(predicate: Any, what: str = "condition") -> None:
    """Yields to the loop until ``predicate()`` holds (bounded by the
    caller's run timeout)."""
    for _ in range(1_000_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what} never held")
