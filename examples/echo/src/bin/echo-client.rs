//! An echo client: `echo-client URL [MESSAGE]` (default
//! `tcp://127.0.0.1:4000`). Prints the echo and the round-trip time.

use std::time::Instant;

use gatewire::Message;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "tcp://127.0.0.1:4000".into());
    let text = args.next().unwrap_or_else(|| "hello, gateway".into());
    let conn = gatewire::connect(&url).await?;
    let t = Instant::now();
    let reply = conn.call(1, Message::raw(text.into_bytes())).await?;
    println!("{} ({:?})", String::from_utf8_lossy(&reply.body), t.elapsed());
    conn.close().await;
    Ok(())
}
