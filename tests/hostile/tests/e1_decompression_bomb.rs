//! E1 in its own test binary, so that no other test shares the process whose
//! memory it measures.
//!
//! The zstd frames are written by hand (RFC 8878: raw and RLE blocks), so
//! each one says exactly what it claims: window size, dictionary id,
//! content size, trailing data.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gatewire::{Builder, Message, Router};
use gatewire_hostile::{Attacker, hello_with, proc_status_kib, request, serve_tcp};
use gatewire_proto::{ErrorCode, Flags, Frame, FrameType};

const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// What a hand-made zstd frame header claims.
#[derive(Clone, Copy)]
struct Header {
    /// Window_Descriptor exponent + 10.
    window_log: u8,
    /// Dictionary_ID (4 bytes when present).
    dict_id: Option<u32>,
    /// Frame_Content_Size (8 bytes when present).
    content_size: Option<u64>,
}

impl Default for Header {
    fn default() -> Self {
        Self { window_log: 17, dict_id: None, content_size: None }
    }
}

/// A zstd frame of RLE blocks that decodes to `n` copies of `byte`.
fn zstd_rle(n: usize, byte: u8, h: Header) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let fcs_flag: u8 = if h.content_size.is_some() { 3 } else { 0 };
    let dict_flag: u8 = if h.dict_id.is_some() { 3 } else { 0 };
    // Single_Segment_flag 0, so a Window_Descriptor follows.
    out.push((fcs_flag << 6) | dict_flag);
    out.push((h.window_log - 10) << 3);
    if let Some(id) = h.dict_id {
        out.extend_from_slice(&id.to_le_bytes());
    }
    if let Some(size) = h.content_size {
        out.extend_from_slice(&size.to_le_bytes());
    }
    let max_block = (1usize << h.window_log.min(17)).min(128 * 1024);
    let mut left = n;
    loop {
        let size = left.min(max_block);
        left -= size;
        let last = u32::from(left == 0);
        // Block_Header: Last_Block, Block_Type 1 (RLE), Block_Size.
        let bh = last | (1 << 1) | ((size as u32) << 3);
        out.extend_from_slice(&bh.to_le_bytes()[..3]);
        out.push(byte);
        if left == 0 {
            return out;
        }
    }
}

/// A skippable frame (magic 0x184D2A50) carrying `data`.
fn skippable(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x50, 0x2A, 0x4D, 0x18];
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// A COMPRESSED REQUEST whose prelude declares `declared` bytes.
fn compressed(id: u32, declared: u32, body: &[u8]) -> Frame {
    let mut payload = declared.to_le_bytes().to_vec();
    payload.extend_from_slice(body);
    let mut f = request(id, 1, &payload);
    f.header.flags = Flags::COMPRESSED;
    f
}

/// E1: with zstd negotiated, a compressed REQUEST is decompressed only up
/// to its declared size (≤ `max_message`), by a decoder that refuses what
/// PROTOCOL.md §5.4 forbids. Each refused message is answered
/// ERROR(PROTOCOL_VIOLATION), its handler never runs, and the connection
/// stays up:
///
/// - 64 MiB of zeros declared as 1 MiB (a bomb; 32 of them at once raise
///   the peak `VmRSS` by less than 24 MiB, where decompressing even one
///   would take 64 MiB);
/// - a Frame_Content_Size that lies (too small, or 2^63);
/// - a window of 2^24 and 2^31 bytes (2^23 is accepted: the boundary);
/// - a dictionary id;
/// - trailing junk, a second frame, a skippable frame after the frame;
/// - output shorter than declared.
///
/// A declared size above `max_message` is GOAWAY(TOO_LARGE) before any
/// decompression.
#[tokio::test]
async fn e1_decompression_bomb_bounded() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let router = Router::new().unary(1, move |_ctx, m: Message| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok(Message::raw(m.body.len().to_string())) }
    });
    // Offer zstd; never compress our own (short) answers.
    let (_server, addr) = serve_tcp(Builder::new().router(router).compression(Some(1 << 20))).await;
    let hello = || hello_with(|c| c.compression = true);

    let mut a = Attacker::handshake_with(&addr, hello()).await;
    let ok = |n: usize, wl: u8| zstd_rle(n, b'a', Header { window_log: wl, ..Header::default() });

    // Accepted: a plain frame, and the largest window allowed (2^23).
    let mut id = 1;
    for body in [ok(1000, 10), ok(1000, 23)] {
        a.send(&[compressed(id, 1000, &body)]).await;
        let r = a.expect_frame("RESPONSE", |f| f.header.id == id).await;
        assert_eq!((r.header.ty, &r.payload[..]), (FrameType::RESPONSE, &b"1000"[..]), "{r:?}");
        id += 2;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let mut two = ok(500, 10);
    two.extend(ok(500, 10));
    let mut trailing = ok(1000, 10);
    trailing.extend_from_slice(b"junk");
    let mut skip = ok(1000, 10);
    skip.extend(skippable(b"hidden"));
    let h = Header::default();
    let refused: Vec<(&str, u32, Vec<u8>)> = vec![
        ("content size too small", 1000, zstd_rle(1000, b'a', Header { content_size: Some(10), ..h })),
        ("content size 2^63", 1000, zstd_rle(1000, b'a', Header { content_size: Some(1 << 63), ..h })),
        ("window 2^24", 1000, ok(1000, 24)),
        ("window 2^31", 1000, ok(1000, 31)),
        ("dictionary id", 1000, zstd_rle(1000, b'a', Header { dict_id: Some(7), ..h })),
        ("trailing junk", 1000, trailing),
        ("two frames", 1000, two),
        ("skippable frame", 1000, skip),
        ("shorter than declared", 1001, ok(1000, 10)),
    ];
    for (what, declared, body) in refused {
        a.send(&[compressed(id, declared, &body)]).await;
        let e = a.expect_frame(what, |f| f.header.id == id).await;
        assert_eq!(
            (e.header.ty, ErrorCode(e.header.arg as u16)),
            (FrameType::ERROR, ErrorCode::PROTOCOL_VIOLATION),
            "{what}: {e:?}"
        );
        id += 2;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no handler ran for a refused message");

    // Bombs: 32 at once, each 64 MiB of zeros declared as 1 MiB.
    let bomb = zstd_rle(64 << 20, 0, Header::default());
    assert!(bomb.len() < 4096, "{} bytes on the wire", bomb.len());
    let peak0 = proc_status_kib("VmHWM");
    let first = id;
    let bombs: Vec<_> = (0..32).map(|i| compressed(first + 2 * i, 1 << 20, &bomb)).collect();
    a.send(&bombs).await;
    let mut answered = 0;
    while answered < 32 {
        let e = a.expect_frame("ERROR for a bomb", |f| f.header.ty == FrameType::ERROR).await;
        assert_eq!(ErrorCode(e.header.arg as u16), ErrorCode::PROTOCOL_VIOLATION, "{e:?}");
        answered += 1;
    }
    let grew = proc_status_kib("VmHWM").saturating_sub(peak0);
    println!("E1: 32 bombs of 64 MiB (declared 1 MiB): peak VmRSS (VmHWM) +{grew} KiB");
    assert!(grew < 24 * 1024, "peak VmRSS grew {grew} KiB");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    a.assert_alive(1).await;

    // A declared size above max_message (1 MiB): refused by the core.
    let mut b = Attacker::handshake_with(&addr, hello()).await;
    b.send(&[compressed(1, (1 << 20) + 1, &ok(1000, 10))]).await;
    b.expect_goaway(ErrorCode::TOO_LARGE).await;
}
