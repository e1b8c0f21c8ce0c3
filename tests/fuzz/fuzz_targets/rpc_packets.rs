//! The remote-call and path-cache parsers of both Godot versions on arbitrary bytes: no
//! panic, and every packet that decodes re-encodes to a packet that decodes the same
//! (except arguments with texts that start with a byte order mark, which Godot's decoder
//! drops).
//!
//! Godot is the other oracle: on start, every remote call, property set and path-cache
//! packet the real Godot 3.2 engine sent (`seeds/multiplayer_packets/godot3-captured_*`,
//! their 9-byte transport header removed) must decode, and re-encode to Godot's bytes.
#![no_main]

use std::path::Path;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use wspeer::multiplayer_wire::rpc::{godot3, godot4};
use wspeer::variant::Limits;

/// Re-encodes a decoded Godot 3 packet (`None` for RAW, which has no encoder here).
fn godot3_bytes(packet: &godot3::Packet<'_>) -> Option<Vec<u8>> {
    Some(match packet {
        godot3::Packet::RemoteCall {
            target,
            method,
            args,
        } => godot3::remote_call(*target, method, args).expect("decoded arguments re-encode"),
        godot3::Packet::RemoteSet {
            target,
            property,
            value,
        } => godot3::remote_set(*target, property, value).expect("a decoded value re-encodes"),
        godot3::Packet::SimplifyPath { id, path } => godot3::simplify_path(*id, path),
        godot3::Packet::ConfirmPath { path } => godot3::confirm_path(path),
        godot3::Packet::Raw(_) => return None,
    })
}

fn check_captures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/multiplayer_packets");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("missing {}", dir.display());
    };
    let mut checked = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rpc_kind = ["_rpc_", "_rset_", "_simplify-path_", "_confirm-path_"]
            .iter()
            .any(|kind| name.contains(kind));
        if !name.starts_with("godot3-captured_") || !rpc_kind {
            continue;
        }
        let data = std::fs::read(entry.path()).unwrap();
        let payload = &data[9..];
        let packet = godot3::parse(payload, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: wspeer refuses Godot's packet: {e}"));
        let again = godot3_bytes(&packet).unwrap();
        assert_eq!(again, payload, "{name}: re-encoded differently");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} Godot 3 RPC captures found");
}

static CAPTURES: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    CAPTURES.call_once(check_captures);
    let limits = Limits { max_depth: 64 };
    if let Ok(call) = godot4::parse_remote_call(data, &limits) {
        let bytes = godot4::remote_call(call.target, call.method, &call.args)
            .expect("decoded arguments re-encode");
        let again = godot4::parse_remote_call(&bytes, &limits).expect("re-encoding decodes");
        assert_eq!(again.target, call.target);
        assert_eq!(again.method, call.method);
        assert_eq!(again.args.len(), call.args.len());
        if !call.args.iter().any(wspeer_fuzz::has_text_with_bom) {
            let bytes_again = godot4::remote_call(again.target, again.method, &again.args)
                .expect("re-encodes");
            assert_eq!(bytes_again, bytes);
        }
    }
    if let Ok(simplify) = godot4::parse_simplify_path(data) {
        let bytes = godot4::simplify_path(simplify.checksum, simplify.id, simplify.path);
        assert_eq!(godot4::parse_simplify_path(&bytes), Ok(simplify));
    }
    let _ = godot4::parse_confirm_path(data);
    if let Ok(packet) = godot3::parse(data, &limits) {
        let bom = match &packet {
            godot3::Packet::RemoteCall { args, .. } => {
                args.iter().any(wspeer_fuzz::has_text_with_bom)
            }
            godot3::Packet::RemoteSet { value, .. } => wspeer_fuzz::has_text_with_bom(value),
            _ => false,
        };
        if let (false, Some(bytes)) = (bom, godot3_bytes(&packet)) {
            let again = godot3::parse(&bytes, &limits).expect("re-encoding decodes");
            assert_eq!(godot3_bytes(&again), Some(bytes));
        }
    }
});
