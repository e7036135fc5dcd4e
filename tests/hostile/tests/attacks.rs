//! Catalogue attacks (`/work/shared/reference/hostile-inputs.md` A–J) against a
//! real gatewire server, each driven by a scripted raw-frame attacker over a
//! real socket. Every test names its catalogue entry.
//!
//! Where the other entries are: G (authentication and TLS), H3, H4, I1 and
//! I2 in `transports.rs`; the entries that measure the whole process have a
//! test binary each (A2, D1, D2, D5 out of descriptors, D6, E1).
//!
//! Entries, or parts of entries, that do not apply to gatewire:
//!
//! | Entry | Why |
//! |---|---|
//! | J3 reconnect storm | The runtime never reconnects by itself (`connect` is one-shot; the application reconnects), and it has no lame-duck spreading of closes nor retry budget to test. The server side of a storm (connection and handshake caps, accept backoff) is D5. |
//! | J4 resumption abuse | gatewire has no session resumption. |
//! | B2, negative windows | Limits are fixed by the handshake: no window is ever lowered, so none can go negative. (The zero grant and the sender pausing at an empty window are tested.) |
//! | A10, `Ok(0)` | A real socket never returns it; the byte-stream writer turns it into `WriteZero` through `write_all`. (EPIPE and ECONNRESET are tested.) |
//! | G2, timing | A wire-level timing test cannot resolve a comparison's nanoseconds on a shared 2-core machine; the comparison is of SHA-256 digests with `subtle`. (Identical refusals are tested.) |

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatewire::{Builder, ErrorCode, Limits, Message, Router, Server, Status, Timeouts};
use gatewire_hostile::{
    Attacker, Dropped, LIMIT, WsAttacker, eventually, frame, hello_frame, hello_with, ping, raw_header,
    remove_unix_dir, request, serve_router, serve_tcp, serve_url, server_side, sole_connection, unix_url, until,
};
use gatewire_proto::control::{ErrorInfo, GoAwayInfo, Hello, HelloAck, MethodDesc, MethodKind, Service};
use gatewire_proto::{Codec, Flags, Frame, FrameType, Header};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::timeout;

fn echo() -> Router {
    Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) })
}

/// A router whose method 1 never completes and counts its invocations.
fn stuck(count: Arc<AtomicUsize>) -> Router {
    Router::new().unary(1, move |_ctx, _m: Message| {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    })
}

fn short(handshake: Duration, partial: Duration) -> Timeouts {
    let mut t = Timeouts::default();
    t.handshake = handshake;
    t.partial_frame = partial;
    t
}

fn is(ty: FrameType, id: u32) -> impl Fn(&Frame) -> bool {
    move |f| f.header.ty == ty && f.header.id == id
}

/// `f` with a DEADLINE prelude of `ms` milliseconds.
fn with_deadline(f: Frame, ms: u32) -> Frame {
    let mut payload = ms.to_le_bytes().to_vec();
    payload.extend_from_slice(&f.payload);
    let mut h = f.header;
    h.flags = h.flags.with(Flags::DEADLINE);
    Frame::new(h, payload.into())
}

fn event(id: u32, method: u32, body: &[u8]) -> Frame {
    frame(FrameType::EVENT, Flags::NONE, id, method, body)
}

fn stream_open(id: u32, method: u32, flags: Flags, body: &[u8]) -> Frame {
    frame(FrameType::STREAM_OPEN, flags, id, method, body)
}

fn credit(id: u32, bytes: u32) -> Frame {
    frame(FrameType::CREDIT, Flags::NONE, id, bytes, b"")
}

fn cancel(id: u32) -> Frame {
    frame(FrameType::CANCEL, Flags::NONE, id, 0, b"")
}

fn response(id: u32, body: &[u8]) -> Frame {
    frame(FrameType::RESPONSE, Flags::NONE, id, 0, body)
}

fn code(f: &Frame) -> ErrorCode {
    ErrorCode(f.header.arg as u16)
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("the marker is in the encoded table")
}

/// A HELLO advertising the largest windows, so that credit never holds the
/// server back.
fn wide_hello() -> Frame {
    hello_with(|c| {
        c.limits.connection_credit = 0x7FFF_FFFF;
        c.limits.initial_stream_credit = 0x7FFF_FFFF;
    })
}

/// An echo on method 1, plus method 9, which calls the peer's method 7 with
/// its request and answers with the reply. The outcome of that call also
/// goes to `outcomes`, from a task of its own, so that it is reported even
/// when the connection ends and the handler is cancelled.
fn calls_back(outcomes: mpsc::UnboundedSender<gatewire::Result<Message>>) -> Router {
    echo().unary(9, move |ctx, m: Message| {
        let outcomes = outcomes.clone();
        let conn = ctx.connection().clone();
        async move {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(async move {
                let r = conn.call(7, m).await;
                let _ = outcomes.send(r.clone());
                let _ = tx.send(r);
            });
            match rx.await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) => Err(Status::from(e)),
                Err(_) => Err(Status::internal("the call task ended")),
            }
        }
    })
}

/// The next REQUEST the server sends (a call to the attacker).
async fn expect_call<S: AsyncRead + AsyncWrite + Unpin>(a: &mut Attacker<S>) -> Frame {
    a.expect_frame("a REQUEST from the server", |f| f.header.ty == FrameType::REQUEST).await
}

/// The next outcome a `calls_back` router reported.
async fn outcome(rx: &mut mpsc::UnboundedReceiver<gatewire::Result<Message>>) -> gatewire::Result<Message> {
    timeout(LIMIT, rx.recv()).await.expect("the call ends in time").expect("an outcome")
}

// ----- A. Framing and parsing --------------------------------------------------

/// A1: lengths of `max_frame + 1` and `u32::MAX` (with no body) are refused
/// from the header alone with GOAWAY(TOO_LARGE); before the handshake the
/// limit is `max_handshake` (16 KiB).
#[tokio::test]
async fn a1_oversized_length_prefix_goaway_too_large() {
    let (_server, addr) = serve_router(echo()).await;
    for length in [1024 * 1024 + 1, u32::MAX] {
        let mut a = Attacker::handshake(&addr).await;
        a.send_raw(&raw_header(length, FrameType::REQUEST.0, 0, 0, 1, 1)).await;
        a.expect_goaway(ErrorCode::TOO_LARGE).await;
    }
    // Before the handshake: a HELLO declaring 16 KiB + 1.
    let mut a = Attacker::connect(&addr).await;
    a.send_raw(&raw_header(16 * 1024 + 1, FrameType::HELLO.0, 0, 0, 0, 0)).await;
    a.expect_goaway(ErrorCode::TOO_LARGE).await;
}

/// A3: a slowloris HELLO (one byte every 50 ms) and a silent peer are both
/// cut off by the configured 400 ms handshake deadline with GOAWAY(TIMEOUT);
/// a frame left half-sent after the handshake is cut off by the 400 ms
/// partial-frame deadline.
#[tokio::test]
async fn a3_slowloris_handshake_deadline() {
    let t = Duration::from_millis(400);
    let (_server, addr) = serve_tcp(Builder::new().router(echo()).timeouts(short(t, t))).await;

    let start = std::time::Instant::now();
    let mut silent = Attacker::connect(&addr).await;
    silent.expect_goaway(ErrorCode::TIMEOUT).await;

    let mut slow = Attacker::connect(&addr).await;
    let hello = gatewire_hostile::encode(&[hello_frame()]);
    let dribble = async {
        for b in &hello {
            if slow.sock.try_write(std::slice::from_ref(b)).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // The dribble would take hello.len() × 50 ms; the deadline ends it first.
    assert!(hello.len() * 50 > 2 * 400, "the HELLO is long enough to outlast the deadline");
    let _ = timeout(Duration::from_millis(hello.len() as u64 * 50 / 2), dribble).await;
    slow.expect_goaway(ErrorCode::TIMEOUT).await;
    assert!(start.elapsed() < Duration::from_secs(5), "deadlines fire promptly: {:?}", start.elapsed());

    let mut partial = Attacker::handshake(&addr).await;
    partial.send_raw(&raw_header(100, FrameType::REQUEST.0, 0, 0, 1, 1)[..9]).await;
    partial.expect_goaway(ErrorCode::TIMEOUT).await;
}

/// A5: an unknown type (0x00, 0x0F, 0x7F), a non-zero reserved byte and a
/// reserved flag bit are each PROTOCOL_VIOLATION; an extension type (0x80)
/// after the handshake is ignored and the connection stays up; an extension
/// type before the handshake is PROTOCOL_VIOLATION; a HELLO offering only
/// version 2 is refused in HELLO_ACK with INCOMPATIBLE.
#[tokio::test]
async fn a5_unknown_type_and_reserved_bits() {
    let (_server, addr) = serve_router(echo()).await;
    let bad = [
        raw_header(0, 0x00, 0, 0, 1, 0),
        raw_header(0, 0x0F, 0, 0, 1, 0),
        raw_header(0, 0x7F, 0, 0, 1, 0),
        raw_header(0, FrameType::REQUEST.0, 0, 1, 1, 1),
        raw_header(0, FrameType::REQUEST.0, 0x10, 0, 1, 1),
        raw_header(0, FrameType::REQUEST.0, 0x80, 0, 1, 1),
        raw_header(8, FrameType::PING.0, Flags::END.0, 0, 0, 0),
    ];
    for h in bad {
        let mut a = Attacker::handshake(&addr).await;
        let mut bytes = h.clone();
        bytes.resize(16 + u32::from_le_bytes(h[..4].try_into().unwrap()) as usize, 0);
        a.send_raw(&bytes).await;
        a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    }

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[frame(FrameType(0x80), Flags(0xFF), 7, 9, b"ignore me")]).await;
    a.send(&[request(1, 1, b"still here")]).await;
    let r = a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
    assert_eq!(&r.payload[..], b"still here");

    let mut a = Attacker::connect(&addr).await;
    a.send(&[frame(FrameType(0x80), Flags::NONE, 0, 0, b"")]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;

    let mut hello = Hello::decode(&hello_frame().payload).unwrap();
    hello.min_version = 2;
    hello.max_version = 2;
    let mut a = Attacker::connect(&addr).await;
    a.send(&[frame(FrameType::HELLO, Flags::NONE, 0, 0, &hello.encode())]).await;
    let ack = a.expect_frame("HELLO_ACK", |f| f.header.ty == FrameType::HELLO_ACK).await;
    let ack = gatewire_proto::control::HelloAck::decode(&ack.payload).unwrap();
    assert_eq!(ack.error_code, ErrorCode::INCOMPATIBLE, "{ack:?}");
    assert!(a.ending().await.after.is_empty());
}

/// A8: a framing error followed, in the same write, by a valid REQUEST: the
/// server sends GOAWAY(PROTOCOL_VIOLATION), nothing after it, never answers
/// the REQUEST and never runs its handler.
#[tokio::test]
async fn a8_no_frames_after_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().unary(1, move |_ctx, m: Message| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok(m) }
    });
    let (_server, addr) = serve_router(router).await;
    let mut a = Attacker::handshake(&addr).await;
    let mut bytes = raw_header(0, 0x0F, 0, 0, 1, 0);
    bytes.extend(gatewire_hostile::encode(&[request(1, 1, b"after the error"), request(3, 1, b"x")]));
    a.send_raw(&bytes).await;
    let before = a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    assert!(before.iter().all(|f| f.header.ty != FrameType::RESPONSE), "{before:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler runs after a framing error");
}

/// A9: the peer vanishes (FIN, then RST) after a REQUEST header and half its
/// body: the handler never runs and the server forgets the connection.
#[tokio::test]
async fn a9_peer_vanishes_mid_frame() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().unary(1, move |_ctx, m: Message| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok(m) }
    });
    let (server, addr) = serve_router(router).await;
    let bytes = gatewire_hostile::encode(&[request(1, 1, &[7u8; 64])]);
    for (cut, rst) in [(5, false), (16, false), (40, false), (20, true), (79, true)] {
        let mut a = Attacker::handshake(&addr).await;
        eventually("the server tracks the connection", || !server.connections().is_empty()).await;
        a.send_raw(&bytes[..cut]).await;
        if rst {
            // A zero linger makes the close an RST; it never blocks.
            #[allow(deprecated)]
            a.sock.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(a);
        eventually("the server frees the connection", || server.connections().is_empty()).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a partial frame is never delivered");
}

/// A4: what the server decodes does not depend on how the bytes arrive. One
/// script (a REQUEST, a REQUEST in two fragments with a deadline prelude, an
/// EVENT, a PING and another REQUEST) gets the same answers when it is cut
/// in two at every byte offset (the server has read the first part, by its
/// byte counter, before the second is written, so every header is split
/// across two reads at every offset), when the server reads it one byte at
/// a time, and when it arrives in one write.
#[tokio::test]
async fn a4_arbitrary_segmentation() {
    let events = Arc::new(AtomicUsize::new(0));
    let e = events.clone();
    let router = echo().event(3, move |_ctx, _m| {
        e.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    let (server, addr) = serve_router(router).await;
    let mut first = with_deadline(request(3, 1, b"be"), 10_000);
    first.header.flags = first.header.flags.with(Flags::MORE);
    let script = gatewire_hostile::encode(&[
        request(1, 1, b"alpha"),
        first,
        frame(FrameType::CONTINUATION, Flags::NONE, 3, 0, b"ta"),
        event(5, 3, b"e"),
        ping(7),
        request(7, 1, b"gamma"),
    ]);
    let expected: BTreeSet<_> = [
        (FrameType::RESPONSE.0, 1, b"alpha".to_vec()),
        (FrameType::RESPONSE.0, 3, b"beta".to_vec()),
        (FrameType::PONG.0, 0, 7u64.to_le_bytes().to_vec()),
        (FrameType::RESPONSE.0, 7, b"gamma".to_vec()),
    ]
    .into();
    let mut plans: Vec<Vec<usize>> = (1..script.len()).map(|cut| vec![cut]).collect();
    plans.push((1..script.len()).collect());
    plans.push(Vec::new());
    for cuts in &plans {
        let mut a = Attacker::handshake(&addr).await;
        let conn = server_side(&server, &a).await;
        let base = conn.stats().bytes_received;
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&script.len())) {
            a.send_raw(&script[from..cut]).await;
            let want = base + cut as u64;
            until("the server read what was written", || conn.stats().bytes_received >= want).await;
            from = cut;
        }
        let mut got = BTreeSet::new();
        while got.len() < expected.len() {
            let f = a.next().await.expect("an answer");
            if f.header.ty != FrameType::CREDIT {
                got.insert((f.header.ty.0, f.header.id, f.payload.to_vec()));
            }
        }
        assert_eq!(got, expected, "cut at {cuts:?}");
    }
    until("every event was handled", || events.load(Ordering::SeqCst) == plans.len()).await;
}

/// A6: inner lengths that disagree with the frame are PROTOCOL_VIOLATION and
/// are never read past: a DEADLINE (or DEADLINE + COMPRESSED) prelude longer
/// than the payload; PING, CANCEL, CREDIT and CONTINUATION payloads of the
/// wrong length; FlatBuffers lengths that run past the payload, in a HELLO's
/// `auth` (never accepted), a GOAWAY's `message` and an ERROR's `details`
/// (the server's call that ERROR answers fails as closed, never completes).
#[tokio::test]
async fn a6_inconsistent_inner_lengths() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let builder = Builder::new().router(calls_back(tx)).compression(Some(1 << 20));
    let (_server, addr) = serve_tcp(builder).await;
    let raw = |h: Vec<u8>, payload: &[u8]| [h, payload.to_vec()].concat();
    let (req, ping_ty) = (FrameType::REQUEST.0, FrameType::PING.0);
    let mut open = request(1, 1, b"first fragment");
    open.header.flags = Flags::MORE;
    let cases = [
        ("DEADLINE prelude past the payload", raw(raw_header(3, req, Flags::DEADLINE.0, 0, 1, 1), &[1, 2, 3])),
        (
            "DEADLINE + COMPRESSED prelude past the payload",
            raw(raw_header(6, req, Flags::DEADLINE.with(Flags::COMPRESSED).0, 0, 1, 1), &[0; 6]),
        ),
        ("PING of 7 bytes", raw(raw_header(7, ping_ty, 0, 0, 0, 0), &[0; 7])),
        ("PING of 9 bytes", raw(raw_header(9, ping_ty, 0, 0, 0, 0), &[0; 9])),
        ("CANCEL with a payload", raw(raw_header(4, FrameType::CANCEL.0, 0, 0, 1, 0), &[0; 4])),
        ("CREDIT with a payload", raw(raw_header(4, FrameType::CREDIT.0, 0, 0, 0, 1), &[0; 4])),
        (
            "empty CONTINUATION",
            raw(gatewire_hostile::encode(&[open]), &raw_header(0, FrameType::CONTINUATION.0, 0, 0, 1, 0)),
        ),
    ];
    for (what, bytes) in cases {
        let mut a = Attacker::handshake_with(&addr, hello_with(|c| c.compression = true)).await;
        a.send_raw(&bytes).await;
        let e = a.ending().await;
        assert_eq!(e.goaway, Some(ErrorCode::PROTOCOL_VIOLATION), "{what}: {e:?}");
        assert!(e.after.is_empty(), "{what}");
    }

    // A HELLO whose `auth` vector claims 2 GiB.
    let hello = hello_with(|c| c.auth = Some(Bytes::from_static(b"AUTH-BYTES")));
    let mut p = hello.payload.to_vec();
    let at = find(&p, b"AUTH-BYTES");
    p[at - 4..at].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    let mut a = Attacker::connect(&addr).await;
    a.send(&[frame(FrameType::HELLO, Flags::NONE, 0, 0, &p)]).await;
    let e = a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    assert!(e.iter().all(|f| f.header.ty != FrameType::HELLO_ACK), "{e:?}");

    // A GOAWAY whose `message` string runs past the payload.
    let mut p = GoAwayInfo { message: Some("going-away".into()) }.encode();
    let at = find(&p, b"going-away");
    p[at - 4..at].copy_from_slice(&1000u32.to_le_bytes());
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[frame(FrameType::GOAWAY, Flags::NONE, 0, 0, &p)]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;

    // An ERROR answering the server's call, whose `details` claim 4 GiB.
    let mut p = ErrorInfo { message: None, details: Some(Bytes::from_static(b"DETAILS-DETAILS")) }.encode();
    let at = find(&p, b"DETAILS-DETAILS");
    p[at - 4..at].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 9, b"call me")]).await;
    let call = expect_call(&mut a).await;
    a.send(&[frame(FrameType::ERROR, Flags::NONE, call.header.id, ErrorCode::INTERNAL.0.into(), &p)]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    let r = outcome(&mut rx).await;
    assert!(r.as_ref().is_err_and(gatewire::Error::is_closed), "{r:?}");
}

/// A7: values at the top of their ranges never wrap. A REQUEST on id
/// u32::MAX with a deadline of u32::MAX ms (49.7 days) is served, a PING
/// token of u64::MAX comes back intact, and any later opening id is
/// PROTOCOL_VIOLATION (there is none above). A connection CREDIT of u32::MAX
/// is GOAWAY(FLOW_CONTROL); a stream CREDIT of u32::MAX is the stream error
/// FLOW_CONTROL. A declared decompressed size of u32::MAX is
/// GOAWAY(TOO_LARGE).
#[tokio::test]
async fn a7_no_wrap_at_the_top() {
    let router = echo().stream(2, |_ctx, _m, _rx, _tx| std::future::pending());
    let (_server, addr) = serve_tcp(Builder::new().router(router).compression(Some(1 << 20))).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[with_deadline(request(u32::MAX, 1, b"top"), u32::MAX), ping(u64::MAX)]).await;
    let (mut answered, mut ponged) = (false, false);
    while !(answered && ponged) {
        let f = a.next().await.expect("answers");
        match f.header.ty {
            FrameType::RESPONSE => {
                assert_eq!((f.header.id, &f.payload[..]), (u32::MAX, &b"top"[..]));
                answered = true;
            }
            FrameType::PONG => {
                assert_eq!(f.payload[..], u64::MAX.to_le_bytes());
                ponged = true;
            }
            _ => {}
        }
    }
    a.send(&[request(u32::MAX, 1, b"again")]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[credit(0, u32::MAX)]).await;
    a.expect_goaway(ErrorCode::FLOW_CONTROL).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[stream_open(1, 2, Flags::NONE, b""), credit(1, u32::MAX)]).await;
    let e = a.expect_frame("ERROR on stream 1", is(FrameType::ERROR, 1)).await;
    assert_eq!(code(&e), ErrorCode::FLOW_CONTROL);
    a.assert_alive(1).await;

    let mut a = Attacker::handshake_with(&addr, hello_with(|c| c.compression = true)).await;
    let mut r = request(1, 1, &[u32::MAX.to_le_bytes(), [0x28, 0xB5, 0x2F, 0xFD]].concat());
    r.header.flags = Flags::COMPRESSED;
    a.send(&[r]).await;
    a.expect_goaway(ErrorCode::TOO_LARGE).await;
}

/// An echo (method 1) and a stream handler (method 2) that first calls the peer's method 7 (the
/// outcome goes to `outcomes`) and then sends 60 KB messages, each a fresh
/// buffer, until it fails; `ended` counts its ends.
fn flood_router(ended: Arc<AtomicUsize>, outcomes: mpsc::UnboundedSender<gatewire::Result<Message>>) -> Router {
    echo().stream(2, move |ctx, _m, _rx, mut tx| {
        let (ended, outcomes) = (ended.clone(), outcomes.clone());
        let conn = ctx.connection().clone();
        async move {
            let _ended = Dropped(ended);
            tokio::spawn(async move {
                let _ = outcomes.send(conn.call(7, Message::raw(&b"are you there?"[..])).await);
            });
            loop {
                tx.send(Message::raw(vec![0x5a; 60_000])).await.map_err(Status::from)?;
            }
        }
    })
}

/// The A10 scenario on one connection: the server is blocked writing (its
/// send queue full) when `kill` makes its writes fail.
async fn reset_while_writing<S: AsyncRead + AsyncWrite + Unpin>(
    server: &Server,
    mut a: Attacker<S>,
    kill: impl FnOnce(Attacker<S>),
    ended: &AtomicUsize,
    outcomes: &mut mpsc::UnboundedReceiver<gatewire::Result<Message>>,
) {
    a.accepted(wide_hello()).await;
    let conn = sole_connection(server).await;
    a.send(&[stream_open(1, 2, Flags::END, b"")]).await;
    until("the server's writes are blocked", || conn.stats().credit_stalls > 0).await;
    kill(a);
    let e = timeout(LIMIT, conn.closed()).await.expect("the connection ends").expect("with an error");
    assert!(e.is_closed(), "{e}");
    // The call fails as closed, or as refused (safe to retry) if its REQUEST
    // was still queued behind the blocked writes.
    let r = outcome(outcomes).await;
    let failed = r.as_ref().is_err_and(|e| e.code() == ErrorCode::UNAVAILABLE && (e.is_closed() || e.is_retryable()));
    assert!(failed, "the pending call fails: {r:?}");
    until("the handler ended", || ended.load(Ordering::SeqCst) == 1).await;
    let writes = conn.stats().writes;
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert_eq!(conn.stats().writes, writes, "no write is retried after the failure");
}

/// A10: the peer resets the connection while the server is blocked writing
/// to it (a stream handler whose 8 MiB send queue is full, and a call to the
/// peer pending), over TCP (RST, by a zero linger) and a Unix socket
/// (EPIPE). The connection fails once, with an error that `is_closed`; the
/// pending call fails with UNAVAILABLE (as closed, or as refused if it had
/// not left yet), the handler ends, no write is retried
/// (no busy loop), and the server still serves a new connection. (A write
/// returning `Ok(0)` cannot be produced by a real socket; the byte-stream
/// writer turns it into `WriteZero` through `write_all`.)
#[tokio::test]
async fn a10_write_error_fails_once() {
    for unix in [false, true] {
        let ended = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bind = if unix { unix_url("a10") } else { "tcp://127.0.0.1:0".to_owned() };
        let builder = Builder::new().router(flood_router(ended.clone(), tx));
        let (server, url) = serve_url(builder, &bind).await;
        if unix {
            let path = url.trim_start_matches("unix://").to_owned();
            let sock = timeout(LIMIT, UnixStream::connect(&path)).await.unwrap().unwrap();
            reset_while_writing(&server, Attacker::over(sock), drop, &ended, &mut rx).await;
            let mut b = Attacker::over(UnixStream::connect(&path).await.unwrap());
            b.accepted(hello_frame()).await;
            b.send(&[request(1, 1, b"next")]).await;
            b.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
            drop(server);
            remove_unix_dir(&url);
        } else {
            let addr = url.trim_start_matches("tcp://").to_owned();
            let kill = |a: Attacker| {
                #[allow(deprecated)]
                a.sock.set_linger(Some(Duration::ZERO)).unwrap();
                drop(a);
            };
            reset_while_writing(&server, Attacker::connect(&addr).await, kill, &ended, &mut rx).await;
            let mut b = Attacker::handshake(&addr).await;
            b.send(&[request(1, 1, b"next")]).await;
            b.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
        }
    }
}

// ----- B. Streams and credit ------------------------------------------------------

/// B1: a connection CREDIT that pushes the window past 2^31 − 1 is
/// GOAWAY(FLOW_CONTROL); on a stream it is a stream error ERROR(FLOW_CONTROL)
/// and the connection stays up.
#[tokio::test]
async fn b1_credit_overflow_flow_control() {
    let router = echo().stream(2, |_ctx, _m, _rx, _tx| std::future::pending());
    let (_server, addr) = serve_router(router).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"earn nothing")]).await;
    a.send(&[frame(FrameType::CREDIT, Flags::NONE, 0, 0x7FFF_FFFF, b"")]).await;
    a.expect_goaway(ErrorCode::FLOW_CONTROL).await;

    let mut a = Attacker::handshake(&addr).await;
    let mut open = frame(FrameType::STREAM_OPEN, Flags::NONE, 1, 2, b"open");
    open.header.codec = Codec::RAW;
    a.send(&[open, frame(FrameType::CREDIT, Flags::NONE, 1, 0x7FFF_FFFF, b"")]).await;
    let e = a.expect_frame("ERROR on stream 1", is(FrameType::ERROR, 1)).await;
    assert_eq!(ErrorCode(e.header.arg as u16), ErrorCode::FLOW_CONTROL);
    a.assert_alive(1).await;
}

/// B3: with a 1 KiB per-stream credit and a handler that never reads, the
/// second 600-byte STREAM_DATA exceeds the window: ERROR(FLOW_CONTROL) on the
/// stream, and the connection survives.
#[tokio::test]
async fn b3_data_beyond_stream_credit() {
    let router = Router::new().stream(2, |_ctx, _m, _rx, _tx| std::future::pending());
    let (_server, addr) = serve_tcp(Builder::new().router(router).stream_credit(1024)).await;
    let mut a = Attacker::handshake(&addr).await;
    let mut open = frame(FrameType::STREAM_OPEN, Flags::NONE, 1, 2, b"");
    open.header.codec = Codec::RAW;
    let data = frame(FrameType::STREAM_DATA, Flags::NONE, 1, 0, &[1u8; 600]);
    a.send(&[open, data.clone(), data]).await;
    let e = a.expect_frame("ERROR on stream 1", is(FrameType::ERROR, 1)).await;
    assert_eq!(ErrorCode(e.header.arg as u16), ErrorCode::FLOW_CONTROL);
    a.assert_alive(2).await;
}

/// B5: with `max_in_flight` 2 and handlers that never finish, the third
/// REQUEST is refused at once with the retryable ERROR(REFUSED) and is never
/// queued: its handler never runs.
#[tokio::test]
async fn b5_open_flood_refused_not_queued() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (_server, addr) = serve_tcp(Builder::new().router(stuck(calls.clone())).max_in_flight(2)).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"a"), request(3, 1, b"b"), request(5, 1, b"c")]).await;
    let e = a.expect_frame("ERROR on id 5", |f| f.header.ty == FrameType::ERROR).await;
    assert_eq!((e.header.id, ErrorCode(e.header.arg as u16)), (5, ErrorCode::REFUSED));
    a.assert_alive(1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly the two admitted calls run");
}

/// B6: REQUEST+CANCEL pairs written together land before the application
/// accepts the call; after the early-cancel budget (20) the server sends
/// GOAWAY(EXCESSIVE_LOAD).
#[tokio::test]
async fn b6_rapid_reset_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (_server, addr) = serve_router(stuck(calls.clone())).await;
    let mut a = Attacker::handshake(&addr).await;
    let mut frames = Vec::new();
    for i in 0..200u32 {
        let id = 2 * i + 1;
        frames.push(request(id, 1, b"x"));
        frames.push(frame(FrameType::CANCEL, Flags::NONE, id, 0, b""));
    }
    a.send(&frames).await;
    a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;
    assert!(calls.load(Ordering::SeqCst) < 200, "not every cancelled call ran a handler");
}

/// B7: every refused call costs the error-reset budget (1024); a peer that
/// keeps opening calls over `max_in_flight` 1 gets GOAWAY(EXCESSIVE_LOAD)
/// after at most 1024 REFUSED errors.
#[tokio::test]
async fn b7_error_reset_budget() {
    let (_server, addr) = serve_tcp(Builder::new().router(stuck(Arc::default())).max_in_flight(1)).await;
    let mut a = Attacker::handshake(&addr).await;
    let frames: Vec<_> = (0..1100u32).map(|i| request(2 * i + 1, 1, b"x")).collect();
    let writer = {
        let bytes = gatewire_hostile::encode(&frames);
        let (r, mut w) = a.sock.into_split();
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = w.write_all(&bytes).await;
            w
        });
        (r, task)
    };
    let (r, task) = writer;
    // Reassemble the attacker to read the outcome.
    let w = timeout(LIMIT, task).await.unwrap().unwrap();
    a.sock = r.reunite(w).unwrap();
    let before = a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;
    let refused = before.iter().filter(|f| f.header.ty == FrameType::ERROR).count();
    assert!(refused <= 1024, "{refused} REFUSED before the GOAWAY");
}

/// B8: non-final 1-byte fragments cost 255 each against the 25,600-byte
/// small-frame budget: GOAWAY(EXCESSIVE_LOAD) after about 100. Counter-test:
/// 1,000 complete 1-byte events (final frames) are exempt.
#[tokio::test]
async fn b8_tiny_frame_budget() {
    let router = echo().event(3, |_ctx, _m| async {});
    let (_server, addr) = serve_router(router).await;

    let mut a = Attacker::handshake(&addr).await;
    let mut first = request(1, 1, b"x");
    first.header.flags = Flags::MORE;
    let mut frames = vec![first];
    frames.extend((0..300).map(|_| frame(FrameType::CONTINUATION, Flags::MORE, 1, 0, b"x")));
    a.send(&frames).await;
    a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;

    let mut a = Attacker::handshake(&addr).await;
    let events: Vec<_> = (0..1000u32)
        .map(|i| {
            let mut f = frame(FrameType::EVENT, Flags::NONE, 2 * i + 1, 3, b"e");
            f.header.codec = Codec::RAW;
            f
        })
        .collect();
    a.send(&events).await;
    a.assert_alive(3).await;
}

/// B9: a fragmented REQUEST whose last fragment never comes is ended by the
/// 500 ms completion deadline with GOAWAY(TIMEOUT); one with more fragments
/// than floor(max_message / 256) + 2 is GOAWAY(TOO_LARGE).
#[tokio::test]
async fn b9_unfinished_fragmented_message() {
    let t = Duration::from_millis(500);
    let (_server, addr) = serve_tcp(Builder::new().router(echo()).timeouts(short(LIMIT, t))).await;
    let mut a = Attacker::handshake(&addr).await;
    let mut first = request(1, 1, &[0u8; 300]);
    first.header.flags = Flags::MORE;
    a.send(&[first.clone(), frame(FrameType::CONTINUATION, Flags::MORE, 1, 0, &[0u8; 300])]).await;
    // Keep the connection otherwise busy: complete frames do not extend the
    // message's deadline.
    a.send(&[ping(1)]).await;
    a.expect_goaway(ErrorCode::TIMEOUT).await;

    let (_server, addr) = serve_tcp(Builder::new().router(echo()).max_frame(1024).max_message(1024)).await;
    let mut a = Attacker::handshake(&addr).await;
    let mut first = request(1, 1, &[0u8; 1]);
    first.header.flags = Flags::MORE;
    let mut frames = vec![first];
    frames.extend((0..10).map(|_| frame(FrameType::CONTINUATION, Flags::MORE, 1, 0, &[0u8; 1])));
    a.send(&frames).await;
    let e = a.ending().await;
    assert!(
        matches!(e.goaway, Some(ErrorCode::TOO_LARGE | ErrorCode::EXCESSIVE_LOAD)),
        "too many fragments end the connection: {e:?}"
    );
}

/// B10: reusing an id, opening a lower id, and opening a server-parity (even)
/// id are each GOAWAY(PROTOCOL_VIOLATION).
#[tokio::test]
async fn b10_id_reuse_violation() {
    let (_server, addr) = serve_router(stuck(Arc::default())).await;
    for script in [vec![1, 1], vec![5, 3], vec![2]] {
        let mut a = Attacker::handshake(&addr).await;
        let frames: Vec<_> = script.iter().map(|&id| request(id, 1, b"x")).collect();
        a.send(&frames).await;
        a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    }
    // Same id after the first call completed: still a reuse.
    let (_server, addr) = serve_router(echo()).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"x")]).await;
    a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
    a.send(&[request(1, 1, b"again")]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
}

/// B2: a zero grant is PROTOCOL_VIOLATION, on the connection and on a
/// stream (§3.4: a CREDIT's `arg` is never 0). Windows cannot go negative in
/// gatewire: limits are fixed by the handshake, with no later change to
/// race with. What remains of the entry is that the server's sender pauses
/// at an empty window: with a 1 KiB stream window the data the server sends
/// never exceeds the credit granted (each grant of 1 KiB is sent only once
/// the window is used up), until all 10 × 600 bytes have come.
#[tokio::test]
async fn b2_zero_grant_and_paused_sender() {
    let router =
        echo().stream(2, |_ctx, _m, _rx, _tx| std::future::pending()).stream(4, |_ctx, _m, _rx, mut tx| async move {
            for i in 0..10u8 {
                tx.send(Message::raw(vec![i; 600])).await.map_err(Status::from)?;
            }
            Ok(())
        });
    let (_server, addr) = serve_router(router).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send_raw(&raw_header(0, FrameType::CREDIT.0, 0, 0, 0, 0)).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[stream_open(1, 2, Flags::NONE, b"")]).await;
    a.send_raw(&raw_header(0, FrameType::CREDIT.0, 0, 0, 1, 0)).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;

    let mut a = Attacker::handshake_with(&addr, hello_with(|c| c.limits.initial_stream_credit = 1024)).await;
    a.send(&[stream_open(1, 4, Flags::END, b"")]).await;
    let (mut received, mut granted, mut grants) = (0u32, 1024u32, 0);
    loop {
        let f = a
            .expect_frame("data on stream 1", |f| {
                f.header.id == 1 && matches!(f.header.ty, FrameType::STREAM_DATA | FrameType::CONTINUATION)
            })
            .await;
        received += f.payload.len() as u32;
        assert!(received <= granted, "{received} bytes sent against {granted} of credit");
        if f.header.flags.contains(Flags::END) {
            break;
        }
        // The reference sender cuts no frame below 256 bytes: below that the
        // window is spent.
        if granted - received < 256 {
            a.send(&[credit(1, 1024)]).await;
            granted += 1024;
            grants += 1;
        }
    }
    assert_eq!(received, 6000);
    assert!(grants >= 5, "{grants} grants");
}

/// B4: each CREDIT costs 1 from a budget of 100 (`credit_frames_per_data`
/// × 10), refilled by 10 per message frame the server sends: 150 one-byte
/// grants on a stream, or on the connection, with nothing sent back, are
/// GOAWAY(EXCESSIVE_LOAD). Counter-test: one grant per STREAM_DATA received
/// from an echo stream, 300 times, stays within the budget. (The budget
/// stores at most 100, so 300 grants sent after 300 messages that came in
/// one burst would not: grants are meant to be coalesced, §6.5.)
#[tokio::test]
async fn b4_credit_grant_flood() {
    let router = echo().stream(2, |_ctx, _m, _rx, _tx| std::future::pending()).stream(
        4,
        |_ctx, _m, mut rx, mut tx| async move {
            while let Some(m) = rx.next().await {
                tx.send(m.map_err(Status::from)?).await.map_err(Status::from)?;
            }
            Ok(())
        },
    );
    let (_server, addr) = serve_router(router).await;

    let mut a = Attacker::handshake(&addr).await;
    let mut frames = vec![stream_open(1, 2, Flags::NONE, b"")];
    frames.extend((0..150).map(|_| credit(1, 1)));
    a.send(&frames).await;
    a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&(0..150).map(|_| credit(0, 1)).collect::<Vec<_>>()).await;
    a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[stream_open(1, 4, Flags::NONE, b"")]).await;
    for i in 0..300u32 {
        a.send(&[frame(FrameType::STREAM_DATA, Flags::NONE, 1, 0, &i.to_le_bytes())]).await;
        let f = a.expect_frame("the echo", is(FrameType::STREAM_DATA, 1)).await;
        assert_eq!(f.payload[..], i.to_le_bytes());
        a.send(&[credit(1, 4)]).await;
    }
    a.assert_alive(1).await;
}

/// B11: the server never opens an id above its `max_local_id` (6 here): its
/// calls to the peer use ids 2, 4 and 6, and the next one fails locally as
/// retryable (UNAVAILABLE) with nothing sent, instead of wrapping; the
/// connection keeps serving the peer. (Ids from the peer at the top: A7.)
#[tokio::test]
async fn b11_id_space_exhaustion() {
    let router = echo().unary(9, |ctx, _m: Message| async move {
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            outcomes.push(match ctx.connection().call(7, Message::raw(&b"q"[..])).await {
                Ok(_) => "ok".to_owned(),
                Err(e) if e.is_retryable() => format!("retryable {}", e.code()),
                Err(e) => format!("failed {e}"),
            });
        }
        Ok(Message::raw(outcomes.join(",")))
    });
    let mut limits = Limits::default();
    limits.max_local_id = 6;
    let (_server, addr) = serve_tcp(Builder::new().router(router).limits(limits)).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 9, b"")]).await;
    let mut ids = Vec::new();
    let answer = loop {
        let f = a.next().await.expect("the server answers");
        match f.header.ty {
            FrameType::REQUEST => {
                ids.push(f.header.id);
                a.send(&[response(f.header.id, b"r")]).await;
            }
            FrameType::RESPONSE if f.header.id == 1 => break f,
            FrameType::CREDIT | FrameType::PING => {}
            other => panic!("unexpected {other:?}: {f:?}"),
        }
    };
    assert_eq!(ids, [2, 4, 6]);
    assert_eq!(&answer.payload[..], format!("ok,ok,ok,retryable {}", ErrorCode::UNAVAILABLE).as_bytes());
    a.send(&[request(3, 1, b"still served")]).await;
    a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 3)).await;
}

/// B12: half-closes in each order. (a) The peer's END on STREAM_OPEN closes
/// only its half: the handler's 3 messages and its END still arrive. (b)
/// STREAM_DATA after the peer's END, while the handler runs, is the stream
/// error STREAM_CLOSED and the connection stays up. (c) A TCP
/// shutdown(Write) with the peer's call in flight is a half-close: the call
/// is still answered, a fragmented REQUEST left incomplete is dropped
/// without a handler, and the server then closes without an error. (d) A
/// shutdown(Write) while the server's own call to the peer is pending loses
/// the connection at once: that call fails as closed, unanswered.
#[tokio::test]
async fn b12_half_close_in_every_order() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let g = gate.clone();
    let router = calls_back(tx)
        .unary(3, move |ctx, m: Message| {
            let (g, started_tx) = (g.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(ctx.id());
                g.acquire().await.expect("open").forget();
                Ok(m)
            }
        })
        .stream(2, |_ctx, _m, _rx, mut tx| async move {
            for i in 0..3u8 {
                tx.send(Message::raw(vec![b'm', b'0' + i])).await.map_err(Status::from)?;
            }
            Ok(())
        })
        .stream(4, |_ctx, _m, _rx, _tx| std::future::pending());
    let (_server, addr) = serve_router(router).await;

    // (a) and (b).
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[stream_open(1, 2, Flags::END, b"")]).await;
    let mut got = Vec::new();
    loop {
        let f = a.expect_frame("STREAM_DATA", is(FrameType::STREAM_DATA, 1)).await;
        if f.header.flags.contains(Flags::END) {
            assert!(f.payload.is_empty());
            break;
        }
        got.push(f.payload.to_vec());
    }
    assert_eq!(got, [b"m0", b"m1", b"m2"]);
    a.send(&[stream_open(3, 4, Flags::END, b""), frame(FrameType::STREAM_DATA, Flags::NONE, 3, 0, b"late")]).await;
    let e = a.expect_frame("ERROR on stream 3", is(FrameType::ERROR, 3)).await;
    assert_eq!(code(&e), ErrorCode::STREAM_CLOSED);
    a.assert_alive(1).await;

    // (c) The peer's call in flight, then TCP shutdown(Write).
    let mut a = Attacker::handshake(&addr).await;
    let mut partial = request(3, 3, b"first fragment");
    partial.header.flags = Flags::MORE;
    a.send(&[request(1, 3, b"answer me")]).await;
    assert_eq!(timeout(LIMIT, started.recv()).await.unwrap(), Some(1));
    a.send(&[partial]).await;
    a.sock.shutdown().await.expect("shutdown(Write)");
    gate.add_permits(1);
    let e = a.ending().await;
    assert!(matches!(e.goaway, None | Some(ErrorCode::NO_ERROR)), "{e:?}");
    let answers: Vec<_> = e.before.iter().filter(|f| f.header.ty != FrameType::CREDIT).collect();
    assert!(
        answers.len() == 1 && answers[0].header.ty == FrameType::RESPONSE && answers[0].header.id == 1,
        "{answers:?}"
    );
    assert!(started.try_recv().is_err(), "no handler ran for the incomplete REQUEST");

    // (d) The server's own call pending, then TCP shutdown(Write).
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 9, b"call me")]).await;
    expect_call(&mut a).await;
    a.sock.shutdown().await.expect("shutdown(Write)");
    let r = outcome(&mut rx).await;
    assert!(r.as_ref().is_err_and(gatewire::Error::is_closed), "{r:?}");
    let e = a.ending().await;
    assert!(e.before.iter().all(|f| f.header.ty != FrameType::RESPONSE), "{e:?}");
}

// ----- C. RPC correlation -------------------------------------------------------

/// C1: a RESPONSE (and an ERROR) naming a server-parity id the server never
/// issued is GOAWAY(PROTOCOL_VIOLATION); one with the wrong parity too.
#[tokio::test]
async fn c1_response_to_unknown_id() {
    let (_server, addr) = serve_router(echo()).await;
    for f in [
        frame(FrameType::RESPONSE, Flags::NONE, 2, 0, b"who asked?"),
        frame(FrameType::ERROR, Flags::NONE, 4, ErrorCode::INTERNAL.0.into(), b""),
        frame(FrameType::RESPONSE, Flags::NONE, 1, 0, b"wrong parity"),
    ] {
        let mut a = Attacker::handshake(&addr).await;
        a.send(&[f]).await;
        a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    }
}

/// C2: the first response wins. The server calls the peer (id 2), which
/// answers twice: the handler sees the first answer; later duplicates of an
/// answered call are strays, dropped and charged, so 1,100 of them exhaust
/// the stray budget (1024): GOAWAY(EXCESSIVE_LOAD). Answers that come after
/// the caller's own deadline passed are dropped free (the server ended that
/// call itself): 1,100 of them leave the connection up, with no call left
/// in its table.
#[tokio::test]
async fn c2_duplicate_and_late_responses() {
    let router = Router::new().unary(9, |ctx, _m: Message| async move {
        // The second connection's call (id 3) has a deadline.
        let limit = (ctx.id() == 3).then_some(Duration::from_millis(100));
        match ctx.connection().call_with(7, Message::raw(&b"q"[..]), limit).await {
            Ok(reply) => Ok(reply),
            Err(e) if e.is_timeout() => Ok(Message::raw(&b"timed out"[..])),
            Err(e) => Err(Status::from(e)),
        }
    });
    let (server, addr) = serve_router(router).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 9, b"")]).await;
    let call = expect_call(&mut a).await;
    a.send(&[response(call.header.id, b"first"), response(call.header.id, b"second")]).await;
    let r = a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
    assert_eq!(&r.payload[..], b"first");
    a.send(&vec![response(call.header.id, b"again"); 1100]).await;
    a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;

    // Request id 3: the handler calls with a 100 ms deadline.
    let mut a = Attacker::handshake(&addr).await;
    let conn = server_side(&server, &a).await;
    a.send(&[request(3, 9, b"")]).await;
    let call = expect_call(&mut a).await;
    let r = a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 3)).await;
    assert_eq!(&r.payload[..], b"timed out");
    a.send(&vec![response(call.header.id, b"late"); 1100]).await;
    a.assert_alive(1).await;
    assert_eq!(conn.stats().calls_out, 0);
}

/// C3: nothing leaks when calls time out or are cancelled. Three rounds of
/// 100 REQUESTs with a 30 ms deadline to a handler that never finishes: the
/// deadline cancels every handler (each future is dropped), the server's
/// table of peer calls returns to 0 after each round, and nothing is sent
/// for them. In the other direction, 300 calls from the server with a 50 ms
/// deadline that the peer never answers all fail with DEADLINE_EXCEEDED, no
/// CANCEL is sent for them (§6.8), and the server's table of its own calls
/// returns to 0; 50 calls dropped by the server are each CANCELled once.
#[tokio::test]
async fn c3_timeout_and_cancel_do_not_leak() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let drop_now = Arc::new(Semaphore::new(0));
    let dn = drop_now.clone();
    let router = echo()
        .unary(2, move |_ctx, _m: Message| {
            let guard = Dropped(d.clone());
            async move {
                let _guard = guard;
                std::future::pending().await
            }
        })
        .unary(9, |ctx, _m: Message| async move {
            let calls = (0..300)
                .map(|_| ctx.connection().call_with(7, Message::raw(&b"q"[..]), Some(Duration::from_millis(50))));
            let results = futures_util::future::join_all(calls).await;
            let late = results.iter().filter(|r| r.as_ref().is_err_and(gatewire::Error::is_timeout)).count();
            Ok(Message::raw(late.to_string()))
        })
        .unary(10, move |ctx, _m: Message| {
            let dn = dn.clone();
            async move {
                let calls: Vec<_> =
                    (0..50).map(|_| Box::pin(ctx.connection().call(7, Message::raw(&b"q"[..])))).collect();
                let all = futures_util::future::join_all(calls);
                tokio::select! {
                    _ = all => Err(Status::internal("answered")),
                    p = dn.acquire() => {
                        p.expect("open").forget();
                        Ok(Message::raw(&b"dropped"[..]))
                    }
                }
            }
        });
    let (server, addr) = serve_router(router).await;
    let mut a = Attacker::handshake(&addr).await;
    let conn = server_side(&server, &a).await;

    let mut id = 1;
    for round in 1..=3 {
        let batch: Vec<_> = (0..100)
            .map(|_| {
                id += 2;
                with_deadline(request(id, 2, b"x"), 30)
            })
            .collect();
        a.send(&batch).await;
        until("every handler was dropped", || dropped.load(Ordering::SeqCst) == 100 * round).await;
        until("no peer call is left", || conn.stats().calls_in == 0).await;
        // Anything queued for those calls would leave before this answer.
        id += 2;
        a.send(&[request(id, 1, b"sync")]).await;
        loop {
            let f = a.next().await.expect("the server answers");
            match f.header.ty {
                FrameType::RESPONSE if f.header.id == id => break,
                FrameType::RESPONSE | FrameType::ERROR => panic!("an answer for an expired call: {f:?}"),
                _ => {}
            }
        }
    }

    id += 2;
    a.send(&[request(id, 9, b"")]).await;
    let (mut requests, mut cancels) = (0, 0);
    let answer = loop {
        let f = a.next().await.expect("the server answers");
        match f.header.ty {
            FrameType::REQUEST => requests += 1,
            FrameType::CANCEL => cancels += 1,
            FrameType::RESPONSE if f.header.id == id => break f,
            FrameType::RESPONSE | FrameType::ERROR => panic!("an answer for an expired call: {f:?}"),
            _ => {}
        }
    };
    assert_eq!((&answer.payload[..], requests, cancels), (&b"300"[..], 300, 0));
    assert_eq!(conn.stats().calls_out, 0);

    id += 2;
    a.send(&[request(id, 10, b"")]).await;
    let mut called = BTreeSet::new();
    while called.len() < 50 {
        called.insert(expect_call(&mut a).await.header.id);
    }
    drop_now.add_permits(1);
    let mut cancelled = Vec::new();
    loop {
        let f = a.next().await.expect("the server answers");
        match f.header.ty {
            FrameType::CANCEL => cancelled.push(f.header.id),
            FrameType::RESPONSE if f.header.id == id => {}
            _ => {}
        }
        if cancelled.len() == 50 {
            break;
        }
    }
    cancelled.sort_unstable();
    assert_eq!(cancelled, called.into_iter().collect::<Vec<_>>(), "one CANCEL per dropped call");
    until("no own call is left", || conn.stats().calls_out == 0).await;
}

/// C4: a CANCEL racing the answer has exactly one outcome. The peer sends
/// 400 REQUESTs to an echo, every other one followed by its CANCEL as the
/// server may be answering it:
/// each id gets at most one RESPONSE or ERROR (never both, never two), the
/// uncancelled ones all get their RESPONSE, and the connection survives
/// with no call left. Conversely the server calls the peer 300 times, giving
/// up on each after 0 to 400 µs while the peer answers at once: each call
/// has exactly one outcome, the connection survives (answers crossing a
/// CANCEL are dropped free) and no call is left.
#[tokio::test]
async fn c4_cancel_racing_a_response() {
    let router = echo().unary(9, |ctx, _m: Message| async move {
        let (mut answered, mut gave_up) = (0, 0);
        for i in 0..300u64 {
            let call = ctx.connection().call(7, Message::raw(i.to_le_bytes().to_vec()));
            match timeout(Duration::from_micros(100 * (i % 5)), call).await {
                Ok(Ok(r)) => {
                    assert_eq!(&r.body[..], &i.to_le_bytes(), "the answer to this call, not another");
                    answered += 1;
                }
                Ok(Err(e)) => return Err(Status::from(e)),
                Err(_) => gave_up += 1,
            }
        }
        Ok(Message::raw(format!("{answered}+{gave_up}")))
    });
    let (server, addr) = serve_router(router).await;
    let mut a = Attacker::handshake(&addr).await;
    let conn = server_side(&server, &a).await;

    // Each round: an uncancelled REQUEST and one cancelled right after the
    // server had a chance to read it (and maybe answer it), each round read
    // by the server on its own, so early cancels never pile up past their
    // budget.
    let mut written = conn.stats().bytes_received;
    for i in 0..200u32 {
        let (kept, dropped) = (4 * i + 1, 4 * i + 3);
        let first = gatewire_hostile::encode(&[
            request(kept, 1, &kept.to_le_bytes()),
            request(dropped, 1, &dropped.to_le_bytes()),
        ]);
        a.send_raw(&first).await;
        tokio::task::yield_now().await;
        a.send(&[cancel(dropped)]).await;
        written += first.len() as u64 + 16;
        until("the server read the round", || conn.stats().bytes_received >= written).await;
    }
    a.send(&[request(801, 1, b"last")]).await;
    let mut outcomes: HashMap<u32, usize> = HashMap::new();
    loop {
        let f = a.next().await.expect("answers");
        if matches!(f.header.ty, FrameType::RESPONSE | FrameType::ERROR) {
            *outcomes.entry(f.header.id).or_default() += 1;
            if f.header.ty == FrameType::RESPONSE {
                let id = f.header.id.to_le_bytes();
                assert_eq!(&f.payload[..], if f.header.id == 801 { &b"last"[..] } else { &id[..] });
            }
            if f.header.id == 801 {
                break;
            }
        }
    }
    assert!(outcomes.values().all(|&n| n == 1), "{outcomes:?}");
    assert!((0..200u32).all(|i| outcomes.contains_key(&(4 * i + 1))), "every uncancelled call is answered");
    until("no peer call is left", || conn.stats().calls_in == 0).await;

    a.send(&[request(803, 9, b"")]).await;
    let answer = loop {
        let f = a.next().await.expect("the server answers");
        match f.header.ty {
            FrameType::REQUEST => a.send(&[response(f.header.id, &f.payload)]).await,
            _ if f.header.id == 803 => break f,
            FrameType::GOAWAY => panic!("GOAWAY({:?})", code(&f)),
            _ => {}
        }
    };
    assert_eq!(answer.header.ty, FrameType::RESPONSE, "{answer:?}");
    let text = String::from_utf8(answer.payload.to_vec()).unwrap();
    let (answered, gave_up) = text.split_once('+').expect("counts");
    let total: u32 = answered.parse::<u32>().unwrap() + gave_up.parse::<u32>().unwrap();
    assert_eq!(total, 300, "{text}");
    a.assert_alive(1).await;
    until("no own call is left", || conn.stats().calls_out == 0).await;
}

/// Blocks the dropping thread (outside the runtime's scheduling, with
/// `block_in_place`) until `release` says so: a handler that takes its time
/// to unwind after a cancel.
struct SlowUnwind {
    unwinding: mpsc::UnboundedSender<()>,
    release: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl Drop for SlowUnwind {
    fn drop(&mut self) {
        let _ = self.unwinding.send(());
        let release = self.release.clone();
        tokio::task::block_in_place(|| {
            let _ = release.lock().unwrap().recv_timeout(LIMIT);
        });
    }
}

/// C5: a cancelled handler keeps its concurrency slot until it has really
/// finished unwinding. With `max_in_flight` 1, the peer's call is cancelled
/// while its handler takes its time to unwind (its future's drop blocks):
/// meanwhile a new REQUEST is REFUSED and no second handler starts; once
/// the unwinding ends the next REQUEST is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_cancelled_handler_holds_its_slot() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (unwinding_tx, mut unwinding) = mpsc::unbounded_channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let release = Arc::new(std::sync::Mutex::new(release_rx));
    let router = Router::new().unary(1, move |ctx, _m: Message| {
        let _ = started_tx.send(ctx.id());
        let guard = SlowUnwind { unwinding: unwinding_tx.clone(), release: release.clone() };
        async move {
            let _guard = guard;
            std::future::pending().await
        }
    });
    let (server, addr) = serve_tcp(Builder::new().router(router).max_in_flight(1)).await;
    let mut a = Attacker::handshake(&addr).await;
    let conn = server_side(&server, &a).await;
    a.send(&[request(1, 1, b"")]).await;
    assert_eq!(timeout(LIMIT, started.recv()).await.unwrap(), Some(1));
    a.send(&[cancel(1)]).await;
    timeout(LIMIT, unwinding.recv()).await.expect("the cancel reaches the handler");
    a.send(&[request(3, 1, b"")]).await;
    tokio::select! {
        e = a.expect_frame("ERROR on id 3", is(FrameType::ERROR, 3)) => assert_eq!(code(&e), ErrorCode::REFUSED),
        id = started.recv() => panic!("handler {id:?} started while the cancelled one unwinds"),
    }
    release_tx.send(()).unwrap();
    until("the slot is released once the handler has unwound", || conn.stats().calls_in == 0).await;
    a.send(&[request(5, 1, b"")]).await;
    assert_eq!(timeout(LIMIT, started.recv()).await.unwrap(), Some(5), "admitted once the slot is free");
    release_tx.send(()).unwrap();
    a.send(&[cancel(5)]).await;
    timeout(LIMIT, unwinding.recv()).await.expect("the second handler unwinds too");
}

/// C6: ids carry their direction, so calls in both directions never cross.
/// The peer's call 1 makes the server call the peer (id 2) while call 1 is
/// pending at the server; the peer's answer on 2 completes the server's call
/// and the peer's own call then gets its answer on 1; a REQUEST on 3 in the
/// meantime is answered on 3. An opening frame with the server's parity
/// while the server's call 2 is pending (a REQUEST on 2), or an answer on
/// the peer's own pending id (RESPONSE on 1), is PROTOCOL_VIOLATION, and the
/// server's pending call fails as closed: it is never completed by it.
#[tokio::test]
async fn c6_colliding_id_spaces() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_server, addr) = serve_router(calls_back(tx)).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 9, b"question")]).await;
    let call = expect_call(&mut a).await;
    assert_eq!((call.header.id, call.header.arg, &call.payload[..]), (2, 7, &b"question"[..]));
    a.send(&[request(3, 1, b"meanwhile")]).await;
    let r = a.expect_frame("RESPONSE 3", is(FrameType::RESPONSE, 3)).await;
    assert_eq!(&r.payload[..], b"meanwhile");
    a.send(&[response(2, b"answer")]).await;
    let r = a.expect_frame("RESPONSE 1", is(FrameType::RESPONSE, 1)).await;
    assert_eq!(&r.payload[..], b"answer");
    let reply = outcome(&mut rx).await.expect("the server's call succeeds");
    assert_eq!(&reply.body[..], b"answer");

    for wrong in [request(2, 1, b"collide"), response(1, b"wrong way")] {
        let mut a = Attacker::handshake(&addr).await;
        a.send(&[request(1, 9, b"question")]).await;
        let call = expect_call(&mut a).await;
        assert_eq!(call.header.id, 2);
        a.send(&[wrong]).await;
        a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
        let r = outcome(&mut rx).await;
        assert!(r.as_ref().is_err_and(gatewire::Error::is_closed), "{r:?}");
    }
}

// ----- D. Resource exhaustion and time -----------------------------------------

/// D3: PINGs sent back to back (under `min_ping_interval`, 5 s) are strikes;
/// the strike after `max_ping_strikes` (2) is GOAWAY(EXCESSIVE_LOAD).
#[tokio::test]
async fn d3_ping_strikes_goaway() {
    let (_server, addr) = serve_router(echo()).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&(0..10).map(ping).collect::<Vec<_>>()).await;
    let before = a.expect_goaway(ErrorCode::EXCESSIVE_LOAD).await;
    let pongs = before.iter().filter(|f| f.header.ty == FrameType::PONG).count();
    // Queued PONGs may be discarded when the connection errors (§8.4).
    assert!(pongs <= 3, "{pongs} PONGs before the GOAWAY");
}

/// D4: a peer that goes silent is detected by keepalive (200 ms + 200 ms
/// here) and its call in flight is cancelled (the handler's future dropped).
/// A peer answering the keepalive PINGs stays connected; once it stops, the
/// server's PING comes at least 200 ms after the last frame it received and
/// GOAWAY(TIMEOUT) at least 400 ms after it, well within 2 s.
#[tokio::test]
async fn d4_silent_peer_detected_by_keepalive() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let router = Router::new().unary(1, move |_ctx, _m: Message| {
        let guard = Dropped(d.clone());
        async move {
            let _guard = guard;
            std::future::pending().await
        }
    });
    let interval = Duration::from_millis(200);
    let builder = Builder::new().router(router).keepalive(Some(interval), interval);
    let (_server, addr) = serve_tcp(builder).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"hold")]).await;
    let mut last = Instant::now();
    let mut answered = 0;
    let ping = loop {
        let f = a.expect_frame("a keepalive PING", |f| f.header.ty == FrameType::PING).await;
        assert!(last.elapsed() >= interval, "PING {:?} after the last frame", last.elapsed());
        if answered == 2 {
            break last.elapsed();
        }
        a.send(&[frame(FrameType::PONG, Flags::NONE, 0, 0, &f.payload)]).await;
        last = Instant::now();
        answered += 1;
    };
    a.expect_goaway(ErrorCode::TIMEOUT).await;
    let detected = last.elapsed();
    println!("D4: PING {ping:?}, GOAWAY(TIMEOUT) {detected:?} after the last frame");
    assert!(detected >= 2 * interval && detected < Duration::from_secs(2), "{detected:?}");
    until("the call in flight is cancelled", || dropped.load(Ordering::SeqCst) == 1).await;
}

/// D5: connection and handshake floods are capped. With `max_connections`
/// 4, four peers that connect and stay silent hold every slot: a fifth
/// peer's HELLO is not answered (nothing in 300 ms) until one of them
/// leaves, then it is served at once. On WebSocket, 100 silent TCP
/// connections (the cap on upgrades in progress) hold back the upgrade of
/// the 101st until one of them goes away. (The accept loop surviving
/// EMFILE: `d5_emfile.rs`.)
#[tokio::test]
async fn d5_connection_and_handshake_flood() {
    let (_server, addr) = serve_tcp(Builder::new().router(echo()).max_connections(4)).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(Attacker::connect(&addr).await);
    }
    let mut fifth = Attacker::connect(&addr).await;
    fifth.send(&[hello_frame()]).await;
    assert!(fifth.next_within(Duration::from_millis(300)).await.is_err(), "a fifth connection was served");
    drop(silent.remove(0));
    let ack = fifth.next().await.expect("HELLO_ACK once a slot is free");
    assert_eq!(ack.header.ty, FrameType::HELLO_ACK);
    fifth.send(&[request(1, 1, b"served")]).await;
    fifth.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;

    let (_ws_server, url) = serve_url(Builder::new().router(echo()), "ws://127.0.0.1:0/gw").await;
    let addr = url.trim_start_matches("ws://").trim_end_matches("/gw").to_owned();
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(Attacker::connect(&addr).await);
    }
    let mut upgrade = tokio::spawn({
        let url = url.clone();
        async move { WsAttacker::connect(&url).await }
    });
    assert!(timeout(Duration::from_millis(300), &mut upgrade).await.is_err(), "the 101st upgrade went through");
    drop(silent.remove(0));
    let mut ws = timeout(LIMIT, upgrade).await.expect("upgraded once a slot is free").unwrap();
    ws.send(&[hello_frame()]).await;
    let ack = ws.next().await.expect("HELLO_ACK");
    assert_eq!(ack.header.ty, FrameType::HELLO_ACK);
}

// ----- E. Compression ------------------------------------------------------------

/// E3: COMPRESSED on a REQUEST when no compression was negotiated, and on a
/// control frame, are both PROTOCOL_VIOLATION.
#[tokio::test]
async fn e3_compressed_without_negotiation() {
    let (_server, addr) = serve_router(echo()).await;
    let mut a = Attacker::handshake(&addr).await;
    let mut f = request(1, 1, &[0u8; 16]);
    f.header.flags = Flags::COMPRESSED;
    a.send(&[f]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;

    let mut a = Attacker::handshake(&addr).await;
    a.send_raw(&raw_header(0, FrameType::CREDIT.0, Flags::COMPRESSED.0, 0, 0, 1)).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
}

/// E2: no compression oracle. A client that offers zstd and sets a 1-byte
/// compression threshold still sends its HELLO uncompressed, with the
/// token in the clear inside it (control frames never carry COMPRESSED, so
/// `auth` is never compressed). A server with a 1-byte threshold compresses
/// each message on its own: two identical secret-bearing answers compress
/// to identical bytes (no context or dictionary shared between messages;
/// the frame header names no dictionary). With a peer that did not offer
/// zstd, nothing is compressed.
#[tokio::test]
async fn e2_no_compression_oracle() {
    const TOKEN: &str = "e2-secret-token-0123456789abcdef";
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    let client = tokio::spawn(async move {
        let _ = Builder::new().compression(Some(1)).token(TOKEN).connect(&format!("tcp://127.0.0.1:{port}")).await;
    });
    let (sock, _) = timeout(LIMIT, raw.accept()).await.unwrap().unwrap();
    let mut peer = Attacker::over(sock);
    let hello = peer.next().await.expect("a HELLO");
    assert_eq!((hello.header.ty, hello.header.flags, hello.header.codec), (FrameType::HELLO, Flags::NONE, Codec::RAW));
    let decoded = Hello::decode(&hello.payload).expect("a valid Hello");
    assert_eq!(decoded.compression, [1]);
    assert_eq!(decoded.auth.as_deref(), Some(TOKEN.as_bytes()));
    find(&hello.payload, TOKEN.as_bytes());
    drop(peer);
    let _ = timeout(LIMIT, client).await;

    let (_server, addr) = serve_tcp(Builder::new().router(echo()).compression(Some(1))).await;
    let secret = format!("cookie={TOKEN}; ").repeat(20);
    let mut a = Attacker::handshake_with(&addr, hello_with(|c| c.compression = true)).await;
    a.send(&[request(1, 1, secret.as_bytes()), request(3, 1, secret.as_bytes())]).await;
    let first = a.expect_frame("RESPONSE 1", is(FrameType::RESPONSE, 1)).await;
    let second = a.expect_frame("RESPONSE 3", is(FrameType::RESPONSE, 3)).await;
    for r in [&first, &second] {
        assert!(r.header.flags.contains(Flags::COMPRESSED), "{r:?}");
        assert_eq!(r.payload[..4], (secret.len() as u32).to_le_bytes(), "the declared size");
        assert_eq!(r.payload[4..8], [0x28, 0xB5, 0x2F, 0xFD], "one zstd frame");
        assert_eq!(r.payload[8] & 0x03, 0, "no Dictionary_ID");
    }
    assert_eq!(first.payload, second.payload, "each message compressed on its own");

    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, secret.as_bytes())]).await;
    let r = a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
    assert_eq!((r.header.flags, &r.payload[..]), (Flags::NONE, secret.as_bytes()));
}

// ----- F. Schema payloads -----------------------------------------------------------

/// F1: HELLO payloads that are not a valid `Hello` table (garbage, a
/// truncated table, a root offset pointing at itself, a huge vector count)
/// end the connection with PROTOCOL_VIOLATION (a GOAWAY or a refusing
/// HELLO_ACK) and never connect. A root offset of 0 happens to verify as an
/// empty table (no required field is missing, §4.7), so it is refused as
/// INCOMPATIBLE (version 0).
#[tokio::test]
async fn f1_malformed_control_table() {
    let (_server, addr) = serve_router(echo()).await;
    let good = hello_frame().payload;
    let mut self_ref = good.to_vec();
    self_ref[..4].copy_from_slice(&0u32.to_le_bytes());
    let mut huge = vec![0u8; 64];
    huge[..4].copy_from_slice(&8u32.to_le_bytes());
    huge[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    for payload in [vec![0xFFu8; 64], good[..good.len() / 2].to_vec(), self_ref, huge, vec![]] {
        let mut a = Attacker::connect(&addr).await;
        a.send(&[frame(FrameType::HELLO, Flags::NONE, 0, 0, &payload)]).await;
        let e = a.ending().await;
        let refused_ack = e.before.iter().any(|f| {
            f.header.ty == FrameType::HELLO_ACK
                && gatewire_proto::control::HelloAck::decode(&f.payload)
                    .is_ok_and(|ack| matches!(ack.error_code, ErrorCode::PROTOCOL_VIOLATION | ErrorCode::INCOMPATIBLE))
        });
        assert!(
            e.goaway == Some(ErrorCode::PROTOCOL_VIOLATION) || refused_ack,
            "payload {:02x?}…: {e:?}",
            &payload[..payload.len().min(8)]
        );
        assert!(e.after.is_empty());
    }
}

/// F2: control tables with an out-of-bounds or misaligned offset, a string
/// without its NUL terminator, or a string that is not UTF-8 are
/// PROTOCOL_VIOLATION: in a HELLO (never accepted), in a GOAWAY's `message`,
/// and in an ERROR's `message` (the server's call that ERROR answers fails
/// as closed). The schema has no unions and no enums; its one open
/// enumeration, `Method.kind`, keeps an unknown value as it is: a client
/// that uses a method as kind 9 where the server serves it as unary is
/// refused INCOMPATIBLE for an "unknown kind", never read as a known kind.
#[tokio::test]
async fn f2_bad_offsets_strings_and_kinds() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let method = |kind| MethodDesc { name: "m".into(), id: 5, kind, request: 11, response: 12 };
    let offered =
        Service { name: "hostile.S".into(), fingerprint: 1, methods: vec![method(MethodKind::UNARY)], shapes: vec![] };
    let (_server, addr) = serve_tcp(Builder::new().router(calls_back(tx)).offer(offered)).await;

    let good = hello_with(|c| c.agent = Some("AGENT-STRING".into())).payload.to_vec();
    let at = find(&good, b"AGENT-STRING");
    let root = u32::from_le_bytes(good[..4].try_into().unwrap());
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut p = good.clone();
    p[at + 12] = b'X';
    cases.push(("string without its NUL", p));
    let mut p = good.clone();
    p[at] = 0xFF;
    cases.push(("string not UTF-8", p));
    let mut p = good.clone();
    p[..4].copy_from_slice(&(root + 1).to_le_bytes());
    cases.push(("misaligned root table", p));
    let mut p = good.clone();
    p[..4].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    cases.push(("root offset out of bounds", p));
    let mut p = good.clone();
    p[root as usize..root as usize + 4].copy_from_slice(&0x7FFF_0000i32.to_le_bytes());
    cases.push(("vtable out of bounds", p));
    for (what, payload) in cases {
        let mut a = Attacker::connect(&addr).await;
        a.send(&[frame(FrameType::HELLO, Flags::NONE, 0, 0, &payload)]).await;
        let e = a.ending().await;
        assert_eq!(e.goaway, Some(ErrorCode::PROTOCOL_VIOLATION), "{what}: {e:?}");
        assert!(e.before.iter().all(|f| f.header.ty != FrameType::HELLO_ACK), "{what}: {e:?}");
    }

    let mut p = GoAwayInfo { message: Some("bye-bye".into()) }.encode();
    let at = find(&p, b"bye-bye");
    p[at] = 0xC0;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[frame(FrameType::GOAWAY, Flags::NONE, 0, 0, &p)]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;

    let mut p = ErrorInfo { message: Some("error-text".into()), details: None }.encode();
    let at = find(&p, b"error-text");
    p[at + 10] = b'!';
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 9, b"call me")]).await;
    let call = expect_call(&mut a).await;
    a.send(&[frame(FrameType::ERROR, Flags::NONE, call.header.id, ErrorCode::INTERNAL.0.into(), &p)]).await;
    a.expect_goaway(ErrorCode::PROTOCOL_VIOLATION).await;
    let r = outcome(&mut rx).await;
    assert!(r.as_ref().is_err_and(gatewire::Error::is_closed), "{r:?}");

    let used =
        Service { name: "hostile.S".into(), fingerprint: 2, methods: vec![method(MethodKind(9))], shapes: vec![] };
    let mut a = Attacker::connect(&addr).await;
    a.send(&[hello_with(|c| c.uses = vec![used])]).await;
    let ack = a.expect_frame("HELLO_ACK", |f| f.header.ty == FrameType::HELLO_ACK).await;
    let ack = HelloAck::decode(&ack.payload).expect("a valid HelloAck");
    assert_eq!(ack.error_code, ErrorCode::INCOMPATIBLE, "{ack:?}");
    assert!(ack.message.as_deref().is_some_and(|m| m.contains("unknown kind")), "{ack:?}");
}

// ----- J. Lifecycle ---------------------------------------------------------------------

/// J2: a second GOAWAY whose last id is higher than the first is
/// PROTOCOL_VIOLATION (§8.4, receiver rule 1).
#[tokio::test]
async fn j2_goaway_last_id_increase_violation() {
    // A call that never finishes keeps the connection open after the first
    // (graceful) GOAWAY.
    let calls = Arc::new(AtomicUsize::new(0));
    let (_server, addr) = serve_router(stuck(calls.clone())).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"hold")]).await;
    a.send(&[frame(FrameType::GOAWAY, Flags::NONE, 10, 0, b"")]).await;
    a.send(&[frame(FrameType::GOAWAY, Flags::NONE, 20, 0, b"")]).await;
    let e = a.ending().await;
    assert_eq!(e.goaway, Some(ErrorCode::PROTOCOL_VIOLATION), "{e:?}");
}

/// J1: a graceful shutdown racing new calls. The server sends
/// GOAWAY(last = u32::MAX, NO_ERROR) and a PING with bit 63 set; calls the
/// peer opens before answering that PING (5, 7) are still served; once the
/// PONG is in, the final GOAWAY names 7 as the last id, and a call opened
/// after it (9) is dropped unprocessed (no answer, no handler: safe to
/// retry). Every call is answered exactly once or is above the last id; the
/// call in flight (1) completes before the close. With a 300 ms drain and a
/// call that never ends, the server sends GOAWAY(TIMEOUT) after the drain
/// and closes; that handler is cancelled.
#[tokio::test]
async fn j1_graceful_shutdown_races_new_calls() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = handled.clone();
    let router = Router::new()
        .unary(1, move |ctx, m: Message| {
            let (g, started_tx) = (g.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(ctx.id());
                g.acquire().await.expect("open").forget();
                Ok(m)
            }
        })
        .unary(2, move |ctx, m: Message| {
            h.lock().unwrap().push(ctx.id());
            async move { Ok(m) }
        });
    let (server, addr) = serve_router(router).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"slow"), request(3, 2, b"fast")]).await;
    assert_eq!(timeout(LIMIT, started.recv()).await.unwrap(), Some(1));
    let mut answered = vec![a.expect_frame("RESPONSE 3", is(FrameType::RESPONSE, 3)).await.header.id];

    let shutdown = tokio::spawn(server.shutdown());
    let goaway = a.expect_frame("the first GOAWAY", |f| f.header.ty == FrameType::GOAWAY).await;
    assert_eq!((goaway.header.id, code(&goaway)), (u32::MAX, ErrorCode::NO_ERROR));
    let token = a.expect_frame("the shutdown PING", |f| f.header.ty == FrameType::PING).await.payload;
    assert_ne!(token[7] & 0x80, 0, "bit 63 marks the shutdown PING");
    a.send(&[request(5, 2, b"before the PONG"), request(7, 2, b"before the PONG")]).await;
    a.send(&[frame(FrameType::PONG, Flags::NONE, 0, 0, &token)]).await;
    let last = loop {
        let f = a.next().await.expect("the final GOAWAY");
        match f.header.ty {
            FrameType::RESPONSE => answered.push(f.header.id),
            FrameType::GOAWAY => {
                assert_eq!(code(&f), ErrorCode::NO_ERROR);
                break f.header.id;
            }
            _ => {}
        }
    };
    assert_eq!(last, 7);
    a.send(&[request(9, 2, b"after the final GOAWAY")]).await;
    gate.add_permits(1);
    let e = a.ending().await;
    assert_eq!(e.goaway, None, "{e:?}");
    answered.extend(e.before.iter().filter(|f| f.header.ty == FrameType::RESPONSE).map(|f| f.header.id));
    answered.sort_unstable();
    assert_eq!(answered, [1, 3, 5, 7], "each call at or below the last id answered once");
    let mut ran = handled.lock().unwrap().clone();
    ran.sort_unstable();
    assert_eq!(ran, [3, 5, 7], "the call above the last id was not processed");
    timeout(LIMIT, shutdown).await.expect("the shutdown ends").unwrap();

    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let router = Router::new().unary(1, move |_ctx, _m: Message| {
        let guard = Dropped(d.clone());
        async move {
            let _guard = guard;
            std::future::pending().await
        }
    });
    let (server, addr) = serve_tcp(Builder::new().router(router).drain_timeout(Duration::from_millis(300))).await;
    let mut a = Attacker::handshake(&addr).await;
    let conn = server_side(&server, &a).await;
    a.send(&[request(1, 1, b"never ends")]).await;
    until("the call is in flight", || conn.stats().calls_in == 1).await;
    let shutdown = tokio::spawn(server.shutdown());
    let goaway = a.expect_frame("the first GOAWAY", |f| f.header.ty == FrameType::GOAWAY).await;
    assert_eq!((goaway.header.id, code(&goaway)), (u32::MAX, ErrorCode::NO_ERROR));
    let token = a.expect_frame("the shutdown PING", |f| f.header.ty == FrameType::PING).await.payload;
    a.send(&[frame(FrameType::PONG, Flags::NONE, 0, 0, &token)]).await;
    let drain_from = Instant::now();
    let timed_out = loop {
        let f = a.next().await.expect("GOAWAY(TIMEOUT) after the drain");
        if f.header.ty == FrameType::GOAWAY && code(&f) != ErrorCode::NO_ERROR {
            break f;
        }
    };
    assert_eq!(code(&timed_out), ErrorCode::TIMEOUT);
    assert!(drain_from.elapsed() >= Duration::from_millis(300), "{:?}", drain_from.elapsed());
    assert!(a.ending().await.before.is_empty(), "nothing after the error GOAWAY");
    until("the handler is cancelled", || dropped.load(Ordering::SeqCst) == 1).await;
    timeout(LIMIT, shutdown).await.expect("the shutdown ends").unwrap();
}

// ----- H. WebSocket -------------------------------------------------------------------------

/// A WebSocket upgrade request with the `gatewire.v1` subprotocol and,
/// optionally, an Origin.
fn ws_request(url: &str, origin: Option<&str>) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "gatewire.v1".parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    req
}

/// H1: a browser Origin not on the allowlist gets HTTP 403 before the
/// upgrade; a listed Origin upgrades.
#[tokio::test]
async fn h1_ws_origin_refused_403() {
    let server = Builder::new()
        .router(echo())
        .ws_origins(["https://app.example"])
        .serve(&["ws://127.0.0.1:0/gw"])
        .await
        .unwrap();
    let url = server.local_endpoints()[0].to_string();
    match timeout(LIMIT, tokio_tungstenite::connect_async(ws_request(&url, Some("https://evil.example"))))
        .await
        .unwrap()
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected HTTP 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let req = ws_request(&url, Some("https://app.example"));
    let (_ws, resp) = timeout(LIMIT, tokio_tungstenite::connect_async(req)).await.unwrap().expect("listed origin");
    assert_eq!(resp.status(), 101);
}

/// H2: a text WebSocket message is rejected: the server closes the
/// WebSocket (close code 1002/1003/1007) or sends GOAWAY(PROTOCOL_VIOLATION)
/// in a binary message, never a HELLO_ACK.
#[tokio::test]
async fn h2_ws_text_message_rejected() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as Ws;
    let server = Builder::new().router(echo()).serve(&["ws://127.0.0.1:0/gw"]).await.unwrap();
    let url = server.local_endpoints()[0].to_string();
    let (mut ws, _) = timeout(LIMIT, tokio_tungstenite::connect_async(ws_request(&url, None))).await.unwrap().unwrap();
    let _ = ws.send(Ws::text("HELLO as text")).await;
    let mut rejected = false;
    while let Some(m) = timeout(LIMIT, ws.next()).await.expect("the server reacts in time") {
        match m {
            Ok(Ws::Binary(b)) => {
                let f = Frame::decode_exact(b, 1 << 20).expect("one frame per message");
                assert_eq!(f.header.ty, FrameType::GOAWAY, "{f:?}");
                assert_eq!(ErrorCode(f.header.arg as u16), ErrorCode::PROTOCOL_VIOLATION);
                rejected = true;
            }
            Ok(Ws::Close(c)) => {
                if let Some(c) = c {
                    let code = u16::from(c.code);
                    assert!(matches!(code, 1002 | 1003 | 1007), "close code {code}");
                }
                rejected = true;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {
                rejected = true;
                break;
            }
        }
    }
    assert!(rejected, "the server reacted to the text message");
}

// ----- I. Unix sockets ---------------------------------------------------------------------

/// I3: a second server on the path of a live Unix socket fails to bind and
/// leaves the first one serving.
#[tokio::test]
async fn i3_live_unix_socket_not_stolen() {
    let dir = std::env::temp_dir().join(format!("gatewire-hostile-i3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("unix://{}", dir.join("s.sock").display());
    let first = Builder::new().router(echo()).serve(&[url.as_str()]).await.expect("first server binds");
    let second = Builder::new().router(echo()).serve(&[url.as_str()]).await;
    assert!(second.is_err(), "a live socket must not be replaced");
    let c = timeout(LIMIT, Builder::new().connect(&url)).await.unwrap().expect("the first server still accepts");
    let r = timeout(LIMIT, c.call(1, Message::raw(&b"mine"[..]))).await.unwrap().unwrap();
    assert_eq!(&r.body[..], b"mine");
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sanity: the harness speaks the protocol (a normal call over a raw socket).
#[tokio::test]
async fn harness_round_trip() {
    let (_server, addr) = serve_router(echo()).await;
    let mut a = Attacker::handshake(&addr).await;
    a.send(&[request(1, 1, b"hi")]).await;
    let r = a.expect_frame("RESPONSE", is(FrameType::RESPONSE, 1)).await;
    assert_eq!(&r.payload[..], b"hi");
    let _ = Header::new(FrameType::PING, 0, 0, 8);
}
