//! An echo server: `echo-server URL...` (default `tcp://127.0.0.1:4000`).
//! Method 1 echoes its request; stream method 2 echoes every message.
//! Stops gracefully on Ctrl-C.

use gatewire::{Builder, Message, Router, Status};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    let urls: Vec<&str> =
        if urls.is_empty() { vec!["tcp://127.0.0.1:4000"] } else { urls.iter().map(String::as_str).collect() };
    let router = Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) }).stream(
        2,
        |_ctx, _first, mut rx, mut tx| async move {
            while let Some(m) = rx.next().await {
                tx.send(m.map_err(Status::from)?).await.map_err(Status::from)?;
            }
            Ok(())
        },
    );
    let server = Builder::new().router(router).serve(&urls).await?;
    for e in server.local_endpoints() {
        println!("listening on {e}");
    }
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
