//! Binding and connecting by [`Endpoint`]: one entry point over the TCP,
//! Unix-socket, TLS and WebSocket (plain or over TLS) transports.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use gatewire::endpoint::Endpoint;
//! use gatewire::transport::listener::{self, ConnectOptions, ListenOptions, Listener};
//!
//! let endpoint: Endpoint = "tcp://127.0.0.1:0".parse().expect("valid endpoint");
//! let mut server = Listener::bind(&endpoint, &ListenOptions::default()).await?;
//! let bound = server.local_endpoint(); // the real port
//! let client = listener::connect(&bound, &ConnectOptions::default()).await?;
//! let accepted = server.accept().await?;
//! # drop((client, accepted)); Ok(()) }
//! ```
//!
//! `tls://` and `wss://` endpoints need a TLS configuration
//! ([`ListenOptions::tls`], [`ConnectOptions::tls`]); without one they fail
//! with [`io::ErrorKind::InvalidInput`]. They never fall back to plaintext.

use std::io;
use std::time::Duration;

use gatewire_proto::frame::MAX_FRAME_CEILING;

use super::Transport;
use super::tcp::{self, TcpListener};
use super::tls::{self, TlsClientConfig, TlsListener, TlsOptions, TlsServerConfig};
use super::unix::{self, UnixListener};
use super::ws::{self, WsListener, WsOptions, WssListener};
use crate::endpoint::Endpoint;

/// Default `max_frame`: 1 MiB of frame payload.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// Default `handshake_timeout`: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Transport settings for [`Listener::bind`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ListenOptions {
    /// Largest gatewire frame payload accepted, in bytes; default 1 MiB, at
    /// most 16 MiB − 1. WebSocket messages are capped at this plus the
    /// 16-byte header; a larger one fails the read. Byte-stream transports
    /// leave the check to the frame decoder.
    pub max_frame: u32,
    /// WebSocket `Origin` allowlist, compared byte for byte; default empty
    /// (any). When non-empty, a present but unlisted `Origin` gets HTTP 403.
    pub ws_origins: Vec<String>,
    /// Deadline for a transport-level handshake (the TLS handshake and the
    /// WebSocket upgrade together); default 10 s.
    pub handshake_timeout: Duration,
    /// Transport handshakes in progress at once (TLS, WebSocket); default
    /// 100.
    pub max_pending_handshakes: usize,
    /// Certificate, key and client-certificate policy for `tls://` and
    /// `wss://`; default none (binding them fails).
    pub tls: Option<TlsServerConfig>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            ws_origins: Vec::new(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: ws::DEFAULT_MAX_PENDING_HANDSHAKES,
            tls: None,
        }
    }
}

impl ListenOptions {
    /// Sets [`max_frame`](Self::max_frame).
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`ws_origins`](Self::ws_origins).
    pub fn ws_origins<I: IntoIterator<Item = S>, S: Into<String>>(mut self, origins: I) -> Self {
        self.ws_origins = origins.into_iter().map(Into::into).collect();
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

    /// Sets [`tls`](Self::tls).
    pub fn tls(mut self, config: TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }
}

/// Transport settings for [`connect`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Largest gatewire frame payload accepted, in bytes; default 1 MiB, at
    /// most 16 MiB − 1 (see [`ListenOptions::max_frame`]).
    pub max_frame: u32,
    /// An `Origin` header for WebSocket connections; default none, as
    /// non-browser clients send none.
    pub ws_origin: Option<String>,
    /// Deadline for connecting, transport handshake included (TCP connect,
    /// TLS handshake, WebSocket upgrade); default 10 s.
    pub handshake_timeout: Duration,
    /// Trust anchors, client certificate and server name for `tls://` and
    /// `wss://`; default none (connecting to them fails).
    pub tls: Option<TlsClientConfig>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self { max_frame: DEFAULT_MAX_FRAME, ws_origin: None, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT, tls: None }
    }
}

impl ConnectOptions {
    /// Sets [`max_frame`](Self::max_frame).
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`ws_origin`](Self::ws_origin).
    pub fn ws_origin(mut self, origin: impl Into<String>) -> Self {
        self.ws_origin = Some(origin.into());
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`tls`](Self::tls).
    pub fn tls(mut self, config: TlsClientConfig) -> Self {
        self.tls = Some(config);
        self
    }
}

/// A bound listener of any supported kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// `tcp://`.
    Tcp(TcpListener),
    /// `unix://`; the socket file is removed when this is dropped.
    Unix(UnixListener),
    /// `ws://`.
    Ws(WsListener),
    /// `tls://`.
    Tls(TlsListener),
    /// `wss://`.
    Wss(WssListener),
}

impl Listener {
    /// Binds `endpoint`.
    ///
    /// Errors: `InvalidInput` for `tls://` and `wss://` without
    /// [`ListenOptions::tls`] and for a `max_frame` above the 16 MiB − 1
    /// ceiling; otherwise the transport's own bind errors (see
    /// [`unix::bind`] for the Unix-socket checks).
    pub async fn bind(endpoint: &Endpoint, opts: &ListenOptions) -> io::Result<Self> {
        check(endpoint, opts.max_frame)?;
        Ok(match endpoint {
            Endpoint::Tcp { host, port } => Self::Tcp(TcpListener::bind(host, *port).await?),
            Endpoint::Unix { path } => Self::Unix(unix::bind(path).await?),
            Endpoint::Ws { host, port, path } => {
                let ws_opts = WsOptions {
                    allowed_origins: opts.ws_origins.clone(),
                    handshake_timeout: opts.handshake_timeout,
                    max_pending_handshakes: opts.max_pending_handshakes,
                    ..WsOptions::for_max_frame(opts.max_frame)
                };
                Self::Ws(WsListener::bind(host, *port, path, ws_opts).await?)
            }
            Endpoint::Tls { host, port } => {
                let tls_opts = TlsOptions {
                    handshake_timeout: opts.handshake_timeout,
                    max_pending_handshakes: opts.max_pending_handshakes,
                };
                let config = tls_config(endpoint, opts.tls.as_ref())?.clone();
                Self::Tls(TlsListener::bind(host, *port, config, tls_opts).await?)
            }
            Endpoint::Wss { host, port, path } => {
                let ws_opts = WsOptions {
                    allowed_origins: opts.ws_origins.clone(),
                    handshake_timeout: opts.handshake_timeout,
                    max_pending_handshakes: opts.max_pending_handshakes,
                    ..WsOptions::for_max_frame(opts.max_frame)
                };
                let config = tls_config(endpoint, opts.tls.as_ref())?.clone();
                Self::Wss(WssListener::bind_tls(host, *port, path, ws_opts, config).await?)
            }
        })
    }

    /// Waits for the next connection, transport handshake done.
    ///
    /// An error may concern only the connection being accepted (reset
    /// early, out of file descriptors...): keep accepting after a short
    /// backoff (10 ms doubling to 1 s). Failed TLS handshakes and WebSocket
    /// upgrades are not returned; see [`TlsListener::accept`] and
    /// [`WsListener::accept`].
    ///
    /// Cancel safety: dropping the future loses no connection.
    pub async fn accept(&mut self) -> io::Result<Box<dyn Transport>> {
        Ok(match self {
            Self::Tcp(l) => Box::new(l.accept().await?),
            Self::Unix(l) => Box::new(l.accept().await?),
            Self::Ws(l) => Box::new(l.accept().await?),
            Self::Tls(l) => Box::new(l.accept().await?),
            Self::Wss(l) => Box::new(l.accept().await?),
        })
    }

    /// The endpoint actually bound: with the real port after binding port
    /// `0`, and the resolved IP address in place of a host name.
    pub fn local_endpoint(&self) -> Endpoint {
        match self {
            Self::Tcp(l) => {
                let addr = l.local_addr();
                Endpoint::Tcp { host: addr.ip().to_string(), port: addr.port() }
            }
            Self::Unix(l) => Endpoint::Unix { path: l.path().to_owned() },
            Self::Ws(l) => {
                let addr = l.local_addr();
                Endpoint::Ws { host: addr.ip().to_string(), port: addr.port(), path: l.path().into() }
            }
            Self::Tls(l) => {
                let addr = l.local_addr();
                Endpoint::Tls { host: addr.ip().to_string(), port: addr.port() }
            }
            Self::Wss(l) => {
                let addr = l.local_addr();
                Endpoint::Wss { host: addr.ip().to_string(), port: addr.port(), path: l.path().into() }
            }
        }
    }
}

/// Connects to `endpoint`, transport handshake included, within
/// `opts.handshake_timeout`.
///
/// Errors: `TimedOut` past the deadline; `InvalidInput` for `tls://` and
/// `wss://` without [`ConnectOptions::tls`] and for a `max_frame` above the
/// ceiling; `InvalidData` for a TLS handshake that fails (certificate or
/// name not verified, ALPN, alert); `ConnectionRefused` wrapping
/// [`ws::UpgradeRefused`] when a WebSocket server refuses the upgrade;
/// otherwise the transport's own errors.
pub async fn connect(endpoint: &Endpoint, opts: &ConnectOptions) -> io::Result<Box<dyn Transport>> {
    check(endpoint, opts.max_frame)?;
    let connecting = async {
        Ok::<Box<dyn Transport>, io::Error>(match endpoint {
            Endpoint::Tcp { host, port } => Box::new(tcp::connect(host, *port).await?),
            Endpoint::Unix { path } => Box::new(unix::connect(path).await?),
            Endpoint::Ws { host, port, path } => {
                let ws_opts = WsOptions {
                    origin: opts.ws_origin.clone(),
                    handshake_timeout: opts.handshake_timeout,
                    ..WsOptions::for_max_frame(opts.max_frame)
                };
                Box::new(ws::connect(host, *port, path, &ws_opts).await?)
            }
            Endpoint::Tls { host, port } => {
                Box::new(tls::connect(host, *port, tls_config(endpoint, opts.tls.as_ref())?).await?)
            }
            Endpoint::Wss { host, port, path } => {
                let ws_opts = WsOptions {
                    origin: opts.ws_origin.clone(),
                    handshake_timeout: opts.handshake_timeout,
                    ..WsOptions::for_max_frame(opts.max_frame)
                };
                let config = tls_config(endpoint, opts.tls.as_ref())?;
                Box::new(ws::connect_tls(host, *port, path, &ws_opts, config).await?)
            }
        })
    };
    match tokio::time::timeout(opts.handshake_timeout, connecting).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {endpoint} did not finish within {:?}", opts.handshake_timeout),
        )),
    }
}

/// The TLS configuration a `tls://` or `wss://` endpoint needs: its absence
/// is an error, never a reason to go plaintext.
fn tls_config<'a, T>(endpoint: &Endpoint, config: Option<&'a T>) -> io::Result<&'a T> {
    config.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{endpoint} needs a TLS configuration (Builder::tls_server / Builder::tls_client)"),
        )
    })
}

fn check(endpoint: &Endpoint, max_frame: u32) -> io::Result<()> {
    endpoint.check_supported().map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
    if max_frame > MAX_FRAME_CEILING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("max_frame {max_frame} exceeds the ceiling of {MAX_FRAME_CEILING} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio::time::timeout;

    use super::super::{Framing, WriteBatch};
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn endpoint(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    fn expect_err(result: io::Result<Box<dyn Transport>>) -> io::Error {
        match result {
            Err(e) => e,
            Ok(t) => panic!("expected an error, connected to {}", t.peer()),
        }
    }

    /// Binds `url`, connects to the bound endpoint and sends one frame each
    /// way; returns (client, server) framing.
    async fn exchange(url: &str) -> (Box<dyn Transport>, Box<dyn Transport>, Endpoint) {
        let mut listener = Listener::bind(&endpoint(url), &ListenOptions::default()).await.unwrap();
        let bound = listener.local_endpoint();
        let opts = ConnectOptions::default();
        let (client, server) = timeout(WAIT, async { tokio::join!(connect(&bound, &opts), listener.accept()) })
            .await
            .expect("connect and accept in time");
        (client.unwrap(), server.unwrap(), bound)
    }

    async fn ping_pong(client: Box<dyn Transport>, server: Box<dyn Transport>) {
        let mut batch = WriteBatch::default();
        batch.buf.extend_from_slice(&[5; 16]);
        batch.ends.push(16);
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        timeout(WAIT, cw.write(&batch)).await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        while buf.len() < 16 {
            assert_ne!(timeout(WAIT, sr.read(&mut buf)).await.unwrap().unwrap(), 0);
        }
        timeout(WAIT, sw.write(&batch)).await.unwrap().unwrap();
        let mut buf = BytesMut::new();
        while buf.len() < 16 {
            assert_ne!(timeout(WAIT, cr.read(&mut buf)).await.unwrap().unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn tcp_port_zero_reports_the_real_port() {
        let (client, server, bound) = exchange("tcp://127.0.0.1:0").await;
        let Endpoint::Tcp { host, port } = &bound else { panic!("{bound}") };
        assert_eq!(host, "127.0.0.1");
        assert_ne!(*port, 0);
        assert_eq!(client.framing(), Framing::Stream);
        assert_eq!(client.peer().address, Some(format!("127.0.0.1:{port}")));
        ping_pong(client, server).await;
    }

    #[tokio::test]
    async fn tcp_ipv6_loopback() {
        // Skipped where the host has no IPv6 loopback.
        let Ok(mut listener) = Listener::bind(&endpoint("tcp://[::1]:0"), &ListenOptions::default()).await else {
            return;
        };
        let bound = listener.local_endpoint();
        assert!(bound.to_string().starts_with("tcp://[::1]:"), "{bound}");
        let opts = ConnectOptions::default();
        let (client, server) =
            timeout(WAIT, async { tokio::join!(connect(&bound, &opts), listener.accept()) }).await.unwrap();
        ping_pong(client.unwrap(), server.unwrap()).await;
    }

    #[tokio::test]
    async fn ws_endpoint() {
        let (client, server, bound) = exchange("ws://127.0.0.1:0/gw").await;
        let Endpoint::Ws { port, path, .. } = &bound else { panic!("{bound}") };
        assert_ne!(*port, 0);
        assert_eq!(path, "/gw");
        assert_eq!(client.framing(), Framing::Message);
        assert_eq!(server.framing(), Framing::Message);
        ping_pong(client, server).await;
    }

    #[tokio::test]
    async fn unix_endpoint() {
        let dir = std::env::temp_dir().join(format!("gw-{}-listener", std::process::id()));
        let url = format!("unix://{}/gw.sock", dir.display());
        let (client, server, bound) = exchange(&url).await;
        assert_eq!(bound.to_string(), url);
        assert!(server.peer().credentials.is_some());
        assert_eq!(client.framing(), Framing::Stream);
        ping_pong(client, server).await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn ws_options_are_applied() {
        let opts = ListenOptions::default().ws_origins(["https://app.example"]);
        let mut listener = Listener::bind(&endpoint("ws://127.0.0.1:0/"), &opts).await.unwrap();
        let bound = listener.local_endpoint();
        // Upgrades happen only while someone accepts.
        let accepting = tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let evil = ConnectOptions::default().ws_origin("https://evil.example");
        let err = expect_err(timeout(WAIT, connect(&bound, &evil)).await.unwrap());
        let refused = err.get_ref().and_then(|e| e.downcast_ref::<ws::UpgradeRefused>()).map(|r| r.status);
        assert_eq!(refused, Some(403), "{err}");
        accepting.abort();
    }

    #[tokio::test]
    async fn tls_needs_a_configuration() {
        // No TLS configuration: an error, never plaintext.
        for url in ["tls://127.0.0.1:0", "wss://127.0.0.1:0/"] {
            let e = endpoint(url);
            for err in [
                Listener::bind(&e, &ListenOptions::default()).await.unwrap_err(),
                expect_err(connect(&e, &ConnectOptions::default()).await),
            ] {
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
                assert!(err.to_string().contains("needs a TLS configuration"), "{err}");
            }
        }
    }

    #[tokio::test]
    async fn max_frame_above_ceiling_is_refused() {
        let e = endpoint("tcp://127.0.0.1:0");
        let err = Listener::bind(&e, &ListenOptions::default().max_frame(MAX_FRAME_CEILING + 1)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = expect_err(connect(&e, &ConnectOptions::default().max_frame(u32::MAX)).await);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn connect_deadline() {
        // A listener that never accepts: the TCP connect completes in the
        // backlog, the upgrade never does.
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let e = Endpoint::Ws { host: "127.0.0.1".into(), port, path: "/".into() };
        let opts = ConnectOptions::default().handshake_timeout(Duration::from_millis(200));
        let err = expect_err(timeout(WAIT, connect(&e, &opts)).await.unwrap());
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
