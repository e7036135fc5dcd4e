//! Every runtime feature over real TCP, Unix-socket and WebSocket
//! connections, with servers the tests start themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gatewire::{Builder, Connection, ErrorCode, Message, Router, Server, Status};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Kind {
    Tcp,
    Unix,
    Ws,
}

fn bind_url(kind: Kind) -> String {
    match kind {
        Kind::Tcp => "tcp://127.0.0.1:0".into(),
        Kind::Ws => "ws://127.0.0.1:0/gw".into(),
        Kind::Unix => {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "gatewire-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            format!("unix://{}/gw.sock", dir.display())
        }
    }
}

async fn serve(kind: Kind, builder: Builder) -> (Server, String) {
    let server = builder.serve(&[&bind_url(kind)]).await.expect("server binds");
    let url = server.local_endpoints()[0].to_string();
    (server, url)
}

async fn connect(url: &str, builder: Builder) -> Connection {
    timeout(LIMIT, builder.connect(url)).await.expect("connect in time").expect("connects")
}

fn echo() -> Router {
    Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) })
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    timeout(LIMIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("condition reached in time");
}

async fn calls_both_ways(kind: Kind) {
    // The server's handler calls the client back on the same connection.
    let router = Router::new().unary(1, |ctx, m: Message| async move {
        let back = ctx.connection().call(7, m).await.map_err(Status::from)?;
        Ok(Message::raw([&b"server saw "[..], &back.body[..]].concat()))
    });
    let (_server, url) = serve(kind, Builder::new().router(router)).await;
    let page = Router::new().unary(7, |_ctx, m: Message| async move { Ok(Message::raw([&m.body[..], b"!"].concat())) });
    let c = connect(&url, Builder::new().router(page)).await;
    let r = c.call(1, Message::raw(&b"hello"[..])).await.unwrap();
    assert_eq!(&r.body[..], b"server saw hello!");
}

async fn ten_thousand_calls(kind: Kind) {
    let (_server, url) = serve(kind, Builder::new().router(echo())).await;
    let c = connect(&url, Builder::new()).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10_000u32 {
        let c = c.clone();
        set.spawn(async move {
            let r = c.call(1, Message::raw(i.to_le_bytes().to_vec())).await.unwrap();
            assert_eq!(&r.body[..], &i.to_le_bytes());
        });
    }
    timeout(LIMIT, async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await
    .expect("10,000 calls complete");
    assert_eq!(c.stats().calls_out, 0);
}

/// Notifies when dropped: shows a handler's future was dropped.
struct DropSignal(Arc<tokio::sync::Notify>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

fn hanging(started: Arc<tokio::sync::Notify>, dropped: Arc<tokio::sync::Notify>) -> Router {
    Router::new().unary(3, move |_ctx, _m| {
        let (st, guard) = (started.clone(), DropSignal(dropped.clone()));
        async move {
            let _guard = guard;
            st.notify_one();
            std::future::pending::<Result<Message, Status>>().await
        }
    })
}

async fn cancellation_both_ways(kind: Kind) {
    let (s_started, s_dropped) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let (c_started, c_dropped) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let (server, url) = serve(kind, Builder::new().router(hanging(s_started.clone(), s_dropped.clone()))).await;
    let c = connect(&url, Builder::new().router(hanging(c_started.clone(), c_dropped.clone()))).await;
    // Client → server.
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.call(3, Message::raw(&b""[..])).await }
    });
    timeout(LIMIT, s_started.notified()).await.unwrap();
    call.abort();
    timeout(LIMIT, s_dropped.notified()).await.expect("server handler dropped");
    // Server → client.
    wait_until(|| !server.connections().is_empty()).await;
    let sc = server.connections().remove(0);
    let call = tokio::spawn(async move { sc.call(3, Message::raw(&b""[..])).await });
    timeout(LIMIT, c_started.notified()).await.unwrap();
    call.abort();
    timeout(LIMIT, c_dropped.notified()).await.expect("client handler dropped");
}

async fn deadlines(kind: Kind) {
    let (started, dropped) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let (_server, url) = serve(kind, Builder::new().router(hanging(started, dropped.clone()))).await;
    let c = connect(&url, Builder::new()).await;
    let e = c.call_with(3, Message::raw(&b""[..]), Some(Duration::from_millis(100))).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
    timeout(LIMIT, dropped.notified()).await.expect("the handler stopped at the deadline");
}

async fn slow_consumer_stream(kind: Kind) {
    // The server streams 64 MiB; the client reads slowly. Credit keeps the
    // bytes in flight bounded: the sender waits instead of buffering.
    let router = Router::new().stream(4, |_ctx, _first, _rx, mut tx| async move {
        let chunk = Message::raw(vec![7u8; 64 * 1024]);
        for _ in 0..1024 {
            tx.send(chunk.clone()).await.map_err(Status::from)?;
        }
        Ok(())
    });
    let (server, url) = serve(kind, Builder::new().router(router)).await;
    let c = connect(&url, Builder::new()).await;
    let (_tx, mut rx) = c.open_stream(4, Message::raw(&b""[..])).await.unwrap();
    let mut total = 0usize;
    let mut n = 0;
    while let Some(m) = timeout(LIMIT, rx.next()).await.expect("stream makes progress") {
        total += m.unwrap().body.len();
        n += 1;
        if n % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(total, 64 << 20);
    let sc = server.connections().remove(0);
    assert!(sc.stats().credit_stalls > 0, "the producer waited for credit");
}

async fn shutdown_during_calls(kind: Kind) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicU32::new(0));
    let (g, s) = (gate.clone(), started.clone());
    let router = Router::new().unary(1, move |_ctx, m: Message| {
        let (g, s) = (g.clone(), s.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            let _permit = g.acquire().await.map_err(|_| Status::internal("closed"))?;
            Ok(m)
        }
    });
    let (server, url) = serve(kind, Builder::new().router(router)).await;
    let c = connect(&url, Builder::new()).await;
    let calls: Vec<_> = (0..200u32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.call(1, Message::raw(i.to_le_bytes().to_vec())).await) })
        })
        .collect();
    // The server is running 100 handlers (its `max_in_flight`): the calls
    // it has, which the shutdown lets finish.
    wait_until(|| started.load(Ordering::SeqCst) >= 100).await;
    let shutdown = tokio::spawn(server.shutdown());
    gate.add_permits(1000);
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let (i, r) = timeout(LIMIT, call).await.unwrap().unwrap();
        match r {
            Ok(m) => {
                assert_eq!(&m.body[..], &i.to_le_bytes());
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_retryable(), "call {i} failed with a non-retryable error: {e}");
                refused += 1;
            }
        }
    }
    assert_eq!(ok + refused, 200, "every call has exactly one outcome");
    assert!(ok >= 100, "calls in flight at the shutdown completed ({ok})");
    timeout(LIMIT, shutdown).await.unwrap().unwrap();
}

macro_rules! per_transport {
    ($($name:ident),* $(,)?) => {
        mod tcp { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Tcp).await } )* }
        mod unix { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Unix).await } )* }
        mod ws { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Ws).await } )* }
    };
}

per_transport!(
    calls_both_ways,
    ten_thousand_calls,
    cancellation_both_ways,
    deadlines,
    slow_consumer_stream,
    shutdown_during_calls
);

#[tokio::test]
async fn unknown_method_and_error_codes_cross_the_wire() {
    let router = Router::new().unary(2, |_ctx, _m| async { Err(Status::new(ErrorCode(0x8001), "chart not found")) });
    let (_server, url) = serve(Kind::Tcp, Builder::new().router(router)).await;
    let c = connect(&url, Builder::new()).await;
    let e = c.call(2, Message::raw(&b""[..])).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode(0x8001));
    assert_eq!(e.message(), Some("chart not found"));
    assert!(e.is_remote() && !e.is_retryable());
}
