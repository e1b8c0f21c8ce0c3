//! Server side, in process: after a real upgrade request from a client `Connection`, the
//! input is the client's frames (masking, fragmentation, control frames, close codes,
//! UTF-8, size limits, back-pressure); the server's output must stay valid for that client.
//! See `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::run(wspeer_fuzz::Target::ServerFrames, data);
});
