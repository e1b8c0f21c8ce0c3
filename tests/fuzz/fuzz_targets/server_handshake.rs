//! Server side, in process: arbitrary bytes from the first byte of the client's stream into
//! a `Connection::server` — the HTTP upgrade parser and its limits (400/426/431), the
//! sub-protocol choice, then frames if the input happens to upgrade. See `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::run(wspeer_fuzz::Target::ServerHandshake, data);
});
