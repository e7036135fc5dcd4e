//! TLS: a [`Framing::Stream`] transport over TCP, built on rustls (with the
//! *ring* crypto provider) and tokio-rustls; also the TLS layer under `wss://`.
//!
//! # What is enforced
//!
//! Hostile inputs G4 and G5:
//!
//! - **TLS 1.3 only** for configurations built here ([`TlsServerConfig`],
//!   [`TlsClientConfig`]); a rustls configuration passed in with
//!   `from_rustls` keeps its own versions.
//! - **ALPN `gatewire/1`** ([`ALPN`]) on `tls://`, required on both ends:
//!   the server offers only it (rustls refuses a client that offers other
//!   protocols with a `no_application_protocol` alert) and closes a client
//!   that offered none; the client fails unless the server selected it. A
//!   configuration passed in with `from_rustls` has its ALPN list replaced.
//!   `wss://` uses `http/1.1` ([`ALPN_HTTP11`]) instead, as browsers do; the
//!   `gatewire.v1` WebSocket subprotocol plays the same role there.
//! - **The server name is always verified.** The client checks the server's
//!   certificate against its trust anchors and against the endpoint's host
//!   (a DNS name or an IP address), or the name given with
//!   [`TlsClientConfigBuilder::server_name`]. There is no switch to turn
//!   verification off; only a rustls configuration built by the caller with
//!   a custom verifier can, and that is the caller's decision.
//! - **No plaintext fallback.** A `tls://` endpoint never connects without
//!   TLS, and a missing configuration is an error, not plain TCP.
//! - **Client certificates (mTLS)** are verified against the CA given with
//!   [`TlsServerConfigBuilder::client_ca_pem`] (required, or optional with
//!   [`TlsServerConfigBuilder::client_auth_optional`]). The verified
//!   certificate's subject and alternative names reach handlers through
//!   [`PeerInfo::tls`](super::PeerInfo::tls) and, with
//!   [`MtlsAuthenticator`](crate::auth::MtlsAuthenticator), their
//!   [`Identity`](crate::auth::Identity).
//! - **One deadline** covers the TCP connect (client), the TLS handshake and,
//!   for `wss://`, the WebSocket upgrade. The server runs handshakes in their
//!   own tasks, at most [`TlsOptions::max_pending_handshakes`] at a time, so a
//!   slow client cannot hold up [`TlsListener::accept`].
//! - rustls bounds its own buffers: handshake messages are read in steps up
//!   to 64 KiB, and plaintext waiting to be sent is capped (64 KiB by
//!   default). 0-RTT data is never accepted.
//!
//! # Half-close
//!
//! [`TransportWrite::shutdown`] sends
//! `close_notify` and then a TCP FIN; the reading half keeps working. A peer
//! that ends the TCP connection without `close_notify` fails the read with
//! `UnexpectedEof` (a truncation attack cannot pass for a clean end).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use super::tcp::{StreamRead, StreamWrite};
use super::{Framing, PeerInfo, Transport, TransportRead, TransportWrite};

/// The ALPN protocol id of gatewire over TLS (`tls://`).
pub const ALPN: &[u8] = b"gatewire/1";

/// The ALPN protocol id used under `wss://`: WebSocket runs over HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Default [`TlsOptions::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`TlsOptions::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 100;

/// The crypto provider of every configuration built here: *ring*, chosen
/// explicitly so that another provider enabled elsewhere in the process
/// changes nothing.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {what} from `{path}`: {reason}")]
    File {
        /// What the file should hold (`certificate chain`, `private key`...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// PEM text without the expected items.
    #[error("invalid {what}: {reason}")]
    Pem {
        /// What the text should hold.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A server configuration without a certificate and key.
    #[error("a TLS server needs a certificate chain and its private key")]
    MissingIdentity,
    /// A client configuration without trust anchors.
    #[error("a TLS client needs at least one trusted CA certificate")]
    MissingRoots,
    /// A server name that is neither a DNS name nor an IP address.
    #[error("invalid TLS server name `{0}`")]
    InvalidServerName(String),
    /// rustls refused the certificates, key or settings.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

impl From<TlsConfigError> for crate::Error {
    fn from(e: TlsConfigError) -> Self {
        Self::config(e.to_string())
    }
}

/// A certificate chain and its private key from PEM text.
fn identity_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    Ok((certs_from_pem("certificate chain", chain_pem)?, key_from_pem(key_pem)?))
}

/// A certificate chain and its private key from PEM files; errors name the
/// file.
fn identity_from_files(
    chain: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let chain_pem = read_file("certificate chain", chain)?;
    let key_pem = read_file("private key", key)?;
    let chain = in_file(chain, certs_from_pem("certificate chain", &chain_pem))?;
    let key = in_file(key, key_from_pem(&key_pem))?;
    Ok((chain, key))
}

fn certs_from_pem(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Pem { what, reason: "no CERTIFICATE section found".into() });
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    // The error never quotes the key material.
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsConfigError::Pem { what: "private key", reason: e.to_string() })
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|e| TlsConfigError::File { what, path: path.into(), reason: e.to_string() })
}

fn in_file<T>(path: &Path, r: Result<T, TlsConfigError>) -> Result<T, TlsConfigError> {
    r.map_err(|e| match e {
        TlsConfigError::Pem { what, reason } => TlsConfigError::File { what, path: path.into(), reason },
        other => other,
    })
}

fn roots(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert)?;
    }
    Ok(store)
}

fn with_alpn<T: Clone>(config: &T, set: impl FnOnce(&mut T)) -> Arc<T> {
    let mut config = config.clone();
    set(&mut config);
    Arc::new(config)
}

// ----- server configuration ---------------------------------------------

/// How a server treats client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// No certificate is requested.
    None,
    /// A certificate is requested; a client without one still connects (its
    /// [`PeerInfo::tls`](super::PeerInfo::tls) has no `peer_certificate`),
    /// one with an invalid certificate does not.
    Optional,
    /// A client without a valid certificate fails the TLS handshake.
    Required,
    /// Decided by a rustls configuration passed in with `from_rustls`.
    Custom,
}

/// A TLS server configuration for `tls://` and `wss://` listeners.
///
/// Build one with [`TlsServerConfig::builder`] (PEM text or files, TLS 1.3,
/// optional client certificates) or wrap a rustls configuration of your own
/// with [`TlsServerConfig::from_rustls`]. Cheap to clone.
#[derive(Clone)]
pub struct TlsServerConfig {
    /// ALPN `gatewire/1`, for `tls://`.
    pub(crate) tls: Arc<ServerConfig>,
    /// ALPN `http/1.1`, for `wss://`.
    pub(crate) wss: Arc<ServerConfig>,
    client_auth: ClientAuth,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No key material, ever.
        f.debug_struct("TlsServerConfig").field("client_auth", &self.client_auth).finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// Starts a configuration: add the certificate chain and key, then
    /// optionally a CA for client certificates.
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder::default()
    }

    /// A server with the certificate chain and private key in these PEM
    /// files, and no client certificates.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        Self::builder().identity_files(cert_chain, key)?.build()
    }

    /// Wraps a rustls configuration of your own (versions, verifier, key
    /// selection...). Its ALPN list is replaced by `gatewire/1` (`tls://`)
    /// or `http/1.1` (`wss://`).
    pub fn from_rustls(config: ServerConfig) -> Self {
        Self::from_parts(config, ClientAuth::Custom)
    }

    fn from_parts(config: ServerConfig, client_auth: ClientAuth) -> Self {
        let tls = with_alpn(&config, |c| c.alpn_protocols = vec![ALPN.to_vec()]);
        let wss = with_alpn(&config, |c| c.alpn_protocols = vec![ALPN_HTTP11.to_vec()]);
        Self { tls, wss, client_auth }
    }

    /// How client certificates are treated.
    pub fn client_auth(&self) -> ClientAuth {
        self.client_auth
    }
}

/// Builds a [`TlsServerConfig`].
#[derive(Default)]
pub struct TlsServerConfigBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: Option<PrivateKeyDer<'static>>,
    client_cas: Vec<CertificateDer<'static>>,
    client_auth_optional: bool,
}

impl fmt::Debug for TlsServerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfigBuilder")
            .field("chain", &self.chain.len())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("client_cas", &self.client_cas.len())
            .field("client_auth_optional", &self.client_auth_optional)
            .finish()
    }
}

impl TlsServerConfigBuilder {
    /// The server's certificate chain (leaf first) and private key, as DER.
    pub fn identity(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        self.chain = chain;
        self.key = Some(key);
        self
    }

    /// The server's certificate chain (leaf first) and its private key
    /// (PKCS#8, PKCS#1 or SEC1), as PEM text.
    pub fn identity_pem(self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let (chain, key) = identity_from_pem(chain_pem, key_pem)?;
        Ok(self.identity(chain, key))
    }

    /// [`identity_pem`](Self::identity_pem) from files.
    pub fn identity_files(self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let (chain, key) = identity_from_files(chain.as_ref(), key.as_ref())?;
        Ok(self.identity(chain, key))
    }

    /// Requires client certificates issued by these CAs (mTLS).
    pub fn client_ca(mut self, cas: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        self.client_cas.extend(cas);
        self
    }

    /// [`client_ca`](Self::client_ca) from PEM text.
    pub fn client_ca_pem(self, pem: &[u8]) -> Result<Self, TlsConfigError> {
        Ok(self.client_ca(certs_from_pem("client CA certificates", pem)?))
    }

    /// [`client_ca`](Self::client_ca) from a PEM file.
    pub fn client_ca_file(self, path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let path = path.as_ref();
        let pem = read_file("client CA certificates", path)?;
        Ok(self.client_ca(in_file(path, certs_from_pem("client CA certificates", &pem))?))
    }

    /// With a client CA: let clients without a certificate complete the TLS
    /// handshake too (an authenticator then decides). A certificate that is
    /// sent is still verified. Default: required.
    pub fn client_auth_optional(mut self, optional: bool) -> Self {
        self.client_auth_optional = optional;
        self
    }

    /// Builds the configuration: TLS 1.3 only, *ring* provider.
    pub fn build(self) -> Result<TlsServerConfig, TlsConfigError> {
        let Some(key) = self.key else { return Err(TlsConfigError::MissingIdentity) };
        if self.chain.is_empty() {
            return Err(TlsConfigError::MissingIdentity);
        }
        let provider = provider();
        let builder =
            ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&[&rustls::version::TLS13])?;
        let (builder, client_auth) = if self.client_cas.is_empty() {
            (builder.with_no_client_auth(), ClientAuth::None)
        } else {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(self.client_cas)?), provider);
            let (verifier, mode) = if self.client_auth_optional {
                (verifier.allow_unauthenticated(), ClientAuth::Optional)
            } else {
                (verifier, ClientAuth::Required)
            };
            let verifier = verifier.build().map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
            (builder.with_client_cert_verifier(verifier), mode)
        };
        let config = builder.with_single_cert(self.chain, key)?;
        Ok(TlsServerConfig::from_parts(config, client_auth))
    }
}

// ----- client configuration ---------------------------------------------

/// A TLS client configuration for `tls://` and `wss://` endpoints.
///
/// Build one with [`TlsClientConfig::builder`] (trust anchors, optional
/// client certificate, optional server name) or wrap a rustls configuration
/// with [`TlsClientConfig::from_rustls`]. No system trust store is loaded:
/// gatewire deployments use their own CA. Cheap to clone.
#[derive(Clone)]
pub struct TlsClientConfig {
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) wss: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .field("client_certificate", &self.tls.client_auth_cert_resolver.has_certs())
            .finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// Starts a configuration: add trust anchors, then optionally a client
    /// certificate and a server name.
    pub fn builder() -> TlsClientConfigBuilder {
        TlsClientConfigBuilder::default()
    }

    /// A client trusting the CA certificates in this PEM file, without a
    /// client certificate.
    pub fn from_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        Self::builder().root_ca_file(path)?.build()
    }

    /// Wraps a rustls configuration of your own. Its ALPN list is replaced
    /// by `gatewire/1` (`tls://`) or `http/1.1` (`wss://`). Server
    /// certificates are checked by its verifier: keep the default one.
    pub fn from_rustls(config: ClientConfig) -> Self {
        Self::from_parts(config, None)
    }

    fn from_parts(config: ClientConfig, server_name: Option<ServerName<'static>>) -> Self {
        let tls = with_alpn(&config, |c| c.alpn_protocols = vec![ALPN.to_vec()]);
        let wss = with_alpn(&config, |c| c.alpn_protocols = vec![ALPN_HTTP11.to_vec()]);
        Self { tls, wss, server_name }
    }

    /// Verifies the server's certificate against `name` instead of the
    /// endpoint's host (connect to `tls://10.0.0.5:4000`, verify
    /// `gateway.internal`).
    pub fn with_server_name(mut self, name: &str) -> Result<Self, TlsConfigError> {
        self.server_name = Some(parse_server_name(name)?);
        Ok(self)
    }

    /// The name the server's certificate must carry when connecting to
    /// `host`.
    fn name_for(&self, host: &str) -> io::Result<ServerName<'static>> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => parse_server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
        }
    }
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, TlsConfigError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsConfigError::InvalidServerName(name.into()))
}

/// Builds a [`TlsClientConfig`].
#[derive(Default)]
pub struct TlsClientConfigBuilder {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClientConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfigBuilder")
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsClientConfigBuilder {
    /// Trusts these CA certificates (DER).
    pub fn root_ca(mut self, cas: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        self.roots.extend(cas);
        self
    }

    /// Trusts the CA certificates in this PEM text.
    pub fn root_ca_pem(self, pem: &[u8]) -> Result<Self, TlsConfigError> {
        Ok(self.root_ca(certs_from_pem("CA certificates", pem)?))
    }

    /// Trusts the CA certificates in this PEM file.
    pub fn root_ca_file(self, path: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let path = path.as_ref();
        let pem = read_file("CA certificates", path)?;
        Ok(self.root_ca(in_file(path, certs_from_pem("CA certificates", &pem))?))
    }

    /// Presents this certificate chain (leaf first) and key to servers that
    /// ask for one (mTLS).
    pub fn identity(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        self.identity = Some((chain, key));
        self
    }

    /// [`identity`](Self::identity) from PEM text.
    pub fn identity_pem(self, chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let (chain, key) = identity_from_pem(chain_pem, key_pem)?;
        Ok(self.identity(chain, key))
    }

    /// [`identity`](Self::identity) from PEM files.
    pub fn identity_files(self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsConfigError> {
        let (chain, key) = identity_from_files(chain.as_ref(), key.as_ref())?;
        Ok(self.identity(chain, key))
    }

    /// Verifies the server's certificate against `name` instead of the
    /// endpoint's host. The name is always verified; this only chooses it.
    pub fn server_name(mut self, name: &str) -> Result<Self, TlsConfigError> {
        self.server_name = Some(parse_server_name(name)?);
        Ok(self)
    }

    /// Builds the configuration: TLS 1.3 only, *ring* provider, the
    /// server's certificate and name verified by webpki.
    pub fn build(self) -> Result<TlsClientConfig, TlsConfigError> {
        if self.roots.is_empty() {
            return Err(TlsConfigError::MissingRoots);
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(self.roots)?);
        let config = match self.identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClientConfig::from_parts(config, self.server_name))
    }
}

// ----- session facts ------------------------------------------------------

/// What a TLS session established, as recorded in
/// [`PeerInfo::tls`](super::PeerInfo::tls).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The TLS version (`TLSv1_3`).
    pub version: Option<String>,
    /// The ALPN protocol both ends agreed on.
    pub alpn: Option<Vec<u8>>,
    /// Server side: the name the client asked for (SNI). Client side: the
    /// name the server's certificate was verified against.
    pub server_name: Option<String>,
    /// The peer's end-entity certificate, verified by the TLS layer: the
    /// client's certificate on a server (mTLS), the server's on a client.
    pub peer_certificate: Option<PeerCertificate>,
}

/// The identity in a verified peer certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The subject distinguished name, as text (`CN=desktop, O=Example`).
    pub subject: String,
    /// The subject's first common name, if any.
    pub common_name: Option<String>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// URIs among the subject alternative names (SPIFFE ids...).
    pub uris: Vec<String>,
    /// E-mail addresses among the subject alternative names.
    pub emails: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// End of the certificate's validity.
    pub not_after: SystemTime,
    /// SHA-256 of the DER certificate (for pinning).
    pub sha256: [u8; 32],
}

impl PeerCertificate {
    /// Reads the identity fields of a DER certificate. `None` if it does not
    /// parse (webpki accepted it, so that would be a parser disagreement).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let common_name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(String::from);
        let mut out = Self {
            subject: subject.to_string(),
            common_name,
            dns_names: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            ip_addresses: Vec::new(),
            not_after: unix_time(cert.validity().not_after.timestamp()),
            sha256: Sha256::digest(der).into(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => out.dns_names.push((*n).into()),
                    GeneralName::URI(u) => out.uris.push((*u).into()),
                    GeneralName::RFC822Name(e) => out.emails.push((*e).into()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            out.ip_addresses.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            out.ip_addresses.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(out)
    }

    /// The name an identity is given: the common name, else the first DNS
    /// name, URI or e-mail address, else the whole subject.
    pub fn name(&self) -> &str {
        self.common_name
            .as_deref()
            .or(self.dns_names.first().map(String::as_str))
            .or(self.uris.first().map(String::as_str))
            .or(self.emails.first().map(String::as_str))
            .unwrap_or(&self.subject)
    }

    /// Whether `name` is the common name or one of the DNS, URI or e-mail
    /// alternative names (exact, case-sensitive comparison).
    pub fn has_name(&self, name: &str) -> bool {
        self.common_name.as_deref() == Some(name)
            || self.dns_names.iter().chain(&self.uris).chain(&self.emails).any(|n| n == name)
    }
}

fn unix_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())).unwrap_or(UNIX_EPOCH)
    }
}

fn session_info(common: &rustls::CommonState, server_name: Option<String>) -> TlsInfo {
    let peer_certificate = common.peer_certificates().and_then(|chain| chain.first()).and_then(|leaf| {
        let parsed = PeerCertificate::from_der(leaf);
        if parsed.is_none() {
            tracing::debug!("verified peer certificate does not parse; its identity is ignored");
        }
        parsed
    });
    TlsInfo {
        version: common.protocol_version().and_then(|v| v.as_str()).map(String::from),
        alpn: common.alpn_protocol().map(<[u8]>::to_vec),
        server_name,
        peer_certificate,
    }
}

// ----- handshakes -----------------------------------------------------------

/// Which ALPN a handshake uses and whether it is required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `tls://`: `gatewire/1`, required.
    Gatewire,
    /// `wss://`: `http/1.1` if the peer uses ALPN at all.
    Http11,
}

/// Client side of a TLS handshake over a connected TCP stream, verifying
/// the server's certificate for `host` (or the configured server name).
pub(crate) async fn client_handshake(
    tcp: TcpStream,
    host: &str,
    config: &TlsClientConfig,
    alpn: Alpn,
) -> io::Result<(TlsStream<TcpStream>, TlsInfo)> {
    let name = config.name_for(host)?;
    let rustls_config = match alpn {
        Alpn::Gatewire => config.tls.clone(),
        Alpn::Http11 => config.wss.clone(),
    };
    let shown = name.to_str().into_owned();
    let mut stream = TlsConnector::from(rustls_config).connect(name, tcp).await?;
    let (_, conn) = stream.get_ref();
    let info = session_info(conn, Some(shown));
    if alpn == Alpn::Gatewire && info.alpn.as_deref() != Some(ALPN) {
        let _ = stream.shutdown().await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TLS server did not select the ALPN protocol gatewire/1",
        ));
    }
    Ok((TlsStream::Client(stream), info))
}

/// Server side of a TLS handshake over an accepted TCP stream.
pub(crate) async fn server_handshake(
    tcp: TcpStream,
    config: &TlsServerConfig,
    alpn: Alpn,
) -> io::Result<(TlsStream<TcpStream>, TlsInfo)> {
    let rustls_config = match alpn {
        Alpn::Gatewire => config.tls.clone(),
        Alpn::Http11 => config.wss.clone(),
    };
    let mut stream = TlsAcceptor::from(rustls_config).accept(tcp).await?;
    let (_, conn) = stream.get_ref();
    let info = session_info(conn, conn.server_name().map(String::from));
    if alpn == Alpn::Gatewire && info.alpn.as_deref() != Some(ALPN) {
        // A client that offered no ALPN at all gets here (one that offered
        // others was refused by rustls with an alert).
        let _ = stream.shutdown().await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TLS client did not offer the ALPN protocol gatewire/1",
        ));
    }
    Ok((TlsStream::Server(stream), info))
}

async fn with_deadline<T>(deadline: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    match tokio::time::timeout(deadline, f).await {
        Ok(result) => result,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("TLS handshake did not finish within {deadline:?}")))
        }
    }
}

// ----- transport ----------------------------------------------------------

/// An established TLS connection (`tls://`).
#[derive(Debug)]
pub struct TlsTransport {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl TlsTransport {
    /// What the TLS session established.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.peer.tls.as_ref()
    }
}

impl Transport for TlsTransport {
    fn framing(&self) -> Framing {
        Framing::Stream
    }

    fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }

    fn split(self: Box<Self>) -> (Box<dyn TransportRead>, Box<dyn TransportWrite>) {
        // `tokio::io::split` locks briefly per poll, so one task can read
        // while another writes.
        let (r, w) = tokio::io::split(self.stream);
        (Box::new(StreamRead(r)), Box::new(StreamWrite(w)))
    }
}

/// Connects to `host:port` and completes the TLS handshake, verifying the
/// server's certificate for `host` (or the configured server name) and
/// requiring ALPN `gatewire/1`.
///
/// There is no deadline here; wrap the call in `tokio::time::timeout` (the
/// [`listener::connect`](super::listener::connect) helper does, covering the
/// TCP connect and the handshake together).
///
/// Errors: the TCP connect's; `InvalidData` wrapping a rustls error for a
/// certificate that does not verify or a TLS alert; `InvalidData` when ALPN
/// `gatewire/1` was not selected; `InvalidInput` for a host that is not a
/// valid server name.
pub async fn connect(host: &str, port: u16, config: &TlsClientConfig) -> io::Result<TlsTransport> {
    let tcp = TcpStream::connect((host, port)).await?;
    super::tcp::tune(&tcp)?;
    let addr = tcp.peer_addr()?;
    let (stream, info) = client_handshake(tcp, host, config, Alpn::Gatewire).await?;
    Ok(TlsTransport { stream, peer: PeerInfo { address: Some(addr.to_string()), credentials: None, tls: Some(info) } })
}

/// Settings of a [`TlsListener`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Deadline for each TLS handshake; default 10 s. A client that has not
    /// finished by then is dropped.
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once, default 100 (`0` counts as 1); while
    /// that many are pending the listener stops taking TCP connections.
    /// Each costs a socket, a task and rustls' handshake buffers (up to
    /// about 64 KiB).
    pub max_pending_handshakes: usize,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self { handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT, max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES }
    }
}

impl TlsOptions {
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
}

/// A TCP listener that completes a TLS handshake (ALPN `gatewire/1`) on
/// every connection.
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    local: SocketAddr,
    config: TlsServerConfig,
    opts: TlsOptions,
    handshakes: JoinSet<io::Result<TlsTransport>>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .field("config", &self.config)
            .field("opts", &self.opts)
            .field("pending_handshakes", &self.handshakes.len())
            .finish()
    }
}

impl TlsListener {
    /// Binds to `host:port`.
    pub async fn bind(host: &str, port: u16, config: TlsServerConfig, opts: TlsOptions) -> io::Result<Self> {
        Self::from_tokio(tokio::net::TcpListener::bind((host, port)).await?, config, opts)
    }

    /// Wraps a bound tokio listener.
    pub fn from_tokio(tcp: tokio::net::TcpListener, config: TlsServerConfig, opts: TlsOptions) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        Ok(Self { tcp, local, config, opts, handshakes: JoinSet::new() })
    }

    /// The bound address, with the real port when bound to port `0`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Handshakes in progress (or finished and not yet returned).
    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Waits for the next connection whose TLS handshake succeeds.
    ///
    /// Handshakes run concurrently in spawned tasks; a failed one (bad
    /// certificate, no ALPN, plaintext, timed out) is logged at debug level
    /// and not returned. An error comes from accepting a TCP connection:
    /// keep accepting after a short backoff. Dropping the listener aborts the
    /// handshakes in progress.
    ///
    /// Cancel safety: dropping the future loses nothing; the next call
    /// returns handshakes that finished meanwhile.
    pub async fn accept(&mut self) -> io::Result<TlsTransport> {
        let max_pending = self.opts.max_pending_handshakes.max(1);
        loop {
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => match done {
                    Ok(Ok(transport)) => return Ok(transport),
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(e) => tracing::warn!(error = %e, "TLS handshake task failed"),
                },
                accepted = self.tcp.accept(), if self.handshakes.len() < max_pending => {
                    let (tcp, addr) = accepted?;
                    let config = self.config.clone();
                    let deadline = self.opts.handshake_timeout;
                    self.handshakes.spawn(async move {
                        with_deadline(deadline, async move {
                            super::tcp::tune(&tcp)?;
                            let (stream, info) = server_handshake(tcp, &config, Alpn::Gatewire).await?;
                            let peer = PeerInfo { address: Some(addr.to_string()), credentials: None, tls: Some(info) };
                            Ok(TlsTransport { stream, peer })
                        })
                        .await
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    fn self_signed(sans: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "node-1");
        params.distinguished_name.push(DnType::OrganizationName, "Example");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn peer_certificate_fields() {
        let (pem, _) = self_signed(&["node-1.example", "10.0.0.7", "::1"]);
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let cert = PeerCertificate::from_der(&der).unwrap();
        assert_eq!(cert.common_name.as_deref(), Some("node-1"));
        assert!(cert.subject.contains("CN=node-1") && cert.subject.contains("O=Example"), "{}", cert.subject);
        assert_eq!(cert.dns_names, ["node-1.example"]);
        assert_eq!(cert.ip_addresses, ["10.0.0.7".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(cert.name(), "node-1");
        assert!(cert.has_name("node-1.example") && cert.has_name("node-1") && !cert.has_name("NODE-1"));
        assert!(cert.not_after > SystemTime::now());
        assert_eq!(cert.sha256, <[u8; 32]>::from(Sha256::digest(&der)));
        assert!(PeerCertificate::from_der(b"not a certificate").is_none());
    }

    #[test]
    fn configuration_errors() {
        assert!(matches!(TlsServerConfig::builder().build(), Err(TlsConfigError::MissingIdentity)));
        assert!(matches!(TlsClientConfig::builder().build(), Err(TlsConfigError::MissingRoots)));
        let err = TlsServerConfig::builder().identity_pem(b"junk", b"junk").unwrap_err();
        assert!(matches!(err, TlsConfigError::Pem { what: "certificate chain", .. }), "{err}");
        let (cert, key) = self_signed(&["localhost"]);
        let err = TlsServerConfig::builder().identity_pem(cert.as_bytes(), cert.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsConfigError::Pem { what: "private key", .. }), "{err}");
        assert!(!err.to_string().contains("BEGIN"), "{err}");
        let err = TlsServerConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
        assert!(matches!(
            TlsClientConfig::builder().server_name("not a name!"),
            Err(TlsConfigError::InvalidServerName(_))
        ));
        let server = TlsServerConfig::builder().identity_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap();
        assert_eq!(server.client_auth(), ClientAuth::None);
        assert_eq!(server.tls.alpn_protocols, [ALPN.to_vec()]);
        assert_eq!(server.wss.alpn_protocols, [ALPN_HTTP11.to_vec()]);
        // Debug never shows key material.
        let shown =
            format!("{server:?} {:?}", TlsServerConfig::builder().identity_pem(cert.as_bytes(), key.as_bytes()));
        assert!(!shown.contains("PRIVATE") && !shown.contains("MII"), "{shown}");
    }

    #[test]
    fn from_rustls_replaces_alpn() {
        let (cert, _) = self_signed(&["localhost"]);
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let client = TlsClientConfig::from_rustls(config);
        assert_eq!(client.tls.alpn_protocols, [ALPN.to_vec()]);
        assert_eq!(client.wss.alpn_protocols, [ALPN_HTTP11.to_vec()]);
        assert_eq!(client.name_for("127.0.0.1").unwrap(), ServerName::try_from("127.0.0.1").unwrap());
        let pinned = client.with_server_name("gateway.internal").unwrap();
        assert_eq!(pinned.name_for("10.0.0.5").unwrap(), ServerName::try_from("gateway.internal").unwrap());
    }
}
