//! The connection state machine.
//!
//! A [`Connection`] holds everything one gatewire connection knows: the
//! handshake, the table of calls and streams in both directions, credit
//! windows, reassembly of fragmented messages, keepalive and the two-phase
//! shutdown. It never performs I/O and never reads a clock.
//!
//! # Polling order
//!
//! After every input (`handle_bytes`, `handle_frame`, `handle_eof`,
//! `handle_timeout`) or command (`send_request`, `cancel`, `close`...):
//!
//! 1. [`Connection::poll_transmit`] until `None`, writing each frame;
//! 2. [`Connection::poll_event`] until `None`, delivering each event;
//! 3. [`Connection::poll_timeout`], arming one timer that calls
//!    [`Connection::handle_timeout`].
//!
//! Reading more input is allowed while [`Connection::wants_read`] is true.
//! The core stops consuming input on its own when too many control replies or
//! undelivered events are queued, and resumes as they drain: this is how a
//! peer that floods PINGs or tiny events is held to bounded memory.

mod budget;
mod error;
mod state;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Bytes, BytesMut};

use self::budget::Budget;
pub use self::error::{ApiError, ConnectionError, SendError, Violation};
use self::state::{Assembly, Call, Kind, OutMessage};
use crate::PROTOCOL_VERSION;
use crate::code::ErrorCode;
use crate::codec::{Frame, FrameDecoder};
use crate::control::{AdvertisedLimits, ErrorInfo, GoAwayInfo, Hello, HelloAck, Service};
use crate::frame::{Codec, Flags, FrameType, Header, PING_PAYLOAD_LEN};
use crate::limits::{Limits, MAX_WINDOW, Timeouts};
use crate::time::Instant;

/// A call or stream id.
pub type CallId = u32;

/// The compression algorithm id of zstd in HELLO and HELLO_ACK.
pub const COMPRESSION_ZSTD: u8 = 1;

/// Which end of the connection this is. The client sends HELLO and opens odd
/// ids; the server answers HELLO_ACK and opens even ids. Once connected both
/// may call the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The connecting endpoint.
    Client,
    /// The accepting endpoint.
    Server,
}

/// Who did something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// This endpoint.
    Local,
    /// The peer.
    Remote,
}

/// Everything a connection is configured with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Client or server.
    pub role: Role,
    /// Size, count and budget limits.
    pub limits: Limits,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Offer to decode zstd-compressed messages. Default `false`.
    pub compression: bool,
    /// Payload codecs to advertise. Default: raw, FlatBuffers, postcard, JSON.
    pub codecs: Vec<u8>,
    /// Services this endpoint offers (serves).
    pub services: Vec<Service>,
    /// Services this endpoint uses (calls on the peer). A server refuses a
    /// client whose services are incompatible with these (§10.3).
    pub uses: Vec<Service>,
    /// Authentication payload sent in HELLO (client only).
    pub auth: Option<Bytes>,
    /// Implementation name sent in the handshake.
    pub agent: Option<String>,
}

impl Config {
    /// Defaults for the given role.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            compression: false,
            codecs: alloc::vec![0, 1, 2, 3],
            services: Vec::new(),
            uses: Vec::new(),
            auth: None,
            agent: None,
        }
    }

    /// Defaults for a client.
    pub fn client() -> Self {
        Self::new(Role::Client)
    }

    /// Defaults for a server.
    pub fn server() -> Self {
        Self::new(Role::Server)
    }

    fn advertised(&self) -> AdvertisedLimits {
        let l = &self.limits;
        AdvertisedLimits {
            max_frame: l.max_frame,
            max_message: l.max_message,
            max_in_flight: l.max_in_flight,
            initial_stream_credit: l.initial_stream_credit,
            connection_credit: l.connection_credit,
        }
    }

    fn compression_list(&self) -> Vec<u8> {
        if self.compression { alloc::vec![COMPRESSION_ZSTD] } else { Vec::new() }
    }
}

/// A message body with its codec tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Payload codec.
    pub codec: Codec,
    /// The body exactly as received: still compressed when
    /// `uncompressed_len` is set.
    pub body: Bytes,
    /// For a compressed body, the declared size after decompression (already
    /// checked against the message limit). The runtime decompresses with its
    /// output capped to this size.
    pub uncompressed_len: Option<u32>,
}

impl Message {
    /// An uncompressed message.
    pub fn new(codec: Codec, body: impl Into<Bytes>) -> Self {
        Self { codec, body: body.into(), uncompressed_len: None }
    }

    /// Opaque bytes ([`Codec::RAW`]).
    pub fn raw(body: impl Into<Bytes>) -> Self {
        Self::new(Codec::RAW, body)
    }

    /// A FlatBuffers buffer ([`Codec::FLATBUFFERS`]).
    pub fn flatbuffers(body: impl Into<Bytes>) -> Self {
        Self::new(Codec::FLATBUFFERS, body)
    }

    /// A message whose body is already zstd-compressed from `uncompressed_len`
    /// bytes.
    pub fn compressed(codec: Codec, body: impl Into<Bytes>, uncompressed_len: u32) -> Self {
        Self { codec, body: body.into(), uncompressed_len: Some(uncompressed_len) }
    }
}

/// What the peer agreed to in the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The negotiated protocol version.
    pub version: u16,
    /// The peer's receive limits (protocol defaults filled in).
    pub limits: AdvertisedLimits,
    /// Whether both sides decode zstd, so compressed messages may be sent.
    pub compression: bool,
    /// Codecs the peer understands.
    pub codecs: Vec<u8>,
    /// Services the peer offers.
    pub services: Vec<Service>,
    /// Services the peer uses.
    pub uses: Vec<Service>,
    /// The peer's implementation name.
    pub agent: Option<String>,
}

/// Something the application must learn about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Server: a client said HELLO. Answer with [`Connection::accept`] or
    /// [`Connection::refuse`].
    HelloReceived(Hello),
    /// The handshake completed; calls may flow.
    Connected(PeerInfo),
    /// The peer called a method; answer with `send_response` or `send_error`.
    Request {
        /// The call.
        id: CallId,
        /// Method id.
        method: u32,
        /// The request.
        message: Message,
        /// Time the caller allows, counted from receipt.
        deadline: Option<Duration>,
    },
    /// A call we made completed.
    Response {
        /// The call.
        id: CallId,
        /// The response.
        message: Message,
    },
    /// A call or stream we opened ended without a response: the peer sent
    /// ERROR, its deadline passed, the peer's GOAWAY refused it, or the
    /// connection ended.
    CallFailed {
        /// The call.
        id: CallId,
        /// Why.
        code: ErrorCode,
        /// The peer's detail, when it sent one.
        info: ErrorInfo,
        /// Whether the peer sent the code (`Remote`) or we concluded it.
        side: Side,
    },
    /// A one-way message.
    Event {
        /// Method id.
        method: u32,
        /// The message.
        message: Message,
    },
    /// The peer opened a stream.
    StreamOpened {
        /// The stream.
        id: CallId,
        /// Method id.
        method: u32,
        /// The opening message (may be empty).
        message: Message,
        /// The peer will send nothing more.
        end: bool,
        /// Time the caller allows, counted from receipt.
        deadline: Option<Duration>,
    },
    /// A message on a stream.
    StreamData {
        /// The stream.
        id: CallId,
        /// The message.
        message: Message,
        /// The peer will send nothing more on this stream.
        end: bool,
    },
    /// A call or stream the peer opened was cancelled (by the peer, by its
    /// deadline or by the connection ending). Stop the handler; its slot is
    /// held until the application answers with `send_response`,
    /// `send_error` or `finish` (which then send nothing).
    Cancelled {
        /// The call.
        id: CallId,
        /// Why.
        code: ErrorCode,
    },
    /// A send that returned `Blocked` may be retried: on the stream `id`, or
    /// for the connection when `None` (send queue or call slots).
    Writable {
        /// The stream, or `None` for the connection.
        id: Option<CallId>,
    },
    /// The answer to [`Connection::ping`].
    Pong {
        /// The token `ping` returned.
        token: u64,
        /// Time since the PING was queued.
        rtt: Duration,
    },
    /// The peer is shutting down: calls above `last_id` were refused (each
    /// got a `CallFailed` with `REFUSED`), and no new call may be opened.
    GoAway {
        /// Highest of our ids the peer may process.
        last_id: CallId,
        /// The peer's code.
        code: ErrorCode,
        /// The peer's reason.
        message: Option<String>,
    },
    /// The connection is over; nothing more will be sent or received. Every
    /// call in flight has been reported before this event.
    Closed {
        /// `None` for a graceful end.
        error: Option<ConnectionError>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Client: HELLO queued, awaiting HELLO_ACK. Server: awaiting HELLO.
    Handshake,
    /// Server: HELLO received, awaiting accept/refuse.
    AwaitingAccept,
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shutdown {
    None,
    /// First GOAWAY (last = MAX) sent with a PING carrying this token.
    Announced {
        token: u64,
        deadline: Instant,
    },
    /// Final GOAWAY sent; closing when drained or at the deadline.
    Draining {
        deadline: Instant,
    },
}

struct PendingEvent {
    event: Event,
    /// Connection credit to return when the event is delivered.
    credit: u32,
    /// The call whose delivery this is (opens), to mark it delivered.
    opens: Option<CallId>,
}

/// One gatewire connection, as a deterministic state machine.
pub struct Connection {
    config: Config,
    phase: Phase,
    peer: Option<PeerInfo>,
    now: Instant,
    started: Instant,

    rx: BytesMut,
    decoder: FrameDecoder,
    partial_since: Option<Instant>,
    input_blocked: bool,
    eof: bool,
    eof_done: bool,

    control: VecDeque<Frame>,
    /// GOAWAY and PING of a graceful close, held until the calls opened
    /// before it are sent.
    deferred: VecDeque<Frame>,
    out: VecDeque<OutMessage>,
    /// Fragmented events whose first frame is out and last is not.
    events_sending: u32,
    /// Sequence number of the next message accepted for sending.
    next_seq: u64,
    /// Unsent opening messages by sequence number: new ids leave in order.
    opens: VecDeque<u64>,
    queued_bytes: u64,
    send_blocked: bool,

    events: VecDeque<PendingEvent>,
    event_bytes: u64,
    /// Calls whose opening event was dropped undelivered; their later queued
    /// events are dropped too.
    skipped: BTreeSet<CallId>,
    /// Calls this endpoint ended (most recent [`MAX_ENDED_HERE`]).
    ended_here: BTreeSet<CallId>,
    ended_order: VecDeque<CallId>,

    /// Boxed: the table moves entries on insert and remove.
    calls: BTreeMap<CallId, Box<Call>>,
    deadlines: BTreeSet<(Instant, CallId)>,
    /// Completion deadlines of messages being reassembled (entries of
    /// finished messages are dropped lazily).
    assembling: BTreeSet<(Instant, CallId)>,
    next_local_id: u64,
    last_local_id: CallId,
    last_peer_id: CallId,
    local_in_flight: u32,
    remote_in_flight: u32,
    event_assemblies: u32,

    send_credit: i64,
    recv_window: i64,
    recv_unreturned: u64,

    last_rx: Instant,
    last_activity: Instant,
    keepalive_ping: Option<Instant>,
    next_ping_token: u64,
    user_pings: VecDeque<(u64, Instant)>,
    last_peer_ping: Option<Instant>,
    sent_message_since_peer_ping: bool,
    ping_strikes: u32,

    early_cancels: Budget,
    error_resets: Budget,
    strays: Budget,
    small_frames: Budget,
    credit_frames: Budget,

    shutdown: Shutdown,
    goaway_sent: Option<CallId>,
    goaway_received: Option<CallId>,
    close_error: Option<ConnectionError>,
}

/// Maximum outstanding [`Connection::ping`] probes.
pub const MAX_USER_PINGS: usize = 16;

/// Undelivered events after which input is paused until they are polled.
pub const MAX_PENDING_EVENTS: usize = 1024;

const PING_TOKEN_GOAWAY_BIT: u64 = 1 << 63;

impl Connection {
    /// A new connection. A client queues its HELLO at once.
    ///
    /// # Panics
    ///
    /// When `config.limits` fails [`Limits::validate`]: limits are checked
    /// once, at configuration time, by the runtime.
    pub fn new(config: Config, now: Instant) -> Self {
        if let Err(e) = config.limits.validate() {
            panic!("invalid gatewire limits: {e}");
        }
        let l = &config.limits;
        let first_id = if config.role == Role::Client { 1 } else { 2 };
        let mut conn = Self {
            phase: Phase::Handshake,
            peer: None,
            now,
            started: now,
            rx: BytesMut::new(),
            decoder: FrameDecoder::new(l.max_handshake),
            partial_since: None,
            input_blocked: false,
            eof: false,
            eof_done: false,
            control: VecDeque::new(),
            deferred: VecDeque::new(),
            out: VecDeque::new(),
            events_sending: 0,
            next_seq: 0,
            opens: VecDeque::new(),
            queued_bytes: 0,
            send_blocked: false,
            events: VecDeque::new(),
            event_bytes: 0,
            skipped: BTreeSet::new(),
            ended_here: BTreeSet::new(),
            ended_order: VecDeque::new(),
            calls: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            assembling: BTreeSet::new(),
            next_local_id: first_id,
            last_local_id: 0,
            last_peer_id: 0,
            local_in_flight: 0,
            remote_in_flight: 0,
            event_assemblies: 0,
            send_credit: 0,
            recv_window: i64::from(l.connection_credit),
            recv_unreturned: 0,
            last_rx: now,
            last_activity: now,
            keepalive_ping: None,
            next_ping_token: 1,
            user_pings: VecDeque::new(),
            last_peer_ping: None,
            sent_message_since_peer_ping: false,
            ping_strikes: 0,
            early_cancels: Budget::new(l.early_cancel_budget),
            error_resets: Budget::new(l.error_reset_budget),
            strays: Budget::new(l.stray_frame_budget),
            small_frames: Budget::new(l.small_frame_budget),
            credit_frames: Budget::new(l.credit_frames_per_data.saturating_mul(10)),
            shutdown: Shutdown::None,
            goaway_sent: None,
            goaway_received: None,
            close_error: None,
            config,
        };
        if conn.config.role == Role::Client {
            let hello = Hello {
                min_version: PROTOCOL_VERSION,
                max_version: PROTOCOL_VERSION,
                limits: conn.config.advertised(),
                compression: conn.config.compression_list(),
                codecs: conn.config.codecs.clone(),
                auth: conn.config.auth.clone(),
                services: conn.config.services.clone(),
                agent: conn.config.agent.clone(),
                uses: conn.config.uses.clone(),
            };
            conn.push_control(FrameType::HELLO, 0, 0, hello.encode().into());
        }
        conn
    }

    // ----- getters ---------------------------------------------------------

    /// Client or server.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the peer agreed to, once connected.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    /// Whether the handshake has completed and the connection is not closed.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether the connection is over. The runtime closes the transport once
    /// `poll_transmit` is drained.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The error that ended the connection, if any.
    pub fn close_error(&self) -> Option<&ConnectionError> {
        self.close_error.as_ref()
    }

    /// Whether frames may be waiting for [`Connection::poll_transmit`] (a
    /// runtime wakes its writer only then).
    pub fn has_transmit(&self) -> bool {
        !self.control.is_empty() || !self.out.is_empty() || !self.deferred.is_empty()
    }

    /// Whether the runtime may read more input now.
    pub fn wants_read(&self) -> bool {
        !self.is_closed() && !self.eof && !self.input_paused()
    }

    /// Calls and streams open in each direction: (opened by us, opened by
    /// the peer, counting handlers still running after a cancel).
    pub fn calls_in_flight(&self) -> (u32, u32) {
        (self.local_in_flight, self.remote_in_flight)
    }

    /// Entries in the call table (both directions, including messages being
    /// reassembled). Zero at quiescence.
    pub fn table_len(&self) -> usize {
        self.calls.len()
    }

    /// Bytes accepted by `send_*` and not yet returned by `poll_transmit`.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// Connection credit we may still spend.
    pub fn send_credit(&self) -> i64 {
        self.send_credit
    }

    /// Send credit left on a stream, if it exists.
    pub fn stream_send_credit(&self, id: CallId) -> Option<i64> {
        self.calls.get(&id).filter(|c| c.kind == Kind::Stream).map(|c| c.send_credit)
    }

    /// The buffer a runtime may read into directly (then call
    /// [`Connection::handle_buffered`]) instead of passing slices to
    /// [`Connection::handle_bytes`].
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    // ----- inputs ----------------------------------------------------------

    /// Bytes from a byte-stream transport.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.rx.extend_from_slice(data);
        self.handle_buffered(now);
    }

    /// Processes bytes already placed in [`Connection::read_buf`].
    pub fn handle_buffered(&mut self, now: Instant) {
        self.now = now;
        self.process_input();
    }

    /// One whole frame from a message-preserving transport (a WebSocket
    /// binary message). Anything but exactly one frame is a protocol error.
    pub fn handle_frame(&mut self, now: Instant, message: Bytes) {
        self.now = now;
        if self.is_closed() {
            return;
        }
        match Frame::decode_exact(message, self.decoder.max_payload()) {
            Ok(frame) => {
                if let Err(e) = self.on_frame(frame) {
                    self.fail(e);
                }
            }
            Err(e) => self.fail(ConnectionError::Malformed(e)),
        }
    }

    /// The peer will send nothing more (end of stream, or a half-close).
    /// Calls we opened fail; calls the peer opened that are fully received
    /// may still be answered; nothing new is opened.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if self.is_closed() || self.eof {
            return;
        }
        self.eof = true;
        // Runs `finish_eof` once every buffered frame is processed (at once,
        // or when paused input resumes).
        self.process_input();
    }

    fn finish_eof(&mut self) {
        if self.is_closed() || self.eof_done {
            return;
        }
        self.eof_done = true;
        if let Err(e) = self.decoder.decode_eof(&self.rx) {
            self.fail(ConnectionError::Malformed(e));
            return;
        }
        // Calls we opened can never be answered now: the connection is lost.
        if self.phase != Phase::Open || self.calls.values().any(|c| c.origin == Side::Local) {
            self.fail(ConnectionError::ConnectionLost);
            return;
        }
        // A half-close: calls the peer opened and fully sent may still be
        // answered; those it was still sending are cancelled.
        let ids: Vec<CallId> = self.calls.iter().filter(|(_, c)| c.recv_open).map(|(id, _)| *id).collect();
        for id in ids {
            self.cancel_remote_call(id, ErrorCode::CANCELLED);
        }
        self.goaway_received.get_or_insert(self.last_local_id);
        self.maybe_finish();
    }

    /// Time has passed; fire whatever expired.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.is_closed() {
            return;
        }
        let t = self.config.timeouts.clone();
        if self.phase != Phase::Open && now >= self.started + t.handshake {
            self.fail(ConnectionError::Timeout("handshake"));
            return;
        }
        if let Some(since) = self.partial_since
            && now >= since + t.partial_frame
        {
            self.fail(ConnectionError::Timeout("partial frame"));
            return;
        }
        if self.phase == Phase::Open {
            if let Some(interval) = t.keepalive_interval {
                match self.keepalive_ping {
                    Some(sent) if now >= sent + t.keepalive_timeout => {
                        self.fail(ConnectionError::Timeout("keepalive"));
                        return;
                    }
                    None if now >= self.last_rx + interval => {
                        self.keepalive_ping = Some(now);
                        let token = self.take_ping_token();
                        self.push_control(FrameType::PING, 0, 0, Bytes::copy_from_slice(&token.to_le_bytes()));
                    }
                    _ => {}
                }
            }
            if let Some(idle) = t.idle
                && self.calls.is_empty()
                && self.shutdown == Shutdown::None
                && now >= self.last_activity + idle
            {
                self.close(ErrorCode::NO_ERROR, Some("idle timeout"));
            }
        }
        while let Some(&(at, id)) = self.assembling.first() {
            // While input is paused the rest of the message may be waiting
            // in our own buffer: the deadline applies to the peer only.
            if at > now || self.input_blocked {
                break;
            }
            self.assembling.pop_first();
            if self.calls.get(&id).and_then(|c| c.assembly.as_ref()).is_some_and(|a| a.expires == at) {
                self.fail(ConnectionError::Timeout("partial message"));
                return;
            }
        }
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(call) = self.calls.get(&id) else { continue };
            match call.origin {
                Side::Local => {
                    self.fail_local_call(id, ErrorCode::DEADLINE_EXCEEDED, ErrorInfo::default(), Side::Local)
                }
                Side::Remote => self.cancel_remote_call(id, ErrorCode::DEADLINE_EXCEEDED),
            }
        }
        match self.shutdown {
            Shutdown::Announced { deadline, .. } if now >= deadline => self.send_final_goaway(),
            Shutdown::Draining { deadline } if now >= deadline => {
                self.fail(ConnectionError::Timeout("drain"));
                return;
            }
            _ => {}
        }
        self.maybe_finish();
    }

    // ----- handshake commands ---------------------------------------------

    /// Server: accept the client's HELLO and complete the handshake.
    pub fn accept(&mut self) -> Result<(), ApiError> {
        if self.phase != Phase::AwaitingAccept {
            return Err(ApiError::InvalidState("accept needs a HELLO awaiting an answer"));
        }
        let ack = HelloAck {
            version: PROTOCOL_VERSION,
            error_code: ErrorCode::NO_ERROR,
            message: None,
            limits: self.config.advertised(),
            compression: self.config.compression_list(),
            codecs: self.config.codecs.clone(),
            services: self.config.services.clone(),
            agent: self.config.agent.clone(),
            uses: self.config.uses.clone(),
        };
        self.push_control(FrameType::HELLO_ACK, 0, 0, ack.encode().into());
        self.open_connection();
        Ok(())
    }

    /// Server: refuse the client's HELLO with `code` and close.
    pub fn refuse(&mut self, code: ErrorCode, message: Option<&str>) -> Result<(), ApiError> {
        if self.phase != Phase::AwaitingAccept {
            return Err(ApiError::InvalidState("refuse needs a HELLO awaiting an answer"));
        }
        if code == ErrorCode::NO_ERROR {
            return Err(ApiError::InvalidArgument("a refusal needs an error code"));
        }
        self.send_refusal(code, message);
        self.finish_closed(Some(ConnectionError::Refused {
            code,
            side: Side::Local,
            message: message.map(String::from),
        }));
        Ok(())
    }

    fn send_refusal(&mut self, code: ErrorCode, message: Option<&str>) {
        let ack = HelloAck {
            version: PROTOCOL_VERSION,
            error_code: code,
            message: message.map(truncate_reason),
            ..HelloAck::default()
        };
        self.push_control(FrameType::HELLO_ACK, 0, 0, ack.encode().into());
    }

    // ----- call commands ---------------------------------------------------

    fn check_can_open(&self) -> Result<(), SendError> {
        if self.phase == Phase::Closed {
            return Err(SendError::Closed);
        }
        if self.phase != Phase::Open {
            return Err(SendError::Api(ApiError::InvalidState("the handshake has not completed")));
        }
        if self.shutdown != Shutdown::None || self.goaway_received.is_some() || self.eof {
            return Err(SendError::Closing);
        }
        if self.next_local_id > u64::from(self.config.limits.max_local_id) {
            return Err(SendError::IdsExhausted);
        }
        Ok(())
    }

    fn check_message(&self, message: &Message) -> Result<(), SendError> {
        let peer = self.peer.as_ref().map(|p| p.limits).unwrap_or_default();
        let len = message.body.len() as u64;
        if len > u64::from(peer.max_message) {
            return Err(SendError::TooLarge { len, max: peer.max_message });
        }
        if let Some(n) = message.uncompressed_len {
            if !self.peer.as_ref().is_some_and(|p| p.compression) {
                return Err(SendError::Api(ApiError::InvalidArgument("compression was not negotiated")));
            }
            if n > peer.max_message {
                return Err(SendError::TooLarge { len: n.into(), max: peer.max_message });
            }
        }
        Ok(())
    }

    fn check_queue(&mut self) -> Result<(), SendError> {
        if self.queued_bytes >= self.config.limits.max_send_queue {
            self.send_blocked = true;
            return Err(SendError::Blocked);
        }
        Ok(())
    }

    fn open_call(
        &mut self,
        kind: Kind,
        ty: FrameType,
        method: u32,
        message: Message,
        deadline: Option<Duration>,
        end: bool,
    ) -> Result<CallId, SendError> {
        self.check_can_open()?;
        self.check_message(&message)?;
        let peer_max = self.peer.as_ref().map_or(0, |p| p.limits.max_in_flight);
        if kind != Kind::Event && self.local_in_flight >= peer_max {
            self.send_blocked = true;
            return Err(SendError::Blocked);
        }
        self.check_queue()?;
        let id = self.next_local_id as CallId;
        self.next_local_id += 2;
        self.last_local_id = id;
        let mut flags = if end { Flags::END } else { Flags::NONE };
        let mut prelude = Vec::new();
        // The deadline travels in whole milliseconds (at most u32::MAX); the
        // local timer uses the same value so both ends agree.
        let deadline = deadline.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        if let Some(ms) = deadline {
            flags = flags.with(Flags::DEADLINE);
            prelude.extend_from_slice(&ms.to_le_bytes());
        }
        let deadline = deadline.map(|ms| Duration::from_millis(ms.into()));
        if kind != Kind::Event {
            let peer = self.peer.as_ref().map(|p| p.limits).unwrap_or_default();
            let mut call = Call::new(kind, Side::Local);
            call.send_open = kind == Kind::Stream && !end;
            call.send_credit = i64::from(peer.initial_stream_credit);
            call.recv_credit = i64::from(self.config.limits.initial_stream_credit);
            if let Some(d) = deadline {
                let at = self.now + d;
                call.deadline = Some(at);
                self.deadlines.insert((at, id));
            }
            self.calls.insert(id, Box::new(call));
            self.local_in_flight += 1;
        }
        self.enqueue(OutMessage::new(ty, id, method, flags, prelude, message, false));
        Ok(id)
    }

    /// Calls `method` with `message`. The response arrives as
    /// [`Event::Response`] or [`Event::CallFailed`] with the returned id.
    /// `deadline` travels to the peer, which stops work when it passes; we
    /// fail the call locally at the same moment.
    pub fn send_request(
        &mut self,
        method: u32,
        message: Message,
        deadline: Option<Duration>,
    ) -> Result<CallId, SendError> {
        self.open_call(Kind::Unary, FrameType::REQUEST, method, message, deadline, false)
    }

    /// Sends a one-way message.
    pub fn send_event(&mut self, method: u32, message: Message) -> Result<(), SendError> {
        self.open_call(Kind::Event, FrameType::EVENT, method, message, None, false).map(|_| ())
    }

    /// Opens a stream with an opening message (which may be empty). With
    /// `end`, we send nothing more (a server-streaming call).
    pub fn open_stream(
        &mut self,
        method: u32,
        message: Message,
        deadline: Option<Duration>,
        end: bool,
    ) -> Result<CallId, SendError> {
        self.open_call(Kind::Stream, FrameType::STREAM_OPEN, method, message, deadline, end)
    }

    /// Answers a call the peer made. On a call that was cancelled this sends
    /// nothing and frees its slot.
    pub fn send_response(&mut self, id: CallId, message: Message) -> Result<(), SendError> {
        let call = self.calls.get(&id).ok_or(SendError::UnknownCall(id))?;
        if call.origin != Side::Remote || call.kind != Kind::Unary || !call.slot {
            return Err(SendError::UnknownCall(id));
        }
        if call.cancelled {
            self.release_remote(id);
            return Ok(());
        }
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        self.check_message(&message)?;
        self.enqueue(OutMessage::new(FrameType::RESPONSE, id, 0, Flags::NONE, Vec::new(), message, false));
        self.error_resets.refund(1);
        self.release_remote(id);
        Ok(())
    }

    /// Ends a call or stream the peer opened with an error. On a call that was
    /// cancelled this sends nothing and frees its slot.
    pub fn send_error(&mut self, id: CallId, code: ErrorCode, info: ErrorInfo) -> Result<(), SendError> {
        let call = self.calls.get(&id).ok_or(SendError::UnknownCall(id))?;
        if call.origin != Side::Remote || !call.slot {
            return Err(SendError::UnknownCall(id));
        }
        if code == ErrorCode::NO_ERROR {
            return Err(SendError::Api(ApiError::InvalidArgument("ERROR needs a code other than NO_ERROR")));
        }
        if call.cancelled || self.is_closed() {
            self.release_remote(id);
            return Ok(());
        }
        self.purge_out(id);
        let max_frame = self.peer.as_ref().map_or(0, |p| p.limits.max_frame) as usize;
        let mut payload = info.encode();
        if payload.len() > max_frame {
            // ERROR is never fragmented: keep a shortened message only.
            let short = ErrorInfo { message: info.message.as_deref().map(truncate_reason), details: None };
            payload = short.encode();
        }
        self.push_control(FrameType::ERROR, id, code.0.into(), payload.into());
        // ERROR ends the stream in both directions: later data from the
        // peer, including the rest of a message it was sending, is stray.
        self.remember_ended(id);
        if let Some(call) = self.calls.get_mut(&id) {
            call.recv_open = false;
            call.assembly = None;
        }
        self.release_remote(id);
        Ok(())
    }

    /// Sends a message on a stream; with `end`, our half of the stream ends.
    /// Returns `Blocked` (and changes nothing) when the stream's credit is
    /// spent by messages already accepted; [`Event::Writable`] follows.
    pub fn send_stream_data(&mut self, id: CallId, message: Message, end: bool) -> Result<(), SendError> {
        let call = self.calls.get(&id).ok_or(SendError::UnknownCall(id))?;
        if call.kind != Kind::Stream {
            return Err(SendError::UnknownCall(id));
        }
        if call.cancelled {
            if end {
                self.release_remote(id);
            }
            return Ok(());
        }
        if !call.send_open {
            return Err(SendError::Api(ApiError::InvalidState("the stream's sending half is closed")));
        }
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        self.check_message(&message)?;
        let call = self.calls.get_mut(&id).ok_or(SendError::UnknownCall(id))?;
        if i64::try_from(call.queued).unwrap_or(i64::MAX) >= call.send_credit && !(end && message.body.is_empty()) {
            call.blocked = true;
            return Err(SendError::Blocked);
        }
        self.check_queue()?;
        let call = self.calls.get_mut(&id).ok_or(SendError::UnknownCall(id))?;
        let prelude_len = if message.uncompressed_len.is_some() { 4 } else { 0 };
        call.queued += message.body.len() as u64 + prelude_len;
        let flags = if end {
            call.send_open = false;
            Flags::END
        } else {
            Flags::NONE
        };
        let remote = call.origin == Side::Remote;
        self.enqueue(OutMessage::new(FrameType::STREAM_DATA, id, 0, flags, Vec::new(), message, true));
        if end && remote {
            self.error_resets.refund(1);
            self.release_remote(id);
        }
        self.maybe_remove(id);
        Ok(())
    }

    /// Ends our half of a stream with an empty final message.
    pub fn finish(&mut self, id: CallId) -> Result<(), SendError> {
        self.send_stream_data(id, Message::new(Codec::RAW, Bytes::new()), true)
    }

    /// Returns `n` bytes of credit to the peer on stream `id`, after the
    /// application consumed that much. Grants are coalesced: a CREDIT frame
    /// goes out once half the initial window has accumulated.
    pub fn grant_credit(&mut self, id: CallId, n: u32) -> Result<(), ApiError> {
        let call = self.calls.get_mut(&id).ok_or(ApiError::UnknownCall(id))?;
        if call.kind != Kind::Stream {
            return Err(ApiError::UnknownCall(id));
        }
        if !call.recv_open {
            return Ok(());
        }
        // Bytes already credited back while the message was reassembled
        // are not granted twice.
        let prepaid = call.prepaid.min(n);
        call.prepaid -= prepaid;
        call.grant_pending = call.grant_pending.saturating_add(n - prepaid);
        self.flush_pending_grant(id);
        Ok(())
    }

    /// Stream bytes buffered for reassembly are credited back at once: a
    /// message larger than the window could otherwise never complete. Stream
    /// credit bounds complete messages the application has not consumed.
    fn credit_reassembly(&mut self, id: CallId, n: u32) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.grant_pending = call.grant_pending.saturating_add(n);
            call.prepaid = call.prepaid.saturating_add(n);
        }
        self.flush_pending_grant(id);
    }

    /// Sends a stream's accumulated grant when it is large enough (or the
    /// peer is out of credit), once the peer has seen the stream.
    fn flush_pending_grant(&mut self, id: CallId) {
        let threshold = i64::from((self.config.limits.initial_stream_credit / 2).max(1));
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.kind != Kind::Stream || !call.opened || !call.recv_open {
            return;
        }
        let room = (i64::from(MAX_WINDOW) - call.recv_credit).max(0);
        let grant = i64::from(call.grant_pending).min(room);
        if grant > 0 && (grant >= threshold || call.recv_credit <= 0) {
            call.grant_pending -= u32::try_from(grant).unwrap_or(u32::MAX);
            call.recv_credit += grant;
            let grant = u32::try_from(grant).unwrap_or(MAX_WINDOW);
            self.push_control(FrameType::CREDIT, id, grant, Bytes::new());
        }
    }

    /// Abandons a call or stream we opened: the peer gets CANCEL, queued
    /// frames are dropped, and no event for it follows.
    pub fn cancel(&mut self, id: CallId) -> Result<(), ApiError> {
        let call = self.calls.get(&id).ok_or(ApiError::UnknownCall(id))?;
        if call.origin != Side::Local {
            return Err(ApiError::UnknownCall(id));
        }
        self.remember_ended(id);
        let never_sent = self.purge_out(id);
        // A call whose opening frame never left needs no CANCEL: the peer
        // has not seen its id.
        if !self.is_closed() && !never_sent {
            self.push_control(FrameType::CANCEL, id, 0, Bytes::new());
        }
        self.remove_call(id);
        self.maybe_finish();
        Ok(())
    }

    /// Sends a PING; [`Event::Pong`] with the returned token reports the
    /// round trip.
    pub fn ping(&mut self) -> Result<u64, ApiError> {
        if self.phase != Phase::Open {
            return Err(ApiError::InvalidState("ping needs an open connection"));
        }
        if self.user_pings.len() >= MAX_USER_PINGS {
            return Err(ApiError::InvalidState("too many pings outstanding"));
        }
        let token = self.take_ping_token();
        self.user_pings.push_back((token, self.now));
        self.push_control(FrameType::PING, 0, 0, Bytes::copy_from_slice(&token.to_le_bytes()));
        Ok(token)
    }

    /// Closes the connection. With `NO_ERROR` this is the two-phase graceful
    /// shutdown: GOAWAY(last = MAX) and a PING, then on the PONG (or after
    /// `goaway_grace`) GOAWAY(last peer id), then calls in flight finish
    /// within `drain`. With any other code the connection closes at once
    /// after a GOAWAY carrying it.
    pub fn close(&mut self, code: ErrorCode, message: Option<&str>) {
        if self.is_closed() {
            return;
        }
        if code != ErrorCode::NO_ERROR || self.phase != Phase::Open {
            let code = if code == ErrorCode::NO_ERROR { ErrorCode::UNAVAILABLE } else { code };
            self.deferred.clear();
            self.push_goaway(self.last_peer_id, code, message);
            self.finish_closed(Some(ConnectionError::Local { code, message: message.map(String::from) }));
            return;
        }
        if self.shutdown != Shutdown::None {
            return;
        }
        let token = self.take_ping_token() | PING_TOKEN_GOAWAY_BIT;
        self.push_goaway(u32::MAX, ErrorCode::NO_ERROR, message);
        self.push_control(FrameType::PING, 0, 0, Bytes::copy_from_slice(&token.to_le_bytes()));
        if self.out.iter().any(OutMessage::is_unsent_open) {
            // Calls we opened before closing must reach the peer before our
            // GOAWAY does, or the peer could close without seeing them.
            let ping = self.control.pop_back().expect("pushed above");
            let goaway = self.control.pop_back().expect("pushed above");
            self.deferred.push_back(goaway);
            self.deferred.push_back(ping);
        }
        self.shutdown = Shutdown::Announced { token, deadline: self.now + self.config.timeouts.goaway_grace };
    }

    // ----- outputs ---------------------------------------------------------

    /// The next frame to write, if any. Control frames go first; messages
    /// take turns frame by frame, so a bulk transfer delays a small call by
    /// at most one fragment.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        let frame = self.next_frame();
        if frame.is_some() {
            self.resume_input();
        }
        if frame.is_none() {
            self.maybe_finish();
        }
        frame
    }

    /// The next event for the application, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            let pending = self.events.pop_front()?;
            self.event_bytes = self.event_bytes.saturating_sub(message_len(&pending.event));
            self.return_connection_credit(pending.credit);
            if let Some(id) = pending.opens {
                match self.calls.get_mut(&id) {
                    Some(call) if !call.cancelled => {
                        call.delivered = true;
                        self.early_cancels.refund(1);
                    }
                    _ => {
                        // Cancelled (or the connection failed) before the
                        // application saw it: it never hears of the call.
                        self.skipped.insert(id);
                        self.after_poll();
                        continue;
                    }
                }
            }
            let follows_skipped = match &pending.event {
                Event::StreamData { id, .. } | Event::Cancelled { id, .. } => self.skipped.contains(id),
                _ => false,
            };
            self.after_poll();
            if follows_skipped {
                continue;
            }
            return Some(pending.event);
        }
    }

    fn after_poll(&mut self) {
        if self.events.is_empty() {
            // No queued event can name a skipped call any more, and the
            // calls themselves are gone.
            self.skipped.clear();
        }
        self.resume_input();
    }

    /// When [`Connection::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let t = &self.config.timeouts;
        let mut next: Option<Instant> = None;
        let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        if self.phase != Phase::Open {
            consider(self.started + t.handshake);
        }
        if let Some(since) = self.partial_since {
            consider(since + t.partial_frame);
        }
        if self.phase == Phase::Open {
            if let Some(interval) = t.keepalive_interval {
                match self.keepalive_ping {
                    Some(sent) => consider(sent + t.keepalive_timeout),
                    None => consider(self.last_rx + interval),
                }
            }
            if let (Some(idle), true, Shutdown::None) = (t.idle, self.calls.is_empty(), self.shutdown) {
                consider(self.last_activity + idle);
            }
        }
        if let Some(&(at, _)) = self.deadlines.first() {
            consider(at);
        }
        if let Some(&(at, _)) = self.assembling.first().filter(|_| !self.input_blocked) {
            consider(at);
        }
        match self.shutdown {
            Shutdown::Announced { deadline, .. } | Shutdown::Draining { deadline } => consider(deadline),
            Shutdown::None => {}
        }
        next
    }

    // ----- internals: input ------------------------------------------------

    fn input_paused(&self) -> bool {
        self.control.len() >= self.config.limits.max_pending_control as usize
            || self.events.len() >= MAX_PENDING_EVENTS
            || self.event_bytes >= u64::from(self.config.limits.connection_credit)
    }

    fn resume_input(&mut self) {
        if self.input_blocked && !self.input_paused() {
            self.process_input();
        }
    }

    fn process_input(&mut self) {
        self.input_blocked = false;
        loop {
            if self.is_closed() {
                break;
            }
            if self.input_paused() {
                self.input_blocked = true;
                break;
            }
            match self.decoder.decode(&mut self.rx) {
                Ok(Some(frame)) => {
                    self.partial_since = None;
                    if let Err(e) = self.on_frame(frame) {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(ConnectionError::Malformed(e)),
            }
        }
        if self.is_closed() {
            self.rx.clear();
            return;
        }
        if self.input_blocked {
            // Whole frames wait for the application, not for the peer.
            self.partial_since = None;
        } else {
            if self.decoder.is_mid_frame(&self.rx) {
                self.partial_since.get_or_insert(self.now);
            }
            if self.eof {
                self.finish_eof();
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        self.last_rx = self.now;
        self.keepalive_ping = None;
        match self.phase {
            Phase::Handshake | Phase::AwaitingAccept => return self.on_handshake_frame(frame),
            Phase::Closed => return Ok(()),
            Phase::Open => {}
        }
        if h.ty.is_message() || h.ty == FrameType::CONTINUATION {
            self.last_activity = self.now;
        }
        match h.ty {
            FrameType::HELLO | FrameType::HELLO_ACK => Err(Violation::UnexpectedFrame(h.ty).into()),
            FrameType::REQUEST | FrameType::EVENT | FrameType::STREAM_OPEN => self.on_open(frame),
            FrameType::RESPONSE => self.on_response(frame),
            FrameType::STREAM_DATA => self.on_stream_data(frame),
            FrameType::CONTINUATION => self.on_continuation(frame),
            FrameType::ERROR => self.on_error(frame),
            FrameType::CREDIT => self.on_credit(h),
            FrameType::CANCEL => self.on_cancel(h),
            FrameType::PING => self.on_ping(frame),
            FrameType::PONG => self.on_pong(frame),
            FrameType::GOAWAY => self.on_goaway(frame),
            _ => self.stray(),
        }
    }

    fn on_handshake_frame(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        if h.ty == FrameType::GOAWAY {
            return self.on_goaway(frame);
        }
        match (self.config.role, self.phase, h.ty) {
            (Role::Server, Phase::Handshake, FrameType::HELLO) => {
                let hello = Hello::decode(&frame.payload).map_err(ConnectionError::Control)?;
                if hello.min_version > PROTOCOL_VERSION || hello.max_version < PROTOCOL_VERSION {
                    let msg = "no protocol version in common";
                    self.send_refusal(ErrorCode::INCOMPATIBLE, Some(msg));
                    return Err(ConnectionError::Refused {
                        code: ErrorCode::INCOMPATIBLE,
                        side: Side::Local,
                        message: Some(msg.into()),
                    });
                }
                let peer = self.peer_info(
                    PROTOCOL_VERSION,
                    hello.limits,
                    &hello.compression,
                    hello.codecs.clone(),
                    (hello.services.clone(), hello.uses.clone()),
                    hello.agent.clone(),
                );
                let Ok(peer) = peer else {
                    let msg = "advertised limits out of range";
                    self.send_refusal(ErrorCode::INCOMPATIBLE, Some(msg));
                    return Err(ConnectionError::Refused {
                        code: ErrorCode::INCOMPATIBLE,
                        side: Side::Local,
                        message: Some(msg.into()),
                    });
                };
                if let Err(e) =
                    crate::services::check(&self.config.services, &self.config.uses, &hello.services, &hello.uses)
                {
                    self.send_refusal(ErrorCode::INCOMPATIBLE, Some(&e.0));
                    return Err(ConnectionError::Refused {
                        code: ErrorCode::INCOMPATIBLE,
                        side: Side::Local,
                        message: Some(e.0),
                    });
                }
                self.peer = Some(peer);
                self.phase = Phase::AwaitingAccept;
                self.push_event(Event::HelloReceived(hello), 0, None);
                Ok(())
            }
            (Role::Client, Phase::Handshake, FrameType::HELLO_ACK) => {
                let ack = HelloAck::decode(&frame.payload).map_err(ConnectionError::Control)?;
                if ack.error_code != ErrorCode::NO_ERROR {
                    return Err(ConnectionError::Refused {
                        code: ack.error_code,
                        side: Side::Remote,
                        message: ack.message,
                    });
                }
                if ack.version != PROTOCOL_VERSION {
                    return Err(Violation::VersionNotOffered(ack.version).into());
                }
                self.peer = Some(self.peer_info(
                    ack.version,
                    ack.limits,
                    &ack.compression,
                    ack.codecs,
                    (ack.services, ack.uses),
                    ack.agent,
                )?);
                self.open_connection();
                Ok(())
            }
            _ => Err(Violation::UnexpectedFrame(h.ty).into()),
        }
    }

    fn peer_info(
        &self,
        version: u16,
        advertised: AdvertisedLimits,
        compression: &[u8],
        codecs: Vec<u8>,
        (services, uses): (Vec<Service>, Vec<Service>),
        agent: Option<String>,
    ) -> Result<PeerInfo, Violation> {
        let a = advertised;
        // Zero means "the default"; anything else must leave room for a
        // prelude and a reason string.
        for (name, v) in [
            ("max_frame", a.max_frame),
            ("max_message", a.max_message),
            ("initial_stream_credit", a.initial_stream_credit),
            ("connection_credit", a.connection_credit),
        ] {
            if v != 0 && v < crate::limits::MIN_FRAME {
                return Err(Violation::InvalidPeerLimit(name));
            }
        }
        let d = Limits::default();
        let or = |v: u32, default: u32| if v == 0 { default } else { v };
        let limits = AdvertisedLimits {
            max_frame: or(advertised.max_frame, d.max_frame).min(crate::frame::MAX_FRAME_CEILING),
            max_message: or(advertised.max_message, d.max_message),
            max_in_flight: or(advertised.max_in_flight, d.max_in_flight),
            initial_stream_credit: or(advertised.initial_stream_credit, d.initial_stream_credit).min(MAX_WINDOW),
            connection_credit: or(advertised.connection_credit, d.connection_credit).min(MAX_WINDOW),
        };
        Ok(PeerInfo {
            version,
            limits,
            compression: self.config.compression && compression.contains(&COMPRESSION_ZSTD),
            codecs,
            services,
            uses,
            agent,
        })
    }

    fn open_connection(&mut self) {
        self.phase = Phase::Open;
        self.decoder.set_max_payload(self.config.limits.max_frame);
        let peer = self.peer.clone().expect("peer info is set before the connection opens");
        self.send_credit = i64::from(peer.limits.connection_credit);
        self.last_rx = self.now;
        self.last_activity = self.now;
        self.push_event(Event::Connected(peer), 0, None);
    }

    /// Parses the prelude of a message's first frame.
    fn prelude(&self, h: &Header, payload: &mut Bytes) -> Result<(Option<Duration>, Option<u32>), ConnectionError> {
        let mut take = |what: &'static str| -> Result<u32, ConnectionError> {
            let Some(b) = payload.first_chunk::<4>() else {
                return Err(Violation::ShortPrelude(what).into());
            };
            let v = u32::from_le_bytes(*b);
            let _ = payload.split_to(4);
            Ok(v)
        };
        let deadline = if h.flags.contains(Flags::DEADLINE) {
            Some(Duration::from_millis(take("deadline")?.into()))
        } else {
            None
        };
        let uncompressed = if h.flags.contains(Flags::COMPRESSED) {
            let n = take("uncompressed size")?;
            if !self.config.compression {
                return Err(Violation::CompressionNotNegotiated.into());
            }
            if n > self.config.limits.max_message {
                return Err(ConnectionError::LimitExceeded {
                    limit: "max_message",
                    value: n.into(),
                    max: self.config.limits.max_message.into(),
                });
            }
            Some(n)
        } else {
            None
        };
        let max = self.config.limits.max_message;
        if payload.len() as u64 > u64::from(max) {
            return Err(ConnectionError::LimitExceeded {
                limit: "max_message",
                value: payload.len() as u64,
                max: max.into(),
            });
        }
        Ok((deadline, uncompressed))
    }

    /// Starts reassembling a message; it must complete within the
    /// partial-frame timeout.
    fn start_assembly(
        &mut self,
        h: Header,
        first: Bytes,
        deadline: Option<Duration>,
        uncompressed: Option<u32>,
    ) -> Assembly {
        let expires = self.now + self.config.timeouts.partial_frame;
        self.assembling.insert((expires, h.id));
        Assembly::start(&h, first, deadline, uncompressed, expires)
    }

    /// Charges connection credit for a message frame.
    fn charge_connection(&mut self, len: u32) -> Result<(), ConnectionError> {
        self.recv_window -= i64::from(len);
        if self.recv_window < 0 {
            return Err(ConnectionError::FlowControl { window: "connection" });
        }
        let l = &self.config.limits;
        let non_final = len < l.small_frame_threshold;
        if non_final {
            // Charged by the caller when the frame is non-final.
        } else {
            self.small_frames.refund(len);
        }
        Ok(())
    }

    fn charge_small(&mut self, h: &Header) -> Result<(), ConnectionError> {
        let threshold = self.config.limits.small_frame_threshold;
        let non_final = h.flags.contains(Flags::MORE)
            || (h.ty == FrameType::STREAM_DATA && !h.flags.contains(Flags::END) && h.length == 0);
        if non_final && h.length < threshold && !self.small_frames.charge(threshold - h.length) {
            return Err(ConnectionError::Budget("small frames"));
        }
        Ok(())
    }

    /// A frame naming a call this endpoint ended (cancel, deadline, error):
    /// the peer may have had frames in flight, bounded by the credit it had,
    /// so they cost nothing. Other strays are charged.
    fn stray_on(&mut self, id: CallId) -> Result<(), ConnectionError> {
        if self.ended_here.contains(&id) { Ok(()) } else { self.stray() }
    }

    /// Remembers a call this endpoint ended, for [`Self::stray_on`]; the
    /// oldest is forgotten past [`MAX_ENDED_HERE`].
    fn remember_ended(&mut self, id: CallId) {
        if self.ended_here.insert(id) {
            self.ended_order.push_back(id);
            if self.ended_order.len() > MAX_ENDED_HERE
                && let Some(old) = self.ended_order.pop_front()
            {
                self.ended_here.remove(&old);
            }
        }
    }

    fn stray(&mut self) -> Result<(), ConnectionError> {
        if self.shutdown != Shutdown::None || self.goaway_sent.is_some() {
            return Ok(());
        }
        if self.strays.charge(1) { Ok(()) } else { Err(ConnectionError::Budget("stray frames")) }
    }

    fn is_local_id(&self, id: CallId) -> bool {
        (id % 2 == 1) == (self.config.role == Role::Client)
    }

    /// Classifies an id that names no live call: opened before (a stray
    /// frame, dropped and counted) or never opened (a violation).
    fn unknown_id(&mut self, ty: FrameType, id: CallId) -> Result<(), ConnectionError> {
        let last = if self.is_local_id(id) { self.last_local_id } else { self.last_peer_id };
        if id > last {
            return Err(Violation::UnopenedId { ty, id }.into());
        }
        self.stray_on(id)
    }

    fn on_open(&mut self, mut frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        if self.is_local_id(h.id) {
            return Err(Violation::WrongParity { ty: h.ty, id: h.id }.into());
        }
        if h.id <= self.last_peer_id {
            return Err(Violation::IdNotIncreasing { id: h.id, last: self.last_peer_id }.into());
        }
        self.last_peer_id = h.id;
        self.charge_connection(h.length)?;
        self.charge_small(&h)?;
        if self.eof_done || self.goaway_sent.is_some_and(|last| h.id > last) {
            // Refused by our GOAWAY: the peer knows it was not processed.
            self.return_connection_credit(h.length);
            return Ok(());
        }
        let (deadline, uncompressed) = self.prelude(&h, &mut frame.payload)?;
        let kind = match h.ty {
            FrameType::REQUEST => Kind::Unary,
            FrameType::STREAM_OPEN => Kind::Stream,
            _ => Kind::Event,
        };
        if kind == Kind::Event {
            if h.flags.contains(Flags::MORE) {
                if self.event_assemblies >= self.config.limits.max_in_flight {
                    return Err(ConnectionError::LimitExceeded {
                        limit: "max_in_flight",
                        value: u64::from(self.event_assemblies) + 1,
                        max: self.config.limits.max_in_flight.into(),
                    });
                }
                self.event_assemblies += 1;
                let mut call = Call::new(Kind::Event, Side::Remote);
                call.recv_open = true;
                call.assembly = Some(self.start_assembly(h, frame.payload, None, uncompressed));
                self.return_connection_credit(h.length);
                self.calls.insert(h.id, Box::new(call));
                return Ok(());
            }
            let message = Message { codec: h.codec, body: frame.payload, uncompressed_len: uncompressed };
            self.strays.refund(1);
            self.push_event(Event::Event { method: h.arg, message }, h.length, None);
            return Ok(());
        }
        if self.remote_in_flight >= self.config.limits.max_in_flight {
            self.return_connection_credit(h.length);
            if !self.error_resets.charge(1) {
                return Err(ConnectionError::Budget("refused calls"));
            }
            self.push_control(FrameType::ERROR, h.id, ErrorCode::REFUSED.0.into(), Bytes::new());
            return Ok(());
        }
        let mut call = Call::new(kind, Side::Remote);
        call.slot = true;
        call.recv_open = true;
        call.send_open = true;
        call.method = h.arg;
        call.recv_credit = i64::from(self.config.limits.initial_stream_credit);
        call.send_credit = self.peer.as_ref().map_or(0, |p| i64::from(p.limits.initial_stream_credit));
        if let Some(d) = deadline {
            let at = self.now + d;
            call.deadline = Some(at);
            self.deadlines.insert((at, h.id));
        }
        self.remote_in_flight += 1;
        if h.flags.contains(Flags::MORE) {
            call.assembly = Some(self.start_assembly(h, frame.payload, deadline, uncompressed));
            self.return_connection_credit(h.length);
            self.calls.insert(h.id, Box::new(call));
            return Ok(());
        }
        let end = h.flags.contains(Flags::END);
        if kind == Kind::Unary || end {
            call.recv_open = false;
        }
        self.calls.insert(h.id, Box::new(call));
        let message = Message { codec: h.codec, body: frame.payload, uncompressed_len: uncompressed };
        self.deliver_open(h.ty, h.id, h.arg, message, deadline, end, h.length);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver_open(
        &mut self,
        ty: FrameType,
        id: CallId,
        method: u32,
        message: Message,
        deadline: Option<Duration>,
        end: bool,
        credit: u32,
    ) {
        self.strays.refund(1);
        let event = if ty == FrameType::REQUEST {
            Event::Request { id, method, message, deadline }
        } else {
            Event::StreamOpened { id, method, message, end, deadline }
        };
        self.push_event(event, credit, Some(id));
    }

    fn on_response(&mut self, mut frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        if !self.is_local_id(h.id) {
            return Err(Violation::WrongParity { ty: h.ty, id: h.id }.into());
        }
        self.charge_connection(h.length)?;
        self.charge_small(&h)?;
        let Some(call) = self.calls.get(&h.id) else {
            self.return_connection_credit(h.length);
            return self.unknown_id(h.ty, h.id);
        };
        if call.kind != Kind::Unary || call.assembly.is_some() {
            return Err(Violation::UnexpectedFrame(h.ty).into());
        }
        let (_, uncompressed) = self.prelude(&h, &mut frame.payload)?;
        if h.flags.contains(Flags::MORE) {
            let assembly = self.start_assembly(h, frame.payload, None, uncompressed);
            let call = self.calls.get_mut(&h.id).expect("checked above");
            call.assembly = Some(assembly);
            self.return_connection_credit(h.length);
            return Ok(());
        }
        let message = Message { codec: h.codec, body: frame.payload, uncompressed_len: uncompressed };
        self.complete_response(h.id, message, h.length);
        Ok(())
    }

    fn complete_response(&mut self, id: CallId, message: Message, credit: u32) {
        self.remove_call(id);
        self.strays.refund(1);
        self.error_resets.refund(1);
        self.push_event(Event::Response { id, message }, credit, None);
        self.maybe_finish();
    }

    fn on_stream_data(&mut self, mut frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        self.charge_connection(h.length)?;
        self.charge_small(&h)?;
        let Some(call) = self.calls.get_mut(&h.id) else {
            self.return_connection_credit(h.length);
            return self.unknown_id(h.ty, h.id);
        };
        if call.kind != Kind::Stream {
            return Err(Violation::UnexpectedFrame(h.ty).into());
        }
        if call.assembly.is_some() {
            return Err(Violation::InterleavedMessage(h.id).into());
        }
        if call.cancelled {
            self.return_connection_credit(h.length);
            return self.stray_on(h.id);
        }
        if !call.recv_open {
            self.return_connection_credit(h.length);
            return self.reset_stream(h.id, ErrorCode::STREAM_CLOSED);
        }
        call.recv_credit -= i64::from(h.length);
        if call.recv_credit < 0 {
            self.return_connection_credit(h.length);
            return self.reset_stream(h.id, ErrorCode::FLOW_CONTROL);
        }
        let (_, uncompressed) = self.prelude(&h, &mut frame.payload)?;
        if h.flags.contains(Flags::MORE) {
            let assembly = self.start_assembly(h, frame.payload, None, uncompressed);
            let call = self.calls.get_mut(&h.id).expect("checked above");
            call.assembly = Some(assembly);
            self.return_connection_credit(h.length);
            self.credit_reassembly(h.id, h.length);
            return Ok(());
        }
        let message = Message { codec: h.codec, body: frame.payload, uncompressed_len: uncompressed };
        self.complete_stream_data(h.id, message, h.flags.contains(Flags::END), h.length);
        Ok(())
    }

    fn complete_stream_data(&mut self, id: CallId, message: Message, end: bool, credit: u32) {
        if end && let Some(call) = self.calls.get_mut(&id) {
            call.recv_open = false;
        }
        self.strays.refund(1);
        self.push_event(Event::StreamData { id, message, end }, credit, None);
        self.maybe_remove(id);
        self.maybe_finish();
    }

    fn on_continuation(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        self.charge_connection(h.length)?;
        self.charge_small(&h)?;
        let max_message = self.config.limits.max_message;
        let max_fragments = max_fragments(max_message);
        let Some(call) = self.calls.get_mut(&h.id) else {
            self.return_connection_credit(h.length);
            return self.unknown_id(h.ty, h.id);
        };
        let Some(assembly) = call.assembly.as_mut() else {
            if call.cancelled {
                self.return_connection_credit(h.length);
                return self.stray_on(h.id);
            }
            return Err(Violation::UnexpectedFrame(h.ty).into());
        };
        if assembly.ty == FrameType::STREAM_DATA {
            call.recv_credit -= i64::from(h.length);
            if call.recv_credit < 0 {
                self.return_connection_credit(h.length);
                return self.reset_stream(h.id, ErrorCode::FLOW_CONTROL);
            }
        }
        assembly.fragments += 1;
        if assembly.fragments > max_fragments {
            return Err(ConnectionError::LimitExceeded {
                limit: "max_fragments",
                value: assembly.fragments.into(),
                max: max_fragments.into(),
            });
        }
        let total = assembly.body.len() as u64 + u64::from(h.length);
        if total > u64::from(max_message) {
            return Err(ConnectionError::LimitExceeded { limit: "max_message", value: total, max: max_message.into() });
        }
        let stream = assembly.ty == FrameType::STREAM_DATA;
        assembly.body.extend_from_slice(&frame.payload);
        self.return_connection_credit(h.length);
        if stream {
            self.credit_reassembly(h.id, h.length);
        }
        if h.flags.contains(Flags::MORE) {
            return Ok(());
        }
        let call = self.calls.get_mut(&h.id).expect("checked above");
        let a = call.assembly.take().expect("checked above");
        let message = Message { codec: a.codec, body: a.body.freeze(), uncompressed_len: a.uncompressed };
        let end = a.flags.contains(Flags::END);
        match a.ty {
            FrameType::RESPONSE => self.complete_response(h.id, message, 0),
            FrameType::STREAM_DATA => self.complete_stream_data(h.id, message, end, 0),
            FrameType::EVENT => {
                self.calls.remove(&h.id);
                self.event_assemblies -= 1;
                self.strays.refund(1);
                self.push_event(Event::Event { method: a.method, message }, 0, None);
            }
            ty => {
                if ty == FrameType::REQUEST || end {
                    call.recv_open = false;
                }
                self.deliver_open(ty, h.id, a.method, message, a.deadline, end, 0);
            }
        }
        Ok(())
    }

    fn on_error(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        if !self.is_local_id(h.id) {
            return Err(Violation::WrongParity { ty: h.ty, id: h.id }.into());
        }
        let info = ErrorInfo::decode(&frame.payload).map_err(ConnectionError::Control)?;
        if !self.calls.contains_key(&h.id) {
            return self.unknown_id(h.ty, h.id);
        }
        let code = ErrorCode(h.arg as u16);
        self.fail_local_call(h.id, code, info, Side::Remote);
        self.maybe_finish();
        Ok(())
    }

    fn on_credit(&mut self, h: Header) -> Result<(), ConnectionError> {
        if !self.credit_frames.charge(1) {
            return Err(ConnectionError::Budget("credit frames"));
        }
        let n = i64::from(h.arg);
        if h.id == 0 {
            if self.send_credit + n > i64::from(MAX_WINDOW) {
                return Err(ConnectionError::FlowControl { window: "connection credit overflow" });
            }
            self.send_credit += n;
            return Ok(());
        }
        let Some(call) = self.calls.get_mut(&h.id) else {
            return self.unknown_id(h.ty, h.id);
        };
        if call.kind != Kind::Stream {
            return Err(Violation::UnexpectedFrame(h.ty).into());
        }
        if call.send_credit + n > i64::from(MAX_WINDOW) {
            return self.reset_stream(h.id, ErrorCode::FLOW_CONTROL);
        }
        call.send_credit += n;
        if call.blocked && i64::try_from(call.queued).unwrap_or(i64::MAX) < call.send_credit {
            call.blocked = false;
            self.push_event(Event::Writable { id: Some(h.id) }, 0, None);
        }
        Ok(())
    }

    fn on_cancel(&mut self, h: Header) -> Result<(), ConnectionError> {
        if self.is_local_id(h.id) {
            return Err(Violation::WrongParity { ty: h.ty, id: h.id }.into());
        }
        let Some(call) = self.calls.get(&h.id) else {
            return self.unknown_id(h.ty, h.id);
        };
        if call.cancelled {
            return self.stray();
        }
        if !call.delivered && !self.early_cancels.charge(1) {
            return Err(ConnectionError::Budget("early cancels"));
        }
        self.cancel_remote_call(h.id, ErrorCode::CANCELLED);
        self.maybe_finish();
        Ok(())
    }

    fn on_ping(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        if let Some(prev) = self.last_peer_ping {
            let quick = self.now.saturating_duration_since(prev) < self.config.timeouts.min_ping_interval;
            if !quick {
                self.ping_strikes = 0;
            } else if !self.sent_message_since_peer_ping {
                self.ping_strikes += 1;
                if self.ping_strikes > self.config.limits.max_ping_strikes {
                    return Err(ConnectionError::Budget("pings"));
                }
            }
        }
        self.last_peer_ping = Some(self.now);
        self.sent_message_since_peer_ping = false;
        self.push_control(FrameType::PONG, 0, 0, frame.payload);
        Ok(())
    }

    fn on_pong(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        let token = frame.payload.first_chunk::<PING_PAYLOAD_LEN>().map_or(0, |b| u64::from_le_bytes(*b));
        if let Shutdown::Announced { token: t, .. } = self.shutdown
            && token == t
        {
            self.send_final_goaway();
            return Ok(());
        }
        if let Some(pos) = self.user_pings.iter().position(|(t, _)| *t == token) {
            let (_, sent) = self.user_pings.remove(pos).expect("position is in range");
            let rtt = self.now.saturating_duration_since(sent);
            self.push_event(Event::Pong { token, rtt }, 0, None);
            return Ok(());
        }
        if token & !PING_TOKEN_GOAWAY_BIT < self.next_ping_token { Ok(()) } else { self.stray() }
    }

    fn on_goaway(&mut self, frame: Frame) -> Result<(), ConnectionError> {
        let h = frame.header;
        let info = GoAwayInfo::decode(&frame.payload).map_err(ConnectionError::Control)?;
        let code = ErrorCode(h.arg as u16);
        let refuse_above = |conn: &mut Self, last: CallId| {
            let refused: Vec<CallId> =
                conn.calls.iter().filter(|(id, c)| c.origin == Side::Local && **id > last).map(|(id, _)| *id).collect();
            for id in refused {
                conn.fail_local_call(id, ErrorCode::REFUSED, ErrorInfo::default(), Side::Remote);
            }
        };
        if code != ErrorCode::NO_ERROR || self.phase != Phase::Open {
            // Calls above `last` were not processed: they fail as REFUSED
            // (safe to retry) before the rest fail with the peer's code.
            refuse_above(self, h.id);
            return Err(ConnectionError::Remote { code, message: info.message });
        }
        if let Some(prev) = self.goaway_received
            && h.id > prev
        {
            return Err(Violation::GoAwayIncreased { last: h.id, previous: prev }.into());
        }
        self.goaway_received = Some(h.id);
        refuse_above(self, h.id);
        self.push_event(Event::GoAway { last_id: h.id, code, message: info.message }, 0, None);
        self.maybe_finish();
        Ok(())
    }

    /// Ends a stream because of something the peer sent on it.
    fn reset_stream(&mut self, id: CallId, code: ErrorCode) -> Result<(), ConnectionError> {
        if !self.error_resets.charge(1) {
            return Err(ConnectionError::Budget("error resets"));
        }
        let Some(call) = self.calls.get(&id) else { return Ok(()) };
        match call.origin {
            Side::Local => {
                self.purge_out(id);
                self.push_control(FrameType::CANCEL, id, 0, Bytes::new());
                self.fail_local_call(id, code, ErrorInfo::default(), Side::Local);
            }
            Side::Remote => {
                self.purge_out(id);
                self.push_control(FrameType::ERROR, id, code.0.into(), Bytes::new());
                self.cancel_remote_call(id, code);
            }
        }
        Ok(())
    }

    // ----- internals: call table ------------------------------------------

    fn remove_call(&mut self, id: CallId) {
        if let Some(call) = self.calls.remove(&id) {
            if let Some(at) = call.deadline {
                self.deadlines.remove(&(at, id));
            }
            match (call.origin, call.kind) {
                (Side::Local, Kind::Unary | Kind::Stream) => {
                    self.local_in_flight -= 1;
                    if self.send_blocked {
                        self.send_blocked = false;
                        self.push_event(Event::Writable { id: None }, 0, None);
                    }
                }
                (Side::Remote, Kind::Event) => self.event_assemblies -= 1,
                (Side::Remote, _) => self.remote_in_flight -= 1,
                (Side::Local, Kind::Event) => {}
            }
        }
    }

    /// Removes a call once both halves are closed, its frames are out and
    /// (for a call the peer opened) the application has finished with it.
    fn maybe_remove(&mut self, id: CallId) {
        if let Some(c) = self.calls.get(&id) {
            let done = !c.send_open && !c.recv_open && c.queued == 0 && c.assembly.is_none();
            if done && !c.slot {
                self.remove_call(id);
            }
        }
    }

    /// A call the peer opened is finished from the application's side.
    fn release_remote(&mut self, id: CallId) {
        if let Some(call) = self.calls.get_mut(&id) {
            call.slot = false;
            call.send_open = false;
            if call.cancelled || call.kind == Kind::Unary {
                call.recv_open = false;
            }
            if let Some(at) = call.deadline.take() {
                self.deadlines.remove(&(at, id));
            }
        }
        self.maybe_remove(id);
        self.maybe_finish();
    }

    fn fail_local_call(&mut self, id: CallId, code: ErrorCode, info: ErrorInfo, side: Side) {
        self.remember_ended(id);
        self.purge_out(id);
        self.remove_call(id);
        self.push_event(Event::CallFailed { id, code, info, side }, 0, None);
    }

    /// Ends a call the peer opened from the protocol's side. A handler the
    /// application is running learns of it through `Cancelled` and keeps its
    /// slot until it answers; otherwise the entry goes at once.
    fn cancel_remote_call(&mut self, id: CallId, code: ErrorCode) {
        self.remember_ended(id);
        self.purge_out(id);
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.kind == Kind::Event {
            self.remove_call(id);
            return;
        }
        call.cancelled = true;
        call.recv_open = false;
        call.send_open = false;
        call.assembly = None;
        call.queued = 0;
        if let Some(at) = call.deadline.take() {
            self.deadlines.remove(&(at, id));
        }
        if call.delivered && call.slot {
            self.push_event(Event::Cancelled { id, code }, 0, None);
        } else {
            // Never seen by the application, or already answered: no handler
            // to wait for.
            call.slot = false;
            self.maybe_remove(id);
        }
    }

    /// Drops every queued frame of `id`; returns whether the call's opening
    /// frame was among them (so the peer never saw the id).
    fn purge_out(&mut self, id: CallId) -> bool {
        let mut removed = 0u64;
        let mut open_unsent = false;
        self.out.retain(|m| {
            if m.id == id {
                removed += m.remaining() as u64;
                open_unsent |= m.is_unsent_open();
                false
            } else {
                true
            }
        });
        self.queued_bytes -= removed;
        if let Some(call) = self.calls.get_mut(&id) {
            call.queued = 0;
            call.out_seqs.clear();
        }
        if open_unsent {
            let out = &self.out;
            self.opens.retain(|seq| out.iter().any(|m| m.seq == *seq));
        }
        open_unsent
    }

    // ----- internals: output -----------------------------------------------

    fn push_control(&mut self, ty: FrameType, id: CallId, arg: u32, payload: Bytes) {
        self.control.push_back(Frame::new(Header::new(ty, id, arg, 0), payload));
    }

    fn push_goaway(&mut self, last: CallId, code: ErrorCode, message: Option<&str>) {
        let info = GoAwayInfo { message: message.map(truncate_reason) };
        // The last id only ever decreases.
        let last = self.goaway_sent.map_or(last, |p| p.min(last));
        self.goaway_sent = Some(last);
        self.push_control(FrameType::GOAWAY, last, code.0.into(), info.encode().into());
    }

    fn send_final_goaway(&mut self) {
        self.push_goaway(self.last_peer_id, ErrorCode::NO_ERROR, None);
        if !self.deferred.is_empty() {
            // The first GOAWAY is still held behind calls opened before the
            // close: the final one replaces it there, keeping the order.
            let last = self.control.pop_back().expect("pushed above");
            self.deferred.clear();
            self.deferred.push_back(last);
        }
        self.shutdown = Shutdown::Draining { deadline: self.now + self.config.timeouts.drain };
        self.maybe_finish();
    }

    fn push_event(&mut self, event: Event, credit: u32, opens: Option<CallId>) {
        self.event_bytes += message_len(&event);
        self.events.push_back(PendingEvent { event, credit, opens });
    }

    fn return_connection_credit(&mut self, n: u32) {
        if n == 0 || self.is_closed() {
            return;
        }
        self.recv_window += i64::from(n);
        self.recv_unreturned += u64::from(n);
        let window = u64::from(self.config.limits.connection_credit);
        // Hand credit back once half the window is used, so a sender never
        // stalls while data is being consumed.
        if self.recv_unreturned >= window / 2 {
            let grant = u32::try_from(self.recv_unreturned).unwrap_or(MAX_WINDOW);
            self.recv_unreturned = 0;
            self.push_control(FrameType::CREDIT, 0, grant, Bytes::new());
        }
    }

    fn enqueue(&mut self, mut msg: OutMessage) {
        msg.seq = self.next_seq;
        self.next_seq += 1;
        if msg.is_unsent_open() {
            self.opens.push_back(msg.seq);
        }
        if let Some(call) = self.calls.get_mut(&msg.id) {
            call.out_seqs.push_back(msg.seq);
        }
        self.queued_bytes += msg.remaining() as u64;
        self.out.push_back(msg);
    }

    fn take_ping_token(&mut self) -> u64 {
        let t = self.next_ping_token;
        self.next_ping_token += 1;
        t
    }

    fn next_frame(&mut self) -> Option<Frame> {
        if !self.deferred.is_empty() && !self.out.iter().any(OutMessage::is_unsent_open) {
            // Every call opened before `close` has gone out: the GOAWAY may
            // follow them.
            while let Some(f) = self.deferred.pop_back() {
                self.control.push_front(f);
            }
        }
        if let Some(f) = self.control.pop_front() {
            return Some(f);
        }
        let peer = self.peer.as_ref().map(|p| p.limits).unwrap_or_default();
        let fragment = peer.max_frame.min(self.config.limits.send_fragment) as usize;
        let small = MIN_FRAGMENT as usize;
        let as_len = |credit: i64| usize::try_from(credit.max(0)).unwrap_or(usize::MAX);
        for _ in 0..self.out.len() {
            let mut msg = self.out.pop_front()?;
            let call = self.calls.get(&msg.id);
            // New ids go out in increasing order, the messages of one id one
            // after the other, and at most `max_in_flight` fragmented events
            // are in progress at once.
            let waits_turn = (msg.is_unsent_open() && self.opens.front() != Some(&msg.seq))
                || call.is_some_and(|c| c.out_seqs.front() != Some(&msg.seq))
                || (!msg.is_started() && msg.is_event() && self.events_sending >= peer.max_in_flight);
            let mut credit = as_len(self.send_credit);
            let mut window = peer.connection_credit as usize;
            if msg.stream_credit {
                credit = credit.min(call.map_or(0, |c| as_len(c.send_credit)));
                window = window.min(peer.initial_stream_credit as usize);
            }
            let budget = credit.min(fragment);
            // A frame cut short by credit must be worth sending: wait for at
            // least a small frame's worth (or half the window, if smaller).
            let worth = small.min(window / 2).min(fragment).max(1);
            let too_small = budget < msg.remaining() && budget < worth;
            if waits_turn || budget < msg.min_frame() || too_small {
                self.out.push_back(msg);
                continue;
            }
            let opening = !msg.is_started();
            if msg.is_unsent_open() {
                self.opens.pop_front();
            }
            let frame = msg.next_frame(budget);
            let len = frame.payload.len();
            let done = msg.is_done();
            self.queued_bytes -= len as u64;
            self.send_credit -= len as i64;
            if msg.is_event() && opening != done {
                // A fragmented event starts (or ends) being reassembled.
                if opening { self.events_sending += 1 } else { self.events_sending -= 1 }
            }
            if let Some(call) = self.calls.get_mut(&msg.id) {
                if done {
                    call.out_seqs.pop_front();
                }
                if opening {
                    call.opened = true;
                }
                if msg.stream_credit {
                    call.send_credit -= len as i64;
                    call.queued -= len as u64;
                }
            }
            if opening {
                self.flush_pending_grant(msg.id);
            }
            self.sent_message_since_peer_ping = true;
            self.credit_frames.refund(self.config.limits.credit_frames_per_data);
            if !done {
                self.out.push_back(msg);
            } else if msg.stream_credit {
                self.maybe_remove(msg.id);
                self.maybe_finish();
            }
            if self.send_blocked && self.queued_bytes < self.config.limits.max_send_queue {
                self.send_blocked = false;
                self.push_event(Event::Writable { id: None }, 0, None);
            }
            return Some(frame);
        }
        None
    }

    // ----- internals: closing ---------------------------------------------

    /// Ends the connection because of `error`: a GOAWAY with its code, then
    /// every call fails.
    fn fail(&mut self, error: ConnectionError) {
        if self.is_closed() {
            return;
        }
        let sendable = !matches!(
            error,
            ConnectionError::Refused { .. } | ConnectionError::Remote { .. } | ConnectionError::ConnectionLost
        );
        self.deferred.clear();
        self.opens.clear();
        // Nothing queued goes out after a connection error, except our own
        // refusing HELLO_ACK and the GOAWAY that reports the error.
        if !matches!(error, ConnectionError::Refused { side: Side::Local, .. }) {
            self.control.clear();
            self.out.clear();
            self.queued_bytes = 0;
        }
        if sendable && !self.eof {
            let code = error.code();
            let reason = error.reason();
            self.push_goaway(self.last_peer_id, code, Some(reason));
        }
        self.finish_closed(Some(error));
    }

    fn finish_closed(&mut self, error: Option<ConnectionError>) {
        if self.is_closed() {
            return;
        }
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        let code = match &error {
            None => ErrorCode::UNAVAILABLE,
            Some(e) => e.code(),
        };
        for id in ids {
            let Some(call) = self.calls.get(&id) else { continue };
            match (call.origin, call.kind) {
                (Side::Local, Kind::Unary | Kind::Stream) => {
                    self.push_event(
                        Event::CallFailed { id, code, info: ErrorInfo::default(), side: Side::Local },
                        0,
                        None,
                    );
                }
                (Side::Remote, Kind::Unary | Kind::Stream) if call.delivered && !call.cancelled && call.slot => {
                    self.push_event(Event::Cancelled { id, code }, 0, None);
                }
                _ => {}
            }
        }
        self.calls.clear();
        self.deadlines.clear();
        self.assembling.clear();
        self.out.clear();
        self.queued_bytes = 0;
        self.local_in_flight = 0;
        self.remote_in_flight = 0;
        self.event_assemblies = 0;
        self.user_pings.clear();
        self.phase = Phase::Closed;
        self.close_error = error.clone();
        self.push_event(Event::Closed { error }, 0, None);
    }

    /// Closes gracefully once a shutdown (ours or the peer's) has drained.
    fn maybe_finish(&mut self) {
        if self.phase != Phase::Open || !self.calls.is_empty() || !self.out.is_empty() {
            return;
        }
        if matches!(self.shutdown, Shutdown::Draining { .. }) || self.goaway_received.is_some() {
            self.finish_closed(None);
        }
    }
}

/// Calls this endpoint ended that it remembers, so frames the peer had in
/// flight for them are not charged as strays.
pub const MAX_ENDED_HERE: usize = 1024;

/// Smallest non-final fragment a sender emits: a frame that credit would cut
/// shorter waits for more credit instead.
pub const MIN_FRAGMENT: u32 = 256;

/// Fragments a message of at most `max_message` bytes may span: every
/// non-final fragment carries at least [`MIN_FRAGMENT`] bytes.
pub const fn max_fragments(max_message: u32) -> u32 {
    max_message / MIN_FRAGMENT + 2
}

/// Longest reason string we put in GOAWAY, a refusal or a shortened ERROR,
/// in bytes: well under the smallest frame limit a peer may advertise.
pub const MAX_REASON_LEN: usize = 256;

fn truncate_reason(s: &str) -> String {
    let mut end = s.len().min(MAX_REASON_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    String::from(&s[..end])
}

fn message_len(e: &Event) -> u64 {
    match e {
        Event::Request { message, .. }
        | Event::Response { message, .. }
        | Event::Event { message, .. }
        | Event::StreamOpened { message, .. }
        | Event::StreamData { message, .. } => message.body.len() as u64,
        _ => 0,
    }
}

impl core::fmt::Debug for Connection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.config.role)
            .field("phase", &self.phase)
            .field("calls", &self.calls.len())
            .field("queued_bytes", &self.queued_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
