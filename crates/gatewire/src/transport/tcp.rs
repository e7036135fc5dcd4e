//! TCP: a [`Framing::Stream`] transport over a `TcpStream`.
//!
//! Nagle's algorithm is off (`TCP_NODELAY`): the runtime already gathers
//! frames into one [`WriteBatch`] per write, so the kernel should send it at
//! once. Each read grows the buffer by at most
//! [`RESERVE_STEP`] (64 KiB), so memory
//! follows the bytes that arrived, never a length the peer declared.
//! [`TransportWrite::shutdown`] sends a FIN (`shutdown(Write)`); the peer's
//! reads then return `Ok(0)` while our reading half keeps working.

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::BytesMut;
use gatewire_proto::codec::RESERVE_STEP;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Framing, PeerInfo, Transport, TransportRead, TransportWrite, WriteBatch};

/// An established TCP connection.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    peer: PeerInfo,
}

/// Unsent bytes the kernel may hold for a TCP socket before it reports the
/// socket as not writable (`TCP_NOTSENT_LOWAT`, Linux). Keeping the queue
/// short leaves frames in the protocol core, where a ping or a small call
/// can still overtake a bulk transfer, instead of behind megabytes in the
/// kernel.
pub const NOTSENT_LOWAT: u32 = 32 * 1024;

/// Socket options for every gatewire TCP connection (plain, TLS or
/// WebSocket): `TCP_NODELAY`, and [`NOTSENT_LOWAT`] where the platform has it.
pub(crate) fn tune(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = NOTSENT_LOWAT as libc::c_int;
        // SAFETY: `stream` owns a valid socket descriptor for the duration of
        // the call, and `value` is a c_int that outlives it, as
        // setsockopt(TCP_NOTSENT_LOWAT) expects.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl TcpTransport {
    /// Wraps a connected stream: turns `TCP_NODELAY` on, bounds the kernel's
    /// unsent queue ([`NOTSENT_LOWAT`]) and records the peer's address.
    pub fn from_stream(stream: TcpStream) -> io::Result<Self> {
        tune(&stream)?;
        let address = stream.peer_addr()?.to_string();
        Ok(Self { stream, peer: PeerInfo { address: Some(address), credentials: None, tls: None } })
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// The remote address of the connection.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}

/// Connects to `host:port`, trying each address `host` resolves to in turn.
///
/// There is no deadline here; wrap the call in `tokio::time::timeout` (the
/// [`listener::connect`](super::listener::connect) helper does).
pub async fn connect(host: &str, port: u16) -> io::Result<TcpTransport> {
    TcpTransport::from_stream(TcpStream::connect((host, port)).await?)
}

impl Transport for TcpTransport {
    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportRead>, Box<dyn TransportWrite>) {
        let (r, w) = self.stream.into_split();
        (Box::new(StreamRead(r)), Box::new(StreamWrite(w)))
    }
}

/// A TCP listening socket that yields [`TcpTransport`]s.
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
    local: SocketAddr,
}

impl TcpListener {
    /// Binds to `host:port` (the first address `host` resolves to that can
    /// be bound). Port `0` picks a free port; see [`local_addr`](Self::local_addr).
    pub async fn bind(host: &str, port: u16) -> io::Result<Self> {
        Self::from_tokio(tokio::net::TcpListener::bind((host, port)).await?)
    }

    /// Wraps a bound tokio listener.
    pub fn from_tokio(inner: tokio::net::TcpListener) -> io::Result<Self> {
        let local = inner.local_addr()?;
        Ok(Self { inner, local })
    }

    /// The bound address, with the real port when bound to port `0`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next connection.
    ///
    /// An error may concern only the connection being accepted (for example
    /// it was reset before we got to it) or the process (out of file
    /// descriptors); either way, keep accepting, after a short backoff.
    ///
    /// Cancel safety: dropping the future loses no connection.
    pub async fn accept(&self) -> io::Result<TcpTransport> {
        let (stream, _) = self.inner.accept().await?;
        TcpTransport::from_stream(stream)
    }
}

/// The reading half of any byte stream: appends what arrived, growing the
/// buffer by at most [`RESERVE_STEP`] per call.
pub(super) struct StreamRead<R>(pub(super) R);

/// The writing half of any byte stream.
pub(super) struct StreamWrite<W>(pub(super) W);

#[async_trait]
impl<R: AsyncRead + Unpin + Send + 'static> TransportRead for StreamRead<R> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(RESERVE_STEP);
        // `read_buf` on a socket half completes only once bytes are taken
        // from the kernel, so cancelling it loses nothing.
        self.0.read_buf(buf).await
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send + 'static> TransportWrite for StreamWrite<W> {
    async fn write(&mut self, batch: &WriteBatch) -> io::Result<()> {
        // `write_all` turns a write of zero bytes into `WriteZero`: no busy loop.
        self.0.write_all(&batch.buf).await?;
        self.0.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn batch(frames: &[&[u8]]) -> WriteBatch {
        let mut b = WriteBatch::default();
        for f in frames {
            b.buf.extend_from_slice(f);
            b.ends.push(b.buf.len());
        }
        b
    }

    async fn pair() -> (TcpTransport, TcpTransport) {
        let listener = TcpListener::bind("127.0.0.1", 0).await.unwrap();
        let port = listener.local_addr().port();
        assert_ne!(port, 0);
        let (client, server) = timeout(WAIT, async { tokio::join!(connect("127.0.0.1", port), listener.accept()) })
            .await
            .expect("connect and accept in time");
        (client.unwrap(), server.unwrap())
    }

    #[tokio::test]
    async fn round_trip_and_half_close() {
        let (client, server) = pair().await;
        assert_eq!(client.framing(), Framing::Stream);
        assert!(client.stream.nodelay().unwrap());
        assert!(server.stream.nodelay().unwrap());
        assert_eq!(server.peer().address, Some(client.local_addr().unwrap().to_string()));
        assert_eq!(server.peer().credentials, None);

        let (mut cr, mut cw) = Box::new(client).split();
        let (mut sr, mut sw) = Box::new(server).split();
        timeout(WAIT, cw.write(&batch(&[b"hello ", b"world"]))).await.unwrap().unwrap();
        timeout(WAIT, cw.shutdown()).await.unwrap().unwrap();

        let mut buf = BytesMut::new();
        loop {
            let n = timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
        }
        assert_eq!(&buf[..], b"hello world");

        // Half-closed: the other direction still works.
        timeout(WAIT, sw.write(&batch(&[b"reply"]))).await.unwrap().unwrap();
        drop(sw);
        let mut buf = BytesMut::new();
        while timeout(WAIT, cr.read(&mut buf)).await.unwrap().unwrap() != 0 {}
        assert_eq!(&buf[..], b"reply");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn unsent_queue_is_bounded_on_both_ends() {
        use std::os::fd::AsRawFd;
        let (client, server) = pair().await;
        for t in [&client, &server] {
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a valid socket descriptor and an out-parameter of the
            // size getsockopt(TCP_NOTSENT_LOWAT) writes.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::getsockopt(
                    t.stream.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_NOTSENT_LOWAT,
                    std::ptr::from_mut(&mut value).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            assert_eq!(value as u32, NOTSENT_LOWAT);
        }
    }

    #[tokio::test]
    async fn read_reserves_a_bounded_step() {
        let (client, server) = pair().await;
        let (_cr, mut cw) = Box::new(client).split();
        let (mut sr, _sw) = Box::new(server).split();
        timeout(WAIT, cw.write(&batch(&[&[7u8; 10]]))).await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        let n = timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0 && n <= 10);
        assert!(buf.capacity() < 2 * RESERVE_STEP, "capacity {}", buf.capacity());
    }
}
