"""TLS and tokens with the Rust reference peer (``interop-peer``, found and
built as in :mod:`tests.test_interop`), both directions:

- the Python interop script against ``interop-peer serve --cert --key`` on
  ``tls://`` and ``wss://``, then typed refusals (wrong CA, wrong name, a
  missing client certificate);
- ``interop-peer client --ca`` against a Python TLS server;
- tokens and client certificates accepted and refused both ways, with the
  refusal code checked on the refused side.

Method 9 of the Rust peer answers the caller's identity (``method:subject``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import gatewire.aio as gw
from gatewire import ErrorCode, Message, interop

from .aio_support import run
from .rust_peers import STARTUP
from .test_interop import interop_peer  # noqa: F401 - the fixture
from .tls_support import CLIENT_NAME, Pki, make_pki

TOKEN = "interop-token-5f1b0c9e7d2a4b38"


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="gw-pki-") as d:
        yield make_pki(Path(d))


@contextlib.asynccontextmanager
async def rust_server(peer: Path, *args: str) -> AsyncIterator[list[str]]:
    """``interop-peer serve ARGS...``; yields the URLs it listens on, and
    checks it exits cleanly when its stdin closes."""
    urls = [a for a in args if "://" in a]
    proc = await asyncio.create_subprocess_exec(
        str(peer),
        "serve",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), STARTUP)).decode() for _ in urls]
        assert all(line.startswith("listening ") for line in lines), lines
        yield [line.split(" ", 1)[1].strip() for line in lines]
    finally:
        proc.stdin.close()
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert code == 0, f"interop-peer serve exited with {code}"


async def rust_client(peer: Path, *args: str) -> tuple[int, str, str]:
    """``interop-peer client ARGS...``: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(peer),
        "client",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 80)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _ca(
    pki: Pki,
    server_name: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> gw.TlsClientConfig:
    return gw.TlsClientConfig(
        ca_file=pki.ca, server_name=server_name, cert_file=cert_file, key_file=key_file
    )


def test_python_script_against_rust_tls_server(interop_peer: Path, pki: Pki) -> None:  # noqa: F811
    async def main() -> None:
        async with rust_server(
            interop_peer,
            "--cert",
            pki.server_cert,
            "--key",
            pki.server_key,
            "tls://127.0.0.1:0",
            "wss://127.0.0.1:0/gw",
        ) as urls:
            assert [u.split("://")[0] for u in urls] == ["tls", "wss"]
            for url, alpn in zip(urls, ("gatewire/1", "http/1.1"), strict=True):
                events: asyncio.Queue[Message] = asyncio.Queue()
                conn = await gw.connect(url, router=interop.callbacks(events), tls_client=_ca(pki))
                try:
                    assert conn.peer is not None and conn.peer.agent is not None
                    assert conn.peer.agent.startswith("gatewire-rust/")
                    tls = conn.transport_info.tls
                    assert tls is not None and tls.version == "TLSv1.3" and tls.alpn == alpn
                    assert tls.peer_certificate is not None
                    assert tls.peer_certificate.has_name("localhost")
                    await interop.script(conn, events)
                    assert (await conn.call(9)).body == b"anonymous:"
                finally:
                    await conn.close()
                assert conn.close_error is None

                # The name is verified: by IP (above), by an explicit name,
                # and a wrong one is refused.
                async with await gw.connect(
                    url, tls_client=_ca(pki, server_name="localhost")
                ) as named:
                    assert (await named.call(1, b"n")).body == b"n"
                with pytest.raises(gw.HostnameMismatchError):
                    await gw.connect(url, tls_client=_ca(pki, server_name="wrong.example"))
                with pytest.raises(gw.CertificateVerifyError) as e:
                    await gw.connect(url, tls_client=gw.TlsClientConfig(ca_file=pki.other_ca))
                assert not isinstance(e.value, gw.HostnameMismatchError)

    run(main(), timeout=120)


def test_python_tokens_against_rust_server(interop_peer: Path, pki: Pki) -> None:  # noqa: F811
    async def main() -> None:
        async with rust_server(
            interop_peer,
            "--cert",
            pki.server_cert,
            "--key",
            pki.server_key,
            "--token",
            TOKEN,
            "tls://127.0.0.1:0",
            "wss://127.0.0.1:0/gw",
        ) as urls:
            for url in urls:
                async with await gw.connect(url, token=TOKEN, tls_client=_ca(pki)) as conn:
                    assert (await conn.call(9)).body == b"token:interop"
                wrongs: list[dict[str, Any]] = [{"token": TOKEN + "x"}, {"auth": b""}, {}]
                for wrong in wrongs:
                    with pytest.raises(gw.ConnectionClosedError) as e:
                        await gw.connect(url, tls_client=_ca(pki), **wrong)
                    assert e.value.code == ErrorCode.UNAUTHENTICATED
                    assert e.value.message == "invalid or missing token"

    run(main(), timeout=120)


def test_python_client_certificate_against_rust_server(interop_peer: Path, pki: Pki) -> None:  # noqa: F811
    async def main() -> None:
        async with rust_server(
            interop_peer,
            "--cert",
            pki.server_cert,
            "--key",
            pki.server_key,
            "--client-ca",
            pki.ca,
            "tls://127.0.0.1:0",
            "wss://127.0.0.1:0/gw",
        ) as urls:
            mine = _ca(pki, cert_file=pki.client_cert, key_file=pki.client_key)
            stranger = _ca(pki, cert_file=pki.stranger_cert, key_file=pki.stranger_key)
            for url in urls:
                async with await gw.connect(url, tls_client=mine) as conn:
                    assert (await conn.call(9)).body == f"certificate:{CLIENT_NAME}".encode()
                # rustls answers a missing or unknown certificate with an
                # alert, which arrives once our side of the handshake is done.
                for bad, reason in (
                    (_ca(pki), "CERTIFICATE_REQUIRED"),
                    (stranger, "UNKNOWN_CA"),
                ):
                    with pytest.raises(gw.TlsError) as e:
                        await gw.connect(url, tls_client=bad)
                    assert not isinstance(e.value, gw.CertificateVerifyError)
                    assert e.value.reason is not None and reason in e.value.reason, e.value

    run(main(), timeout=120)


@pytest.mark.parametrize("scheme", ["tls", "wss"])
def test_rust_client_against_python_tls_server(
    interop_peer: Path,  # noqa: F811
    pki: Pki,
    scheme: str,
) -> None:
    async def main() -> None:
        url = "tls://127.0.0.1:0" if scheme == "tls" else "wss://127.0.0.1:0/gw"
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        async with await gw.serve(url, interop.service(), tls_server=tls) as server:
            code, out, err = await rust_client(interop_peer, "--ca", pki.ca, server.urls[0])
            assert code == 0, err
            assert out.strip() == "ok"
            # The Rust client verifies the name too.
            code, _, err = await rust_client(
                interop_peer, "--ca", pki.ca, "--server-name", "wrong.example", server.urls[0]
            )
            assert code == 1 and "connect failed" in err, err
            code, _, err = await rust_client(interop_peer, "--ca", pki.other_ca, server.urls[0])
            assert code == 1 and "connect failed" in err, err

    run(main(), timeout=120)


def _identities() -> tuple[gw.Router, list[gw.Identity | None]]:
    """The interop service, recording the identity behind each echo
    (method 1)."""
    router = interop.service()
    seen: list[gw.Identity | None] = []
    echo = router.unary_handlers[1]

    async def recording_echo(ctx: gw.CallContext, m: Message) -> gw.Payload:
        seen.append(ctx.identity)
        reply = echo(ctx, m)
        return await reply if inspect.isawaitable(reply) else reply

    router.unary(1, recording_echo)
    return router, seen


def test_rust_tokens_against_python_server(interop_peer: Path, pki: Pki) -> None:  # noqa: F811
    async def main() -> None:
        router, seen = _identities()
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        tokens = gw.TokenAuthenticator().token("rust-client", TOKEN)
        async with await gw.serve(
            "tls://127.0.0.1:0", router, tls_server=tls, authenticator=tokens
        ) as server:
            url = server.urls[0]
            code, out, err = await rust_client(interop_peer, "--ca", pki.ca, "--token", TOKEN, url)
            assert code == 0, err
            assert out.strip() == "ok"
            assert seen and all(i == gw.Identity("rust-client", gw.AuthMethod.TOKEN) for i in seen)
            for args in (("--token", "not-the-token"), ()):
                code, out, err = await rust_client(interop_peer, "--ca", pki.ca, *args, url)
                assert code == 1 and out == ""
                assert "connect failed with code UNAUTHENTICATED (0x0008)" in err, err
                assert "invalid or missing token" in err

    run(main(), timeout=120)


def test_rust_client_certificate_against_python_server(interop_peer: Path, pki: Pki) -> None:  # noqa: F811
    async def main() -> None:
        router, seen = _identities()
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key, client_ca_file=pki.ca)
        async with await gw.serve(
            "tls://127.0.0.1:0", router, tls_server=tls, authenticator=gw.MtlsAuthenticator()
        ) as server:
            url = server.urls[0]
            cert = ("--cert", pki.client_cert, "--key", pki.client_key)
            code, out, err = await rust_client(interop_peer, "--ca", pki.ca, *cert, url)
            assert code == 0, err
            assert out.strip() == "ok"
            identity = seen[0]
            assert identity is not None and identity.subject == CLIENT_NAME
            assert identity.method is gw.AuthMethod.CERTIFICATE
            stranger = ("--cert", pki.stranger_cert, "--key", pki.stranger_key)
            for args in ((), stranger):
                code, _, err = await rust_client(interop_peer, "--ca", pki.ca, *args, url)
                assert code == 1 and "connect failed" in err, err
            assert all(i == identity for i in seen)

    run(main(), timeout=120)


def test_interop_peer_refuses_bad_flags(interop_peer: Path) -> None:  # noqa: F811
    for args in (
        ["serve", "--client-ca", "/nonexistent", "tls://127.0.0.1:0"],
        ["serve", "--cert", "only-cert.pem", "tls://127.0.0.1:0"],
        ["client", "--bogus", "x", "tcp://127.0.0.1:1"],
        ["client", "--token", "a", "--token", "b", "tcp://127.0.0.1:1"],
    ):
        out = subprocess.run(
            [str(interop_peer), *args],
            capture_output=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert out.returncode == 1, (args, out)
        assert out.stderr.startswith(b"error: "), out.stderr
