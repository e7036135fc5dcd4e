//! Catalogue attacks on the transports (`hostile-inputs.md` G:
//! authentication and TLS, H: WebSocket, I: Unix sockets), each over the
//! transport it is about, against a real gatewire server. Certificates are
//! made at test time with rcgen; the TLS attackers are raw rustls clients
//! that can cut and misuse the handshake. H1, H2 and I3 are in `attacks.rs`.
//!
//! The parts of I1 and I2 that need a second uid run when the tests run as
//! root: one thread then takes another effective uid (a raw `setresuid`,
//! which changes that thread's credentials only) to connect.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gatewire::auth::{TokenAuthenticator, UnixPeerAuthenticator};
use gatewire::{Builder, ErrorCode, Message, Router, Timeouts, TlsClientConfig, TlsServerConfig};
use gatewire_hostile::{
    Attacker, Ending, Io, LIMIT, WsAttacker, encode, frame, hello_frame, hello_with, ping, remove_unix_dir, request,
    serve_tcp, serve_url, unix_url,
};
use gatewire_proto::control::HelloAck;
use gatewire_proto::{Flags, Frame, FrameDecoder, FrameType};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

// ----- certificates and raw clients ------------------------------------------------

/// A test CA and a server certificate for `localhost` and `127.0.0.1`.
struct Pki {
    ca_pem: String,
    cert: String,
    key: String,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "hostile CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CommonName, "gateway");
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap().pem();
        Self { ca_pem, cert, key: key.serialize_pem() }
    }

    fn server_config(&self) -> TlsServerConfig {
        TlsServerConfig::builder().identity_pem(self.cert.as_bytes(), self.key.as_bytes()).unwrap().build().unwrap()
    }

    fn client_config(&self) -> TlsClientConfig {
        TlsClientConfig::builder().root_ca_pem(self.ca_pem.as_bytes()).unwrap().build().unwrap()
    }

    /// A raw rustls client configuration (TLS 1.3) offering `alpn`.
    fn rustls_client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `addr` offering `alpn`.
    async fn tls(&self, addr: &str, alpn: &[&[u8]]) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        timeout(LIMIT, tokio_rustls::TlsConnector::from(self.rustls_client(alpn)).connect(name, tcp))
            .await
            .expect("the TLS handshake ends in time")
    }
}

/// The `host:port` of a `scheme://host:port[/path]` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    rest.split('/').next().expect("host:port").to_owned()
}

/// A raw attacker on any transport: a byte stream, or a WebSocket.
enum Raw {
    Stream(Attacker<Box<dyn Io>>),
    Ws(Box<WsAttacker>),
}

impl Raw {
    /// Opens a raw connection to a bound gatewire URL (TLS with ALPN
    /// `gatewire/1` on `tls://`, `http/1.1` under `wss://`).
    async fn open(url: &str, pki: &Pki) -> Self {
        let scheme = url.split_once("://").expect("a URL").0;
        let stream: Box<dyn Io> = match scheme {
            "tcp" => Box::new(TcpStream::connect(host_port(url)).await.unwrap()),
            "unix" => Box::new(UnixStream::connect(url.trim_start_matches("unix://")).await.unwrap()),
            "tls" => Box::new(pki.tls(&host_port(url), &[b"gatewire/1"]).await.unwrap()),
            "ws" => return Self::Ws(Box::new(WsAttacker::connect(url).await)),
            "wss" => {
                let tls = pki.tls(&host_port(url), &[b"http/1.1"]).await.unwrap();
                return Self::Ws(Box::new(WsAttacker::upgrade(Box::new(tls), url).await));
            }
            other => panic!("no raw attacker for {other}://"),
        };
        Self::Stream(Attacker::over(stream))
    }

    async fn send(&mut self, frames: &[Frame]) {
        match self {
            Self::Stream(a) => a.send(frames).await,
            Self::Ws(w) => w.send(frames).await,
        }
    }

    async fn next(&mut self) -> Option<Frame> {
        match self {
            Self::Stream(a) => a.next().await,
            Self::Ws(w) => w.next().await,
        }
    }

    async fn ending(&mut self) -> Ending {
        match self {
            Self::Stream(a) => a.ending().await,
            Self::Ws(w) => w.ending().await,
        }
    }
}

/// The HELLO_ACK among `frames`, decoded.
fn hello_ack(frames: &[Frame]) -> Option<HelloAck> {
    frames.iter().find(|f| f.header.ty == FrameType::HELLO_ACK).map(|f| HelloAck::decode(&f.payload).unwrap())
}

/// An echo on method 1 that counts its calls.
fn counting_echo(calls: Arc<AtomicUsize>) -> Router {
    Router::new().unary(1, move |_ctx, m: Message| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(m) }
    })
}

const TOKEN: &str = "hostile-token-7c2f0d9e4b8a1f3e5d6c";

fn tokens() -> TokenAuthenticator {
    TokenAuthenticator::new().token("desktop", TOKEN)
}

fn with_token(token: Option<&[u8]>) -> Frame {
    hello_with(|c| c.auth = token.map(Bytes::copy_from_slice))
}

// ----- G. Authentication and TLS ------------------------------------------------------

/// G1: before authentication only HELLO is read, on every transport (TCP,
/// Unix, WebSocket, TLS, WebSocket over TLS), with a token authenticator.
/// A REQUEST, PING, CREDIT, extension frame or HELLO_ACK before the HELLO is
/// GOAWAY(PROTOCOL_VIOLATION) and never answered; a HELLO with a wrong token
/// followed at once by a REQUEST gets a refusal (HELLO_ACK UNAUTHENTICATED,
/// or GOAWAY(PROTOCOL_VIOLATION) if the REQUEST is read before the decision)
/// and the REQUEST never runs a handler; a HELLO larger than the 16 KiB
/// pre-authentication limit is GOAWAY(TOO_LARGE). The right token is served.
#[tokio::test]
async fn g1_nothing_before_authentication() {
    let pki = Pki::new();
    for bind in [
        "tcp://127.0.0.1:0".to_owned(),
        unix_url("g1"),
        "ws://127.0.0.1:0/gw".to_owned(),
        "tls://127.0.0.1:0".to_owned(),
        "wss://127.0.0.1:0/gw".to_owned(),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let builder =
            Builder::new().router(counting_echo(calls.clone())).authenticator(tokens()).tls_server(pki.server_config());
        let (server, url) = serve_url(builder, &bind).await;

        let early = [
            request(1, 1, b"before the HELLO"),
            ping(1),
            frame(FrameType::CREDIT, Flags::NONE, 0, 1024, b""),
            frame(FrameType(0x80), Flags::NONE, 0, 0, b"extension"),
            frame(FrameType::HELLO_ACK, Flags::NONE, 0, 0, &HelloAck::default().encode()),
        ];
        for f in early {
            let mut raw = Raw::open(&url, &pki).await;
            raw.send(std::slice::from_ref(&f)).await;
            let e = raw.ending().await;
            assert_eq!(e.goaway, Some(ErrorCode::PROTOCOL_VIOLATION), "{url}, {:?} first: {e:?}", f.header.ty);
            assert!(e.before.is_empty() && e.after.is_empty(), "{url}: {e:?}");
        }

        let mut raw = Raw::open(&url, &pki).await;
        raw.send(&[with_token(Some(b"wrong-token")), request(1, 1, b"pipelined")]).await;
        let e = raw.ending().await;
        let refused = hello_ack(&e.before).is_some_and(|ack| ack.error_code == ErrorCode::UNAUTHENTICATED);
        assert!(refused || e.goaway == Some(ErrorCode::PROTOCOL_VIOLATION), "{url}: {e:?}");
        assert!(e.before.iter().all(|f| f.header.ty == FrameType::HELLO_ACK), "{url}: {e:?}");

        let mut raw = Raw::open(&url, &pki).await;
        raw.send(&[with_token(Some(&[b'x'; 17 * 1024]))]).await;
        let e = raw.ending().await;
        assert_eq!(e.goaway, Some(ErrorCode::TOO_LARGE), "{url}: {e:?}");

        let mut raw = Raw::open(&url, &pki).await;
        raw.send(&[with_token(Some(TOKEN.as_bytes()))]).await;
        let ack = raw.next().await.expect("HELLO_ACK");
        assert_eq!(HelloAck::decode(&ack.payload).unwrap().error_code, ErrorCode::NO_ERROR, "{url}");
        raw.send(&[request(1, 1, b"authenticated")]).await;
        let r = loop {
            let f = raw.next().await.expect("RESPONSE");
            if f.header.ty == FrameType::RESPONSE {
                break f;
            }
        };
        assert_eq!(&r.payload[..], b"authenticated");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{url}: only the authenticated call ran");
        drop(server);
        if url.starts_with("unix://") {
            remove_unix_dir(&url);
        }
    }
}

/// G2: a refusal says nothing about the token presented: no token, an empty
/// one, 1 byte, 10 KiB, the right token with its last byte dropped, with a
/// byte added or with one byte changed all get byte-identical HELLO_ACK
/// payloads (UNAUTHENTICATED, one message that does not echo the token).
/// The right token is accepted. (A wire-level timing test cannot resolve a
/// comparison's nanoseconds on a shared 2-core machine; the comparison is of
/// SHA-256 digests with `subtle`, SECURITY.md §2.4.)
#[tokio::test]
async fn g2_refusals_do_not_depend_on_the_token() {
    let (_server, addr) = serve_tcp(Builder::new().router(counting_echo(Arc::default())).authenticator(tokens())).await;
    let right = TOKEN.as_bytes();
    let mut flipped = right.to_vec();
    flipped[3] ^= 1;
    let long = vec![b'a'; 10 * 1024];
    let wrong: [Option<&[u8]>; 7] = [
        None,
        Some(b""),
        Some(b"x"),
        Some(&long),
        Some(&right[..right.len() - 1]),
        Some(&[right, b"!"].concat()),
        Some(&flipped),
    ];
    let mut refusals = Vec::new();
    for token in wrong {
        let mut a = Attacker::connect(&addr).await;
        a.send(&[with_token(token)]).await;
        let e = a.ending().await;
        let ack = e.before.first().filter(|f| f.header.ty == FrameType::HELLO_ACK).expect("a refusing HELLO_ACK");
        let decoded = HelloAck::decode(&ack.payload).unwrap();
        assert_eq!(decoded.error_code, ErrorCode::UNAUTHENTICATED, "{decoded:?}");
        assert!(!decoded.message.unwrap_or_default().contains(TOKEN), "the refusal echoes no token");
        refusals.push(ack.payload.clone());
    }
    assert!(refusals.windows(2).all(|w| w[0] == w[1]), "refusals differ: {refusals:?}");
    let mut a = Attacker::connect(&addr).await;
    a.accepted(with_token(Some(right))).await;
}

/// G3: tokens never travel in URLs, error messages or logs' material. An
/// endpoint URL with `user:password@` is refused before anything is sent,
/// and the error does not repeat the password. A gatewire WebSocket client
/// with a token sends an upgrade request (captured by a raw server) that
/// carries the token nowhere: it travels only inside the HELLO, in the
/// first binary message. `Builder`'s Debug output does not show it.
#[tokio::test]
async fn g3_token_not_in_urls() {
    const SECRET: &str = "g3-secret-password-9f8e7d";
    for url in [format!("tcp://user:{SECRET}@127.0.0.1:1"), format!("ws://{SECRET}@127.0.0.1:1/gw")] {
        let err = Builder::new().connect(&url).await.expect_err("credentials in a URL are refused");
        assert!(!err.to_string().contains(SECRET), "the error repeats the secret: {err}");
        assert!(!format!("{err:?}").contains(SECRET), "the error repeats the secret: {err:?}");
        let err = Builder::new().serve(&[url.as_str()]).await.expect_err("refused to bind");
        assert!(!err.to_string().contains(SECRET), "the error repeats the secret: {err}");
    }
    assert!(!format!("{:?}", Builder::new().token(SECRET)).contains(SECRET));

    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    let client = tokio::spawn(async move {
        let _ = Builder::new().token(SECRET).connect(&format!("ws://127.0.0.1:{port}/gw?x=1")).await;
    });
    let (tcp, _) = timeout(LIMIT, raw.accept()).await.unwrap().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(String::new()));
    let s = seen.clone();
    // The callback's signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let record = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                       mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
        let mut head = format!("{} {}\n", req.method(), req.uri());
        for (name, value) in req.headers() {
            head.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        *s.lock().unwrap() = head;
        resp.headers_mut().insert("Sec-WebSocket-Protocol", "gatewire.v1".parse().unwrap());
        Ok(resp)
    };
    let tcp: Box<dyn Io> = Box::new(tcp);
    let ws = timeout(LIMIT, tokio_tungstenite::accept_hdr_async(tcp, record)).await.unwrap().unwrap();
    let mut peer = WsAttacker { ws, close: None, eof: false };
    let hello = peer.next().await.expect("a HELLO");
    let head = seen.lock().unwrap().clone();
    assert!(head.starts_with("GET /gw"), "{head}");
    assert!(!head.contains(SECRET), "the upgrade request carries the token: {head}");
    assert_eq!(hello.header.ty, FrameType::HELLO);
    assert!(hello.payload.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "the token is in the HELLO");
    drop(peer);
    let _ = timeout(LIMIT, client).await;
}

/// G4: no plaintext, no unverified name and no protocol confusion on
/// `tls://`. A plaintext HELLO sent to the TLS port gets no gatewire frame
/// back and the connection ends. A TLS client offering only ALPN `h2` fails
/// the handshake; one offering no ALPN completes it and is then closed
/// without an answer to its HELLO. A gatewire client expecting a name the
/// certificate does not carry refuses the server, and one sent with
/// `tls://` to a plaintext server fails instead of falling back.
#[tokio::test]
async fn g4_tls_misconfiguration() {
    let pki = Pki::new();
    let (_server, url) = serve_url(
        Builder::new().router(counting_echo(Arc::default())).tls_server(pki.server_config()),
        "tls://127.0.0.1:0",
    )
    .await;
    let addr = host_port(&url);

    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain.write_all(&encode(&[hello_frame()])).await.unwrap();
    let mut got = Vec::new();
    let _ = timeout(LIMIT, plain.read_to_end(&mut got)).await.expect("the server ends the connection");
    let mut buf = BytesMut::from(&got[..]);
    let frame = FrameDecoder::new(1 << 20).decode(&mut buf);
    assert!(!matches!(frame, Ok(Some(_))), "a gatewire frame in answer to plaintext: {got:02x?}");

    let err = pki.tls(&addr, &[b"h2"]).await.expect_err("no protocol in common");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");

    let mut tls = pki.tls(&addr, &[]).await.expect("the handshake itself completes");
    let _ = tls.write_all(&encode(&[hello_frame()])).await;
    let mut got = Vec::new();
    let _ = timeout(LIMIT, tls.read_to_end(&mut got)).await.expect("the server ends the connection");
    assert!(got.is_empty(), "answered a client that offered no ALPN: {got:02x?}");

    let wrong_name = pki.client_config().with_server_name("other.example").unwrap();
    let err = timeout(LIMIT, Builder::new().tls_client(wrong_name).connect(&url)).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    let (_plain_server, plain_url) = serve_tcp(Builder::new().router(counting_echo(Arc::default()))).await;
    let started = Instant::now();
    let tls_to_plain = format!("tls://{plain_url}");
    let err = timeout(LIMIT, Builder::new().tls_client(pki.client_config()).connect(&tls_to_plain)).await.unwrap();
    assert!(err.is_err_and(|e| e.is_closed()), "no fallback to plaintext");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// A sans-IO rustls client driven by hand over `sock`, so that its records
/// can be cut as the test likes.
struct HandTls {
    tls: rustls::ClientConnection,
    sock: TcpStream,
}

impl HandTls {
    async fn connect(pki: &Pki, addr: &str) -> Self {
        let sock = TcpStream::connect(addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = rustls::ClientConnection::new(pki.rustls_client(&[b"gatewire/1"]), name).unwrap();
        Self { tls, sock }
    }

    /// The records rustls wants to send now.
    fn pending(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Writes pending records and reads until the handshake is done.
    async fn finish_handshake(&mut self) -> std::io::Result<()> {
        loop {
            let out = self.pending();
            self.sock.write_all(&out).await?;
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            self.read_some().await?;
        }
    }

    async fn read_some(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
        let n = timeout(LIMIT, self.sock.read(&mut buf)).await.expect("the server answers in time")?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.tls.read_tls(&mut &buf[..n])?;
        self.tls.process_new_packets().map_err(std::io::Error::other)?;
        Ok(())
    }

    /// Sends `frames` inside TLS and returns the first frame that comes back.
    async fn exchange(&mut self, frames: &[Frame]) -> Frame {
        self.tls.writer().write_all(&encode(frames)).unwrap();
        let out = self.pending();
        self.sock.write_all(&out).await.unwrap();
        let mut plain = BytesMut::new();
        let mut decoder = FrameDecoder::new(1 << 20);
        loop {
            let mut chunk = [0u8; 4096];
            match self.tls.reader().read(&mut chunk) {
                Ok(n) if n > 0 => plain.extend_from_slice(&chunk[..n]),
                _ => self.read_some().await.expect("the server answers inside TLS"),
            }
            if let Some(f) = decoder.decode(&mut plain).unwrap() {
                return f;
            }
        }
    }
}

/// Re-cuts TLS records into records of at most `size` bytes of payload.
fn recut_records(mut bytes: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        let (header, rest) = bytes.split_at(5);
        let (payload, next) = rest.split_at(len);
        for piece in payload.chunks(size) {
            out.extend_from_slice(&header[..3]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            out.extend_from_slice(piece);
        }
        bytes = next;
    }
    out
}

/// Reads until the end of the connection (or a reset); returns how long it
/// took.
async fn until_closed(sock: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = Vec::new();
    let _ = timeout(LIMIT, sock.read_to_end(&mut sink)).await.expect("the server ends the connection in time");
    started.elapsed()
}

/// G5: abuse of the TLS handshake. A ClientHello cut into 16-byte TLS
/// records, each sent one byte per TCP write, is reassembled: the handshake
/// and the gatewire handshake after it succeed. A ClientHello followed by a
/// close_notify alert, or by the end of the TCP stream, ends that connection
/// long before the handshake deadline (10 s); a ClientHello cut short and
/// left silent is ended by the deadline (300 ms on a second server). The
/// server serves a normal client afterwards.
#[tokio::test]
async fn g5_tls_handshake_abuse() {
    let pki = Pki::new();
    let builder = Builder::new().router(counting_echo(Arc::default())).tls_server(pki.server_config());
    let (_server, url) = serve_url(builder, "tls://127.0.0.1:0").await;
    let addr = host_port(&url);

    let mut hand = HandTls::connect(&pki, &addr).await;
    let hello = recut_records(&hand.pending(), 16);
    for b in &hello {
        hand.sock.write_all(std::slice::from_ref(b)).await.unwrap();
    }
    hand.read_some().await.expect("the server answers a fragmented ClientHello");
    hand.finish_handshake().await.expect("the handshake completes");
    assert_eq!(hand.tls.alpn_protocol(), Some(&b"gatewire/1"[..]));
    let ack = hand.exchange(&[hello_frame()]).await;
    assert_eq!(ack.header.ty, FrameType::HELLO_ACK);
    let r = hand.exchange(&[request(1, 1, b"over a cut ClientHello")]).await;
    assert_eq!(&r.payload[..], b"over a cut ClientHello");

    let close_notify = [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00];
    for fin in [false, true] {
        let mut hand = HandTls::connect(&pki, &addr).await;
        let hello = hand.pending();
        hand.sock.write_all(&hello).await.unwrap();
        if fin {
            hand.sock.shutdown().await.unwrap();
        } else {
            hand.sock.write_all(&close_notify).await.unwrap();
        }
        let took = until_closed(&mut hand.sock).await;
        assert!(took < Duration::from_secs(5), "fin {fin}: ended after {took:?}");
    }

    let mut t = Timeouts::default();
    t.handshake = Duration::from_millis(300);
    let builder = Builder::new().router(counting_echo(Arc::default())).tls_server(pki.server_config()).timeouts(t);
    let (_short, short_url) = serve_url(builder, "tls://127.0.0.1:0").await;
    let mut hand = HandTls::connect(&pki, &host_port(&short_url)).await;
    let hello = hand.pending();
    hand.sock.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let took = until_closed(&mut hand.sock).await;
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(5), "ended after {took:?}");

    let c = timeout(LIMIT, Builder::new().tls_client(pki.client_config()).connect(&url)).await.unwrap().unwrap();
    let r = timeout(LIMIT, c.call(1, Message::raw(&b"still served"[..]))).await.unwrap().unwrap();
    assert_eq!(&r.body[..], b"still served");
}

// ----- H. WebSocket ---------------------------------------------------------------

/// A raw HTTP upgrade request for `/gw` with extra header lines.
fn upgrade_request(addr: &str, extra: &str) -> String {
    format!(
        "GET /gw HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: gatewire.v1\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head (up to the blank line).
async fn response_head(sock: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = timeout(LIMIT, sock.read(&mut b)).await.expect("a response in time").unwrap_or(0);
        if n == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked WebSocket frame (mask key 0) with the given first byte (FIN,
/// RSV bits, opcode).
fn ws_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

/// The server's WebSocket frames (opcode, payload) until the connection ends.
async fn server_frames(sock: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    let _ = timeout(LIMIT, sock.read_to_end(&mut bytes)).await.expect("the server ends the connection in time");
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0F;
        let (len, start) = match rest[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => (u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize, 10),
            n => (usize::from(n), 2),
        };
        let end = (start + len).min(rest.len());
        frames.push((opcode, rest[start..end].to_vec()));
        rest = &rest[end..];
    }
    frames
}

/// H3: the upgrade request's head is bounded (tungstenite: 64 KiB, 124
/// headers): a request with one 1 MiB header, and one with 200 small
/// headers, are refused (the connection ends, no 101) within 2 s each, and
/// a normal upgrade is served meanwhile.
#[tokio::test]
async fn h3_upgrade_request_flood() {
    let (_server, url) = serve_url(Builder::new().router(counting_echo(Arc::default())), "ws://127.0.0.1:0/gw").await;
    let addr = host_port(&url);
    let big = format!("X-Big: {}\r\n", "a".repeat(1 << 20));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    for extra in [big, many] {
        let sock = TcpStream::connect(&addr).await.unwrap();
        let (mut r, mut w) = sock.into_split();
        let request = upgrade_request(&addr, &extra);
        let writer = tokio::spawn(async move {
            let _ = w.write_all(request.as_bytes()).await;
            w
        });
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = timeout(LIMIT, r.read_to_end(&mut got)).await.expect("the server ends the connection in time");
        let took = started.elapsed();
        assert!(!got.starts_with(b"HTTP/1.1 101"), "upgraded: {}", String::from_utf8_lossy(&got));
        assert!(took < Duration::from_secs(2), "took {took:?}");
        let _ = writer.await;
    }
    let mut ws = WsAttacker::connect(&url).await;
    ws.send(&[hello_frame()]).await;
    assert_eq!(ws.next().await.expect("HELLO_ACK").header.ty, FrameType::HELLO_ACK);
}

/// H4: permessage-deflate is never negotiated: offered by the client, it is
/// absent from the 101 response, and a message with the compression bit
/// (RSV1) set is refused (the connection ends with no gatewire frame), so
/// nothing is ever inflated. The same HELLO without RSV1 is answered.
#[tokio::test]
async fn h4_no_permessage_deflate() {
    let (_server, url) = serve_url(Builder::new().router(counting_echo(Arc::default())), "ws://127.0.0.1:0/gw").await;
    let addr = host_port(&url);
    let hello = encode(&[hello_frame()]);
    for rsv1 in [true, false] {
        let mut sock = TcpStream::connect(&addr).await.unwrap();
        let extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
        sock.write_all(upgrade_request(&addr, extra).as_bytes()).await.unwrap();
        let head = response_head(&mut sock).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
        let first = if rsv1 { 0x80 | 0x40 | 0x2 } else { 0x80 | 0x2 };
        sock.write_all(&ws_frame(first, &hello)).await.unwrap();
        if !rsv1 {
            // Close after the answer so that the server ends the connection.
            let mut b = [0u8; 2];
            timeout(LIMIT, sock.read_exact(&mut b)).await.unwrap().unwrap();
            assert_eq!(b[0] & 0x0F, 0x2, "a binary message");
            sock.write_all(&ws_frame(0x88, &1000u16.to_be_bytes())).await.unwrap();
            continue;
        }
        let frames = server_frames(&mut sock).await;
        assert!(frames.iter().all(|(op, _)| *op != 0x2), "a gatewire frame in answer: {frames:02x?}");
    }
}

// ----- I. Unix sockets ----------------------------------------------------------------

/// Runs `f` on a thread of its own whose effective uid is `uid` (a raw
/// `setresuid` changes that thread's credentials only; glibc's wrapper would
/// change every thread's), then restores it. Root only.
fn as_uid<T: Send + 'static>(uid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let keep = libc::c_long::from(-1i32);
        // SAFETY: setresuid(2) with plain integer arguments; -1 keeps a value.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, keep, libc::c_long::from(uid), keep) };
        assert_eq!(rc, 0, "setresuid");
        let out = f();
        // SAFETY: as above; the saved uid (root) allows going back.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, keep, 0 as libc::c_long, keep) };
        assert_eq!(rc, 0, "setresuid back");
        out
    })
    .join()
    .expect("the thread ran")
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A uid that is not ours (nobody).
const OTHER_UID: u32 = 65534;

/// I1: the socket is reachable only through a private directory. A missing
/// directory is created with mode 0700 and the socket gets 0600; a
/// directory writable by others (0777), `/tmp` itself, or a directory owned
/// by another uid is refused. As root, a thread running as another uid
/// cannot connect (EACCES).
#[tokio::test]
async fn i1_socket_directory_and_mode() {
    let url = unix_url("i1");
    let path = std::path::PathBuf::from(url.trim_start_matches("unix://"));
    let dir = path.parent().unwrap().to_owned();
    let server = Builder::new().router(counting_echo(Arc::default())).serve(&[url.as_str()]).await.expect("binds");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the directory");
    assert_eq!(mode(&path), 0o600, "the socket");
    if is_root() {
        let p = path.clone();
        let denied = as_uid(OTHER_UID, move || std::os::unix::net::UnixStream::connect(p).map(drop));
        assert_eq!(denied.map_err(|e| e.kind()), Err(std::io::ErrorKind::PermissionDenied));
    } else {
        println!("I1: not root, the second-uid connect is skipped");
    }
    drop(server);

    let base = std::env::temp_dir().join(format!("gw-hostile-i1-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let open = base.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut refused =
        vec![open.join("s.sock"), std::env::temp_dir().join(format!("gw-i1-{}.sock", std::process::id()))];
    if is_root() {
        let foreign = base.join("foreign");
        std::fs::create_dir_all(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
        assert_eq!(std::fs::metadata(&foreign).unwrap().uid(), OTHER_UID);
        refused.push(foreign.join("s.sock"));
    }
    for p in refused {
        let url = format!("unix://{}", p.display());
        let r = Builder::new().router(counting_echo(Arc::default())).serve(&[url.as_str()]).await;
        assert!(r.is_err(), "bound {url}");
        assert!(!p.exists(), "left a socket at {}", p.display());
    }
    let _ = std::fs::remove_dir_all(&base);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects to `path` as `uid` (credentials fixed at connect), switches the
/// thread back to root, then sends `bytes` and returns everything the
/// server sends until it closes.
fn exchange_as(uid: u32, path: std::path::PathBuf, bytes: Vec<u8>) -> Vec<u8> {
    let sock = as_uid(uid, move || std::os::unix::net::UnixStream::connect(path).expect("connects"));
    std::thread::spawn(move || {
        let mut sock = sock;
        sock.set_read_timeout(Some(LIMIT)).unwrap();
        sock.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        let _ = sock.read_to_end(&mut got);
        got
    })
    .join()
    .unwrap()
}

/// I2: Unix peer credentials decide. With `UnixPeerAuthenticator` (our uid
/// only), a peer whose uid is on no list is refused with UNAUTHENTICATED
/// (or, as the REQUEST it sent right after its HELLO is read before the
/// decision, PROTOCOL_VIOLATION) and that REQUEST never runs. As root: a
/// connection made by another uid (the socket opened to it with 0666, as a
/// shared group setup would) is refused with UNAUTHENTICATED even though the
/// thread is root again by the time it sends its HELLO: credentials are
/// those recorded at connect; our own uid is served.
#[tokio::test]
async fn i2_peer_credentials() {
    let calls = Arc::new(AtomicUsize::new(0));
    // SAFETY: geteuid(2) cannot fail.
    let me = unsafe { libc::geteuid() };
    let script = encode(&[hello_frame(), request(1, 1, b"pipelined")]);

    let builder = Builder::new()
        .router(counting_echo(calls.clone()))
        .authenticator(UnixPeerAuthenticator::with_uids([me.wrapping_add(1)]));
    let (server, url) = serve_url(builder, &unix_url("i2")).await;
    let mut a = Attacker::over(UnixStream::connect(url.trim_start_matches("unix://")).await.unwrap());
    a.send_raw(&script).await;
    let e = a.ending().await;
    drop(server);
    remove_unix_dir(&url);
    let ack = hello_ack(&e.before);
    let refused = ack.is_some_and(|ack| ack.error_code == ErrorCode::UNAUTHENTICATED);
    assert!(refused || e.goaway == Some(ErrorCode::PROTOCOL_VIOLATION), "{e:?}");
    assert!(e.before.iter().all(|f| f.header.ty == FrameType::HELLO_ACK), "{e:?}");

    if !is_root() {
        println!("I2: not root, the second-uid connect is skipped");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        return;
    }
    let builder = Builder::new().router(counting_echo(calls.clone())).authenticator(UnixPeerAuthenticator::new());
    let (server, url) = serve_url(builder, &unix_url("i2")).await;
    let path = std::path::PathBuf::from(url.trim_start_matches("unix://"));
    std::fs::set_permissions(path.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    // HELLO alone: the answer is then the authenticator's decision.
    let (p, s) = (path.clone(), encode(&[hello_frame()]));
    let got = tokio::task::spawn_blocking(move || exchange_as(OTHER_UID, p, s)).await.unwrap();
    let mut buf = BytesMut::from(&got[..]);
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = decoder.decode(&mut buf) {
        frames.push(f);
    }
    let ack = hello_ack(&frames).expect("a HELLO_ACK");
    assert_eq!(ack.error_code, ErrorCode::UNAUTHENTICATED, "{ack:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran for a refused peer");

    let mut a = Attacker::over(UnixStream::connect(&path).await.unwrap());
    a.accepted(hello_frame()).await;
    a.send(&[request(1, 1, b"mine")]).await;
    a.expect_frame("RESPONSE", |f| f.header.ty == FrameType::RESPONSE).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    drop(server);
    remove_unix_dir(&url);
}
