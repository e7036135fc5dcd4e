//! D1 in its own test binary: it measures the process's memory and counts
//! its open file descriptors, so no other test may share the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gatewire::{Builder, Message, Router, Status, Timeouts};
use gatewire_hostile::{
    Attacker, LIMIT, eventually, frame, hello_with, proc_status_kib, serve_tcp, sole_connection, until,
};
use gatewire_proto::{Codec, ErrorCode, Flags, FrameType};
use tokio::time::timeout;

/// Open file descriptors of this process.
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

const CHUNK: usize = 60_000;

/// Sets its flag when dropped: the handler's future has ended, however.
struct Ended(Arc<AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// D1: a peer opens a server-streaming call, advertises the largest windows
/// (credit never holds the producer back) and never reads. Only
/// `max_send_queue` (8 MiB) bounds what the server buffers: the handler's
/// `send` blocks (backpressure to the application) after at most 8 MiB plus
/// what the sockets hold (< 40 MiB accepted in all), and `VmRSS` grows by
/// less than 32 MiB. A second connection is served meanwhile. The
/// non-reader is silent too, so keepalive (300 ms + 300 ms here) ends it
/// with TIMEOUT; the blocked handler then ends, and the server releases
/// the socket within its 2 s linger although the peer still reads nothing:
/// a closed connection must not keep its socket and task alive behind a
/// write that never completes.
#[tokio::test]
async fn d1_slow_reader_bounded_and_released() {
    let accepted = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicBool::new(false));
    let (acc, end) = (accepted.clone(), ended.clone());
    let router =
        Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) }).stream(2, move |_ctx, _m, _rx, mut tx| {
            let (acc, end) = (acc.clone(), end.clone());
            async move {
                let _ended = Ended(end);
                loop {
                    // A fresh buffer each time: what is queued really costs memory.
                    tx.send(Message::raw(vec![0x5a; CHUNK])).await.map_err(Status::from)?;
                    acc.fetch_add(CHUNK, Ordering::SeqCst);
                }
            }
        });
    let mut t = Timeouts::default();
    t.keepalive_interval = Some(Duration::from_millis(300));
    t.keepalive_timeout = Duration::from_millis(300);
    let (server, addr) = serve_tcp(Builder::new().router(router).timeouts(t)).await;
    // The server's 300 ms keepalive PINGs must not count as strikes here.
    let mut lenient = Timeouts::default();
    lenient.min_ping_interval = Duration::ZERO;
    let good = Builder::new().timeouts(lenient).connect(&format!("tcp://{addr}")).await.expect("connects");
    let good_server_side = sole_connection(&server).await;
    let (fds0, rss0) = (fds(), proc_status_kib("VmRSS"));

    let hello = hello_with(|c| {
        c.limits.connection_credit = 0x7FFF_FFFF;
        c.limits.initial_stream_credit = 0x7FFF_FFFF;
    });
    let attacker = Attacker::handshake_with(&addr, hello).await;
    let mut a = attacker;
    let mut open = frame(FrameType::STREAM_OPEN, Flags::END, 1, 2, b"");
    open.header.codec = Codec::RAW;
    a.send(&[open]).await;
    let mut conn = None;
    until("the producer is held back by max_send_queue", || {
        conn = server.connections().into_iter().find(|c| c.peer_info() != good_server_side.peer_info());
        conn.as_ref().is_some_and(|c| c.stats().credit_stalls > 0)
    })
    .await;
    let conn = conn.expect("the attacker's connection");
    let held = accepted.load(Ordering::SeqCst);
    let grew = proc_status_kib("VmRSS").saturating_sub(rss0);
    println!("D1: {} KiB accepted before the producer blocked; VmRSS +{grew} KiB", held / 1024);
    assert!(held < 40 << 20, "{held} bytes accepted from a producer nobody reads");
    assert!(grew < 32 * 1024, "VmRSS grew {grew} KiB");

    let r = timeout(LIMIT, good.call(1, Message::raw(&b"still served"[..]))).await.unwrap().unwrap();
    assert_eq!(&r.body[..], b"still served");

    let e = timeout(LIMIT, conn.closed()).await.expect("keepalive ends the silent peer").expect("an error");
    assert_eq!(e.code(), ErrorCode::TIMEOUT, "{e}");
    until("the blocked handler ends", || ended.load(Ordering::SeqCst)).await;
    // The attacker still holds its socket; the server must not.
    eventually("the server releases the socket", || fds() <= fds0 + 1).await;
    drop(a);
    // The count above included the second connection's sockets: still open.
    let r = timeout(LIMIT, good.call(1, Message::raw(&b"still here"[..]))).await.unwrap().unwrap();
    assert_eq!(&r.body[..], b"still here");
}
