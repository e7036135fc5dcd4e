//! Harness for the gatewire attack suite: a real server on loopback and a
//! scripted raw-frame attacker that writes arbitrary bytes and decodes the
//! server's frames with [`FrameDecoder`].

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatewire::{Builder, Router, Server};
use gatewire_proto::connection::{Config, Connection as Core};
use gatewire_proto::{Codec, ErrorCode, Flags, Frame, FrameDecoder, FrameType, Header, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

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

/// The HELLO a default client sends, as the reference core encodes it.
pub fn hello_frame() -> Frame {
    let mut core = Core::new(Config::client(), Instant::ZERO);
    let f = core.poll_transmit().expect("the client core sends HELLO first");
    assert_eq!(f.header.ty, FrameType::HELLO);
    f
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

/// A scripted attacker on one TCP connection.
pub struct Attacker {
    /// The socket.
    pub sock: TcpStream,
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
        Self { sock, decoder: FrameDecoder::new(16 * 1024 * 1024 - 1), buf: BytesMut::new(), eof: false }
    }

    /// Opens a TCP connection and completes the handshake with a default
    /// HELLO; returns once HELLO_ACK has arrived.
    pub async fn handshake(addr: &str) -> Self {
        let mut a = Self::connect(addr).await;
        a.send(&[hello_frame()]).await;
        let ack = a.next().await.expect("HELLO_ACK");
        assert_eq!(ack.header.ty, FrameType::HELLO_ACK, "{ack:?}");
        let ack = gatewire_proto::control::HelloAck::decode(&ack.payload).expect("a valid HelloAck");
        assert_eq!(ack.error_code, ErrorCode::NO_ERROR, "the server accepted: {ack:?}");
        a
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
