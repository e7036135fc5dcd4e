//! gatewire on tokio: calls, events and streams with backpressure between
//! Rust services, Python gateway daemons and JavaScript apps, over TCP, Unix
//! sockets and WebSocket.
//!
//! This crate drives the sans-IO protocol core (`gatewire-proto`) over real
//! transports. Either end may call the other: a [`Router`] on each side
//! serves what the peer sends.
//!
//! ```no_run
//! # async fn f() -> gatewire::Result<()> {
//! use gatewire::{Builder, Message, Router};
//!
//! // A gateway serving method 1 on a Unix socket and a local WebSocket.
//! let router = Router::new().unary(1, |_ctx, req: Message| async move { Ok(req) });
//! let server = Builder::new()
//!     .router(router)
//!     .serve(&["unix:///run/gateway/gw.sock", "ws://127.0.0.1:8080/gw"])
//!     .await?;
//!
//! // A client.
//! let conn = gatewire::connect("unix:///run/gateway/gw.sock").await?;
//! let reply = conn.call(1, Message::raw(&b"status"[..])).await?;
//! # let _ = (server, reply); Ok(()) }
//! ```
//!
//! # Layers
//!
//! - `gatewire-proto` holds every protocol rule and no I/O;
//! - this crate adds transports ([`transport`]), the connection driver
//!   ([`Connection`]), handlers ([`Router`]), streams and a [`Server`].
//!
//! # Security
//!
//! `tls://` and `wss://` endpoints run over TLS 1.3 (rustls with *ring*;
//! [`Builder::tls_server`], [`Builder::tls_client`], optional client
//! certificates). A server's [`Authenticator`] decides in the handshake who
//! may connect (tokens, JWT, client certificates, Unix credentials; see
//! [`auth`]), an [`Authorizer`] decides per call, and handlers read the
//! caller's [`Identity`] from [`CallContext::identity`]. `docs/SECURITY.md`
//! has the threat model and a deployment guide.
//!
//! # Cancel safety
//!
//! - Dropping a [`Connection::call`] future before it completes cancels the
//!   call: a CANCEL goes to the peer, whose handler future is dropped. No
//!   response is delivered afterwards.
//! - A handler's future is dropped when the caller cancels or its deadline
//!   passes; the call's concurrency slot is released only after the handler
//!   has finished unwinding, so cancelled work never lets more handlers run
//!   than `max_in_flight`.
//! - Dropping a [`RecvStream`] of a stream we opened, before the peer ended
//!   it, cancels the stream.
//! - [`SendStream::send`] is not cancel safe in one respect: if its future
//!   is dropped after the message was accepted, the message is still sent.
//!
//! # Connection loss
//!
//! When a connection ends for any reason, every pending call and stream
//! fails at once with an [`Error`] for which `is_closed()` is true; nothing
//! waits forever.

pub mod auth;
pub mod codec;
pub mod codegen;
mod compress;
mod config;
mod conn;
pub mod endpoint;
mod error;
mod router;
mod server;
mod stream;
pub mod transport;

pub use auth::{Authenticator, Authorizer, Identity, Token};
pub use config::Builder;
pub use conn::{Connection, Stats};
pub use endpoint::Endpoint;
pub use error::{Error, Result, Status};
pub use gatewire_proto::{Codec, ErrorCode, Limits, Message, Timeouts};
pub use router::{BoxFuture, CallContext, Router};
pub use server::Server;
pub use stream::{RecvStream, SendStream};
pub use transport::tls::{TlsClientConfig, TlsServerConfig};

/// Internals the fuzz targets in `fuzz/` drive directly; built only with
/// the `fuzzing` feature, which nothing else enables.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::{Message, Status};

    /// The runtime's zstd compression of a message body.
    pub fn compress(message: Message, level: i32) -> Message {
        crate::compress::compress(message, level)
    }

    /// The runtime's bounded zstd decompression.
    pub fn decompress(message: Message) -> Result<Message, Status> {
        crate::compress::decompress(message)
    }
}

/// Connects to `url` with the default configuration and no handlers.
pub async fn connect(url: &str) -> Result<Connection> {
    Builder::new().connect(url).await
}
