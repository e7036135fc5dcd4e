"""Limits and timeouts: every bound the core enforces, with its default.
Mirrors ``gatewire_proto::limits``.

Each field's doc gives the default, the unit, what breaching it does on the
wire and the memory it can cost. "Unlimited" or "off" is ``None``, never
``0``. Values are checked once by :meth:`Limits.validate` and
:meth:`Timeouts.validate` (a :class:`~gatewire.protocol.Connection` calls
both). Durations are integer milliseconds, like every time in the core.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .exceptions import InvalidLimit
from .frame import MAX_FRAME_CEILING, U32_MAX, U64_MAX

__all__ = ["MAX_WINDOW", "MIN_FRAME", "Limits", "Timeouts"]

MIN_FRAME = 1024
"""Smallest frame and message limit an endpoint may set or advertise: room
for a prelude and any reason string with its table."""

MAX_WINDOW = (1 << 31) - 1
"""Largest credit a window may hold: 2^31 - 1."""


def _check(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidLimit(name, -1, low, high)
    if not low <= value <= high:
        raise InvalidLimit(name, value, low, high)


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Size, count and budget limits of one connection."""

    max_frame: int = 1 << 20
    """Largest frame payload we accept, advertised in the handshake. Default
    1 MiB; 1 KiB..=16 MiB - 1. A larger frame is GOAWAY(TOO_LARGE) before any of
    its payload is buffered."""
    max_message: int = 1 << 20
    """Largest message we accept after reassembly and decompression,
    advertised. Default 1 MiB. A larger message is GOAWAY(TOO_LARGE). Costs
    up to this many bytes per message being reassembled."""
    max_in_flight: int = 100
    """Calls and streams the peer may have open towards us at once (counting
    handlers still running after a cancel), advertised. Default 100. The
    excess is refused with ERROR(REFUSED), never queued."""
    initial_stream_credit: int = 1 << 20
    """Initial credit of each stream we receive on, in bytes, advertised.
    Default 1 MiB; 1 KiB..=2^31 - 1. Data beyond it is ERROR(FLOW_CONTROL)
    on the stream."""
    connection_credit: int = 4 << 20
    """Connection credit, in bytes, advertised: message bytes the peer may
    send that we have not yet delivered. Default 4 MiB; 1 KiB..=2^31 - 1.
    Data beyond it is GOAWAY(FLOW_CONTROL). Bounds the bytes buffered inside
    the core."""
    max_handshake: int = 16 * 1024
    """Largest HELLO or HELLO_ACK payload, in bytes; also the frame limit
    until the handshake completes. Default 16 KiB. GOAWAY(TOO_LARGE)."""
    send_fragment: int = 64 * 1024
    """Size of the fragments we send, in bytes; capped by the peer's frame
    limit. Default 64 KiB."""
    max_send_queue: int = 8 << 20
    """Bytes of accepted but unsent messages after which ``send_*`` raises
    ``Blocked`` (a later ``Writable`` event says retry). Default 8 MiB."""
    max_pending_control: int = 64
    """Control frames we may have queued (PONG, CREDIT, ERROR...) before we
    stop reading input until they are written. Default 64."""
    early_cancel_budget: int = 20
    """Peer CANCELs of calls not yet delivered to the application, net of
    calls delivered. Default 20. GOAWAY(EXCESSIVE_LOAD)."""
    error_reset_budget: int = 1024
    """Calls and streams we had to end with an error because of something
    the peer sent, net of calls completed. Default 1024.
    GOAWAY(EXCESSIVE_LOAD)."""
    stray_frame_budget: int = 1024
    """Frames naming finished ids, and ignored extension frames, net of
    useful frames. Default 1024. GOAWAY(EXCESSIVE_LOAD)."""
    small_frame_threshold: int = 256
    """Non-final message frames shorter than this many bytes are charged
    ``small_frame_threshold - len`` against ``small_frame_budget``. Default
    256."""
    small_frame_budget: int = 25_600
    """Budget for small non-final frames, in bytes; frames at or above the
    threshold refund their length. Default 25,600. GOAWAY(EXCESSIVE_LOAD)."""
    credit_frames_per_data: int = 10
    """CREDIT frames the peer may send per message frame we send,
    accumulated up to ten times this value. Default 10.
    GOAWAY(EXCESSIVE_LOAD)."""
    max_ping_strikes: int = 2
    """PINGs arriving sooner than ``Timeouts.min_ping_interval`` after the
    previous one, with no message sent in between, before
    GOAWAY(EXCESSIVE_LOAD). Default 2."""
    max_local_id: int = 0xC000_0000
    """Highest id we open before refusing new calls (``IdsExhausted``) so the
    runtime can reconnect. Default 3/4 of the 32-bit id space."""

    def validate(self) -> None:
        """Checks every value against its allowed range (the Rust ranges,
        plus the u32/u64 ranges the Rust types imply).

        Raises:
            InvalidLimit: the first field out of range, in the Rust order.
        """
        ceiling = MAX_FRAME_CEILING
        _check("max_frame", self.max_frame, MIN_FRAME, ceiling)
        _check("max_message", self.max_message, MIN_FRAME, U32_MAX)
        _check("max_in_flight", self.max_in_flight, 1, U32_MAX)
        _check("initial_stream_credit", self.initial_stream_credit, MIN_FRAME, MAX_WINDOW)
        _check("connection_credit", self.connection_credit, MIN_FRAME, MAX_WINDOW)
        _check("max_handshake", self.max_handshake, MIN_FRAME, ceiling)
        _check("send_fragment", self.send_fragment, MIN_FRAME, ceiling)
        _check("max_send_queue", self.max_send_queue, 1, U64_MAX)
        _check("max_pending_control", self.max_pending_control, 4, U32_MAX)
        _check("max_local_id", self.max_local_id, 2, U32_MAX)
        _check("early_cancel_budget", self.early_cancel_budget, 1, U32_MAX)
        _check("error_reset_budget", self.error_reset_budget, 1, U32_MAX)
        _check("stray_frame_budget", self.stray_frame_budget, 1, U32_MAX)
        _check("small_frame_budget", self.small_frame_budget, 1, U32_MAX)
        _check("credit_frames_per_data", self.credit_frames_per_data, 1, U32_MAX)
        # u32 in Rust, unchecked there because the type bounds them.
        _check("small_frame_threshold", self.small_frame_threshold, 0, U32_MAX)
        _check("max_ping_strikes", self.max_ping_strikes, 0, U32_MAX)


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """Timeouts of one connection, in integer milliseconds. Every deadline
    reaches the runtime through ``poll_timeout``."""

    handshake: int = 10_000
    """From connection start to a completed handshake. Default 10 s. Expiry
    closes with GOAWAY(TIMEOUT)."""
    partial_frame: int = 30_000
    """A frame whose first byte has arrived (and a fragmented message whose
    first frame has) must complete within this time. Default 30 s. Expiry
    closes with GOAWAY(TIMEOUT)."""
    keepalive_interval: int | None = 20_000
    """Send a PING after this long without receiving anything. Default 20 s;
    ``None`` disables keepalive."""
    keepalive_timeout: int = 20_000
    """Close with GOAWAY(TIMEOUT) when nothing arrives this long after a
    keepalive PING. Default 20 s."""
    idle: int | None = None
    """Close gracefully after this long with no call or stream open and no
    frame exchanged. Default ``None`` (off)."""
    min_ping_interval: int = 5_000
    """Peer PINGs closer together than this earn a strike. Default 5 s."""
    goaway_grace: int = 5_000
    """Between the first GOAWAY (last id = MAX) and the second of a graceful
    shutdown, if the PING sent with the first is not answered. Default 5 s."""
    drain: int = 30_000
    """Time allowed for calls in flight to finish after the final GOAWAY,
    after which the connection closes regardless. Default 30 s."""

    def validate(self) -> None:
        """Checks that every duration is a non-negative integer (Rust
        ``Duration`` cannot be negative).

        Raises:
            InvalidLimit: the first field out of range.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("keepalive_interval", "idle"):
                continue
            _check(f.name, value, 0, U64_MAX)
