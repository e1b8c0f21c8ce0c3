//! Server side, after a valid upgrade request: the input goes straight to the frame
//! parser (masking, fragmentation, control frames, close codes, UTF-8, size limits).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::server_input(wspeer_fuzz::UPGRADE_REQUEST, data);
});
