"""Reading gatewire's WebSocket messages straight off the socket.

``websockets`` parses every frame with a generator, queues each message and
hands it out through ``recv()``, a task switch per message. A gatewire
connection receives one unfragmented binary message per frame, so
:class:`DirectClientConnection` and :class:`DirectServerConnection` (the
``create_connection`` of ``connect`` and ``serve``) read those messages
themselves, in the socket's read callback, and give those of each read to
the connection at once, as a byte stream's data arrives. Everything else
stays with ``websockets``:

- the handshake: it gets the bytes up to the end of the HTTP head; what
  follows is held until the connection is open;
- pings and pongs, complete, are passed to it one by one (it answers pings);
- any other frame (close, text, a fragment, reserved bits, a wrong mask
  bit, a message over its size limit) hands it the rest of the connection,
  from that frame on, and its own checks and close codes apply; so do the
  end of the stream, closing, and a handshake that left anything in its
  buffers.

Both sides stay at a frame boundary: only whole frames are taken here,
and ``websockets`` sees whole frames or everything from one on.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection
from websockets.protocol import Side, State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - depends on the wheel
    from websockets.utils import apply_mask

__all__ = [
    "DirectClientConnection",
    "DirectReading",
    "DirectServerConnection",
    "apply_mask",
    "binary_head",
]

_UNDECIDED, _DIRECT, _HANDED_OVER = range(3)

_END_OF_HEAD = b"\r\n\r\n"
_BINARY_FIN = 0x82
_PING_FIN = 0x89
_PONG_FIN = 0x8A
_MASKED = 0x80
_CONTROL_MAX = 125
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def binary_head(length: int, masked: bool) -> bytes:
    """The header of one unfragmented binary frame of ``length`` bytes
    (RFC 6455 §5.2), without its masking key."""
    bit = _MASKED if masked else 0
    if length < 126:
        return bytes((_BINARY_FIN, bit | length))
    if length < 65536:
        return _HEAD16.pack(_BINARY_FIN, bit | 126, length)
    return _HEAD64.pack(_BINARY_FIN, bit | 127, length)


class DirectReading(asyncio.Protocol):
    """The reading half of a ``websockets`` connection, for gatewire.

    Until :meth:`gw_attach`, messages read are held (reading pauses beyond
    ``early_limit`` bytes); afterwards those of each read go to the sink in
    one list, then ``settled`` is called, except while :meth:`gw_pause`
    holds reading. A pause asked meanwhile holds the next read: as with a
    byte stream's chunk, what one read brings is bounded by the socket's
    read size.
    """

    early_limit = 64 * 1024
    """Bytes held before :meth:`gw_attach` before reading pauses."""

    protocol: Any
    transport: Any
    recv_messages: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gw_mode = _UNDECIDED
        self._gw_head_done = False
        self._gw_tail = b""
        self._gw_buffer = bytearray()
        self._gw_sink: Callable[[list[bytes]], None] | None = None
        self._gw_settled: Callable[[], None] | None = None
        self._gw_paused = False
        self._gw_draining = False
        self._gw_limit = 0
        self._gw_mask_bit = 0

    def _gw_decide(self) -> None:
        """Once open: reads here if ``websockets`` holds nothing of what
        followed the handshake, else hands it the rest."""
        protocol = self.protocol
        if self._gw_mode != _UNDECIDED or protocol.state is not State.OPEN:
            return
        queued = getattr(self, "recv_messages", None)
        reader = getattr(protocol, "reader", None)
        limit = getattr(protocol, "max_message_size", None)
        clean = (
            self._gw_head_done
            and not getattr(protocol, "extensions", True)
            and reader is not None
            and not getattr(reader, "buffer", True)
            and queued is not None
            and len(getattr(queued, "frames", (None,))) == 0
        )
        if not clean or not isinstance(limit, int):
            self.gw_hand_over()
            return
        self._gw_mode = _DIRECT
        self._gw_limit = limit
        # Frames from a client are masked, frames from a server are not
        # (RFC 6455 §5.1).
        self._gw_mask_bit = _MASKED if protocol.side is Side.SERVER else 0

    @property
    def gw_direct(self) -> bool:
        """Whether messages are read here (else by ``websockets``)."""
        self._gw_decide()
        return self._gw_mode == _DIRECT

    def data_received(self, data: bytes) -> None:
        if self._gw_mode == _UNDECIDED:
            data = self._gw_handshake_input(data)
            self._gw_decide()
        if self._gw_mode == _HANDED_OVER:
            if data:
                super().data_received(data)
            return
        self._gw_buffer += data
        if self._gw_sink is None or self._gw_mode == _UNDECIDED:
            if len(self._gw_buffer) >= self.early_limit:
                self.gw_pause()
        elif not self._gw_paused:
            self.gw_drain()

    def _gw_handshake_input(self, data: bytes) -> bytes:
        """Gives ``websockets`` the handshake's bytes, up to the end of the
        HTTP head (a WebSocket upgrade has no body), and returns what
        follows, so that its frame parser has not started on it."""
        if self._gw_head_done:
            return data
        seen = self._gw_tail + data
        end = seen.find(_END_OF_HEAD)
        if end < 0:
            self._gw_tail = seen[-(len(_END_OF_HEAD) - 1) :]
            super().data_received(data)
            return b""
        self._gw_head_done = True
        split = end + len(_END_OF_HEAD) - len(self._gw_tail)
        super().data_received(data[:split])
        rest = data[split:]
        if self.protocol.side is Side.CLIENT and self.protocol.state is not State.OPEN:
            # Refused: the response's body, if any, is websockets' to read.
            self._gw_mode = _HANDED_OVER
        return rest

    def eof_received(self) -> None:
        self.gw_hand_over()
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gw_hand_over()
        super().connection_lost(exc)

    async def close(self, *args: Any, **kwargs: Any) -> None:
        """``websockets``' close, which reads the peer's close frame."""
        self.gw_hand_over()
        await super().close(*args, **kwargs)  # type: ignore[misc]

    def gw_attach(self, sink: Callable[[list[bytes]], None], settled: Callable[[], None]) -> None:
        """Gives every message read from now on, and those held, to
        ``sink``, in order, a list per read, and calls ``settled`` after
        each."""
        self._gw_sink = sink
        self._gw_settled = settled
        if self.gw_direct:
            self.gw_resume()
            self.gw_drain()

    def gw_pause(self) -> None:
        """Holds messages (and pauses reading) until :meth:`gw_resume`."""
        if not self._gw_paused and self._gw_mode != _HANDED_OVER:
            self._gw_paused = True
            self.transport.pause_reading()

    def gw_resume(self) -> None:
        """Gives held messages to the sink again, from the next turn of the
        loop (not from within the caller), and reads again."""
        if self._gw_paused and self._gw_mode == _DIRECT:
            self._gw_paused = False
            self.transport.resume_reading()
            if self._gw_buffer and self._gw_sink is not None:
                asyncio.get_running_loop().call_soon(self.gw_drain)

    def gw_hand_over(self) -> None:
        """Leaves the rest of the connection, held bytes included, to
        ``websockets`` (closing, the end of the stream, a frame it is to
        judge); the messages among them come from its ``recv()``."""
        if self._gw_mode == _HANDED_OVER:
            return
        self._gw_mode = _HANDED_OVER
        self._gw_sink = None
        if self._gw_paused:
            self._gw_paused = False
            self.transport.resume_reading()
        if not self._gw_draining:
            self._gw_give_rest()

    def _gw_give_rest(self) -> None:
        rest = bytes(self._gw_buffer)
        self._gw_buffer.clear()
        if rest:
            super().data_received(rest)

    def gw_drain(self) -> None:
        """Gives every whole message held to the sink (unless paused), then
        calls ``settled`` if it gave any."""
        sink = self._gw_sink
        if self._gw_draining or self._gw_mode != _DIRECT or sink is None or self._gw_paused:
            return
        self._gw_draining = True
        try:
            messages = self._gw_take()
            if messages:
                sink(messages)
        finally:
            self._gw_draining = False
            if self._gw_mode == _HANDED_OVER:
                self._gw_sink = None
                self._gw_give_rest()
        settled = self._gw_settled
        if messages and settled is not None:
            settled()

    def _gw_take(self) -> list[bytes]:
        """Cuts the whole messages from the front of the buffer, up to any
        frame that hands the connection over (passing pings and pongs to
        ``websockets`` on the way)."""
        buffer = self._gw_buffer
        n = len(buffer)
        pos = 0
        messages: list[bytes] = []
        view = memoryview(buffer)
        try:
            mask_bit = self._gw_mask_bit
            while n - pos >= 2 and self._gw_mode == _DIRECT:
                first = buffer[pos]
                second = buffer[pos + 1]
                if second & _MASKED != mask_bit:
                    self._gw_mode = _HANDED_OVER
                    break
                length = second & 0x7F
                head = pos + 2
                if length == 126:
                    if n - pos < 4:
                        break
                    length = _U16.unpack_from(buffer, head)[0]
                    head += 2
                elif length == 127:
                    if n - pos < 10:
                        break
                    length = _U64.unpack_from(buffer, head)[0]
                    head += 8
                if first == _BINARY_FIN:
                    if length > self._gw_limit:
                        self._gw_mode = _HANDED_OVER
                        break
                    body = head + 4 if mask_bit else head
                    end = body + length
                    if end > n:
                        break
                    pos = end
                    if mask_bit:
                        messages.append(apply_mask(view[body:end], bytes(view[head:body])))
                    else:
                        messages.append(bytes(view[body:end]))
                elif first in (_PING_FIN, _PONG_FIN) and length <= _CONTROL_MAX:
                    end = head + (4 if mask_bit else 0) + length
                    if end > n:
                        break
                    frame = bytes(view[pos:end])
                    pos = end
                    super().data_received(frame)
                else:
                    self._gw_mode = _HANDED_OVER
                    break
            return messages
        finally:
            view.release()
            del buffer[:pos]


class DirectClientConnection(DirectReading, ClientConnection):
    """``websockets``' client connection, with gatewire's reading."""


class DirectServerConnection(DirectReading, ServerConnection):
    """``websockets``' server connection, with gatewire's reading."""
