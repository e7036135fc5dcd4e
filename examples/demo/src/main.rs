//! The gatewire demo (`cargo xtask demo`): a gateway serving on a Unix
//! socket and a local WebSocket, a daemon client on the socket and a desktop
//! client on the WebSocket. It shows calls, events, a telemetry stream with
//! backpressure, the gateway calling the desktop, a cancelled call, a missed
//! deadline and a graceful shutdown with a call in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatewire::codec::{from_postcard, to_postcard};
use gatewire::{Builder, Message, Router, Status};
use serde::{Deserialize, Serialize};

/// Method ids of the demo service.
mod method {
    pub(crate) const STATUS: u32 = 1;
    pub(crate) const SET_CONFIG: u32 = 2;
    pub(crate) const DIRECTION: u32 = 3;
    pub(crate) const TELEMETRY: u32 = 4;
    pub(crate) const SLOW: u32 = 5;
    pub(crate) const CHART_CREATE: u32 = 10;
}

#[derive(Debug, Serialize, Deserialize)]
struct Status_ {
    uptime_ms: u64,
    clients: u32,
    direction: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Telemetry {
    seq: u32,
    temperature: f64,
}

fn log(start: Instant, who: &str, what: impl std::fmt::Display) {
    println!("{:>7.1} ms  {who:<8} {what}", start.elapsed().as_secs_f64() * 1000.0);
}

fn gateway_router(start: Instant, direction: Arc<std::sync::Mutex<String>>, clients: Arc<AtomicU32>) -> Router {
    let d1 = direction.clone();
    Router::new()
        .unary(method::STATUS, move |_ctx, _m| {
            let (d, c) = (d1.clone(), clients.clone());
            async move {
                let status = Status_ {
                    uptime_ms: start.elapsed().as_millis() as u64,
                    clients: c.load(Ordering::Relaxed),
                    direction: d.lock().map(|d| d.clone()).unwrap_or_default(),
                };
                to_postcard(&status)
            }
        })
        .unary(method::SET_CONFIG, move |ctx, m: Message| async move {
            let (key, value): (String, String) = from_postcard(&m)?;
            log(start, "gateway", format!("config {key} = {value} (from {})", ctx.peer()));
            to_postcard(&true)
        })
        .event(method::DIRECTION, move |_ctx, m: Message| {
            let d = direction.clone();
            async move {
                if let Ok(dir) = from_postcard::<String>(&m) {
                    log(start, "gateway", format!("direction event: {dir}"));
                    if let Ok(mut d) = d.lock() {
                        *d = dir;
                    }
                }
            }
        })
        .stream(method::TELEMETRY, move |_ctx, first: Message, _rx, mut tx| async move {
            let n: u32 = from_postcard(&first)?;
            for seq in 0..n {
                let t = Telemetry { seq, temperature: 20.0 + f64::from(seq) * 0.25 };
                tx.send(to_postcard(&t)?).await.map_err(Status::from)?;
            }
            Ok(())
        })
        .unary(method::SLOW, move |_ctx, m: Message| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(m)
        })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    println!("gatewire demo: a gateway on a Unix socket and a local WebSocket\n");
    let dir = std::env::temp_dir().join(format!("gatewire-demo-{}", std::process::id()));
    let unix_url = format!("unix://{}/gateway.sock", dir.display());
    let direction = Arc::new(std::sync::Mutex::new("stop".to_string()));
    let clients = Arc::new(AtomicU32::new(0));
    let server = Builder::new()
        .router(gateway_router(start, direction, clients.clone()))
        .serve(&[&unix_url, "ws://127.0.0.1:0/gatewire"])
        .await?;
    let [unix, ws] = server.local_endpoints() else { return Err("two endpoints expected".into()) };
    log(start, "gateway", format!("listening on {unix} and {ws}"));

    // The daemon on the Unix socket.
    let daemon = Builder::new().connect(&unix.to_string()).await?;
    clients.fetch_add(1, Ordering::Relaxed);
    log(start, "daemon", format!("connected over {unix}"));
    let t = Instant::now();
    let status: Status_ = from_postcard(&daemon.call(method::STATUS, Message::raw(&b""[..])).await?)?;
    log(start, "daemon", format!("status: {status:?} in {:?}", t.elapsed()));
    let ok: bool = from_postcard(&daemon.call(method::SET_CONFIG, to_postcard(&("rate_hz", "50"))?).await?)?;
    log(start, "daemon", format!("config set: {ok}"));

    // The desktop on the WebSocket, which the gateway may call back.
    let desktop_router = Router::new().unary(method::CHART_CREATE, move |_ctx, m: Message| async move {
        let title: String = from_postcard(&m)?;
        log(start, "desktop", format!("gateway asked for a chart titled {title:?}"));
        to_postcard(&1u32)
    });
    let desktop = Builder::new().router(desktop_router).connect(&ws.to_string()).await?;
    clients.fetch_add(1, Ordering::Relaxed);
    log(start, "desktop", format!("connected over {ws}"));
    for dir in ["left", "forward"] {
        desktop.emit(method::DIRECTION, to_postcard(&dir)?).await?;
    }
    // Events are one-way: a call on the same connection is ordered after
    // them on the wire, but their handler runs on its own.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let status: Status_ = from_postcard(&desktop.call(method::STATUS, Message::raw(&b""[..])).await?)?;
    log(start, "desktop", format!("status: {status:?}"));

    // Telemetry stream: 2,000 readings through the default credit window.
    let mut rx = desktop.server_stream(method::TELEMETRY, to_postcard(&2000u32)?).await?;
    let mut last = None;
    let mut count = 0;
    while let Some(m) = rx.next().await {
        last = Some(from_postcard::<Telemetry>(&m?)?);
        count += 1;
    }
    log(start, "desktop", format!("telemetry: {count} readings, last {last:?}"));

    // The gateway calls the desktop.
    let conn = server
        .connections()
        .into_iter()
        .find(|c| c.peer_info().address.as_deref().is_some_and(|a| a.contains("127.0.0.1")));
    if let Some(conn) = conn {
        let id: u32 = from_postcard(&conn.call(method::CHART_CREATE, to_postcard("temperature")?).await?)?;
        log(start, "gateway", format!("desktop created chart #{id}"));
    }

    // A call abandoned by the caller, and one that misses its deadline.
    let slow =
        tokio::time::timeout(Duration::from_millis(20), desktop.call(method::SLOW, Message::raw(&b"x"[..]))).await;
    log(start, "desktop", format!("gave up on a slow call after 20 ms (cancelled at the gateway): {}", slow.is_err()));
    let late = desktop.call_with(method::SLOW, Message::raw(&b"x"[..]), Some(Duration::from_millis(50))).await;
    log(
        start,
        "desktop",
        format!("call with a 50 ms deadline: {}", late.map(|_| "ok".to_string()).unwrap_or_else(|e| e.to_string())),
    );

    // Graceful shutdown with a call in flight: it completes; a call made
    // afterwards is refused, safe to retry.
    let in_flight = tokio::spawn({
        let d = daemon.clone();
        async move { d.call(method::SLOW, Message::raw(&b"last words"[..])).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    log(start, "gateway", "shutting down gracefully");
    let shutdown = tokio::spawn(server.shutdown());
    let r = in_flight.await?;
    log(
        start,
        "daemon",
        format!("call in flight during shutdown: {:?}", r.map(|m| String::from_utf8_lossy(&m.body).into_owned())),
    );
    let after = daemon.call(method::STATUS, Message::raw(&b""[..])).await;
    log(
        start,
        "daemon",
        format!("call after shutdown: retryable = {}", after.as_ref().is_err_and(gatewire::Error::is_retryable)),
    );
    shutdown.await?;
    log(
        start,
        "gateway",
        format!("closed; daemon closed: {}, desktop closed: {}", daemon.is_closed(), desktop.is_closed()),
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
