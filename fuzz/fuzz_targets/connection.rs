//! A client and a server driven by `Arbitrary` ops; see
//! `gatewire_fuzz::connection`.
#![no_main]

use gatewire_fuzz::connection::{Input, run};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: Input| {
    run(&input);
});
