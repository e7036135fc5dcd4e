"""Whole frames: encoding into caller-owned buffers and incremental decoding
from a byte stream. Mirrors ``gatewire_proto::codec``.

:meth:`FrameDecoder.decode` follows the tokio-util decoder contract: a
:class:`Frame` when one is complete, ``None`` when more bytes are needed
(nothing is consumed), an exception when the stream is unusable. After an
error the decoder raises the same error forever: a framing error is fatal
and nothing after it is delivered.

The decoder never allocates from a declared length: it only slices bytes
that have arrived, so memory follows the bytes received.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .exceptions import FrameError, InsufficientSize, Truncated
from .frame import HEADER_LEN, U32_MAX, Header, trusted_constructor

__all__ = ["Frame", "FrameDecoder"]


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame: its header and its payload (``header.length == len(payload)``)."""

    header: Header
    payload: bytes

    @classmethod
    def new(cls, header: Header, payload: bytes) -> Frame:
        """A frame with ``header.length`` set from the payload.

        Raises:
            ValueError: when the payload is longer than ``0xFFFFFFFF`` bytes.
        """
        if len(payload) > U32_MAX:
            raise ValueError("frame payload longer than u32::MAX")
        if header.length != len(payload):
            header = replace(header, length=len(payload))
        return cls(header, bytes(payload))

    def encoded_len(self) -> int:
        """Bytes this frame occupies on a byte stream."""
        return HEADER_LEN + len(self.payload)

    def encode(self, buf: bytearray | memoryview, offset: int = 0) -> int:
        """Writes header and payload into ``buf`` at ``offset`` and returns the
        bytes written.

        Raises:
            InsufficientSize: ``buf`` is too small.
        """
        required = self.encoded_len()
        available = max(0, len(buf) - offset)
        if available < required:
            raise InsufficientSize(required, available)
        self.header.encode(buf, offset)
        buf[offset + HEADER_LEN : offset + required] = self.payload
        return required

    def encode_to(self, buf: bytearray) -> None:
        """Appends header and payload to ``buf``."""
        buf += self.header.to_bytes()
        buf += self.payload

    def to_bytes(self) -> bytes:
        """Header and payload as one byte string."""
        return self.header.to_bytes() + self.payload

    @classmethod
    def decode_exact(cls, message: bytes | bytearray | memoryview, max_payload: int) -> Frame:
        """Decodes exactly one frame from a message-preserving transport (one
        WebSocket binary message): trailing or missing bytes are an error.

        Raises:
            FrameError: a header rule is broken, or the length does not match
                (:class:`~gatewire.exceptions.Truncated`).
        """
        header = Header.decode(message, max_payload)
        if header is None:
            raise Truncated(len(message), HEADER_LEN)
        need = HEADER_LEN + header.length
        if len(message) != need:
            raise Truncated(len(message), need)
        if type(message) is bytes:
            payload = message[HEADER_LEN:]
        else:
            with memoryview(message) as view, view[HEADER_LEN:] as part:
                payload = bytes(part)
        return _new_frame(header, payload) if cls is Frame else cls(header, payload)


_COPY_ONCE = 1024
"""Payloads from this size on are copied out of the input once, through a
memoryview; shorter ones by slicing, which copies twice but costs less."""


def _copy_once(buf: bytearray, at: int, n: int) -> bytes:
    """``buf[at : at + n]`` as bytes, copied once."""
    # Both views are released here, before the caller resizes ``buf``.
    with memoryview(buf) as view, view[at : at + n] as part:
        return bytes(part)


class FrameDecoder:
    """Incremental frame decoder for byte-stream transports.

    The caller owns the receive buffer (a ``bytearray``); :meth:`decode`
    consumes complete frames from its front.
    """

    __slots__ = ("_failed", "_header", "_max_payload")

    def __init__(self, max_payload: int) -> None:
        """A decoder that rejects payloads longer than ``max_payload`` bytes."""
        self._max_payload = max_payload
        self._header: Header | None = None
        self._failed: FrameError | None = None

    @property
    def max_payload(self) -> int:
        """The payload limit in force."""
        return self._max_payload

    def set_max_payload(self, max_payload: int) -> None:
        """Changes the payload limit for frames whose header has not been read."""
        self._max_payload = max_payload

    def is_mid_frame(self, buf: bytearray) -> bool:
        """Whether a frame has started but not completed (bytes are buffered,
        or a header has been read)."""
        return self._header is not None or len(buf) > 0

    def decode(self, buf: bytearray) -> Frame | None:
        """Decodes the next frame from the front of ``buf``.

        Returns:
            The frame, or ``None`` when more bytes are needed.

        Raises:
            FrameError: the stream is unusable; raised again on every call.
        """
        if self._failed is not None:
            raise self._failed
        header = self._header
        if header is None:
            try:
                header = Header.decode(buf, self._max_payload)
            except FrameError as e:
                self._failed = e
                raise
            if header is None:
                return None
            n = header.length
            if len(buf) >= HEADER_LEN + n:
                # The whole frame is here (the usual case): one cut.
                end = HEADER_LEN + n
                if n < _COPY_ONCE:
                    payload = bytes(buf[HEADER_LEN:end])
                else:
                    payload = _copy_once(buf, HEADER_LEN, n)
                del buf[:end]
                return _new_frame(header, payload)
            del buf[:HEADER_LEN]
            self._header = header
        n = header.length
        if len(buf) < n:
            return None
        self._header = None
        payload = bytes(buf[:n]) if n < _COPY_ONCE else _copy_once(buf, 0, n)
        del buf[:n]
        return _new_frame(header, payload)

    def decode_eof(self, buf: bytearray) -> None:
        """At end of stream: returns when no partial frame is left.

        Raises:
            FrameError: the sticky error, or
                :class:`~gatewire.exceptions.Truncated` for a partial frame.
        """
        if self._failed is not None:
            raise self._failed
        header = self._header
        if header is None:
            if not buf:
                return
            raise Truncated(len(buf), HEADER_LEN)
        raise Truncated(HEADER_LEN + len(buf), HEADER_LEN + header.length)


_new_frame: Callable[[Header, bytes], Frame] = trusted_constructor(Frame)
"""``Frame(header, payload)`` for a decoded header and its payload."""
