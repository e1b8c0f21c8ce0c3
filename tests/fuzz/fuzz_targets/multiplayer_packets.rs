//! The multiplayer layers' packet parsers (Godot 4 id message, SceneMultiplayer packets,
//! Godot 3 headers and RAW payloads) on arbitrary bytes: no panic, and every packet that
//! decodes re-encodes to the same bytes.
//!
//! Our encoder is not the only oracle: on start, every seed captured from the real Godot
//! 3.2 engine (`seeds/multiplayer_packets/godot3-captured_*`, made by
//! `python3 tests/fuzz/capture.py --godot3`) must decode as the kind its name says, and
//! re-encode to Godot's exact bytes where the format is canonical (see [`check_godot3`]).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wspeer::multiplayer_wire::{godot3, godot4, scene};

/// Kinds of message the Godot 3 capture must contain at least once.
const GODOT3_KINDS: [&str; 9] = [
    "sys-id",
    "sys-add",
    "sys-del",
    "raw",
    "rpc",
    "rset",
    "simplify-path",
    "confirm-path",
    "relayed",
];

/// Checks one message Godot 3.2 sent, named `godot3-captured_<c2s|s2c>_<kind>[_...]`,
/// against wspeer's Godot 3 decoder and encoder.
fn check_godot3(name: &str, data: &[u8]) {
    let mut words = name.split('_').skip(1);
    let direction = words.next().unwrap_or_default();
    let kind = words.next().unwrap_or_default();
    let addressing = words.next().unwrap_or_default();
    let (header, payload) = godot3::parse(data)
        .unwrap_or_else(|e| panic!("{name}: wspeer refuses Godot's message: {e:?}"));
    // The header and payload split is exact.
    assert_eq!(godot3::message(header, payload)[..], data[..], "{name}");
    let sys_kind = match kind {
        "sys-id" => Some(godot3::SYS_ID),
        "sys-add" => Some(godot3::SYS_ADD),
        "sys-del" => Some(godot3::SYS_DEL),
        _ => None,
    };
    if let Some(sys_kind) = sys_kind {
        // System messages: only the server sends them, from 1 to 0, 13 bytes; canonical.
        assert_eq!(direction, "s2c", "{name}");
        assert_eq!(header.kind, sys_kind, "{name}: {header:?}");
        assert_eq!(payload.len(), 4, "{name}");
        let id = godot3::sys_id(payload).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        match addressing {
            "server" => assert_eq!(id, 1, "{name}"),
            _ => assert!(id > 1, "{name}: peer id {id}"),
        }
        assert_eq!(
            godot3::sys(sys_kind, id)[..],
            data[..],
            "{name}: re-encoded differently"
        );
        return;
    }
    assert_eq!(header.kind, godot3::SYS_NONE, "{name}: {header:?}");
    // Data messages: the addressing the name says.
    match addressing {
        "to-server" => assert_eq!(header.to, 1, "{name}"),
        "to-all" => assert_eq!(header.to, 0, "{name}"),
        "to-all-but" => assert!(header.to < -1, "{name}: to {}", header.to),
        "to-peer" => assert!(header.to > 1, "{name}: to {}", header.to),
        other => panic!("{name}: unknown addressing {other:?}"),
    }
    if name.ends_with("_from-server") {
        assert_eq!(header.from, 1, "{name}");
    } else {
        assert!(header.from > 1, "{name}: from {}", header.from);
    }
    match kind {
        // RAW: wspeer decodes the user bytes, and its encoder gives Godot's bytes back.
        "raw" => {
            let user = godot3::parse_raw(payload)
                .unwrap_or_else(|e| panic!("{name}: wspeer refuses Godot's RAW packet: {e:?}"));
            assert_eq!(payload[0], godot3::CMD_RAW, "{name}");
            assert_eq!(
                godot3::raw(header.from, header.to, user)[..],
                data[..],
                "{name}: re-encoded differently"
            );
        }
        // RPCs, rsets and the path cache are relayed as they are, never decoded by wspeer:
        // its RAW decoder must say "not RAW" rather than take them for user bytes.
        "rpc" | "rset" | "simplify-path" | "confirm-path" => {
            let command = match kind {
                "rpc" => 0,
                "rset" => 1,
                "simplify-path" => 2,
                _ => 3,
            };
            assert_eq!(payload.first(), Some(&command), "{name}");
            assert!(godot3::parse_raw(payload).is_err(), "{name}: taken for RAW");
        }
        other => panic!("{name}: unknown kind {other:?}"),
    }
}

/// Every captured Godot 3 seed, checked once per process (a failure aborts the run).
fn check_godot3_captures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/multiplayer_packets");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the Godot 3 captures live there)", dir.display()));
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.expect("a readable seed directory");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("godot3-captured_") {
            let data = std::fs::read(entry.path()).expect("a readable seed");
            check_godot3(&name, &data);
            names.push(name);
        }
    }
    for kind in GODOT3_KINDS {
        assert!(
            names.iter().any(|n| n.split('_').any(|w| w == kind)),
            "no Godot 3 capture of kind {kind} in {} (re-capture: python3 tests/fuzz/capture.py --godot3)",
            dir.display()
        );
    }
}

fuzz_target!(init: check_godot3_captures(), |data: &[u8]| {
    if let Ok(id) = godot4::parse_id_message(data) {
        assert!(id >= 2);
        assert_eq!(godot4::id_message(id)[..], data[..]);
    }
    match scene::parse(data) {
        Ok(scene::Message::Raw(payload)) => {
            assert!(!payload.is_empty());
            // The command flags in the high bits are not kept by `raw`.
            assert_eq!(scene::raw(payload)[1..], data[1..]);
        }
        // Like Godot, only the low 3 bits of the first byte name the command.
        Ok(scene::Message::AddPeer(id)) => assert_eq!(scene::add_peer(id)[1..], data[1..6]),
        Ok(scene::Message::DelPeer(id)) => assert_eq!(scene::del_peer(id)[1..], data[1..6]),
        Ok(scene::Message::Relay { peer, inner }) => {
            assert!(!inner.is_empty());
            assert_eq!(scene::relay(peer, inner)[1..], data[1..]);
            // A relayed packet is parsed again by its receiver.
            let _ = scene::parse(inner);
        }
        Ok(scene::Message::Auth(_) | scene::Message::Other { .. }) | Err(_) => {}
    }
    if let Ok((header, payload)) = godot3::parse(data) {
        assert_eq!(godot3::message(header, payload)[..], data[..]);
        if let Ok(id) = godot3::sys_id(payload)
            && payload.len() == 4
        {
            assert_eq!(godot3::sys(header.kind, id)[9..], data[9..]);
        }
        if let Ok(user) = godot3::parse_raw(payload) {
            assert_eq!(godot3::raw(header.from, header.to, user)[1..], data[1..]);
        }
    }
});
