//! Limits and timeouts: every bound the core enforces, with its default.
//!
//! Each field's doc gives the default, the unit, what breaching it does on
//! the wire and the memory it can cost. "Unlimited" or "off" is `None`, never
//! `0`. Values are checked once by [`Limits::validate`].

use core::time::Duration;

use crate::frame::MAX_FRAME_CEILING;

/// Size, count and budget limits of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame payload we accept, advertised in the handshake.
    /// Default 1 MiB; at most 16 MiB − 1. A larger frame is GOAWAY(TOO_LARGE)
    /// before any of its payload is buffered.
    pub max_frame: u32,
    /// Largest message we accept after reassembly and decompression,
    /// advertised. Default 1 MiB. A larger message is GOAWAY(TOO_LARGE).
    /// Costs up to this many bytes per message being reassembled.
    pub max_message: u32,
    /// Calls and streams the peer may have open towards us at once (counting
    /// handlers still running after a cancel), advertised. Default 100. The
    /// excess is refused with ERROR(REFUSED), never queued.
    pub max_in_flight: u32,
    /// Initial credit of each stream we receive on, in bytes, advertised.
    /// Default 1 MiB. Data beyond it is ERROR(FLOW_CONTROL) on the stream.
    pub initial_stream_credit: u32,
    /// Connection credit, in bytes, advertised: message bytes the peer may
    /// send that we have not yet delivered. Default 4 MiB. Data beyond it is
    /// GOAWAY(FLOW_CONTROL). Bounds the bytes buffered inside the core.
    pub connection_credit: u32,
    /// Largest HELLO or HELLO_ACK payload, in bytes; also the frame limit
    /// until the handshake completes. Default 16 KiB. GOAWAY(TOO_LARGE).
    pub max_handshake: u32,
    /// Size of the fragments we send, in bytes; capped by the peer's frame
    /// limit. Default 64 KiB. Smaller values let control frames and small
    /// calls overtake bulk transfers sooner.
    pub send_fragment: u32,
    /// Bytes of accepted but unsent messages after which `send_*` returns
    /// `Blocked` (a later `Writable` event says retry). Default 8 MiB.
    pub max_send_queue: u64,
    /// Control frames we may have queued (PONG, CREDIT, ERROR...) before we
    /// stop reading input until they are written. Default 64.
    pub max_pending_control: u32,
    /// Peer CANCELs of calls not yet delivered to the application, net of
    /// calls delivered. Default 20. GOAWAY(EXCESSIVE_LOAD).
    pub early_cancel_budget: u32,
    /// Calls and streams we had to end with an error because of something the
    /// peer sent, net of calls completed. Default 1024. GOAWAY(EXCESSIVE_LOAD).
    pub error_reset_budget: u32,
    /// Frames naming finished ids, and ignored extension frames, net of useful
    /// frames. Default 1024. GOAWAY(EXCESSIVE_LOAD).
    pub stray_frame_budget: u32,
    /// Non-final message frames shorter than this many bytes are charged
    /// `small_frame_threshold − len` against [`Limits::small_frame_budget`].
    /// Default 256.
    pub small_frame_threshold: u32,
    /// Budget for small non-final frames, in bytes; frames at or above the
    /// threshold refund their length. Default 25,600. GOAWAY(EXCESSIVE_LOAD).
    pub small_frame_budget: u32,
    /// CREDIT frames the peer may send per message frame we send, accumulated
    /// up to ten times this value. Default 10. GOAWAY(EXCESSIVE_LOAD).
    pub credit_frames_per_data: u32,
    /// PINGs arriving sooner than [`Timeouts::min_ping_interval`] after the
    /// previous one, with no message sent in between, before GOAWAY
    /// (EXCESSIVE_LOAD). Default 2.
    pub max_ping_strikes: u32,
    /// Highest id we open before refusing new calls (`IdsExhausted`) so the
    /// runtime can reconnect. Default 3/4 of the 32-bit id space.
    pub max_local_id: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 1 << 20,
            max_message: 1 << 20,
            max_in_flight: 100,
            initial_stream_credit: 1 << 20,
            connection_credit: 4 << 20,
            max_handshake: 16 * 1024,
            send_fragment: 64 * 1024,
            max_send_queue: 8 << 20,
            max_pending_control: 64,
            early_cancel_budget: 20,
            error_reset_budget: 1024,
            stray_frame_budget: 1024,
            small_frame_threshold: 256,
            small_frame_budget: 25_600,
            credit_frames_per_data: 10,
            max_ping_strikes: 2,
            max_local_id: 0xC000_0000,
        }
    }
}

/// A limit value outside its allowed range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limit {name} = {value} is outside {min}..={max}")]
pub struct InvalidLimit {
    /// The field.
    pub name: &'static str,
    /// The value given.
    pub value: u64,
    /// Smallest allowed.
    pub min: u64,
    /// Largest allowed.
    pub max: u64,
}

/// Smallest frame and message limit an endpoint may set or advertise:
/// room for a prelude and any reason string with its table.
pub const MIN_FRAME: u32 = 1024;

/// Largest credit a window may hold: 2^31 − 1.
pub const MAX_WINDOW: u32 = i32::MAX as u32;

impl Limits {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), InvalidLimit> {
        let check = |name, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) { Ok(()) } else { Err(InvalidLimit { name, value, min, max }) }
        };
        let ceiling = u64::from(MAX_FRAME_CEILING);
        let min = u64::from(MIN_FRAME);
        check("max_frame", self.max_frame.into(), min, ceiling)?;
        check("max_message", self.max_message.into(), min, u64::from(u32::MAX))?;
        check("max_in_flight", self.max_in_flight.into(), 1, u64::from(u32::MAX))?;
        check("initial_stream_credit", self.initial_stream_credit.into(), min, MAX_WINDOW.into())?;
        check("connection_credit", self.connection_credit.into(), min, MAX_WINDOW.into())?;
        check("max_handshake", self.max_handshake.into(), min, ceiling)?;
        check("send_fragment", self.send_fragment.into(), min, ceiling)?;
        check("max_send_queue", self.max_send_queue, 1, u64::MAX)?;
        check("max_pending_control", self.max_pending_control.into(), 4, u64::from(u32::MAX))?;
        check("max_local_id", self.max_local_id.into(), 2, u64::from(u32::MAX))?;
        let any = u64::from(u32::MAX);
        check("early_cancel_budget", self.early_cancel_budget.into(), 1, any)?;
        check("error_reset_budget", self.error_reset_budget.into(), 1, any)?;
        check("stray_frame_budget", self.stray_frame_budget.into(), 1, any)?;
        check("small_frame_budget", self.small_frame_budget.into(), 1, any)?;
        check("credit_frames_per_data", self.credit_frames_per_data.into(), 1, any)?;
        Ok(())
    }
}

/// Timeouts of one connection. Every deadline reaches the runtime through
/// `poll_timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// From connection start to a completed handshake. Default 10 s.
    /// Expiry closes with GOAWAY(TIMEOUT).
    pub handshake: Duration,
    /// A frame whose first byte has arrived must complete within this time.
    /// Default 30 s. Expiry closes with GOAWAY(TIMEOUT).
    pub partial_frame: Duration,
    /// Send a PING after this long without receiving anything. Default
    /// `Some(20 s)`; `None` disables keepalive.
    pub keepalive_interval: Option<Duration>,
    /// Close with GOAWAY(TIMEOUT) when nothing arrives this long after a
    /// keepalive PING. Default 20 s.
    pub keepalive_timeout: Duration,
    /// Close gracefully after this long with no call or stream open and no
    /// frame exchanged. Default `None` (off).
    pub idle: Option<Duration>,
    /// Peer PINGs closer together than this earn a strike. Default 5 s.
    pub min_ping_interval: Duration,
    /// Between the first GOAWAY (last id = MAX) and the second of a graceful
    /// shutdown, if the PING sent with the first is not answered. Default 5 s.
    pub goaway_grace: Duration,
    /// Time allowed for calls in flight to finish after the final GOAWAY,
    /// after which the connection closes regardless. Default 30 s.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            partial_frame: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(20)),
            keepalive_timeout: Duration::from_secs(20),
            idle: None,
            min_ping_interval: Duration::from_secs(5),
            goaway_grace: Duration::from_secs(5),
            drain: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Limits::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_is_named() {
        let l = Limits { max_frame: MAX_FRAME_CEILING + 1, ..Limits::default() };
        assert_eq!(l.validate().unwrap_err().name, "max_frame");
        let l = Limits { initial_stream_credit: 0, ..Limits::default() };
        assert_eq!(l.validate().unwrap_err().name, "initial_stream_credit");
    }
}
