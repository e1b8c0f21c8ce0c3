//! Client side, in process: arbitrary bytes as the server's answer to a real client
//! `Connection`'s upgrade request — the response parser and its RFC 6455 §4.1 checks, then
//! frames if it passes (a `Sec-WebSocket-Accept` value in the input is set to the right one,
//! so captured answers upgrade). See `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::run(wspeer_fuzz::Target::ClientHandshake, data);
});
