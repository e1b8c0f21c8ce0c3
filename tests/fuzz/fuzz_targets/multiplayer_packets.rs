//! The multiplayer layers' packet parsers (Godot 4 id message, SceneMultiplayer packets,
//! Godot 3 headers and RAW payloads) on arbitrary bytes: no panic, and every packet that
//! decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wspeer::multiplayer_wire::{godot3, godot4, scene};

fuzz_target!(|data: &[u8]| {
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
