"""The package as ``pip install ./bindings/python`` (no extras) installs it
into a fresh virtual environment: ``cargo xtask test`` runs this script
with that environment's interpreter, from outside the source tree.

It checks that gatewire is imported from the environment, with its typing
marker; that a server and a client (asyncio and blocking) talk over
``tcp://`` and ``unix://``, which need nothing else, without offering
compression; and that what needs an extra says which one.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import tempfile
from pathlib import Path

import gatewire
import gatewire.aio as gw
from gatewire import Message, sync


def _installed() -> None:
    package = Path(gatewire.__file__).resolve().parent
    prefix = Path(sys.prefix).resolve()
    if prefix not in package.parents:
        raise SystemExit(f"gatewire was imported from {package}, not from {prefix}")
    if not (package / "py.typed").is_file():
        raise SystemExit(f"{package} has no py.typed")


def _router() -> gw.Router:
    router = gw.Router()

    @router.unary(1)
    def echo(_ctx: gw.CallContext, request: Message) -> Message:
        return request

    @router.unary(2)
    async def later(_ctx: gw.CallContext, request: Message) -> bytes:
        await asyncio.sleep(0)
        return bytes(request.body[::-1])

    return router


async def _calls(urls: list[str]) -> None:
    for url in urls:
        conn = await gw.connect(url)
        assert conn.peer is not None and not conn.peer.compression
        assert (await conn.call(1, b"abc")).body == b"abc"
        assert (await conn.call(2, b"abc")).body == b"cba"
        await conn.close()


async def _needs_an_extra(what: str, extra: str) -> None:
    try:
        if what == "serve":
            await gw.serve("ws://127.0.0.1:0/gw")
        else:
            await gw.connect("ws://127.0.0.1:9/gw")
    except gw.ConfigError as e:
        if f"gatewire[{extra}]" not in str(e):
            raise SystemExit(f"ws:// without websockets: {e}") from None
    else:
        raise SystemExit(f"ws:// {what} without websockets did not fail")


def main() -> None:
    _installed()
    if gw.ZSTD_AVAILABLE:
        raise SystemExit("zstandard is installed, though no extra asked for it")
    with tempfile.TemporaryDirectory(prefix="gw-") as directory:
        os.chmod(directory, 0o700)

        async def run() -> None:
            urls = ["tcp://127.0.0.1:0", f"unix://{directory}/gw.sock"]
            async with await gw.serve(urls, _router()) as server:
                await _calls(server.urls)
                # The blocking facade runs its own loop on a thread.
                await asyncio.to_thread(_blocking, server.urls)
            await _needs_an_extra("serve", "ws")
            await _needs_an_extra("connect", "ws")

        asyncio.run(run())
    try:
        importlib.import_module("gatewire.codegen")
    except ImportError as e:
        if "gatewire[codegen]" not in str(e):
            raise SystemExit(f"gatewire.codegen without flatbuffers: {e}") from None
    else:
        raise SystemExit("gatewire.codegen imported without flatbuffers installed")
    print(f"gatewire {gatewire.__version__} installed and working")


def _blocking(urls: list[str]) -> None:
    for url in urls:
        with sync.connect(url) as conn:
            assert conn.call(1, b"xyz").body == b"xyz"


if __name__ == "__main__":
    main()
