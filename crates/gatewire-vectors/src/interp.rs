//! Runs a conversation against two core connections: either recording the
//! expectations (generation) or comparing with them (verification). Python
//! and TypeScript have their own runners for the same files.

use std::time::Duration;

use gatewire_proto::connection::{ApiError, Config, Connection, SendError};
use gatewire_proto::control::ErrorInfo;
use gatewire_proto::{Frame, Instant};
use serde_json::{Map, Value, json};

use crate::json::{event_json, frame_json, parse_code, parse_message};
use crate::model::{ConfigJson, Conversation, SideJson, StateJson, Step};

/// Whether to fill expectations or compare with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Overwrite expectations with what the connections do.
    Record,
    /// Fail on the first difference.
    Verify,
}

/// Applies configuration overrides.
pub fn config(role_server: bool, j: &ConfigJson) -> Result<Config, String> {
    let mut c = if role_server { Config::server() } else { Config::client() };
    c.compression = j.compression;
    c.services = crate::json::services_from_json(&serde_json::Value::Array(j.services.clone()))?;
    c.uses = crate::json::services_from_json(&serde_json::Value::Array(j.uses.clone()))?;
    for (name, &v) in &j.limits {
        let l = &mut c.limits;
        let small = || u32::try_from(v).map_err(|_| format!("limit {name} = {v} out of range"));
        match name.as_str() {
            "max_frame" => l.max_frame = small()?,
            "max_message" => l.max_message = small()?,
            "max_in_flight" => l.max_in_flight = small()?,
            "initial_stream_credit" => l.initial_stream_credit = small()?,
            "connection_credit" => l.connection_credit = small()?,
            "max_handshake" => l.max_handshake = small()?,
            "send_fragment" => l.send_fragment = small()?,
            "max_send_queue" => l.max_send_queue = v,
            "max_pending_control" => l.max_pending_control = small()?,
            "early_cancel_budget" => l.early_cancel_budget = small()?,
            "error_reset_budget" => l.error_reset_budget = small()?,
            "stray_frame_budget" => l.stray_frame_budget = small()?,
            "small_frame_threshold" => l.small_frame_threshold = small()?,
            "small_frame_budget" => l.small_frame_budget = small()?,
            "credit_frames_per_data" => l.credit_frames_per_data = small()?,
            "max_ping_strikes" => l.max_ping_strikes = small()?,
            "max_local_id" => l.max_local_id = small()?,
            _ => return Err(format!("unknown limit {name}")),
        }
    }
    for (name, v) in &j.timeouts_ms {
        let t = &mut c.timeouts;
        let d = v.map(Duration::from_millis);
        let req = || d.ok_or_else(|| format!("timeout {name} cannot be off"));
        match name.as_str() {
            "handshake" => t.handshake = req()?,
            "partial_frame" => t.partial_frame = req()?,
            "keepalive_interval" => t.keepalive_interval = d,
            "keepalive_timeout" => t.keepalive_timeout = req()?,
            "idle" => t.idle = d,
            "min_ping_interval" => t.min_ping_interval = req()?,
            "goaway_grace" => t.goaway_grace = req()?,
            "drain" => t.drain = req()?,
            _ => return Err(format!("unknown timeout {name}")),
        }
    }
    c.limits.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

struct Runner {
    client: Connection,
    server: Connection,
    now: Instant,
}

impl Runner {
    fn conn(&mut self, side: SideJson) -> &mut Connection {
        match side {
            SideJson::Client => &mut self.client,
            SideJson::Server => &mut self.server,
        }
    }
}

fn send_error_name(e: &SendError) -> &'static str {
    match e {
        SendError::Blocked => "Blocked",
        SendError::TooLarge { .. } => "TooLarge",
        SendError::Closing => "Closing",
        SendError::Closed => "Closed",
        SendError::IdsExhausted => "IdsExhausted",
        SendError::UnknownCall(_) => "UnknownCall",
        SendError::Api(a) => api_error_name(a),
        _ => "Other",
    }
}

fn api_error_name(e: &ApiError) -> &'static str {
    match e {
        ApiError::InvalidState(_) => "InvalidState",
        ApiError::InvalidArgument(_) => "InvalidArgument",
        ApiError::UnknownCall(_) => "UnknownCall",
        _ => "Other",
    }
}

fn arg_u64(args: &Map<String, Value>, name: &str) -> Result<u64, String> {
    args.get(name).and_then(Value::as_u64).ok_or_else(|| format!("missing integer argument {name}"))
}

fn arg_u32(args: &Map<String, Value>, name: &str) -> Result<u32, String> {
    u32::try_from(arg_u64(args, name)?).map_err(|_| format!("argument {name} out of range"))
}

fn opt_str<'a>(args: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

fn deadline(args: &Map<String, Value>) -> Option<Duration> {
    args.get("deadline_ms").and_then(Value::as_u64).map(Duration::from_millis)
}

fn message(args: &Map<String, Value>) -> Result<gatewire_proto::Message, String> {
    parse_message(args.get("message").ok_or("missing argument message")?)
}

fn ok<T: serde::Serialize>(r: Result<T, SendError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": send_error_name(&e) }),
    }
}

fn ok_api<T: serde::Serialize>(r: Result<T, ApiError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": api_error_name(&e) }),
    }
}

fn command(c: &mut Connection, name: &str, args: &Map<String, Value>) -> Result<Value, String> {
    Ok(match name {
        "accept" => ok_api(c.accept()),
        "refuse" => {
            ok_api(c.refuse(parse_code(opt_str(args, "code").ok_or("missing code")?)?, opt_str(args, "message")))
        }
        "send_request" => ok(c.send_request(arg_u32(args, "method")?, message(args)?, deadline(args))),
        "send_event" => ok(c.send_event(arg_u32(args, "method")?, message(args)?)),
        "open_stream" => {
            let end = args.get("end").and_then(Value::as_bool).unwrap_or(false);
            ok(c.open_stream(arg_u32(args, "method")?, message(args)?, deadline(args), end))
        }
        "send_response" => ok(c.send_response(arg_u32(args, "id")?, message(args)?)),
        "send_error" => {
            let code = parse_code(opt_str(args, "code").ok_or("missing code")?)?;
            let info = ErrorInfo { message: opt_str(args, "message").map(String::from), details: None };
            ok(c.send_error(arg_u32(args, "id")?, code, info))
        }
        "send_stream_data" => {
            let end = args.get("end").and_then(Value::as_bool).unwrap_or(false);
            ok(c.send_stream_data(arg_u32(args, "id")?, message(args)?, end))
        }
        "finish" => ok(c.finish(arg_u32(args, "id")?)),
        "grant_credit" => ok_api(c.grant_credit(arg_u32(args, "id")?, arg_u32(args, "n")?)),
        "cancel" => ok_api(c.cancel(arg_u32(args, "id")?)),
        "ping" => ok_api(c.ping()),
        "close" => {
            c.close(parse_code(opt_str(args, "code").ok_or("missing code")?)?, opt_str(args, "message"));
            json!({ "ok": null })
        }
        other => return Err(format!("unknown command {other}")),
    })
}

fn drain_frames(c: &mut Connection) -> Vec<Frame> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn state(c: &Connection, start: Instant) -> StateJson {
    let (l, r) = c.calls_in_flight();
    StateJson {
        connected: c.is_connected(),
        closed: c.is_closed(),
        in_flight: [l, r],
        table_len: c.table_len(),
        timeout_ms: c.poll_timeout().map(|t| t.saturating_duration_since(start).as_millis() as u64),
    }
}

fn compare<T: PartialEq + std::fmt::Debug>(step: usize, what: &str, expected: &T, actual: &T) -> Result<(), String> {
    if expected == actual {
        Ok(())
    } else {
        Err(format!("step {step} ({what}): expected {expected:#?}\n   got {actual:#?}"))
    }
}

/// Runs `conv`; in record mode its expectations are overwritten.
pub fn run(conv: &mut Conversation, mode: Mode) -> Result<(), String> {
    let start = Instant::ZERO;
    let mut r = Runner {
        client: Connection::new(config(false, &conv.client)?, start),
        server: Connection::new(config(true, &conv.server)?, start),
        now: start,
    };
    for (i, step) in conv.steps.iter_mut().enumerate() {
        match step {
            Step::Deliver { from, frames } => {
                let sent = drain_frames(r.conn(*from));
                let actual: Vec<_> = sent.iter().map(frame_json).collect();
                let mut bytes = Vec::new();
                for f in &sent {
                    f.encode_to(&mut bytes);
                }
                let to = if *from == SideJson::Client { SideJson::Server } else { SideJson::Client };
                let now = r.now;
                r.conn(to).handle_bytes(now, &bytes);
                match mode {
                    Mode::Record => *frames = actual,
                    Mode::Verify => compare(i, "deliver", frames, &actual)?,
                }
            }
            Step::Drop { side, frames } => {
                let actual: Vec<_> = drain_frames(r.conn(*side)).iter().map(frame_json).collect();
                match mode {
                    Mode::Record => *frames = actual,
                    Mode::Verify => compare(i, "drop", frames, &actual)?,
                }
            }
            Step::Events { side, expect } => {
                let c = r.conn(*side);
                let actual: Vec<Value> = std::iter::from_fn(|| c.poll_event()).map(|e| event_json(&e)).collect();
                match mode {
                    Mode::Record => *expect = actual,
                    Mode::Verify => compare(i, "events", expect, &actual)?,
                }
            }
            Step::Inject { side, hex } => {
                let bytes = hex::decode(&*hex).map_err(|e| e.to_string())?;
                let now = r.now;
                r.conn(*side).handle_bytes(now, &bytes);
            }
            Step::Advance { ms } => {
                r.now = r.now + Duration::from_millis(*ms);
                let now = r.now;
                r.client.handle_timeout(now);
                r.server.handle_timeout(now);
            }
            Step::Eof { side } => {
                let now = r.now;
                r.conn(*side).handle_eof(now);
            }
            Step::Call { side, command: name, args, result } => {
                let actual = command(r.conn(*side), name, args)?;
                match mode {
                    Mode::Record => *result = actual,
                    Mode::Verify => compare(i, name, result, &actual)?,
                }
            }
            Step::Check { side, state: expected } => {
                let actual = state(r.conn(*side), start);
                match mode {
                    Mode::Record => *expected = actual,
                    Mode::Verify => compare(i, "check", expected, &actual)?,
                }
            }
        }
    }
    Ok(())
}
