"""TLS (``tls://``, ``wss://``) and handshake authentication between two
Python endpoints, over real sockets, with a PKI made for the session
(:mod:`tests.tls_support`)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gatewire.aio as gw
from gatewire import ErrorCode, Message
from gatewire import sync as gws
from gatewire.aio import auth

from .aio_support import private_dir, run
from .tls_support import CLIENT_NAME, Pki, make_pki

TLS_URLS = ("tls://127.0.0.1:0", "wss://127.0.0.1:0/gw")


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    with tempfile.TemporaryDirectory(prefix="gw-pki-") as d:
        yield make_pki(Path(d))


def _client(pki: Pki, **kwargs: Any) -> gw.TlsClientConfig:
    return gw.TlsClientConfig(ca_file=pki.ca, **kwargs)


def _recorder(seen: list[gw.CallContext]) -> gw.Router:
    """Method 1 echoes and records the call's context."""
    router = gw.Router()

    @router.unary(1)
    async def echo(ctx: gw.CallContext, m: Message) -> Message:
        seen.append(ctx)
        return m

    return router


@pytest.mark.parametrize("url", TLS_URLS)
def test_tls_round_trip_and_session_facts(pki: Pki, url: str) -> None:
    async def main() -> None:
        seen: list[gw.CallContext] = []
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        assert tls.client_auth is gw.ClientAuth.NONE
        async with await gw.serve(url, _recorder(seen), tls_server=tls) as server:
            scheme = url.split(":", 1)[0]
            assert server.urls[0].startswith(f"{scheme}://127.0.0.1:")
            async with await gw.connect(server.urls[0], tls_client=_client(pki)) as conn:
                assert (await conn.call(1, b"x" * 100_000)).body == b"x" * 100_000
                info = conn.transport_info.tls
                assert info is not None and info.version in ("TLSv1.3", "TLSv1.2")
                assert info.alpn == ("gatewire/1" if scheme == "tls" else "http/1.1")
                assert info.server_name == "127.0.0.1"
                cert = info.peer_certificate
                assert cert is not None and cert.has_name("localhost")
                assert [str(ip) for ip in cert.ip_addresses] == ["127.0.0.1", "::1"]
                assert cert.common_name == "gatewire test server"
                assert "O=gatewire tests" in cert.subject
                assert conn.identity is None
            server_side = seen[0]
            assert server_side.transport_info.tls is not None
            assert server_side.transport_info.tls.peer_certificate is None
            assert server_side.identity == auth.ANONYMOUS
        assert conn.close_error is None

    run(main())


@pytest.mark.parametrize("url", TLS_URLS)
def test_server_name_override(pki: Pki, url: str) -> None:
    async def main() -> None:
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        async with await gw.serve(url, _recorder([]), tls_server=tls) as server:
            client = _client(pki, server_name="localhost")
            async with await gw.connect(server.urls[0], tls_client=client) as conn:
                assert conn.transport_info.tls is not None
                assert conn.transport_info.tls.server_name == "localhost"
                assert (await conn.call(1, b"ok")).body == b"ok"

    run(main())


@pytest.mark.parametrize("url", TLS_URLS)
def test_wrong_ca_and_wrong_name_are_typed_errors(pki: Pki, url: str) -> None:
    async def main() -> None:
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        async with await gw.serve(url, _recorder([]), tls_server=tls) as server:
            target = server.urls[0]
            with pytest.raises(gw.CertificateVerifyError) as e:
                await gw.connect(target, tls_client=gw.TlsClientConfig(ca_file=pki.other_ca))
            assert not isinstance(e.value, gw.HostnameMismatchError)
            assert e.value.is_closed and e.value.kind == "rpc.transport.tls.certificate"
            assert isinstance(e.value.__cause__, ssl.SSLCertVerificationError)
            # The system store does not know the test CA either.
            with pytest.raises(gw.CertificateVerifyError):
                await gw.connect(target)
            with pytest.raises(gw.HostnameMismatchError) as h:
                await gw.connect(target, tls_client=_client(pki, server_name="other.example"))
            assert h.value.kind == "rpc.transport.tls.hostname"
            assert h.value.verify_code == 62

    run(main())


@pytest.mark.parametrize("url", TLS_URLS)
def test_mtls_required(pki: Pki, url: str) -> None:
    async def main() -> None:
        seen: list[gw.CallContext] = []
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key, client_ca_file=pki.ca)
        assert tls.client_auth is gw.ClientAuth.REQUIRED
        async with await gw.serve(
            url, _recorder(seen), tls_server=tls, authenticator=gw.MtlsAuthenticator()
        ) as server:
            target = server.urls[0]
            client = _client(pki, cert_file=pki.client_cert, key_file=pki.client_key)
            async with await gw.connect(target, tls_client=client) as conn:
                assert (await conn.call(1, b"me")).body == b"me"
            ctx = seen[0]
            assert ctx.identity is not None
            assert ctx.identity.subject == CLIENT_NAME
            assert ctx.identity.method is gw.AuthMethod.CERTIFICATE
            assert ctx.identity.expires_at is not None and not ctx.identity.is_expired()
            assert ctx.transport_info.tls is not None
            cert = ctx.transport_info.tls.peer_certificate
            assert cert is not None and cert.name == CLIENT_NAME
            assert cert.uris == ("spiffe://test/client-1",)
            assert cert.dns_names == ("client-1.example",)
            with open(pki.client_cert, "rb") as f:
                der = ssl.PEM_cert_to_DER_cert(f.read().decode())
            assert cert.sha256 == hashlib.sha256(der).digest()

            # No certificate, or one from another CA: the server refuses it
            # in the TLS handshake, which on our side (TLS 1.3) had already
            # completed. asyncio drops the connection without sending the
            # alert, so the client sees it lost (against the Rust peer, which
            # sends the alert, it is a TlsError: test_interop_tls.py).
            for bad in (
                _client(pki),
                _client(pki, cert_file=pki.stranger_cert, key_file=pki.stranger_key),
            ):
                with pytest.raises(gw.RpcError) as e:
                    await gw.connect(target, tls_client=bad)
                assert e.value.is_closed
            assert len(seen) == 1

    run(main())


def test_mtls_optional_lets_an_authenticator_decide(pki: Pki) -> None:
    async def main() -> None:
        seen: list[gw.CallContext] = []
        tls = gw.TlsServerConfig(
            pki.server_cert, pki.server_key, client_ca_file=pki.ca, client_auth_optional=True
        )
        assert tls.client_auth is gw.ClientAuth.OPTIONAL
        authenticator = gw.AnyAuthenticator(
            gw.MtlsAuthenticator(allow=[CLIENT_NAME]),
            gw.TokenAuthenticator().token("app", "app-token"),
        )
        async with await gw.serve(
            "tls://127.0.0.1:0", _recorder(seen), tls_server=tls, authenticator=authenticator
        ) as server:
            target = server.urls[0]
            with_cert = _client(pki, cert_file=pki.client_cert, key_file=pki.client_key)
            async with await gw.connect(target, tls_client=with_cert) as conn:
                await conn.call(1)
            async with await gw.connect(target, tls_client=_client(pki), token="app-token") as conn:
                await conn.call(1)
            assert [c.identity and c.identity.subject for c in seen] == [CLIENT_NAME, "app"]
            # Neither: the first refusal (the certificate's) is the answer.
            with pytest.raises(gw.ConnectionClosedError) as e:
                await gw.connect(target, tls_client=_client(pki))
            assert e.value.code == ErrorCode.UNAUTHENTICATED
            assert e.value.message == "a client certificate is required"
            # A certificate from another CA is still verified, and refused.
            stranger = _client(pki, cert_file=pki.stranger_cert, key_file=pki.stranger_key)
            with pytest.raises(gw.RpcError) as c:
                await gw.connect(target, tls_client=stranger)
            assert c.value.is_closed and len(seen) == 2

    run(main())


def test_ssl_contexts_passed_in_code(pki: Pki) -> None:
    async def main() -> None:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
        client_ctx = ssl.create_default_context(cafile=pki.ca)
        async with await gw.serve(TLS_URLS, _recorder([]), tls_server=server_ctx) as server:
            for target in server.urls:
                async with await gw.connect(target, tls_client=client_ctx) as conn:
                    assert (await conn.call(1, b"ctx")).body == b"ctx"
                    assert conn.transport_info.tls is not None
                    assert conn.transport_info.tls.peer_certificate is not None

    run(main())


def test_tls_client_refuses_a_server_without_gatewire_alpn(pki: Pki) -> None:
    async def main() -> None:
        https = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        https.load_cert_chain(pki.server_cert, pki.server_key)
        https.set_alpn_protocols(["http/1.1"])
        accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

        async def on_client(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accepted.put(w)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=https)
        try:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(gw.AlpnError) as e:
                await gw.connect(f"tls://127.0.0.1:{port}", tls_client=_client(pki))
            assert e.value.kind == "rpc.transport.tls.alpn"
            (await accepted.get()).close()
        finally:
            server.close()

    run(main())


def test_tls_server_drops_a_client_without_gatewire_alpn(pki: Pki) -> None:
    async def main() -> None:
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        async with await gw.serve("tls://127.0.0.1:0", _recorder([]), tls_server=tls) as server:
            port = server.endpoints[0].port
            plain = ssl.create_default_context(cafile=pki.ca)  # offers no ALPN
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=plain)
            # The server closes without a word: not even a GOAWAY.
            assert await reader.read() == b""
            writer.close()
            assert server.connections() == []

    run(main())


def test_plaintext_client_on_a_tls_port_fails_fast(pki: Pki) -> None:
    async def main() -> None:
        tls = gw.TlsServerConfig(pki.server_cert, pki.server_key)
        async with await gw.serve("tls://127.0.0.1:0", _recorder([]), tls_server=tls) as server:
            port = server.endpoints[0].port
            with pytest.raises(gw.RpcError) as e:
                await gw.connect(f"tcp://127.0.0.1:{port}", timeouts=gw.Timeouts(handshake=5_000))
            assert e.value.is_closed

    run(main())


def test_tls_configuration_errors(pki: Pki) -> None:
    with pytest.raises(gw.TlsConfigError, match=r"/nonexistent/cert\.pem"):
        gw.TlsServerConfig("/nonexistent/cert.pem", pki.server_key)
    with pytest.raises(gw.TlsConfigError) as e:
        # A certificate where the key should be.
        gw.TlsServerConfig(pki.server_cert, pki.server_cert)
    assert "BEGIN" not in str(e.value)
    with pytest.raises(gw.TlsConfigError):
        gw.TlsServerConfig(pki.server_cert)
    with pytest.raises(gw.TlsConfigError, match="CA certificates"):
        gw.TlsClientConfig(ca_file=pki.server_key)
    with pytest.raises(gw.TlsConfigError):
        gw.TlsClientConfig(ca_file=pki.ca, context=ssl.create_default_context())
    with pytest.raises(gw.TlsConfigError, match="key_file needs cert_file"):
        gw.TlsClientConfig(key_file=pki.client_key)
    assert isinstance(gw.TlsConfigError("x"), gw.ConfigError)
    shown = repr(gw.TlsServerConfig(pki.server_cert, pki.server_key, client_ca_file=pki.ca))
    assert shown == "TlsServerConfig(client_auth=required)"

    async def main() -> None:
        with pytest.raises(gw.ConfigError, match="tls_server"):
            await gw.serve("tls://127.0.0.1:0")

    run(main())


# ----- authentication ---------------------------------------------------------------


TRANSPORTS_WITH_TLS = ("tcp", "unix", "ws", "tls", "wss")


def _url(transport: str, directory: str) -> str:
    if transport == "unix":
        return f"unix://{directory}/s.sock"
    if transport in ("ws", "wss"):
        return f"{transport}://127.0.0.1:0/gw"
    return f"{transport}://127.0.0.1:0"


@pytest.mark.parametrize("transport", TRANSPORTS_WITH_TLS)
def test_token_accepted_and_refused(pki: Pki, transport: str) -> None:
    async def main() -> None:
        seen: list[gw.CallContext] = []
        tokens = gw.TokenAuthenticator().token("alice", "alice-token-0123456789")
        tokens.sha256_hex("bob", hashlib.sha256(b"bob-token").hexdigest().upper())
        with private_dir() as d:
            async with await gw.serve(
                _url(transport, d),
                _recorder(seen),
                authenticator=tokens,
                tls_server=gw.TlsServerConfig(pki.server_cert, pki.server_key),
            ) as server:
                target = server.urls[0]
                tls = _client(pki)
                for token, subject in (("alice-token-0123456789", "alice"), (b"bob-token", "bob")):
                    async with await gw.connect(target, token=token, tls_client=tls) as conn:
                        await conn.call(1)
                    ctx = seen.pop()
                    assert ctx.identity == gw.Identity(subject, gw.AuthMethod.TOKEN)
                wrongs: list[dict[str, Any]] = [
                    {"token": "alice-token-012345678"},
                    {"token": "x" * 5000},
                    {},
                ]
                for wrong in wrongs:
                    with pytest.raises(gw.ConnectionClosedError) as e:
                        await gw.connect(target, tls_client=tls, **wrong)
                    assert e.value.code == ErrorCode.UNAUTHENTICATED
                    assert e.value.message == "invalid or missing token"
                    assert not e.value.is_retryable
                assert seen == []

    run(main())


def test_token_authenticator_rules() -> None:
    info = gw.TransportInfo()
    tokens = gw.TokenAuthenticator().token("a", "short").token("b", b"a-much-longer-token")
    assert tokens(b"short", info).subject == "a"
    assert tokens(b"a-much-longer-token", info) == gw.Identity("b", gw.AuthMethod.TOKEN)
    for wrong in (b"shor", b"shortt", b"", None, bytes(4096)):
        with pytest.raises(gw.Status) as e:
            tokens(wrong, info)
        assert e.value.code == ErrorCode.UNAUTHENTICATED
    empty = gw.TokenAuthenticator().token("empty", "")
    with pytest.raises(gw.Status):
        empty(b"", info)
    with pytest.raises(gw.Status):
        empty(None, info)
    with pytest.raises(gw.ConfigError):
        gw.TokenAuthenticator().sha256_hex("s", "abc")
    with pytest.raises(gw.ConfigError):
        gw.TokenAuthenticator().sha256_hex("s", "zz" * 32)
    with pytest.raises(gw.ConfigError):
        gw.TokenAuthenticator().sha256("s", b"short")
    assert len(tokens) == 2
    shown = repr(gw.TokenAuthenticator().token("alice", "hunter2-token"))
    assert "alice" in shown and "hunter2" not in shown
    options = gw.Options.from_kwargs({"token": "hunter2-token"})
    assert options.auth == b"hunter2-token" and "hunter2" not in repr(options)
    with pytest.raises(gw.ConfigError):
        gw.Options.from_kwargs({"token": "a", "auth": b"b"})


def test_authorizer_denies_before_the_method_is_looked_up() -> None:
    async def main() -> None:
        ran: list[int] = []
        router = gw.Router()

        @router.unary(1)
        async def open_method(_ctx: gw.CallContext, m: Message) -> Message:
            ran.append(1)
            return m

        @router.unary(1000)
        async def admin(_ctx: gw.CallContext, m: Message) -> Message:
            ran.append(1000)
            return m

        def authorize(identity: gw.Identity, method: int) -> bool:
            if method == 2000:
                raise gw.Status(0x8002, "custom denial")
            return method < 1000 or identity.subject == "admin"

        tokens = gw.TokenAuthenticator().token("user", "user-token").token("admin", "admin-token")
        async with await gw.serve(
            "tcp://127.0.0.1:0", router, authenticator=tokens, authorizer=authorize
        ) as server:
            async with await gw.connect(server.urls[0], token="user-token") as conn:
                assert (await conn.call(1, b"a")).body == b"a"
                for method in (1000, 1001):
                    with pytest.raises(gw.RemoteError) as e:
                        await conn.call(method)
                    # Same answer whether or not the method exists.
                    assert e.value.code == ErrorCode.PERMISSION_DENIED
                with pytest.raises(gw.RemoteError) as e:
                    await conn.call(2000)
                assert e.value.code == 0x8002 and e.value.message == "custom denial"
            async with await gw.connect(server.urls[0], token="admin-token") as conn:
                assert (await conn.call(1000, b"b")).body == b"b"
        assert ran == [1, 1000]

    run(main())


def test_stream_denied_by_the_authorizer() -> None:
    async def main() -> None:
        router = gw.Router()

        @router.stream(3)
        async def count(
            _ctx: gw.CallContext, _m: Message, _rx: gw.RecvStream, tx: gw.SendStream
        ) -> None:
            await tx.send(b"never")

        async with (
            await gw.serve("tcp://127.0.0.1:0", router, authorizer=lambda _id, _m: False) as server,
            await gw.connect(server.urls[0]) as conn,
        ):
            rx = await conn.server_stream(3)
            with pytest.raises(gw.RemoteError) as e:
                await rx.recv()
            assert e.value.code == ErrorCode.PERMISSION_DENIED

    run(main())


def test_expired_identities_and_failing_authorizers() -> None:
    expired = gw.Identity("late", gw.AuthMethod.CUSTOM, expires_at=0.0)
    assert expired.is_expired() and not gw.Identity("x").is_expired()
    status = auth.check_call(expired, None, 1)
    assert status is not None and status.code == ErrorCode.UNAUTHENTICATED

    def broken(_identity: gw.Identity, _method: int) -> bool:
        raise RuntimeError("bug")

    status = auth.check_call(None, broken, 1)
    assert status is not None and status.code == ErrorCode.PERMISSION_DENIED
    assert auth.check_call(None, lambda _i, _m: None, 1) is None

    async def main() -> None:
        def authenticate(_auth: bytes | None, _peer: gw.TransportInfo) -> gw.Identity:
            return expired

        async with await gw.serve(
            "tcp://127.0.0.1:0", _recorder([]), authenticator=authenticate
        ) as server:
            with pytest.raises(gw.ConnectionClosedError) as e:
                await gw.connect(server.urls[0])
            assert e.value.code == ErrorCode.UNAUTHENTICATED
            assert e.value.message == "credentials expired"

    run(main())


def test_failing_authenticator_refuses_with_internal() -> None:
    async def main() -> None:
        def broken(_auth: bytes | None, _peer: gw.TransportInfo) -> gw.Identity:
            raise RuntimeError("bug")

        def custom(_auth: bytes | None, _peer: gw.TransportInfo) -> gw.Identity:
            raise gw.Status(ErrorCode.PERMISSION_DENIED, "not today")

        for authenticator, code in (
            (broken, ErrorCode.INTERNAL),
            (custom, ErrorCode.PERMISSION_DENIED),
        ):
            async with await gw.serve(
                "tcp://127.0.0.1:0", _recorder([]), authenticator=authenticator
            ) as server:
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0])
                assert e.value.code == code

    run(main())


def test_unix_peer_credentials() -> None:
    async def main() -> None:
        seen: list[gw.CallContext] = []
        with private_dir() as d:
            url = f"unix://{d}/s.sock"
            async with await gw.serve(
                url, _recorder(seen), authenticator=gw.UnixPeerAuthenticator()
            ) as server:
                async with await gw.connect(server.urls[0]) as conn:
                    await conn.call(1)
                ctx = seen[0]
                cred = ctx.transport_info.credentials
                assert cred is not None and cred.uid == os.geteuid() and cred.pid == os.getpid()
                assert ctx.identity == gw.Identity(
                    f"uid:{os.geteuid()}", gw.AuthMethod.UNIX_CREDENTIALS
                )
            other = os.geteuid() + 1
            async with await gw.serve(
                url, _recorder(seen), authenticator=gw.UnixPeerAuthenticator(uids=[other])
            ) as server:
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0])
                assert e.value.code == ErrorCode.UNAUTHENTICATED
                assert e.value.message == "unix peer not allowed"
                allowed = gw.UnixPeerAuthenticator(uids=[other]).allow_gid(os.getegid())
            async with (
                await gw.serve(url, _recorder(seen), authenticator=allowed) as server,
                await gw.connect(server.urls[0]) as conn,
            ):
                await conn.call(1)
            # Not a Unix socket: no credentials.
            async with await gw.serve(
                "tcp://127.0.0.1:0", _recorder(seen), authenticator=gw.UnixPeerAuthenticator()
            ) as server:
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0])
                assert e.value.message == "unix peer credentials are required"

    run(main())


def test_sync_facade_over_tls_with_a_token(pki: Pki) -> None:
    async def start() -> gw.Server:
        return await gw.serve(
            "tls://127.0.0.1:0",
            _recorder([]),
            tls_server=gw.TlsServerConfig(pki.server_cert, pki.server_key),
            authenticator=gw.TokenAuthenticator().token("script", "script-token"),
        )

    loop = asyncio.new_event_loop()
    try:
        server = loop.run_until_complete(start())
        serving = loop.create_task(server.wait_closed())

        def client() -> None:
            with gws.connect(server.urls[0], token="script-token", tls_client=_client(pki)) as conn:
                assert conn.call(1, b"sync").body == b"sync"
                assert conn.transport_info.tls is not None
            with pytest.raises(gw.ConnectionClosedError) as e:
                gws.connect(server.urls[0], token="nope", tls_client=_client(pki))
            assert e.value.code == ErrorCode.UNAUTHENTICATED

        loop.run_until_complete(asyncio.wait_for(loop.run_in_executor(None, client), 30))
        loop.run_until_complete(server.close())
        loop.run_until_complete(serving)
    finally:
        loop.close()
