//! Server side, arbitrary bytes from the first byte: the HTTP upgrade parser and its
//! limits (400/426/431), then frames if the input happens to upgrade.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::server_input(&[], data);
});
