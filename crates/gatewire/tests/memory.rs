//! Runtime behaviour over the in-memory transport (no sockets), including
//! the paused-clock tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatewire::transport::memory;
use gatewire::{Builder, Connection, ErrorCode, Message, Router, Status};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

async fn pair(server: Builder, client: Builder) -> (Connection, Connection) {
    let (a, b) = memory::pair(256 * 1024);
    let s = tokio::spawn(server.accept_transport(Box::new(a)));
    let c = client.connect_transport(Box::new(b)).await.expect("client connects");
    let s = s.await.unwrap().expect("server accepts");
    (c, s)
}

fn echo() -> Router {
    Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) })
}

#[tokio::test]
async fn calls_in_both_directions() {
    let server = Builder::new().router(echo());
    let client =
        Builder::new().router(Router::new().unary(7, |_c, _m| async { Ok(Message::raw(&b"from the page"[..])) }));
    let (c, s) = pair(server, client).await;
    let r = c.call(1, Message::raw(&b"hi"[..])).await.unwrap();
    assert_eq!(&r.body[..], b"hi");
    let r = s.call(7, Message::raw(&b""[..])).await.unwrap();
    assert_eq!(&r.body[..], b"from the page");
    let e = c.call(99, Message::raw(&b""[..])).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UNKNOWN_METHOD);
    assert!(e.is_remote());
}

#[tokio::test]
async fn ten_thousand_concurrent_calls() {
    let (c, _s) = pair(Builder::new().router(echo()), Builder::new()).await;
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
    .expect("all calls complete");
    let stats = c.stats();
    assert_eq!((stats.calls_out, stats.calls_in), (0, 0));
    assert!(stats.credit_stalls > 0, "100 slots for 10,000 calls: callers waited");
}

/// Notifies when dropped: shows a handler's future was dropped.
struct DropSignal(Arc<tokio::sync::Notify>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tokio::test]
async fn dropping_a_call_cancels_the_handler() {
    let started = Arc::new(tokio::sync::Notify::new());
    let dropped = Arc::new(tokio::sync::Notify::new());
    let (st, dr) = (started.clone(), dropped.clone());
    let router = Router::new().unary(1, move |ctx, _m| {
        let (st, guard) = (st.clone(), DropSignal(dr.clone()));
        async move {
            let _guard = guard;
            st.notify_one();
            ctx.cancelled().cancelled().await;
            std::future::pending::<Result<Message, Status>>().await
        }
    });
    let (c, s) = pair(Builder::new().router(router), Builder::new()).await;
    let call = tokio::spawn({
        let c = c.clone();
        async move { c.call(1, Message::raw(&b""[..])).await }
    });
    timeout(LIMIT, started.notified()).await.unwrap();
    assert_eq!(s.stats().calls_in, 1);
    call.abort();
    timeout(LIMIT, dropped.notified()).await.expect("the handler future was dropped");
    // The slot is released once the handler is gone.
    timeout(LIMIT, async {
        while s.stats().calls_in != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(c.stats().calls_out, 0);
}

#[tokio::test]
async fn deadline_reaches_the_handler() {
    let router = Router::new().unary(1, |ctx, _m| async move {
        assert!(ctx.deadline().is_some());
        std::future::pending::<Result<Message, Status>>().await
    });
    let (c, _s) = pair(Builder::new().router(router), Builder::new()).await;
    let e = c.call_with(1, Message::raw(&b""[..]), Some(Duration::from_millis(50))).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");
}

#[tokio::test]
async fn streams_with_backpressure_both_ways() {
    let router = Router::new().stream(2, |_ctx, first: Message, mut rx, mut tx| async move {
        assert_eq!(&first.body[..], b"subscribe");
        let mut n = 0usize;
        while let Some(m) = rx.next().await {
            n += m.map_err(Status::from)?.body.len();
        }
        for _ in 0..100 {
            tx.send(Message::raw(vec![1u8; 10_000])).await.map_err(Status::from)?;
        }
        tx.send_last(Message::raw(n.to_le_bytes().to_vec())).await.map_err(Status::from)
    });
    let server = Builder::new().router(router).stream_credit(16 * 1024);
    let client = Builder::new().stream_credit(16 * 1024);
    let (c, _s) = pair(server, client).await;
    let (mut tx, mut rx) = c.open_stream(2, Message::raw(&b"subscribe"[..])).await.unwrap();
    for _ in 0..50 {
        tx.send(Message::raw(vec![2u8; 4096])).await.unwrap();
    }
    tx.finish().await.unwrap();
    let mut got = 0;
    let mut last = None;
    while let Some(m) = timeout(LIMIT, rx.next()).await.unwrap() {
        let m = m.unwrap();
        got += 1;
        last = Some(m);
    }
    assert_eq!(got, 101);
    assert_eq!(&last.unwrap().body[..], &(50usize * 4096).to_le_bytes());
    assert!(c.stats().credit_stalls > 0, "16 KiB of credit for 200 KiB: the sender waited");
}

#[tokio::test]
async fn events_reach_their_handler_in_order() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = Arc::new(tokio::sync::Notify::new());
    let (seen2, done2) = (seen.clone(), done.clone());
    let router = Router::new().event(5, move |_ctx, m: Message| {
        let (seen, done) = (seen2.clone(), done2.clone());
        async move {
            let mut v = seen.lock().unwrap();
            v.push(m.body[0]);
            if v.len() == 100 {
                done.notify_one();
            }
        }
    });
    let (c, _s) = pair(Builder::new().router(router), Builder::new()).await;
    for i in 0..100u8 {
        c.emit(5, Message::raw(vec![i])).await.unwrap();
    }
    timeout(LIMIT, done.notified()).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..100).collect::<Vec<u8>>());
}

#[tokio::test]
async fn compression_when_both_offer_it() {
    let (c, s) =
        pair(Builder::new().router(echo()).compression(Some(1024)), Builder::new().compression(Some(1024))).await;
    let body = vec![b'a'; 100_000];
    let r = c.call(1, Message::raw(body.clone())).await.unwrap();
    assert_eq!(r.body, body);
    assert!(c.stats().bytes_sent < 10_000, "compressed on the wire: {:?}", c.stats());
    assert!(s.stats().bytes_sent < 10_000);
}

#[tokio::test]
async fn graceful_close_lets_calls_finish() {
    let release = Arc::new(tokio::sync::Notify::new());
    let r2 = release.clone();
    let router = Router::new().unary(1, move |_ctx, m: Message| {
        let r = r2.clone();
        async move {
            r.notified().await;
            Ok(m)
        }
    });
    let (c, s) = pair(Builder::new().router(router), Builder::new()).await;
    let calls: Vec<_> = (0..10u8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.call(1, Message::raw(vec![i])).await })
        })
        .collect();
    timeout(LIMIT, async {
        while s.stats().calls_in < 10 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    let closing = tokio::spawn({
        let s = s.clone();
        async move { s.close().await }
    });
    // A call opened during the shutdown is refused, safe to retry.
    tokio::task::yield_now().await;
    release.notify_waiters();
    for _ in 0..10 {
        release.notify_one();
    }
    let mut ok = 0;
    for call in calls {
        match timeout(LIMIT, call).await.unwrap().unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    assert_eq!(ok, 10);
    timeout(LIMIT, closing).await.unwrap().unwrap();
    assert!(c.closed().await.is_none());
}

/// A peer that completes the handshake and then never writes again.
async fn silent_peer(transport: memory::MemoryTransport) {
    use gatewire::transport::{Transport, WriteBatch};
    use gatewire_proto::connection::{Config, Connection as Core, Event};
    let (mut r, mut w) = Box::new(transport).split();
    let mut core = Core::new(Config::server(), gatewire_proto::Instant::ZERO);
    let mut buf = bytes::BytesMut::new();
    loop {
        if r.read(&mut buf).await.unwrap() == 0 {
            return;
        }
        core.handle_bytes(gatewire_proto::Instant::ZERO, &buf);
        buf.clear();
        if let Some(Event::HelloReceived(_)) = core.poll_event() {
            core.accept().unwrap();
            let mut batch = WriteBatch::default();
            while let Some(f) = core.poll_transmit() {
                f.encode_to(&mut batch.buf);
                batch.ends.push(batch.buf.len());
            }
            w.write(&batch).await.unwrap();
            break;
        }
    }
    // Silent from now on; keep reading so the client's writes never block.
    while r.read(&mut buf).await.unwrap_or(0) > 0 {
        buf.clear();
    }
}

#[tokio::test(start_paused = true)]
async fn keepalive_detects_a_silent_peer() {
    let (a, b) = memory::pair(64 * 1024);
    tokio::spawn(silent_peer(a));
    let client = Builder::new().keepalive(Some(Duration::from_secs(20)), Duration::from_secs(20));
    let c = client.connect_transport(Box::new(b)).await.unwrap();
    let started = tokio::time::Instant::now();
    let pending = tokio::spawn({
        let c = c.clone();
        async move { c.call(1, Message::raw(&b""[..])).await }
    });
    let err = c.closed().await.expect("keepalive ends the connection with an error");
    let waited = started.elapsed();
    assert_eq!(err.code(), ErrorCode::TIMEOUT, "{err}");
    assert!(waited >= Duration::from_secs(40) && waited <= Duration::from_secs(41), "{waited:?}");
    let e = pending.await.unwrap().unwrap_err();
    assert!(e.is_closed(), "{e}");
}

#[tokio::test]
async fn connection_loss_fails_pending_calls_at_once() {
    let router = Router::new().unary(1, |_ctx, _m| async { std::future::pending::<Result<Message, Status>>().await });
    let (c, s) = pair(Builder::new().router(router), Builder::new()).await;
    let pending: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.call(1, Message::raw(&b""[..])).await })
        })
        .collect();
    timeout(LIMIT, async {
        while s.stats().calls_in < 20 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    s.abort(ErrorCode::INTERNAL, "test");
    let failed = AtomicUsize::new(0);
    for p in pending {
        let e = timeout(LIMIT, p).await.unwrap().unwrap().unwrap_err();
        assert!(e.is_closed() || e.is_remote(), "{e}");
        failed.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(failed.load(Ordering::Relaxed), 20);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_close_gracefully() {
    let server = Builder::new().router(echo()).idle_timeout(Some(Duration::from_secs(300)));
    let (c, s) = pair(server, Builder::new().keepalive(None, Duration::from_secs(20))).await;
    c.call(1, Message::raw(&b"once"[..])).await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(timeout(Duration::from_secs(600), s.closed()).await.unwrap().is_none(), "a graceful close");
    assert!(started.elapsed() >= Duration::from_secs(300), "{:?}", started.elapsed());
    assert!(timeout(LIMIT, c.closed()).await.unwrap().is_none());
}
