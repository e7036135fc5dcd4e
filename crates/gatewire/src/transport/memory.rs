//! An in-memory transport for tests: two ends of a bounded byte pipe.

use std::io;

use async_trait::async_trait;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::{Framing, PeerInfo, Transport, TransportRead, TransportWrite, WriteBatch};

/// One end of an in-memory byte stream.
#[derive(Debug)]
pub struct MemoryTransport {
    stream: DuplexStream,
    name: &'static str,
}

/// Two connected in-memory transports; `capacity` bytes may be in flight in
/// each direction before the writer waits.
pub fn pair(capacity: usize) -> (MemoryTransport, MemoryTransport) {
    let (a, b) = tokio::io::duplex(capacity);
    (MemoryTransport { stream: a, name: "memory:a" }, MemoryTransport { stream: b, name: "memory:b" })
}

impl Transport for MemoryTransport {
    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer(&self) -> PeerInfo {
        PeerInfo { address: Some(self.name.into()), credentials: None, tls: None }
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportRead>, Box<dyn TransportWrite>) {
        let (r, w) = tokio::io::split(self.stream);
        (Box::new(MemoryRead(r)), Box::new(MemoryWrite(w)))
    }
}

struct MemoryRead(ReadHalf<DuplexStream>);
struct MemoryWrite(WriteHalf<DuplexStream>);

#[async_trait]
impl TransportRead for MemoryRead {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(64 * 1024);
        self.0.read_buf(buf).await
    }
}

#[async_trait]
impl TransportWrite for MemoryWrite {
    async fn write(&mut self, batch: &WriteBatch) -> io::Result<()> {
        self.0.write_all(&batch.buf).await?;
        self.0.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}
