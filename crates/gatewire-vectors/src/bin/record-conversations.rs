//! Records conversations for differential tests of other implementations.
//!
//! Reads a JSON array of conversations (the format of
//! `tests/vectors/conversations.json`, expectations may be empty) on stdin,
//! runs each through [`gatewire_vectors::interp::run`] in record mode, and
//! writes the same array, expectations filled from the Rust core, on stdout.
//! A conversation the interpreter rejects (unknown field, invalid limit,
//! malformed step) or that makes the core panic is replaced by
//! `{"name": ..., "error": "..."}`, so one bad input does not hide the rest.
//!
//! The Python package runs it from `tests/test_differential.py` when
//! `GATEWIRE_RECORDER` names this binary.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

use gatewire_vectors::interp::{Mode, run};
use gatewire_vectors::model::Conversation;
use serde_json::{Value, json};

thread_local! {
    /// The message and location of the last panic, set by the panic hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records one conversation, or describes why it cannot be recorded.
fn record(input: Value) -> Value {
    let name = input.get("name").cloned().unwrap_or(Value::Null);
    let mut conv: Conversation = match serde_json::from_value(input) {
        Ok(c) => c,
        Err(e) => return json!({ "name": name, "error": format!("not a conversation: {e}") }),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| run(&mut conv, Mode::Record)));
    match outcome {
        Ok(Ok(())) => serde_json::to_value(&conv).unwrap_or_else(|e| json!({ "name": name, "error": e.to_string() })),
        Ok(Err(e)) => json!({ "name": name, "error": e }),
        Err(_) => {
            let what = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "unknown panic".into());
            json!({ "name": name, "error": format!("recorder {what}") })
        }
    }
}

fn main() -> ExitCode {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("error: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let inputs: Vec<Value> = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: stdin is not a JSON array of conversations: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Panics are reported per conversation, with their location.
    std::panic::set_hook(Box::new(|info| LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()))));
    let recorded: Vec<Value> = inputs.into_iter().map(record).collect();
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &recorded)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("error: writing stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
