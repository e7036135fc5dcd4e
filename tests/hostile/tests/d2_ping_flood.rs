//! D2 in its own test binary, so that no other test shares the process whose
//! memory it measures.

use std::time::Duration;

use gatewire::{Builder, Message, Router, Timeouts};
use gatewire_hostile::{Attacker, encode, ping, proc_status_kib, request, serve_tcp};
use gatewire_proto::FrameType;
use tokio::io::AsyncWriteExt;

/// D2: a PING flood from a peer that never reads its PONGs. With ping strikes
/// disabled (`min_ping_interval` 0) only the pending-control cap protects the
/// server: it must stop reading once 64 PONGs are queued, so the attacker's
/// writes stall after at most 64 MiB (socket buffers included, in practice a
/// few MiB), the server's `VmRSS` grows by less than 32 MiB, and a second
/// connection is still served while the flood is stuck.
#[tokio::test]
async fn d2_ping_flood_bounded() {
    let mut timeouts = Timeouts::default();
    timeouts.min_ping_interval = Duration::ZERO;
    let router = Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) });
    let (_server, addr) = serve_tcp(Builder::new().router(router).timeouts(timeouts)).await;

    let mut flood = Attacker::handshake(&addr).await;
    let rss0 = proc_status_kib("VmRSS");
    let chunk = encode(&(0..2048).map(ping).collect::<Vec<_>>());
    let mut sent = 0usize;
    let stalled = loop {
        // A write that makes no progress for 500 ms means the server stopped
        // reading (the only thing that can fill loopback buffers here).
        match tokio::time::timeout(Duration::from_millis(500), flood.sock.write_all(&chunk)).await {
            Err(_) => break true,
            Ok(r) => r.expect("the server keeps the connection open"),
        }
        sent += chunk.len();
        if sent > 64 << 20 {
            break false;
        }
    };
    let rss1 = proc_status_kib("VmRSS");
    println!("D2: wrote {} KiB of PINGs before stalling; VmRSS +{} KiB", sent / 1024, rss1.saturating_sub(rss0));
    assert!(stalled, "the server read {sent} bytes of PINGs without pausing");
    assert!(rss1.saturating_sub(rss0) < 32 * 1024, "VmRSS grew {} KiB", rss1 - rss0);

    let mut other = Attacker::handshake(&addr).await;
    other.send(&[request(1, 1, b"served")]).await;
    let r = other.expect_frame("RESPONSE", |f| f.header.ty == FrameType::RESPONSE).await;
    assert_eq!(&r.payload[..], b"served");
}
