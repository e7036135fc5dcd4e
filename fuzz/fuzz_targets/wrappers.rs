//! zstd, FlatBuffers-verification, authentication and service-list guards
//! on arbitrary bytes; see `gatewire_fuzz::wrappers`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatewire_fuzz::wrappers::run(data));
