//! Transports: how frames travel between two endpoints.
//!
//! A transport is a pair of halves that can be driven independently (one task
//! reads while another writes), and it says whether it keeps message
//! boundaries:
//!
//! - [`Framing::Stream`] (TCP, Unix sockets, TLS): frames travel back to back
//!   and the reader returns whatever bytes arrived;
//! - [`Framing::Message`] (WebSocket): every frame is one binary message and
//!   the reader returns exactly one frame per call.
//!
//! Users can plug their own transport by implementing [`Transport`]. The
//! crate ships TCP, Unix-socket, TLS, WebSocket (plain and over TLS) and
//! in-memory transports.

use std::fmt;
use std::io;

use async_trait::async_trait;
use bytes::BytesMut;

pub mod listener;
pub mod memory;
pub mod tcp;
pub mod tls;
pub mod unix;
pub mod ws;

/// Whether a transport keeps message boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A byte stream: frames are concatenated.
    Stream,
    /// Message-preserving: one frame per message.
    Message,
}

/// Who is on the other end, as far as the transport knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// A printable address (`127.0.0.1:4000`, a socket path, a URL).
    pub address: Option<String>,
    /// Unix peer credentials, recorded at accept or connect time.
    pub credentials: Option<UnixCredentials>,
    /// TLS session facts (`tls://`, `wss://`): the negotiated ALPN, the
    /// server name and the peer's verified certificate, if it sent one.
    pub tls: Option<tls::TlsInfo>,
}

/// The credentials of the process at the other end of a Unix socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixCredentials {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id, where the platform reports it.
    pub pid: Option<i32>,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.address.as_deref().unwrap_or("unknown peer"))
    }
}

/// Frames gathered for one write: the bytes back to back, and where each
/// frame ends (message transports send each frame as one message).
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// All frames, concatenated.
    pub buf: BytesMut,
    /// Offset in `buf` just past each frame, ascending.
    pub ends: Vec<usize>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets everything written.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The frames one by one.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let f = &self.buf[start..end];
            start = end;
            f
        })
    }
}

/// An established connection's byte or message channel.
pub trait Transport: Send + 'static {
    /// Stream or message framing.
    fn framing(&self) -> Framing;

    /// What is known about the peer.
    fn peer(&self) -> PeerInfo;

    /// Splits into a reading and a writing half.
    fn split(self: Box<Self>) -> (Box<dyn TransportRead>, Box<dyn TransportWrite>);
}

/// The reading half.
#[async_trait]
pub trait TransportRead: Send + 'static {
    /// Appends what arrived to `buf` and returns how many bytes were added;
    /// `Ok(0)` is the end of input. A message transport appends exactly one
    /// whole frame per call.
    ///
    /// Cancel safety: dropping the future before it completes loses nothing.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
}

/// The writing half.
#[async_trait]
pub trait TransportWrite: Send + 'static {
    /// Writes every frame of `batch` and flushes.
    async fn write(&mut self, batch: &WriteBatch) -> io::Result<()>;

    /// Ends the sending direction gracefully (TCP FIN, WebSocket close).
    async fn shutdown(&mut self) -> io::Result<()>;
}
