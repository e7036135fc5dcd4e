//! Conversions between core values and their JSON form in the vectors.

use gatewire_proto::connection::{ConnectionError, Event, Message, PeerInfo, Side, Violation};
use gatewire_proto::control::{
    AdvertisedLimits, ErrorInfo, GoAwayInfo, Hello, HelloAck, MethodDesc, MethodKind, Service, ServiceList, Shape,
};
use gatewire_proto::{Codec, ErrorCode, Frame, FrameError, FrameType};
use serde_json::{Value, json};

use crate::model::{ErrorJson, FrameJson, MessageJson};

/// Lower-case hex.
pub fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

/// A code's name, or `0x` and four hex digits for an unnamed code.
pub fn code_name(code: ErrorCode) -> String {
    code.name().map_or_else(|| format!("{:#06x}", code.0), str::to_string)
}

/// Parses [`code_name`] output.
pub fn parse_code(s: &str) -> Result<ErrorCode, String> {
    if let Some(h) = s.strip_prefix("0x") {
        return u16::from_str_radix(h, 16).map(ErrorCode).map_err(|e| e.to_string());
    }
    (0..=0x20u16).map(ErrorCode).find(|c| c.name() == Some(s)).ok_or_else(|| format!("unknown code name {s}"))
}

/// The kind string of a frame error.
pub fn frame_error_kind(e: &FrameError) -> &'static str {
    match e {
        FrameError::TooLarge { .. } => "too_large",
        FrameError::ReservedByte(_) => "reserved_byte",
        FrameError::UnknownType(_) => "unknown_type",
        FrameError::InvalidFlags { .. } => "invalid_flags",
        FrameError::UnexpectedCodec { .. } => "unexpected_codec",
        FrameError::InvalidId { .. } => "invalid_id",
        FrameError::InvalidArg { .. } => "invalid_arg",
        FrameError::Truncated { .. } => "truncated",
        FrameError::InvalidLength { .. } => "invalid_length",
        _ => "other",
    }
}

fn violation_kind(v: &Violation) -> &'static str {
    match v {
        Violation::UnexpectedFrame(_) => "unexpected_frame",
        Violation::WrongParity { .. } => "wrong_parity",
        Violation::IdNotIncreasing { .. } => "id_not_increasing",
        Violation::UnopenedId { .. } => "unopened_id",
        Violation::InterleavedMessage(_) => "interleaved_message",
        Violation::ShortPrelude(_) => "short_prelude",
        Violation::CompressionNotNegotiated => "compression_not_negotiated",
        Violation::VersionNotOffered(_) => "version_not_offered",
        Violation::GoAwayIncreased { .. } => "goaway_increased",
        Violation::InvalidPeerLimit(_) => "invalid_peer_limit",
        _ => "other",
    }
}

/// The JSON form of a frame-level error.
pub fn frame_error_json(e: &FrameError) -> ErrorJson {
    ErrorJson { code: code_name(e.code()), kind: format!("malformed.{}", frame_error_kind(e)) }
}

/// The JSON form of a connection error.
pub fn connection_error_json(e: &ConnectionError) -> ErrorJson {
    let kind = match e {
        ConnectionError::Malformed(f) => format!("malformed.{}", frame_error_kind(f)),
        ConnectionError::Control(_) => "control".into(),
        ConnectionError::Violation(v) => format!("violation.{}", violation_kind(v)),
        ConnectionError::LimitExceeded { limit, .. } => format!("limit.{limit}"),
        ConnectionError::FlowControl { .. } => "flow_control".into(),
        ConnectionError::Budget(b) => format!("budget.{}", b.replace(' ', "_")),
        ConnectionError::Timeout(t) => format!("timeout.{}", t.replace(' ', "_")),
        ConnectionError::Refused { side, .. } => format!("refused.{}", side_name(*side)),
        ConnectionError::Remote { .. } => "remote".into(),
        ConnectionError::Local { .. } => "local".into(),
        ConnectionError::ConnectionLost => "connection_lost".into(),
        _ => "other".into(),
    };
    ErrorJson { code: code_name(e.code()), kind }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Local => "local",
        Side::Remote => "remote",
    }
}

/// A message's JSON form.
pub fn message_json(m: &Message) -> MessageJson {
    MessageJson { codec: m.codec.0, body: hx(&m.body), uncompressed_len: m.uncompressed_len }
}

/// Parses a message.
pub fn parse_message(v: &Value) -> Result<Message, String> {
    let m: MessageJson = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let body = hex::decode(&m.body).map_err(|e| e.to_string())?;
    Ok(Message { codec: Codec(m.codec), body: body.into(), uncompressed_len: m.uncompressed_len })
}

fn limits_json(l: &AdvertisedLimits) -> Value {
    json!({
        "max_frame": l.max_frame,
        "max_message": l.max_message,
        "max_in_flight": l.max_in_flight,
        "initial_stream_credit": l.initial_stream_credit,
        "connection_credit": l.connection_credit,
    })
}

/// The JSON form of service descriptors: u64 hashes as decimal strings.
pub fn services_json(s: &[Service]) -> Value {
    s.iter()
        .map(|s| {
            json!({
                "name": s.name,
                "fingerprint": s.fingerprint.to_string(),
                "methods": s.methods.iter().map(|m| json!({
                    "name": m.name,
                    "id": m.id,
                    "kind": m.kind.0,
                    "request": m.request.to_string(),
                    "response": m.response.to_string(),
                })).collect::<Vec<_>>(),
                "shapes": s.shapes.iter().map(|sh| json!({
                    "name": sh.name,
                    "type": sh.ty.to_string(),
                    "fixed": sh.fixed,
                    "slots": sh.slots.iter().map(u64::to_string).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Reads service descriptors in the form [`services_json`] writes.
pub fn services_from_json(v: &Value) -> Result<Vec<Service>, String> {
    let list = v.as_array().ok_or("services: expected an array")?;
    list.iter().map(service_from_json).collect()
}

fn service_from_json(v: &Value) -> Result<Service, String> {
    let str_field = |v: &Value, k: &str| v[k].as_str().map(ToString::to_string).ok_or(format!("service: missing {k}"));
    let u64_field = |v: &Value, k: &str| {
        v[k].as_str().and_then(|s| s.parse::<u64>().ok()).ok_or(format!("service: {k} must be a decimal string"))
    };
    let empty = Vec::new();
    let methods = v["methods"].as_array().unwrap_or(&empty);
    let shapes = v["shapes"].as_array().unwrap_or(&empty);
    Ok(Service {
        name: str_field(v, "name")?,
        fingerprint: u64_field(v, "fingerprint")?,
        methods: methods
            .iter()
            .map(|m| {
                Ok(MethodDesc {
                    name: str_field(m, "name")?,
                    id: m["id"].as_u64().and_then(|x| u32::try_from(x).ok()).ok_or("method: bad id")?,
                    kind: MethodKind(m["kind"].as_u64().and_then(|x| u8::try_from(x).ok()).ok_or("method: bad kind")?),
                    request: u64_field(m, "request")?,
                    response: u64_field(m, "response")?,
                })
            })
            .collect::<Result<_, String>>()?,
        shapes: shapes
            .iter()
            .map(|sh| {
                let slots = sh["slots"].as_array().ok_or("shape: missing slots")?;
                Ok(Shape {
                    name: str_field(sh, "name")?,
                    ty: u64_field(sh, "type")?,
                    fixed: sh["fixed"].as_bool().ok_or("shape: missing fixed")?,
                    slots: slots
                        .iter()
                        .map(|x| x.as_str().and_then(|s| s.parse().ok()).ok_or("shape: bad slot".to_string()))
                        .collect::<Result<_, String>>()?,
                })
            })
            .collect::<Result<_, String>>()?,
    })
}

/// The JSON form of a HELLO table.
pub fn hello_json(h: &Hello) -> Value {
    json!({
        "min_version": h.min_version,
        "max_version": h.max_version,
        "limits": limits_json(&h.limits),
        "compression": h.compression,
        "codecs": h.codecs,
        "auth": h.auth.as_ref().map(|a| hx(a)),
        "services": services_json(&h.services),
        "agent": h.agent,
        "uses": services_json(&h.uses),
    })
}

/// The JSON form of a HELLO_ACK table.
pub fn hello_ack_json(h: &HelloAck) -> Value {
    json!({
        "version": h.version,
        "error_code": code_name(h.error_code),
        "message": h.message,
        "limits": limits_json(&h.limits),
        "compression": h.compression,
        "codecs": h.codecs,
        "services": services_json(&h.services),
        "agent": h.agent,
        "uses": services_json(&h.uses),
    })
}

/// The JSON form of an ErrorInfo table.
pub fn error_info_json(e: &ErrorInfo) -> Value {
    json!({"message": e.message, "details": e.details.as_ref().map(|d| hx(d))})
}

/// Decodes `bytes` as the control `table` named in the vectors: `Ok(None)`
/// when the table is invalid, `Err` for an unknown table name.
pub fn decode_control(table: &str, bytes: &[u8]) -> Result<Option<Value>, String> {
    Ok(match table {
        "Hello" => Hello::decode(bytes).ok().map(|h| hello_json(&h)),
        "HelloAck" => HelloAck::decode(bytes).ok().map(|h| hello_ack_json(&h)),
        "ErrorInfo" => ErrorInfo::decode(bytes).ok().map(|e| error_info_json(&e)),
        "GoAway" => GoAwayInfo::decode(bytes).ok().map(|g| goaway_json(&g)),
        "ServiceList" => ServiceList::decode(bytes).ok().map(|l| service_list_json(&l)),
        t => return Err(format!("unknown table {t}")),
    })
}

/// The JSON form of a ServiceList table.
pub fn service_list_json(l: &ServiceList) -> Value {
    json!({"offers": services_json(&l.offers), "uses": services_json(&l.uses)})
}

/// The JSON form of a GoAway table.
pub fn goaway_json(g: &GoAwayInfo) -> Value {
    json!({"message": g.message})
}

fn peer_json(p: &PeerInfo) -> Value {
    json!({
        "version": p.version,
        "limits": limits_json(&p.limits),
        "compression": p.compression,
        "codecs": p.codecs,
        "services": services_json(&p.services),
        "agent": p.agent,
        "uses": services_json(&p.uses),
    })
}

/// A frame as it appears in a frame-decoding case: payload always in hex.
pub fn raw_frame_json(f: &Frame) -> FrameJson {
    let h = f.header;
    FrameJson {
        ty: h.ty.0,
        flags: h.flags.0,
        codec: h.codec.0,
        id: h.id,
        arg: h.arg,
        payload: Some(hx(&f.payload)),
        control: None,
    }
}

/// A frame as it appears in a conversation: control tables decoded.
pub fn frame_json(f: &Frame) -> FrameJson {
    let mut j = raw_frame_json(f);
    let control = match f.header.ty {
        FrameType::HELLO => Hello::decode(&f.payload).ok().map(|h| hello_json(&h)),
        FrameType::HELLO_ACK => HelloAck::decode(&f.payload).ok().map(|h| hello_ack_json(&h)),
        FrameType::ERROR => ErrorInfo::decode(&f.payload).ok().map(|e| error_info_json(&e)),
        FrameType::GOAWAY => GoAwayInfo::decode(&f.payload).ok().map(|g| goaway_json(&g)),
        _ => None,
    };
    if control.is_some() {
        j.payload = None;
        j.control = control;
    }
    j
}

fn deadline_ms(d: Option<core::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

/// The JSON form of an event.
pub fn event_json(e: &Event) -> Value {
    match e {
        Event::HelloReceived(h) => json!({"type": "HelloReceived", "hello": hello_json(h)}),
        Event::Connected(p) => json!({"type": "Connected", "peer": peer_json(p)}),
        Event::Request { id, method, message, deadline } => json!({
            "type": "Request", "id": id, "method": method,
            "message": message_json(message), "deadline_ms": deadline_ms(*deadline),
        }),
        Event::Response { id, message } => json!({"type": "Response", "id": id, "message": message_json(message)}),
        Event::CallFailed { id, code, info, side } => json!({
            "type": "CallFailed", "id": id, "code": code_name(*code),
            "info": error_info_json(info), "side": side_name(*side),
        }),
        Event::Event { method, message } => {
            json!({"type": "Event", "method": method, "message": message_json(message)})
        }
        Event::StreamOpened { id, method, message, end, deadline } => json!({
            "type": "StreamOpened", "id": id, "method": method, "message": message_json(message),
            "end": end, "deadline_ms": deadline_ms(*deadline),
        }),
        Event::StreamData { id, message, end } => {
            json!({"type": "StreamData", "id": id, "message": message_json(message), "end": end})
        }
        Event::Cancelled { id, code } => json!({"type": "Cancelled", "id": id, "code": code_name(*code)}),
        Event::Writable { id } => json!({"type": "Writable", "id": id}),
        Event::Pong { token, rtt } => json!({"type": "Pong", "token": token, "rtt_ms": rtt.as_millis() as u64}),
        Event::GoAway { last_id, code, message } => {
            json!({"type": "GoAway", "last_id": last_id, "code": code_name(*code), "message": message})
        }
        Event::Closed { error } => json!({"type": "Closed", "error": error.as_ref().map(connection_error_json)}),
        _ => json!({"type": "Unknown"}),
    }
}
