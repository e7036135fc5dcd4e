//! Harness for the gatewire attack suite: a real server on loopback and a
//! scripted raw-frame attacker that writes arbitrary bytes and decodes the
//! server's frames with [`FrameDecoder`]: [`Attacker`] over any byte stream
//! (TCP by default, Unix sockets, TLS) and [`WsAttacker`] over WebSocket
//! (one frame per binary message).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use gatewire::{Builder, Router, Server};
use gatewire_proto::connection::{Config, Connection as Core};
use gatewire_proto::{Codec, ErrorCode, Flags, Frame, FrameDecoder, FrameType, Header, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Upper bound for anything that must not hang.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Starts `builder` on an ephemeral loopback TCP port; returns the server and
/// its `host:port`.
pub async fn serve_tcp(builder: Builder) -> (Server, String) {
    let server = builder.serve(&["tcp://127.0.0.1:0"]).await.expect("server binds");
    let url = server.local_endpoints()[0].to_string();
    let addr = url.strip_prefix("tcp://").expect("a tcp endpoint").to_owned();
    (server, addr)
}

/// A server with `router` and default settings.
pub async fn serve_router(router: Router) -> (Server, String) {
    serve_tcp(Builder::new().router(router)).await
}

/// Starts `builder` on `url` (any scheme); returns the server and the
/// endpoint actually bound, as a URL.
pub async fn serve_url(builder: Builder, url: &str) -> (Server, String) {
    let server = builder.serve(&[url]).await.expect("server binds");
    let url = server.local_endpoints()[0].to_string();
    (server, url)
}

/// The HELLO a default client sends, as the reference core encodes it.
pub fn hello_frame() -> Frame {
    hello_with(|_| {})
}

/// The HELLO of a reference client core configured by `configure` (its
/// advertised limits, compression, auth...).
pub fn hello_with(configure: impl FnOnce(&mut Config)) -> Frame {
    let mut config = Config::client();
    configure(&mut config);
    let mut core = Core::new(config, Instant::ZERO);
    let f = core.poll_transmit().expect("the client core sends HELLO first");
    assert_eq!(f.header.ty, FrameType::HELLO);
    f
}

/// A unique Unix socket URL in a fresh private directory under the system
/// temporary directory (the directory is created by the server's bind).
pub fn unix_url(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("gw-hostile-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    format!("unix://{}/s.sock", dir.display())
}

/// Removes the directory of a socket made with [`unix_url`] (once its server
/// is gone).
pub fn remove_unix_dir(url: &str) {
    if let Some(dir) = std::path::Path::new(url.trim_start_matches("unix://")).parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Raw header bytes with an arbitrary length, type, flags and reserved byte
/// (codec 0).
pub fn raw_header(length: u32, ty: u8, flags: u8, reserved: u8, id: u32, arg: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&length.to_le_bytes());
    b.extend_from_slice(&[ty, flags, 0, reserved]);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&arg.to_le_bytes());
    b
}

/// A frame with the given header fields and payload (length taken from it).
pub fn frame(ty: FrameType, flags: Flags, id: u32, arg: u32, payload: &[u8]) -> Frame {
    let mut h = Header::new(ty, id, arg, payload.len() as u32);
    h.flags = flags;
    Frame::new(h, Bytes::copy_from_slice(payload))
}

/// A raw REQUEST for `method` on `id`.
pub fn request(id: u32, method: u32, body: &[u8]) -> Frame {
    let mut f = frame(FrameType::REQUEST, Flags::NONE, id, method, body);
    f.header.codec = Codec::RAW;
    f
}

/// A PING with an 8-byte payload.
pub fn ping(n: u64) -> Frame {
    frame(FrameType::PING, Flags::NONE, 0, 0, &n.to_le_bytes())
}

/// Encodes frames back to back.
pub fn encode(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        f.encode_to(&mut out);
    }
    out
}

/// How the server ended a connection, as the attacker saw it.
#[derive(Debug)]
pub struct Ending {
    /// The GOAWAY code, if a GOAWAY arrived.
    pub goaway: Option<ErrorCode>,
    /// Frames received before the GOAWAY (after the point the wait began).
    pub before: Vec<Frame>,
    /// Frames received after the GOAWAY, before the end of the stream.
    pub after: Vec<Frame>,
}

/// A scripted attacker on one byte-stream connection: TCP by default, or a
/// Unix socket or TLS stream ([`Attacker::over`]).
pub struct Attacker<S = TcpStream> {
    /// The socket.
    pub sock: S,
    decoder: FrameDecoder,
    buf: BytesMut,
    /// Set once the server's side ended (EOF or reset).
    pub eof: bool,
}

impl Attacker {
    /// Opens a TCP connection and sends nothing.
    pub async fn connect(addr: &str) -> Self {
        let sock = timeout(LIMIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
        sock.set_nodelay(true).unwrap();
        Self::over(sock)
    }

    /// Opens a TCP connection and completes the handshake with a default
    /// HELLO; returns once HELLO_ACK has arrived.
    pub async fn handshake(addr: &str) -> Self {
        Self::handshake_with(addr, hello_frame()).await
    }

    /// Opens a TCP connection and completes the handshake with `hello`
    /// (see [`hello_with`]); returns once an accepting HELLO_ACK has arrived.
    pub async fn handshake_with(addr: &str, hello: Frame) -> Self {
        let mut a = Self::connect(addr).await;
        a.accepted(hello).await;
        a
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Attacker<S> {
    /// An attacker on an established stream; nothing is sent.
    pub fn over(sock: S) -> Self {
        Self { sock, decoder: FrameDecoder::new(16 * 1024 * 1024 - 1), buf: BytesMut::new(), eof: false }
    }

    /// Sends `hello` and asserts that the server accepts it; returns the
    /// server's HELLO_ACK.
    pub async fn accepted(&mut self, hello: Frame) -> gatewire_proto::control::HelloAck {
        self.send(&[hello]).await;
        let ack = self.next().await.expect("HELLO_ACK");
        assert_eq!(ack.header.ty, FrameType::HELLO_ACK, "{ack:?}");
        let ack = gatewire_proto::control::HelloAck::decode(&ack.payload).expect("a valid HelloAck");
        assert_eq!(ack.error_code, ErrorCode::NO_ERROR, "the server accepted: {ack:?}");
        ack
    }

    /// Writes frames.
    pub async fn send(&mut self, frames: &[Frame]) {
        self.send_raw(&encode(frames)).await;
    }

    /// Writes raw bytes; a write error (the server already closed) is
    /// ignored, since the outcome is read back afterwards.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = timeout(LIMIT, self.sock.write_all(bytes)).await.expect("the write completes in time");
    }

    /// The next frame from the server, or `None` at the end of the stream.
    /// Panics after [`LIMIT`].
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_within(LIMIT).await.expect("the server answers in time")
    }

    /// The next frame, `Ok(None)` at the end of the stream, `Err(())` if
    /// nothing arrived within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("the server sends well-formed frames") {
                return Ok(Some(f));
            }
            if self.eof {
                assert!(self.buf.is_empty(), "the server's stream ended mid-frame");
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.sock.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0) | Err(_)) => self.eof = true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads until the end of the stream and reports how the server ended the
    /// connection.
    pub async fn ending(&mut self) -> Ending {
        let mut e = Ending { goaway: None, before: Vec::new(), after: Vec::new() };
        while let Some(f) = self.next().await {
            if e.goaway.is_some() {
                e.after.push(f);
            } else if f.header.ty == FrameType::GOAWAY {
                e.goaway = Some(ErrorCode(f.header.arg as u16));
            } else {
                e.before.push(f);
            }
        }
        e
    }

    /// Asserts the server sends GOAWAY(`code`), sends nothing after it and
    /// closes. Returns the frames that came before the GOAWAY.
    pub async fn expect_goaway(&mut self, code: ErrorCode) -> Vec<Frame> {
        let e = self.ending().await;
        assert_eq!(e.goaway, Some(code), "expected GOAWAY({code:?}); got {e:?}");
        assert!(e.after.is_empty(), "frames after GOAWAY: {:?}", e.after);
        e.before
    }

    /// Reads frames until one matches `pred`, skipping others (CREDIT,
    /// PONG...). Panics at the end of the stream or after [`LIMIT`].
    pub async fn expect_frame(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            match self.next().await {
                Some(f) if pred(&f) => return f,
                Some(f) if f.header.ty == FrameType::GOAWAY => {
                    panic!("expected {what}; the server sent GOAWAY({:?})", ErrorCode(f.header.arg as u16))
                }
                Some(_) => {}
                None => panic!("expected {what}; the connection ended"),
            }
        }
    }

    /// Proves the connection is still up and in sync: a PING gets its PONG.
    pub async fn assert_alive(&mut self, n: u64) {
        self.send(&[ping(n)]).await;
        self.expect_frame("PONG", |f| f.header.ty == FrameType::PONG && f.payload[..] == n.to_le_bytes()).await;
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmData`, ...).
pub fn proc_status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Waits until `cond` holds, polling every 10 ms, for at most [`LIMIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `cond` holds, re-checking each time the runtime has run its
/// other tasks and polled its I/O driver (no timer involved), for at most
/// [`LIMIT`]. For conditions a server task sets as a direct result of what
/// the test just did (bytes read, a table emptied).
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::task::yield_now().await;
    }
}

/// The only connection `server` has open, once it has one.
pub async fn sole_connection(server: &Server) -> gatewire::Connection {
    let mut found = None;
    until("the server tracks the connection", || {
        let mut list = server.connections();
        found = list.pop();
        found.is_some() && list.is_empty()
    })
    .await;
    found.expect("one connection")
}

/// The server's side of the TCP connection `a` opened (matched by address),
/// once the server tracks it (after the handshake).
pub async fn server_side(server: &Server, a: &Attacker) -> gatewire::Connection {
    let me = a.sock.local_addr().expect("a local address").to_string();
    let mut found = None;
    until("the server tracks the connection", || {
        found = server.connections().into_iter().find(|c| c.peer_info().address.as_deref() == Some(me.as_str()));
        found.is_some()
    })
    .await;
    found.expect("the connection")
}

/// Counts drops: put one in a handler's future to learn when it has ended,
/// whether it returned or was cancelled (dropped).
#[derive(Debug)]
pub struct Dropped(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Anything a WebSocket can run over (a TCP stream, a TLS stream...).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A scripted attacker on a WebSocket: every frame goes out as one binary
/// message, and every binary message from the server is decoded as exactly
/// one frame.
pub struct WsAttacker {
    /// The WebSocket.
    pub ws: WebSocketStream<Box<dyn Io>>,
    /// The WebSocket close frame the server sent, if any.
    pub close: Option<Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>>,
    /// Set once the server's side ended.
    pub eof: bool,
}

impl WsAttacker {
    /// Upgrades `stream` (already connected, TLS already done for `wss`)
    /// to a WebSocket at `url`, offering the `gatewire.v1` subprotocol.
    pub async fn upgrade(stream: Box<dyn Io>, url: &str) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("a valid WebSocket URL");
        req.headers_mut().insert("Sec-WebSocket-Protocol", "gatewire.v1".parse().unwrap());
        let (ws, resp) = timeout(LIMIT, tokio_tungstenite::client_async(req, stream))
            .await
            .expect("the upgrade finishes in time")
            .expect("the server upgrades");
        assert_eq!(resp.status(), 101);
        Self { ws, close: None, eof: false }
    }

    /// Connects to a `ws://` URL and upgrades.
    pub async fn connect(url: &str) -> Self {
        let addr = url.trim_start_matches("ws://").split('/').next().expect("host:port").to_owned();
        let tcp = timeout(LIMIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
        tcp.set_nodelay(true).unwrap();
        Self::upgrade(Box::new(tcp), url).await
    }

    /// Sends each frame as one binary message; a failed send (the server
    /// already closed) is ignored, since the outcome is read back afterwards.
    pub async fn send(&mut self, frames: &[Frame]) {
        for f in frames {
            let mut b = Vec::with_capacity(f.encoded_len());
            f.encode_to(&mut b);
            if timeout(LIMIT, self.ws.send(WsMessage::binary(b))).await.expect("the send completes in time").is_err() {
                return;
            }
        }
    }

    /// The next frame from the server, or `None` at the end of the
    /// WebSocket (a close frame, the end of the connection or an error).
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.eof {
                return None;
            }
            match timeout(LIMIT, self.ws.next()).await.expect("the server answers in time") {
                Some(Ok(WsMessage::Binary(b))) => {
                    return Some(Frame::decode_exact(b, 16 * 1024 * 1024 - 1).expect("one whole frame per message"));
                }
                Some(Ok(WsMessage::Close(c))) => {
                    self.close = Some(c);
                    self.eof = true;
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(other)) => panic!("the server sent a non-binary message: {other:?}"),
                Some(Err(_)) | None => self.eof = true,
            }
        }
    }

    /// Reads until the end and reports how the server ended the connection.
    pub async fn ending(&mut self) -> Ending {
        let mut e = Ending { goaway: None, before: Vec::new(), after: Vec::new() };
        while let Some(f) = self.next().await {
            if e.goaway.is_some() {
                e.after.push(f);
            } else if f.header.ty == FrameType::GOAWAY {
                e.goaway = Some(ErrorCode(f.header.arg as u16));
            } else {
                e.before.push(f);
            }
        }
        e
    }
}
