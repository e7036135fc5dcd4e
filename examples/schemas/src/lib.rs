//! The example schemas of `schema/examples`, generated for Rust by
//! `cargo xtask codegen` (`gatewire gen --lang rust`):
//!
//! - [`chart`]: a browser chart driven from Python (services
//!   [`chart_service`], offered by the page, and [`chart_events_service`],
//!   offered by the Python side);
//! - [`gateway`]: a desktop application and a gateway daemon
//!   ([`gateway_service`], offered by the gateway).

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::use_self, clippy::manual_let_else, unsafe_op_in_unsafe_fn)]
mod chart_generated {
    include!("generated/chart.rs");
}

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::use_self, clippy::manual_let_else, unsafe_op_in_unsafe_fn)]
mod gateway_generated {
    include!("generated/gateway.rs");
}

pub use chart_generated::{chart, chart_events_service, chart_service};
pub use gateway_generated::{gateway, gateway_service};

pub mod impls;
