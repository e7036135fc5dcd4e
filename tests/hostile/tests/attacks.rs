//! Catalogue attacks (`/work/shared/reference/hostile-inputs.md` A–J) against a
//! real gatewire server, each driven by a scripted raw-frame attacker over a
//! real socket. Every test names its catalogue entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatewire::{Builder, ErrorCode, Message, Router, Timeouts};
use gatewire_hostile::{Attacker, LIMIT, eventually, frame, hello_frame, ping, request, serve_router, serve_tcp};
use gatewire_proto::control::Hello;
use gatewire_proto::{Codec, Flags, Frame, FrameType, Header};
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

/// Raw header bytes with an arbitrary length, type, flags and reserved byte.
fn raw_header(length: u32, ty: u8, flags: u8, reserved: u8, id: u32, arg: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&length.to_le_bytes());
    b.extend_from_slice(&[ty, flags, 0, reserved]);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&arg.to_le_bytes());
    b
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
