//! D6 in its own test binary: it measures latency, so no other test may share
//! the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatewire::{Builder, Message, Router};
use gatewire_hostile::{Attacker, encode, frame, serve_tcp};
use gatewire_proto::{Codec, Flags, FrameType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CALLS: usize = 2000;

/// Allowed slowdown of the well-behaved connection's p99 under the flood.
const FACTOR: u32 = 20;

/// Absolute floor for the flooded p99 bound, so that a sub-100 µs idle p99
/// does not turn scheduler noise on a shared 2-vCPU box into a failure.
const FLOOR: Duration = Duration::from_millis(20);

async fn p99(c: &gatewire::Connection) -> Duration {
    let mut lat = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let t = Instant::now();
        let r = c.call(1, Message::raw((i as u32).to_le_bytes().to_vec())).await.expect("the call succeeds");
        lat.push(t.elapsed());
        assert_eq!(&r.body[..], &(i as u32).to_le_bytes());
    }
    lat.sort();
    lat[CALLS * 99 / 100]
}

/// Floods tiny complete EVENTs (1-byte bodies, exempt from the small-frame
/// budget) within the connection credit the server grants, until `stop`.
async fn flood(addr: String, stop: Arc<AtomicBool>, frames: Arc<AtomicU64>) {
    let a = Attacker::handshake(&addr).await;
    let (mut r, mut w) = a.sock.into_split();
    // Track connection CREDIT grants so the flood stays within policy.
    let granted = Arc::new(AtomicU64::new(4 << 20));
    let g = granted.clone();
    tokio::spawn(async move {
        let mut dec = gatewire_proto::FrameDecoder::new(1 << 24);
        let mut buf = bytes::BytesMut::new();
        while r.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
            while let Ok(Some(f)) = dec.decode(&mut buf) {
                if f.header.ty == FrameType::CREDIT && f.header.id == 0 {
                    g.fetch_add(u64::from(f.header.arg), Ordering::Relaxed);
                }
            }
        }
    });
    let mut id = 1u32;
    let mut spent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if spent + 1000 > granted.load(Ordering::Relaxed) {
            tokio::task::yield_now().await;
            continue;
        }
        let batch: Vec<_> = (0..1000)
            .map(|_| {
                let mut f = frame(FrameType::EVENT, Flags::NONE, id, 3, b"e");
                f.header.codec = Codec::RAW;
                id += 2;
                f
            })
            .collect();
        if w.write_all(&encode(&batch)).await.is_err() {
            panic!("the server dropped a flood that stays within its budgets");
        }
        spent += 1000;
        frames.fetch_add(1000, Ordering::Relaxed);
    }
}

/// D6: the p99 latency of 2,000 sequential calls on a well-behaved connection
/// while another connection floods tiny complete events stays within
/// `FACTOR` = 20× its idle p99 (or `FLOOR` = 20 ms, whichever is larger),
/// generous for a 2-vCPU CI box. The flooder runs on its own thread and
/// runtime, like a separate process; the server has 2 worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_fairness_under_flood() {
    let router = Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) }).event(3, |_ctx, _m| async {});
    let (_server, addr) = serve_tcp(Builder::new().router(router)).await;
    let url = format!("tcp://{addr}");
    let good = Builder::new().connect(&url).await.expect("connect");
    let idle = p99(&good).await;

    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, frames) = (stop.clone(), frames.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(flood(addr, stop, frames));
        })
    };
    // Start measuring once the flood is under way.
    while frames.load(Ordering::Relaxed) < 10_000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let before = frames.load(Ordering::Relaxed);
    let flooded = p99(&good).await;
    let during = frames.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("the flooder ran without being cut off");

    let bound = (idle * FACTOR).max(FLOOR);
    println!("D6: idle p99 {idle:?}, flooded p99 {flooded:?} ({during} flood events meanwhile), bound {bound:?}");
    assert!(during > 10_000, "the flood was running during the measurement ({during} events)");
    assert!(flooded <= bound, "flooded p99 {flooded:?} > bound {bound:?} (idle p99 {idle:?})");
}
