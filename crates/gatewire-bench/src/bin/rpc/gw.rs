//! gatewire itself: method 1 echoes, method 2 answers [`ACK`].

use bytes::Bytes;
use gatewire::{Builder, Connection, Message, Router, Server};

use crate::{ACK, BoxError, MAX_MESSAGE, Op, Rpc};

const ECHO: u32 = 1;
const SINK: u32 = 2;

/// Calls either end lets the other have open at once: above the 256 the
/// throughput case keeps in flight (the default is 100).
const MAX_IN_FLIGHT: u32 = 1024;

/// Both ends: 16 MiB messages (the 8 MiB cases travel in the default
/// 64 KiB fragments, so the 1 MiB frame limit stays), 1024 calls in flight;
/// everything else is the default.
fn builder() -> Builder {
    Builder::new().max_message(MAX_MESSAGE as u32).max_in_flight(MAX_IN_FLIGHT)
}

/// Serves `url` (`tcp://`, `unix://`, `ws://`); returns the server, to keep,
/// and the URL to connect to.
pub(crate) async fn serve(url: &str) -> Result<(Server, String), BoxError> {
    let router = Router::new()
        .unary(ECHO, |_ctx, req: Message| async move { Ok(req) })
        .unary(SINK, |_ctx, _req: Message| async move { Ok(Message::raw(Bytes::from_static(ACK))) });
    let server = builder().router(router).serve(&[url]).await?;
    let url = server.local_endpoints().first().ok_or("no endpoint bound")?.to_string();
    Ok((server, url))
}

/// One gatewire connection.
#[derive(Clone)]
pub(crate) struct Client(Connection);

impl Client {
    pub(crate) async fn connect(url: &str) -> Result<Self, BoxError> {
        Ok(Self(builder().connect(url).await?))
    }

    /// The connection's counters.
    pub(crate) fn stats(&self) -> gatewire::Stats {
        self.0.stats()
    }
}

impl Rpc for Client {
    async fn call(&mut self, op: Op, payload: Bytes) -> Result<usize, BoxError> {
        let method = match op {
            Op::Echo => ECHO,
            Op::Sink => SINK,
        };
        Ok(self.0.call(method, Message::raw(payload)).await?.body.len())
    }
}
