//! `connection`: a client and a server wired back to back through queues of
//! encoded frames, driven by a sequence of [`Op`]s built with `arbitrary`.
//!
//! Ops are application commands on either side, the passing of fake time,
//! and the network: delivering frames (whole or a few bytes), dropping or
//! corrupting one in transit, injecting a raw frame or raw bytes, and end of
//! stream. After every op both sides' `poll_transmit` and `poll_event` are
//! drained. At most [`MAX_OPS`] ops run; then both sides are closed
//! gracefully and time runs until both are closed.
//!
//! Invariants (see [`crate::track`]): no panic; exactly one `Closed` per
//! side and nothing after it; a closed side has an empty call table, no call
//! in flight, nothing queued and no timer; each id gets at most one
//! `Response`/`CallFailed`, none after a successful `cancel`, and every call
//! issued and not cancelled has exactly one when the side closes; frames a
//! side writes pass header validation; both sides close within bounded fake
//! time. When the network was left alone (no drop, corruption, injection or
//! early end of stream), neither side may accuse the other of malformed
//! frames, protocol violations, flow-control or size-limit breaches: two
//! conforming endpoints never do.

use std::collections::{BTreeSet, VecDeque};

use arbitrary::Arbitrary;
use bytes::Bytes;
use core::time::Duration;
use gatewire_proto::control::ErrorInfo;
use gatewire_proto::limits::MIN_FRAME;
use gatewire_proto::{
    CallId, Codec, Config, Connection, ConnectionError, ErrorCode, Event, Flags, Frame, FrameType, Header, Instant,
    Limits, Message, Role,
};

use crate::DRAIN_LIMIT;
use crate::track::{Issued, Seen, Track, check_sent_frame};

/// Ops run per input at most.
pub const MAX_OPS: usize = 256;
/// Largest message body an op sends.
pub const MAX_BODY: usize = 4096;
/// Largest payload of an injected frame.
pub const MAX_RAW_PAYLOAD: usize = 512;
/// Rounds of delivery and timers the closing phase may take.
const FINALE_ROUNDS: usize = 2048;

/// One of the two endpoints.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The connecting side.
    Client,
    /// The accepting side.
    Server,
}

impl Who {
    fn index(self) -> usize {
        match self {
            Self::Client => 0,
            Self::Server => 1,
        }
    }
}

/// Configuration of one side; `None` keeps the default. Values outside
/// what `Limits::validate` allows are moved to the nearest allowed one.
#[derive(Arbitrary, Clone, Debug, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Receive whole frames (`handle_frame`, as over WebSocket) instead of a
    /// byte stream.
    pub frames: bool,
    /// Read through `read_buf` + `handle_buffered` instead of `handle_bytes`.
    pub buffered: bool,
    /// Offer zstd.
    pub compression: bool,
    /// Turn keepalive off.
    pub no_keepalive: bool,
    /// Idle timeout in milliseconds.
    pub idle_ms: Option<u16>,
    /// `max_frame = 64 + v`.
    pub max_frame: Option<u16>,
    /// `max_message = 64 + v`.
    pub max_message: Option<u16>,
    /// `max_in_flight = 1 + v % 16`.
    pub max_in_flight: Option<u8>,
    /// `initial_stream_credit = max(1 + v, MIN_FRAME)`.
    pub stream_credit: Option<u16>,
    /// `connection_credit = max(1 + v, MIN_FRAME)`.
    pub connection_credit: Option<u16>,
    /// `send_fragment = 64 + v`.
    pub send_fragment: Option<u16>,
    /// `max_send_queue = 1 + v`.
    pub max_send_queue: Option<u16>,
    /// `max_pending_control = 4 + v`.
    pub max_pending_control: Option<u8>,
    /// `1 +` early cancels, error resets, strays, small frames (×100),
    /// credit frames per data frame; ping strikes (% 8).
    pub budgets: Option<[u8; 6]>,
    /// `max_local_id = 2 + v`.
    pub max_local_id: Option<u8>,
}

impl Knobs {
    /// The configuration these knobs describe (always valid).
    pub fn config(&self, role: Role) -> Config {
        let mut c = Config::new(role);
        c.compression = self.compression;
        let l = &mut c.limits;
        if let Some(v) = self.max_frame {
            l.max_frame = 64 + u32::from(v);
        }
        if let Some(v) = self.max_message {
            l.max_message = 64 + u32::from(v);
        }
        if let Some(v) = self.max_in_flight {
            l.max_in_flight = 1 + u32::from(v % 16);
        }
        // Credits below `MIN_FRAME` are invalid: a window must hold a
        // prelude and a reason string.
        if let Some(v) = self.stream_credit {
            l.initial_stream_credit = (1 + u32::from(v)).max(MIN_FRAME);
        }
        if let Some(v) = self.connection_credit {
            l.connection_credit = (1 + u32::from(v)).max(MIN_FRAME);
        }
        if let Some(v) = self.send_fragment {
            l.send_fragment = 64 + u32::from(v);
        }
        if let Some(v) = self.max_send_queue {
            l.max_send_queue = 1 + u64::from(v);
        }
        if let Some(v) = self.max_pending_control {
            l.max_pending_control = 4 + u32::from(v);
        }
        if let Some([cancels, resets, strays, small, credit, pings]) = self.budgets {
            l.early_cancel_budget = 1 + u32::from(cancels);
            l.error_reset_budget = 1 + u32::from(resets);
            l.stray_frame_budget = 1 + u32::from(strays);
            l.small_frame_budget = 1 + u32::from(small) * 100;
            l.credit_frames_per_data = 1 + u32::from(credit);
            l.max_ping_strikes = u32::from(pings % 8);
        }
        if let Some(v) = self.max_local_id {
            l.max_local_id = 2 + u32::from(v);
        }
        if self.no_keepalive {
            c.timeouts.keepalive_interval = None;
        }
        if let Some(ms) = self.idle_ms {
            c.timeouts.idle = Some(Duration::from_millis(ms.into()));
        }
        clamp_limits(&mut c.limits);
        c
    }
}

/// Moves each limit that `Limits::validate` rejects to the nearest allowed
/// value, so the knobs follow the library's ranges as they change.
fn clamp_limits(l: &mut Limits) {
    for _ in 0..64 {
        let Err(e) = l.validate() else { return };
        let fit = |v: u64| v.clamp(e.min, e.max);
        let fit32 = |v: u32| u32::try_from(fit(v.into())).unwrap_or(u32::MAX);
        match e.name {
            "max_frame" => l.max_frame = fit32(l.max_frame),
            "max_message" => l.max_message = fit32(l.max_message),
            "max_in_flight" => l.max_in_flight = fit32(l.max_in_flight),
            "initial_stream_credit" => l.initial_stream_credit = fit32(l.initial_stream_credit),
            "connection_credit" => l.connection_credit = fit32(l.connection_credit),
            "max_handshake" => l.max_handshake = fit32(l.max_handshake),
            "send_fragment" => l.send_fragment = fit32(l.send_fragment),
            "max_send_queue" => l.max_send_queue = fit(l.max_send_queue),
            "max_pending_control" => l.max_pending_control = fit32(l.max_pending_control),
            "early_cancel_budget" => l.early_cancel_budget = fit32(l.early_cancel_budget),
            "error_reset_budget" => l.error_reset_budget = fit32(l.error_reset_budget),
            "stray_frame_budget" => l.stray_frame_budget = fit32(l.stray_frame_budget),
            "small_frame_threshold" => l.small_frame_threshold = fit32(l.small_frame_threshold),
            "small_frame_budget" => l.small_frame_budget = fit32(l.small_frame_budget),
            "credit_frames_per_data" => l.credit_frames_per_data = fit32(l.credit_frames_per_data),
            "max_ping_strikes" => l.max_ping_strikes = fit32(l.max_ping_strikes),
            "max_local_id" => l.max_local_id = fit32(l.max_local_id),
            other => panic!("harness does not know limit {other}: {e}"),
        }
    }
    panic!("limits still invalid after clamping: {:?}", l.validate());
}

/// A message body: `len % (MAX_BODY + 1)` bytes of `fill`.
#[derive(Arbitrary, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// Length, reduced modulo `MAX_BODY + 1`.
    pub len: u16,
    /// The byte repeated.
    pub fill: u8,
    /// Payload codec tag.
    pub codec: u8,
    /// Declared as zstd-compressed from this many bytes.
    pub compressed: Option<u16>,
}

impl Body {
    fn message(self) -> Message {
        let body = vec![self.fill; usize::from(self.len) % (MAX_BODY + 1)];
        match self.compressed {
            Some(n) => Message::compressed(Codec(self.codec), body, n.into()),
            None => Message::new(Codec(self.codec), body),
        }
    }
}

/// A frame built field by field, for injection.
#[derive(Arbitrary, Clone, Debug, Default, PartialEq, Eq)]
pub struct RawFrame {
    /// Below `0x80`: `ty % 16` (the defined types, 0 and 15); else as is.
    pub ty: u8,
    /// Below `0xF0`: `flags & 0x0F`; else as is.
    pub flags: u8,
    /// Below `0xF0`: `codec & 3`; else as is.
    pub codec: u8,
    /// Call or stream id.
    pub id: u32,
    /// Type-specific argument.
    pub arg: u32,
    /// Payload, cut to `MAX_RAW_PAYLOAD` bytes.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let ty = if self.ty < 0x80 { self.ty % 16 } else { self.ty };
        let payload = &self.payload[..self.payload.len().min(MAX_RAW_PAYLOAD)];
        let mut h = Header::new(FrameType(ty), self.id, self.arg, payload.len() as u32);
        h.flags = Flags(if self.flags < 0xF0 { self.flags & 0x0F } else { self.flags });
        h.codec = Codec(if self.codec < 0xF0 { self.codec & 3 } else { self.codec });
        let mut out = h.to_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }
}

/// One step of a run.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `send_request`.
    Request {
        /// Acting side.
        who: Who,
        /// Method id.
        method: u8,
        /// The request.
        body: Body,
        /// Deadline in milliseconds.
        deadline_ms: Option<u16>,
    },
    /// `send_response` on a call the peer opened.
    Respond {
        /// Acting side.
        who: Who,
        /// Index into the calls the peer opened.
        pick: u8,
        /// The response.
        body: Body,
    },
    /// `send_error` on a call the peer opened.
    Fail {
        /// Acting side.
        who: Who,
        /// Index into the calls the peer opened.
        pick: u8,
        /// Error code.
        code: u16,
        /// Length of the message in the ERROR detail.
        info_len: u8,
    },
    /// `cancel` on a call this side opened.
    Cancel {
        /// Acting side.
        who: Who,
        /// Index into the calls this side opened.
        pick: u8,
    },
    /// `open_stream`.
    OpenStream {
        /// Acting side.
        who: Who,
        /// Method id.
        method: u8,
        /// The opening message.
        body: Body,
        /// Deadline in milliseconds.
        deadline_ms: Option<u16>,
        /// Send nothing more.
        end: bool,
    },
    /// `send_stream_data`.
    StreamData {
        /// Acting side.
        who: Who,
        /// Index into the streams this side knows.
        pick: u8,
        /// The message.
        body: Body,
        /// End this side's half.
        end: bool,
    },
    /// `grant_credit`.
    Grant {
        /// Acting side.
        who: Who,
        /// Index into the streams this side knows.
        pick: u8,
        /// Bytes granted.
        n: u32,
    },
    /// `finish`.
    Finish {
        /// Acting side.
        who: Who,
        /// Index into the streams this side knows.
        pick: u8,
    },
    /// `send_event`.
    Event {
        /// Acting side.
        who: Who,
        /// Method id.
        method: u8,
        /// The message.
        body: Body,
    },
    /// `ping`.
    Ping {
        /// Acting side.
        who: Who,
    },
    /// `close` with `NO_ERROR` (`None`) or a code, and a reason of
    /// `reason_len` bytes.
    Close {
        /// Acting side.
        who: Who,
        /// Error code; `None` for a graceful close.
        code: Option<u16>,
        /// Length of the reason.
        reason_len: u8,
    },
    /// Server: `accept`.
    Accept,
    /// Server: `refuse`.
    Refuse {
        /// Refusal code.
        code: u16,
    },
    /// Fake time moves on; both sides get `handle_timeout`.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// Fake time jumps to the earlier `poll_timeout` of the two sides.
    AdvanceToTimeout,
    /// Frames written by `from` reach the other side.
    Deliver {
        /// Writer.
        from: Who,
        /// How many frames; 0 for all.
        frames: u8,
    },
    /// Only the next `n` bytes written by `from` reach the other side (a
    /// whole frame over a message transport).
    DeliverBytes {
        /// Writer.
        from: Who,
        /// Bytes.
        n: u16,
    },
    /// The next frame (or the rest of it) written by `from` is lost.
    Drop {
        /// Writer.
        from: Who,
    },
    /// One byte of the next frame written by `from` is flipped in transit.
    Corrupt {
        /// Writer.
        from: Who,
        /// Offset into what is left of the frame.
        at: u16,
        /// Bits flipped (0 counts as 1).
        xor: u8,
    },
    /// A made-up frame reaches `to`.
    Inject {
        /// Receiver.
        to: Who,
        /// The frame.
        frame: RawFrame,
    },
    /// Made-up bytes reach `to` (one message over a message transport).
    InjectBytes {
        /// Receiver.
        to: Who,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// `handle_eof`: nothing more reaches `who`.
    Eof {
        /// Receiver.
        who: Who,
    },
}

/// A whole run.
#[derive(Arbitrary, Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    /// Client configuration.
    pub client: Knobs,
    /// Server configuration.
    pub server: Knobs,
    /// The server accepts a HELLO as soon as it is reported.
    pub auto_accept: bool,
    /// The steps; only the first [`MAX_OPS`] run.
    pub ops: Vec<Op>,
}

/// What a run reached, for the seed generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Client events.
    pub client: Seen,
    /// Server events.
    pub server: Seen,
    /// The network was left alone.
    pub conforming: bool,
}

struct Side {
    conn: Connection,
    track: Track,
    /// Receives whole frames (`handle_frame`).
    frames: bool,
    /// Reads through `read_buf`.
    buffered: bool,
    /// `handle_eof` was called: nothing more is delivered to this side.
    eof: bool,
    /// Calls and streams the peer opened, in the order reported.
    calls_in: Vec<CallId>,
    /// Calls and streams this side opened.
    calls_out: Vec<CallId>,
    /// Streams in either direction.
    streams: Vec<CallId>,
    /// Frames written and not yet delivered, encoded.
    transit: VecDeque<Vec<u8>>,
    /// Bytes of the front frame already delivered.
    front_sent: usize,
    /// Highest id a frame written by this side opened.
    last_opened: CallId,
    /// Ids with a message written in part (its last frame had MORE).
    fragmenting: BTreeSet<CallId>,
    /// Lowest last id of the GOAWAYs this side wrote.
    last_goaway: Option<CallId>,
}

impl Side {
    fn new(role: Role, knobs: &Knobs, name: &'static str) -> Self {
        Self {
            conn: Connection::new(knobs.config(role), Instant::ZERO),
            track: Track::new(name),
            frames: knobs.frames,
            buffered: knobs.buffered,
            eof: false,
            calls_in: Vec::new(),
            calls_out: Vec::new(),
            streams: Vec::new(),
            transit: VecDeque::new(),
            front_sent: 0,
            last_opened: 0,
            fragmenting: BTreeSet::new(),
            last_goaway: None,
        }
    }

    fn issue(&mut self, id: CallId, stream: bool) {
        let fresh = self.track.issued.insert(id, Issued { stream, ..Issued::default() }).is_none();
        assert!(fresh, "{}: id {id} issued twice", self.track.name);
        self.calls_out.push(id);
        if stream {
            self.streams.push(id);
        }
    }

    /// The receive limits this side enforces: (`max_frame`, `max_handshake`).
    fn limits(&self) -> (u32, u32) {
        let l = &self.conn.config().limits;
        (l.max_frame, l.max_handshake)
    }

    /// Checks a frame this side wrote, given the receiver's limits:
    /// it passes header validation, fits the receiver's frame limit, opens
    /// ids in increasing order and never starts a message on an id whose
    /// previous message is still being fragmented.
    fn check_written(&mut self, frame: &Frame, (max_frame, max_handshake): (u32, u32)) {
        let name = self.track.name;
        check_sent_frame(name, frame);
        let h = frame.header;
        if crate::tracing() {
            eprintln!("{name} wrote {h:?} {:02x?}", &frame.payload[..frame.payload.len().min(8)]);
        }
        let limit = if matches!(h.ty, FrameType::HELLO | FrameType::HELLO_ACK) { max_handshake } else { max_frame };
        assert!(h.length <= limit, "{name}: wrote {h:?} above the peer's frame limit {limit}");
        if h.ty.opens_id() {
            assert!(h.id > self.last_opened, "{name}: opened id {} after id {}", h.id, self.last_opened);
            self.last_opened = h.id;
        }
        if h.ty.is_message() {
            assert!(!self.fragmenting.contains(&h.id), "{name}: new message on id {} mid-message", h.id);
        }
        let own_id = (h.id % 2 == 1) == (self.conn.role() == Role::Client);
        if h.ty == FrameType::STREAM_DATA && own_id {
            assert!(h.id <= self.last_opened, "{name}: STREAM_DATA on {} before its STREAM_OPEN", h.id);
        }
        if h.ty == FrameType::GOAWAY {
            let raised = self.last_goaway.is_some_and(|last| h.id > last);
            assert!(!raised, "{name}: GOAWAY last id {} after {:?}", h.id, self.last_goaway);
            self.last_goaway = Some(self.last_goaway.map_or(h.id, |last| last.min(h.id)));
        }
        if h.ty.is_message() || h.ty == FrameType::CONTINUATION {
            if h.flags.contains(Flags::MORE) {
                self.fragmenting.insert(h.id);
            } else {
                self.fragmenting.remove(&h.id);
            }
        }
    }

    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        if self.eof || bytes.is_empty() {
            return;
        }
        if self.frames {
            self.conn.handle_frame(now, Bytes::copy_from_slice(bytes));
        } else if self.buffered {
            if !self.conn.is_closed() {
                self.conn.read_buf().extend_from_slice(bytes);
            }
            self.conn.handle_buffered(now);
        } else {
            self.conn.handle_bytes(now, bytes);
        }
    }
}

/// An id from `list` (or `pick` itself when the list is empty).
fn pick(list: &[CallId], pick: u8) -> CallId {
    if list.is_empty() { CallId::from(pick) } else { list[usize::from(pick) % list.len()] }
}

fn text(len: u8) -> Option<String> {
    (len > 0).then(|| "r".repeat(len.into()))
}

struct World {
    sides: [Side; 2],
    now_ms: u64,
    auto_accept: bool,
    /// Frames were dropped, corrupted or injected, or a side saw an early
    /// end of stream.
    tampered: bool,
}

impl World {
    fn now(&self) -> Instant {
        Instant::from_millis(self.now_ms)
    }

    fn side(&mut self, who: Who) -> &mut Side {
        &mut self.sides[who.index()]
    }

    /// Drains both sides until nothing moves; checks their state.
    fn settle(&mut self) {
        for _ in 0..DRAIN_LIMIT {
            let mut moved = 0;
            // Each side's frames are checked against the other's limits.
            let limits = [self.sides[1].limits(), self.sides[0].limits()];
            for (i, side) in self.sides.iter_mut().enumerate() {
                for _ in 0..DRAIN_LIMIT {
                    let Some(frame) = side.conn.poll_transmit() else { break };
                    side.check_written(&frame, limits[i]);
                    let mut wire = Vec::with_capacity(frame.encoded_len());
                    frame.encode_to(&mut wire);
                    side.transit.push_back(wire);
                    moved += 1;
                }
                let auto_accept = self.auto_accept;
                let name = side.track.name;
                moved += crate::track::drain_events(&mut side.conn, &mut side.track, |conn, event| {
                    if crate::tracing() {
                        eprintln!("{name} event {event:?}");
                    }
                    if auto_accept && matches!(event, Event::HelloReceived(_)) {
                        let r = conn.accept();
                        assert!(r.is_ok() || conn.is_closed(), "accept after HelloReceived: {r:?}");
                    }
                });
                for (id, call) in &side.track.incoming {
                    if !side.calls_in.contains(id) {
                        side.calls_in.push(*id);
                        if call.stream {
                            side.streams.push(*id);
                        }
                    }
                }
                side.track.check(&side.conn);
            }
            if moved == 0 {
                return;
            }
        }
        panic!("the two sides never settle");
    }

    /// Delivers up to `frames` whole frames (0: all) written by `from`.
    fn deliver(&mut self, from: Who, frames: usize) {
        let now = self.now();
        let [a, b] = &mut self.sides;
        let (src, dst) = if from == Who::Client { (a, b) } else { (b, a) };
        let count = if frames == 0 { src.transit.len() } else { frames.min(src.transit.len()) };
        if crate::tracing() && count > 0 {
            eprintln!("deliver {count} frames {} -> {}", src.track.name, dst.track.name);
        }
        if dst.frames {
            for _ in 0..count {
                let f = src.transit.pop_front().expect("counted");
                dst.receive(now, &f);
            }
        } else {
            let mut wire = Vec::new();
            for _ in 0..count {
                let f = src.transit.pop_front().expect("counted");
                wire.extend_from_slice(&f[src.front_sent..]);
                src.front_sent = 0;
            }
            dst.receive(now, &wire);
        }
    }

    fn deliver_bytes(&mut self, from: Who, n: usize) {
        let now = self.now();
        let [a, b] = &mut self.sides;
        let (src, dst) = if from == Who::Client { (a, b) } else { (b, a) };
        if dst.frames {
            if let Some(f) = src.transit.pop_front() {
                dst.receive(now, &f);
            }
            return;
        }
        let Some(front) = src.transit.front() else { return };
        let end = (src.front_sent + n).min(front.len());
        let chunk = front[src.front_sent..end].to_vec();
        src.front_sent = end;
        if end == front.len() {
            src.transit.pop_front();
            src.front_sent = 0;
        }
        dst.receive(now, &chunk);
    }

    fn advance_to(&mut self, ms: u64) {
        self.now_ms = self.now_ms.max(ms);
        let now = self.now();
        for side in &mut self.sides {
            side.conn.handle_timeout(now);
        }
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now();
        if crate::tracing() {
            eprintln!("op at {}ms: {op:?}", self.now_ms);
        }
        match *op {
            Op::Request { who, method, body, deadline_ms } => {
                let deadline = deadline_ms.map(|ms| Duration::from_millis(ms.into()));
                let s = self.side(who);
                if let Ok(id) = s.conn.send_request(method.into(), body.message(), deadline) {
                    s.issue(id, false);
                }
            }
            Op::Respond { who, pick: p, body } => {
                let s = self.side(who);
                let _ = s.conn.send_response(pick(&s.calls_in, p), body.message());
            }
            Op::Fail { who, pick: p, code, info_len } => {
                let info = ErrorInfo { message: text(info_len), details: None };
                let s = self.side(who);
                let _ = s.conn.send_error(pick(&s.calls_in, p), ErrorCode(code), info);
            }
            Op::Cancel { who, pick: p } => {
                let s = self.side(who);
                let id = pick(&s.calls_out, p);
                if s.conn.cancel(id).is_ok() {
                    let name = s.track.name;
                    let call = s.track.issued.get_mut(&id);
                    let call = call.unwrap_or_else(|| panic!("{name}: cancel succeeded on unknown id {id}"));
                    assert!(call.outcomes == 0, "{name}: cancel succeeded on finished call {id}");
                    assert!(!call.cancelled, "{name}: cancel succeeded twice on {id}");
                    call.cancelled = true;
                }
            }
            Op::OpenStream { who, method, body, deadline_ms, end } => {
                let deadline = deadline_ms.map(|ms| Duration::from_millis(ms.into()));
                let s = self.side(who);
                if let Ok(id) = s.conn.open_stream(method.into(), body.message(), deadline, end) {
                    s.issue(id, true);
                }
            }
            Op::StreamData { who, pick: p, body, end } => {
                let s = self.side(who);
                let _ = s.conn.send_stream_data(pick(&s.streams, p), body.message(), end);
            }
            Op::Grant { who, pick: p, n } => {
                let s = self.side(who);
                let _ = s.conn.grant_credit(pick(&s.streams, p), n);
            }
            Op::Finish { who, pick: p } => {
                let s = self.side(who);
                let _ = s.conn.finish(pick(&s.streams, p));
            }
            Op::Event { who, method, body } => {
                let _ = self.side(who).conn.send_event(method.into(), body.message());
            }
            Op::Ping { who } => {
                let s = self.side(who);
                if let Ok(token) = s.conn.ping() {
                    assert!(s.track.pings.insert(token), "{}: ping token {token} reused", s.track.name);
                }
            }
            Op::Close { who, code, reason_len } => {
                let code = code.map_or(ErrorCode::NO_ERROR, ErrorCode);
                let reason = text(reason_len);
                self.side(who).conn.close(code, reason.as_deref());
            }
            Op::Accept => {
                let _ = self.side(Who::Server).conn.accept();
            }
            Op::Refuse { code } => {
                let _ = self.side(Who::Server).conn.refuse(ErrorCode(code), Some("refused"));
            }
            Op::Advance { ms } => self.advance_to(self.now_ms + u64::from(ms)),
            Op::AdvanceToTimeout => {
                let next = self.sides.iter().filter_map(|s| s.conn.poll_timeout()).min();
                if let Some(at) = next {
                    assert!(at >= Instant::ZERO);
                    self.advance_to(ceil_ms(at));
                }
            }
            Op::Deliver { from, frames } => self.deliver(from, frames.into()),
            Op::DeliverBytes { from, n } => self.deliver_bytes(from, n.into()),
            Op::Drop { from } => {
                let s = self.side(from);
                if s.transit.pop_front().is_some() {
                    s.front_sent = 0;
                    self.tampered = true;
                }
            }
            Op::Corrupt { from, at, xor } => {
                let s = self.side(from);
                let sent = s.front_sent;
                if let Some(f) = s.transit.front_mut() {
                    let left = f.len() - sent;
                    f[sent + usize::from(at) % left] ^= xor.max(1);
                    self.tampered = true;
                }
            }
            Op::Inject { to, ref frame } => {
                self.tampered = true;
                self.side(to).receive(now, &frame.encode());
            }
            Op::InjectBytes { to, ref bytes } => {
                self.tampered = true;
                self.side(to).receive(now, bytes);
            }
            Op::Eof { who } => {
                self.tampered = true;
                let s = self.side(who);
                s.eof = true;
                s.conn.handle_eof(now);
            }
        }
    }

    /// Everything in transit is delivered, both ways, until quiet.
    fn flush(&mut self) {
        for _ in 0..DRAIN_LIMIT {
            if self.sides.iter().all(|s| s.transit.is_empty()) {
                return;
            }
            self.deliver(Who::Client, 0);
            self.deliver(Who::Server, 0);
            self.settle();
        }
        panic!("the two sides keep writing to each other without end");
    }

    /// Both sides close gracefully; time runs until both are closed.
    fn finale(&mut self) {
        self.flush();
        self.check_liveness();
        for side in &mut self.sides {
            side.conn.close(ErrorCode::NO_ERROR, None);
        }
        self.settle();
        for _ in 0..FINALE_ROUNDS {
            self.flush();
            if self.sides.iter().all(|s| s.conn.is_closed()) {
                return;
            }
            let next = self.sides.iter().filter_map(|s| s.conn.poll_timeout()).min();
            let Some(at) = next else {
                panic!("a side is open with nothing in transit and no timer armed: {:?}", self.sides_debug());
            };
            self.advance_to(ceil_ms(at).max(self.now_ms + 1));
            self.settle();
        }
        panic!("sides still open after closing and {FINALE_ROUNDS} timer rounds: {:?}", self.sides_debug());
    }

    fn sides_debug(&self) -> [&Connection; 2] {
        [&self.sides[0].conn, &self.sides[1].conn]
    }

    /// With everything delivered and every event polled, a conforming pair
    /// with no stream (so no stream credit to wait for) has written every
    /// message it accepted: connection credit comes back as events are
    /// polled.
    fn check_liveness(&self) {
        let streams = self.sides.iter().any(|s| !s.streams.is_empty());
        if self.tampered || streams || !self.sides.iter().all(|s| s.conn.is_connected()) {
            return;
        }
        for side in &self.sides {
            let queued = side.conn.queued_bytes();
            assert_eq!(queued, 0, "{}: {queued} bytes accepted and never written", side.track.name);
        }
    }

    /// Two conforming endpoints never accuse each other.
    fn check_conforming(&self) {
        if self.tampered {
            return;
        }
        for side in &self.sides {
            let accusation = matches!(
                side.conn.close_error(),
                Some(
                    ConnectionError::Malformed(_)
                        | ConnectionError::Control(_)
                        | ConnectionError::Violation(_)
                        | ConnectionError::LimitExceeded { .. }
                        | ConnectionError::FlowControl { .. }
                )
            );
            assert!(
                !accusation,
                "{}: conforming peer accused: {:?}",
                side.track.name,
                side.conn.close_error().map(ToString::to_string)
            );
        }
    }
}

/// `at` in whole milliseconds, rounded up.
fn ceil_ms(at: Instant) -> u64 {
    let d = at.as_duration();
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if d > Duration::from_millis(ms) { ms.saturating_add(1) } else { ms }
}

/// Runs one input and returns what it reached.
pub fn run(input: &Input) -> Report {
    let mut world = World {
        sides: [Side::new(Role::Client, &input.client, "client"), Side::new(Role::Server, &input.server, "server")],
        now_ms: 0,
        auto_accept: input.auto_accept,
        tampered: false,
    };
    world.settle();
    for op in input.ops.iter().take(MAX_OPS) {
        world.apply(op);
        world.settle();
    }
    world.finale();
    world.check_conforming();
    for side in &world.sides {
        assert!(side.track.closed, "{}: no Closed event", side.track.name);
        side.track.check(&side.conn);
    }
    Report { client: world.sides[0].track.seen, server: world.sides[1].track.seen, conforming: !world.tampered }
}
