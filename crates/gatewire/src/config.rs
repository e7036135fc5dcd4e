//! Connection configuration and the builder that connects and serves.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatewire_proto::connection::Role;
use gatewire_proto::control::Service;
use gatewire_proto::{Limits, Timeouts};

use crate::auth::{AuthPayload, Authenticator, Authorizer, Token};
use crate::conn::Connection;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::router::Router;
use crate::server::Server;
use crate::transport::Transport;
use crate::transport::listener::{self, ConnectOptions};
use crate::transport::tls::{TlsClientConfig, TlsServerConfig};

/// Everything a connection is configured with. Build it with [`Builder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    pub(crate) compression_threshold: Option<usize>,
    pub(crate) compression_level: i32,
    pub(crate) event_queue: usize,
    /// The HELLO `auth` payload; redacted in `Debug` (it is often a token).
    pub(crate) auth: Option<AuthPayload>,
    pub(crate) max_connections: usize,
    pub(crate) ws_origins: Vec<String>,
    // Security (auth.rs, transport/tls.rs): who may connect, what they may
    // call, and the TLS settings of `tls://` and `wss://`.
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) tls_server: Option<TlsServerConfig>,
    pub(crate) tls_client: Option<TlsClientConfig>,
    /// Services this endpoint offers and uses, sent in the handshake,
    /// checked by the server (§10.3) and listed by LIST_SERVICES (§10.4).
    pub(crate) services: Vec<Service>,
    pub(crate) uses: Vec<Service>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            compression_threshold: None,
            compression_level: 1,
            event_queue: 1024,
            auth: None,
            max_connections: 10_000,
            ws_origins: Vec::new(),
            authenticator: None,
            authorizer: None,
            tls_server: None,
            tls_client: None,
            services: Vec::new(),
            uses: Vec::new(),
        }
    }
}

/// Builds connections and servers.
///
/// ```no_run
/// # async fn f() -> gatewire::Result<()> {
/// use gatewire::{Builder, Message, Router};
/// let router = Router::new().unary(1, |_ctx, req: Message| async move { Ok(req) });
/// let server = Builder::new().router(router).serve(&["tcp://127.0.0.1:4000"]).await?;
/// let client = Builder::new().connect("tcp://127.0.0.1:4000").await?;
/// let reply = client.call(1, Message::raw(&b"hello"[..])).await?;
/// # let _ = (server, reply); Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Builder {
    config: Config,
    router: Router,
}

impl Builder {
    /// Defaults: the limits of `gatewire_proto::Limits::default()`, keepalive
    /// 20 s / 20 s, compression off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every limit at once.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Replaces every timeout at once.
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.config.timeouts = timeouts;
        self
    }

    /// Largest frame payload we accept (default 1 MiB).
    #[must_use]
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.config.limits.max_frame = bytes;
        self
    }

    /// Largest message we accept (default 1 MiB).
    #[must_use]
    pub fn max_message(mut self, bytes: u32) -> Self {
        self.config.limits.max_message = bytes;
        self
    }

    /// Calls and streams the peer may have open towards us (default 100).
    #[must_use]
    pub fn max_in_flight(mut self, calls: u32) -> Self {
        self.config.limits.max_in_flight = calls;
        self
    }

    /// Initial credit of each stream we receive on (default 1 MiB).
    #[must_use]
    pub fn stream_credit(mut self, bytes: u32) -> Self {
        self.config.limits.initial_stream_credit = bytes;
        self
    }

    /// Connection credit (default 4 MiB).
    #[must_use]
    pub fn connection_credit(mut self, bytes: u32) -> Self {
        self.config.limits.connection_credit = bytes;
        self
    }

    /// Keepalive: a PING after `interval` of silence, and the connection
    /// closes if nothing arrives within `timeout` after it. `None` disables.
    #[must_use]
    pub fn keepalive(mut self, interval: Option<Duration>, timeout: Duration) -> Self {
        self.config.timeouts.keepalive_interval = interval;
        self.config.timeouts.keepalive_timeout = timeout;
        self
    }

    /// Closes the connection gracefully after this long with nothing open
    /// and nothing exchanged (default off).
    #[must_use]
    pub fn idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.config.timeouts.idle = idle;
        self
    }

    /// Time calls in flight get to finish during a graceful shutdown
    /// (default 30 s).
    #[must_use]
    pub fn drain_timeout(mut self, drain: Duration) -> Self {
        self.config.timeouts.drain = drain;
        self
    }

    /// Offers zstd and compresses messages of at least `threshold` bytes when
    /// the peer offers it too. `None` (the default) disables compression.
    #[must_use]
    pub fn compression(mut self, threshold: Option<usize>) -> Self {
        self.config.compression_threshold = threshold;
        self
    }

    /// Events queued per method for its handler before new ones are dropped
    /// (default 1024).
    #[must_use]
    pub fn event_queue(mut self, events: usize) -> Self {
        self.config.event_queue = events.max(1);
        self
    }

    /// Authentication payload sent in the handshake (clients). It is never
    /// shown by `Debug`.
    #[must_use]
    pub fn auth(mut self, payload: impl Into<Bytes>) -> Self {
        self.config.auth = Some(AuthPayload(payload.into()));
        self
    }

    /// A bearer token (static token or JWT) sent as the handshake's
    /// authentication payload (clients); the same as [`Builder::auth`] with
    /// the token's bytes. Tokens never travel in URLs.
    #[must_use]
    pub fn token(self, token: impl Into<Token>) -> Self {
        self.auth(token.into().expose().to_vec())
    }

    /// Decides which clients a server accepts, and who they are (see
    /// [`crate::auth`]). Without one (the default) every client is accepted
    /// with an anonymous identity. A refused client's connect fails with the
    /// refusal's code (`UNAUTHENTICATED`).
    #[must_use]
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.config.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Decides, before each incoming call or stream, whether the peer's
    /// identity may call the method; a denied call gets `PERMISSION_DENIED`
    /// and its handler does not run. Default: every call is allowed.
    #[must_use]
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.config.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Certificate, key and client-certificate policy for the `tls://` and
    /// `wss://` endpoints a server binds (required to bind them).
    #[must_use]
    pub fn tls_server(mut self, config: TlsServerConfig) -> Self {
        self.config.tls_server = Some(config);
        self
    }

    /// Trust anchors, client certificate and server name for connecting to
    /// `tls://` and `wss://` endpoints (required to connect to them).
    #[must_use]
    pub fn tls_client(mut self, config: TlsClientConfig) -> Self {
        self.config.tls_client = Some(config);
        self
    }

    /// Connections a server keeps at once (default 10,000).
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections.max(1);
        self
    }

    /// Origins a WebSocket server accepts from browsers; a present Origin
    /// that is not listed gets HTTP 403. Empty (the default) accepts any.
    #[must_use]
    pub fn ws_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.ws_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Offers (serves) `service`: it is advertised in the handshake and
    /// listed by the built-in LIST_SERVICES method. A server refuses, with
    /// `INCOMPATIBLE` and a message naming the difference, a client that uses
    /// a service it does not offer or an incompatible version of one
    /// (`docs/PROTOCOL.md` §10.3). Generated code provides the descriptor
    /// (see [`crate::codegen::Service`]).
    #[must_use]
    pub fn offer(mut self, service: Service) -> Self {
        self.config.services.push(service);
        self
    }

    /// Uses (calls on the peer) `service`: it is advertised in the handshake
    /// and listed by LIST_SERVICES. A client whose server does not offer a
    /// compatible `service` fails to connect with `INCOMPATIBLE`; a server
    /// refuses clients that do not offer the services it uses.
    #[must_use]
    pub fn uses(mut self, service: Service) -> Self {
        self.config.uses.push(service);
        self
    }

    /// Handlers for calls, streams and events the peer sends us.
    #[must_use]
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    fn checked(self) -> Result<(Config, Router)> {
        self.config.limits.validate().map_err(|e| Error::config(e.to_string()))?;
        Ok((self.config, self.router))
    }

    /// Connects to `url` (`tcp://host:port`, `unix:///path`,
    /// `ws://host:port/path`, and with [`Builder::tls_client`]
    /// `tls://host:port` and `wss://host:port/path`) and completes the
    /// handshake.
    pub async fn connect(self, url: &str) -> Result<Connection> {
        let endpoint: Endpoint =
            url.parse().map_err(|e: crate::endpoint::EndpointError| Error::config(e.to_string()))?;
        let opts = ConnectOptions {
            max_frame: self.config.limits.max_frame,
            handshake_timeout: self.config.timeouts.handshake,
            tls: self.config.tls_client.clone(),
            ..ConnectOptions::default()
        };
        let transport = listener::connect(&endpoint, &opts).await?;
        self.connect_transport(transport).await
    }

    /// Runs the client side of a connection over a transport of your own.
    pub async fn connect_transport(self, transport: Box<dyn Transport>) -> Result<Connection> {
        let (config, router) = self.checked()?;
        Connection::start(transport, Role::Client, config, router).await
    }

    /// Runs the server side of a connection over a transport of your own.
    pub async fn accept_transport(self, transport: Box<dyn Transport>) -> Result<Connection> {
        let (config, router) = self.checked()?;
        Connection::start(transport, Role::Server, config, router).await
    }

    /// Binds every URL and serves connections on all of them.
    pub async fn serve(self, urls: &[&str]) -> Result<Server> {
        let (config, router) = self.checked()?;
        Server::bind(urls, config, router).await
    }
}
