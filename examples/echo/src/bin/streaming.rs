//! Streaming with backpressure, in one process: a server streams 10,000
//! readings to a client that consumes them slowly; the producer waits for
//! credit instead of buffering. `streaming [URL]` (default a Unix socket in
//! the temp directory).

use std::time::{Duration, Instant};

use gatewire::{Builder, Message, Router, Status};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).unwrap_or_else(|| {
        format!("unix://{}/gatewire-streaming-{}/s.sock", std::env::temp_dir().display(), std::process::id())
    });
    let router = Router::new().stream(1, |_ctx, _first, _rx, mut tx| async move {
        for i in 0u32..10_000 {
            tx.send(Message::raw(i.to_le_bytes().repeat(256))).await.map_err(Status::from)?;
        }
        Ok(())
    });
    let server = Builder::new().router(router).stream_credit(64 * 1024).serve(&[&url]).await?;
    let endpoint = server.local_endpoints()[0].to_string();
    let conn = Builder::new().stream_credit(64 * 1024).connect(&endpoint).await?;
    let t = Instant::now();
    let (_tx, mut rx) = conn.open_stream(1, Message::raw(&b""[..])).await?;
    let (mut n, mut bytes) = (0u32, 0usize);
    while let Some(m) = rx.next().await {
        let m = m?;
        assert_eq!(&m.body[..4], &n.to_le_bytes(), "messages arrive in order");
        n += 1;
        bytes += m.body.len();
        if n % 1000 == 0 {
            // A slow consumer: the producer is held back by credit.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let producer_waits = server.connections().first().map_or(0, |c| c.stats().credit_stalls);
    println!("{n} messages, {bytes} bytes in {:?}; the producer waited for credit {producer_waits} times", t.elapsed());
    server.shutdown().await;
    if n != 10_000 {
        return Err("stream ended early".into());
    }
    Ok(())
}
