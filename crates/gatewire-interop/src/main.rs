//! The Rust reference peer for interop tests with the Python and TypeScript
//! packages. Tests start it themselves.
//!
//! ```text
//! interop-peer serve [SERVE OPTIONS] URL...   # prints "listening <endpoint>" per URL, then serves until stdin closes
//! interop-peer client [CLIENT OPTIONS] URL    # runs the interop script against a server; exits 0 and prints "ok" on success
//! ```
//!
//! Options (each takes one value; tls:// and wss:// need them, the other
//! schemes ignore the TLS ones):
//!
//! | command | option | meaning |
//! |---|---|---|
//! | serve | `--cert FILE --key FILE` | the server's PEM certificate chain and key for `tls://` and `wss://` |
//! | serve | `--client-ca FILE` | require client certificates issued by this CA; they authenticate the client |
//! | serve | `--token TOKEN` | accept clients sending this token (repeatable); with `--client-ca` too, either suffices |
//! | client | `--ca FILE` | trust this CA for the server's certificate |
//! | client | `--cert FILE --key FILE` | present this client certificate (mTLS) |
//! | client | `--server-name NAME` | verify the server's certificate for this name instead of the URL's host |
//! | client | `--token TOKEN` | send this token in the handshake |
//!
//! A client whose connect fails prints `error: connect failed with code
//! NAME (0xNNNN): ...` on stderr and exits 1.
//!
//! The interop service (every language implements the same one):
//!
//! | method | kind | behaviour |
//! |---|---|---|
//! | 1 | unary | echoes the request (body and codec) |
//! | 2 | stream | echoes every message, then ends when the caller ends |
//! | 3 | server stream | request: u32 LE `n`; replies `n` messages, each the u32 LE index |
//! | 4 | unary | calls method 100 on the caller with the request and returns its reply |
//! | 5 | unary | fails with code 0x8001, message "requested error" |
//! | 6 | unary | request: u32 LE milliseconds; sleeps that long, then echoes |
//! | 7 | event | sent back to the caller as event 8 with the same body |
//! | 9 | unary | returns the caller's identity as `method:subject` (`token:interop`, `certificate:<name>`, `anonymous:`) |
//! | 100 | unary (served by the client) | the client's callback: echoes with "client:" prepended |

use std::process::ExitCode;
use std::time::Duration;

use gatewire::auth::{AnyAuthenticator, MtlsAuthenticator, TokenAuthenticator};
use gatewire::{Builder, Connection, ErrorCode, Message, Router, Status, TlsClientConfig, TlsServerConfig};
use tokio::io::AsyncReadExt;

fn u32_of(m: &Message) -> Result<u32, Status> {
    let b: [u8; 4] =
        m.body.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| Status::invalid_argument("u32 expected"))?;
    Ok(u32::from_le_bytes(b))
}

/// The interop service.
fn service() -> Router {
    Router::new()
        .unary(1, |_ctx, m: Message| async move { Ok(m) })
        .stream(2, |_ctx, _first, mut rx, mut tx| async move {
            while let Some(m) = rx.next().await {
                tx.send(m.map_err(Status::from)?).await.map_err(Status::from)?;
            }
            Ok(())
        })
        .stream(3, |_ctx, first: Message, _rx, mut tx| async move {
            for i in 0..u32_of(&first)? {
                tx.send(Message::raw(i.to_le_bytes().to_vec())).await.map_err(Status::from)?;
            }
            Ok(())
        })
        .unary(4, |ctx, m: Message| async move { ctx.connection().call(100, m).await.map_err(Status::from) })
        .unary(5, |_ctx, _m| async { Err(Status::new(ErrorCode(0x8001), "requested error")) })
        .unary(6, |_ctx, m: Message| async move {
            tokio::time::sleep(Duration::from_millis(u32_of(&m)?.into())).await;
            Ok(m)
        })
        .event(7, |ctx, m: Message| async move {
            let _ = ctx.connection().emit(8, m).await;
        })
        .unary(9, |ctx, _m: Message| async move {
            let who = ctx.identity().map(|id| format!("{}:{}", id.method(), id.subject())).unwrap_or_default();
            Ok(Message::raw(who.into_bytes()))
        })
}

/// The subject the server gives clients authenticated by `--token`.
const TOKEN_SUBJECT: &str = "interop";

/// TLS and authentication options of either command.
#[derive(Default)]
struct Flags {
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    client_ca: Option<String>,
    server_name: Option<String>,
    tokens: Vec<String>,
}

/// Splits `args` into options and URLs; `allowed` lists the options the
/// command takes.
fn parse_flags(args: &[String], allowed: &[&str]) -> Result<(Flags, Vec<String>), String> {
    let mut flags = Flags::default();
    let mut urls = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            urls.push(arg.clone());
            continue;
        }
        if !allowed.contains(&arg.as_str()) {
            return Err(format!("unknown option {arg}"));
        }
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?.clone();
        match arg.as_str() {
            "--cert" => flags.cert = Some(value),
            "--key" => flags.key = Some(value),
            "--ca" => flags.ca = Some(value),
            "--client-ca" => flags.client_ca = Some(value),
            "--server-name" => flags.server_name = Some(value),
            _ => flags.tokens.push(value),
        }
    }
    if flags.cert.is_some() != flags.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    Ok((flags, urls))
}

/// The server's builder: TLS identity, client CA and authenticators from
/// the flags.
fn server_builder(flags: &Flags) -> Result<Builder, String> {
    let mut builder = Builder::new().router(service()).compression(Some(1024));
    if let (Some(cert), Some(key)) = (&flags.cert, &flags.key) {
        let mut tls = TlsServerConfig::builder().identity_files(cert, key).map_err(|e| e.to_string())?;
        if let Some(ca) = &flags.client_ca {
            tls = tls.client_ca_file(ca).map_err(|e| e.to_string())?;
        }
        builder = builder.tls_server(tls.build().map_err(|e| e.to_string())?);
    } else if flags.client_ca.is_some() {
        return Err("--client-ca needs --cert and --key".into());
    }
    let tokens = (!flags.tokens.is_empty())
        .then(|| flags.tokens.iter().fold(TokenAuthenticator::new(), |auth, t| auth.token(TOKEN_SUBJECT, t.as_str())));
    builder = match (flags.client_ca.is_some(), tokens) {
        (true, Some(tokens)) => builder.authenticator(AnyAuthenticator::new().or(MtlsAuthenticator::new()).or(tokens)),
        (true, None) => builder.authenticator(MtlsAuthenticator::new()),
        (false, Some(tokens)) => builder.authenticator(tokens),
        (false, None) => builder,
    };
    Ok(builder)
}

/// The client's builder: trust, client certificate, server name and token
/// from the flags.
fn client_builder(flags: &Flags, router: Router) -> Result<Builder, String> {
    let mut builder = Builder::new().router(router).compression(Some(1024));
    if let Some(ca) = &flags.ca {
        let mut tls = TlsClientConfig::builder().root_ca_file(ca).map_err(|e| e.to_string())?;
        if let (Some(cert), Some(key)) = (&flags.cert, &flags.key) {
            tls = tls.identity_files(cert, key).map_err(|e| e.to_string())?;
        }
        if let Some(name) = &flags.server_name {
            tls = tls.server_name(name).map_err(|e| e.to_string())?;
        }
        builder = builder.tls_client(tls.build().map_err(|e| e.to_string())?);
    } else if flags.cert.is_some() || flags.server_name.is_some() {
        return Err("--cert, --key and --server-name need --ca".into());
    }
    match flags.tokens.as_slice() {
        [] => {}
        [token] => builder = builder.token(token.as_str()),
        _ => return Err("a client sends at most one --token".into()),
    }
    Ok(builder)
}

/// The client's side of the service: the callback.
fn callbacks(events: tokio::sync::mpsc::Sender<Message>) -> Router {
    Router::new()
        .unary(
            100,
            |_ctx, m: Message| async move { Ok(Message::new(m.codec, [&b"client:"[..], &m.body[..]].concat())) },
        )
        .event(8, move |_ctx, m: Message| {
            let events = events.clone();
            async move {
                let _ = events.send(m).await;
            }
        })
}

async fn serve(args: &[String]) -> Result<(), String> {
    let (flags, urls) = parse_flags(args, &["--cert", "--key", "--client-ca", "--token"])?;
    if urls.is_empty() {
        return Err(USAGE.into());
    }
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let server = server_builder(&flags)?.serve(&urls).await.map_err(|e| e.to_string())?;
    for e in server.local_endpoints() {
        println!("listening {e}");
    }
    // Serve until the test closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    server.shutdown().await;
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(format!("interop check failed: {what}")) }
}

async fn script(conn: &Connection, events: &mut tokio::sync::mpsc::Receiver<Message>) -> Result<(), String> {
    let e = |e: gatewire::Error| e.to_string();
    let r = conn.call(1, Message::raw(&b"hello"[..])).await.map_err(e)?;
    check(&r.body[..] == b"hello", "echo")?;
    let big = vec![0x42u8; 300_000];
    let r = conn.call(1, Message::raw(big.clone())).await.map_err(e)?;
    check(r.body == big, "large echo")?;
    let (mut tx, mut rx) = conn.open_stream(2, Message::raw(&b""[..])).await.map_err(e)?;
    for i in 0u32..100 {
        tx.send(Message::raw(i.to_le_bytes().to_vec())).await.map_err(e)?;
    }
    tx.finish().await.map_err(e)?;
    let mut n = 0u32;
    while let Some(m) = rx.next().await {
        check(m.map_err(e)?.body[..] == n.to_le_bytes(), "stream echo order")?;
        n += 1;
    }
    check(n == 100, "stream echo count")?;
    let mut rx = conn.server_stream(3, Message::raw(1000u32.to_le_bytes().to_vec())).await.map_err(e)?;
    let mut n = 0u32;
    while let Some(m) = rx.next().await {
        check(m.map_err(e)?.body[..] == n.to_le_bytes(), "server stream order")?;
        n += 1;
    }
    check(n == 1000, "server stream count")?;
    let r = conn.call(4, Message::raw(&b"ping"[..])).await.map_err(e)?;
    check(&r.body[..] == b"client:ping", "callback")?;
    let err = conn.call(5, Message::raw(&b""[..])).await.expect_err("method 5 fails");
    check(err.code() == ErrorCode(0x8001) && err.message() == Some("requested error"), "error code and message")?;
    let err = conn.call_with(6, Message::raw(10_000u32.to_le_bytes().to_vec()), Some(Duration::from_millis(100))).await;
    check(err.is_err_and(|e| e.is_timeout()), "deadline")?;
    let err = conn.call(99, Message::raw(&b""[..])).await.expect_err("unknown method");
    check(err.code() == ErrorCode::UNKNOWN_METHOD, "unknown method")?;
    conn.emit(7, Message::raw(&b"event"[..])).await.map_err(e)?;
    let back = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.map_err(|_| "event 8 never came")?;
    check(back.is_some_and(|m| &m.body[..] == b"event"), "event round trip")?;
    Ok(())
}

async fn client(args: &[String]) -> Result<(), String> {
    let (flags, urls) = parse_flags(args, &["--ca", "--cert", "--key", "--server-name", "--token"])?;
    let [url] = urls.as_slice() else { return Err(USAGE.into()) };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let conn = client_builder(&flags, callbacks(tx))?
        .connect(url)
        .await
        .map_err(|e| format!("connect failed with code {}: {e}", e.code()))?;
    tokio::time::timeout(Duration::from_secs(60), script(&conn, &mut rx))
        .await
        .map_err(|_| "interop script timed out")??;
    conn.close().await;
    println!("ok");
    Ok(())
}

const USAGE: &str = "usage: interop-peer serve [--cert FILE --key FILE] [--client-ca FILE] [--token TOKEN]... URL... \
                     | interop-peer client [--ca FILE] [--cert FILE --key FILE] [--server-name NAME] [--token TOKEN] URL";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((cmd, rest)) if cmd == "serve" => serve(rest).await,
        Some((cmd, rest)) if cmd == "client" => client(rest).await,
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
