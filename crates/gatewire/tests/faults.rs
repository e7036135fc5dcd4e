//! Faults on real sockets: a peer that vanishes mid-frame at every byte
//! boundary, and a peer that half-closes.

use std::time::Duration;

use bytes::BytesMut;
use gatewire::{Builder, Message, Router};
use gatewire_proto::connection::{Config, Connection as Core, Event};
use gatewire_proto::{Codec, Frame, FrameType, Header, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn unique_socket() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir()
        .join(format!("gatewire-faults-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
        .join("s.sock")
}

/// Plays a server that completes the handshake, waits for one request and
/// writes only the first `cut` bytes of its response before vanishing.
async fn vanishing_server<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, cut: usize) {
    let mut core = Core::new(Config::server(), Instant::ZERO);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client hung up first");
        core.handle_bytes(Instant::ZERO, &buf[..n]);
        let mut out = Vec::new();
        let mut request = None;
        while let Some(e) = core.poll_event() {
            match e {
                Event::HelloReceived(_) => core.accept().unwrap(),
                Event::Request { id, .. } => request = Some(id),
                _ => {}
            }
        }
        while let Some(f) = core.poll_transmit() {
            f.encode_to(&mut out);
        }
        sock.write_all(&out).await.unwrap();
        if let Some(id) = request {
            let mut h = Header::new(FrameType::RESPONSE, id, 0, 0);
            h.codec = Codec::RAW;
            let mut response = Vec::new();
            Frame::new(h, bytes::Bytes::from_static(b"12345678")).encode_to(&mut response);
            sock.write_all(&response[..cut]).await.unwrap();
            sock.flush().await.unwrap();
            return; // dropping the socket closes it
        }
    }
}

async fn vanish_at_every_boundary(unix: bool) {
    let frame_len = 16 + 8;
    for cut in 0..frame_len {
        let (url, server) = if unix {
            let path = unique_socket();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let l = tokio::net::UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(async move { vanishing_server(l.accept().await.unwrap().0, cut).await });
            (format!("unix://{}", path.display()), server)
        } else {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("tcp://{}", l.local_addr().unwrap());
            let server = tokio::spawn(async move { vanishing_server(l.accept().await.unwrap().0, cut).await });
            (url, server)
        };
        let c = timeout(LIMIT, Builder::new().connect(&url)).await.unwrap().unwrap();
        let e = timeout(LIMIT, c.call(1, Message::raw(&b"question"[..])))
            .await
            .unwrap_or_else(|_| panic!("the call hangs when the peer vanishes after {cut} bytes"))
            .expect_err("no response can be complete");
        assert!(e.is_closed(), "cut at {cut}: {e}");
        server.await.unwrap();
        assert!(timeout(LIMIT, c.closed()).await.unwrap().is_some(), "a lost connection reports an error");
        // The handle is usable and fails fast afterwards.
        let e = c.call(1, Message::raw(&b""[..])).await.unwrap_err();
        assert!(e.is_closed() || e.is_retryable(), "{e}");
    }
}

#[tokio::test]
async fn tcp_peer_vanishes_mid_frame() {
    vanish_at_every_boundary(false).await;
}

#[tokio::test]
async fn unix_peer_vanishes_mid_frame() {
    vanish_at_every_boundary(true).await;
}

/// A raw client: handshake, one request, then shutdown of its sending side.
/// The server must still answer.
async fn half_close<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S) {
    let mut core = Core::new(Config::client(), Instant::ZERO);
    let mut out = Vec::new();
    while let Some(f) = core.poll_transmit() {
        f.encode_to(&mut out);
    }
    sock.write_all(&out).await.unwrap();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut response = None;
    let mut sent = false;
    while response.is_none() {
        let n = timeout(LIMIT, sock.read_buf(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the server closed before answering");
        core.handle_bytes(Instant::ZERO, &buf);
        buf.clear();
        while let Some(e) = core.poll_event() {
            match e {
                Event::Connected(_) if !sent => {
                    core.send_request(1, Message::raw(&b"still there?"[..]), None).unwrap();
                    sent = true;
                }
                Event::Response { message, .. } => response = Some(message),
                _ => {}
            }
        }
        let mut out = Vec::new();
        while let Some(f) = core.poll_transmit() {
            f.encode_to(&mut out);
        }
        if !out.is_empty() {
            sock.write_all(&out).await.unwrap();
            if sent {
                sock.shutdown().await.unwrap();
            }
        }
    }
    assert_eq!(&response.unwrap().body[..], b"still there?");
}

fn echo() -> Router {
    Router::new().unary(1, |_ctx, m: Message| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(m)
    })
}

#[tokio::test]
async fn tcp_half_close_still_gets_answers() {
    let server = Builder::new().router(echo()).serve(&["tcp://127.0.0.1:0"]).await.unwrap();
    let gatewire::Endpoint::Tcp { host, port } = server.local_endpoints()[0].clone() else { panic!() };
    half_close(tokio::net::TcpStream::connect((host.as_str(), port)).await.unwrap()).await;
}

#[tokio::test]
async fn unix_half_close_still_gets_answers() {
    let path = unique_socket();
    let server = Builder::new().router(echo()).serve(&[&format!("unix://{}", path.display())]).await.unwrap();
    let _ = &server;
    half_close(tokio::net::UnixStream::connect(&path).await.unwrap()).await;
}
