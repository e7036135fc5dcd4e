"""The Python interop service over TLS, for the TypeScript tests::

    python python_tls_server.py CERT KEY [--token TOKEN] URL...

Serves ``gatewire.interop.service()`` on every URL (``tls://``, ``wss://``)
with the certificate chain and key given, requiring TOKEN when given;
prints ``listening <url>`` per endpoint, then serves until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys

import gatewire.aio as gw
from gatewire import interop


async def main(argv: list[str]) -> None:
    cert, key, *rest = argv
    token = None
    if rest[:1] == ["--token"]:
        token, rest = rest[1], rest[2:]
    options: dict[str, object] = {"tls_server": gw.TlsServerConfig(cert, key)}
    if token is not None:
        options["authenticator"] = gw.TokenAuthenticator().token("ts-client", token)
    async with await gw.serve(rest, interop.service(), **options) as server:
        for url in server.urls:
            print(f"listening {url}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
