"""Runs every file in ``tests/vectors/`` against the Python core, exactly as
the Rust runner (``crates/gatewire-vectors/tests/vectors.rs``) does."""

from __future__ import annotations

import pytest

from gatewire import services
from gatewire.codec import Frame, FrameDecoder
from gatewire.exceptions import FrameError, Incompatible

from .vectorjson import (
    Json,
    decode_control,
    frame_error_json,
    load,
    raw_frame_json,
    run,
    services_from_json,
)

FRAMES = load("frames.json")
CONTROL = load("control.json")
CONVERSATIONS = load("conversations.json")
SERVICES = load("services.json")


def _decode_chunked(
    data: bytes, max_frame: int, chunk: int
) -> tuple[list[Frame], FrameError | None]:
    """Decodes ``data`` fed in pieces of ``chunk`` bytes."""
    dec = FrameDecoder(max_frame)
    buf = bytearray()
    frames: list[Frame] = []
    chunk = max(chunk, 1)
    for at in range(0, len(data), chunk):
        buf += data[at : at + chunk]
        while True:
            try:
                f = dec.decode(buf)
            except FrameError as e:
                return frames, e
            if f is None:
                break
            frames.append(f)
    try:
        dec.decode_eof(buf)
    except FrameError as e:
        return frames, e
    return frames, None


def _decode_split(data: bytes, max_frame: int, cut: int) -> tuple[list[Frame], FrameError | None]:
    """Decodes ``data`` fed in two pieces, cut at ``cut``."""
    dec = FrameDecoder(max_frame)
    buf = bytearray()
    frames: list[Frame] = []
    for piece in (data[:cut], data[cut:]):
        buf += piece
        while True:
            try:
                f = dec.decode(buf)
            except FrameError as e:
                return frames, e
            if f is None:
                break
            frames.append(f)
    try:
        dec.decode_eof(buf)
    except FrameError as e:
        return frames, e
    return frames, None


def _check(case: Json, result: tuple[list[Frame], FrameError | None], how: str) -> None:
    frames, err = result
    assert [raw_frame_json(f) for f in frames] == case["frames"], f"{case['name']} ({how})"
    actual_err = None if err is None else frame_error_json(err)
    assert actual_err == case["error"], f"{case['name']} ({how})"


def test_frame_file_is_complete() -> None:
    assert FRAMES["version"] == 1
    assert len(FRAMES["cases"]) > 300


@pytest.mark.parametrize("case", FRAMES["cases"], ids=lambda c: c["name"])
def test_frames(case: Json) -> None:
    data = bytes.fromhex(case["hex"])
    # Whole, byte by byte, and in chunks of 2..40 bytes (as the Rust runner).
    chunks = [max(len(data), 1), 1, *range(2, min(len(data), 40))]
    for chunk in chunks:
        _check(case, _decode_chunked(data, case["max_frame"], chunk), f"chunk {chunk}")
    # And split in two at every offset.
    for cut in range(len(data) + 1):
        _check(case, _decode_split(data, case["max_frame"], cut), f"cut {cut}")


@pytest.mark.parametrize("case", CONTROL["cases"], ids=lambda c: c["name"])
def test_control(case: Json) -> None:
    value = decode_control(case["table"], bytes.fromhex(case["hex"]))
    assert (value is None) == case["invalid"]
    assert value == case["value"]


@pytest.mark.parametrize("conv", CONVERSATIONS["conversations"], ids=lambda c: c["name"])
def test_conversation(conv: Json) -> None:
    run(conv)


def test_services_file_is_complete() -> None:
    assert SERVICES["version"] == 1
    assert SERVICES["method_ids"]
    assert SERVICES["hashes"]
    assert any(c["error"] is None for c in SERVICES["checks"])
    assert any(c["error"] is not None for c in SERVICES["checks"])


@pytest.mark.parametrize(
    "case", SERVICES["method_ids"], ids=lambda c: f"{c['service']}/{c['method']}"
)
def test_method_id(case: Json) -> None:
    assert services.method_id(case["service"], case["method"]) == case["id"]


@pytest.mark.parametrize("case", SERVICES["hashes"], ids=lambda c: repr(c["text"]))
def test_fnv1a64(case: Json) -> None:
    assert str(services.fnv1a64(case["text"].encode())) == case["fnv1a64"]
    assert str(services.type_hash(case["text"])) == case["fnv1a64"]


@pytest.mark.parametrize("case", SERVICES["checks"], ids=lambda c: c["name"])
def test_service_check(case: Json) -> None:
    lists = [
        services_from_json(case[k])
        for k in ("server_offers", "server_uses", "client_offers", "client_uses")
    ]
    if case["error"] is None:
        services.check(*lists)
    else:
        with pytest.raises(Incompatible) as e:
            services.check(*lists)
        assert e.value.message == case["error"]
