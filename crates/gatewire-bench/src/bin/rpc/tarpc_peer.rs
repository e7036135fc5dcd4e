//! tarpc over TCP with its serde transport and bincode, configured as its
//! README does (a spawned client, every request handled in its own task),
//! plus `TCP_NODELAY` on both ends (tarpc's `tcp::connect`/`listen` leave
//! Nagle on, which would add delayed-ACK stalls unrelated to tarpc) and a
//! 16 MiB frame limit (the default 8 MiB cannot carry the 8 MiB cases).

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::LengthDelimitedCodec;

use crate::{ACK, BoxError, MAX_MESSAGE, Op, Rpc};

#[allow(unreachable_pub, missing_docs, clippy::use_self)]
mod service {
    use bytes::Bytes;

    /// The benchmark service.
    #[tarpc::service]
    pub trait Bench {
        /// Returns `payload`.
        async fn echo(payload: Bytes) -> Bytes;
        /// Returns one byte.
        async fn sink(payload: Bytes) -> Bytes;
    }
}

use service::{Bench, BenchClient};

#[derive(Clone)]
struct Handler;

impl Bench for Handler {
    async fn echo(self, _: context::Context, payload: Bytes) -> Bytes {
        payload
    }

    async fn sink(self, _: context::Context, payload: Bytes) -> Bytes {
        drop(payload);
        Bytes::from_static(ACK)
    }
}

fn framing() -> tokio_util::codec::length_delimited::Builder {
    let mut builder = LengthDelimitedCodec::builder();
    builder.max_frame_length(MAX_MESSAGE);
    builder
}

/// Serves on `host:port`; returns the bound address.
pub(crate) async fn serve(addr: &str) -> io::Result<String> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let transport = serde_transport::new(framing().new_framed(stream), Bincode::default());
            let requests = BaseChannel::with_defaults(transport).execute(Handler.serve());
            tokio::spawn(requests.for_each(|response| async move {
                tokio::spawn(response);
            }));
        }
    });
    Ok(local.to_string())
}

/// One tarpc client (one connection).
#[derive(Clone)]
pub(crate) struct Client(BenchClient);

impl Client {
    pub(crate) async fn connect(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let transport = serde_transport::new(framing().new_framed(stream), Bincode::default());
        Ok(Self(BenchClient::new(client::Config::default(), transport).spawn()))
    }
}

impl Rpc for Client {
    async fn call(&mut self, op: Op, payload: Bytes) -> Result<usize, BoxError> {
        let reply = match op {
            Op::Echo => self.0.echo(context::current(), payload).await?,
            Op::Sink => self.0.sink(context::current(), payload).await?,
        };
        Ok(reply.len())
    }
}
