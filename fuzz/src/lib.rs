//! Harnesses behind the cargo-fuzz targets of `gatewire-proto` and of the
//! runtime's decoding guards (`gatewire`).
//!
//! Each target in `fuzz_targets/` is a one-line call into a module here, so
//! the seed generator (`examples/gen_seeds.rs`) can run the same code on the
//! seeds it writes and check that they reach what they were made for.
//!
//! The rule (STYLE.md, rule 24): any input is accepted or rejected with a
//! documented error; a panic, a hang or an undocumented error is a bug. The
//! harnesses assert the invariants below with `assert!`, so a broken
//! invariant is reported by libFuzzer like any other panic.

pub mod connection;
pub mod frame_decoder;
pub mod handshake;
pub mod track;
pub mod wrappers;

/// Upper bound on `poll_transmit`/`poll_event` calls in one drain: a
/// connection that keeps producing output past this is a hang.
pub const DRAIN_LIMIT: usize = 100_000;

/// Whether `GATEWIRE_FUZZ_TRACE` is set: the harnesses then print every op,
/// frame and event to stderr (for reading a crash, not for fuzzing).
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("GATEWIRE_FUZZ_TRACE").is_some())
}
