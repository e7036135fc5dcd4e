"""Header, frame types, flags, codecs and error codes."""

from __future__ import annotations

import dataclasses

import pytest

from gatewire import exceptions as ex
from gatewire.code import ErrorCode
from gatewire.frame import (
    HEADER_LEN,
    MAX_FRAME_CEILING,
    U32_MAX,
    Codec,
    Flags,
    FrameType,
    Header,
    trusted_header,
)
from gatewire.protocol import Message, new_message


def test_header_round_trip() -> None:
    h = Header(
        length=0x0001_0304,
        ty=FrameType.REQUEST,
        flags=Flags.MORE.union(Flags.DEADLINE),
        codec=Codec.POSTCARD,
        id=7,
        arg=0xDEAD_BEEF,
    )
    data = h.to_bytes()
    assert data[:4] == bytes([4, 3, 1, 0])
    assert len(data) == HEADER_LEN
    assert Header.decode(data, U32_MAX) == h


def test_encode_into_caller_buffer() -> None:
    h = Header.new(FrameType.PING, 0, 0, 8)
    buf = bytearray(20)
    h.encode(buf, 2)
    assert bytes(buf[2:18]) == h.to_bytes()
    with pytest.raises(ex.InsufficientSize) as e:
        h.encode(bytearray(15))
    assert (e.value.required, e.value.available) == (16, 15)


def test_short_input_needs_more() -> None:
    data = Header.new(FrameType.PING, 0, 0, 8).to_bytes()
    for n in range(HEADER_LEN):
        assert Header.decode(data[:n], 1024) is None


def test_length_checked_before_anything_else() -> None:
    data = bytearray(Header.new(FrameType(0x42), 0, 0, 1025).to_bytes())
    data[7] = 1
    with pytest.raises(ex.FrameTooLarge) as e:
        Header.decode(data, 1024)
    assert (e.value.len, e.value.max) == (1025, 1024)
    assert e.value.code == ErrorCode.TOO_LARGE


def test_reserved_byte_checked_before_type() -> None:
    data = bytearray(Header.new(FrameType(0x42), 0, 0, 0).to_bytes())
    data[7] = 9
    with pytest.raises(ex.ReservedByte):
        Header.decode(data, 1024)


def test_ceiling_applies_over_configured_limit() -> None:
    data = Header.new(FrameType.RESPONSE, 1, 0, MAX_FRAME_CEILING + 1).to_bytes()
    with pytest.raises(ex.FrameTooLarge) as e:
        Header.decode(data, U32_MAX)
    assert e.value.max == MAX_FRAME_CEILING


def test_every_type_byte_has_a_defined_outcome() -> None:
    for b in range(256):
        ty = FrameType(b)
        h = Header.new(ty, 0, 0, 0)
        if ty.is_extension():
            h.validate()
        elif ty.name is None:
            with pytest.raises(ex.UnknownType):
                h.validate()


def test_reserved_flag_bits_are_rejected_on_every_type() -> None:
    for b in range(1, 0x0F):
        ty = FrameType(b)
        for bit in range(4, 8):
            h = Header(length=0, ty=ty, flags=Flags(1 << bit), id=1)
            with pytest.raises(ex.InvalidFlags) as e:
                h.validate()
            assert e.value.flags == 1 << bit


def test_validation_order_flags_before_codec_before_id() -> None:
    # A PING with bad flags, a codec and an id: flags are reported first.
    h = Header(length=8, ty=FrameType.PING, flags=Flags(0x10), codec=Codec(1), id=1)
    with pytest.raises(ex.InvalidFlags):
        h.validate()
    h = Header(length=8, ty=FrameType.PING, codec=Codec(1), id=1)
    with pytest.raises(ex.UnexpectedCodec):
        h.validate()
    h = Header(length=7, ty=FrameType.PING, id=1, arg=1)
    with pytest.raises(ex.InvalidId):
        h.validate()
    h = Header(length=7, ty=FrameType.PING, arg=1)
    with pytest.raises(ex.InvalidArg):
        h.validate()
    h = Header(length=7, ty=FrameType.PING)
    with pytest.raises(ex.InvalidLength):
        h.validate()


@pytest.mark.parametrize(
    ("ty", "id_", "arg", "length", "error"),
    [
        (FrameType.REQUEST, 0, 1, 0, ex.InvalidId),
        (FrameType.CREDIT, 0, 0, 0, ex.InvalidArg),
        (FrameType.CREDIT, 5, 1, 1, ex.InvalidLength),
        (FrameType.ERROR, 1, 0, 0, ex.InvalidArg),
        (FrameType.ERROR, 1, 0x1_0000, 0, ex.InvalidArg),
        (FrameType.GOAWAY, 0, 0x1_0000, 0, ex.InvalidArg),
        (FrameType.CANCEL, 1, 0, 1, ex.InvalidLength),
        (FrameType.CONTINUATION, 1, 0, 0, ex.InvalidLength),
        (FrameType.RESPONSE, 1, 9, 0, ex.InvalidArg),
    ],
)
def test_per_type_rules(
    ty: FrameType, id_: int, arg: int, length: int, error: type[ex.FrameError]
) -> None:
    with pytest.raises(error):
        Header(length=length, ty=ty, id=id_, arg=arg).validate()


def test_any_id_on_credit_and_goaway() -> None:
    Header(length=0, ty=FrameType.CREDIT, id=0, arg=1).validate()
    Header(length=0, ty=FrameType.CREDIT, id=9, arg=1).validate()
    Header(length=0, ty=FrameType.GOAWAY, id=U32_MAX).validate()


def test_header_fields_are_range_checked() -> None:
    with pytest.raises(ValueError, match="length"):
        Header(length=U32_MAX + 1, ty=FrameType.PING)
    with pytest.raises(ValueError, match="id"):
        Header(length=0, ty=FrameType.PING, id=-1)
    with pytest.raises(ValueError, match="frame type"):
        FrameType(256)
    with pytest.raises(ValueError, match="flags"):
        Flags(-1)


def test_type_and_flag_helpers() -> None:
    assert FrameType.STREAM_OPEN.opens_id()
    assert not FrameType.STREAM_DATA.opens_id()
    assert FrameType.STREAM_DATA.is_message()
    assert not FrameType.CONTINUATION.is_message()
    assert FrameType(0x80).is_extension()
    assert FrameType(0x80).allowed_flags() == 0xFF
    assert repr(FrameType.PING) == "FrameType.PING"
    assert repr(FrameType(0x42)) == "FrameType(0x42)"
    assert str(FrameType(0x42)) == "frame type 0x42"
    assert Flags(0x0B).contains(Flags.MORE)
    assert not Flags(0x0B).contains(Flags.END)
    assert Flags(0x0B).without(Flags.MORE) == 0x0A
    assert Codec(9).name is None
    assert repr(Codec.JSON) == "Codec.JSON"


def test_error_codes_are_open() -> None:
    code = ErrorCode(0x1234)
    assert code.name is None
    assert int(code) == 0x1234
    assert repr(code) == "ErrorCode(0x1234)"
    assert ErrorCode.REFUSED.name == "REFUSED"
    assert ErrorCode.REFUSED == 5
    assert ErrorCode(0x8001).is_application()
    assert not ErrorCode.INTERNAL.is_application()
    assert ErrorCode.from_name("TIMEOUT") == ErrorCode.TIMEOUT
    assert ErrorCode.from_name("0x8001") == 0x8001
    assert str(ErrorCode.TIMEOUT) == "TIMEOUT (0x000d)"
    with pytest.raises(ValueError, match="outside"):
        ErrorCode(0x1_0000)
    with pytest.raises(ValueError, match="unknown"):
        ErrorCode.from_name("NOPE")


def test_trusted_construction_builds_the_frozen_type() -> None:
    h = trusted_header(32, FrameType.REQUEST, Flags.DEADLINE, Codec.JSON, 5, 0x1234)
    built = Header(32, FrameType.REQUEST, Flags.DEADLINE, Codec.JSON, 5, 0x1234)
    assert type(h) is Header
    assert h == built and hash(h) == hash(built) and repr(h) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.id = 7  # type: ignore[misc]
    assert h.id == 5
    message = new_message(Codec.RAW, b"x", None)
    assert type(message) is Message and message == Message(Codec.RAW, b"x")
