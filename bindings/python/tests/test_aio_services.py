"""Services on the asyncio runtime (``docs/PROTOCOL.md`` §10): ``offers``
and ``uses`` options, the server's refusal of an incompatible client, the
built-in LIST_SERVICES, and the same against the Rust reference peer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import gatewire.aio as gw
from gatewire import Codec, ErrorCode, Message
from gatewire.control import MethodKind, Service, ServiceList
from gatewire.services import LIST_SERVICES, method_id

from .aio_support import TRANSPORTS, pair, private_dir, run, url_for
from .services_support import changed_chart, chart
from .test_interop import interop_peer, rust_server  # noqa: F401 - fixtures

UI = Service("ui.Page", 7)
SET_TITLE = method_id("chart.Chart", "SetTitle")
MISMATCH = (
    "chart.Chart.SetTitle (method 3c553084): the client calls it as client streaming, "
    "the server serves it as unary"
)


def chart_router() -> gw.Router:
    router = gw.Router()

    @router.unary(SET_TITLE)
    async def set_title(_ctx: gw.CallContext, _m: Message) -> Message:
        return Message(Codec.FLATBUFFERS, b"")

    return router


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_incompatible_client_is_refused(transport: str) -> None:
    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(
                url_for(transport, d), chart_router(), offers=[chart()]
            ) as server:
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0], uses=[changed_chart()])
                assert e.value.code == ErrorCode.INCOMPATIBLE
                assert e.value.message == MISMATCH
                assert e.value.is_closed
                # Nothing offered: the client's use is refused too.
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0], uses=[UI])
                assert (
                    e.value.message == "ui.Page: used by the client but not offered by the server"
                )
                assert not server.connections()

    run(main())


def test_server_refuses_a_client_that_does_not_offer_what_it_uses() -> None:
    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(url_for("tcp", d), uses=[UI]) as server:
                with pytest.raises(gw.ConnectionClosedError) as e:
                    await gw.connect(server.urls[0])
                assert e.value.code == ErrorCode.INCOMPATIBLE
                assert (
                    e.value.message == "ui.Page: used by the server but not offered by the client"
                )
                conn = await gw.connect(server.urls[0], offers=(UI,))
                await conn.close()

    run(main())


def test_evolved_client_connects_and_calls() -> None:
    async def main() -> None:
        evolved = chart((("Clear", MethodKind.EVENT),), ("string",))
        async with pair(
            "tcp",
            chart_router(),
            server_options={"offers": [chart()]},
            client_options={"uses": [evolved]},
        ) as (client, server_side, _server):
            assert client.peer is not None and client.peer.services == (chart(),)
            assert server_side.peer is not None and server_side.peer.uses == (evolved,)
            r = await client.call(SET_TITLE, b"", codec=Codec.FLATBUFFERS)
            assert r.codec == Codec.FLATBUFFERS

    run(main())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_list_services_answers_both_ways(transport: str) -> None:
    async def main() -> None:
        # A handler registered at the reserved id does not replace the
        # built-in answer.
        router = chart_router()

        @router.unary(LIST_SERVICES)
        async def mine(_ctx: gw.CallContext, _m: Message) -> bytes:
            return b"mine"

        async with pair(
            transport,
            router,
            server_options={"offers": [chart()], "uses": [UI]},
            client_options={"offers": [UI], "uses": [chart()]},
        ) as (client, server_side, _server):
            r = await client.call(LIST_SERVICES, b"")
            assert r.codec == Codec.FLATBUFFERS
            assert ServiceList.decode(r.body) == ServiceList(offers=(chart(),), uses=(UI,))
            r = await server_side.call(LIST_SERVICES, b"")
            assert ServiceList.decode(r.body) == ServiceList(offers=(UI,), uses=(chart(),))
            # Other reserved ids are unknown methods.
            with pytest.raises(gw.RemoteError) as e:
                await client.call(LIST_SERVICES + 0x80, b"")
            assert e.value.code == ErrorCode.UNKNOWN_METHOD

    run(main())


def test_list_services_obeys_the_authorizer() -> None:
    async def main() -> None:
        def authorizer(_identity: gw.Identity, method: int) -> bool:
            return method != LIST_SERVICES

        async with pair("tcp", server_options={"offers": [chart()], "authorizer": authorizer}) as (
            client,
            _side,
            _server,
        ):
            with pytest.raises(gw.RemoteError) as e:
                await client.call(LIST_SERVICES, b"")
            assert e.value.code == ErrorCode.PERMISSION_DENIED

    run(main())


def test_services_options_are_checked() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="offers"):
            await gw.connect("tcp://127.0.0.1:1", offers=["chart.Chart"])
        with pytest.raises(TypeError, match="uses"):
            await gw.connect("tcp://127.0.0.1:1", uses=UI)

    run(main())


# ----- against the Rust reference peer ------------------------------------------


def test_rust_server_refuses_a_python_client_using_what_it_does_not_offer(
    rust_server: dict[str, str],  # noqa: F811 - fixture
) -> None:
    async def main() -> None:
        with pytest.raises(gw.ConnectionClosedError) as e:
            await gw.connect(rust_server["tcp"], uses=[chart()])
        assert e.value.code == ErrorCode.INCOMPATIBLE
        assert e.value.message == "chart.Chart: used by the client but not offered by the server"
        # The Rust runtime answers LIST_SERVICES itself: it offers nothing.
        conn = await gw.connect(rust_server["tcp"], offers=[UI])
        try:
            r = await conn.call(LIST_SERVICES, b"")
            assert r.codec == Codec.FLATBUFFERS
            assert ServiceList.decode(r.body) == ServiceList()
        finally:
            await conn.close()

    run(main(), timeout=90)


def test_python_server_refuses_a_rust_client_not_offering_what_it_uses(
    interop_peer: Path,  # noqa: F811 - fixture
) -> None:
    async def main() -> None:
        with private_dir() as d:
            async with await gw.serve(url_for("tcp", d), uses=[UI]) as server:
                proc = await asyncio.create_subprocess_exec(
                    str(interop_peer),
                    "client",
                    server.urls[0],
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                _out, err = await asyncio.wait_for(proc.communicate(), 80)
                assert proc.returncode != 0
                text = err.decode()
                assert "INCOMPATIBLE" in text, text
                assert "ui.Page: used by the server but not offered by the client" in text, text

    run(main(), timeout=90)
