//! 1 GiB through a stream whose consumer reads at a slow fixed rate: credit
//! holds the producer back, so the process's peak memory stays far below
//! the bytes transferred. This file holds one test so that the process's
//! high-water mark measures it alone.

use std::time::Duration;

use gatewire::{Builder, Message, Router, Status};

/// Peak resident memory of this process, in bytes (Linux `VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmHWM value");
    kib * 1024
}

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 1 << 30;
/// The bound this test states: both ends of the connection together may grow
/// the process by at most this much while 1 GiB flows.
const BOUND: u64 = 64 << 20;

async fn stream_through(url: &str, total: usize) {
    let router = Router::new().stream(1, move |_ctx, _first, _rx, mut tx| async move {
        let chunk = Message::raw(vec![0x5a; CHUNK]);
        for _ in 0..total / CHUNK {
            tx.send(chunk.clone()).await.map_err(Status::from)?;
        }
        Ok(())
    });
    let server = Builder::new().router(router).serve(&[url]).await.expect("binds");
    let endpoint = server.local_endpoints()[0].to_string();
    let conn = Builder::new().connect(&endpoint).await.expect("connects");
    let mut rx = conn.server_stream(1, Message::raw(&b""[..])).await.expect("opens");
    let mut received = 0usize;
    let mut messages = 0usize;
    let tick = tokio::time::interval(Duration::from_millis(1));
    tokio::pin!(tick);
    while let Some(m) = tokio::time::timeout(Duration::from_secs(60), rx.next()).await.expect("stream progresses") {
        received += m.expect("message").body.len();
        messages += 1;
        // The fixed rate: 8 messages (512 KiB) per millisecond tick at most,
        // well below what the producer can send.
        if messages.is_multiple_of(8) {
            tick.as_mut().tick().await;
        }
    }
    assert_eq!(received, total);
    let producer = server.connections().remove(0);
    assert!(producer.stats().credit_stalls > 0, "the producer waited for credit");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_through_a_slow_consumer_in_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("gatewire-slow-{}", std::process::id()));
    let before = peak_rss();
    stream_through(&format!("unix://{}/s.sock", dir.display()), TOTAL).await;
    stream_through("tcp://127.0.0.1:0", TOTAL / 4).await;
    stream_through("ws://127.0.0.1:0/s", TOTAL / 4).await;
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB while 1.5 GiB flowed", grown / 1024);
    assert!(grown < BOUND, "peak RSS grew by {grown} bytes, over the stated bound of {BOUND}");
}
