//! A2 in its own test binary, so that no other test shares the process whose
//! memory it measures.

use std::time::Duration;

use gatewire::{Builder, Message, Router, Timeouts};
use gatewire_hostile::{Attacker, proc_status_kib, request, serve_tcp};
use gatewire_proto::{ErrorCode, FrameType};

/// Connections that each declare a 1 MiB frame and send only its header and
/// 100 bytes of body.
const N: usize = 256;

/// A2: memory tracks bytes received, not bytes declared. 256 connections each
/// send a REQUEST header declaring 1 MiB (the default `max_frame`) plus 100
/// bytes. Were the declared length reserved up front that would be 256 MiB of
/// address space (`VmData`); the bound is 256 KiB per connection (64 MiB in all, a quarter of
/// what reserving the declared lengths would cost) for both
/// `VmRSS` and `VmData` growth (handshake state, a read buffer grown at most
/// 64 KiB ahead of the bytes received, the attacker's own socket). The
/// 2 s partial-frame deadline then ends every connection with GOAWAY(TIMEOUT).
#[tokio::test]
async fn a2_declared_length_not_reserved() {
    let mut timeouts = Timeouts::default();
    timeouts.partial_frame = Duration::from_secs(2);
    let router = Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) });
    let (_server, addr) = serve_tcp(Builder::new().router(router).timeouts(timeouts)).await;

    // Warm up the allocator and the runtime with one full call.
    let mut probe = Attacker::handshake(&addr).await;
    probe.send(&[request(1, 1, b"warm")]).await;
    probe.expect_frame("RESPONSE", |f| f.header.ty == FrameType::RESPONSE).await;
    let (rss0, data0) = (proc_status_kib("VmRSS"), proc_status_kib("VmData"));

    let mut header = request(1, 1, &[]).header;
    header.length = 1024 * 1024;
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&[0x5a; 100]);
    let mut attackers = Vec::with_capacity(N);
    for _ in 0..N {
        let mut a = Attacker::handshake(&addr).await;
        a.send_raw(&bytes).await;
        attackers.push(a);
    }
    // Round trips on the probe: every attacker's bytes were written before
    // them, and the server has had as many scheduling rounds to read them.
    for id in [3, 5, 7] {
        probe.send(&[request(id, 1, b"sync")]).await;
        probe.expect_frame("RESPONSE", |f| f.header.ty == FrameType::RESPONSE && f.header.id == id).await;
    }
    let (rss1, data1) = (proc_status_kib("VmRSS"), proc_status_kib("VmData"));
    let bound = N as u64 * 256;
    println!("A2: VmRSS +{} KiB, VmData +{} KiB for {N} connections (bound {bound} KiB)", rss1 - rss0, data1 - data0);
    assert!(rss1.saturating_sub(rss0) < bound, "VmRSS grew {} KiB", rss1 - rss0);
    assert!(data1.saturating_sub(data0) < bound, "VmData grew {} KiB: declared lengths reserved?", data1 - data0);

    for a in &mut attackers {
        a.expect_goaway(ErrorCode::TIMEOUT).await;
    }
}
