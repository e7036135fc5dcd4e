"""Random conversations in the format of ``tests/vectors/conversations.json``,
with empty expectations for the Rust recorder to fill (see
``test_differential.py``).

Two profiles alternate: a hostile one (random and malformed frames injected,
abrupt closes, EOF) and a gentle one (mostly calls, replies, streams and
credit between two live endpoints)."""

from __future__ import annotations

import random

from .vectorjson import Json

_STATE: Json = {
    "connected": False,
    "closed": False,
    "in_flight": [0, 0],
    "table_len": 0,
    "timeout_ms": None,
}
_CODES = ["NO_ERROR", "INTERNAL", "CANCELLED", "0x8001", "UNAVAILABLE"]

_LIMITS: list[tuple[str, list[int]]] = [
    ("initial_stream_credit", [1024, 1500, 5000]),
    ("max_in_flight", [1, 2, 5]),
    ("send_fragment", [1024, 2000]),
    ("max_frame", [1024, 4096]),
    ("connection_credit", [1024, 3000, 10000]),
    ("max_send_queue", [1, 2000, 50000]),
    ("stray_frame_budget", [2, 5]),
    ("max_message", [1024, 5000]),
    ("early_cancel_budget", [1, 3]),
    ("error_reset_budget", [1, 3]),
    ("max_pending_control", [4, 6]),
    ("small_frame_budget", [100, 1000]),
    ("small_frame_threshold", [0, 100, 1000]),
    ("credit_frames_per_data", [1]),
    ("max_ping_strikes", [0, 1]),
]
_TIMEOUTS: list[tuple[str, list[int | None]]] = [
    ("handshake", [50, 1000]),
    ("partial_frame", [30, 500]),
    ("keepalive_interval", [None, 100, 400]),
    ("keepalive_timeout", [50, 300]),
    ("idle", [None, 200]),
    ("min_ping_interval", [0, 100]),
    ("goaway_grace", [50, 500]),
    ("drain", [100, 1000]),
]


def _frame_hex(rng: random.Random) -> str:
    """A frame with a plausible but often invalid header."""
    ty = rng.choice([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x80, 0x20, 1, 2])
    flags = rng.choice([0, 0, 1, 4, 8, 2, 5, 9, 0x10])
    codec = rng.choice([0, 0, 1])
    id_ = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 100, 0xFFFF_FFFF])
    arg = rng.choice([0, 0, 1, 5, 100, 4096, 0x7FFF_FFFF, 0x1_0000])
    payload = rng.randbytes(rng.choice([0, 0, 1, 3, 4, 8, 8, 20, 300, 2000]))
    header = (
        len(payload).to_bytes(4, "little")
        + bytes([ty, flags, codec, 0])
        + id_.to_bytes(4, "little")
        + arg.to_bytes(4, "little")
    )
    return (header + payload).hex()


def _message(rng: random.Random) -> Json:
    n = rng.choice([0, 1, 5, 100, 1000, 1500, 3000, 9000])
    m: Json = {"codec": rng.choice([0, 1, 3]), "body": rng.randbytes(n).hex()}
    if rng.random() < 0.05:
        m["uncompressed_len"] = rng.choice([10, 5000, 1 << 30])
    return m


def _config(rng: random.Random) -> Json:
    c: Json = {}
    limits = {n: rng.choice(v) for n, v in _LIMITS if rng.random() < 0.1}
    if limits:
        c["limits"] = limits
    timeouts = {n: rng.choice(v) for n, v in _TIMEOUTS if rng.random() < 0.25}
    if timeouts:
        c["timeouts_ms"] = timeouts
    if rng.random() < 0.3:
        c["compression"] = True
    return c


def conversation(rng: random.Random, name: str, gentle: bool) -> Json:
    """One random conversation with empty expectations."""
    steps: list[Json] = [
        {"op": "deliver", "from": "client", "frames": []},
        {"op": "events", "side": "server", "expect": []},
    ]
    r = rng.random()
    if r < 0.9:
        steps.append(
            {"op": "call", "side": "server", "command": "accept", "args": {}, "result": None}
        )
    elif r < 0.95:
        refusal: Json = {"code": "UNAUTHENTICATED", "message": "no"}
        steps.append(
            {"op": "call", "side": "server", "command": "refuse", "args": refusal, "result": None}
        )
    steps += [
        {"op": "deliver", "from": "server", "frames": []},
        {"op": "events", "side": "client", "expect": []},
    ]
    for _ in range(rng.randrange(5, 120 if gentle else 60)):
        side = rng.choice(["client", "server"])
        own = [1, 3, 5, 7, 9] if side == "client" else [2, 4, 6, 8, 10]
        peers = [2, 4, 6, 8, 10] if side == "client" else [1, 3, 5, 7, 9, 11]
        r = rng.random()
        args: Json
        if gentle and 0.85 <= r < 0.945 and rng.random() < 0.85:
            r = rng.choice([0.1, 0.3, 0.5, 0.7, 0.96])

        def call(command: str, args: Json, side: str = side) -> None:
            steps.append(
                {"op": "call", "side": side, "command": command, "args": args, "result": None}
            )

        pick = rng.choice(peers) if gentle else rng.randrange(1, 10)
        if r < 0.25:
            command = rng.choice(["send_request", "send_request", "open_stream", "send_event"])
            args = {"method": rng.choice([1, 2, 0xFFFF_FFFF]), "message": _message(rng)}
            if command != "send_event" and rng.random() < 0.3:
                args["deadline_ms"] = rng.choice([0, 10, 100, 1000])
            if command == "open_stream" and rng.random() < 0.3:
                args["end"] = True
            call(command, args)
        elif r < 0.42:
            command = rng.choice(
                [
                    "send_response",
                    "send_error",
                    "send_stream_data",
                    "finish",
                    "grant_credit",
                    "cancel",
                ]
            )
            args = {"id": pick}
            own_ids = ("cancel", "grant_credit", "send_stream_data", "finish")
            if gentle and command in own_ids and rng.random() < 0.5:
                args["id"] = rng.choice(own)
            if command in ("send_response", "send_stream_data"):
                args["message"] = _message(rng)
            if command == "send_stream_data" and rng.random() < 0.3:
                args["end"] = True
            if command == "send_error":
                args["code"] = rng.choice(_CODES)
                if rng.random() < 0.5:
                    args["message"] = "x" * rng.choice([1, 300, 5000])
            if command == "grant_credit":
                args["n"] = rng.choice([1, 100, 5000, 0xFFFF_FFFF])
            call(command, args)
        elif r < 0.62:
            steps.append({"op": "deliver", "from": side, "frames": []})
        elif r < 0.8:
            steps.append({"op": "events", "side": side, "expect": []})
        elif r < 0.85:
            steps.append({"op": "advance", "ms": rng.choice([1, 10, 60, 200, 600])})
        elif r < 0.89:
            steps.append({"op": "inject", "side": side, "hex": _frame_hex(rng)})
        elif r < 0.9:
            garbage = rng.randbytes(rng.randrange(1, 40)).hex()
            steps.append({"op": "inject", "side": side, "hex": garbage})
        elif r < 0.92:
            call("ping", {})
        elif r < 0.935:
            args = {"code": rng.choice(_CODES)}
            if rng.random() < 0.5:
                args["message"] = "bye"
            call("close", args)
        elif r < 0.94:
            steps.append({"op": "drop", "side": side, "frames": []})
        elif r < 0.945:
            steps.append({"op": "eof", "side": side})
        else:
            steps.append({"op": "check", "side": side, "state": dict(_STATE)})
    for side in ("client", "server"):
        steps.append({"op": "check", "side": side, "state": dict(_STATE)})
    return {
        "name": name,
        "note": "random",
        "client": _config(rng),
        "server": _config(rng),
        "steps": steps,
    }


def conversations(seed: int, count: int) -> list[Json]:
    """``count`` conversations from ``seed``, alternating the profiles."""
    rng = random.Random(seed)
    return [conversation(rng, f"random-{seed}-{i}", gentle=i % 2 == 1) for i in range(count)]
