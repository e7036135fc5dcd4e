//! The sans-IO core of the gatewire protocol.
//!
//! This crate is the single source of truth for gatewire's wire rules
//! (`docs/PROTOCOL.md`). It performs **no** I/O: it has no sockets, reads no
//! clock, spawns nothing and never awaits. A runtime feeds it bytes and the
//! current time and carries out what it asks for. The Rust runtime is the
//! `gatewire` crate; the Python and TypeScript packages implement the same
//! rules and pass the same vectors (`tests/vectors/`).
//!
//! # Layers
//!
//! - [`frame`]: the 16-byte header, frame types, flags and the rules that
//!   need no connection state. Needs no allocator.
//! - [`codec`]: whole frames over a byte stream, with zero-copy payloads.
//! - [`control`]: the FlatBuffers control tables, verified before use.
//! - [`connection`]: the connection state machine — handshake, calls,
//!   events, streams with credit, fragmentation, keepalive, cancel and
//!   two-phase shutdown.
//!
//! # Driving a connection
//!
//! Inputs are `handle_*` methods, application commands are plain methods
//! (`send_request`, `cancel`, `grant_credit`, `close`...), and outputs are
//! `poll_*` methods. After any input or command, a runtime drains, in this
//! order: [`Connection::poll_transmit`] until `None` (write the frames),
//! [`Connection::poll_event`] until `None` (deliver them), then arms a timer
//! for [`Connection::poll_timeout`] and calls
//! [`Connection::handle_timeout`] when it fires.
//!
//! # Features
//!
//! - `alloc`: everything but the header codec (frames, connection).
//! - `std` (default): `alloc` plus `std::error::Error` impls.
//!
//! `cargo build -p gatewire-proto --no-default-features` builds the header
//! codec alone for targets without an allocator.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod code;
pub mod frame;

#[cfg(feature = "alloc")]
pub mod codec;
#[cfg(feature = "alloc")]
pub mod connection;
#[cfg(feature = "alloc")]
pub mod control;
#[cfg(feature = "alloc")]
pub mod limits;
#[cfg(feature = "alloc")]
pub mod services;
pub mod time;

pub use code::ErrorCode;
pub use frame::{Codec, Flags, FrameError, FrameType, HEADER_LEN, Header, InsufficientSize};
pub use time::Instant;

#[cfg(feature = "alloc")]
pub use codec::{Frame, FrameDecoder};
#[cfg(feature = "alloc")]
pub use connection::{ApiError, CallId, Config, Connection, ConnectionError, Event, Message, Role, SendError, Side};
#[cfg(feature = "alloc")]
pub use limits::{Limits, Timeouts};

/// The protocol version this crate implements.
pub const PROTOCOL_VERSION: u16 = 1;
