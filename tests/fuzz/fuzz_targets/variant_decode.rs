//! The Variant decoders (Godot 4 plain and compressed, Godot 3) on arbitrary bytes: no
//! panic, no allocation the input cannot justify (libFuzzer's `-rss_limit_mb` catches
//! those), and every value that decodes re-encodes to bytes that decode to the same value
//! (except texts that start with a byte order mark, which Godot's decoder drops).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wspeer::variant::{Limits, Variant, godot3, godot4};

type Decode = fn(&[u8], &Limits) -> Result<(Variant, usize), wspeer::variant::VariantError>;
type Encode = fn(&Variant, &mut Vec<u8>) -> Result<(), wspeer::variant::VariantError>;

/// Decodes `data`; if it decodes, the re-encoding must decode to the same value.
fn check(name: &str, data: &[u8], limits: &Limits, decode: Decode, encode: Encode) {
    let Ok((value, used)) = decode(data, limits) else {
        return;
    };
    if wspeer_fuzz::has_text_with_bom(&value) {
        return;
    }
    assert!(used <= data.len(), "{name}: consumed {used} of {}", data.len());
    let mut bytes = Vec::new();
    // Some decoded values cannot be written back in the same form (an object's full form
    // is refused on decode, so none here; a value nested to the limit stays in it).
    encode(&value, &mut bytes).unwrap_or_else(|e| panic!("{name}: {value:?} re-encodes: {e}"));
    let (again, again_used) =
        decode(&bytes, limits).unwrap_or_else(|e| panic!("{name}: {value:?} re-decodes: {e}"));
    assert_eq!(again_used, bytes.len(), "{name}");
    // NaN != NaN: compare the canonical encodings instead of the values.
    let mut bytes_again = Vec::new();
    encode(&again, &mut bytes_again).unwrap();
    assert_eq!(bytes, bytes_again, "{name}: {value:?} then {again:?}");
}

fuzz_target!(|data: &[u8]| {
    // A small depth limit keeps the fuzzer's stack shallow; the default one is tested in
    // the unit tests.
    let limits = Limits { max_depth: 64 };
    check("godot4", data, &limits, godot4::decode, godot4::encode);
    check(
        "godot4 compressed",
        data,
        &limits,
        godot4::decode_compressed,
        godot4::encode_compressed,
    );
    check("godot3", data, &limits, godot3::decode, godot3::encode);
});
