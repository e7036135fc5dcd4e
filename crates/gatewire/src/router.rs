//! Handlers for the calls, streams and events a peer sends us.
//!
//! Both ends of a connection have a [`Router`]: a gateway calls the desktop
//! exactly as the desktop calls the gateway.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Message;
use crate::auth::Identity;
use crate::conn::Connection;
use crate::error::Status;
use crate::stream::{RecvStream, SendStream};
use crate::transport::PeerInfo;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type UnaryFn = dyn Fn(CallContext, Message) -> BoxFuture<Result<Message, Status>> + Send + Sync;
type StreamFn = dyn Fn(CallContext, Message, RecvStream, SendStream) -> BoxFuture<Result<(), Status>> + Send + Sync;
type EventFn = dyn Fn(CallContext, Message) -> BoxFuture<()> + Send + Sync;

/// What a handler knows about the call it serves.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub(crate) id: u32,
    pub(crate) method: u32,
    pub(crate) deadline: Option<tokio::time::Instant>,
    pub(crate) cancel: CancellationToken,
    pub(crate) connection: Connection,
}

impl CallContext {
    /// The method id.
    pub fn method(&self) -> u32 {
        self.method
    }

    /// The call id (unique per direction on this connection).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }

    /// Fires when the caller cancels or the deadline passes. The handler's
    /// future is dropped at that moment anyway; long blocking work can watch
    /// this token to stop early.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The connection the call arrived on: handlers may call the peer back.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// What the transport knows about the peer (address, Unix credentials,
    /// TLS session and client certificate).
    pub fn peer(&self) -> PeerInfo {
        self.connection.peer_info()
    }

    /// Server side: who the caller authenticated as, in the handshake or its
    /// latest re-authentication (anonymous when no authenticator is
    /// configured); see [`crate::auth`]. Client side: `None`.
    pub fn identity(&self) -> Option<std::sync::Arc<Identity>> {
        self.connection.identity()
    }
}

/// Handlers by method id.
#[derive(Clone, Default)]
pub struct Router {
    pub(crate) unary: HashMap<u32, Arc<UnaryFn>>,
    pub(crate) streams: HashMap<u32, Arc<StreamFn>>,
    pub(crate) events: HashMap<u32, Arc<EventFn>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut u: Vec<_> = self.unary.keys().collect();
        u.sort();
        let mut s: Vec<_> = self.streams.keys().collect();
        s.sort();
        let mut e: Vec<_> = self.events.keys().collect();
        e.sort();
        f.debug_struct("Router").field("unary", &u).field("streams", &s).field("events", &e).finish()
    }
}

impl Router {
    /// An empty router: every call is answered with `UNKNOWN_METHOD`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves unary calls to `method`.
    #[must_use]
    pub fn unary<F, Fut>(mut self, method: u32, handler: F) -> Self
    where
        F: Fn(CallContext, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Message, Status>> + Send + 'static,
    {
        self.unary.insert(method, Arc::new(move |ctx, msg| Box::pin(handler(ctx, msg))));
        self
    }

    /// Serves streams opened on `method`. The handler gets the opening
    /// message, the peer's messages and a sender for its own; returning ends
    /// our half of the stream (an error ends the stream with ERROR).
    #[must_use]
    pub fn stream<F, Fut>(mut self, method: u32, handler: F) -> Self
    where
        F: Fn(CallContext, Message, RecvStream, SendStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        self.streams.insert(method, Arc::new(move |ctx, msg, rx, tx| Box::pin(handler(ctx, msg, rx, tx))));
        self
    }

    /// Handles one-way events on `method`, one at a time per connection, in
    /// arrival order.
    #[must_use]
    pub fn event<F, Fut>(mut self, method: u32, handler: F) -> Self
    where
        F: Fn(CallContext, Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.events.insert(method, Arc::new(move |ctx, msg| Box::pin(handler(ctx, msg))));
        self
    }
}
