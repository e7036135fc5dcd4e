//! gatewire's golden vectors (`tests/vectors/`): the JSON model every
//! language reads, the case inputs, the recorder that fills expectations
//! from the Rust core, and the Rust runner.
//!
//! `cargo xtask vectors` rewrites the files; `cargo xtask test` fails when
//! they are stale or when the core disagrees with them.

pub mod cases;
pub mod interp;
pub mod json;
pub mod model;

use std::path::{Path, PathBuf};

use model::{ControlFile, ConversationFile, FrameFile, ServicesFile};

/// Format version of the vector files.
pub const FORMAT_VERSION: u32 = 1;

/// `tests/vectors/` of the repository.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// The frame-decoding vectors, recorded from the Rust core.
pub fn frame_file() -> FrameFile {
    FrameFile {
        version: FORMAT_VERSION,
        description: "Byte streams fed whole to a frame decoder with payload limit max_frame. `frames` are \
                      decoded in order; `error` is the error that stops decoding, including truncation at end \
                      of input (code: wire code name; kind: malformed.<reason>). Decoding must not depend on \
                      how the bytes are split."
            .into(),
        cases: cases::frame_cases(),
    }
}

/// The control-table vectors.
pub fn control_file() -> ControlFile {
    ControlFile {
        version: FORMAT_VERSION,
        description: "FlatBuffers control payloads (schema/gatewire.fbs). Decode `hex` as `table` after \
                      verification (depth 32, 10,000 tables, apparent size 4x); `invalid` cases must be \
                      rejected, valid ones must decode to `value` (u64 fingerprints as decimal strings, \
                      byte vectors as hex)."
            .into(),
        cases: cases::control_cases(),
    }
}

/// The conversation vectors, with expectations recorded from the Rust core.
pub fn conversation_file() -> Result<ConversationFile, String> {
    let mut conversations = cases::conversations();
    for c in &mut conversations {
        interp::run(c, interp::Mode::Record).map_err(|e| format!("{}: {e}", c.name))?;
    }
    Ok(ConversationFile {
        version: FORMAT_VERSION,
        description: "A client and a server connection, both starting at time 0 with default configuration \
                      plus the given overrides, driven by the same steps in every language. `deliver` drains \
                      poll_transmit of one side, compares the frames (control tables by decoded value) and \
                      feeds their bytes to the other side; `events` drains poll_event; `call` runs a command \
                      and compares its result; `check` compares observable state; `advance` moves the clock \
                      and calls handle_timeout on both sides."
            .into(),
        conversations,
    })
}

/// The service vectors: method ids, hashes and compatibility checks, with
/// outcomes recorded from the Rust core.
pub fn services_file() -> Result<ServicesFile, String> {
    let mut checks = cases::service_checks();
    for c in &mut checks {
        let list = |v: &serde_json::Value| json::services_from_json(v);
        c.error = gatewire_proto::services::check(
            &list(&c.server_offers)?,
            &list(&c.server_uses)?,
            &list(&c.client_offers)?,
            &list(&c.client_uses)?,
        )
        .err()
        .map(|e| e.0);
    }
    Ok(ServicesFile {
        version: FORMAT_VERSION,
        description: "Method ids are FNV-1a 32 of `service/method` (UTF-8). `hashes` are FNV-1a 64 of `text`. \
                      `checks` run the acceptor's compatibility check (docs/PROTOCOL.md §10.3) on the four \
                      service lists (JSON form of control.json); `error` is null when the peers are compatible, \
                      else the exact refusal message."
            .into(),
        method_ids: cases::method_id_cases(),
        hashes: cases::hash_cases(),
        checks,
    })
}

/// Pretty JSON with a trailing newline.
pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("vector values serialize");
    s.push('\n');
    s
}

/// The vector files as (name, contents).
pub fn render() -> Result<Vec<(&'static str, String)>, String> {
    Ok(vec![
        ("frames.json", to_json(&frame_file())),
        ("control.json", to_json(&control_file())),
        ("conversations.json", to_json(&conversation_file()?)),
        ("services.json", to_json(&services_file()?)),
    ])
}
