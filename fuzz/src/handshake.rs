//! `handshake`: the control-table decoders on arbitrary payloads, and fresh
//! connections (server and client) on arbitrary input bytes.
//!
//! The input is used three ways:
//! - as a payload for `Hello`, `HelloAck`, `ErrorInfo` and `GoAwayInfo`
//!   decoding; a table that decodes must survive `encode` then `decode`
//!   unchanged;
//! - as the byte stream a server (`Config::server()`) and a client
//!   (`Config::client()`, its HELLO written and discarded) receive, whole and
//!   in chunks of `1 + byte0 % 32` bytes, draining `poll_transmit` and
//!   `poll_event` after each chunk; the server accepts on `HelloReceived`
//!   (refuses when the last byte is `0xAA`). The client, which takes no
//!   decision, must react identically whole and chunked, except that a call
//!   the peer opened may be reported in one and not the other: a call that
//!   ends before the application polled its opening event is never reported
//!   (§6.6). Such a call must end in `Cancelled` where it is reported, and is
//!   left out of the comparison;
//! - as one WebSocket message (`handle_frame`) to a server and a client.
//!
//! The server offers and uses descriptors (`served_services`), so a HELLO's
//! services go through the whole compatibility check.
//!
//! After the input, each connection gets end of stream and two far-future
//! timeouts, and must then be closed, with exactly one `Closed` event, no
//! event after it, and an empty call table.

use core::time::Duration;

use bytes::Bytes;
use gatewire_proto::control::{ErrorInfo, GoAwayInfo, Hello, HelloAck, Service};
use gatewire_proto::{CallId, Config, Connection, ErrorCode, Event, Frame, Instant, Role};

use crate::track::{Track, drain_events, drain_transmit};

/// How bytes reach the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// `handle_bytes` in chunks of this many bytes.
    Stream(usize),
    /// `handle_frame` with the whole input as one message.
    Message,
}

/// What a connection wrote and reported before end of stream.
type Transcript = (Vec<Event>, Vec<Frame>);

/// Runs every check on one input.
pub fn run(data: &[u8]) {
    decode_tables(data);

    let chunk = 1 + usize::from(data.first().map_or(0, |b| b % 32));
    let whole = Feed::Stream(data.len().max(1));
    let refuse = data.last() == Some(&0xAA);

    drive(Role::Server, data, whole, refuse);
    drive(Role::Server, data, Feed::Stream(chunk), refuse);
    drive(Role::Server, data, Feed::Message, refuse);

    let a = drive(Role::Client, data, whole, refuse);
    let b = drive(Role::Client, data, Feed::Stream(chunk), refuse);
    let (a, b) = comparable(a, b);
    assert_eq!(a, b, "client reacts differently to the same bytes in chunks of {chunk}");
    drive(Role::Client, data, Feed::Message, refuse);
}

/// The two transcripts without the calls the peer opened that only one of
/// them reports. A call forgotten before the application polled its opening
/// event is never reported (§6.6), so whether it shows depends on when the
/// application polls; where it shows, it must end in `Cancelled`. Calls both
/// report are compared whole.
fn comparable(a: Transcript, b: Transcript) -> (Transcript, Transcript) {
    fn opened(events: &[Event]) -> Vec<CallId> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Request { id, .. } | Event::StreamOpened { id, .. } => Some(*id),
                _ => None,
            })
            .collect()
    }
    let (in_a, in_b) = (opened(&a.0), opened(&b.0));
    let one_sided: Vec<CallId> = in_a
        .iter()
        .filter(|id| !in_b.contains(id))
        .chain(in_b.iter().filter(|id| !in_a.contains(id)))
        .copied()
        .collect();
    let strip = |(events, frames): Transcript| -> Transcript {
        let here = opened(&events);
        for id in one_sided.iter().filter(|id| here.contains(id)) {
            assert!(
                events.iter().any(|e| matches!(e, Event::Cancelled { id: c, .. } if c == id)),
                "call {id} is reported in one chunking only, and never ends: {events:?}"
            );
        }
        let events = events
            .into_iter()
            .filter(|e| match e {
                Event::Request { id, .. }
                | Event::StreamOpened { id, .. }
                | Event::StreamData { id, .. }
                | Event::Cancelled { id, .. } => !one_sided.contains(id),
                _ => true,
            })
            .collect();
        (events, frames)
    };
    (strip(a), strip(b))
}

/// What the fuzzed server offers (and, renamed, uses), so that HELLOs naming
/// `chart.Chart` reach every step of the compatibility check (§10.3).
pub fn served_services() -> Vec<Service> {
    use gatewire_proto::control::{MethodDesc, MethodKind, Shape};
    use gatewire_proto::services::{fnv1a64, method_id, type_hash};
    let method = |name: &str, kind| MethodDesc {
        name: name.into(),
        id: method_id("chart.Chart", name),
        kind,
        request: type_hash("chart.Points"),
        response: type_hash("chart.Added"),
    };
    let slots = |types: &[&str]| types.iter().map(|t| fnv1a64(t.as_bytes())).collect();
    vec![Service {
        name: "chart.Chart".into(),
        fingerprint: 1,
        methods: vec![method("AddPoints", MethodKind::UNARY), method("StreamPoints", MethodKind::CLIENT_STREAMING)],
        shapes: vec![
            Shape {
                name: "chart.Points".into(),
                ty: type_hash("chart.Points"),
                fixed: false,
                slots: slots(&["uint32", "[float64]", "[float64]"]),
            },
            Shape {
                name: "chart.Vec2".into(),
                ty: type_hash("chart.Vec2"),
                fixed: true,
                slots: slots(&["float64", "float64"]),
            },
        ],
    }]
}

/// The four control decoders; what decodes must round-trip.
fn decode_tables(data: &[u8]) {
    if let Ok(hello) = Hello::decode(data) {
        assert!(hello.min_version <= hello.max_version);
        assert_eq!(Hello::decode(&hello.encode()).as_ref(), Ok(&hello), "Hello does not round-trip");
    }
    if let Ok(ack) = HelloAck::decode(data) {
        assert_eq!(HelloAck::decode(&ack.encode()).as_ref(), Ok(&ack), "HelloAck does not round-trip");
    }
    if let Ok(info) = ErrorInfo::decode(data) {
        assert_eq!(ErrorInfo::decode(&info.encode()).as_ref(), Ok(&info), "ErrorInfo does not round-trip");
    }
    if let Ok(info) = GoAwayInfo::decode(data) {
        assert_eq!(GoAwayInfo::decode(&info.encode()).as_ref(), Ok(&info), "GoAwayInfo does not round-trip");
    }
    if data.is_empty() {
        assert!(Hello::decode(data).is_err() && HelloAck::decode(data).is_err());
        assert_eq!(ErrorInfo::decode(data), Ok(ErrorInfo::default()));
        assert_eq!(GoAwayInfo::decode(data), Ok(GoAwayInfo::default()));
    }
}

fn drive(role: Role, data: &[u8], feed: Feed, refuse: bool) -> Transcript {
    let name = match role {
        Role::Client => "client",
        Role::Server => "server",
    };
    let mut now = Instant::ZERO;
    let mut config = Config::new(role);
    if role == Role::Server {
        config.services = served_services();
        config.uses = served_services()
            .into_iter()
            .map(|mut s| {
                s.name = "chart.Events".into();
                s
            })
            .collect();
    }
    let mut conn = Connection::new(config, now);
    let mut track = Track::new(name);
    let mut transcript = (Vec::new(), Vec::new());
    if role == Role::Client {
        assert_eq!(drain_transmit(&mut conn, name, None), 1, "client queues exactly its HELLO");
    }
    settle(&mut conn, &mut track, &mut transcript, refuse);
    match feed {
        Feed::Stream(n) => {
            for chunk in data.chunks(n) {
                conn.handle_bytes(now, chunk);
                settle(&mut conn, &mut track, &mut transcript, refuse);
            }
        }
        Feed::Message => {
            conn.handle_frame(now, Bytes::copy_from_slice(data));
            settle(&mut conn, &mut track, &mut transcript, refuse);
        }
    }
    let before_eof = transcript.clone();

    conn.handle_eof(now);
    settle(&mut conn, &mut track, &mut transcript, refuse);
    for _ in 0..2 {
        now = now + Duration::from_secs(3600);
        conn.handle_timeout(now);
        settle(&mut conn, &mut track, &mut transcript, refuse);
    }
    assert!(conn.is_closed(), "{name}: still open after end of stream and timeouts: {conn:?}");
    assert!(track.closed, "{name}: no Closed event");
    before_eof
}

/// Drains output and events until neither moves, answering a HELLO.
fn settle(conn: &mut Connection, track: &mut Track, transcript: &mut Transcript, refuse: bool) {
    loop {
        let name = track.name;
        let sent = drain_transmit(conn, name, Some(&mut transcript.1));
        let events = drain_events(conn, track, |conn, event| {
            transcript.0.push(event.clone());
            if matches!(event, Event::HelloReceived(_)) {
                // Fails only when a later frame already closed the connection.
                let r = if refuse { conn.refuse(ErrorCode::UNAUTHENTICATED, Some("no")) } else { conn.accept() };
                assert!(r.is_ok() || conn.is_closed(), "answering HELLO failed: {r:?}");
            }
        });
        track.check(conn);
        if sent == 0 && events == 0 {
            return;
        }
    }
}
