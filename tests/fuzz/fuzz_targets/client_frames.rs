//! Client side, in process: after a real `101` from a server `Connection`, the input is
//! the server's frames (must be unmasked; control frames, closes, limits); the client's
//! output must stay valid for that server. See `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::run(wspeer_fuzz::Target::ClientFrames, data);
});
