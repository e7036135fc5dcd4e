"""The JSON forms of the shared vectors (``tests/vectors/``) and the
conversation interpreter: a line-for-line mirror of
``crates/gatewire-vectors/src/{json.rs,interp.rs}``."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from gatewire import exceptions as ex
from gatewire.code import ErrorCode
from gatewire.codec import Frame
from gatewire.control import (
    AdvertisedLimits,
    ErrorInfo,
    GoAwayInfo,
    Hello,
    HelloAck,
    MethodDesc,
    MethodKind,
    Service,
    ServiceList,
    Shape,
)
from gatewire.frame import Codec, FrameType
from gatewire.limits import Limits, Timeouts
from gatewire.protocol import (
    CallFailed,
    Cancelled,
    Closed,
    Config,
    Connected,
    Connection,
    Event,
    EventReceived,
    GoAway,
    HelloReceived,
    Message,
    PeerInfo,
    Pong,
    Request,
    Response,
    Role,
    StreamData,
    StreamOpened,
    Writable,
)

Json = Any
"""A decoded JSON value."""


def vectors_dir() -> Path:
    """``tests/vectors/`` of the repository (or ``$GATEWIRE_VECTORS``)."""
    env = os.environ.get("GATEWIRE_VECTORS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "tests" / "vectors"


def load(name: str) -> Json:
    with (vectors_dir() / name).open(encoding="utf-8") as f:
        return json.load(f)


# ----- json.rs -------------------------------------------------------------------


def code_name(code: ErrorCode) -> str:
    """A code's name, or ``0x`` and four hex digits for an unnamed code."""
    name = code.name
    return name if name is not None else f"{int(code):#06x}"


def frame_error_kind(e: ex.FrameError) -> str:
    kinds: list[tuple[type[ex.FrameError], str]] = [
        (ex.FrameTooLarge, "too_large"),
        (ex.ReservedByte, "reserved_byte"),
        (ex.UnknownType, "unknown_type"),
        (ex.InvalidFlags, "invalid_flags"),
        (ex.UnexpectedCodec, "unexpected_codec"),
        (ex.InvalidId, "invalid_id"),
        (ex.InvalidArg, "invalid_arg"),
        (ex.Truncated, "truncated"),
        (ex.InvalidLength, "invalid_length"),
    ]
    for cls, kind in kinds:
        if isinstance(e, cls):
            return kind
    return "other"


def violation_kind(v: ex.Violation) -> str:
    kinds: list[tuple[type[ex.Violation], str]] = [
        (ex.UnexpectedFrame, "unexpected_frame"),
        (ex.WrongParity, "wrong_parity"),
        (ex.IdNotIncreasing, "id_not_increasing"),
        (ex.UnopenedId, "unopened_id"),
        (ex.InterleavedMessage, "interleaved_message"),
        (ex.ShortPrelude, "short_prelude"),
        (ex.CompressionNotNegotiated, "compression_not_negotiated"),
        (ex.VersionNotOffered, "version_not_offered"),
        (ex.GoAwayIncreased, "goaway_increased"),
        (ex.InvalidPeerLimit, "invalid_peer_limit"),
    ]
    for cls, kind in kinds:
        if isinstance(v, cls):
            return kind
    return "other"


def frame_error_json(e: ex.FrameError) -> Json:
    return {"code": code_name(e.code), "kind": f"malformed.{frame_error_kind(e)}"}


def connection_error_json(e: ex.ConnectionFailed) -> Json:
    if isinstance(e, ex.FrameError):
        kind = f"malformed.{frame_error_kind(e)}"
    elif isinstance(e, ex.ControlError):
        kind = "control"
    elif isinstance(e, ex.Violation):
        kind = f"violation.{violation_kind(e)}"
    elif isinstance(e, ex.LimitExceeded):
        kind = f"limit.{e.limit}"
    elif isinstance(e, ex.FlowControlError):
        kind = "flow_control"
    elif isinstance(e, ex.BudgetExhausted):
        kind = "budget." + e.budget.replace(" ", "_")
    elif isinstance(e, ex.TimerExpired):
        kind = "timeout." + e.what.replace(" ", "_")
    elif isinstance(e, ex.Refused):
        kind = f"refused.{e.side.value}"
    elif isinstance(e, ex.RemoteClosed):
        kind = "remote"
    elif isinstance(e, ex.LocalClosed):
        kind = "local"
    elif isinstance(e, ex.ConnectionLost):
        kind = "connection_lost"
    else:
        kind = "other"
    return {"code": code_name(e.code), "kind": kind}


def message_json(m: Message) -> Json:
    j: Json = {"codec": int(m.codec), "body": m.body.hex()}
    if m.uncompressed_len is not None:
        j["uncompressed_len"] = m.uncompressed_len
    return j


def parse_message(v: Json) -> Message:
    return Message(Codec(v["codec"]), bytes.fromhex(v["body"]), v.get("uncompressed_len"))


def limits_json(lim: AdvertisedLimits) -> Json:
    return {
        "max_frame": lim.max_frame,
        "max_message": lim.max_message,
        "max_in_flight": lim.max_in_flight,
        "initial_stream_credit": lim.initial_stream_credit,
        "connection_credit": lim.connection_credit,
    }


def services_json(services: tuple[Service, ...]) -> Json:
    """The JSON form of service descriptors: u64 hashes as decimal strings."""
    return [
        {
            "name": s.name,
            "fingerprint": str(s.fingerprint),
            "methods": [
                {
                    "name": m.name,
                    "id": m.id,
                    "kind": int(m.kind),
                    "request": str(m.request),
                    "response": str(m.response),
                }
                for m in s.methods
            ],
            "shapes": [
                {
                    "name": sh.name,
                    "type": str(sh.ty),
                    "fixed": sh.fixed,
                    "slots": [str(x) for x in sh.slots],
                }
                for sh in s.shapes
            ],
        }
        for s in services
    ]


def _u64_str(v: Json, what: str) -> int:
    if not isinstance(v, str) or not v.isdigit() or int(v) > 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"{what} must be a decimal string")
    return int(v)


def _str_field(v: Json, key: str) -> str:
    x = v.get(key)
    if not isinstance(x, str):
        raise ValueError(f"service: missing {key}")
    return x


def services_from_json(v: Json) -> tuple[Service, ...]:
    """Reads service descriptors in the form :func:`services_json` writes."""
    if not isinstance(v, list):
        raise ValueError("services: expected an array")
    out = []
    for s in v:
        methods = []
        for m in s.get("methods") or []:
            id_, kind = m.get("id"), m.get("kind")
            if not isinstance(id_, int) or not 0 <= id_ <= 0xFFFF_FFFF:
                raise ValueError("method: bad id")
            if not isinstance(kind, int) or not 0 <= kind <= 0xFF:
                raise ValueError("method: bad kind")
            methods.append(
                MethodDesc(
                    name=_str_field(m, "name"),
                    id=id_,
                    kind=MethodKind(kind),
                    request=_u64_str(m.get("request"), "request"),
                    response=_u64_str(m.get("response"), "response"),
                )
            )
        shapes = []
        for sh in s.get("shapes") or []:
            slots = sh.get("slots")
            if not isinstance(slots, list):
                raise ValueError("shape: missing slots")
            fixed = sh.get("fixed")
            if not isinstance(fixed, bool):
                raise ValueError("shape: missing fixed")
            shapes.append(
                Shape(
                    name=_str_field(sh, "name"),
                    ty=_u64_str(sh.get("type"), "type"),
                    fixed=fixed,
                    slots=tuple(_u64_str(x, "slot") for x in slots),
                )
            )
        out.append(
            Service(
                name=_str_field(s, "name"),
                fingerprint=_u64_str(s.get("fingerprint"), "fingerprint"),
                methods=tuple(methods),
                shapes=tuple(shapes),
            )
        )
    return tuple(out)


def hello_json(h: Hello) -> Json:
    return {
        "min_version": h.min_version,
        "max_version": h.max_version,
        "limits": limits_json(h.limits),
        "compression": list(h.compression),
        "codecs": list(h.codecs),
        "auth": None if h.auth is None else h.auth.hex(),
        "services": services_json(h.services),
        "agent": h.agent,
        "uses": services_json(h.uses),
    }


def hello_ack_json(h: HelloAck) -> Json:
    return {
        "version": h.version,
        "error_code": code_name(h.error_code),
        "message": h.message,
        "limits": limits_json(h.limits),
        "compression": list(h.compression),
        "codecs": list(h.codecs),
        "services": services_json(h.services),
        "agent": h.agent,
        "uses": services_json(h.uses),
    }


def error_info_json(e: ErrorInfo) -> Json:
    return {"message": e.message, "details": None if e.details is None else e.details.hex()}


def goaway_json(g: GoAwayInfo) -> Json:
    return {"message": g.message}


def service_list_json(sl: ServiceList) -> Json:
    return {"offers": services_json(sl.offers), "uses": services_json(sl.uses)}


def peer_json(p: PeerInfo) -> Json:
    return {
        "version": p.version,
        "limits": limits_json(p.limits),
        "compression": p.compression,
        "codecs": list(p.codecs),
        "services": services_json(p.services),
        "agent": p.agent,
        "uses": services_json(p.uses),
    }


def raw_frame_json(f: Frame) -> Json:
    h = f.header
    return {
        "type": int(h.ty),
        "flags": int(h.flags),
        "codec": int(h.codec),
        "id": h.id,
        "arg": h.arg,
        "payload": f.payload.hex(),
    }


def decode_control(table: str, payload: bytes) -> Json | None:
    """The JSON value of a control payload, or ``None`` when it is invalid."""
    try:
        if table == "Hello":
            return hello_json(Hello.decode(payload))
        if table == "HelloAck":
            return hello_ack_json(HelloAck.decode(payload))
        if table == "ErrorInfo":
            return error_info_json(ErrorInfo.decode(payload))
        if table == "GoAway":
            return goaway_json(GoAwayInfo.decode(payload))
        if table == "ServiceList":
            return service_list_json(ServiceList.decode(payload))
    except ex.ControlError:
        return None
    raise ValueError(f"unknown table {table}")


_CONTROL_TABLES = {
    int(FrameType.HELLO): "Hello",
    int(FrameType.HELLO_ACK): "HelloAck",
    int(FrameType.ERROR): "ErrorInfo",
    int(FrameType.GOAWAY): "GoAway",
}


def frame_json(f: Frame) -> Json:
    """A frame as it appears in a conversation: control tables decoded."""
    j = raw_frame_json(f)
    table = _CONTROL_TABLES.get(int(f.header.ty))
    control = decode_control(table, f.payload) if table is not None else None
    if control is not None:
        del j["payload"]
        j["control"] = control
    return j


def event_json(e: Event) -> Json:
    if isinstance(e, HelloReceived):
        return {"type": "HelloReceived", "hello": hello_json(e.hello)}
    if isinstance(e, Connected):
        return {"type": "Connected", "peer": peer_json(e.peer)}
    if isinstance(e, Request):
        return {
            "type": "Request",
            "id": e.id,
            "method": e.method,
            "message": message_json(e.message),
            "deadline_ms": e.deadline,
        }
    if isinstance(e, Response):
        return {"type": "Response", "id": e.id, "message": message_json(e.message)}
    if isinstance(e, CallFailed):
        return {
            "type": "CallFailed",
            "id": e.id,
            "code": code_name(e.code),
            "info": error_info_json(e.info),
            "side": e.side.value,
        }
    if isinstance(e, EventReceived):
        return {"type": "Event", "method": e.method, "message": message_json(e.message)}
    if isinstance(e, StreamOpened):
        return {
            "type": "StreamOpened",
            "id": e.id,
            "method": e.method,
            "message": message_json(e.message),
            "end": e.end,
            "deadline_ms": e.deadline,
        }
    if isinstance(e, StreamData):
        return {"type": "StreamData", "id": e.id, "message": message_json(e.message), "end": e.end}
    if isinstance(e, Cancelled):
        return {"type": "Cancelled", "id": e.id, "code": code_name(e.code)}
    if isinstance(e, Writable):
        return {"type": "Writable", "id": e.id}
    if isinstance(e, Pong):
        return {"type": "Pong", "token": e.token, "rtt_ms": e.rtt}
    if isinstance(e, GoAway):
        return {
            "type": "GoAway",
            "last_id": e.last_id,
            "code": code_name(e.code),
            "message": e.message,
        }
    if isinstance(e, Closed):
        return {
            "type": "Closed",
            "error": None if e.error is None else connection_error_json(e.error),
        }
    return {"type": "Unknown"}  # pragma: no cover


# ----- interp.rs ---------------------------------------------------------------

_U32_LIMITS = {f for f in Limits.__dataclass_fields__ if f != "max_send_queue"}
_OPTIONAL_TIMEOUTS = {"keepalive_interval", "idle"}


def config(server: bool, j: Json) -> Config:
    """Applies configuration overrides to the defaults of a role."""
    limits: dict[str, int] = {}
    for name, v in j.get("limits", {}).items():
        if name not in Limits.__dataclass_fields__:
            raise ValueError(f"unknown limit {name}")
        if name in _U32_LIMITS and not 0 <= v <= 0xFFFF_FFFF:
            raise ValueError(f"limit {name} = {v} out of range")
        limits[name] = v
    timeouts: dict[str, Any] = {}
    for name, v in j.get("timeouts_ms", {}).items():
        if name not in Timeouts.__dataclass_fields__:
            raise ValueError(f"unknown timeout {name}")
        if v is None and name not in _OPTIONAL_TIMEOUTS:
            raise ValueError(f"timeout {name} cannot be off")
        timeouts[name] = v
    c = Config(
        Role.SERVER if server else Role.CLIENT,
        limits=replace(Limits(), **limits),
        timeouts=replace(Timeouts(), **timeouts),
        compression=bool(j.get("compression", False)),
        services=services_from_json(j.get("services", [])),
        uses=services_from_json(j.get("uses", [])),
    )
    c.limits.validate()
    return c


def _ok(value: Json) -> Json:
    return {"ok": value}


def command(c: Connection, name: str, args: Json) -> Json:
    """Runs a command and returns its JSON result, as ``interp.rs``."""
    try:
        if name == "accept":
            c.accept()
            return _ok(None)
        if name == "refuse":
            c.refuse(ErrorCode.from_name(args["code"]), args.get("message"))
            return _ok(None)
        if name == "send_request":
            return _ok(
                c.send_request(
                    args["method"], parse_message(args["message"]), args.get("deadline_ms")
                )
            )
        if name == "send_event":
            c.send_event(args["method"], parse_message(args["message"]))
            return _ok(None)
        if name == "open_stream":
            return _ok(
                c.open_stream(
                    args["method"],
                    parse_message(args["message"]),
                    args.get("deadline_ms"),
                    bool(args.get("end", False)),
                )
            )
        if name == "send_response":
            c.send_response(args["id"], parse_message(args["message"]))
            return _ok(None)
        if name == "send_error":
            info = ErrorInfo(message=args.get("message"), details=None)
            c.send_error(args["id"], ErrorCode.from_name(args["code"]), info)
            return _ok(None)
        if name == "send_stream_data":
            c.send_stream_data(
                args["id"], parse_message(args["message"]), bool(args.get("end", False))
            )
            return _ok(None)
        if name == "finish":
            c.finish(args["id"])
            return _ok(None)
        if name == "grant_credit":
            c.grant_credit(args["id"], args["n"])
            return _ok(None)
        if name == "cancel":
            c.cancel(args["id"])
            return _ok(None)
        if name == "ping":
            return _ok(c.ping())
        if name == "close":
            c.close(ErrorCode.from_name(args["code"]), args.get("message"))
            return _ok(None)
    except (ex.SendError, ex.ApiError) as e:
        return {"error": e.kind}
    raise ValueError(f"unknown command {name}")


def drain_frames(c: Connection) -> list[Frame]:
    frames = []
    while (f := c.poll_transmit()) is not None:
        frames.append(f)
    return frames


def drain_events(c: Connection) -> list[Json]:
    events = []
    while (e := c.poll_event()) is not None:
        events.append(event_json(e))
    return events


def state(c: Connection, start: int) -> Json:
    local, remote = c.calls_in_flight()
    timeout = c.poll_timeout()
    return {
        "connected": c.is_connected(),
        "closed": c.is_closed(),
        "in_flight": [local, remote],
        "table_len": c.table_len(),
        "timeout_ms": None if timeout is None else max(0, timeout - start),
    }


class Mismatch(AssertionError):
    """A step's outcome differs from the vector."""


def _compare(step: int, what: str, expected: Json, actual: Json) -> None:
    if expected != actual:
        raise Mismatch(
            f"step {step} ({what}):\n"
            f"  expected {json.dumps(expected, sort_keys=True)}\n"
            f"       got {json.dumps(actual, sort_keys=True)}"
        )


def run(conv: Json) -> None:
    """Runs a conversation and compares every expectation."""
    start = 0
    now = start
    conns = {
        "client": Connection(config(False, conv["client"]), start),
        "server": Connection(config(True, conv["server"]), start),
    }
    for i, step in enumerate(conv["steps"]):
        op = step["op"]
        if op == "deliver":
            sent = drain_frames(conns[step["from"]])
            actual = [frame_json(f) for f in sent]
            data = bytearray()
            for f in sent:
                f.encode_to(data)
            to = "server" if step["from"] == "client" else "client"
            conns[to].handle_bytes(now, bytes(data))
            _compare(i, "deliver", step["frames"], actual)
        elif op == "drop":
            actual = [frame_json(f) for f in drain_frames(conns[step["side"]])]
            _compare(i, "drop", step["frames"], actual)
        elif op == "events":
            _compare(i, "events", step["expect"], drain_events(conns[step["side"]]))
        elif op == "inject":
            conns[step["side"]].handle_bytes(now, bytes.fromhex(step["hex"]))
        elif op == "advance":
            now += step["ms"]
            conns["client"].handle_timeout(now)
            conns["server"].handle_timeout(now)
        elif op == "eof":
            conns[step["side"]].handle_eof(now)
        elif op == "call":
            actual = command(conns[step["side"]], step["command"], step["args"])
            _compare(i, step["command"], step["result"], actual)
        elif op == "check":
            _compare(i, "check", step["state"], state(conns[step["side"]], start))
        else:
            raise ValueError(f"unknown op {op}")
