//! WebSocket: a [`Framing::Message`] transport over TCP (`ws://`) or over
//! TLS (`wss://`), built on tokio-tungstenite.
//!
//! Every gatewire frame travels as exactly one **binary** WebSocket message
//! (hostile inputs H2): the reader returns one whole message per call and the
//! writer sends each frame of a [`WriteBatch`] as its own message, then
//! flushes once.
//!
//! # Handshake
//!
//! The client asks for the `gatewire.v1` subprotocol ([`SUBPROTOCOL`]) and
//! fails unless the server's response selects it. The server
//! ([`WsListener`]) refuses, before any upgrade:
//!
//! - a present `Origin` that is not in [`WsOptions::allowed_origins`] (when
//!   that list is non-empty) with HTTP 403, and more than one `Origin`
//!   header with HTTP 400 (H1). A missing `Origin` means a non-browser
//!   client and is let through: Origin is a CSRF defence, not
//!   authentication;
//! - a request path other than the listener's with HTTP 404;
//! - a client that does not offer `gatewire.v1` with HTTP 400.
//!
//! The whole handshake, TCP connect included on the client, must finish
//! within [`WsOptions::handshake_timeout`] (default 10 s). tungstenite bounds
//! the request head itself (H3): at most 124 headers and 64 KiB, in at most
//! 512 reads; those limits are built into tungstenite and not configurable.
//! Handshakes run in their own tasks, at most
//! [`WsOptions::max_pending_handshakes`] at a time, so a slow client cannot
//! hold up [`WsListener::accept`].
//!
//! # Limits
//!
//! - Incoming messages and WebSocket frames are capped at
//!   [`WsOptions::max_message_size`] (default 1 MiB + 16, the default
//!   gatewire max frame plus its header). A larger one fails the read with
//!   [`io::ErrorKind::InvalidData`] as soon as its header arrives.
//!   Continuation fragments count against the same cap. tungstenite does
//!   reserve a frame's declared length (up to the cap) once its header
//!   arrives, so each connection can cost up to one cap of memory.
//! - Text messages fail the read with [`io::ErrorKind::InvalidData`]; so does
//!   an empty binary message (a gatewire frame is at least 16 bytes, and
//!   `Ok(0)` means end of input).
//! - Pings are answered and pongs absorbed by tungstenite; a close frame or
//!   the end of the connection after a close handshake reads as `Ok(0)`,
//!   and the close reply is sent then (or by the next write or
//!   [`TransportWrite::shutdown`] if the socket was full). A connection
//!   that ends without a close frame fails the read with `UnexpectedEof`.
//! - The write buffer is bounded ([`MAX_WRITE_BUFFER_SIZE`]); since every
//!   batch is flushed before the next, it holds at most
//!   [`WRITE_BUFFER_SIZE`] plus one message in practice.
//! - permessage-deflate is never negotiated: tungstenite does not implement
//!   it, so the server's response carries no `Sec-WebSocket-Extensions`
//!   and a compression bomb (H4) has nothing to inflate. gatewire has its
//!   own zstd.
//! - Unmasked client frames are refused, as RFC 6455 requires.
//!
//! # Over TLS (`wss://`)
//!
//! [`connect_tls`] and [`WsListener::bind_tls`] put the TLS layer of
//! [`super::tls`] under the same WebSocket: the server's certificate and
//! name are verified, client certificates (mTLS) are available, and the
//! ALPN protocol is `http/1.1`, which browsers offer for WebSocket
//! (`gatewire/1` is for `tls://`; here the `gatewire.v1` subprotocol
//! identifies the protocol). One deadline,
//! [`WsOptions::handshake_timeout`], covers the TCP connect, the TLS
//! handshake and the upgrade.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use gatewire_proto::HEADER_LEN;
use gatewire_proto::frame::MAX_FRAME_CEILING;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError, error::ProtocolError};

use super::tls::{self, Alpn, TlsClientConfig, TlsInfo, TlsServerConfig};
use super::{Framing, PeerInfo, Transport, TransportRead, TransportWrite, WriteBatch};
use crate::endpoint::Authority;

/// The WebSocket subprotocol gatewire requires of both ends.
pub const SUBPROTOCOL: &str = "gatewire.v1";

/// Default [`WsOptions::max_message_size`]: the default 1 MiB max frame
/// payload plus the 16-byte frame header.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = (1 << 20) + HEADER_LEN;

/// Default [`WsOptions::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`WsOptions::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 100;

/// Bytes tungstenite reads from the socket at a time; allocated up front
/// for every connection.
pub const READ_BUFFER_SIZE: usize = 64 * 1024;

/// Bytes gathered before tungstenite writes to the socket (every batch is
/// flushed anyway).
pub const WRITE_BUFFER_SIZE: usize = 64 * 1024;

/// Hard cap on tungstenite's write buffer: [`WRITE_BUFFER_SIZE`] plus the
/// largest message gatewire can send (a frame at the 16 MiB − 1 ceiling
/// plus its header) plus the largest WebSocket frame header. Never
/// unbounded.
pub const MAX_WRITE_BUFFER_SIZE: usize = WRITE_BUFFER_SIZE + MAX_FRAME_CEILING as usize + HEADER_LEN + 14;

/// WebSocket settings for one side of a connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsOptions {
    /// Largest incoming message (and WebSocket frame) in bytes; default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]. Set it to the gatewire max frame plus
    /// [`HEADER_LEN`] ([`WsOptions::for_max_frame`]). A larger message fails
    /// the read with `InvalidData`; each connection may hold up to this much
    /// for a message being received.
    pub max_message_size: usize,
    /// Server: the `Origin` values allowed, compared byte for byte (browsers
    /// send `scheme://host[:port]`, lowercase, no trailing slash). Empty,
    /// the default, allows any. When non-empty, a request with an `Origin`
    /// not in the list gets HTTP 403; one without `Origin` is allowed.
    pub allowed_origins: Vec<String>,
    /// Client: an `Origin` header to send; default none (non-browser
    /// clients send none).
    pub origin: Option<String>,
    /// Deadline for the whole handshake (client: TCP connect included);
    /// default 10 s.
    pub handshake_timeout: Duration,
    /// Server: handshakes in progress at once, default 100 (`0` counts as
    /// 1); while that many are pending the listener stops accepting TCP
    /// connections. Each costs a socket, a task and up to 64 KiB of
    /// request head.
    pub max_pending_handshakes: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            allowed_origins: Vec::new(),
            origin: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
        }
    }
}

impl WsOptions {
    /// Defaults, with the message cap set for a gatewire max frame payload
    /// of `max_frame` bytes (`max_frame + 16`).
    pub fn for_max_frame(max_frame: u32) -> Self {
        Self { max_message_size: max_frame as usize + HEADER_LEN, ..Self::default() }
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`allowed_origins`](Self::allowed_origins).
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(mut self, origins: I) -> Self {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`origin`](Self::origin).
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`max_pending_handshakes`](Self::max_pending_handshakes).
    pub fn max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending_handshakes = n;
        self
    }

    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_SIZE)
            .write_buffer_size(WRITE_BUFFER_SIZE)
            .max_write_buffer_size(MAX_WRITE_BUFFER_SIZE)
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
            .accept_unmasked_frames(false)
    }
}

/// The HTTP status of a refused WebSocket upgrade, as the inner error of
/// the [`io::Error`] that [`connect`] returns
/// (`err.get_ref().and_then(|e| e.downcast_ref::<UpgradeRefused>())`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("websocket upgrade refused with HTTP {status}")]
pub struct UpgradeRefused {
    /// The response status code (400, 403, 404...).
    pub status: u16,
}

/// An established WebSocket connection, over TCP (`S = TcpStream`) or TLS
/// ([`WssTransport`]).
#[derive(Debug)]
pub struct WsTransport<S = TcpStream> {
    stream: WebSocketStream<S>,
    peer: PeerInfo,
}

/// An established WebSocket connection over TLS (`wss://`).
pub type WssTransport = WsTransport<TlsStream<TcpStream>>;

/// What a byte stream under a WebSocket must be.
pub trait WsStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WsStream for S {}

impl<S: WsStream> Transport for WsTransport<S> {
    fn framing(&self) -> Framing {
        Framing::Message
    }

    fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportRead>, Box<dyn TransportWrite>) {
        let (w, r) = self.stream.split();
        (Box::new(WsRead(r)), Box::new(WsWrite(w)))
    }
}

/// Connects to `ws://host:port{path}` and completes the upgrade, requiring
/// the `gatewire.v1` subprotocol, within
/// [`opts.handshake_timeout`](WsOptions::handshake_timeout).
///
/// Errors: `TimedOut` past the deadline; `ConnectionRefused` with an
/// [`UpgradeRefused`] inside when the server answers with an HTTP error;
/// `InvalidData` when the server does not select the subprotocol;
/// `InvalidInput` for a host, path or origin that cannot go in a request.
pub async fn connect(host: &str, port: u16, path: &str, opts: &WsOptions) -> io::Result<WsTransport> {
    let request = client_request("ws", host, port, path, opts)?;
    let config = opts.config();
    with_deadline(opts.handshake_timeout, async move {
        let stream = TcpStream::connect((host, port)).await?;
        super::tcp::tune(&stream)?;
        let addr = stream.peer_addr()?;
        let peer = PeerInfo { address: Some(format!("ws://{addr}{path}")), credentials: None, tls: None };
        client_upgrade(stream, request, config, peer).await
    })
    .await
}

/// Connects to `wss://host:port{path}`: TCP, then TLS (the server's
/// certificate verified for `host` or the configured server name, ALPN
/// `http/1.1`), then the upgrade as in [`connect`], all within
/// [`opts.handshake_timeout`](WsOptions::handshake_timeout).
///
/// Errors: those of [`connect`], and `InvalidData` wrapping a rustls error
/// when the TLS handshake fails (certificate, name, alert).
pub async fn connect_tls(
    host: &str,
    port: u16,
    path: &str,
    opts: &WsOptions,
    tls_config: &TlsClientConfig,
) -> io::Result<WssTransport> {
    let request = client_request("wss", host, port, path, opts)?;
    let config = opts.config();
    with_deadline(opts.handshake_timeout, async move {
        let stream = TcpStream::connect((host, port)).await?;
        super::tcp::tune(&stream)?;
        let addr = stream.peer_addr()?;
        let (stream, info) = tls::client_handshake(stream, host, tls_config, Alpn::Http11).await?;
        let peer = PeerInfo { address: Some(format!("wss://{addr}{path}")), credentials: None, tls: Some(info) };
        client_upgrade(stream, request, config, peer).await
    })
    .await
}

/// The upgrade request: the `gatewire.v1` subprotocol and the Origin, if any.
fn client_request(scheme: &str, host: &str, port: u16, path: &str, opts: &WsOptions) -> io::Result<Request> {
    let url = format!("{scheme}://{}{path}", Authority(host, port));
    let mut request = url.as_str().into_client_request().map_err(ws_error)?;
    let headers = request.headers_mut();
    headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    if let Some(origin) = &opts.origin {
        let value = HeaderValue::from_str(origin)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("invalid Origin header `{origin}`")))?;
        headers.insert(header::ORIGIN, value);
    }
    Ok(request)
}

/// The client's upgrade over an established byte stream, requiring the
/// subprotocol.
async fn client_upgrade<S: WsStream>(
    stream: S,
    request: Request,
    config: WebSocketConfig,
    peer: PeerInfo,
) -> io::Result<WsTransport<S>> {
    let (stream, response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await.map_err(ws_error)?;
    let selected = response.headers().get(header::SEC_WEBSOCKET_PROTOCOL);
    if selected.map(HeaderValue::as_bytes) != Some(SUBPROTOCOL.as_bytes()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("websocket server did not select the {SUBPROTOCOL} subprotocol"),
        ));
    }
    Ok(WsTransport { stream, peer })
}

/// Turns an accepted TCP connection into the stream the upgrade runs on
/// (nothing for `ws://`, the TLS handshake for `wss://`), with what that
/// layer learnt about the peer.
type Wrap<S> =
    Arc<dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = io::Result<(S, Option<TlsInfo>)>> + Send>> + Send + Sync>;

/// A TCP listener that upgrades connections to WebSocket, directly
/// ([`WsListener::bind`]) or after a TLS handshake ([`WsListener::bind_tls`],
/// a [`WssListener`]).
pub struct WsListener<S = TcpStream> {
    tcp: tokio::net::TcpListener,
    local: SocketAddr,
    path: Arc<str>,
    opts: Arc<WsOptions>,
    scheme: &'static str,
    wrap: Wrap<S>,
    handshakes: JoinSet<io::Result<WsTransport<S>>>,
}

/// A listener for `wss://`: TLS, then the WebSocket upgrade.
pub type WssListener = WsListener<TlsStream<TcpStream>>;

impl<S> std::fmt::Debug for WsListener<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsListener")
            .field("scheme", &self.scheme)
            .field("local", &self.local)
            .field("path", &self.path)
            .field("opts", &self.opts)
            .field("pending_handshakes", &self.handshakes.len())
            .finish()
    }
}

impl WssListener {
    /// Binds `wss://host:port{path}`: every connection completes a TLS
    /// handshake with `tls_config` (ALPN `http/1.1`), then the upgrade, both
    /// within [`WsOptions::handshake_timeout`].
    pub async fn bind_tls(
        host: &str,
        port: u16,
        path: &str,
        opts: WsOptions,
        tls_config: TlsServerConfig,
    ) -> io::Result<Self> {
        let tcp = tokio::net::TcpListener::bind((host, port)).await?;
        Self::from_tokio_tls(tcp, path, opts, tls_config)
    }

    /// Wraps a bound tokio listener for `wss://`.
    pub fn from_tokio_tls(
        tcp: tokio::net::TcpListener,
        path: &str,
        opts: WsOptions,
        tls_config: TlsServerConfig,
    ) -> io::Result<Self> {
        let wrap: Wrap<TlsStream<TcpStream>> = Arc::new(move |stream| {
            let tls_config = tls_config.clone();
            Box::pin(async move {
                let (stream, info) = tls::server_handshake(stream, &tls_config, Alpn::Http11).await?;
                Ok((stream, Some(info)))
            })
        });
        Self::with_wrap(tcp, path, opts, "wss", wrap)
    }
}

impl WsListener {
    /// Binds to `host:port`, serving the request path `path` (its query, if
    /// any, is ignored when matching requests).
    pub async fn bind(host: &str, port: u16, path: &str, opts: WsOptions) -> io::Result<Self> {
        let tcp = tokio::net::TcpListener::bind((host, port)).await?;
        Self::from_tokio(tcp, path, opts)
    }

    /// Wraps a bound tokio listener.
    pub fn from_tokio(tcp: tokio::net::TcpListener, path: &str, opts: WsOptions) -> io::Result<Self> {
        let wrap: Wrap<TcpStream> = Arc::new(|stream| Box::pin(async move { Ok((stream, None)) }));
        Self::with_wrap(tcp, path, opts, "ws", wrap)
    }
}

impl<S: WsStream> WsListener<S> {
    fn with_wrap(
        tcp: tokio::net::TcpListener,
        path: &str,
        opts: WsOptions,
        scheme: &'static str,
        wrap: Wrap<S>,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        Ok(Self { tcp, local, path: path.into(), opts: Arc::new(opts), scheme, wrap, handshakes: JoinSet::new() })
    }

    /// The bound address, with the real port when bound to port `0`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The request path served.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Handshakes in progress (or finished and not yet returned by
    /// [`accept`](Self::accept)).
    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Waits for the next connection whose upgrade succeeds.
    ///
    /// Handshakes run concurrently in spawned tasks; a failed one (refused,
    /// timed out, broken) is logged at debug level and not returned. An
    /// error comes from accepting a TCP connection: it may concern that
    /// connection only, so keep accepting after a short backoff. Dropping
    /// the listener aborts the handshakes in progress.
    ///
    /// New TCP connections are taken from the backlog only while this is
    /// awaited; handshakes already started keep running in between.
    ///
    /// Cancel safety: dropping the future loses nothing; the next call
    /// returns handshakes that finished meanwhile.
    pub async fn accept(&mut self) -> io::Result<WsTransport<S>> {
        let max_pending = self.opts.max_pending_handshakes.max(1);
        loop {
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => match done {
                    Ok(Ok(transport)) => return Ok(transport),
                    Ok(Err(e)) => tracing::debug!(error = %e, "websocket handshake failed"),
                    Err(e) => tracing::warn!(error = %e, "websocket handshake task failed"),
                },
                accepted = self.tcp.accept(), if self.handshakes.len() < max_pending => {
                    let (stream, addr) = accepted?;
                    let (path, opts, wrap) = (self.path.clone(), self.opts.clone(), self.wrap.clone());
                    self.handshakes.spawn(server_handshake(stream, addr, path, opts, self.scheme, wrap));
                }
            }
        }
    }
}

async fn server_handshake<S: WsStream>(
    stream: TcpStream,
    addr: SocketAddr,
    path: Arc<str>,
    opts: Arc<WsOptions>,
    scheme: &'static str,
    wrap: Wrap<S>,
) -> io::Result<WsTransport<S>> {
    super::tcp::tune(&stream)?;
    let config = opts.config();
    let address = format!("{scheme}://{addr}{path}");
    let deadline = opts.handshake_timeout;
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let check = move |request: &Request, mut response: Response| match check_request(request, &path, &opts) {
        Ok(()) => {
            response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
            Ok(response)
        }
        Err((status, reason)) => Err(refuse(status, reason)),
    };
    // One deadline for the TLS handshake (wss) and the upgrade.
    with_deadline(deadline, async {
        let (stream, tls) = wrap(stream).await?;
        let stream =
            tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await.map_err(ws_error)?;
        Ok(WsTransport { stream, peer: PeerInfo { address: Some(address), credentials: None, tls } })
    })
    .await
}

/// The server's decision on an upgrade request: `Ok` to upgrade, or the
/// HTTP status and reason to refuse with.
fn check_request(request: &Request, path: &str, opts: &WsOptions) -> Result<(), (StatusCode, &'static str)> {
    let mut origins = request.headers().get_all(header::ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (Some(_), Some(_)) => return Err((StatusCode::BAD_REQUEST, "more than one Origin header")),
        (Some(origin), None)
            if !opts.allowed_origins.is_empty()
                && !opts.allowed_origins.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes()) =>
        {
            return Err((StatusCode::FORBIDDEN, "origin not allowed"));
        }
        _ => {}
    }
    if request.uri().path() != path {
        return Err((StatusCode::NOT_FOUND, "no websocket endpoint at this path"));
    }
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered {
        return Err((StatusCode::BAD_REQUEST, "the gatewire.v1 websocket subprotocol is required"));
    }
    Ok(())
}

fn refuse(status: StatusCode, reason: &'static str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{reason}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(reason.len() + 1));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn with_deadline<T>(deadline: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(deadline, f).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("websocket handshake did not finish within {deadline:?}"),
        )),
    }
}

fn ws_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::Http(response) => {
            io::Error::new(io::ErrorKind::ConnectionRefused, UpgradeRefused { status: response.status().as_u16() })
        }
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("websocket message of {size} bytes exceeds the limit of {max_size}"),
        ),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "websocket connection is closed")
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            io::Error::new(io::ErrorKind::UnexpectedEof, "websocket connection ended without a close frame")
        }
        WsError::WriteBufferFull(_) => io::Error::other("websocket write buffer full"),
        e @ (WsError::Url(_) | WsError::HttpFormat(_)) => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        e => io::Error::new(io::ErrorKind::InvalidData, format!("websocket: {e}")),
    }
}

struct WsRead<S>(SplitStream<WebSocketStream<S>>);

struct WsWrite<S>(SplitSink<WebSocketStream<S>, Message>);

#[async_trait]
impl<S: WsStream> TransportRead for WsRead<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // `next` takes a message only when it completes: cancel safe.
        loop {
            match self.0.next().await {
                Some(Ok(Message::Binary(data))) => {
                    if data.is_empty() {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty websocket binary message"));
                    }
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "text messages are not allowed"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queues its close reply until the next read
                    // or write; one poll that does not wait pushes it out.
                    // Whatever that poll would have waited for is dropped,
                    // which loses nothing: the connection is over.
                    let _ = self.0.next().now_or_never();
                    return Ok(0);
                }
                None => return Ok(0),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(0),
                Some(Err(e)) => return Err(ws_error(e)),
            }
        }
    }
}

#[async_trait]
impl<S: WsStream> TransportWrite for WsWrite<S> {
    async fn write(&mut self, batch: &WriteBatch) -> io::Result<()> {
        if batch.ends.last().copied().unwrap_or(0) != batch.buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write batch has bytes after its last frame end; a message transport needs frame ends",
            ));
        }
        for frame in batch.frames() {
            self.0.feed(Message::Binary(Bytes::copy_from_slice(frame))).await.map_err(ws_error)?;
        }
        self.0.flush().await.map_err(ws_error)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        // Sends a close frame and flushes; the peer's close comes back
        // through the reading half as `Ok(0)`.
        self.0.close().await.map_err(ws_error)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;
    use tokio::time::timeout;
    use tokio_tungstenite::tungstenite::handshake::client::Response as ClientResponse;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A listener on 127.0.0.1 whose accepted transports arrive on a
    /// channel; returns the port.
    async fn serve(path: &str, opts: WsOptions) -> (u16, mpsc::Receiver<WsTransport>) {
        let mut listener = WsListener::bind("127.0.0.1", 0, path, opts).await.unwrap();
        let port = listener.local_addr().port();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok(t) = listener.accept().await {
                if tx.send(t).await.is_err() {
                    return;
                }
            }
        });
        (port, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<WsTransport>) -> WsTransport {
        timeout(WAIT, rx.recv()).await.expect("accepted in time").expect("listener alive")
    }

    /// A tungstenite client with full control of the request headers.
    async fn raw_client(
        port: u16,
        path: &str,
        protocol: Option<&str>,
        origins: &[&str],
    ) -> Result<(WebSocketStream<TcpStream>, ClientResponse), WsError> {
        let mut request = format!("ws://127.0.0.1:{port}{path}").into_client_request().unwrap();
        if let Some(p) = protocol {
            request.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(p).unwrap());
        }
        for o in origins {
            request.headers_mut().append(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await.expect("handshake in time")
    }

    fn refused_status(result: Result<(WebSocketStream<TcpStream>, ClientResponse), WsError>) -> u16 {
        match result {
            Err(WsError::Http(response)) => response.status().as_u16(),
            Err(e) => panic!("expected an HTTP refusal, got {e}"),
            Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
        }
    }

    fn upgrade_refused(err: &io::Error) -> Option<u16> {
        err.get_ref().and_then(|e| e.downcast_ref::<UpgradeRefused>()).map(|r| r.status)
    }

    fn batch(frames: &[&[u8]]) -> WriteBatch {
        let mut b = WriteBatch::default();
        for f in frames {
            b.buf.extend_from_slice(f);
            b.ends.push(b.buf.len());
        }
        b
    }

    #[tokio::test]
    async fn round_trip_of_several_frames() {
        let (port, mut accepted) = serve("/rpc", WsOptions::default()).await;
        let client = timeout(WAIT, connect("127.0.0.1", port, "/rpc", &WsOptions::default())).await.unwrap().unwrap();
        let server = next(&mut accepted).await;
        assert_eq!(client.framing(), Framing::Message);
        assert_eq!(client.peer().address, Some(format!("ws://127.0.0.1:{port}/rpc")));
        assert!(server.peer().address.unwrap().starts_with("ws://127.0.0.1:"));

        let (mut cr, mut cw) = Box::new(client).split();
        let (mut sr, mut sw) = Box::new(server).split();
        let frames: [&[u8]; 3] = [&[1; 16], &[2; 40], &[3; 5000]];
        timeout(WAIT, cw.write(&batch(&frames))).await.unwrap().unwrap();

        // One whole frame per read, appended to what the buffer holds.
        let mut buf = BytesMut::from(&b"xx"[..]);
        for f in frames {
            let before = buf.len();
            let n = timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap();
            assert_eq!(n, f.len());
            assert_eq!(&buf[before..], f);
        }

        timeout(WAIT, sw.write(&batch(&[b"0123456789abcdefX"]))).await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(timeout(WAIT, cr.read(&mut buf)).await.unwrap().unwrap(), 17);
        assert_eq!(&buf[..], b"0123456789abcdefX");

        // Close from the client: the server reads the end of input, and the
        // client reads the server's close reply as the end too.
        timeout(WAIT, cw.shutdown()).await.unwrap().unwrap();
        assert_eq!(timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap(), 0);
        assert_eq!(timeout(WAIT, cr.read(&mut buf)).await.unwrap().unwrap(), 0);
    }

    #[tokio::test]
    async fn text_message_is_rejected() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        let (mut raw, response) = raw_client(port, "/", Some(SUBPROTOCOL), &[]).await.unwrap();
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_PROTOCOL], SUBPROTOCOL);
        let (mut sr, _sw) = Box::new(next(&mut accepted).await).split();
        timeout(WAIT, raw.send(Message::text("hello"))).await.unwrap().unwrap();
        let err = timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "text messages are not allowed");
    }

    #[tokio::test]
    async fn empty_binary_message_is_rejected() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        let (mut raw, _) = raw_client(port, "/", Some(SUBPROTOCOL), &[]).await.unwrap();
        let (mut sr, _sw) = Box::new(next(&mut accepted).await).split();
        timeout(WAIT, raw.send(Message::binary(Bytes::new()))).await.unwrap().unwrap();
        let err = timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn pings_are_answered_and_skipped() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        let (mut raw, _) = raw_client(port, "/", Some(SUBPROTOCOL), &[]).await.unwrap();
        let (mut sr, _sw) = Box::new(next(&mut accepted).await).split();
        timeout(WAIT, raw.send(Message::Ping(Bytes::from_static(b"p")))).await.unwrap().unwrap();
        timeout(WAIT, raw.send(Message::binary(Bytes::from_static(&[9; 16])))).await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap(), 16);
        let pong = timeout(WAIT, raw.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(pong, Message::Pong(Bytes::from_static(b"p")));
    }

    #[tokio::test]
    async fn oversized_message_is_rejected() {
        let opts = WsOptions::for_max_frame(64);
        assert_eq!(opts.max_message_size, 80);
        let (port, mut accepted) = serve("/", opts).await;
        let client = timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap();
        let (mut sr, _sw) = Box::new(next(&mut accepted).await).split();
        let (_cr, mut cw) = Box::new(client).split();

        // Exactly at the limit passes; one byte more fails the read.
        timeout(WAIT, cw.write(&batch(&[&[0; 80]]))).await.unwrap().unwrap();
        assert_eq!(timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap(), 80);
        timeout(WAIT, cw.write(&batch(&[&[0; 81]]))).await.unwrap().unwrap();
        let err = timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("81 bytes exceeds the limit of 80"), "{err}");
    }

    #[tokio::test]
    async fn oversized_fragmented_message_is_rejected() {
        let (port, mut accepted) = serve("/", WsOptions::for_max_frame(64)).await;
        let (mut raw, _) = raw_client(port, "/", Some(SUBPROTOCOL), &[]).await.unwrap();
        let (mut sr, _sw) = Box::new(next(&mut accepted).await).split();
        use tokio_tungstenite::tungstenite::protocol::frame::{Frame, coding::Data, coding::OpCode};
        // Two 50-byte fragments: each under the cap, together over it.
        let first = Frame::message(Bytes::from_static(&[1; 50]), OpCode::Data(Data::Binary), false);
        let last = Frame::message(Bytes::from_static(&[1; 50]), OpCode::Data(Data::Continue), true);
        timeout(WAIT, raw.send(Message::Frame(first))).await.unwrap().unwrap();
        timeout(WAIT, raw.send(Message::Frame(last))).await.unwrap().unwrap();
        let err = timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn missing_subprotocol_is_refused() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        assert_eq!(refused_status(raw_client(port, "/", None, &[]).await), 400);
        assert_eq!(refused_status(raw_client(port, "/", Some("other.v1, gatewire.v2"), &[]).await), 400);
        // Offered among others: accepted, and only ours is selected.
        let (_raw, response) = raw_client(port, "/", Some("other.v1, gatewire.v1"), &[]).await.unwrap();
        assert_eq!(response.headers()[header::SEC_WEBSOCKET_PROTOCOL], SUBPROTOCOL);
        // The refusals never surfaced from accept; the good one did.
        let _ = next(&mut accepted).await;
        assert!(accepted.try_recv().is_err());
    }

    #[tokio::test]
    async fn client_requires_the_subprotocol() {
        // A plain WebSocket server that selects no subprotocol.
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (stream, _) = tcp.accept().await.unwrap();
            let _ = tokio_tungstenite::accept_async(stream).await;
        });
        let err = timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn origin_allowlist() {
        let opts = WsOptions::default().allowed_origins(["https://app.example"]);
        let (port, mut accepted) = serve("/", opts).await;

        let evil = WsOptions::default().origin("https://evil.example");
        let err = timeout(WAIT, connect("127.0.0.1", port, "/", &evil)).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(upgrade_refused(&err), Some(403));
        assert_eq!(err.to_string(), "websocket upgrade refused with HTTP 403");
        // Near misses are not the same origin.
        for origin in ["https://app.example/", "http://app.example", "https://APP.example", "null"] {
            assert_eq!(refused_status(raw_client(port, "/", Some(SUBPROTOCOL), &[origin]).await), 403, "{origin}");
        }
        // Two Origin headers: refused even if one is allowed.
        let two = ["https://app.example", "https://evil.example"];
        assert_eq!(refused_status(raw_client(port, "/", Some(SUBPROTOCOL), &two).await), 400);

        let good = WsOptions::default().origin("https://app.example");
        timeout(WAIT, connect("127.0.0.1", port, "/", &good)).await.unwrap().unwrap();
        let _ = next(&mut accepted).await;
        // No Origin: a non-browser client, let through.
        timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap();
        let _ = next(&mut accepted).await;
    }

    #[tokio::test]
    async fn unknown_path_is_refused() {
        let (port, _accepted) = serve("/rpc?ignored=1", WsOptions::default()).await;
        let err =
            timeout(WAIT, connect("127.0.0.1", port, "/other", &WsOptions::default())).await.unwrap().unwrap_err();
        assert_eq!(upgrade_refused(&err), Some(404));
        timeout(WAIT, connect("127.0.0.1", port, "/rpc?x=2", &WsOptions::default())).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn silent_client_does_not_block_accept() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        // Connected, but never sends its request.
        let _silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap();
        let _ = next(&mut accepted).await;
    }

    #[tokio::test]
    async fn handshake_deadline_closes_silent_client() {
        let opts = WsOptions::default().handshake_timeout(Duration::from_millis(200));
        let (port, _accepted) = serve("/", opts).await;
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut byte = [0u8; 1];
        let n = timeout(WAIT, silent.read(&mut byte)).await.expect("closed by the deadline");
        assert!(matches!(n, Ok(0)) || n.is_err(), "{n:?}");
    }

    #[tokio::test]
    async fn pending_handshakes_are_capped() {
        let (port, mut accepted) = serve("/", WsOptions::default().max_pending_handshakes(1)).await;
        // The only slot is held by a silent client (its deadline is 10 s),
        // so a good client is not upgraded...
        let silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let impatient = WsOptions::default().handshake_timeout(Duration::from_millis(300));
        let err = connect("127.0.0.1", port, "/", &impatient).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        // ...until the slot frees.
        drop(silent);
        timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap();
        let _ = next(&mut accepted).await;
    }

    #[tokio::test]
    async fn end_without_close_frame_is_an_error() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        let (raw, _) = raw_client(port, "/", Some(SUBPROTOCOL), &[]).await.unwrap();
        let (mut sr, _sw) = Box::new(next(&mut accepted).await).split();
        drop(raw);
        let err = timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[tokio::test]
    async fn server_close_reads_as_end_on_both_sides() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        let client = timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap();
        let (mut sr, mut sw) = Box::new(next(&mut accepted).await).split();
        let (mut cr, _cw) = Box::new(client).split();
        timeout(WAIT, sw.shutdown()).await.unwrap().unwrap();
        assert_eq!(timeout(WAIT, cr.read(&mut BytesMut::new())).await.unwrap().unwrap(), 0);
        assert_eq!(timeout(WAIT, sr.read(&mut BytesMut::new())).await.unwrap().unwrap(), 0);
        // Writing after the close fails instead of vanishing.
        assert!(timeout(WAIT, sw.write(&batch(&[&[0; 16]]))).await.unwrap().is_err());
    }

    #[tokio::test]
    async fn batch_without_frame_ends_is_refused() {
        let (port, mut accepted) = serve("/", WsOptions::default()).await;
        let client = timeout(WAIT, connect("127.0.0.1", port, "/", &WsOptions::default())).await.unwrap().unwrap();
        let _server = next(&mut accepted).await;
        let (_cr, mut cw) = Box::new(client).split();
        let mut b = WriteBatch::default();
        b.buf.extend_from_slice(b"no ends");
        assert_eq!(cw.write(&b).await.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
