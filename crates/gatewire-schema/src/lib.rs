//! FlatBuffers tables for gatewire's control frames.
//!
//! The code in [`generated`] is produced by `flatc` from `schema/gatewire.fbs`
//! (`cargo xtask codegen` rewrites it; `cargo xtask test` fails when it is
//! stale). It lives in its own crate because generated FlatBuffers accessors
//! use `unsafe` internally, while `gatewire-proto` forbids unsafe code. Readers
//! outside this crate only reach tables through [`flatbuffers::root_with_opts`],
//! which verifies the buffer first.
#![no_std]
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::use_self, clippy::manual_let_else)]

#[rustfmt::skip]
#[path = "gatewire_generated.rs"]
pub mod generated;

pub use flatbuffers;
pub use generated::gatewire::control;
