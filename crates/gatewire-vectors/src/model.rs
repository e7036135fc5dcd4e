//! The JSON model of the vector files, shared by every language.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `frames.json`: byte streams and how a decoder must split them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameFile {
    /// Format version of the file.
    pub version: u32,
    /// What the file checks.
    pub description: String,
    /// The cases.
    pub cases: Vec<FrameCase>,
}

/// One byte stream fed to a frame decoder with a given payload limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameCase {
    /// Unique name.
    pub name: String,
    /// Why the case exists.
    pub note: String,
    /// The decoder's payload limit.
    pub max_frame: u32,
    /// The bytes, in hex.
    pub hex: String,
    /// Frames decoded before the end or the error, in order.
    pub frames: Vec<FrameJson>,
    /// The error that stops decoding (including truncation at end of input),
    /// or `None`.
    pub error: Option<ErrorJson>,
}

/// An error outcome: the wire code name and the error's kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    /// Wire code name, e.g. `PROTOCOL_VIOLATION`.
    pub code: String,
    /// The kind, e.g. `unknown_type`, `too_large`, `violation`.
    pub kind: String,
}

/// A frame header and payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameJson {
    /// Frame type byte.
    #[serde(rename = "type")]
    pub ty: u8,
    /// Flags byte.
    pub flags: u8,
    /// Codec byte.
    pub codec: u8,
    /// Id.
    pub id: u32,
    /// Arg.
    pub arg: u32,
    /// Payload in hex; for frames whose payload is a control table (HELLO,
    /// HELLO_ACK, ERROR, GOAWAY) in a conversation, `control` describes it
    /// instead and `payload` is omitted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payload: Option<String>,
    /// The decoded control table.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub control: Option<serde_json::Value>,
}

/// `control.json`: control-table payloads and their decoded values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlFile {
    /// Format version.
    pub version: u32,
    /// What the file checks.
    pub description: String,
    /// The cases.
    pub cases: Vec<ControlCase>,
}

/// One control payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlCase {
    /// Unique name.
    pub name: String,
    /// Why the case exists.
    pub note: String,
    /// `Hello`, `HelloAck`, `ErrorInfo` or `GoAway`.
    pub table: String,
    /// Payload in hex.
    pub hex: String,
    /// The decoded value, when valid.
    pub value: Option<serde_json::Value>,
    /// Whether decoding must fail.
    pub invalid: bool,
}

/// `conversations.json`: two connections driven by the same call list in
/// every language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationFile {
    /// Format version.
    pub version: u32,
    /// What the file checks and how to run it.
    pub description: String,
    /// The conversations.
    pub conversations: Vec<Conversation>,
}

/// One conversation between a client and a server connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Unique name.
    pub name: String,
    /// What it shows.
    pub note: String,
    /// Client configuration overrides.
    pub client: ConfigJson,
    /// Server configuration overrides.
    pub server: ConfigJson,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Configuration overrides. Unnamed fields keep their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigJson {
    /// `Limits` fields by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, u64>,
    /// `Timeouts` fields by name, in milliseconds; `null` turns an optional
    /// timeout off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timeouts_ms: BTreeMap<String, Option<u64>>,
    /// Offer zstd.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compression: bool,
    /// Services offered, in the JSON form of the control vectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<serde_json::Value>,
    /// Services used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<serde_json::Value>,
}

/// `services.json`: method ids, hashes and the acceptor's check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServicesFile {
    /// Format version.
    pub version: u32,
    /// What the cases mean.
    pub description: String,
    /// Derived method ids.
    pub method_ids: Vec<MethodIdCase>,
    /// 64-bit FNV-1a of strings (type names, slot types).
    pub hashes: Vec<HashCase>,
    /// The acceptor's compatibility check.
    pub checks: Vec<CheckCase>,
}

/// One derived method id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodIdCase {
    /// Fully qualified service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// The id.
    pub id: u32,
}

/// One 64-bit hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashCase {
    /// The hashed text (UTF-8).
    pub text: String,
    /// FNV-1a 64 as a decimal string.
    pub fnv1a64: String,
}

/// One compatibility check, as the acceptor runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckCase {
    /// Case name.
    pub name: String,
    /// What it shows.
    pub note: String,
    /// The server's offered services.
    pub server_offers: serde_json::Value,
    /// The server's used services.
    pub server_uses: serde_json::Value,
    /// The client's offered services (from HELLO).
    pub client_offers: serde_json::Value,
    /// The client's used services (from HELLO).
    pub client_uses: serde_json::Value,
    /// `null` when compatible, else the exact refusal message.
    pub error: Option<String>,
}

/// Which connection a step acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideJson {
    /// The client.
    Client,
    /// The server.
    Server,
}

/// A message in a command or event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageJson {
    /// Codec byte.
    pub codec: u8,
    /// Body in hex (compressed bytes when `uncompressed_len` is set).
    pub body: String,
    /// Declared decompressed size.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uncompressed_len: Option<u32>,
}

/// One step. Commands carry their expected `result`; `deliver` and `events`
/// carry the expected frames and events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// Drain `poll_transmit` of `from`, compare with `frames`, and feed the
    /// bytes to the other side (`handle_bytes`, whole frames back to back).
    Deliver {
        /// Sender.
        from: SideJson,
        /// Expected frames.
        frames: Vec<FrameJson>,
    },
    /// Drain `poll_transmit` of `side` and discard the frames (a lost
    /// connection), comparing them with `frames`.
    Drop {
        /// Sender.
        side: SideJson,
        /// Expected frames.
        frames: Vec<FrameJson>,
    },
    /// Drain `poll_event` of `side` and compare.
    Events {
        /// Receiver.
        side: SideJson,
        /// Expected events.
        expect: Vec<serde_json::Value>,
    },
    /// Feed raw bytes to `side` (`handle_bytes`).
    Inject {
        /// Receiver.
        side: SideJson,
        /// The bytes, in hex.
        hex: String,
    },
    /// Advance the shared clock by `ms` and call `handle_timeout` on both.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
    /// `handle_eof` on `side`.
    Eof {
        /// Receiver.
        side: SideJson,
    },
    /// A command on `side`; `result` is the expected outcome (`{"ok": value}`
    /// or `{"error": "Blocked"}`...).
    Call {
        /// Connection.
        side: SideJson,
        /// Command name: `accept`, `refuse`, `send_request`, `send_event`,
        /// `open_stream`, `send_response`, `send_error`,
        /// `send_stream_data`, `finish`, `grant_credit`, `cancel`, `ping`,
        /// `close`.
        command: String,
        /// Arguments by name.
        args: serde_json::Map<String, serde_json::Value>,
        /// Expected outcome.
        result: serde_json::Value,
    },
    /// Compare observable state of `side`.
    Check {
        /// Connection.
        side: SideJson,
        /// Expected state.
        state: StateJson,
    },
}

/// Observable connection state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateJson {
    /// `is_connected()`.
    pub connected: bool,
    /// `is_closed()`.
    pub closed: bool,
    /// `calls_in_flight()`.
    pub in_flight: [u32; 2],
    /// `table_len()`.
    pub table_len: usize,
    /// `poll_timeout()` in ms since the start.
    pub timeout_ms: Option<u64>,
}
