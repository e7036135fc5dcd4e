//! Deterministic in-memory pair tests with a fake clock.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use super::*;
use crate::codec::Frame;
use crate::frame::{FrameError, Header};

fn bytes_of(frame: &Frame) -> Vec<u8> {
    let mut v = Vec::new();
    frame.encode_to(&mut v);
    v
}

/// Two connections wired back to back with a fake clock.
struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Frames written by each side, in order.
    client_sent: Vec<Frame>,
    server_sent: Vec<Frame>,
    auto_accept: bool,
}

impl Pair {
    fn new() -> Self {
        Self::with(Config::client(), Config::server())
    }

    fn with(client: Config, server: Config) -> Self {
        let now = Instant::ZERO;
        let mut p = Self {
            client: Connection::new(client, now),
            server: Connection::new(server, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            auto_accept: true,
        };
        p.drive();
        p
    }

    /// Moves frames both ways until neither side has anything to send.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(f) = self.client.poll_transmit() {
                self.server.handle_bytes(self.now, &bytes_of(&f));
                self.client_sent.push(f);
                moved = true;
            }
            while let Some(e) = self.server.poll_event() {
                if self.auto_accept && matches!(e, Event::HelloReceived(_)) {
                    self.server.accept().unwrap();
                }
                self.server_events.push(e);
                moved = true;
            }
            while let Some(f) = self.server.poll_transmit() {
                self.client.handle_bytes(self.now, &bytes_of(&f));
                self.server_sent.push(f);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drive();
    }

    fn take_client(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.client_events)
    }

    fn take_server(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.server_events)
    }
}

fn one(mut v: Vec<Event>) -> Event {
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

fn raw(b: &'static [u8]) -> Message {
    Message::new(Codec::RAW, Bytes::from_static(b))
}

fn connected() -> Pair {
    let mut p = Pair::new();
    assert!(p.client.is_connected() && p.server.is_connected());
    assert!(matches!(p.take_client().as_slice(), [Event::Connected(_)]));
    assert!(matches!(p.take_server().as_slice(), [Event::HelloReceived(_), Event::Connected(_)]));
    p
}

#[test]
fn handshake_exchanges_limits() {
    let mut client = Config::client();
    client.limits.max_frame = 4096;
    client.compression = true;
    let mut server = Config::server();
    server.compression = true;
    server.limits.max_in_flight = 7;
    let p = Pair::with(client, server);
    assert_eq!(p.client.peer().unwrap().limits.max_in_flight, 7);
    assert_eq!(p.server.peer().unwrap().limits.max_frame, 4096);
    assert!(p.client.peer().unwrap().compression);
}

#[test]
fn unary_call_both_directions() {
    let mut p = connected();
    let id = p.client.send_request(5, raw(b"ping"), None).unwrap();
    assert_eq!(id, 1);
    p.drive();
    let Event::Request { id: sid, method: 5, message, deadline: None } = one(p.take_server()) else {
        panic!("expected a request")
    };
    assert_eq!(&message.body[..], b"ping");
    p.server.send_response(sid, raw(b"pong")).unwrap();
    p.drive();
    assert_eq!(p.take_client(), vec![Event::Response { id, message: raw(b"pong") }]);

    // The server calls the client; its ids are even.
    let sid = p.server.send_request(9, raw(b"hi"), None).unwrap();
    assert_eq!(sid, 2);
    p.drive();
    let Event::Request { id: cid, .. } = one(p.take_client()) else { panic!() };
    p.client.send_error(cid, ErrorCode::UNKNOWN_METHOD, ErrorInfo::default()).unwrap();
    p.drive();
    assert!(matches!(
        p.take_server().as_slice(),
        [Event::CallFailed { id: 2, code: ErrorCode::UNKNOWN_METHOD, side: Side::Remote, .. }]
    ));
    assert_eq!(p.client.table_len() + p.server.table_len(), 0);
}

#[test]
fn many_calls_in_flight_complete_out_of_order() {
    let mut client = Config::client();
    client.limits.max_in_flight = 1000;
    let mut server = Config::server();
    server.limits.max_in_flight = 1000;
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    let ids: Vec<_> = (0..1000u32)
        .map(|i| p.client.send_request(1, Message::new(Codec::RAW, i.to_le_bytes().to_vec()), None).unwrap())
        .collect();
    p.drive();
    let reqs: Vec<_> = p.take_server();
    assert_eq!(reqs.len(), 1000);
    for e in reqs.into_iter().rev() {
        let Event::Request { id, message, .. } = e else { panic!() };
        p.server.send_response(id, message).unwrap();
    }
    p.drive();
    let mut got: Vec<_> = p
        .take_client()
        .into_iter()
        .map(|e| match e {
            Event::Response { id, message } => {
                assert_eq!(message.body.as_ref(), &((id - 1) / 2).to_le_bytes());
                id
            }
            e => panic!("{e:?}"),
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    assert_eq!(p.client.table_len(), 0);
    assert_eq!(p.server.calls_in_flight(), (0, 0));
}

#[test]
fn in_flight_limit_blocks_the_sender_then_unblocks() {
    let mut server = Config::server();
    server.limits.max_in_flight = 2;
    let mut p = Pair::with(Config::client(), server);
    p.take_client();
    p.take_server();
    p.client.send_request(1, raw(b"a"), None).unwrap();
    p.client.send_request(1, raw(b"b"), None).unwrap();
    assert_eq!(p.client.send_request(1, raw(b"c"), None), Err(SendError::Blocked));
    p.drive();
    let Event::Request { id, .. } = p.take_server().remove(0) else { panic!() };
    p.server.send_response(id, raw(b"")).unwrap();
    p.drive();
    let ev = p.take_client();
    assert!(ev.contains(&Event::Writable { id: None }), "{ev:?}");
    p.client.send_request(1, raw(b"c"), None).unwrap();
}

#[test]
fn large_messages_are_fragmented_and_reassembled() {
    let mut client = Config::client();
    client.limits.max_message = 3 << 20;
    let mut server = Config::server();
    server.limits.max_message = 3 << 20;
    server.limits.connection_credit = 4 << 20;
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    let body: Vec<u8> = (0..(3 << 20)).map(|i| (i % 251) as u8).collect();
    let id = p.client.send_request(1, Message::new(Codec::RAW, body.clone()), None).unwrap();
    p.drive();
    let Event::Request { id: sid, message, .. } = p.take_server().remove(0) else { panic!() };
    assert_eq!(message.body.len(), body.len());
    assert!(message.body == body);
    let frames = p.client_sent.iter().filter(|f| f.header.id == id).count();
    assert_eq!(frames, (3 << 20) / (64 * 1024));
    p.server.send_response(sid, Message::new(Codec::RAW, body.clone())).unwrap();
    p.drive();
    assert!(matches!(&p.take_client()[..], [Event::Response { message, .. }] if message.body == body));
}

#[test]
fn small_call_overtakes_bulk_transfer() {
    let mut p = connected();
    let big = vec![7u8; 1 << 20];
    p.client.send_request(1, Message::new(Codec::RAW, big), None).unwrap();
    let small = p.client.send_request(2, raw(b"x"), None).unwrap();
    let first = p.client.poll_transmit().unwrap();
    let second = p.client.poll_transmit().unwrap();
    assert_eq!(first.header.flags, Flags::MORE);
    assert_eq!(second.header.id, small, "the small call waits behind one fragment only");
}

#[test]
fn stream_credit_backpressure() {
    let mut server = Config::server();
    server.limits.initial_stream_credit = 1024;
    let mut p = Pair::with(Config::client(), server);
    p.take_client();
    p.take_server();
    let id = p.client.open_stream(3, raw(b""), None, false).unwrap();
    p.drive();
    assert!(matches!(p.take_server().as_slice(), [Event::StreamOpened { method: 3, end: false, .. }]));
    let chunk = Message::new(Codec::RAW, vec![1u8; 400]);
    p.client.send_stream_data(id, chunk.clone(), false).unwrap();
    p.client.send_stream_data(id, chunk.clone(), false).unwrap();
    p.client.send_stream_data(id, chunk.clone(), false).unwrap();
    // 1200 bytes accepted against 1024 of credit: the next send is blocked.
    assert_eq!(p.client.send_stream_data(id, chunk.clone(), false), Err(SendError::Blocked));
    p.drive();
    let got: usize = p
        .take_server()
        .iter()
        .map(|e| match e {
            Event::StreamData { message, .. } => message.body.len(),
            e => panic!("{e:?}"),
        })
        .sum();
    // The third message waits: 200 bytes of credit are not worth a frame
    // that would leave most of it behind.
    assert_eq!(got, 800);
    assert_eq!(p.client.stream_send_credit(id), Some(224));
    p.server.grant_credit(id, 1000).unwrap();
    p.drive();
    assert!(p.take_client().contains(&Event::Writable { id: Some(id) }));
    let got: usize = p
        .take_server()
        .iter()
        .map(|e| if let Event::StreamData { message, .. } = e { message.body.len() } else { 0 })
        .sum();
    assert_eq!(got, 400);
    p.client.send_stream_data(id, chunk, true).unwrap();
    p.drive();
    let ev = p.take_server();
    assert!(matches!(ev.last(), Some(Event::StreamData { end: true, .. })));
    p.server.send_stream_data(id, raw(b"done"), true).unwrap();
    p.drive();
    assert!(matches!(p.take_client().as_slice(), [Event::StreamData { end: true, .. }]));
    assert_eq!(p.client.table_len() + p.server.table_len(), 0);
}

#[test]
fn cancel_reaches_handler_and_slot_is_held_until_it_ends() {
    let mut server = Config::server();
    server.limits.max_in_flight = 1;
    let mut p = Pair::with(Config::client(), server);
    p.take_client();
    p.take_server();
    let id = p.client.send_request(1, raw(b"slow"), None).unwrap();
    p.drive();
    assert!(matches!(p.take_server().as_slice(), [Event::Request { .. }]));
    p.client.cancel(id).unwrap();
    p.drive();
    assert_eq!(p.take_server(), vec![Event::Cancelled { id, code: ErrorCode::CANCELLED }]);
    assert_eq!(p.server.calls_in_flight(), (0, 1), "the cancelled handler still holds its slot");
    // The client may open again (its own count dropped), but the server refuses
    // while the cancelled handler runs.
    let id2 = p.client.send_request(1, raw(b"next"), None).unwrap();
    p.drive();
    assert!(
        matches!(p.take_client().as_slice(), [Event::CallFailed { id, code: ErrorCode::REFUSED, .. }] if *id == id2)
    );
    p.server.send_error(id, ErrorCode::CANCELLED, ErrorInfo::default()).unwrap();
    assert_eq!(p.server.calls_in_flight(), (0, 0));
    p.drive();
    assert!(p.take_client().is_empty(), "nothing is sent for a cancelled call");
    assert_eq!(p.server.table_len(), 0);
}

#[test]
fn deadline_fails_caller_and_cancels_handler() {
    let mut p = connected();
    let id = p.client.send_request(1, raw(b"x"), Some(Duration::from_millis(100))).unwrap();
    p.drive();
    assert!(
        matches!(p.take_server().as_slice(), [Event::Request { deadline: Some(d), .. }] if *d == Duration::from_millis(100))
    );
    assert_eq!(p.client.poll_timeout(), Some(Instant::from_millis(100)));
    p.advance(Duration::from_millis(100));
    assert!(matches!(
        p.take_client().as_slice(),
        [Event::CallFailed { code: ErrorCode::DEADLINE_EXCEEDED, side: Side::Local, .. }]
    ));
    assert_eq!(p.take_server(), vec![Event::Cancelled { id, code: ErrorCode::DEADLINE_EXCEEDED }]);
    // A late answer sends nothing.
    p.server.send_response(id, raw(b"late")).unwrap();
    p.drive();
    assert!(p.take_client().is_empty());
    assert_eq!(p.client.table_len() + p.server.table_len(), 0);
}

#[test]
fn keepalive_detects_a_silent_peer() {
    let mut p = connected();
    let interval = Duration::from_secs(20);
    p.advance(interval);
    assert!(p.client_sent.iter().any(|f| f.header.ty == FrameType::PING));
    // A live peer answers and nothing happens.
    assert!(p.client.is_connected());
    // Now the server goes silent: frames from the client are dropped.
    p.now = p.now + interval;
    p.client.handle_timeout(p.now);
    let ping = p.client.poll_transmit().unwrap();
    assert_eq!(ping.header.ty, FrameType::PING);
    p.now = p.now + Duration::from_secs(20);
    p.client.handle_timeout(p.now);
    assert!(p.client.is_closed());
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    assert_eq!(events, vec![Event::Closed { error: Some(ConnectionError::Timeout("keepalive")) }]);
}

#[test]
fn graceful_shutdown_lets_calls_finish_and_refuses_late_ones() {
    let mut p = connected();
    let a = p.client.send_request(1, raw(b"a"), None).unwrap();
    p.drive();
    let Event::Request { id: sa, .. } = one(p.take_server()) else { panic!() };
    p.server.close(ErrorCode::NO_ERROR, Some("restart"));
    // A call the client opens before it sees the GOAWAY.
    let b = p.client.send_request(1, raw(b"b"), None).unwrap();
    p.drive();
    // Phase 1 (last = MAX) lets b through; the PING round trip moves to phase 2.
    let goaways: Vec<_> =
        p.server_sent.iter().filter(|f| f.header.ty == FrameType::GOAWAY).map(|f| f.header.id).collect();
    assert_eq!(goaways, vec![u32::MAX, b]);
    let ev = p.take_server();
    let [Event::Request { id: sb, .. }] = ev.as_slice() else { panic!("{ev:?}") };
    assert_eq!(p.client.send_request(1, raw(b"c"), None), Err(SendError::Closing));
    p.server.send_response(sa, raw(b"ra")).unwrap();
    p.server.send_response(*sb, raw(b"rb")).unwrap();
    p.drive();
    let ev = p.take_client();
    assert!(ev.contains(&Event::Response { id: a, message: raw(b"ra") }));
    assert!(ev.contains(&Event::Response { id: b, message: raw(b"rb") }));
    assert!(p.server.is_closed() && p.client.is_closed());
    assert_eq!(p.server.close_error(), None);
    assert_eq!(p.client.close_error(), None);
}

#[test]
fn goaway_refuses_calls_above_last_id() {
    let mut p = connected();
    let a = p.client.send_request(1, raw(b"a"), None).unwrap();
    p.drive();
    p.take_server();
    let b = p.client.send_request(1, raw(b"b"), None).unwrap();
    // The server's final GOAWAY names `a`; `b` crossed it on the wire.
    let goaway = Frame::new(Header::new(FrameType::GOAWAY, a, 0, 0), Bytes::new());
    p.client.handle_bytes(p.now, &bytes_of(&goaway));
    let mut ev = Vec::new();
    while let Some(e) = p.client.poll_event() {
        ev.push(e);
    }
    assert_eq!(
        ev,
        vec![
            Event::CallFailed { id: b, code: ErrorCode::REFUSED, info: ErrorInfo::default(), side: Side::Remote },
            Event::GoAway { last_id: a, code: ErrorCode::NO_ERROR, message: None },
        ]
    );
}

#[test]
fn connection_loss_fails_everything_at_once() {
    let mut p = connected();
    let a = p.client.send_request(1, raw(b"a"), None).unwrap();
    let s = p.client.open_stream(2, raw(b""), None, false).unwrap();
    p.drive();
    assert_eq!(p.take_server().len(), 2);
    p.client.handle_eof(p.now);
    let mut ev = Vec::new();
    while let Some(e) = p.client.poll_event() {
        ev.push(e);
    }
    assert!(ev.iter().any(|e| matches!(e, Event::CallFailed { id, .. } if *id == a)));
    assert!(ev.iter().any(|e| matches!(e, Event::CallFailed { id, .. } if *id == s)));
    assert_eq!(p.client.table_len(), 0);
}

#[test]
fn eof_mid_frame_is_an_error() {
    let mut p = connected();
    p.client.handle_bytes(p.now, &[1, 0, 0]);
    p.client.handle_eof(p.now);
    assert!(matches!(p.client.close_error(), Some(ConnectionError::Malformed(FrameError::Truncated { .. }))));
}

fn server_after_hello() -> (Connection, Instant) {
    server_with(Config::server())
}

fn server_with(config: Config) -> (Connection, Instant) {
    let now = Instant::ZERO;
    let mut client = Connection::new(Config::client(), now);
    let mut server = Connection::new(config, now);
    let hello = client.poll_transmit().unwrap();
    server.handle_bytes(now, &bytes_of(&hello));
    assert!(matches!(server.poll_event(), Some(Event::HelloReceived(_))));
    server.accept().unwrap();
    while server.poll_transmit().is_some() {}
    while server.poll_event().is_some() {}
    (server, now)
}

fn goaway_code(conn: &mut Connection) -> Option<ErrorCode> {
    let mut code = None;
    while let Some(f) = conn.poll_transmit() {
        if f.header.ty == FrameType::GOAWAY {
            code = Some(ErrorCode(f.header.arg as u16));
        }
    }
    code
}

#[test]
fn oversized_frame_is_refused_before_buffering() {
    let (mut server, now) = server_after_hello();
    let h = Header::new(FrameType::REQUEST, 1, 0, (1 << 20) + 1);
    server.handle_bytes(now, &h.to_bytes());
    assert_eq!(goaway_code(&mut server), Some(ErrorCode::TOO_LARGE));
    assert!(server.is_closed());
}

#[test]
fn ids_must_increase_with_peer_parity() {
    let (mut server, now) = server_after_hello();
    let req = |id| bytes_of(&Frame::new(Header::new(FrameType::REQUEST, id, 0, 0), Bytes::new()));
    server.handle_bytes(now, &req(5));
    server.handle_bytes(now, &req(3));
    assert!(matches!(
        server.close_error(),
        Some(ConnectionError::Violation(Violation::IdNotIncreasing { id: 3, last: 5 }))
    ));

    let (mut server, now) = server_after_hello();
    server.handle_bytes(now, &req(2));
    assert!(matches!(server.close_error(), Some(ConnectionError::Violation(Violation::WrongParity { .. }))));
}

#[test]
fn excess_calls_are_refused_not_queued() {
    let (mut server, now) = server_after_hello();
    for i in 0..101u32 {
        server
            .handle_bytes(now, &bytes_of(&Frame::new(Header::new(FrameType::REQUEST, 2 * i + 1, 0, 0), Bytes::new())));
    }
    let mut refused = Vec::new();
    while let Some(f) = server.poll_transmit() {
        if f.header.ty == FrameType::ERROR {
            refused.push((f.header.id, f.header.arg));
        }
    }
    assert_eq!(refused, vec![(201, u32::from(ErrorCode::REFUSED.0))]);
    assert_eq!(server.calls_in_flight(), (0, 100));
}

#[test]
fn ping_flood_pauses_input() {
    let mut config = Config::server();
    config.timeouts.min_ping_interval = Duration::ZERO;
    let (mut server, now) = server_with(config);
    let ping = bytes_of(&Frame::new(Header::new(FrameType::PING, 0, 0, 0), Bytes::from_static(&[0; 8])));
    let flood: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    server.handle_bytes(now, &flood);
    // Input stops once max_pending_control PONGs wait to be written.
    assert!(!server.wants_read());
    assert!(!server.is_closed());
    assert_eq!(server.read_buf().len(), ping.len() * (1000 - 64));
    // Writing the PONGs resumes reading, a window at a time.
    let mut pongs = 0;
    while let Some(f) = server.poll_transmit() {
        assert_eq!(f.header.ty, FrameType::PONG);
        pongs += 1;
    }
    assert_eq!(pongs, 1000);
    assert!(server.wants_read());
}

#[test]
fn ping_strikes_end_in_goaway() {
    let (mut server, now) = server_after_hello();
    let ping = bytes_of(&Frame::new(Header::new(FrameType::PING, 0, 0, 0), Bytes::from_static(&[0; 8])));
    for _ in 0..4 {
        server.handle_bytes(now, &ping);
    }
    assert_eq!(goaway_code(&mut server), Some(ErrorCode::EXCESSIVE_LOAD));
}

#[test]
fn credit_overflow_is_a_flow_control_error() {
    let (mut server, now) = server_after_hello();
    let credit = bytes_of(&Frame::new(Header::new(FrameType::CREDIT, 0, MAX_WINDOW, 0), Bytes::new()));
    server.handle_bytes(now, &credit);
    assert_eq!(goaway_code(&mut server), Some(ErrorCode::FLOW_CONTROL));
}

#[test]
fn frames_before_handshake_are_violations() {
    let mut server = Connection::new(Config::server(), Instant::ZERO);
    server.handle_bytes(Instant::ZERO, &bytes_of(&Frame::new(Header::new(FrameType::REQUEST, 1, 0, 0), Bytes::new())));
    assert_eq!(goaway_code(&mut server), Some(ErrorCode::PROTOCOL_VIOLATION));
}

#[test]
fn incompatible_version_is_refused_with_a_code() {
    let hello = Hello { min_version: 2, max_version: 3, ..Hello::default() };
    let mut server = Connection::new(Config::server(), Instant::ZERO);
    server.handle_bytes(
        Instant::ZERO,
        &bytes_of(&Frame::new(Header::new(FrameType::HELLO, 0, 0, 0), hello.encode().into())),
    );
    let f = server.poll_transmit().unwrap();
    assert_eq!(f.header.ty, FrameType::HELLO_ACK);
    assert_eq!(HelloAck::decode(&f.payload).unwrap().error_code, ErrorCode::INCOMPATIBLE);
    assert!(server.is_closed());
}

#[test]
fn handshake_times_out() {
    let mut server = Connection::new(Config::server(), Instant::ZERO);
    assert_eq!(server.poll_timeout(), Some(Instant::from_millis(10_000)));
    server.handle_timeout(Instant::from_millis(10_000));
    assert_eq!(server.close_error(), Some(&ConnectionError::Timeout("handshake")));
}

#[test]
fn user_ping_reports_rtt() {
    let mut p = connected();
    let token = p.client.ping().unwrap();
    let f = p.client.poll_transmit().unwrap();
    p.now = p.now + Duration::from_millis(7);
    p.server.handle_bytes(p.now, &bytes_of(&f));
    p.drive();
    assert_eq!(p.take_client(), vec![Event::Pong { token, rtt: Duration::from_millis(7) }]);
}

#[test]
fn events_flow_one_way() {
    let mut p = connected();
    p.client.send_event(42, raw(b"telemetry")).unwrap();
    p.drive();
    assert_eq!(p.take_server(), vec![Event::Event { method: 42, message: raw(b"telemetry") }]);
    assert!(p.take_client().is_empty());
    assert_eq!(p.client.table_len() + p.server.table_len(), 0);
}

/// Model-based test: random commands on both sides, random partial delivery
/// and time; afterwards every call has exactly one outcome and every table is
/// empty.
mod model {
    use std::collections::{BTreeMap, VecDeque};

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Request { side: bool, len: usize, deadline: Option<u64> },
        Event { side: bool, len: usize },
        OpenStream { side: bool, end: bool },
        StreamData { side: bool, pick: usize, len: usize, end: bool },
        Grant { side: bool, pick: usize, n: u32 },
        Respond { side: bool, pick: usize, len: usize },
        Fail { side: bool, pick: usize },
        Cancel { side: bool, pick: usize },
        Deliver { side: bool, frames: usize },
        Advance { ms: u64 },
        Ping { side: bool },
        Close { side: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), 0usize..3000, proptest::option::of(1u64..500)).prop_map(|(side, len, deadline)| Op::Request { side, len, deadline }),
            1 => (any::<bool>(), 0usize..3000).prop_map(|(side, len)| Op::Event { side, len }),
            2 => (any::<bool>(), any::<bool>()).prop_map(|(side, end)| Op::OpenStream { side, end }),
            3 => (any::<bool>(), any::<usize>(), 0usize..3000, any::<bool>()).prop_map(|(side, pick, len, end)| Op::StreamData { side, pick, len, end }),
            2 => (any::<bool>(), any::<usize>(), 1u32..5000).prop_map(|(side, pick, n)| Op::Grant { side, pick, n }),
            4 => (any::<bool>(), any::<usize>(), 0usize..3000).prop_map(|(side, pick, len)| Op::Respond { side, pick, len }),
            1 => (any::<bool>(), any::<usize>()).prop_map(|(side, pick)| Op::Fail { side, pick }),
            1 => (any::<bool>(), any::<usize>()).prop_map(|(side, pick)| Op::Cancel { side, pick }),
            6 => (any::<bool>(), 1usize..8).prop_map(|(side, frames)| Op::Deliver { side, frames }),
            2 => (0u64..300).prop_map(|ms| Op::Advance { ms }),
            1 => any::<bool>().prop_map(|side| Op::Ping { side }),
            1 => any::<bool>().prop_map(|side| Op::Close { side }),
        ]
    }

    #[derive(Default)]
    struct SideModel {
        /// Unary calls we opened → outcomes seen.
        outcomes: BTreeMap<CallId, u32>,
        /// Streams we opened or accepted.
        streams: Vec<CallId>,
        /// Calls the peer opened that we must answer.
        to_answer: Vec<CallId>,
        closed: bool,
    }

    struct World {
        conns: [Connection; 2],
        wires: [VecDeque<Vec<u8>>; 2],
        models: [SideModel; 2],
        now: Instant,
    }

    impl World {
        fn new() -> Self {
            let mut client = Config::client();
            let mut server = Config::server();
            for c in [&mut client, &mut server] {
                c.limits.initial_stream_credit = 2000;
                c.limits.max_frame = 1024;
                c.limits.send_fragment = 1024;
                c.limits.max_in_flight = 8;
                c.timeouts.min_ping_interval = Duration::ZERO;
            }
            let now = Instant::ZERO;
            let mut w = Self {
                conns: [Connection::new(client, now), Connection::new(server, now)],
                wires: [VecDeque::new(), VecDeque::new()],
                models: [SideModel::default(), SideModel::default()],
                now,
            };
            w.flush(0);
            w.deliver(0, usize::MAX);
            w.events(1).unwrap();
            w.deliver(1, usize::MAX);
            w.events(0).unwrap();
            w
        }

        fn flush(&mut self, s: usize) {
            while let Some(f) = self.conns[s].poll_transmit() {
                self.wires[s].push_back(bytes_of(&f));
            }
        }

        fn events(&mut self, s: usize) -> Result<(), TestCaseError> {
            while let Some(e) = self.conns[s].poll_event() {
                let m = &mut self.models[s];
                prop_assert!(!m.closed, "event after Closed: {:?}", e);
                match e {
                    Event::HelloReceived(_) => self.conns[s].accept().unwrap(),
                    Event::Response { id, .. } | Event::CallFailed { id, .. } => {
                        if let Some(n) = m.outcomes.get_mut(&id) {
                            *n += 1;
                            prop_assert!(*n == 1, "call {} has {} outcomes", id, n);
                        }
                    }
                    Event::Request { id, .. } | Event::StreamOpened { id, .. } => {
                        m.to_answer.push(id);
                        if matches!(e, Event::StreamOpened { .. }) {
                            m.streams.push(id);
                        }
                    }
                    Event::Closed { .. } => m.closed = true,
                    _ => {}
                }
            }
            self.flush(s);
            Ok(())
        }

        fn deliver(&mut self, from: usize, n: usize) {
            let to = 1 - from;
            for _ in 0..n {
                let Some(bytes) = self.wires[from].pop_front() else { break };
                self.conns[to].handle_bytes(self.now, &bytes);
            }
            self.flush(to);
        }

        fn check(&self) -> Result<(), TestCaseError> {
            for s in 0..2 {
                let c = &self.conns[s];
                prop_assert!(c.send_credit() >= 0);
                for id in &self.models[s].streams {
                    if let Some(credit) = c.stream_send_credit(*id) {
                        prop_assert!(credit >= 0, "stream {} credit {}", id, credit);
                    }
                }
            }
            Ok(())
        }

        fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
            let pick = |v: &Vec<CallId>, i: usize| if v.is_empty() { None } else { Some(v[i % v.len()]) };
            match op {
                Op::Request { side, len, deadline } => {
                    let s = usize::from(side);
                    let r = self.conns[s].send_request(
                        1,
                        Message::new(Codec::RAW, vec![1u8; len]),
                        deadline.map(Duration::from_millis),
                    );
                    if let Ok(id) = r {
                        prop_assert!(self.models[s].outcomes.insert(id, 0).is_none(), "id {} reused", id);
                    }
                }
                Op::Event { side, len } => {
                    let _ = self.conns[usize::from(side)].send_event(2, Message::new(Codec::RAW, vec![2u8; len]));
                }
                Op::OpenStream { side, end } => {
                    let s = usize::from(side);
                    if let Ok(id) = self.conns[s].open_stream(3, raw(b"open"), None, end) {
                        self.models[s].streams.push(id);
                    }
                }
                Op::StreamData { side, pick: i, len, end } => {
                    let s = usize::from(side);
                    if let Some(id) = pick(&self.models[s].streams, i) {
                        let _ = self.conns[s].send_stream_data(id, Message::new(Codec::RAW, vec![3u8; len]), end);
                    }
                }
                Op::Grant { side, pick: i, n } => {
                    let s = usize::from(side);
                    if let Some(id) = pick(&self.models[s].streams, i) {
                        let _ = self.conns[s].grant_credit(id, n);
                    }
                }
                Op::Respond { side, pick: i, len } => {
                    let s = usize::from(side);
                    if let Some(id) = pick(&self.models[s].to_answer, i) {
                        let r = self.conns[s].send_response(id, Message::new(Codec::RAW, vec![4u8; len]));
                        if matches!(r, Err(SendError::UnknownCall(_))) {
                            // A stream: end it instead.
                            let _ = self.conns[s].send_stream_data(id, raw(b"bye"), true);
                        }
                        self.models[s].to_answer.retain(|x| *x != id);
                    }
                }
                Op::Fail { side, pick: i } => {
                    let s = usize::from(side);
                    if let Some(id) = pick(&self.models[s].to_answer, i) {
                        let _ = self.conns[s].send_error(id, ErrorCode::INTERNAL, ErrorInfo::default());
                        self.models[s].to_answer.retain(|x| *x != id);
                    }
                }
                Op::Cancel { side, pick: i } => {
                    let s = usize::from(side);
                    let ids: Vec<CallId> =
                        self.models[s].outcomes.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
                    if let Some(id) = pick(&ids, i)
                        && self.conns[s].cancel(id).is_ok()
                    {
                        // A cancelled call reports nothing more.
                        self.models[s].outcomes.insert(id, 1);
                    }
                }
                Op::Deliver { side, frames } => self.deliver(usize::from(side), frames),
                Op::Advance { ms } => {
                    self.now = self.now + Duration::from_millis(ms);
                    for s in 0..2 {
                        self.conns[s].handle_timeout(self.now);
                    }
                }
                Op::Ping { side } => {
                    let _ = self.conns[usize::from(side)].ping();
                }
                Op::Close { side } => self.conns[usize::from(side)].close(ErrorCode::NO_ERROR, None),
            }
            for s in 0..2 {
                self.flush(s);
                self.events(s)?;
            }
            self.check()
        }

        /// Answers everything, then shuts both sides down and runs until
        /// both are closed.
        fn finish(&mut self) -> Result<(), TestCaseError> {
            for round in 0..400 {
                for s in 0..2 {
                    for id in core::mem::take(&mut self.models[s].to_answer) {
                        if self.conns[s].send_response(id, raw(b"end")).is_err() {
                            let _ = self.conns[s].send_stream_data(id, raw(b""), true);
                        }
                    }
                    for id in self.models[s].streams.clone() {
                        let _ = self.conns[s].grant_credit(id, 1 << 20);
                        let _ = self.conns[s].finish(id);
                    }
                    if round == 5 {
                        self.conns[s].close(ErrorCode::NO_ERROR, None);
                    }
                    self.flush(s);
                }
                self.deliver(0, usize::MAX);
                self.deliver(1, usize::MAX);
                for s in 0..2 {
                    self.events(s)?;
                }
                if self.conns.iter().all(Connection::is_closed) {
                    break;
                }
                if round > 10 {
                    self.now = self.now + Duration::from_secs(1);
                    for s in 0..2 {
                        self.conns[s].handle_timeout(self.now);
                    }
                }
            }
            for s in 0..2 {
                self.events(s)?;
                let c = &self.conns[s];
                prop_assert!(c.is_closed(), "side {} not closed", s);
                prop_assert_eq!(c.table_len(), 0);
                prop_assert_eq!(c.calls_in_flight(), (0, 0));
                for (id, n) in &self.models[s].outcomes {
                    prop_assert_eq!(*n, 1, "call {} on side {} has {} outcomes", id, s, n);
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
        #[test]
        fn no_call_lost_or_duplicated(ops in proptest::collection::vec(op(), 1..120)) {
            let mut w = World::new();
            prop_assert!(w.conns[0].is_connected() && w.conns[1].is_connected());
            for op in ops {
                w.apply(op)?;
            }
            w.finish()?;
        }
    }
}

fn small_frames() -> (Config, Config) {
    let mut client = Config::client();
    let mut server = Config::server();
    for c in [&mut client, &mut server] {
        c.limits.max_frame = 1024;
        c.limits.send_fragment = 1024;
    }
    (client, server)
}

#[test]
fn messages_of_one_stream_are_never_interleaved() {
    let (client, server) = small_frames();
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    let id = p.client.open_stream(1, Message::new(Codec::RAW, vec![1u8; 3000]), None, false).unwrap();
    p.client.send_stream_data(id, Message::new(Codec::RAW, vec![2u8; 3000]), false).unwrap();
    p.client.send_stream_data(id, Message::new(Codec::RAW, vec![3u8; 3000]), true).unwrap();
    p.drive();
    let ev = p.take_server();
    assert!(p.server.is_connected(), "{:?}", p.server.close_error());
    let bodies: Vec<u8> = ev
        .iter()
        .map(|e| match e {
            Event::StreamOpened { message, .. } | Event::StreamData { message, .. } => {
                assert_eq!(message.body.len(), 3000);
                message.body[0]
            }
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(bodies, vec![1, 2, 3]);
}

#[test]
fn a_grant_waits_for_the_stream_to_open() {
    let mut client = Config::client();
    client.limits.initial_stream_credit = 1024;
    let mut p2 = Pair::with(client, Config::server());
    p2.take_client();
    p2.take_server();
    let id = p2.client.open_stream(1, raw(b""), None, false).unwrap();
    p2.client.grant_credit(id, 1000).unwrap();
    p2.drive();
    assert!(p2.server.is_connected(), "{:?}", p2.server.close_error());
    let kinds: Vec<_> = p2.client_sent.iter().skip(1).map(|f| f.header.ty).collect();
    assert_eq!(kinds, vec![FrameType::STREAM_OPEN, FrameType::CREDIT]);
    assert_eq!(p2.server.stream_send_credit(id), Some(2024));
}

#[test]
fn a_message_larger_than_the_stream_window_completes() {
    let (mut client, server) = small_frames();
    client.limits.initial_stream_credit = 1024;
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    let id = p.client.open_stream(1, raw(b""), None, false).unwrap();
    p.drive();
    p.take_server();
    p.server.send_stream_data(id, Message::new(Codec::RAW, vec![9u8; 5000]), true).unwrap();
    p.drive();
    let ev = p.take_client();
    assert!(
        matches!(ev.as_slice(), [Event::StreamData { message, end: true, .. }] if message.body.len() == 5000),
        "{ev:?}"
    );
}

#[test]
fn graceful_close_sends_queued_calls_before_goaway() {
    let mut p = connected();
    let id = p.server.send_request(1, raw(b"queued before close"), None).unwrap();
    p.server.close(ErrorCode::NO_ERROR, None);
    let first = p.server.poll_transmit().unwrap();
    assert_eq!((first.header.ty, first.header.id), (FrameType::REQUEST, id));
    p.client.handle_bytes(p.now, &bytes_of(&first));
    p.drive();
    let ev = p.take_client();
    let Event::Request { id: cid, .. } = ev[0].clone() else { panic!("{ev:?}") };
    p.client.send_response(cid, raw(b"answered")).unwrap();
    p.drive();
    assert!(p.take_server().contains(&Event::Response { id, message: raw(b"answered") }));
    assert!(p.client.is_closed() && p.server.is_closed());
    assert_eq!(p.server.close_error(), None);
}

#[test]
fn many_large_events_at_once() {
    let (client, mut server) = small_frames();
    server.limits.max_in_flight = 2;
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    for i in 0..10u8 {
        p.client.send_event(1, Message::new(Codec::RAW, vec![i; 5000])).unwrap();
    }
    p.drive();
    assert!(p.server.is_connected(), "{:?}", p.server.close_error());
    let got: Vec<u8> = p
        .take_server()
        .iter()
        .map(|e| match e {
            Event::Event { message, .. } => message.body[0],
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(got.len(), 10);
}

#[test]
fn cancel_after_the_callee_ended_frees_the_stream() {
    let mut p = connected();
    let id = p.client.open_stream(1, raw(b""), None, false).unwrap();
    p.drive();
    p.take_server();
    p.server.finish(id).unwrap();
    p.drive();
    p.client.cancel(id).unwrap();
    p.drive();
    assert_eq!(p.server.table_len(), 0);
    assert_eq!(p.server.calls_in_flight(), (0, 0));
}

#[test]
fn an_unfinished_message_times_out() {
    let (mut server, now) = server_after_hello();
    let first = bytes_of(&Frame::new(
        {
            let mut h = Header::new(FrameType::REQUEST, 1, 0, 0);
            h.flags = Flags::MORE;
            h
        },
        Bytes::from_static(b"part"),
    ));
    server.handle_bytes(now, &first);
    let expires = now + Duration::from_secs(30);
    assert!(server.poll_timeout().is_some_and(|t| t <= expires));
    server.handle_timeout(expires);
    assert_eq!(server.close_error(), Some(&ConnectionError::Timeout("partial message")));
}

#[test]
fn error_goaway_refuses_calls_above_last() {
    let mut p = connected();
    let a = p.client.send_request(1, raw(b"a"), None).unwrap();
    let b = p.client.send_request(1, raw(b"b"), None).unwrap();
    while p.client.poll_transmit().is_some() {}
    let goaway = Frame::new(Header::new(FrameType::GOAWAY, a, u32::from(ErrorCode::INTERNAL.0), 0), Bytes::new());
    p.client.handle_bytes(p.now, &bytes_of(&goaway));
    let ev: Vec<_> = core::iter::from_fn(|| p.client.poll_event()).collect();
    assert!(matches!(&ev[0], Event::CallFailed { id, code: ErrorCode::REFUSED, .. } if *id == b));
    assert!(matches!(&ev[1], Event::CallFailed { id, code: ErrorCode::INTERNAL, .. } if *id == a));
    assert!(matches!(&ev[2], Event::Closed { error: Some(ConnectionError::Remote { code: ErrorCode::INTERNAL, .. }) }));
}

#[test]
fn tiny_advertised_limits_are_refused() {
    let hello = Hello {
        min_version: 1,
        max_version: 1,
        limits: crate::control::AdvertisedLimits { max_frame: 8, ..Default::default() },
        ..Hello::default()
    };
    let mut server = Connection::new(Config::server(), Instant::ZERO);
    server.handle_bytes(
        Instant::ZERO,
        &bytes_of(&Frame::new(Header::new(FrameType::HELLO, 0, 0, 0), hello.encode().into())),
    );
    let f = server.poll_transmit().unwrap();
    assert_eq!(HelloAck::decode(&f.payload).unwrap().error_code, ErrorCode::INCOMPATIBLE);
}

#[test]
fn ping_strikes_reset_after_a_quiet_interval() {
    let (mut server, now) = server_after_hello();
    let ping = bytes_of(&Frame::new(Header::new(FrameType::PING, 0, 0, 0), Bytes::from_static(&[0; 8])));
    let mut t = now;
    for _ in 0..10 {
        // Two quick pings (one strike), then a pause.
        server.handle_bytes(t, &ping);
        server.handle_bytes(t, &ping);
        t = t + Duration::from_secs(6);
        server.handle_bytes(t, &ping);
        t = t + Duration::from_secs(6);
    }
    assert!(server.is_connected(), "{:?}", server.close_error());
}

#[test]
fn oversized_single_frame_message_is_refused() {
    let mut config = Config::server();
    config.limits.max_message = 1024;
    let (mut server, now) = server_with(config);
    let req = bytes_of(&Frame::new(Header::new(FrameType::REQUEST, 1, 0, 0), Bytes::from(vec![0u8; 1025])));
    server.handle_bytes(now, &req);
    assert_eq!(goaway_code(&mut server), Some(ErrorCode::TOO_LARGE));
}

#[test]
fn long_error_messages_are_shortened_to_fit() {
    let mut server = Config::server();
    server.limits.max_frame = 1024;
    let mut p = Pair::with(Config::client(), server);
    p.take_client();
    p.take_server();
    p.take_server();
    let id = p.server.send_request(1, raw(b"x"), None).unwrap();
    let _ = id;
    p.drive();
    let Event::Request { id: cid, .. } = one(p.take_client()) else { panic!() };
    let long = "é".repeat(1000);
    p.client.send_error(cid, ErrorCode::INTERNAL, ErrorInfo { message: Some(long), details: None }).unwrap();
    p.drive();
    assert!(p.server.is_connected(), "{:?}", p.server.close_error());
    let Event::CallFailed { info, .. } = one(p.take_server()) else { panic!() };
    assert_eq!(info.message.unwrap().len(), MAX_REASON_LEN);
}

#[test]
fn a_call_waiting_for_credit_is_not_overtaken_by_a_later_one() {
    let mut server = Config::server();
    server.limits.connection_credit = 2048;
    let mut p = Pair::with(Config::client(), server.clone());
    p.take_client();
    p.take_server();
    let a = p.client.send_request(1, Message::new(Codec::RAW, vec![1u8; 2000]), None).unwrap();
    p.client.send_request(1, Message::new(Codec::RAW, vec![2u8; 1000]), None).unwrap();
    p.client.send_request(1, raw(b"small"), None).unwrap();
    let first: Vec<_> = core::iter::from_fn(|| p.client.poll_transmit()).map(|f| f.header.id).collect();
    assert_eq!(first, vec![a], "the second waits for credit, and the third waits behind it");

    let mut p = Pair::with(Config::client(), server);
    p.take_client();
    p.take_server();
    for body in [vec![1u8; 2000], vec![2u8; 1000], b"small".to_vec()] {
        p.client.send_request(1, Message::new(Codec::RAW, body), None).unwrap();
    }
    p.drive();
    assert!(p.server.is_connected(), "{:?}", p.server.close_error());
    let ids: Vec<_> = p
        .take_server()
        .iter()
        .filter_map(|e| if let Event::Request { id, .. } = e { Some(*id) } else { None })
        .collect();
    assert_eq!(ids, vec![1, 3, 5]);
}

#[test]
fn an_error_from_the_callee_ends_a_half_open_stream() {
    let mut p = connected();
    let id = p.client.open_stream(1, raw(b""), None, false).unwrap();
    p.drive();
    p.take_server();
    p.server.send_error(id, ErrorCode::INTERNAL, ErrorInfo::default()).unwrap();
    p.drive();
    assert_eq!(p.server.table_len(), 0);
    assert_eq!(p.server.calls_in_flight(), (0, 0));
    assert!(matches!(one(p.take_client()), Event::CallFailed { code: ErrorCode::INTERNAL, .. }));
    assert_eq!(p.client.table_len(), 0);
}

#[test]
fn the_final_goaway_never_overtakes_the_first() {
    let mut server = Config::server();
    server.timeouts.goaway_grace = Duration::from_millis(10);
    let mut client = Config::client();
    client.limits.connection_credit = 2048;
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    // A request that cannot leave for lack of credit holds the GOAWAY back.
    p.server.send_request(1, Message::new(Codec::RAW, vec![0u8; 2040]), None).unwrap();
    p.server.send_request(1, Message::new(Codec::RAW, vec![0u8; 1000]), None).unwrap();
    p.server.close(ErrorCode::NO_ERROR, None);
    p.advance(Duration::from_millis(10));
    p.drive();
    assert!(p.client.close_error().is_none(), "{:?}", p.client.close_error());
    let goaways: Vec<_> =
        p.server_sent.iter().filter(|f| f.header.ty == FrameType::GOAWAY).map(|f| f.header.id).collect();
    assert!(!goaways.is_empty() && goaways.windows(2).all(|w| w[0] >= w[1]), "{goaways:?}");
}

#[test]
fn an_error_mid_message_drops_the_partial_message() {
    let (client, server) = small_frames();
    let mut p = Pair::with(client, server);
    p.take_client();
    p.take_server();
    let id = p.client.open_stream(1, raw(b""), None, false).unwrap();
    p.drive();
    p.take_server();
    p.client.send_stream_data(id, Message::new(Codec::RAW, vec![1u8; 5000]), false).unwrap();
    // Only the first fragment reaches the server before it fails the stream.
    let first = p.client.poll_transmit().unwrap();
    assert!(first.header.flags.contains(Flags::MORE));
    p.server.handle_bytes(p.now, &bytes_of(&first));
    p.server.send_error(id, ErrorCode::INTERNAL, ErrorInfo::default()).unwrap();
    assert_eq!(p.server.table_len(), 0, "no half-assembled message is kept");
    p.drive();
    p.advance(Duration::from_secs(31));
    assert!(p.server.is_connected(), "{:?}", p.server.close_error());
    assert_eq!(p.server.calls_in_flight(), (0, 0));
}

#[test]
fn nothing_queued_goes_out_after_a_peer_error() {
    let (mut server, now) = server_after_hello();
    let ping = bytes_of(&Frame::new(Header::new(FrameType::PING, 0, 0, 0), Bytes::from_static(&[0; 8])));
    let goaway =
        bytes_of(&Frame::new(Header::new(FrameType::GOAWAY, 0, u32::from(ErrorCode::INTERNAL.0), 0), Bytes::new()));
    server.handle_bytes(now, &[ping, goaway].concat());
    assert!(server.is_closed());
    assert_eq!(server.poll_transmit(), None, "the PONG is not sent after the peer's error GOAWAY");
}

#[test]
fn frames_in_flight_after_a_cancel_are_free() {
    let mut p = connected();
    let id = p.client.open_stream(1, raw(b""), None, true).unwrap();
    p.drive();
    p.take_server();
    // The server had 5,000 tiny messages in flight when the client gave up.
    for i in 0..5000u32 {
        p.server.send_stream_data(id, Message::new(Codec::RAW, i.to_le_bytes().to_vec()), false).unwrap();
    }
    let in_flight: Vec<u8> = core::iter::from_fn(|| p.server.poll_transmit()).flat_map(|f| bytes_of(&f)).collect();
    p.client.cancel(id).unwrap();
    p.client.handle_bytes(p.now, &in_flight);
    p.drive();
    assert!(p.client.is_connected(), "{:?}", p.client.close_error());
    assert!(p.server.is_connected(), "{:?}", p.server.close_error());
    assert!(p.take_server().contains(&Event::Cancelled { id, code: ErrorCode::CANCELLED }));
    p.server.send_error(id, ErrorCode::CANCELLED, ErrorInfo::default()).unwrap();
    assert_eq!(p.client.table_len() + p.server.table_len(), 0);
}
