//! Client side, arbitrary bytes as the server's answer to the upgrade request: the
//! response parser and its RFC 6455 §4.1 checks, then frames if it happens to pass.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wspeer_fuzz::client_input(false, data);
});
