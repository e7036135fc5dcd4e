//! Secrets stay out of logs, `Debug` and errors (hostile inputs G3).
//!
//! This test captures every log line of the process with a global tracing
//! subscriber, so it lives in its own test binary: next to other tests
//! running in parallel, tracing's per-callsite interest cache can race with
//! a thread-local subscriber and drop events.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatewire::auth::{AnyAuthenticator, JwtAuthenticator, TokenAuthenticator};
use gatewire::{Builder, Connection, Message, Router};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);
const ALICE: &str = "alice-4f1c2b8e9d7a6c5b3e2f1a0d9c8b7a6e";
const BOB: &str = "bob-token-0c9d8e7f";
const WRONG: &str = "wrong-token-77c1d9e0b3a2";
const JWT_SECRET: &str = "jwt-secret-0123456789abcdef-0123456789";

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

fn whoami_router() -> Router {
    Router::new().unary(2, |ctx, _m: Message| async move {
        Ok(Message::raw(ctx.identity().map(|i| i.subject().to_owned()).unwrap_or_default()))
    })
}

async fn whoami(c: &Connection) -> String {
    let reply = timeout(LIMIT, c.call(2, Message::raw(&b""[..]))).await.unwrap().unwrap();
    String::from_utf8(reply.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "erin", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let any = AnyAuthenticator::new()
        .or(TokenAuthenticator::new().token("alice", ALICE).token("bob", BOB))
        .or(JwtAuthenticator::hs256(JWT_SECRET).unwrap());
    let server_builder = Builder::new().router(whoami_router()).authenticator(any);
    let server_debug = format!("{server_builder:?}");
    let server = server_builder.serve(&["tcp://127.0.0.1:0"]).await.unwrap();
    let url = server.local_endpoints()[0].to_string();

    let client = Builder::new().token(ALICE);
    let client_debug = format!("{client:?}");
    let alice = timeout(LIMIT, client.connect(&url)).await.unwrap().unwrap();
    assert_eq!(whoami(&alice).await, "alice");
    let erin = timeout(LIMIT, Builder::new().token(jwt.as_str()).connect(&url)).await.unwrap().unwrap();
    assert_eq!(whoami(&erin).await, "erin");
    let err = timeout(LIMIT, Builder::new().token(WRONG).connect(&url)).await.unwrap().unwrap_err();
    let err_text = format!("{err} {err:?}");
    alice.close().await;
    erin.close().await;
    server.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("client authenticated"), "the test sees the logs:\n{logs}");
    assert!(logs.contains("client refused"), "the test sees the logs:\n{logs}");
    let jwt_signature = jwt.rsplit('.').next().unwrap();
    let texts =
        [("logs", &logs), ("server Debug", &server_debug), ("client Debug", &client_debug), ("error", &err_text)];
    for (what, text) in texts {
        for secret in [ALICE, BOB, WRONG, jwt_signature, JWT_SECRET] {
            assert!(!text.contains(secret), "{what} contain a secret:\n{text}");
        }
    }
    assert!(client_debug.contains("<redacted"), "{client_debug}");
}
