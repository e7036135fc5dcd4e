//! Control-table decoders and fresh connections on arbitrary bytes; see
//! `gatewire_fuzz::handshake`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatewire_fuzz::handshake::run(data));
