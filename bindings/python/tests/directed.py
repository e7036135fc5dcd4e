"""Directed conversations for the differential test (``test_differential.py``):
each one steers both connections into a rule that random conversations
rarely reach, with empty expectations for the Rust recorder to fill.

They cover the rules of the Rust core's "MIN_FRAGMENT" change: the derived
fragment limit, the sender's minimum worthwhile frame, the 1 KiB minimum
windows (our own and advertised), events after a skipped open, the GOAWAY
last id that never increases and the grant remainder kept; and the
acceptor's service check (``docs/PROTOCOL.md`` §10.3) on every case of
``services.json``, with HELLOs whose descriptors the Python encoder wrote."""

from __future__ import annotations

from gatewire.code import ErrorCode
from gatewire.codec import Frame
from gatewire.control import AdvertisedLimits, Hello, HelloAck, MethodKind, Service
from gatewire.frame import Flags, FrameType, Header

from .services_support import changed_chart, chart
from .vectorjson import Json, load, services_json

_STATE: Json = {
    "connected": False,
    "closed": False,
    "in_flight": [0, 0],
    "table_len": 0,
    "timeout_ms": None,
}


def frame_hex(ty: int, flags: int, id_: int, arg: int, payload: bytes) -> str:
    """One frame's bytes, in hex."""
    header = Header(len(payload), FrameType(ty), Flags(flags), id=id_, arg=arg)
    return Frame.new(header, payload).to_bytes().hex()


def body(n: int, byte: int = 7) -> Json:
    return {"codec": 0, "body": bytes([byte]).hex() * n}


class Script:
    """Builds the steps of one conversation."""

    def __init__(self) -> None:
        self.steps: list[Json] = []

    def deliver(self, side: str) -> Script:
        self.steps.append({"op": "deliver", "from": side, "frames": []})
        return self

    def drop(self, side: str) -> Script:
        self.steps.append({"op": "drop", "side": side, "frames": []})
        return self

    def events(self, side: str) -> Script:
        self.steps.append({"op": "events", "side": side, "expect": []})
        return self

    def call(self, side: str, command: str, **args: Json) -> Script:
        step = {"op": "call", "side": side, "command": command, "args": args, "result": None}
        self.steps.append(step)
        return self

    def inject(self, side: str, hex_: str) -> Script:
        self.steps.append({"op": "inject", "side": side, "hex": hex_})
        return self

    def check(self, *sides: str) -> Script:
        for side in sides or ("client", "server"):
            self.steps.append({"op": "check", "side": side, "state": dict(_STATE)})
        return self

    def exchange(self) -> Script:
        """Both sides send what they have and read what they got."""
        return self.deliver("client").deliver("server").events("client").events("server")

    def handshake(self) -> Script:
        self.deliver("client").events("server").call("server", "accept")
        return self.deliver("server").events("client").events("server")

    def done(self, name: str, client: Json | None = None, server: Json | None = None) -> Json:
        self.check()
        return {
            "name": name,
            "note": "directed",
            "client": client or {},
            "server": server or {},
            "steps": self.steps,
        }


def _limits(**limits: int) -> Json:
    return {"limits": limits}


def _fragments(id_: int, count: int) -> str:
    """A request of ``count`` one-byte fragments (the last one final)."""
    frames = [frame_hex(FrameType.REQUEST, Flags.MORE if count > 1 else 0, id_, 1, b"r")]
    for i in range(1, count):
        more = Flags.MORE if i < count - 1 else 0
        frames.append(frame_hex(FrameType.CONTINUATION, more, id_, 0, b"c"))
    return "".join(frames)


def directed() -> list[Json]:
    """Every directed conversation."""
    v: list[Json] = []

    # Fragments per message: max_message // 256 + 2 (6 for 1 KiB).
    for count in (6, 7):
        s = Script().handshake()
        s.inject("server", _fragments(1, count)).events("server").deliver("server").events("client")
        v.append(s.done(f"fragments-{count}", server=_limits(max_message=1024)))

    # The worthwhile frame is MIN_FRAGMENT, whatever small_frame_threshold is.
    for threshold, first in ((1000, 4700), (0, 4900), (0, 4744), (256, 4800)):
        s = Script().handshake()
        s.call("client", "open_stream", method=1, message=body(0)).exchange()
        s.call("client", "send_stream_data", id=1, message=body(first)).exchange()
        s.call("client", "send_stream_data", id=1, message=body(1000, 8)).exchange()
        s.call("server", "grant_credit", id=1, n=5000).exchange().exchange()
        v.append(
            s.done(
                f"worth-threshold-{threshold}-after-{first}",
                client=_limits(small_frame_threshold=threshold),
                server=_limits(initial_stream_credit=5000),
            )
        )

    # Windows of 1 KiB, the smallest allowed (1023 is rejected by both
    # configurations, which test_protocol.py checks).
    for name in ("initial_stream_credit", "connection_credit"):
        s = Script().handshake()
        s.call("client", "open_stream", method=1, message=body(0)).exchange()
        s.call("client", "send_stream_data", id=1, message=body(2000)).exchange()
        s.call("client", "send_request", method=1, message=body(2000)).exchange()
        s.call("server", "grant_credit", id=1, n=2000).exchange().exchange()
        v.append(s.done(f"min-window-{name}", server=_limits(**{name: 1024})))

    # Advertised windows below 1 KiB (zero means the default).
    for name in ("initial_stream_credit", "connection_credit", "max_frame", "max_in_flight"):
        for value in (0, 1, 1023, 1024):
            limits = AdvertisedLimits(**{name: value})
            hello = Hello(min_version=1, max_version=1, limits=limits).encode()
            s = Script().drop("client")
            s.inject("server", frame_hex(FrameType.HELLO, 0, 0, 0, hello))
            s.events("server").call("server", "accept").deliver("server").events("client")
            v.append(s.done(f"peer-hello-{name}-{value}"))
            ack = HelloAck(version=1, error_code=ErrorCode.NO_ERROR, limits=limits).encode()
            s = Script().deliver("client").events("server")
            s.inject("client", frame_hex(FrameType.HELLO_ACK, 0, 0, 0, ack))
            s.events("client").deliver("client").events("server")
            v.append(s.done(f"peer-ack-{name}-{value}"))

    # Events queued behind an open the application never sees are dropped.
    for end_first in (False, True):
        s = Script().handshake()
        s.call("client", "open_stream", method=1, message=body(3), end=end_first)
        if not end_first:
            s.call("client", "send_stream_data", id=1, message=body(4), end=False)
            s.call("client", "send_stream_data", id=1, message=body(5), end=True)
        s.call("client", "send_request", method=2, message=body(1))
        s.deliver("client").call("client", "cancel", id=1).deliver("client")
        s.events("server").deliver("server").events("client")
        s.call("server", "send_response", id=3, message=body(2)).exchange()
        v.append(s.done(f"skipped-open-end-{end_first}"))
    # Cancelled by its deadline before delivery.
    s = Script().handshake()
    s.call("client", "open_stream", method=1, message=body(3), deadline_ms=10)
    s.call("client", "send_stream_data", id=1, message=body(4)).deliver("client")
    s.steps.append({"op": "advance", "ms": 20})
    s.events("server").exchange()
    s.call("client", "send_request", method=2, message=body(1)).exchange()
    v.append(s.done("skipped-open-deadline"))

    # GOAWAY's last id never increases, even after a refused open.
    for code in ("INTERNAL", "NO_ERROR"):
        s = Script().handshake()
        s.call("client", "send_request", method=1, message=body(1)).exchange()
        s.call("server", "close", code="NO_ERROR").deliver("server").events("client")
        s.deliver("client").events("server")
        s.call("client", "send_request", method=1, message=body(1)).deliver("client")
        s.inject("server", frame_hex(FrameType.REQUEST, 0, 7, 1, b"x"))
        s.events("server").call("server", "close", code=code).deliver("server").events("client")
        v.append(s.done(f"goaway-clamped-{code}"))

    # A grant larger than the window keeps its remainder.
    s = Script().handshake()
    s.call("client", "open_stream", method=1, message=body(0)).exchange()
    s.call("server", "grant_credit", id=1, n=0xFFFF_FFFF).exchange()
    s.call("client", "send_stream_data", id=1, message=body(600)).exchange()
    s.call("server", "grant_credit", id=1, n=1).exchange()
    s.call("client", "send_stream_data", id=1, message=body(600)).exchange()
    s.call("server", "grant_credit", id=1, n=1).exchange()
    v.append(s.done("grant-remainder", server=_limits(initial_stream_credit=1024)))

    # The acceptor's service check, on each case of services.json.
    for case in load("services.json")["checks"]:
        s = Script().handshake()
        client = {"services": case["client_offers"], "uses": case["client_uses"]}
        server = {"services": case["server_offers"], "uses": case["server_uses"]}
        v.append(s.done(f"services-{case['name']}", client=client, server=server))
    # HELLOs with descriptors from the Python encoder, read by the Rust core.
    evolved = chart((("Clear", MethodKind.EVENT),), ("string",))
    offers = {"services": services_json((chart(),))}
    for name, uses in (("evolved", evolved), ("changed", changed_chart())):
        hello = Hello(
            min_version=1, max_version=1, services=(Service("ui.Page", 3),), uses=(uses,)
        ).encode()
        s = Script().drop("client")
        s.inject("server", frame_hex(FrameType.HELLO, 0, 0, 0, hello))
        s.events("server").call("server", "accept").deliver("server").events("server")
        v.append(s.done(f"services-python-hello-{name}", server=offers))
    return v
