//! Security: TLS (`tls://`, `wss://`, mTLS, ALPN, name verification, no
//! plaintext fallback) and authentication in the handshake (tokens, JWT,
//! client certificates, Unix credentials), authorization of every call,
//! expiry, and secrets kept out of logs. Certificates are made at test time
//! with rcgen; every server runs on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gatewire::auth::{
    AnyAuthenticator, AuthMethod, JwtAuthenticator, MtlsAuthenticator, TokenAuthenticator, UnixPeerAuthenticator,
};
use gatewire::{
    Builder, Connection, Error, ErrorCode, Identity, Message, Router, Server, Status, Timeouts, TlsClientConfig,
    TlsServerConfig,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

/// Upper bound for anything that must not hang.
const LIMIT: Duration = Duration::from_secs(20);

// ----- certificates -----------------------------------------------------------

/// A test CA that issues server and client certificates.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    fn leaf(&self, common_name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    fn server(&self) -> Leaf {
        self.leaf("gateway", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for the desktop app.
    fn client(&self) -> Leaf {
        self.leaf("desktop-app", &["desktop.example"], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn server_config(&self) -> TlsServerConfig {
        let leaf = self.server();
        TlsServerConfig::builder().identity_pem(leaf.cert.as_bytes(), leaf.key.as_bytes()).unwrap().build().unwrap()
    }

    /// A server that requires (or, `optional`, accepts) client certificates
    /// issued by `client_ca`.
    fn mtls_server_config(&self, client_ca: &Self, optional: bool) -> TlsServerConfig {
        let leaf = self.server();
        TlsServerConfig::builder()
            .identity_pem(leaf.cert.as_bytes(), leaf.key.as_bytes())
            .unwrap()
            .client_ca_pem(client_ca.ca_pem.as_bytes())
            .unwrap()
            .client_auth_optional(optional)
            .build()
            .unwrap()
    }

    fn client_config(&self) -> TlsClientConfig {
        TlsClientConfig::builder().root_ca_pem(self.ca_pem.as_bytes()).unwrap().build().unwrap()
    }

    fn mtls_client_config(&self, client: &Leaf) -> TlsClientConfig {
        TlsClientConfig::builder()
            .root_ca_pem(self.ca_pem.as_bytes())
            .unwrap()
            .identity_pem(client.cert.as_bytes(), client.key.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        roots
    }
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ----- helpers ------------------------------------------------------------------

fn unix_url() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gatewire-security-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    format!("unix://{}/gw.sock", dir.display())
}

async fn serve(url: &str, builder: Builder) -> (Server, String) {
    let server = builder.serve(&[url]).await.expect("server binds");
    let url = server.local_endpoints()[0].to_string();
    (server, url)
}

async fn try_connect(url: &str, builder: Builder) -> gatewire::Result<Connection> {
    timeout(LIMIT, builder.connect(url)).await.expect("connect finishes (succeeds or fails) in time")
}

async fn connect(url: &str, builder: Builder) -> Connection {
    try_connect(url, builder).await.expect("connects")
}

fn refused(result: gatewire::Result<Connection>) -> Error {
    match result {
        Ok(c) => panic!("expected a refusal, connected to {:?}", c.peer_info()),
        Err(e) => e,
    }
}

/// Method 1 echoes; method 2 answers with who the caller is (subject,
/// method of authentication, certificate DNS names).
fn router() -> Router {
    Router::new().unary(1, |_ctx, m: Message| async move { Ok(m) }).unary(2, |ctx, _m: Message| async move {
        let identity = ctx.identity().map_or_else(Identity::anonymous, |i| (*i).clone());
        let sans = ctx.peer().tls.and_then(|t| t.peer_certificate).map(|c| c.dns_names.join(",")).unwrap_or_default();
        Ok(Message::raw(format!("{}|{}|{sans}", identity.subject(), identity.method())))
    })
}

async fn whoami(c: &Connection) -> String {
    let reply = timeout(LIMIT, c.call(2, Message::raw(&b""[..]))).await.unwrap().unwrap();
    String::from_utf8(reply.body.to_vec()).unwrap()
}

async fn echo(c: &Connection) {
    let reply = timeout(LIMIT, c.call(1, Message::raw(&b"ping"[..]))).await.unwrap().unwrap();
    assert_eq!(&reply.body[..], b"ping");
}

fn timeouts(handshake: Duration) -> Timeouts {
    let mut t = Timeouts::default();
    t.handshake = handshake;
    t
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ----- TLS ----------------------------------------------------------------------

#[tokio::test]
async fn tls_round_trip() {
    let pki = Pki::new("test CA");
    let (_server, url) =
        serve("tls://127.0.0.1:0", Builder::new().router(router()).tls_server(pki.server_config())).await;
    assert!(url.starts_with("tls://127.0.0.1:"), "{url}");
    let c = connect(&url, Builder::new().tls_client(pki.client_config())).await;
    echo(&c).await;
    let tls = c.peer_info().tls.expect("TLS facts recorded");
    assert_eq!(tls.alpn.as_deref(), Some(&b"gatewire/1"[..]));
    assert_eq!(tls.version.as_deref(), Some("TLSv1_3"));
    assert_eq!(tls.server_name.as_deref(), Some("127.0.0.1"));
    let server_cert = tls.peer_certificate.expect("server certificate");
    assert_eq!(server_cert.common_name.as_deref(), Some("gateway"));
    assert!(server_cert.ip_addresses.contains(&"127.0.0.1".parse().unwrap()));
    // No authenticator: anonymous, and no client certificate.
    assert_eq!(whoami(&c).await, "|anonymous|");

    // A DNS name verifies too (SNI sent, seen by the server).
    let port = url.rsplit(':').next().unwrap();
    let c = connect(&format!("tls://localhost:{port}"), Builder::new().tls_client(pki.client_config())).await;
    echo(&c).await;
}

#[tokio::test]
async fn wrong_hostname_and_unknown_ca_fail() {
    let pki = Pki::new("test CA");
    let (_server, url) =
        serve("tls://127.0.0.1:0", Builder::new().router(router()).tls_server(pki.server_config())).await;

    // The certificate does not name `other.example`.
    let other = pki.client_config().with_server_name("other.example").unwrap();
    let err = refused(try_connect(&url, Builder::new().tls_client(other)).await);
    assert!(err.is_closed(), "{err}");
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // A certificate for another host entirely, presented for 127.0.0.1.
    let elsewhere = pki.leaf("elsewhere", &["elsewhere.example"], ExtendedKeyUsagePurpose::ServerAuth);
    let config = TlsServerConfig::builder().identity_pem(elsewhere.cert.as_bytes(), elsewhere.key.as_bytes()).unwrap();
    let (_other_server, other_url) =
        serve("tls://127.0.0.1:0", Builder::new().router(router()).tls_server(config.build().unwrap())).await;
    let err = refused(try_connect(&other_url, Builder::new().tls_client(pki.client_config())).await);
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // A server whose CA we do not trust.
    let stranger = Pki::new("stranger CA");
    let err = refused(try_connect(&url, Builder::new().tls_client(stranger.client_config())).await);
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn alpn_is_required_by_the_server() {
    let pki = Pki::new("test CA");
    let (_server, url) =
        serve("tls://127.0.0.1:0", Builder::new().router(router()).tls_server(pki.server_config())).await;
    let addr = url.trim_start_matches("tls://").to_owned();
    let raw_client = |alpn: Vec<Vec<u8>>| {
        let mut config = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(pki.roots())
            .with_no_client_auth();
        config.alpn_protocols = alpn;
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };

    // Offering only another protocol: the handshake itself fails.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let result = timeout(LIMIT, raw_client(vec![b"h2".to_vec()]).connect(name.clone(), tcp)).await.unwrap();
    let err = result.expect_err("no protocol in common");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");

    // Offering no ALPN at all: the handshake completes, then the server
    // closes at once, before any gatewire byte.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut tls = timeout(LIMIT, raw_client(Vec::new()).connect(name, tcp)).await.unwrap().unwrap();
    let mut buf = [0u8; 64];
    let read = timeout(LIMIT, tls.read(&mut buf)).await.expect("closed by the server, not left hanging");
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
}

/// A plain rustls server on loopback (not gatewire) that selects `alpn`.
async fn raw_tls_server(pki: &Pki, alpn: Vec<Vec<u8>>) -> u16 {
    let leaf = pki.server();
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 1024];
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn alpn_is_required_by_the_client() {
    let pki = Pki::new("test CA");
    // A TLS server that does not speak ALPN.
    let port = raw_tls_server(&pki, Vec::new()).await;
    let err =
        refused(try_connect(&format!("tls://127.0.0.1:{port}"), Builder::new().tls_client(pki.client_config())).await);
    assert!(err.to_string().contains("did not select the ALPN protocol gatewire/1"), "{err}");
    // A TLS server for another protocol.
    let port = raw_tls_server(&pki, vec![b"h2".to_vec()]).await;
    let err =
        refused(try_connect(&format!("tls://127.0.0.1:{port}"), Builder::new().tls_client(pki.client_config())).await);
    assert!(err.is_closed(), "{err}");
}

#[tokio::test]
async fn plaintext_and_tls_do_not_mix() {
    let pki = Pki::new("test CA");
    let (_tls_server, tls_url) =
        serve("tls://127.0.0.1:0", Builder::new().router(router()).tls_server(pki.server_config())).await;
    let (_tcp_server, tcp_url) = serve("tcp://127.0.0.1:0", Builder::new().router(router())).await;

    // A plaintext gatewire client against the TLS server: refused quickly by
    // the TLS layer, not left waiting for its 10 s handshake deadline.
    let started = Instant::now();
    let plain = tls_url.replace("tls://", "tcp://");
    let err = refused(try_connect(&plain, Builder::new()).await);
    assert!(err.is_closed(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // A TLS client against the plaintext server.
    let started = Instant::now();
    let tls = tcp_url.replace("tcp://", "tls://");
    let err = refused(try_connect(&tls, Builder::new().tls_client(pki.client_config())).await);
    assert!(err.is_closed(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    // tls:// without a TLS configuration never goes plaintext.
    let err = refused(try_connect(&tls_url, Builder::new()).await);
    assert!(err.to_string().contains("needs a TLS configuration"), "{err}");
    assert!(Builder::new().serve(&["tls://127.0.0.1:0"]).await.is_err());
}

#[tokio::test]
async fn handshake_deadline_covers_tls() {
    let pki = Pki::new("test CA");
    let builder = Builder::new().router(router()).tls_server(pki.server_config());
    let (_server, url) = serve("tls://127.0.0.1:0", builder.timeouts(timeouts(Duration::from_millis(300)))).await;
    // A client that connects and never starts TLS is dropped by the server.
    let mut silent = tokio::net::TcpStream::connect(url.trim_start_matches("tls://")).await.unwrap();
    let mut byte = [0u8; 1];
    let read = timeout(LIMIT, silent.read(&mut byte)).await.expect("closed by the deadline");
    assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");

    // A server that accepts TCP and never answers the ClientHello: the
    // client's one deadline (TCP + TLS) fires.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = mute.local_addr().unwrap().port();
    let started = Instant::now();
    let client = Builder::new().tls_client(pki.client_config()).timeouts(timeouts(Duration::from_millis(300)));
    let err = refused(try_connect(&format!("tls://127.0.0.1:{port}"), client).await);
    assert!(err.to_string().contains("did not finish within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(mute);
}

// ----- mTLS ---------------------------------------------------------------------

#[tokio::test]
async fn mtls_identity_reaches_the_handler() {
    let pki = Pki::new("test CA");
    let builder = Builder::new()
        .router(router())
        .tls_server(pki.mtls_server_config(&pki, false))
        .authenticator(MtlsAuthenticator::new());
    let (_server, url) = serve("tls://127.0.0.1:0", builder).await;
    let client = pki.client();
    let c = connect(&url, Builder::new().tls_client(pki.mtls_client_config(&client))).await;
    assert_eq!(whoami(&c).await, "desktop-app|certificate|desktop.example");

    // Without a client certificate the TLS layer refuses the client.
    let err = refused(try_connect(&url, Builder::new().tls_client(pki.client_config())).await);
    assert!(err.is_closed(), "{err}");

    // A certificate from another CA is refused too.
    let rogue = Pki::new("rogue CA");
    let rogue_client = rogue.client();
    let config = TlsClientConfig::builder()
        .root_ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .identity_pem(rogue_client.cert.as_bytes(), rogue_client.key.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let err = refused(try_connect(&url, Builder::new().tls_client(config)).await);
    assert!(err.is_closed(), "{err}");
}

#[tokio::test]
async fn optional_client_certificates_are_checked_by_the_authenticator() {
    let pki = Pki::new("test CA");
    let builder = Builder::new()
        .router(router())
        .tls_server(pki.mtls_server_config(&pki, true))
        .authenticator(MtlsAuthenticator::new().allow(["desktop.example"]));
    let (_server, url) = serve("tls://127.0.0.1:0", builder).await;

    // No certificate: TLS lets it through, the authenticator refuses it with
    // a typed code.
    let err = refused(try_connect(&url, Builder::new().tls_client(pki.client_config())).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    // A valid certificate whose names are not allowed.
    let intruder = pki.leaf("intruder", &["intruder.example"], ExtendedKeyUsagePurpose::ClientAuth);
    let err = refused(try_connect(&url, Builder::new().tls_client(pki.mtls_client_config(&intruder))).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    let c = connect(&url, Builder::new().tls_client(pki.mtls_client_config(&pki.client()))).await;
    assert_eq!(whoami(&c).await, "desktop-app|certificate|desktop.example");
    let identity = c.peer_info().tls.unwrap();
    assert_eq!(identity.alpn.as_deref(), Some(&b"gatewire/1"[..]));
}

// ----- WebSocket over TLS ---------------------------------------------------------

#[tokio::test]
async fn wss_round_trip() {
    let pki = Pki::new("test CA");
    let builder = Builder::new()
        .router(router())
        .tls_server(pki.mtls_server_config(&pki, false))
        .authenticator(MtlsAuthenticator::new());
    let (_server, url) = serve("wss://127.0.0.1:0/gw", builder).await;
    assert!(url.starts_with("wss://127.0.0.1:") && url.ends_with("/gw"), "{url}");
    let c = connect(&url, Builder::new().tls_client(pki.mtls_client_config(&pki.client()))).await;
    echo(&c).await;
    assert_eq!(whoami(&c).await, "desktop-app|certificate|desktop.example");
    let peer = c.peer_info();
    assert!(peer.address.unwrap().starts_with("wss://"));
    assert_eq!(peer.tls.unwrap().alpn.as_deref(), Some(&b"http/1.1"[..]));

    // Large messages cross too.
    let big = vec![7u8; 300_000];
    let reply = timeout(LIMIT, c.call(1, Message::raw(big.clone()))).await.unwrap().unwrap();
    assert_eq!(&reply.body[..], &big[..]);

    // The server's certificate is verified over wss too.
    let stranger = Pki::new("stranger CA");
    let err = refused(try_connect(&url, Builder::new().tls_client(stranger.client_config())).await);
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // And ws:// to the wss:// port is not upgraded.
    let err = refused(try_connect(&url.replace("wss://", "ws://"), Builder::new()).await);
    assert!(err.is_closed(), "{err}");
}

// ----- tokens ---------------------------------------------------------------------

const ALICE: &str = "alice-4f1c2b8e9d7a6c5b3e2f1a0d9c8b7a6e";
const BOB: &str = "bob-token";

fn tokens() -> TokenAuthenticator {
    TokenAuthenticator::new().token("alice", ALICE).token("bob", BOB)
}

#[tokio::test]
async fn token_auth_accepts_and_refuses() {
    let (_server, url) = serve("tcp://127.0.0.1:0", Builder::new().router(router()).authenticator(tokens())).await;
    let c = connect(&url, Builder::new().token(ALICE)).await;
    assert_eq!(whoami(&c).await, "alice|token|");
    assert_eq!(c.identity(), None, "the client side has no identity");
    let c = connect(&url, Builder::new().auth(BOB.as_bytes().to_vec())).await;
    assert_eq!(whoami(&c).await, "bob|token|");

    // Wrong tokens of every length, and none at all: a typed refusal at
    // connect, the same for each.
    let long = "x".repeat(10_000);
    let wrong = [&ALICE[..ALICE.len() - 1], "alice-4f1c2b8e9d7a6c5b3e2f1a0d9c8b7a6f", "bob-tokenn", "b", "", &long];
    for token in wrong {
        let err = refused(try_connect(&url, Builder::new().token(token)).await);
        assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
        assert!(err.is_closed());
    }
    let err = refused(try_connect(&url, Builder::new()).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
}

#[tokio::test]
async fn refusal_is_typed_on_every_transport() {
    let pki = Pki::new("test CA");
    for bind in ["ws://127.0.0.1:0/gw", "wss://127.0.0.1:0/gw", &unix_url()] {
        let builder = Builder::new().router(router()).authenticator(tokens()).tls_server(pki.server_config());
        let (_server, url) = serve(bind, builder).await;
        let err = refused(try_connect(&url, Builder::new().tls_client(pki.client_config()).token("nope")).await);
        assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{bind}: {err}");
        let c = connect(&url, Builder::new().tls_client(pki.client_config()).token(ALICE)).await;
        assert_eq!(whoami(&c).await, "alice|token|", "{bind}");
    }
}

// ----- JWT ------------------------------------------------------------------------

const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-gatewire";

fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn jwt_hs256_valid_expired_and_forged() {
    let auth = JwtAuthenticator::hs256(HS_SECRET).unwrap().issuer("gateway-issuer").leeway(Duration::ZERO);
    let (_server, url) = serve("tcp://127.0.0.1:0", Builder::new().router(router()).authenticator(auth)).await;

    let exp = now_secs() + 600;
    let good = hs256(&serde_json::json!({"sub": "carol", "exp": exp, "iss": "gateway-issuer"}), HS_SECRET);
    let c = connect(&url, Builder::new().token(good)).await;
    assert_eq!(whoami(&c).await, "carol|jwt|");
    let identity = c.identity();
    assert!(identity.is_none(), "client side");

    let expired =
        hs256(&serde_json::json!({"sub": "carol", "exp": now_secs() - 60, "iss": "gateway-issuer"}), HS_SECRET);
    let err = refused(try_connect(&url, Builder::new().token(expired)).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    let forged = hs256(&serde_json::json!({"sub": "carol", "exp": exp, "iss": "gateway-issuer"}), &[9u8; 40]);
    let err = refused(try_connect(&url, Builder::new().token(forged)).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    // A valid signature with the wrong issuer, a missing `sub`, `alg: none`,
    // and garbage.
    let other_issuer = hs256(&serde_json::json!({"sub": "carol", "exp": exp, "iss": "someone-else"}), HS_SECRET);
    let no_sub = hs256(&serde_json::json!({"exp": exp, "iss": "gateway-issuer"}), HS_SECRET);
    let mut parts = other_issuer.split('.');
    let (_, payload) = (parts.next(), parts.next().unwrap());
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    for token in [other_issuer.as_str(), no_sub.as_str(), alg_none.as_str(), "not.a.jwt", "\u{0}\u{1}"] {
        let err = refused(try_connect(&url, Builder::new().token(token)).await);
        assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{token}: {err}");
    }
    // Bytes that are not UTF-8.
    let err = refused(try_connect(&url, Builder::new().auth(vec![0xff, 0xfe, 0x00])).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
}

#[tokio::test]
async fn jwt_eddsa() {
    let signing = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let auth = JwtAuthenticator::eddsa_pem(signing.public_key_pem()).unwrap();
    let (_server, url) = serve("tcp://127.0.0.1:0", Builder::new().router(router()).authenticator(auth)).await;
    let key = jsonwebtoken::EncodingKey::from_ed_pem(signing.serialize_pem().as_bytes()).unwrap();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &claims, &key).unwrap()
    };
    let c =
        connect(&url, Builder::new().token(sign(serde_json::json!({"sub": "dave", "exp": now_secs() + 600})))).await;
    assert_eq!(whoami(&c).await, "dave|jwt|");

    let expired = sign(serde_json::json!({"sub": "dave", "exp": now_secs() - 3600}));
    let err = refused(try_connect(&url, Builder::new().token(expired)).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    // Signed by another key.
    let other = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let other_key = jsonwebtoken::EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap();
    let claims = serde_json::json!({"sub": "dave", "exp": now_secs() + 600});
    let forged =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &claims, &other_key).unwrap();
    let err = refused(try_connect(&url, Builder::new().token(forged)).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    // An HS256 token cannot pass for EdDSA (algorithm confusion).
    let hs = hs256(&serde_json::json!({"sub": "dave", "exp": now_secs() + 600}), HS_SECRET);
    let err = refused(try_connect(&url, Builder::new().token(hs)).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
}

// ----- expiry and authorization -------------------------------------------------------

#[tokio::test]
async fn calls_after_expiry_are_unauthenticated() {
    // Valid for 2 s (room for the first call on a loaded machine); the test
    // then waits until just past the expiry the server recorded.
    let expiry = Arc::new(std::sync::Mutex::new(None));
    let recorded = expiry.clone();
    let auth = move |_: Option<&[u8]>, _: &gatewire::transport::PeerInfo| -> Result<Identity, Status> {
        let at = SystemTime::now() + Duration::from_secs(2);
        *recorded.lock().unwrap() = Some(at);
        Ok(Identity::new("short-lived", AuthMethod::Custom).with_expiry(at))
    };
    let (_server, url) = serve("tcp://127.0.0.1:0", Builder::new().router(router()).authenticator(auth)).await;
    let c = connect(&url, Builder::new()).await;
    assert_eq!(whoami(&c).await, "short-lived|custom|");
    let at = expiry.lock().unwrap().expect("authenticated");
    let wait = at.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
    let err = timeout(LIMIT, c.call(1, Message::raw(&b"late"[..]))).await.unwrap().unwrap_err();
    assert!(err.is_remote(), "{err}");
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
    assert_eq!(err.message(), Some("credentials expired"));
    let mut rx = timeout(LIMIT, c.server_stream(3, Message::raw(&b""[..]))).await.unwrap().unwrap();
    let err = timeout(LIMIT, rx.next()).await.unwrap().expect("an error, not the end").unwrap_err();
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
    // The connection itself stays up.
    assert!(!c.is_closed());
}

/// Accepts payloads `subject|milliseconds of validity`.
fn expiring_authenticator(payload: Option<&[u8]>, _: &gatewire::transport::PeerInfo) -> Result<Identity, Status> {
    let text = std::str::from_utf8(payload.unwrap_or_default()).unwrap_or_default();
    let (subject, ms) =
        text.split_once('|').ok_or_else(|| Status::new(ErrorCode::UNAUTHENTICATED, "bad credentials"))?;
    let ms: u64 = ms.parse().map_err(|_| Status::new(ErrorCode::UNAUTHENTICATED, "bad credentials"))?;
    Ok(Identity::new(subject, AuthMethod::Custom).with_expiry(SystemTime::now() + Duration::from_millis(ms)))
}

#[tokio::test]
async fn reauthentication_renews_a_live_connection() {
    let with_expiry = router().unary(4, |ctx, _m: Message| async move {
        let expiry = ctx.identity().and_then(|i| i.expires_at()).expect("an expiring identity");
        let ms = expiry.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
        Ok(Message::raw(ms.to_string()))
    });
    let builder = Builder::new().router(with_expiry).authenticator(expiring_authenticator);
    let (server, url) = serve("tcp://127.0.0.1:0", builder).await;
    let expiry = |c: &Connection| {
        let c = c.clone();
        async move {
            let reply = timeout(LIMIT, c.call(4, Message::raw(&b""[..]))).await.unwrap().unwrap();
            String::from_utf8(reply.body.to_vec()).unwrap().parse::<u128>().unwrap()
        }
    };

    // A fresh token moves the expiry forward, on the same connection.
    let c = connect(&url, Builder::new().auth(&b"alice|60000"[..])).await;
    let first = expiry(&c).await;
    timeout(LIMIT, c.reauthenticate(&b"alice|600000"[..])).await.unwrap().unwrap();
    assert!(expiry(&c).await >= first + 500_000);
    assert_eq!(whoami(&c).await, "alice|custom|");

    // Another subject, or bad credentials, are refused; the identity stays.
    for (payload, message) in
        [(&b"mallory|600000"[..], "re-authentication must name the same subject"), (&b"garbage"[..], "bad credentials")]
    {
        let err = timeout(LIMIT, c.reauthenticate(payload)).await.unwrap().unwrap_err();
        assert_eq!((err.code(), err.message()), (ErrorCode::UNAUTHENTICATED, Some(message)));
        assert_eq!(whoami(&c).await, "alice|custom|");
    }

    // After expiry calls fail, and re-authenticating brings them back.
    let short = connect(&url, Builder::new().auth(&b"bob|300"[..])).await;
    let at = expiry(&short).await;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis();
    tokio::time::sleep(Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap() + 50)).await;
    let err = timeout(LIMIT, short.call(1, Message::raw(&b"x"[..]))).await.unwrap().unwrap_err();
    assert_eq!((err.code(), err.message()), (ErrorCode::UNAUTHENTICATED, Some("credentials expired")));
    timeout(LIMIT, short.reauthenticate(&b"bob|600000"[..])).await.unwrap().unwrap();
    echo(&short).await;
    assert!(!short.is_closed() && !c.is_closed());
    server.shutdown().await;

    // A server without an authenticator has nothing to renew.
    let (_plain, url) = serve("tcp://127.0.0.1:0", Builder::new().router(router())).await;
    let c = connect(&url, Builder::new()).await;
    let err = timeout(LIMIT, c.reauthenticate(&b"alice|1"[..])).await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::UNKNOWN_METHOD, "{err}");
}

#[tokio::test]
async fn authorization_denies_without_running_the_handler() {
    let ran = Arc::new(AtomicU32::new(0));
    let counted = ran.clone();
    let router = router()
        .unary(5, move |_ctx, m: Message| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(m)
            }
        })
        .stream(6, |_ctx, _m: Message, _rx, _tx| async move { Ok(()) });
    // bob may only echo (method 1) and ask who he is (2); alice may call
    // anything. Method 9 has no handler at all.
    let authorizer = |identity: &Identity, method: u32| -> Result<(), Status> {
        match (identity.subject(), method) {
            ("alice", _) | (_, 1 | 2) => Ok(()),
            _ => Err(Status::new(ErrorCode::PERMISSION_DENIED, "not for you")),
        }
    };
    let builder = Builder::new().router(router).authenticator(tokens()).authorizer(authorizer);
    let (_server, url) = serve("tcp://127.0.0.1:0", builder).await;

    let bob = connect(&url, Builder::new().token(BOB)).await;
    echo(&bob).await;
    for method in [5, 9] {
        let err = timeout(LIMIT, bob.call(method, Message::raw(&b"x"[..]))).await.unwrap().unwrap_err();
        assert!(err.is_remote(), "{err}");
        assert_eq!(err.code(), ErrorCode::PERMISSION_DENIED, "method {method}: {err}");
        assert_eq!(err.message(), Some("not for you"));
    }
    let mut rx = timeout(LIMIT, bob.server_stream(6, Message::raw(&b""[..]))).await.unwrap().unwrap();
    let err = timeout(LIMIT, rx.next()).await.unwrap().expect("an error, not the end").unwrap_err();
    assert_eq!(err.code(), ErrorCode::PERMISSION_DENIED, "{err}");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the handler never ran");

    let alice = connect(&url, Builder::new().token(ALICE)).await;
    let reply = timeout(LIMIT, alice.call(5, Message::raw(&b"ok"[..]))).await.unwrap().unwrap();
    assert_eq!(&reply.body[..], b"ok");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    let err = timeout(LIMIT, alice.call(9, Message::raw(&b""[..]))).await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::UNKNOWN_METHOD, "allowed, but no handler");
}

#[tokio::test]
async fn denied_events_are_dropped() {
    let ran = Arc::new(AtomicU32::new(0));
    let counted = ran.clone();
    let router = router().event(7, move |_ctx, _m: Message| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let authorizer = |identity: &Identity, method: u32| -> Result<(), Status> {
        match (identity.subject(), method) {
            ("alice", _) | (_, 1 | 2) => Ok(()),
            _ => Err(Status::new(ErrorCode::PERMISSION_DENIED, "not for you")),
        }
    };
    let builder = Builder::new().router(router).authenticator(tokens()).authorizer(authorizer);
    let (server, url) = serve("tcp://127.0.0.1:0", builder).await;
    let bob = connect(&url, Builder::new().token(BOB)).await;
    bob.emit(7, Message::raw(&b"sneaky"[..])).await.unwrap();
    // Frames are handled in order: once the echo is answered, the event
    // before it has been judged.
    echo(&bob).await;
    let dropped: u64 = server.connections().iter().map(|c| c.stats().events_dropped).sum();
    assert_eq!(dropped, 1);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the event handler never ran");
}

// ----- Unix credentials -----------------------------------------------------------------

#[tokio::test]
async fn unix_credentials_allowlist() {
    let builder = Builder::new().router(router()).authenticator(UnixPeerAuthenticator::new());
    let (_server, url) = serve(&unix_url(), builder).await;
    let c = connect(&url, Builder::new()).await;
    let me = c.peer_info().credentials.expect("unix credentials").uid;
    assert_eq!(whoami(&c).await, format!("uid:{me}|unix-credentials|"));

    // An allowlist without our uid.
    let builder = Builder::new().router(router()).authenticator(UnixPeerAuthenticator::with_uids([me.wrapping_add(1)]));
    let (_server, url) = serve(&unix_url(), builder).await;
    let err = refused(try_connect(&url, Builder::new()).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    // TCP peers have no credentials.
    let builder = Builder::new().router(router()).authenticator(UnixPeerAuthenticator::new());
    let (_server, url) = serve("tcp://127.0.0.1:0", builder).await;
    let err = refused(try_connect(&url, Builder::new()).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");

    // Unix credentials for local daemons, else a token.
    let any = AnyAuthenticator::new().or(UnixPeerAuthenticator::with_uids([me.wrapping_add(1)])).or(tokens());
    let (_server, url) = serve(&unix_url(), Builder::new().router(router()).authenticator(any)).await;
    let c = connect(&url, Builder::new().token(BOB)).await;
    assert_eq!(whoami(&c).await, "bob|token|");
    let err = refused(try_connect(&url, Builder::new()).await);
    assert_eq!(err.code(), ErrorCode::UNAUTHENTICATED, "{err}");
}
