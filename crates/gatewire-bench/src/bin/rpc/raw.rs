//! The floor: blocking std sockets, one thread per end, no runtime.
//!
//! A request is `[len: u32 LE][op: u8][body]`, written with one `writev`;
//! the reply is `[len: u32 LE][body]`: the body itself for `E`, the one byte
//! [`ACK`] for `S`. Both ends read through a 64 KiB `BufReader`, so a small
//! message costs one `read` and one `writev` per direction, and an 8 MiB body
//! is read straight into its buffer.

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;

use crate::{ACK, MAX_MESSAGE, Op};

const READ_BUF: usize = 64 * 1024;

/// Binds `tcp://host:port` or `unix:///path` and serves every connection on
/// its own thread. Returns the address to connect to, in the same form.
pub(crate) fn serve(addr: &str) -> io::Result<String> {
    if let Some(hostport) = addr.strip_prefix("tcp://") {
        let listener = TcpListener::bind(hostport)?;
        let local = listener.local_addr()?;
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_nodelay(true);
                thread::spawn(move || {
                    let Ok(reader) = stream.try_clone() else { return };
                    let _ = serve_conn(reader, stream);
                });
            }
        });
        Ok(format!("tcp://{local}"))
    } else if let Some(path) = addr.strip_prefix("unix://") {
        let listener = UnixListener::bind(path)?;
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let Ok(reader) = stream.try_clone() else { return };
                    let _ = serve_conn(reader, stream);
                });
            }
        });
        Ok(addr.to_owned())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("raw: want tcp:// or unix://, got {addr:?}")))
    }
}

fn serve_conn(reader: impl Read, mut writer: impl Write) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(READ_BUF, reader);
    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 5];
        match reader.read_exact(&mut head) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            r => r?,
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "message too large"));
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        let reply: &[u8] = if head[4] == Op::Sink.tag() { ACK } else { &body };
        write_two(&mut writer, &(reply.len() as u32).to_le_bytes(), reply)?;
    }
}

/// Writes `a` then `b` with as few `writev` calls as the kernel allows.
fn write_two(w: &mut impl Write, a: &[u8], b: &[u8]) -> io::Result<()> {
    let mut done = 0;
    let total = a.len() + b.len();
    while done < total {
        let n = if done < a.len() {
            w.write_vectored(&[IoSlice::new(&a[done..]), IoSlice::new(b)])?
        } else {
            w.write(&b[done - a.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// One blocking connection to [`serve`].
pub(crate) struct Client {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
    reply: Vec<u8>,
}

impl Client {
    pub(crate) fn connect(addr: &str) -> io::Result<Self> {
        let (reader, writer): (Box<dyn Read + Send>, Box<dyn Write + Send>) =
            if let Some(hostport) = addr.strip_prefix("tcp://") {
                let stream = TcpStream::connect(hostport)?;
                stream.set_nodelay(true)?;
                (Box::new(stream.try_clone()?), Box::new(stream))
            } else if let Some(path) = addr.strip_prefix("unix://") {
                let stream = UnixStream::connect(path)?;
                (Box::new(stream.try_clone()?), Box::new(stream))
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("raw: bad address {addr:?}")));
            };
        Ok(Self { reader: BufReader::with_capacity(READ_BUF, reader), writer, reply: Vec::new() })
    }

    /// Sends `payload` with `op` and waits for the whole reply; returns its
    /// length.
    pub(crate) fn call(&mut self, op: Op, payload: &[u8]) -> io::Result<usize> {
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4] = op.tag();
        write_two(&mut self.writer, &head, payload)?;
        let mut len = [0u8; 4];
        self.reader.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        self.reply.resize(len, 0);
        self.reader.read_exact(&mut self.reply)?;
        Ok(len)
    }
}
