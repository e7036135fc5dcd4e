//! `FrameDecoder`, `Frame::decode_exact` and `Header::decode` on arbitrary
//! bytes; see `gatewire_fuzz::frame_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatewire_fuzz::frame_decoder::run(data));
