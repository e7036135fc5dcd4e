"""Re-authentication of a live connection (``docs/PROTOCOL.md`` §10.4):
the built-in REAUTHENTICATE method, against a Python server and a Rust one."""

from __future__ import annotations

import asyncio
import time

import pytest

import gatewire.aio as gw
from gatewire import ErrorCode, Message
from gatewire.aio import auth

from .aio_support import run


def _expiring(payload: bytes | None, peer: gw.TransportInfo) -> auth.Identity:
    """Accepts ``subject|milliseconds of validity``."""
    try:
        subject, ms = (payload or b"").decode().split("|")
        valid_for = int(ms) / 1000
    except ValueError:
        raise gw.Status(ErrorCode.UNAUTHENTICATED, "bad credentials") from None
    return auth.Identity(subject, auth.AuthMethod.CUSTOM, expires_at=time.time() + valid_for)


def _router(seen: list[auth.Identity | None]) -> gw.Router:
    router = gw.Router()

    @router.unary(1)
    async def whoami(ctx: gw.CallContext, m: Message) -> Message:
        seen.append(ctx.identity)
        return m

    return router


def test_reauthentication_renews_the_identity() -> None:
    async def main() -> None:
        seen: list[auth.Identity | None] = []
        async with (
            await gw.serve("tcp://127.0.0.1:0", _router(seen), authenticator=_expiring) as server,
            await gw.connect(server.urls[0], auth=b"alice|60000") as conn,
        ):
            await conn.call(1)
            first = seen.pop()
            assert first is not None and first.expires_at is not None
            await conn.reauthenticate("alice|600000")
            await conn.call(1)
            renewed = seen.pop()
            assert renewed is not None and renewed.expires_at is not None
            assert renewed.subject == "alice"
            assert renewed.expires_at > first.expires_at + 500

            for payload, message in (
                (b"mallory|600000", "re-authentication must name the same subject"),
                (b"garbage", "bad credentials"),
            ):
                with pytest.raises(gw.RemoteError) as e:
                    await conn.reauthenticate(payload)
                assert (e.value.code, e.value.message) == (ErrorCode.UNAUTHENTICATED, message)
                await conn.call(1)
                assert seen.pop() == renewed

        async with (
            await gw.serve("tcp://127.0.0.1:0", _router(seen)) as plain,
            await gw.connect(plain.urls[0]) as conn,
        ):
            with pytest.raises(gw.RemoteError) as e:
                await conn.reauthenticate(b"alice|1")
            assert e.value.code == ErrorCode.UNKNOWN_METHOD

    run(main())


def test_an_expired_identity_is_renewed_without_reconnecting() -> None:
    async def main() -> None:
        seen: list[auth.Identity | None] = []
        async with (
            await gw.serve("tcp://127.0.0.1:0", _router(seen), authenticator=_expiring) as server,
            await gw.connect(server.urls[0], auth=b"bob|200") as conn,
        ):
            await conn.call(1)
            identity = seen.pop()
            assert identity is not None and identity.expires_at is not None
            # Wait for the expiry the server recorded, not for a guess.
            await asyncio.sleep(max(0.0, identity.expires_at - time.time()) + 0.05)
            with pytest.raises(gw.RemoteError) as e:
                await conn.call(1)
            assert (e.value.code, e.value.message) == (
                ErrorCode.UNAUTHENTICATED,
                "credentials expired",
            )
            await conn.reauthenticate(b"bob|600000")
            await conn.call(1)
            assert not conn.is_closed

    run(main())
