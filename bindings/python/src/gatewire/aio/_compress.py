"""zstd per-message compression, with the output bounded by the declared
size (itself checked against the message limit by the core). Mirrors
``gatewire::compress``.

Optional: compression is offered in the handshake only when the
``zstandard`` package is installed (``pip install 'gatewire[zstd]'``).

python-zstandard's one-shot ``decompress`` allocates the content size a
frame header declares, whatever ``max_output_size`` says. So the header is
read first: a declared content size that differs from the size gatewire's
prelude declared is refused before anything is allocated; a frame without
one is decompressed into a buffer of exactly the declared size. The window
is capped at 2^23 bytes, dictionaries are refused, and the output must be
exactly the declared size with no trailing input.
"""

from __future__ import annotations

from typing import Any

from ..code import ErrorCode
from ..protocol import Message
from .errors import Status

__all__ = ["AVAILABLE", "WINDOW_LOG_MAX", "Compressor", "decompress"]

_zstd: Any
try:  # pragma: no cover - depends on the environment
    import zstandard as _zstd
except ImportError:  # pragma: no cover
    _zstd = None

AVAILABLE: bool = _zstd is not None
"""Whether the ``zstandard`` package is installed."""

WINDOW_LOG_MAX = 23
"""Largest zstd window a decoder accepts: 2^23 bytes (8 MiB)."""

MAX_LEVEL = 19
"""Highest zstd level used; higher levels are lowered to it, because their
windows exceed :data:`WINDOW_LOG_MAX`."""

_CONTENT_SIZE_UNKNOWN = (1 << 64) - 1


class Compressor:
    """Compresses outgoing messages (one zstd context, reused)."""

    __slots__ = ("_cctx",)

    def __init__(self, level: int) -> None:
        if _zstd is None:  # pragma: no cover - callers check AVAILABLE
            raise RuntimeError("zstandard is not installed")
        # Levels above 19 ("ultra") use windows beyond 2^WINDOW_LOG_MAX on
        # large messages, which every gatewire receiver refuses.
        self._cctx = _zstd.ZstdCompressor(level=min(level, MAX_LEVEL), write_content_size=True)

    def compress(self, message: Message) -> Message:
        """The message compressed, if that makes it smaller; otherwise the
        message itself."""
        body = message.body
        out = bytes(self._cctx.compress(body))
        if len(out) < len(body):
            return Message.compressed(message.codec, out, len(body))
        return message


def _bad(what: str) -> Status:
    return Status(ErrorCode.PROTOCOL_VIOLATION, f"compressed message: {what}")


def decompress(message: Message) -> Message:
    """Decompresses a message whose body is compressed, producing exactly
    the declared number of bytes; a message that is not compressed is
    returned as it is.

    Raises:
        Status: ``PROTOCOL_VIOLATION`` when the body is not one valid zstd
            frame of exactly the declared size (or no decoder is installed).
    """
    declared = message.uncompressed_len
    if declared is None:
        return message
    if _zstd is None:
        raise _bad("no zstd decoder installed")
    data = message.body
    try:
        params = _zstd.get_frame_parameters(data)
    except _zstd.ZstdError:
        raise _bad("invalid frame header") from None
    content_size = int(params.content_size)
    if content_size not in (_CONTENT_SIZE_UNKNOWN, declared):
        raise _bad("frame content size differs from the declared size")
    if params.dict_id != 0:
        raise _bad("dictionaries are not negotiated")
    if declared == 0:
        # max_output_size=0 would mean "unlimited" to python-zstandard.
        if content_size != 0:
            raise _bad("invalid or larger than declared")
        return Message(message.codec, b"")
    dctx = _zstd.ZstdDecompressor(max_window_size=1 << WINDOW_LOG_MAX)
    try:
        out = dctx.decompress(data, max_output_size=declared, allow_extra_data=False)
    except _zstd.ZstdError:
        raise _bad("invalid or larger than declared") from None
    if len(out) != declared:
        raise _bad("shorter than declared")
    return Message(message.codec, bytes(out))
