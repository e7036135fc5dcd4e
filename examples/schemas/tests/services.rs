//! Generated Rust clients against generated Rust servers: every call kind
//! over every transport (TCP, Unix, WebSocket, TLS, secure WebSocket), the
//! handshake's schema check, and LIST_SERVICES.

use std::time::Duration;

use gatewire::{Builder, ErrorCode, Router, TlsClientConfig, TlsServerConfig};
use gatewire_example_schemas::impls::{Gateway, Page};
use gatewire_example_schemas::{chart, chart_service, gateway, gateway_service};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(10);

fn urls(dir: &std::path::Path) -> Vec<String> {
    vec![
        "tcp://127.0.0.1:0".into(),
        format!("unix://{}/gw.sock", dir.display()),
        "ws://127.0.0.1:0/gw".into(),
        "tls://127.0.0.1:0".into(),
        "wss://127.0.0.1:0/gw".into(),
    ]
}

/// A self-signed certificate for 127.0.0.1, made once per run.
fn certificate() -> &'static (String, String) {
    static CERT: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    })
}

/// TLS on the serving side when `url` asks for it.
fn server_builder(url: &str) -> Builder {
    let (cert, key) = certificate();
    if url.starts_with("tls") || url.starts_with("wss") {
        let tls = TlsServerConfig::builder().identity_pem(cert.as_bytes(), key.as_bytes()).unwrap().build().unwrap();
        Builder::new().tls_server(tls)
    } else {
        Builder::new()
    }
}

/// TLS on the calling side, trusting the test certificate.
fn client_builder() -> Builder {
    let tls = TlsClientConfig::builder().root_ca_pem(certificate().0.as_bytes()).unwrap().build().unwrap();
    Builder::new().tls_client(tls)
}

async fn serve(url: &str) -> (gatewire::Server, String, mpsc::UnboundedReceiver<(gateway::Dir, f32)>) {
    let (gw, rx) = Gateway::new();
    let router = chart_service::route(Router::new(), Page::default());
    let router = gateway_service::route(router, gw);
    let server = server_builder(url)
        .offer(chart_service::descriptor())
        .offer(gateway_service::descriptor())
        .router(router)
        .serve(&[url])
        .await
        .unwrap();
    let bound = server.local_endpoints()[0].to_string();
    (server, bound, rx)
}

#[tokio::test]
async fn every_call_kind_over_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    for url in urls(dir.path()) {
        tokio::time::timeout(TIMEOUT, async {
            let (server, bound, mut drives) = serve(&url).await;
            let conn = client_builder()
                .uses(chart_service::descriptor())
                .uses(gateway_service::descriptor())
                .connect(&bound)
                .await
                .unwrap();
            let charts = chart_service::Client::new(conn.clone());
            let gw = gateway_service::Client::new(conn.clone());

            // Unary, with the refresh rule: the same key gives the same chart.
            let create = chart::CreateChartT { key: "main".into(), title: Some("T0".into()) };
            let id = charts.create(&create).await.unwrap().get().id();
            assert_eq!(charts.create(&create).await.unwrap().get().id(), id, "{url}");
            charts.set_title(&chart::SetTitleT { chart: id, title: "Temperature".into() }).await.unwrap();
            let title = charts.get_title(&chart::ChartRefT { id }).await.unwrap();
            assert_eq!(title.get().title(), Some("Temperature"));
            let missing = charts.get_title(&chart::ChartRefT { id: 99 }).await.unwrap_err();
            assert_eq!((missing.code(), missing.message()), (ErrorCode(0x8001), Some("no chart 99")));
            let added = charts
                .add_points(&chart::PointsT { chart: id, xs: Some(vec![0.0, 1.0]), ys: Some(vec![5.0, 6.0]) })
                .await
                .unwrap();
            assert_eq!(added.get().total(), 2);
            let probe = charts.probe_with(&chart::ProbeT { sent_ns: 7 }, Some(TIMEOUT)).await.unwrap();
            assert_eq!((probe.get().sent_ns(), probe.get().page_ms()), (7, 1.5));

            // Client streaming.
            let (mut sink, reply) = charts.stream_points().await.unwrap();
            for i in 0..4 {
                let x = f64::from(i) + 2.0;
                sink.send(&chart::PointsT { chart: id, xs: Some(vec![x]), ys: Some(vec![x * 10.0]) }).await.unwrap();
            }
            sink.finish().await.unwrap();
            assert_eq!(reply.await.unwrap().get().total(), 6);

            // Server streaming: zero-copy float64 vectors.
            let mut snapshot = charts.snapshot(&chart::ChartRefT { id }).await.unwrap();
            let mut xs = Vec::new();
            while let Some(batch) = snapshot.next().await {
                xs.extend(batch.unwrap().get().xs().unwrap().iter());
            }
            assert_eq!(xs, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

            // Unary on the second service, object-API round trip.
            let status = gw.get_status(&gateway::EmptyT {}).await.unwrap().unpack();
            assert_eq!((status.name.as_deref(), status.health), (Some("gw-1"), gateway::Health::Degraded));
            let config = gateway::ConfigT {
                settings: Some(vec![gateway::SettingT { key: "rate".into(), value: Some("10".into()) }]),
            };
            assert_eq!(gw.set_config(&config).await.unwrap().unpack(), config);

            // Event.
            gw.drive(&gateway::DirectionT { dir: gateway::Dir::Left, speed: 0.5 }).await.unwrap();
            assert_eq!(drives.recv().await, Some((gateway::Dir::Left, 0.5)));

            // Bidirectional streaming: each message gets its reply.
            let (mut out, mut replies) = gw.chat().await.unwrap();
            for text in ["hello", "status?"] {
                let m = gateway::ChatMessageT { from: Some("desk".into()), text: Some(text.into()), sent_ms: 1 };
                out.send(&m).await.unwrap();
                let reply = replies.next().await.unwrap().unwrap();
                assert_eq!(reply.get().text(), Some(format!("re: {text}").as_str()));
            }
            out.finish().await.unwrap();
            assert!(replies.next().await.is_none());

            // Server streaming with a struct inside.
            let mut samples = gw.telemetry(&gateway::TelemetryRequestT { interval_ms: 1, count: 3 }).await.unwrap();
            let mut seen = Vec::new();
            while let Some(s) = samples.next().await {
                let s = s.unwrap();
                seen.push((s.get().seq(), s.get().position().map(|p| p.x())));
            }
            assert_eq!(seen, [(0, Some(0.0)), (1, Some(1.0)), (2, Some(2.0))]);

            conn.close().await;
            server.shutdown().await;
        })
        .await
        .unwrap_or_else(|_| panic!("{url}: timed out"));
    }
}

#[tokio::test]
async fn a_bad_payload_is_invalid_argument() {
    let (server, bound, _drives) = serve("tcp://127.0.0.1:0").await;
    let conn = gatewire::connect(&bound).await.unwrap();
    let err = conn.call(chart_service::GET_TITLE, gatewire::Message::raw(&b"not a table"[..])).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::INVALID_ARGUMENT);
    conn.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_at_connect() {
    let (server, bound, _drives) = serve("tcp://127.0.0.1:0").await;

    // The client was built from a schema where Snapshot is a unary call.
    let mut changed = chart_service::descriptor();
    let snapshot = changed.methods.iter_mut().find(|m| m.id == chart_service::SNAPSHOT).unwrap();
    snapshot.kind = gatewire::codegen::MethodKind::UNARY;
    changed.fingerprint ^= 1;
    let err = Builder::new().uses(changed).connect(&bound).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::INCOMPATIBLE);
    let want = format!(
        "chart.Chart.Snapshot (method {:08x}): the client calls it as unary, the server serves it as server streaming",
        chart_service::SNAPSHOT
    );
    assert_refusal(&err, &want);

    // A field of another type.
    let mut changed = chart_service::descriptor();
    let points = changed.shapes.iter_mut().find(|s| s.name == "chart.Points").unwrap();
    points.slots[1] = gatewire::codegen::Shape::default().ty;
    changed.fingerprint ^= 1;
    let err = Builder::new().uses(changed).connect(&bound).await.unwrap_err();
    assert_refusal(&err, "chart.Chart: chart.Points field 1 differs in type between client and server");

    // A service the server does not offer.
    let mut other = chart_service::descriptor();
    other.name = "chart.Other".into();
    let err = Builder::new().uses(other).connect(&bound).await.unwrap_err();
    assert_refusal(&err, "chart.Other: used by the client but not offered by the server");

    // A newer client: one more method and one more field still connects.
    let mut newer = chart_service::descriptor();
    let mut extra = newer.methods[0].clone();
    extra.name = "Clear".into();
    extra.id = gatewire::codegen::method_id("chart.Chart", "Clear");
    newer.methods.push(extra);
    newer.shapes.iter_mut().find(|s| s.name == "chart.Points").unwrap().slots.push(7);
    newer.fingerprint ^= 1;
    let conn = Builder::new().uses(newer).connect(&bound).await.unwrap();
    let charts = chart_service::Client::new(conn.clone());
    charts.create(&chart::CreateChartT { key: "k".into(), title: None }).await.unwrap();
    conn.close().await;
    server.shutdown().await;
}

/// The server's refusal: INCOMPATIBLE, with the reason of
/// `docs/PROTOCOL.md` §10.3 at the end of the message.
fn assert_refusal(err: &gatewire::Error, reason: &str) {
    assert_eq!(err.code(), ErrorCode::INCOMPATIBLE);
    let message = err.message().unwrap_or_default();
    assert!(message.ends_with(&format!(": {reason}")), "{message}");
}

#[tokio::test]
async fn list_services_returns_what_the_server_offers() {
    let (server, bound, _drives) = serve("tcp://127.0.0.1:0").await;
    let conn = Builder::new().uses(gateway_service::descriptor()).connect(&bound).await.unwrap();
    let reply = conn.call(gatewire::codegen::LIST_SERVICES, gatewire::Message::raw(Vec::new())).await.unwrap();
    let list = gatewire_proto_list(&reply.body);
    assert_eq!(list, vec![chart_service::descriptor(), gateway_service::descriptor()]);
    conn.close().await;
    server.shutdown().await;
}

fn gatewire_proto_list(bytes: &[u8]) -> Vec<gatewire::codegen::Service> {
    gatewire::codegen::ServiceList::decode(bytes).unwrap().offers
}
