//! Client side, after a valid `101` for the client's own key: the input goes straight to
//! the frame parser (server frames must be unmasked; control frames, closes, limits).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::client_input(true, data);
});
