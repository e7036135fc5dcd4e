//! The inputs of every vector. Expected outputs are recorded from the Rust
//! core by `cargo xtask vectors` and reviewed like code.

use bytes::BytesMut;
use gatewire_proto::control::{
    AdvertisedLimits, ErrorInfo, GoAwayInfo, Hello, HelloAck, MethodDesc, MethodKind, Service, ServiceList, Shape,
};
use gatewire_proto::frame::MAX_FRAME_CEILING;
use gatewire_proto::services::{fnv1a64, method_id, type_hash};
use gatewire_proto::{ErrorCode, FrameDecoder, FrameType, Header};
use serde_json::{Map, Value, json};

use crate::json::{frame_error_json, hx, raw_frame_json, services_json};
use crate::model::{
    CheckCase, ConfigJson, ControlCase, Conversation, FrameCase, HashCase, MethodIdCase, SideJson, StateJson, Step,
};

/// Encodes one frame.
pub fn frame_bytes(ty: u8, flags: u8, codec: u8, id: u32, arg: u32, payload: &[u8]) -> Vec<u8> {
    let mut h = Header::new(FrameType(ty), id, arg, payload.len() as u32);
    h.flags = gatewire_proto::Flags(flags);
    h.codec = gatewire_proto::Codec(codec);
    let mut v = h.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

/// Decodes `bytes` as a stream and records the outcome.
pub fn frame_case(name: &str, note: &str, max_frame: u32, bytes: &[u8]) -> FrameCase {
    let mut dec = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    let error = loop {
        match dec.decode(&mut buf) {
            Ok(Some(f)) => frames.push(raw_frame_json(&f)),
            Ok(None) => break dec.decode_eof(&buf).err().map(|e| frame_error_json(&e)),
            Err(e) => break Some(frame_error_json(&e)),
        }
    };
    FrameCase { name: name.into(), note: note.into(), max_frame, hex: hx(bytes), frames, error }
}

/// A minimal frame of type `ty` that passes the header rules.
fn minimal(ty: u8) -> Vec<u8> {
    match FrameType(ty) {
        FrameType::HELLO | FrameType::HELLO_ACK => frame_bytes(ty, 0, 0, 0, 0, b""),
        FrameType::PING | FrameType::PONG => frame_bytes(ty, 0, 0, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8]),
        FrameType::CREDIT => frame_bytes(ty, 0, 0, 0, 4096, b""),
        FrameType::CANCEL => frame_bytes(ty, 0, 0, 3, 0, b""),
        FrameType::CONTINUATION => frame_bytes(ty, 0, 0, 3, 0, b"x"),
        FrameType::ERROR => frame_bytes(ty, 0, 0, 3, 5, b""),
        FrameType::GOAWAY => frame_bytes(ty, 0, 0, 0, 0, b""),
        FrameType::REQUEST | FrameType::EVENT | FrameType::STREAM_OPEN => frame_bytes(ty, 0, 1, 3, 7, b"ab"),
        FrameType::RESPONSE | FrameType::STREAM_DATA => frame_bytes(ty, 0, 1, 3, 0, b"ab"),
        _ => frame_bytes(ty, 0, 0, 0, 0, b""),
    }
}

/// Every frame-decoding case.
pub fn frame_cases() -> Vec<FrameCase> {
    let mut v = Vec::new();
    let m = 1 << 20;
    for ty in 0..=255u8 {
        let name = FrameType(ty).name().map_or_else(|| format!("type_{ty:#04x}"), |n| format!("type_{n}"));
        v.push(frame_case(&name, "every value of the type byte has a defined outcome", m, &minimal(ty)));
    }
    for ty in 1..=0x0Eu8 {
        for bit in 0..8 {
            let mut b = minimal(ty);
            b[5] |= 1 << bit;
            let t = FrameType(ty).name().unwrap_or("?");
            v.push(frame_case(&format!("flag_{t}_bit{bit}"), "each flag bit on each type", m, &b));
        }
    }
    v.push(frame_case(
        "extension_with_flags",
        "extension types carry any flags and are passed on",
        m,
        &frame_bytes(0x80, 0xff, 9, 1, 2, b"ext"),
    ));
    let lim = 1024u32;
    v.push(frame_case("length_zero", "an empty response", lim, &frame_bytes(4, 0, 0, 1, 0, b"")));
    v.push(frame_case(
        "length_max",
        "payload exactly at the limit",
        lim,
        &frame_bytes(4, 0, 0, 1, 0, &vec![0xab; 1024]),
    ));
    v.push(frame_case(
        "length_max_plus_one",
        "one byte over the limit is rejected from the header alone",
        lim,
        &frame_bytes(4, 0, 0, 1, 0, &vec![0xab; 1025]),
    ));
    let mut huge = Header::new(FrameType::RESPONSE, 1, 0, u32::MAX).to_bytes().to_vec();
    v.push(frame_case("length_u32_max", "u32::MAX declared with no body: rejected before buffering", lim, &huge));
    huge[..4].copy_from_slice(&(MAX_FRAME_CEILING + 1).to_le_bytes());
    v.push(frame_case("length_over_ceiling", "the 16 MiB - 1 ceiling applies whatever the limit", u32::MAX, &huge));
    let mut r = minimal(4);
    r[7] = 1;
    v.push(frame_case("reserved_byte", "the reserved header byte must be zero", m, &r));
    v.push(frame_case("codec_on_ping", "a codec on a non-message frame", m, &frame_bytes(0x0B, 0, 1, 0, 0, &[0; 8])));
    v.push(frame_case("request_id_zero", "calls need a non-zero id", m, &frame_bytes(3, 0, 0, 0, 1, b"")));
    v.push(frame_case("ping_with_id", "connection frames need id 0", m, &frame_bytes(0x0B, 0, 0, 1, 0, &[0; 8])));
    v.push(frame_case("response_with_arg", "arg must be zero where unused", m, &frame_bytes(4, 0, 0, 1, 9, b"")));
    v.push(frame_case("credit_zero", "a zero credit grant", m, &frame_bytes(9, 0, 0, 0, 0, b"")));
    v.push(frame_case("credit_stream", "a stream credit grant", m, &frame_bytes(9, 0, 0, 5, 0x7fff_ffff, b"")));
    v.push(frame_case(
        "error_code_zero",
        "ERROR needs a code other than NO_ERROR",
        m,
        &frame_bytes(5, 0, 0, 1, 0, b""),
    ));
    v.push(frame_case("error_code_over_u16", "error codes are 16-bit", m, &frame_bytes(5, 0, 0, 1, 0x1_0000, b"")));
    v.push(frame_case(
        "goaway_max_last",
        "phase-one GOAWAY names the maximum id",
        m,
        &frame_bytes(0x0D, 0, 0, u32::MAX, 0, b""),
    ));
    v.push(frame_case("ping_short", "PING payload is exactly 8 bytes", m, &frame_bytes(0x0B, 0, 0, 0, 0, &[0; 7])));
    v.push(frame_case("cancel_with_payload", "CANCEL has no payload", m, &frame_bytes(0x0A, 0, 0, 1, 0, b"x")));
    v.push(frame_case(
        "continuation_empty",
        "CONTINUATION carries at least one byte",
        m,
        &frame_bytes(0x0E, 0, 0, 1, 0, b""),
    ));
    v.push(frame_case(
        "request_all_flags",
        "REQUEST with MORE, COMPRESSED and DEADLINE",
        m,
        &frame_bytes(3, 0x0B, 2, 1, 0xdead_beef, &[0x10, 0x27, 0, 0, 0x40, 0, 0, 0, 1, 2]),
    ));
    v.push(frame_case("truncated_header", "end of input inside a header", m, &minimal(4)[..10]));
    v.push(frame_case("truncated_payload", "end of input inside a payload", m, &minimal(4)[..17]));
    let mut two = minimal(3);
    two.extend(minimal(4));
    v.push(frame_case("two_frames", "frames back to back", m, &two));
    let mut desync = minimal(3);
    desync.extend(frame_bytes(0x20, 0, 0, 0, 0, b""));
    desync.extend(minimal(4));
    v.push(frame_case("error_mid_stream", "nothing after a framing error is delivered", m, &desync));
    v
}

fn control_case(name: &str, note: &str, table: &str, bytes: &[u8]) -> ControlCase {
    let value = crate::json::decode_control(table, bytes).expect("a known table");
    ControlCase {
        name: name.into(),
        note: note.into(),
        table: table.into(),
        hex: hx(bytes),
        invalid: value.is_none(),
        value,
    }
}

fn full_hello() -> Hello {
    Hello {
        min_version: 1,
        max_version: 1,
        limits: AdvertisedLimits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
            max_in_flight: 100,
            initial_stream_credit: 256 * 1024,
            connection_credit: 4 << 20,
        },
        compression: vec![1],
        codecs: vec![0, 1, 2, 3],
        auth: Some(b"token".to_vec().into()),
        services: vec![Service::new("chart.Chart", u64::MAX - 1)],
        agent: Some("gatewire-rust/0.1".into()),
        uses: vec![chart_service(&[], &[])],
    }
}

/// A `chart.Chart` descriptor: `SetTitle` (unary) and `Points` (server
/// streaming) plus any extra methods, and the shapes of `chart.Title` and
/// `chart.Point` plus extra slots on `chart.Point`.
fn chart_service(extra_methods: &[(&str, MethodKind)], extra_point_slots: &[&str]) -> Service {
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
    methods.extend(extra_methods.iter().map(|&(n, k)| method(n, k, "chart.Title", "chart.Empty")));
    let mut point: Vec<u64> = ["float64", "float64"].iter().map(|t| fnv1a64(t.as_bytes())).collect();
    point.extend(extra_point_slots.iter().map(|t| fnv1a64(t.as_bytes())));
    let shape = |name: &str, slots: Vec<u64>| Shape { name: name.into(), ty: type_hash(name), fixed: false, slots };
    let mut service = Service {
        name: "chart.Chart".into(),
        fingerprint: 0,
        methods,
        shapes: vec![
            shape("chart.Title", vec![fnv1a64(b"string")]),
            shape("chart.Point", point),
            shape("chart.Empty", vec![]),
        ],
    };
    // Any value that changes with the description will do for a vector.
    let mut text = String::new();
    for m in &service.methods {
        text += &format!("{} {} {} {};", m.id, m.kind.0, m.request, m.response);
    }
    for sh in &service.shapes {
        text += &format!("{} {:?};", sh.ty, sh.slots);
    }
    service.fingerprint = fnv1a64(text.as_bytes());
    service
}

/// Derived method ids.
pub fn method_id_cases() -> Vec<MethodIdCase> {
    [
        ("chart.Chart", "SetTitle"),
        ("chart.Chart", "AddPoints"),
        ("gateway.Gateway", "Status"),
        ("a", "b"),
        ("", ""),
        ("ünïcode.Sérvice", "Méthod"),
    ]
    .iter()
    .map(|&(service, method)| MethodIdCase {
        service: service.into(),
        method: method.into(),
        id: method_id(service, method),
    })
    .collect()
}

/// 64-bit hashes of type names and canonical slot types.
pub fn hash_cases() -> Vec<HashCase> {
    ["", "a", "chart.Point", "float64", "[float64]", "table chart.Point", "string", "ünïcode"]
        .iter()
        .map(|t| HashCase { text: (*t).into(), fnv1a64: fnv1a64(t.as_bytes()).to_string() })
        .collect()
}

/// The acceptor's compatibility check, outcomes left to the recorder.
pub fn service_checks() -> Vec<CheckCase> {
    let j = |s: &[Service]| services_json(s);
    let base = chart_service(&[], &[]);
    let case = |name: &str, note: &str, so: &[Service], su: &[Service], co: &[Service], cu: &[Service]| CheckCase {
        name: name.into(),
        note: note.into(),
        server_offers: j(so),
        server_uses: j(su),
        client_offers: j(co),
        client_uses: j(cu),
        error: None,
    };
    let changed_kind = {
        let mut s = base.clone();
        s.methods[0].kind = MethodKind::SERVER_STREAMING;
        s.fingerprint ^= 1;
        s
    };
    let changed_request = {
        let mut s = base.clone();
        s.methods[1].request = type_hash("chart.Title");
        s.fingerprint ^= 1;
        s
    };
    let changed_response = {
        let mut s = base.clone();
        s.methods[0].response = type_hash("chart.Point");
        s.fingerprint ^= 1;
        s
    };
    let changed_slot = {
        let mut s = base.clone();
        s.shapes[1].slots[1] = fnv1a64(b"float32");
        s.fingerprint ^= 1;
        s
    };
    let fixed = {
        let mut s = base.clone();
        s.shapes[1].fixed = true;
        s.fingerprint ^= 1;
        s
    };
    let grown_struct = {
        let mut a = fixed.clone();
        a.shapes[1].slots.push(fnv1a64(b"float64"));
        a.fingerprint ^= 2;
        a
    };
    let newer = chart_service(&[("Clear", MethodKind::EVENT)], &["string"]);
    let other = Service::new("gateway.Gateway", 42);
    vec![
        case("none", "no services on either side", &[], &[], &[], &[]),
        case("same", "equal fingerprints", std::slice::from_ref(&base), &[], &[], std::slice::from_ref(&base)),
        case(
            "client_newer",
            "the client knows a method and a field more",
            std::slice::from_ref(&base),
            &[],
            &[],
            std::slice::from_ref(&newer),
        ),
        case(
            "server_newer",
            "the server knows a method and a field more",
            std::slice::from_ref(&newer),
            &[],
            &[],
            std::slice::from_ref(&base),
        ),
        case(
            "server_uses_client",
            "the server calls the page, which offers the service",
            &[],
            std::slice::from_ref(&base),
            std::slice::from_ref(&newer),
            &[],
        ),
        case(
            "not_offered",
            "the client uses a service the server lacks",
            std::slice::from_ref(&other),
            &[],
            &[],
            std::slice::from_ref(&base),
        ),
        case(
            "not_offered_by_client",
            "the server uses a service the client lacks",
            &[],
            std::slice::from_ref(&base),
            &[],
            &[],
        ),
        case(
            "offered_but_unused",
            "offering more than the peer uses is fine",
            &[base.clone(), other.clone()],
            &[],
            std::slice::from_ref(&other),
            &[],
        ),
        case(
            "kind_changed",
            "unary became server streaming",
            std::slice::from_ref(&base),
            &[],
            &[],
            std::slice::from_ref(&changed_kind),
        ),
        case(
            "request_changed",
            "a method's request type changed",
            std::slice::from_ref(&base),
            &[],
            &[],
            std::slice::from_ref(&changed_request),
        ),
        case(
            "response_changed",
            "a method's response type changed",
            std::slice::from_ref(&base),
            &[],
            &[],
            std::slice::from_ref(&changed_response),
        ),
        case(
            "slot_changed",
            "a field changed type",
            std::slice::from_ref(&base),
            &[],
            &[],
            std::slice::from_ref(&changed_slot),
        ),
        case(
            "struct_vs_table",
            "a table became a struct",
            std::slice::from_ref(&base),
            &[],
            &[],
            std::slice::from_ref(&fixed),
        ),
        case(
            "struct_grown",
            "structs never grow",
            std::slice::from_ref(&fixed),
            &[],
            &[],
            std::slice::from_ref(&grown_struct),
        ),
        case(
            "fingerprint_only_equal",
            "no descriptors, equal fingerprints",
            &[Service::new("x.X", 9)],
            &[],
            &[],
            &[Service::new("x.X", 9)],
        ),
        case(
            "fingerprint_only_differs",
            "no descriptor on one side and the fingerprints differ",
            std::slice::from_ref(&base),
            &[],
            &[],
            &[Service::new("chart.Chart", 9)],
        ),
        case(
            "fingerprint_unknown",
            "a zero fingerprint without descriptor is not checked",
            std::slice::from_ref(&base),
            &[],
            &[],
            &[Service::new("chart.Chart", 0)],
        ),
    ]
}

/// Every control-table case.
pub fn control_cases() -> Vec<ControlCase> {
    let hello = full_hello().encode();
    let minimal = Hello { min_version: 1, max_version: 1, ..Hello::default() }.encode();
    let accept = HelloAck { version: 1, ..HelloAck::default() }.encode();
    let refuse = HelloAck {
        version: 1,
        error_code: ErrorCode::UNAUTHENTICATED,
        message: Some("bad token".into()),
        ..HelloAck::default()
    }
    .encode();
    let mut bad_utf8 = Hello { agent: Some("agent".into()), ..Hello::default() }.encode();
    let at = bad_utf8.windows(5).position(|w| w == b"agent").expect("agent string is in the buffer");
    bad_utf8[at] = 0xff;
    let mut bad_root = hello.clone();
    bad_root[..4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    let empty_range = Hello { min_version: 2, max_version: 1, ..Hello::default() }.encode();
    let mut no_name = {
        let mut fbb = gatewire_schema_builder();
        // The generated builder refuses to omit a required field, so build
        // the table by hand.
        let start = fbb.start_table();
        fbb.push_slot::<u64>(gatewire_schema::control::Service::VT_FINGERPRINT, 1, 0);
        let svc: gatewire_schema::flatbuffers::WIPOffset<gatewire_schema::control::Service<'_>> =
            gatewire_schema::flatbuffers::WIPOffset::new(fbb.end_table(start).value());
        let services = fbb.create_vector(&[svc]);
        let root = gatewire_schema::control::Hello::create(
            &mut fbb,
            &gatewire_schema::control::HelloArgs {
                min_version: 1,
                max_version: 1,
                services: Some(services),
                ..Default::default()
            },
        );
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    };
    no_name.shrink_to_fit();
    vec![
        control_case("hello_full", "every field set", "Hello", &hello),
        control_case("hello_minimal", "only the version range: limits take protocol defaults", "Hello", &minimal),
        control_case("hello_ack_accept", "an accepting HELLO_ACK", "HelloAck", &accept),
        control_case("hello_ack_refuse", "a refusal carries a code and a reason", "HelloAck", &refuse),
        control_case(
            "error_info",
            "ERROR detail",
            "ErrorInfo",
            &ErrorInfo { message: Some("no such chart".into()), details: Some(vec![1, 2, 3].into()) }.encode(),
        ),
        control_case("error_info_empty", "an empty payload is an empty ErrorInfo", "ErrorInfo", b""),
        control_case("goaway", "GOAWAY reason", "GoAway", &GoAwayInfo { message: Some("restart".into()) }.encode()),
        control_case("hello_empty", "HELLO needs a table", "Hello", b""),
        control_case("hello_garbage", "not a FlatBuffer", "Hello", &[0xff; 12]),
        control_case("hello_truncated", "a valid HELLO cut short", "Hello", &hello[..hello.len() / 2]),
        control_case("hello_bad_root_offset", "root offset out of bounds", "Hello", &bad_root),
        control_case("hello_invalid_utf8", "strings are strict UTF-8", "Hello", &bad_utf8),
        control_case("hello_empty_version_range", "min_version > max_version", "Hello", &empty_range),
        control_case("hello_service_without_name", "a required field is missing", "Hello", &no_name),
        control_case("goaway_garbage", "GOAWAY payload that is not a table", "GoAway", &[1, 2, 3]),
        control_case(
            "service_list",
            "the answer of the built-in LIST_SERVICES method",
            "ServiceList",
            &ServiceList { offers: vec![chart_service(&[], &[])], uses: vec![Service::new("gateway.Gateway", 7)] }
                .encode(),
        ),
    ]
}

fn gatewire_schema_builder() -> gatewire_schema::flatbuffers::FlatBufferBuilder<'static> {
    gatewire_schema::flatbuffers::FlatBufferBuilder::new()
}

/// Builds a conversation's steps; expectations are filled by recording.
struct Script {
    steps: Vec<Step>,
}

use SideJson::{Client as C, Server as S};

fn msg(body: &[u8]) -> Value {
    json!({"codec": 0, "body": hx(body)})
}

impl Script {
    fn new() -> Self {
        Self { steps: Vec::new() }
    }

    fn call(&mut self, side: SideJson, command: &str, args: Value) -> &mut Self {
        let args: Map<String, Value> = match args {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.steps.push(Step::Call { side, command: command.into(), args, result: Value::Null });
        self
    }

    fn deliver(&mut self, from: SideJson) -> &mut Self {
        self.steps.push(Step::Deliver { from, frames: Vec::new() });
        self
    }

    fn events(&mut self, side: SideJson) -> &mut Self {
        self.steps.push(Step::Events { side, expect: Vec::new() });
        self
    }

    fn inject(&mut self, side: SideJson, bytes: &[u8]) -> &mut Self {
        self.steps.push(Step::Inject { side, hex: hx(bytes) });
        self
    }

    fn advance(&mut self, ms: u64) -> &mut Self {
        self.steps.push(Step::Advance { ms });
        self
    }

    fn check(&mut self, side: SideJson) -> &mut Self {
        let state = StateJson { connected: false, closed: false, in_flight: [0, 0], table_len: 0, timeout_ms: None };
        self.steps.push(Step::Check { side, state });
        self
    }

    fn eof(&mut self, side: SideJson) -> &mut Self {
        self.steps.push(Step::Eof { side });
        self
    }

    fn drop_frames(&mut self, side: SideJson) -> &mut Self {
        self.steps.push(Step::Drop { side, frames: Vec::new() });
        self
    }

    /// Client → server, server events, server → client, client events.
    fn exchange(&mut self) -> &mut Self {
        self.deliver(C).events(S).deliver(S).events(C)
    }

    fn handshake(&mut self) -> &mut Self {
        self.deliver(C).events(S).call(S, "accept", json!({})).deliver(S).events(C).events(S)
    }

    fn done(&mut self, name: &str, note: &str) -> Conversation {
        self.done_with(name, note, ConfigJson::default(), ConfigJson::default())
    }

    fn done_with(&mut self, name: &str, note: &str, client: ConfigJson, server: ConfigJson) -> Conversation {
        Conversation { name: name.into(), note: note.into(), client, server, steps: std::mem::take(&mut self.steps) }
    }
}

fn limits(pairs: &[(&str, u64)]) -> ConfigJson {
    ConfigJson { limits: pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(), ..ConfigJson::default() }
}

/// Every conversation.
#[allow(clippy::too_many_lines)]
pub fn conversations() -> Vec<Conversation> {
    let mut v = Vec::new();
    let mut s = Script::new();

    s.handshake().check(C).check(S);
    v.push(s.done("handshake", "HELLO, the server's accept decision, HELLO_ACK; both sides connected"));

    s.deliver(C).events(S).call(S, "refuse", json!({"code": "UNAUTHENTICATED", "message": "bad token"}));
    s.deliver(S).events(C).events(S).check(C).check(S);
    v.push(s.done("handshake_refused", "a refusal is a HELLO_ACK with a code, never a silent close"));

    s.deliver(C).events(S).deliver(S).events(C).check(C).check(S);
    let services = |offers: &[Service], uses: &[Service]| ConfigJson {
        services: offers.iter().map(|s| services_json(std::slice::from_ref(s))[0].clone()).collect(),
        uses: uses.iter().map(|s| services_json(std::slice::from_ref(s))[0].clone()).collect(),
        ..ConfigJson::default()
    };
    let mut changed = chart_service(&[], &[]);
    changed.methods[0].kind = MethodKind::CLIENT_STREAMING;
    changed.fingerprint ^= 1;
    v.push(s.done_with(
        "handshake_schema_mismatch",
        "the client uses chart.Chart with a method of another kind: HELLO_ACK(INCOMPATIBLE) names it, the \
         application is not asked",
        services(&[], &[changed]),
        services(&[chart_service(&[], &[])], &[]),
    ));

    s.handshake().check(C).check(S);
    v.push(s.done_with(
        "handshake_schema_evolved",
        "a client that knows an extra method and field connects to an older server",
        services(&[], &[chart_service(&[("Clear", MethodKind::EVENT)], &["string"])]),
        services(&[chart_service(&[], &[])], &[]),
    ));

    let old = Hello { min_version: 2, max_version: 3, ..Hello::default() }.encode();
    s.drop_frames(C).inject(S, &frame_bytes(1, 0, 0, 0, 0, &old)).events(S).deliver(S).events(C).check(S);
    v.push(s.done("handshake_version_mismatch", "no version in common: HELLO_ACK(INCOMPATIBLE)"));

    s.inject(S, &frame_bytes(3, 0, 0, 1, 1, b"early")).drop_frames(S).events(S).check(S);
    v.push(s.done("request_before_handshake", "only HELLO may come first"));

    s.advance(10_000).drop_frames(S).events(S).check(S);
    v.push(s.done("handshake_timeout", "no HELLO within the handshake deadline"));

    s.handshake();
    s.call(C, "send_request", json!({"method": 5, "message": msg(b"ping")})).exchange();
    s.call(S, "send_response", json!({"id": 1, "message": msg(b"pong")})).exchange();
    s.call(S, "send_request", json!({"method": 9, "message": msg(b"from server")})).exchange();
    s.call(C, "send_error", json!({"id": 2, "code": "UNKNOWN_METHOD", "message": "no handler"})).exchange();
    s.check(C).check(S);
    v.push(s.done("unary_both_directions", "either peer calls the other; ids have the caller's parity"));

    s.handshake();
    for i in 0..4u8 {
        s.call(C, "send_request", json!({"method": 1, "message": msg(&[i])}));
    }
    s.exchange();
    for id in [7, 3, 5, 1] {
        s.call(S, "send_response", json!({"id": id, "message": msg(&[id as u8])}));
    }
    s.exchange().check(C).check(S);
    v.push(s.done("concurrent_calls_out_of_order", "many calls in flight, answered in any order"));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"x"), "deadline_ms": 250})).exchange();
    s.check(C).advance(250).exchange().check(C).check(S);
    s.call(S, "send_response", json!({"id": 1, "message": msg(b"late")})).exchange().check(S);
    v.push(s.done(
        "deadline",
        "the caller fails at the deadline; the callee cancels its handler; a late answer sends nothing",
    ));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"slow")})).exchange();
    s.call(C, "cancel", json!({"id": 1})).exchange().check(S);
    s.call(S, "send_error", json!({"id": 1, "code": "CANCELLED"})).exchange().check(S);
    v.push(s.done("cancel_after_delivery", "the handler learns of the cancel and holds its slot until it ends"));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"a")}));
    s.call(C, "cancel", json!({"id": 1}));
    s.exchange().check(S);
    v.push(s.done("cancel_before_send", "a call cancelled before its frame left sends only CANCEL"));

    s.handshake();
    s.call(C, "send_event", json!({"method": 42, "message": msg(b"telemetry")}));
    s.call(S, "send_event", json!({"method": 43, "message": msg(b"status")}));
    s.exchange().check(C).check(S);
    v.push(s.done("events", "one-way messages in both directions"));

    s.handshake();
    s.call(C, "open_stream", json!({"method": 3, "message": msg(b""), "end": false})).exchange();
    for _ in 0..4 {
        s.call(C, "send_stream_data", json!({"id": 1, "message": msg(&[7; 400]), "end": false}));
    }
    s.exchange();
    s.call(S, "grant_credit", json!({"id": 1, "n": 1000})).exchange();
    s.call(C, "send_stream_data", json!({"id": 1, "message": msg(&[8; 400]), "end": false})).exchange();
    s.call(C, "send_stream_data", json!({"id": 1, "message": msg(b"last"), "end": true})).exchange();
    s.call(S, "send_stream_data", json!({"id": 1, "message": msg(b"reply"), "end": false}));
    s.call(S, "finish", json!({"id": 1})).exchange().check(C).check(S);
    v.push(s.done_with(
        "stream_credit",
        "a stream with 1024 bytes of credit: the sender is blocked, the grant unblocks it, END closes each half",
        ConfigJson::default(),
        limits(&[("initial_stream_credit", 1024)]),
    ));

    s.handshake();
    s.call(C, "open_stream", json!({"method": 4, "message": msg(b"query"), "end": true})).exchange();
    for i in 0..3u8 {
        s.call(S, "send_stream_data", json!({"id": 1, "message": msg(&[i]), "end": i == 2}));
    }
    s.exchange().check(C).check(S);
    v.push(s.done("server_streaming", "one request, a stream of replies"));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(&[0x5a; 3000])}));
    s.call(C, "send_request", json!({"method": 2, "message": msg(b"small")}));
    s.exchange().check(S);
    v.push(s.done_with(
        "fragmentation",
        "a 3000-byte message in 1024-byte fragments; a small call overtakes it after one fragment",
        limits(&[("send_fragment", 1024)]),
        limits(&[("max_frame", 1024)]),
    ));

    s.handshake();
    s.drop_frames(C);
    for id in [1u32, 3, 5] {
        s.inject(S, &frame_bytes(3, 0, 0, id, 1, b""));
    }
    s.drop_frames(S).events(S).check(S);
    v.push(s.done_with(
        "in_flight_refusal",
        "calls beyond max_in_flight are refused with REFUSED, not queued",
        ConfigJson::default(),
        limits(&[("max_in_flight", 2)]),
    ));

    s.handshake();
    s.advance(20_000).deliver(C).deliver(S).check(C);
    s.advance(20_000).drop_frames(C).advance(20_000).events(C).check(C);
    v.push(s.done("keepalive_silent_peer", "a PING after 20 s of silence; no answer within 20 s closes with TIMEOUT"));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"a")})).exchange();
    s.call(S, "close", json!({"code": "NO_ERROR", "message": "restart"}));
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"b")}));
    s.exchange().exchange();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"c")}));
    s.call(S, "send_response", json!({"id": 1, "message": msg(b"ra")}));
    s.call(S, "send_response", json!({"id": 3, "message": msg(b"rb")}));
    s.exchange().check(C).check(S);
    v.push(s.done(
        "graceful_shutdown",
        "GOAWAY(MAX)+PING, then GOAWAY(last); calls in flight finish; new calls are refused locally",
    ));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"a")}));
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"b")}));
    s.drop_frames(C);
    s.inject(C, &frame_bytes(0x0D, 0, 0, 1, 0, b"")).events(C).check(C);
    v.push(
        s.done("goaway_refuses_above_last", "calls above the GOAWAY's last id fail with REFUSED: known unprocessed"),
    );

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"a")}));
    s.call(C, "open_stream", json!({"method": 2, "message": msg(b""), "end": false}));
    s.exchange().eof(C).events(C).check(C);
    v.push(s.done("connection_lost", "end of input fails every pending call at once"));

    s.handshake();
    s.drop_frames(C).inject(S, &Header::new(FrameType::REQUEST, 1, 0, (1 << 20) + 1).to_bytes());
    s.deliver(S).events(S).events(C).check(S);
    v.push(s.done("oversized_frame", "GOAWAY(TOO_LARGE) from the header alone"));

    s.handshake();
    s.inject(S, &frame_bytes(0x30, 0, 0, 0, 0, b"")).deliver(S).events(S).check(S);
    v.push(s.done("unknown_frame_type", "an unknown non-extension type is a protocol violation"));

    s.handshake();
    s.inject(S, &frame_bytes(0x90, 0, 0, 0, 0, b"ignored")).deliver(S).events(S).check(S);
    v.push(s.done("extension_frame_ignored", "extension types are ignored"));

    s.handshake();
    s.inject(S, &frame_bytes(9, 0, 0, 0, 0x7fff_ffff, b"")).deliver(S).events(S).check(S);
    v.push(s.done("connection_credit_overflow", "a grant past 2^31-1 is FLOW_CONTROL"));

    s.handshake();
    s.inject(S, &frame_bytes(3, 0, 0, 5, 1, b"")).inject(S, &frame_bytes(3, 0, 0, 3, 1, b""));
    s.deliver(S).events(S).check(S);
    v.push(s.done("id_not_increasing", "new ids must increase"));

    s.handshake();
    s.inject(S, &frame_bytes(4, 0, 0, 8, 0, b"")).deliver(S).events(S);
    v.push(s.done("response_to_unopened_id", "a response naming an id never opened is a violation"));

    s.handshake();
    for _ in 0..4 {
        s.inject(S, &frame_bytes(0x0B, 0, 0, 0, 0, &[0; 8]));
    }
    s.deliver(S).events(S).check(S);
    v.push(s.done(
        "ping_strikes",
        "pings closer than 5 s with nothing sent between: GOAWAY(EXCESSIVE_LOAD) after 2 strikes",
    ));

    s.handshake();
    s.call(C, "send_request", json!({"method": 1, "message": msg(b"a")})).exchange();
    s.call(S, "send_response", json!({"id": 1, "message": msg(b"r")})).exchange();
    for _ in 0..4 {
        s.inject(S, &frame_bytes(0x0A, 0, 0, 1, 0, b""));
    }
    s.deliver(S).events(S).check(S);
    v.push(s.done_with(
        "stray_budget",
        "frames naming finished ids are dropped and counted; past the budget: GOAWAY(EXCESSIVE_LOAD)",
        ConfigJson::default(),
        limits(&[("stray_frame_budget", 3)]),
    ));

    s.handshake();
    s.call(C, "open_stream", json!({"method": 3, "message": msg(b""), "end": true})).exchange();
    s.drop_frames(C).inject(S, &frame_bytes(8, 0, 0, 1, 0, b"after end")).deliver(S).events(S).events(C).check(S);
    v.push(s.done("data_after_end", "data after END is a stream error: ERROR(STREAM_CLOSED)"));

    s.handshake();
    s.call(C, "open_stream", json!({"method": 3, "message": msg(b""), "end": false})).exchange();
    s.drop_frames(C).inject(S, &frame_bytes(8, 0, 0, 1, 0, &[1; 1025])).deliver(S).events(S).events(C).check(S);
    v.push(s.done_with(
        "stream_credit_exceeded",
        "data beyond the stream's credit is a stream error: ERROR(FLOW_CONTROL)",
        ConfigJson::default(),
        limits(&[("initial_stream_credit", 1024)]),
    ));

    s.handshake();
    s.call(
        C,
        "send_request",
        json!({"method": 1, "message": {"codec": 0, "body": hx(b"zstd bytes"), "uncompressed_len": 1000}}),
    );
    s.exchange();
    let both = ConfigJson { compression: true, ..ConfigJson::default() };
    v.push(s.done_with(
        "compressed_message",
        "a compressed body travels with its declared size; the runtime decompresses",
        both.clone(),
        both,
    ));

    s.handshake();
    s.drop_frames(C).inject(S, &frame_bytes(3, 0x02, 0, 1, 1, &[10, 0, 0, 0, 1, 2])).deliver(S).events(S);
    v.push(s.done("compression_not_negotiated", "COMPRESSED without negotiation is a violation"));

    s.handshake();
    s.drop_frames(C).inject(S, &frame_bytes(3, 0x01, 0, 1, 1, b"first part")).check(S);
    s.advance(30_000).deliver(S).events(S).check(S);
    v.push(
        s.done("unfinished_message_times_out", "a fragmented message must complete within the partial-frame timeout"),
    );

    s.handshake();
    s.call(C, "open_stream", json!({"method": 3, "message": msg(b""), "end": false})).exchange();
    s.drop_frames(C).inject(S, &frame_bytes(8, 0x01, 0, 1, 0, &[9; 1024])).events(S);
    s.call(S, "send_error", json!({"id": 1, "code": "INTERNAL"})).check(S).drop_frames(S);
    s.inject(S, &frame_bytes(0x0E, 0, 0, 1, 0, &[9; 10])).advance(31_000).drop_frames(S).events(S).check(S);
    v.push(s.done(
        "error_mid_message",
        "ERROR ends both halves: a half-received message is dropped and its remaining fragments are strays",
    ));

    s.handshake();
    let mut ping_then_goaway = frame_bytes(0x0B, 0, 0, 0, 0, &[7; 8]);
    ping_then_goaway.extend(frame_bytes(0x0D, 0, 0, 0, 0x000A, b""));
    s.inject(S, &ping_then_goaway).drop_frames(S).events(S).check(S);
    v.push(s.done("peer_error_goaway", "after the peer's error GOAWAY nothing more is sent, not even a PONG"));

    s.handshake();
    s.call(C, "open_stream", json!({"method": 3, "message": msg(b""), "end": true})).exchange();
    s.call(C, "cancel", json!({"id": 1})).drop_frames(C);
    let tiny: Vec<u8> = (0..1100u32).flat_map(|i| frame_bytes(8, 0, 0, 1, 0, &i.to_le_bytes())).collect();
    s.inject(C, &tiny).events(C).drop_frames(C).check(C);
    v.push(s.done_with(
        "frames_in_flight_after_cancel",
        "frames the peer had in flight on a call we cancelled are dropped free of the stray budget",
        limits(&[("stray_frame_budget", 100)]),
        ConfigJson::default(),
    ));

    s.handshake();
    s.call(C, "ping", json!({})).deliver(C).advance(5).deliver(S).events(C);
    v.push(s.done("ping_rtt", "a PING's PONG reports the round trip"));

    v
}
