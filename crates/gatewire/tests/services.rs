//! Services in the handshake (`docs/PROTOCOL.md` §10): the server refuses a
//! client whose services are incompatible, accepts an evolved one, and
//! answers the built-in LIST_SERVICES itself.

use std::time::Duration;

use gatewire::codegen::{LIST_SERVICES, MethodDesc, MethodKind, Service, Shape};
use gatewire::transport::memory;
use gatewire::{Builder, Codec, Connection, ErrorCode, Message, Router, Status};
use gatewire_proto::control::ServiceList;
use gatewire_proto::services::{fnv1a64, method_id, type_hash};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

async fn pair(server: Builder, client: Builder) -> (gatewire::Result<Connection>, gatewire::Result<Connection>) {
    let (a, b) = memory::pair(256 * 1024);
    let s = tokio::spawn(server.accept_transport(Box::new(a)));
    let c = timeout(LIMIT, client.connect_transport(Box::new(b))).await.expect("handshake ends");
    let s = timeout(LIMIT, s).await.expect("handshake ends").unwrap();
    (c, s)
}

/// `chart.Chart` with `SetTitle` (unary) and `Points` (server streaming),
/// plus `extra` methods and extra slots on `chart.Point`.
fn chart(extra: &[(&str, MethodKind)], extra_point_slots: &[&str]) -> Service {
    let method = |name: &str, kind, request: &str, response: &str| MethodDesc {
        name: name.into(),
        id: method_id("chart.Chart", name),
        kind,
        request: type_hash(request),
        response: type_hash(response),
    };
    let mut methods = vec![
        method("SetTitle", MethodKind::UNARY, "chart.Title", "chart.Empty"),
        method("Points", MethodKind::SERVER_STREAMING, "chart.Empty", "chart.Point"),
    ];
    methods.extend(extra.iter().map(|&(n, k)| method(n, k, "chart.Title", "chart.Empty")));
    let mut point = vec![fnv1a64(b"float64"), fnv1a64(b"float64")];
    point.extend(extra_point_slots.iter().map(|t| fnv1a64(t.as_bytes())));
    let shape = |name: &str, slots| Shape { name: name.into(), ty: type_hash(name), fixed: false, slots };
    Service {
        name: "chart.Chart".into(),
        // Any value that differs between the versions will do here.
        fingerprint: 1 + methods.len() as u64 * 100 + point.len() as u64,
        methods,
        shapes: vec![
            shape("chart.Title", vec![fnv1a64(b"string")]),
            shape("chart.Point", point),
            shape("chart.Empty", vec![]),
        ],
    }
}

fn set_title() -> Router {
    Router::new().unary(method_id("chart.Chart", "SetTitle"), |_ctx, _m: Message| async move {
        Ok(Message::flatbuffers(&b""[..]))
    })
}

#[tokio::test]
async fn an_incompatible_client_is_refused_with_the_exact_message() {
    let mut changed = chart(&[], &[]);
    changed.methods[0].kind = MethodKind::CLIENT_STREAMING;
    changed.fingerprint ^= 1;
    let server = Builder::new().offer(chart(&[], &[])).router(set_title());
    let (c, s) = pair(server, Builder::new().uses(changed)).await;
    let want = "chart.Chart.SetTitle (method 3c553084): the client calls it as client streaming, the server \
                serves it as unary";
    let e = c.expect_err("the client is refused");
    assert_eq!(e.code(), ErrorCode::INCOMPATIBLE);
    assert!(e.is_closed());
    assert!(e.message().unwrap().ends_with(want), "{:?}", e.message());
    let e = s.expect_err("the server refused");
    assert_eq!(e.code(), ErrorCode::INCOMPATIBLE);
    assert!(e.message().unwrap().ends_with(want), "{:?}", e.message());
}

#[tokio::test]
async fn a_service_the_server_does_not_offer_is_refused() {
    let (c, _s) = pair(Builder::new(), Builder::new().uses(chart(&[], &[]))).await;
    let e = c.expect_err("the client is refused");
    assert_eq!(e.code(), ErrorCode::INCOMPATIBLE);
    assert!(e.message().unwrap().ends_with("chart.Chart: used by the client but not offered by the server"));
    // And the other way: the server uses what the client does not offer.
    let (c, _s) = pair(Builder::new().uses(Service::new("ui.Page", 7)), Builder::new()).await;
    let e = c.expect_err("the client is refused");
    assert_eq!(e.code(), ErrorCode::INCOMPATIBLE);
    assert!(e.message().unwrap().ends_with("ui.Page: used by the server but not offered by the client"));
}

#[tokio::test]
async fn an_evolved_client_connects_and_calls() {
    let server = Builder::new().offer(chart(&[], &[])).router(set_title());
    let client = Builder::new().uses(chart(&[("Clear", MethodKind::EVENT)], &["string"]));
    let (c, s) = pair(server, client).await;
    let (c, _s) = (c.expect("an evolved client connects"), s.expect("the server accepts"));
    let r = c.call(method_id("chart.Chart", "SetTitle"), Message::flatbuffers(&b""[..])).await.unwrap();
    assert_eq!(r.codec, Codec::FLATBUFFERS);
}

#[tokio::test]
async fn list_services_returns_what_each_side_offers_and_uses() {
    let ui = Service::new("ui.Page", 7);
    let server = Builder::new().offer(chart(&[], &[])).uses(ui.clone()).router(set_title());
    let client = Builder::new().offer(ui.clone()).uses(chart(&[], &[]));
    let (c, s) = pair(server, client).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    let r = c.call(LIST_SERVICES, Message::raw(&b""[..])).await.unwrap();
    assert_eq!(r.codec, Codec::FLATBUFFERS);
    let list = ServiceList::decode(&r.body).unwrap();
    assert_eq!(list, ServiceList { offers: vec![chart(&[], &[])], uses: vec![ui.clone()] });
    // Either side answers it.
    let r = s.call(LIST_SERVICES, Message::raw(&b""[..])).await.unwrap();
    assert_eq!(ServiceList::decode(&r.body).unwrap(), ServiceList { offers: vec![ui], uses: vec![chart(&[], &[])] });
}

#[tokio::test]
async fn list_services_is_built_in_and_authorized_like_any_method() {
    // Without services the list is empty; a handler registered for the id
    // does not replace the built-in answer.
    let router = Router::new().unary(LIST_SERVICES, |_ctx, _m| async { Ok(Message::raw(&b"mine"[..])) });
    let (c, _s) = pair(Builder::new().router(router), Builder::new()).await;
    let r = c.unwrap().call(LIST_SERVICES, Message::raw(&b""[..])).await.unwrap();
    assert_eq!(ServiceList::decode(&r.body).unwrap(), ServiceList::default());

    // An authorizer that denies it is obeyed.
    let deny = |_id: &gatewire::Identity, method: u32| -> Result<(), Status> {
        if method == LIST_SERVICES { Err(Status::new(ErrorCode::PERMISSION_DENIED, "not listed")) } else { Ok(()) }
    };
    let (c, _s) = pair(Builder::new().offer(chart(&[], &[])).authorizer(deny), Builder::new()).await;
    let e = c.unwrap().call(LIST_SERVICES, Message::raw(&b""[..])).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::PERMISSION_DENIED);

    // Other reserved ids are unknown methods.
    let (c, _s) = pair(Builder::new(), Builder::new()).await;
    let e = c.unwrap().call(LIST_SERVICES + 0x80, Message::raw(&b""[..])).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UNKNOWN_METHOD);
}
