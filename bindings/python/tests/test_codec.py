"""The frame decoder: contract, split points and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatewire import exceptions as ex
from gatewire.codec import Frame, FrameDecoder
from gatewire.frame import HEADER_LEN, Codec, Flags, FrameType, Header


def sample() -> Frame:
    return Frame.new(
        Header(length=0, ty=FrameType.RESPONSE, codec=Codec.FLATBUFFERS, id=3), b"hello"
    )


def decode_all(dec: FrameDecoder, buf: bytearray) -> list[Frame]:
    out = []
    while (f := dec.decode(buf)) is not None:
        out.append(f)
    return out


def test_encode_reports_required_size() -> None:
    f = sample()
    with pytest.raises(ex.InsufficientSize) as e:
        f.encode(bytearray(20))
    assert (e.value.required, e.value.available) == (21, 20)
    buf = bytearray(32)
    assert f.encode(buf) == 21
    assert bytes(buf[:21]) == f.to_bytes()


def test_new_sets_length() -> None:
    f = Frame.new(Header.new(FrameType.RESPONSE, 1, 0, 999), b"abc")
    assert f.header.length == 3


def test_decode_whole_and_byte_by_byte() -> None:
    f = sample()
    wire = bytearray()
    f.encode_to(wire)
    f.encode_to(wire)

    dec = FrameDecoder(1024)
    buf = bytearray(wire)
    assert decode_all(dec, buf) == [f, f]
    assert buf == b""

    dec = FrameDecoder(1024)
    buf = bytearray()
    out: list[Frame] = []
    for b in wire:
        buf.append(b)
        out.extend(decode_all(dec, buf))
    assert out == [f, f]
    dec.decode_eof(buf)


def test_need_more_consumes_nothing() -> None:
    dec = FrameDecoder(1024)
    buf = bytearray(sample().to_bytes()[:10])
    assert dec.decode(buf) is None
    assert len(buf) == 10
    assert dec.is_mid_frame(buf)


def test_error_is_sticky() -> None:
    wire = bytearray(Header.new(FrameType(0x20), 0, 0, 0).to_bytes())
    wire += sample().to_bytes()
    dec = FrameDecoder(1024)
    with pytest.raises(ex.UnknownType) as first:
        dec.decode(wire)
    with pytest.raises(ex.UnknownType) as again:
        dec.decode(wire)
    assert again.value is first.value
    with pytest.raises(ex.UnknownType):
        dec.decode_eof(wire)


def test_declared_length_is_not_reserved() -> None:
    # A header declaring 1 MiB: the decoder keeps only the header, and waits.
    dec = FrameDecoder(1 << 20)
    buf = bytearray(Header.new(FrameType.RESPONSE, 1, 0, 1 << 20).to_bytes())
    assert dec.decode(buf) is None
    assert len(buf) == 0
    assert dec.is_mid_frame(buf)


def test_eof_mid_frame_is_truncation() -> None:
    wire = sample().to_bytes()
    for cut in range(1, len(wire)):
        dec = FrameDecoder(1024)
        buf = bytearray(wire[:cut])
        assert dec.decode(buf) is None
        with pytest.raises(ex.Truncated) as e:
            dec.decode_eof(buf)
        assert e.value.have == cut
        assert e.value.need == (HEADER_LEN if cut < HEADER_LEN else len(wire))


def test_exact_message_decoding() -> None:
    wire = sample().to_bytes()
    assert Frame.decode_exact(wire, 1024) == sample()
    with pytest.raises(ex.Truncated):
        Frame.decode_exact(wire + b"\x00", 1024)
    with pytest.raises(ex.Truncated):
        Frame.decode_exact(wire[:8], 1024)


def test_limit_can_change_between_frames() -> None:
    dec = FrameDecoder(4)
    buf = bytearray(sample().to_bytes())
    dec.set_max_payload(5)
    assert dec.decode(buf) == sample()
    assert dec.max_payload == 5


# ----- properties ---------------------------------------------------------------


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    """Frames that pass the header rules, of every defined type."""
    ty = FrameType(draw(st.integers(1, 0x0E)))
    codec = draw(st.integers(0, 255))
    id_ = max(draw(st.integers(0, 0xFFFF_FFFF)), 1)
    arg = draw(st.integers(0, 0xFFFF_FFFF))
    payload = draw(st.binary(max_size=300))
    flags = Flags(int(ty.allowed_flags()) & codec)
    if ty in (FrameType.HELLO, FrameType.HELLO_ACK, FrameType.PING, FrameType.PONG):
        id_ = 0
    if ty in (FrameType.ERROR, FrameType.GOAWAY):
        arg &= 0xFFFF
    elif ty == FrameType.CREDIT:
        arg = max(arg, 1)
    elif ty not in (FrameType.REQUEST, FrameType.EVENT, FrameType.STREAM_OPEN):
        arg = 0
    if ty == FrameType.ERROR:
        arg = max(arg, 1)
    if ty in (FrameType.PING, FrameType.PONG):
        payload = payload[:8].ljust(8, b"\x00")
    elif ty in (FrameType.CREDIT, FrameType.CANCEL):
        payload = b""
    elif ty == FrameType.CONTINUATION and not payload:
        payload = b"\x00"
    header = Header(
        length=0,
        ty=ty,
        flags=flags,
        codec=Codec(codec) if ty.is_message() else Codec.RAW,
        id=id_,
        arg=arg,
    )
    return Frame.new(header, payload)


def decode_chunked(
    wire: bytes, cuts: list[int], limit: int = 1024
) -> tuple[list[Frame], str | None]:
    dec = FrameDecoder(limit)
    buf = bytearray()
    out: list[Frame] = []
    points = [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    start = 0
    try:
        for point in points:
            end = max(point, start)
            buf += wire[start:end]
            start = end
            out.extend(decode_all(dec, buf))
        dec.decode_eof(buf)
    except ex.FrameError as e:
        return out, f"{type(e).__name__}: {e}"
    return out, None


@given(st.lists(frames(), max_size=20), st.lists(st.integers(min_value=0), max_size=30))
def test_round_trip_any_split(fs: list[Frame], cuts: list[int]) -> None:
    wire = bytearray()
    for f in fs:
        f.header.validate()
        f.encode_to(wire)
    data = bytes(wire)
    assert decode_chunked(data, []) == (fs, None)
    assert decode_chunked(data, cuts) == (fs, None)
    assert decode_chunked(data, list(range(len(data)))) == (fs, None)


@given(
    st.lists(st.binary(min_size=1000, max_size=3000), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=30),
)
def test_large_payloads_round_trip_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    """Payloads of 1 KiB and more are cut out of the input another way
    than short ones: whole or arriving in pieces, they read as sent."""
    header = Header(
        length=0, ty=FrameType.STREAM_DATA, flags=Flags(0), codec=Codec.RAW, id=1, arg=0
    )
    fs = [Frame.new(header, p) for p in payloads]
    wire = bytearray()
    for f in fs:
        f.encode_to(wire)
    data = bytes(wire)
    assert decode_chunked(data, [], 4096) == (fs, None)
    assert decode_chunked(data, cuts, 4096) == (fs, None)


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=30))
def test_arbitrary_bytes_decode_the_same_however_split(wire: bytes, cuts: list[int]) -> None:
    assert decode_chunked(wire, []) == decode_chunked(wire, cuts)
