//! `WebSocketMultiplayerPeer`: the Godot 4 and Godot 3 wire formats byte for byte, the
//! relay and peer announcements, targets, disconnects, limits and bad input.

#![allow(clippy::field_reassign_with_default)]

mod common;

use std::time::{Duration, Instant};

use common::multiplayer::{
    Node, cat, config, listening, next_message, tick, wait_for, wait_joined,
};
use common::pki_for;
use wspeer::multiplayer_wire::{godot3, godot4, scene};
use wspeer::*;

// ----- harness (the shared part is in common::multiplayer) -----

fn server_with(config: MultiplayerConfig) -> Node {
    let server = listening(WebSocketMultiplayerPeer::with_config(config));
    assert_eq!(
        server.peer.get_connection_status(),
        ConnectionStatus::Connected
    );
    assert_eq!(server.id(), 1);
    server
}

/// Shows that nothing more arrives, without sleeping: a marker goes from every connected
/// client to the server, then from the server to every connected client, each waited for.
/// A connection delivers in order, so once the markers are through, everything sent (or
/// relayed) before them has arrived too. `nodes[0]` is the server, and every node reads.
/// The markers are then removed from what the nodes received. `raws` are polled meanwhile.
fn settle(nodes: &mut [&mut Node], raws: &mut [&mut WebSocketPeer]) {
    const MARKER: &[u8] = b"settle: marker";
    let (server, clients) = nodes.split_first_mut().expect("a server");
    assert_eq!(server.id(), 1, "settle: nodes[0] is the server");
    assert!(server.read && clients.iter().all(|c| c.read));
    let mut clients: Vec<&mut Node> = clients
        .iter_mut()
        .map(|c| &mut **c)
        .filter(|c| c.peer.get_connection_status() == ConnectionStatus::Connected)
        .collect();
    let mut poll_all = |server: &mut Node, clients: &mut Vec<&mut Node>| {
        server.tick();
        for client in clients.iter_mut() {
            client.tick();
        }
        for raw in raws.iter_mut() {
            raw.poll();
        }
    };
    for client in clients.iter_mut() {
        client
            .peer
            .send_bytes(MARKER, 1)
            .expect("marker to the server");
    }
    let ids: Vec<i32> = clients.iter().map(|c| c.id()).collect();
    wait_for("markers at the server", || {
        poll_all(server, &mut clients);
        ids.iter().all(|id| server.got(*id, MARKER))
    });
    for id in &ids {
        server
            .peer
            .send_bytes(MARKER, *id)
            .expect("marker to a client");
    }
    wait_for("markers at the clients", || {
        poll_all(server, &mut clients);
        clients.iter().all(|c| c.got(1, MARKER))
    });
    server.packets.retain(|(_, d)| d != MARKER);
    for client in clients.iter_mut() {
        client.packets.retain(|(_, d)| d != MARKER);
    }
}

/// A client of `server` with `config`, polled until both sides report the connection.
fn join(server: &mut Node, config: MultiplayerConfig) -> Node {
    let mut client = Node::new(WebSocketMultiplayerPeer::with_config(config));
    client
        .peer
        .create_client(&server.url(), None)
        .expect("create_client");
    assert_eq!(
        client.peer.get_connection_status(),
        ConnectionStatus::Connecting
    );
    wait_joined(server, &mut client);
    client
}

/// A plain WebSocket client of `server`, polled until open.
fn raw_client(server: &mut Node) -> WebSocketPeer {
    let mut raw = WebSocketPeer::new();
    raw.connect_to_url(&server.url(), None).unwrap();
    wait_for("raw client open", || {
        tick(&mut [server]);
        raw.poll();
        raw.get_ready_state() == State::Open
    });
    raw
}

fn le(id: i32) -> [u8; 4] {
    id.to_le_bytes()
}

/// A client's first events, in the order its Godot reports them: SceneMultiplayer's
/// `_admit_peer(1)` emits `connected_to_server` first; Godot 3's `SYS_ADD(1)` handler
/// emits `peer_connected(1)` first.
fn joined(protocol: MultiplayerProtocol) -> [MultiplayerEvent; 2] {
    match protocol {
        MultiplayerProtocol::Godot3 => [
            MultiplayerEvent::PeerConnected(1),
            MultiplayerEvent::ConnectedToServer,
        ],
        _ => [
            MultiplayerEvent::ConnectedToServer,
            MultiplayerEvent::PeerConnected(1),
        ],
    }
}

/// A client's last events when its established connection ends: Godot 4's transport
/// reports peer 1 gone, then SceneMultiplayer `server_disconnected`; Godot 3's client
/// reports no peer. Nobody reports the other clients one by one.
fn ended(protocol: MultiplayerProtocol) -> &'static [MultiplayerEvent] {
    match protocol {
        MultiplayerProtocol::Godot3 => &[MultiplayerEvent::ServerDisconnected],
        _ => &[
            MultiplayerEvent::PeerDisconnected(1),
            MultiplayerEvent::ServerDisconnected,
        ],
    }
}

const PROTOCOLS: [MultiplayerProtocol; 3] = [
    MultiplayerProtocol::Godot4,
    MultiplayerProtocol::Godot4Transport,
    MultiplayerProtocol::Godot3,
];

// ----- golden bytes (godot-websocket.md §2.4, §3.2, §3.3) -----

#[test]
fn golden_bytes_of_every_message_kind() {
    let a = 0x1C04BEB6; // the id in the reference's examples
    // Godot 4 transport: the id message.
    assert_eq!(godot4::id_message(a), [0xb6, 0xbe, 0x04, 0x1c]);
    assert_eq!(godot4::parse_id_message(&[0xb6, 0xbe, 0x04, 0x1c]), Ok(a));
    // SceneMultiplayer: RAW, announcements, and "client 1234 sends RAW hi to client 5678".
    assert_eq!(scene::raw(b"hi"), [0x03, 0x68, 0x69]);
    assert_eq!(scene::add_peer(a), [0x07, 0x01, 0xb6, 0xbe, 0x04, 0x1c]);
    assert_eq!(scene::del_peer(a), [0x07, 0x02, 0xb6, 0xbe, 0x04, 0x1c]);
    let to_server = scene::relay(5678, &scene::raw(b"hi"));
    assert_eq!(
        to_server,
        [0x07, 0x03, 0x2e, 0x16, 0x00, 0x00, 0x03, 0x68, 0x69]
    );
    let to_client = scene::relay(1234, &scene::raw(b"hi"));
    assert_eq!(
        to_client,
        [0x07, 0x03, 0xd2, 0x04, 0x00, 0x00, 0x03, 0x68, 0x69]
    );
    assert_eq!(
        scene::parse(&to_server),
        Ok(scene::Message::Relay {
            peer: 5678,
            inner: &[0x03, 0x68, 0x69]
        })
    );
    assert_eq!(
        scene::parse(&[0x07, 0x01, 0xb6, 0xbe, 0x04, 0x1c]),
        Ok(scene::Message::AddPeer(a))
    );
    assert_eq!(
        scene::parse(&[0x07, 0x02, 0x02, 0, 0, 0]),
        Ok(scene::Message::DelPeer(2))
    );
    assert_eq!(
        scene::parse(&[0x03, 0xaa]),
        Ok(scene::Message::Raw(&[0xaa]))
    );
    assert_eq!(
        scene::parse(&[0x00, 0x01]),
        Ok(scene::Message::Other { command: 0 })
    );
    assert_eq!(scene::parse(&[0x07, 0x00]), Ok(scene::Message::Auth(&[])));

    // Godot 3 (observed with 3.2.3): SYS_ID, SYS_ADD(1), RAW to A, SYS_DEL, client A to B.
    let sys_id = [0x03, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xb6, 0xbe, 0x04, 0x1c];
    assert_eq!(godot3::sys(godot3::SYS_ID, a), sys_id);
    assert_eq!(
        godot3::sys(godot3::SYS_ADD, 1),
        [0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0]
    );
    assert_eq!(
        godot3::sys(godot3::SYS_DEL, 0x0203_0405),
        [0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x04, 0x03, 0x02]
    );
    assert_eq!(
        godot3::raw(1, a, &[0xaa, 0xbb]),
        [
            0x00, 0x01, 0, 0, 0, 0xb6, 0xbe, 0x04, 0x1c, 0x04, 0xaa, 0xbb
        ]
    );
    let b = 0x0102_0304;
    let a_to_b = cat(&[&[0x00], &le(a), &le(b), &[0x04, 0x33]]);
    assert_eq!(godot3::raw(a, b, &[0x33]), a_to_b);
    let (header, payload) = godot3::parse(&a_to_b).unwrap();
    assert_eq!(
        header,
        godot3::Header {
            kind: godot3::SYS_NONE,
            from: a,
            to: b
        }
    );
    assert_eq!(godot3::parse_raw(payload), Ok(&[0x33][..]));
    let (header, payload) = godot3::parse(&sys_id).unwrap();
    assert_eq!(
        (header.kind, header.from, header.to),
        (godot3::SYS_ID, 1, 0)
    );
    assert_eq!(godot3::sys_id(payload), Ok(a));
}

#[test]
fn malformed_messages_are_rejected_by_the_decoders() {
    for bad in [
        &[][..],
        &[0x03],
        &[0x07],
        &[0x07, 0x01, 0x02],
        &[0x07, 0x03, 2, 0, 0, 0],
        &[0x07, 0x09, 2, 0, 0, 0],
    ] {
        assert!(scene::parse(bad).is_err(), "{bad:?} accepted");
    }
    for bad in [
        &[1u8, 2, 3][..],
        &[2, 0, 0, 0, 0],
        &[1, 0, 0, 0],
        &[0, 0, 0, 0],
        &[0xff, 0xff, 0xff, 0xff],
    ] {
        assert!(godot4::parse_id_message(bad).is_err(), "{bad:?} accepted");
    }
    assert!(godot3::parse(&[0; 8]).is_err());
    assert!(godot3::sys_id(&[1, 2]).is_err());
    for bad in [&[][..], &[0x04], &[0x00, 0x01], &[0x03, 0x01]] {
        assert!(godot3::parse_raw(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn godot4_server_bytes_on_the_wire() {
    let mut server = server_with(MultiplayerConfig::default());
    let mut a = raw_client(&mut server);
    // The first message is the id, 4 bytes little-endian, and matches peer_connected.
    let id_a = i32::from_le_bytes(next_message(&mut a, &mut [&mut server]).try_into().unwrap());
    assert!(id_a >= 2);
    assert_eq!(server.events, [MultiplayerEvent::PeerConnected(id_a)]);

    let mut b = raw_client(&mut server);
    let id_b = i32::from_le_bytes(next_message(&mut b, &mut [&mut server]).try_into().unwrap());
    // Each side learns about the other.
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        scene::add_peer(id_b)
    );
    assert_eq!(
        next_message(&mut b, &mut [&mut server]),
        scene::add_peer(id_a)
    );

    // A relays RAW "hi" to B: the destination becomes the source.
    a.put_packet(&cat(&[&[0x07, 0x03], &le(id_b), &[0x03, 0x68, 0x69]]))
        .unwrap();
    assert_eq!(
        next_message(&mut b, &mut [&mut server]),
        cat(&[&[0x07, 0x03], &le(id_a), &[0x03, 0x68, 0x69]])
    );
    // Direct packets to the server are unwrapped RAW; the server's own are `[03 ...]`.
    a.put_packet(&[0x03, 0x68, 0x69]).unwrap();
    wait_for("server gets hi", || {
        tick(&mut [&mut server]);
        a.poll();
        server.got(id_a, b"hi")
    });
    server.peer.send_bytes(b"yo", id_a).unwrap();
    assert_eq!(next_message(&mut a, &mut [&mut server]), [0x03, b'y', b'o']);
    server.peer.send_bytes(b"all", 0).unwrap();
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        [0x03, b'a', b'l', b'l']
    );
    assert_eq!(
        next_message(&mut b, &mut [&mut server]),
        [0x03, b'a', b'l', b'l']
    );

    // A broadcast relay reaches B (wrapped) and the server (as A's packet).
    a.put_packet(&cat(&[&[0x07, 0x03], &le(0), &[0x03, 0x42]]))
        .unwrap();
    assert_eq!(
        next_message(&mut b, &mut [&mut server]),
        cat(&[&[0x07, 0x03], &le(id_a), &[0x03, 0x42]])
    );
    wait_for("server gets the broadcast", || {
        tick(&mut [&mut server]);
        server.got(id_a, &[0x42])
    });
    assert!(!server.got(id_b, &[0x42]));

    // B leaves: A is told `[07 02 id_b]`.
    b.close(1000, "").unwrap();
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        scene::del_peer(id_b)
    );
    assert!(
        server
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(id_b))
    );
    assert_eq!(server.peer.peer_ids(), [id_a]);
}

#[test]
fn godot3_server_bytes_on_the_wire() {
    let mut server = server_with(config(MultiplayerProtocol::Godot3));
    let mut a = raw_client(&mut server);
    let first = next_message(&mut a, &mut [&mut server]);
    assert_eq!(first.len(), godot3::SYS_LEN);
    let id_a = i32::from_le_bytes(first[9..13].try_into().unwrap());
    assert_eq!(first, godot3::sys(godot3::SYS_ID, id_a));
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        [0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0]
    );
    assert_eq!(server.events, [MultiplayerEvent::PeerConnected(id_a)]);

    let mut b = raw_client(&mut server);
    let id_b = {
        let first = next_message(&mut b, &mut [&mut server]);
        i32::from_le_bytes(first[9..13].try_into().unwrap())
    };
    assert_eq!(
        next_message(&mut b, &mut [&mut server]),
        godot3::sys(godot3::SYS_ADD, 1)
    );
    // The new peer to the old, the old to the new.
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        godot3::sys(godot3::SYS_ADD, id_b)
    );
    assert_eq!(
        next_message(&mut b, &mut [&mut server]),
        godot3::sys(godot3::SYS_ADD, id_a)
    );

    // A → B is relayed byte-identical; a forged `from` is dropped.
    let a_to_b = godot3::raw(id_a, id_b, &[0x33]);
    a.put_packet(&godot3::raw(id_b, id_b, &[0x66])).unwrap();
    a.put_packet(&a_to_b).unwrap();
    assert_eq!(next_message(&mut b, &mut [&mut server]), a_to_b);
    assert_eq!(server.peer.dropped_packets(), 1);
    // A → everyone reaches B and the server.
    let a_to_all = godot3::raw(id_a, 0, &[0x44]);
    a.put_packet(&a_to_all).unwrap();
    assert_eq!(next_message(&mut b, &mut [&mut server]), a_to_all);
    wait_for("server gets the broadcast", || {
        tick(&mut [&mut server]);
        server.got(id_a, &[0x44])
    });
    // The server's own RAW packet: from 1, to as targeted.
    server.peer.send_bytes(&[0xaa, 0xbb], id_a).unwrap();
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        godot3::raw(1, id_a, &[0xaa, 0xbb])
    );

    // B vanishes: A gets SYS_DEL(B).
    b.close(-1, "").unwrap();
    assert_eq!(
        next_message(&mut a, &mut [&mut server]),
        godot3::sys(godot3::SYS_DEL, id_b)
    );
}

#[test]
fn godot4_transport_adds_nothing_to_packets() {
    let mut server = server_with(config(MultiplayerProtocol::Godot4Transport));
    let mut a = raw_client(&mut server);
    let id_a = i32::from_le_bytes(next_message(&mut a, &mut [&mut server]).try_into().unwrap());
    let mut b = raw_client(&mut server);
    let id_b = i32::from_le_bytes(next_message(&mut b, &mut [&mut server]).try_into().unwrap());
    // No announcements, no relay: bytes go to the server exactly as sent, and back.
    a.put_packet(&[0x07, 0x03, 0, 0, 0, 0, 0x03, 0x01]).unwrap();
    wait_for("server gets the bytes unchanged", || {
        tick(&mut [&mut server]);
        a.poll();
        server.got(id_a, &[0x07, 0x03, 0, 0, 0, 0, 0x03, 0x01])
    });
    server.peer.send_bytes(&[], id_b).unwrap();
    server.peer.send_bytes(&[9, 8], 0).unwrap();
    assert_eq!(next_message(&mut b, &mut [&mut server]), [0u8; 0]);
    assert_eq!(next_message(&mut b, &mut [&mut server]), [9, 8]);
    assert_eq!(next_message(&mut a, &mut [&mut server]), [9, 8]);

    // A transport client sends everything to the server, whatever the target.
    let mut client = join(&mut server, config(MultiplayerProtocol::Godot4Transport));
    client.peer.send_bytes(&[1, 2, 3], id_a).unwrap();
    let id_c = client.id();
    wait_for("server gets the client's bytes", || {
        tick(&mut [&mut server, &mut client]);
        server.got(id_c, &[1, 2, 3])
    });
    assert_eq!(
        client.events,
        [
            MultiplayerEvent::ConnectedToServer,
            MultiplayerEvent::PeerConnected(1)
        ]
    );
}

// ----- relay and announcements between wspeer peers -----

/// Three clients of one server exchange packets with every kind of target.
fn relay_between_clients(protocol: MultiplayerProtocol) {
    let mut server = server_with(config(protocol));
    let mut a = join(&mut server, config(protocol));
    let mut b = join(&mut server, config(protocol));
    let mut c = join(&mut server, config(protocol));
    let (ia, ib, ic) = (a.id(), b.id(), c.id());
    assert!(ia >= 2 && ib >= 2 && ic >= 2);
    assert!(ia != ib && ib != ic && ia != ic);
    wait_for("everyone announced", || {
        tick(&mut [&mut server, &mut a, &mut b, &mut c]);
        a.peer.peer_ids().len() == 3 && b.peer.peer_ids().len() == 3
    });
    // Events in order: a learns about b, then c; c learns about the earlier ones.
    let mut a_expected = joined(protocol).to_vec();
    a_expected.extend([
        MultiplayerEvent::PeerConnected(ib),
        MultiplayerEvent::PeerConnected(ic),
    ]);
    assert_eq!(a.events, a_expected);
    let mut c_sees: Vec<i32> = c.events[2..]
        .iter()
        .map(|e| match e {
            MultiplayerEvent::PeerConnected(id) => *id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    c_sees.sort();
    let mut expected = vec![ia, ib];
    expected.sort();
    assert_eq!(c_sees, expected);
    assert_eq!(server.peer.peer_ids(), {
        let mut clients = vec![ia, ib, ic];
        clients.sort();
        clients
    });

    // To one client.
    a.peer.send_bytes(b"to b", ib).unwrap();
    // To everyone.
    a.peer.send_bytes(b"to all", 0).unwrap();
    // To everyone but b.
    a.peer.send_bytes(b"not b", -ib).unwrap();
    // To every client (everyone but the server).
    a.peer.send_bytes(b"not server", -1).unwrap();
    wait_for("the client's packets delivered", || {
        tick(&mut [&mut server, &mut a, &mut b, &mut c]);
        b.packets.len() == 3 && c.packets.len() == 3 && server.packets.len() == 2
    });
    // From the server, to everyone but a.
    server.peer.send_bytes(b"server not a", -ia).unwrap();
    wait_for("the server's packet delivered", || {
        tick(&mut [&mut server, &mut a, &mut b, &mut c]);
        b.packets.len() == 4 && c.packets.len() == 4
    });
    settle(&mut [&mut server, &mut a, &mut b, &mut c], &mut []);
    let texts = |node: &Node| -> Vec<(i32, String)> {
        node.packets
            .iter()
            .map(|(from, data)| (*from, String::from_utf8(data.clone()).unwrap()))
            .collect()
    };
    let s = |t: &str| t.to_string();
    assert_eq!(
        texts(&b),
        [
            (ia, s("to b")),
            (ia, s("to all")),
            (ia, s("not server")),
            (1, s("server not a"))
        ]
    );
    assert_eq!(
        texts(&c),
        [
            (ia, s("to all")),
            (ia, s("not b")),
            (ia, s("not server")),
            (1, s("server not a"))
        ]
    );
    assert_eq!(texts(&server), [(ia, s("to all")), (ia, s("not b"))]);
    assert!(a.packets.is_empty(), "{:?}", a.packets);

    // b leaves: a and c are told, the server reports it; b itself is told only that its
    // connection ended, not about a and c one by one.
    b.peer.disconnect_peer(1, false).unwrap();
    wait_for("b's departure announced", || {
        tick(&mut [&mut server, &mut a, &mut b, &mut c]);
        a.events.contains(&MultiplayerEvent::PeerDisconnected(ib))
            && c.events.contains(&MultiplayerEvent::PeerDisconnected(ib))
            && server
                .events
                .contains(&MultiplayerEvent::PeerDisconnected(ib))
    });
    let mut b_expected = joined(protocol).to_vec();
    b_expected.push(MultiplayerEvent::PeerConnected(ia));
    b_expected.push(MultiplayerEvent::PeerConnected(ic));
    b_expected.extend_from_slice(ended(protocol));
    assert_eq!(b.events, b_expected);
    assert!(b.peer.peer_ids().is_empty());
    assert!(matches!(
        a.peer.send_bytes(b"gone", ib),
        Err(Error::PeerNotFound(id)) if id == ib
    ));
    assert_eq!(server.peer.dropped_packets(), 0);
}

#[test]
fn godot4_clients_relay_through_the_server() {
    relay_between_clients(MultiplayerProtocol::Godot4);
}

#[test]
fn godot3_clients_relay_through_the_server() {
    relay_between_clients(MultiplayerProtocol::Godot3);
}

fn relay_off(protocol: MultiplayerProtocol) {
    let mut server_config = config(protocol);
    server_config.server_relay = false;
    let mut server = server_with(server_config);
    assert!(!server.peer.is_server_relay_enabled());
    let mut a = join(&mut server, config(protocol));
    let mut b = join(&mut server, config(protocol));
    let mut raw = raw_client(&mut server);
    settle(&mut [&mut server, &mut a, &mut b], &mut [&mut raw]);
    // Nobody is told about anybody but the server.
    assert_eq!(a.events, joined(protocol));
    assert_eq!(a.peer.peer_ids(), [1]);
    assert!(matches!(
        a.peer.send_bytes(b"x", b.id()),
        Err(Error::PeerNotFound(_))
    ));
    // A broadcast reaches the server only; "everyone but the server" reaches nobody.
    a.peer.send_bytes(b"all", 0).unwrap();
    a.peer.send_bytes(b"clients", -1).unwrap();
    // A hand-made relay to b is dropped.
    let (ia, ib) = (a.id(), b.id());
    let raw_id = *server
        .peer
        .peer_ids()
        .iter()
        .find(|&&id| id != ia && id != ib)
        .unwrap();
    let forged_relay = match protocol {
        MultiplayerProtocol::Godot3 => godot3::raw(raw_id, ib, b"sneaky"),
        _ => scene::relay(ib, &scene::raw(b"sneaky")),
    };
    raw.put_packet(&forged_relay).unwrap();
    wait_for("server gets the broadcast", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        raw.poll();
        server.got(ia, b"all") && server.peer.dropped_packets() == 2
    });
    settle(&mut [&mut server, &mut a, &mut b], &mut [&mut raw]);
    assert!(b.packets.is_empty(), "{:?}", b.packets);
    assert_eq!(server.packets.len(), 1);
    // Departures are not announced either.
    a.peer.close();
    wait_for("server sees a leave", || {
        tick(&mut [&mut server, &mut b]);
        server
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(ia))
    });
    settle(&mut [&mut server, &mut b], &mut []);
    assert!(!b.events.contains(&MultiplayerEvent::PeerDisconnected(ia)));
}

#[test]
fn godot4_relay_off_hides_clients_from_each_other() {
    relay_off(MultiplayerProtocol::Godot4);
}

#[test]
fn godot3_relay_off_hides_clients_from_each_other() {
    relay_off(MultiplayerProtocol::Godot3);
}

/// A client whose own connection ends hears only about the server, in Godot's order: the
/// other clients it knew are forgotten without an event each.
#[test]
fn a_client_whose_connection_ends_reports_only_the_server() {
    for protocol in PROTOCOLS {
        let mut server = server_with(config(protocol));
        let mut a = join(&mut server, config(protocol));
        let mut b = join(&mut server, config(protocol));
        let (ia, ib) = (a.id(), b.id());
        settle(&mut [&mut server, &mut a, &mut b], &mut []);
        let announced = protocol != MultiplayerProtocol::Godot4Transport;
        let mut b_expected = joined(protocol).to_vec();
        if announced {
            b_expected.push(MultiplayerEvent::PeerConnected(ia));
        }
        assert_eq!(b.events, b_expected, "{protocol:?}");

        // The server closes b's connection; a is told b left.
        server.peer.disconnect_peer(ib, false).unwrap();
        wait_for("b's connection ended", || {
            tick(&mut [&mut server, &mut a, &mut b]);
            b.events.contains(&MultiplayerEvent::ServerDisconnected)
                && (!announced || a.events.contains(&MultiplayerEvent::PeerDisconnected(ib)))
        });
        b_expected.extend_from_slice(ended(protocol));
        assert_eq!(b.events, b_expected, "{protocol:?}");
        assert!(b.peer.peer_ids().is_empty());

        // The server vanishes: a's connection is lost.
        server.peer.close();
        wait_for("a's connection lost", || {
            tick(&mut [&mut a]);
            a.events.contains(&MultiplayerEvent::ServerDisconnected)
        });
        let mut a_expected = joined(protocol).to_vec();
        if announced {
            a_expected.extend([
                MultiplayerEvent::PeerConnected(ib),
                MultiplayerEvent::PeerDisconnected(ib),
            ]);
        }
        a_expected.extend_from_slice(ended(protocol));
        assert_eq!(a.events, a_expected, "{protocol:?}");
        assert_eq!(
            a.peer.get_connection_status(),
            ConnectionStatus::Disconnected
        );
    }
}

/// `get_max_packet_size` is Godot's number and a promise: a packet that size goes through
/// from the server, from a client to the server, and from a client to another through the
/// relay. It is the exact cap only for Godot 3; Godot 4's number leaves room.
#[test]
fn max_packet_size_fits_every_role_and_target() {
    const BUFFER: usize = 3000;
    for protocol in PROTOCOLS {
        let mut both = config(protocol);
        both.websocket.peer.outbound_buffer_size = BUFFER;
        both.websocket.peer.inbound_buffer_size = BUFFER;
        let mut server = server_with(both.clone());
        let mut a = join(&mut server, both.clone());
        let mut b = join(&mut server, both.clone());
        let (ia, ib) = (a.id(), b.id());
        settle(&mut [&mut server, &mut a, &mut b], &mut []);
        let max = server.peer.get_max_packet_size();
        let expected = match protocol {
            MultiplayerProtocol::Godot3 => BUFFER - 10,
            _ => BUFFER - 9,
        };
        assert_eq!(max, expected, "{protocol:?}");
        assert_eq!(a.peer.get_max_packet_size(), max, "{protocol:?}");

        let packet = vec![0x5A; max];
        let relays = protocol != MultiplayerProtocol::Godot4Transport;
        server.peer.send_bytes(&packet, ia).unwrap();
        a.peer.send_bytes(&packet, 1).unwrap();
        if relays {
            a.peer.send_bytes(&packet, ib).unwrap();
        }
        wait_for("max-size packets delivered", || {
            tick(&mut [&mut server, &mut a, &mut b]);
            a.got(1, &packet) && server.got(ia, &packet) && (!relays || b.got(ia, &packet))
        });
        settle(&mut [&mut server, &mut a, &mut b], &mut []);

        let bigger = vec![0x5A; max + 1];
        let from_server = server.peer.send_bytes(&bigger, ia);
        let from_client = a.peer.send_bytes(&bigger, 1);
        match protocol {
            MultiplayerProtocol::Godot3 => {
                for result in [from_server, from_client] {
                    assert!(
                        matches!(result, Err(Error::MessageTooLarge { .. })),
                        "{result:?}"
                    );
                }
            }
            _ => {
                from_server.unwrap();
                from_client.unwrap();
                // The real cap is the buffer itself.
                let too_big = vec![0x5A; BUFFER + 1];
                assert!(matches!(
                    server.peer.send_bytes(&too_big, ia),
                    Err(Error::MessageTooLarge { .. })
                ));
            }
        }
        assert_eq!(server.peer.dropped_packets(), 0, "{protocol:?}");
        assert_eq!(b.peer.dropped_packets(), 0, "{protocol:?}");
    }
}

#[test]
fn generate_unique_id_is_random_in_godots_range() {
    let peer = WebSocketMultiplayerPeer::new();
    let ids: Vec<i32> = (0..200).map(|_| peer.generate_unique_id()).collect();
    assert!(ids.iter().all(|&id| id >= 2), "{ids:?}");
    let distinct: std::collections::HashSet<i32> = ids.iter().copied().collect();
    // 200 draws from 2^31 ids repeat one with probability 1e-5.
    assert!(distinct.len() >= 199, "{ids:?}");
}

// ----- API -----

#[test]
fn targets_settings_and_errors() {
    let mut idle = WebSocketMultiplayerPeer::new();
    assert_eq!(idle.get_connection_status(), ConnectionStatus::Disconnected);
    assert_eq!(idle.get_unique_id(), 0);
    assert!(matches!(idle.put_packet(b"x"), Err(Error::NotOpen)));
    assert!(matches!(
        idle.disconnect_peer(2, false),
        Err(Error::NotOpen)
    ));
    assert!(idle.get_packet().is_none() && idle.get_packet_peer().is_none());
    assert!(idle.set_handshake_timeout(Duration::ZERO).is_err());
    idle.set_handshake_timeout(Duration::from_millis(1500))
        .unwrap();
    assert_eq!(idle.get_handshake_timeout(), Duration::from_millis(1500));
    // Transfer mode and channel are accepted and kept; packets are always reliable, ch 0.
    assert_eq!(idle.get_transfer_mode(), TransferMode::Reliable);
    idle.set_transfer_mode(TransferMode::Unreliable);
    idle.set_transfer_channel(3);
    assert_eq!(idle.get_transfer_mode(), TransferMode::Unreliable);
    assert_eq!(idle.get_transfer_channel(), 3);
    assert_eq!(idle.get_packet_mode(), TransferMode::Reliable);
    assert_eq!(idle.get_packet_channel(), 0);
    assert!(idle.is_server_relay_supported());
    assert_eq!(idle.get_target_peer(), TARGET_PEER_BROADCAST);
    idle.set_supported_protocols(&[" ludus "]);
    assert_eq!(idle.get_supported_protocols(), ["ludus"]);
    idle.set_handshake_headers(&["X-Game: dice"]);
    assert_eq!(idle.get_handshake_headers(), ["X-Game: dice"]);
    idle.set_inbound_buffer_size(1000);
    idle.set_outbound_buffer_size(2000);
    idle.set_max_queued_packets(7);
    idle.set_heartbeat_interval(Duration::from_secs(5));
    assert_eq!(
        (
            idle.get_inbound_buffer_size(),
            idle.get_outbound_buffer_size(),
            idle.get_max_queued_packets(),
            idle.get_heartbeat_interval()
        ),
        (1000, 2000, 7, Duration::from_secs(5))
    );
    // Godot 4's number (outbound_buffer_size - 9); Godot 3: the header and the RAW byte.
    assert_eq!(idle.get_max_packet_size(), 2000 - 9);
    idle.config_mut().protocol = MultiplayerProtocol::Godot3;
    assert_eq!(idle.get_max_packet_size(), 2000 - 10);
    // Zero limits are refused before any I/O.
    idle.config_mut().max_inbound_packets = 0;
    assert!(matches!(
        idle.create_server(0, "127.0.0.1", None),
        Err(Error::InvalidConfig(_))
    ));

    let mut server = server_with(MultiplayerConfig::default());
    assert_eq!(server.peer.get_max_packet_size(), 65535 - 9);
    assert!(matches!(
        server.peer.create_server(0, "127.0.0.1", None),
        Err(Error::AlreadyInUse)
    ));
    assert!(matches!(
        server.peer.create_client("ws://127.0.0.1:1/", None),
        Err(Error::AlreadyInUse)
    ));
    let mut client = join(&mut server, MultiplayerConfig::default());
    let id = client.id();
    // Unknown peers, the server itself, empty packets.
    assert!(matches!(
        server.peer.send_bytes(b"x", 12345),
        Err(Error::PeerNotFound(12345))
    ));
    assert!(matches!(
        server.peer.send_bytes(b"x", 1),
        Err(Error::PeerNotFound(1))
    ));
    assert!(matches!(
        server.peer.send_bytes(b"", id),
        Err(Error::InvalidPacket(_))
    ));
    assert!(matches!(
        client.peer.send_bytes(b"x", 12345),
        Err(Error::PeerNotFound(12345))
    ));
    assert!(matches!(
        server.peer.disconnect_peer(12345, false),
        Err(Error::PeerNotFound(_))
    ));
    assert!(matches!(
        client.peer.disconnect_peer(id, false),
        Err(Error::PeerNotFound(_))
    ));
    // Too large for the outbound buffer.
    let big = vec![7u8; 70_000];
    assert!(matches!(
        server.peer.send_bytes(&big, id),
        Err(Error::MessageTooLarge { .. })
    ));
    // set_target_peer / put_packet / get_packet_peer, and send_bytes keeps the target.
    client.peer.set_target_peer(1);
    client.peer.put_packet(b"one").unwrap();
    client.peer.send_bytes(b"two", 0).unwrap();
    assert_eq!(client.peer.get_target_peer(), 1);
    server.read = false;
    wait_for("two packets", || {
        tick(&mut [&mut server, &mut client]);
        server.peer.get_available_packet_count() == 2
    });
    assert_eq!(server.peer.get_packet_peer(), Some(id));
    assert_eq!(server.peer.get_packet().unwrap(), b"one");
    assert_eq!(server.peer.recv(), Some((id, b"two".to_vec())));
    assert_eq!(server.peer.get_available_packet_count(), 0);
    // Address and port of a peer, both ways.
    let client_port = server.peer.get_peer_port(id).unwrap();
    assert_eq!(
        server.peer.get_peer_address(id),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_ne!(client_port, 0);
    assert_eq!(
        client.peer.get_peer_port(1),
        Some(server.peer.local_addr().unwrap().port())
    );
    assert_eq!(client.peer.get_peer_address(7), None);
    assert_eq!(
        client.peer.get_peer(1).unwrap().get_ready_state(),
        State::Open
    );
    assert_eq!(
        server.peer.get_peer(id).unwrap().get_connected_port(),
        client_port
    );
    assert!(server.peer.get_peer(12345).is_none());
}

#[test]
fn sub_protocol_headers_and_wss() {
    let pki = pki_for(&["127.0.0.1"]);
    let mut server_config = MultiplayerConfig::default();
    server_config.websocket.peer.supported_protocols = vec!["ludus".into()];
    let mut server = WebSocketMultiplayerPeer::with_config(server_config);
    server
        .create_server(0, "127.0.0.1", Some(pki.server_options()))
        .unwrap();
    let mut server = Node::new(server);
    let url = format!("wss://{}/", server.peer.local_addr().unwrap());
    let mut client = WebSocketMultiplayerPeer::new();
    client.set_supported_protocols(&["other", "ludus"]);
    client.set_handshake_headers(&["X-Player: dice"]);
    client
        .create_client(&url, Some(pki.client_options()))
        .unwrap();
    let mut client = Node::new(client);
    wait_for("wss client connected", || {
        tick(&mut [&mut server, &mut client]);
        client.events.contains(&MultiplayerEvent::ConnectedToServer)
    });
    let id = client.id();
    assert_eq!(
        client.peer.get_peer(1).unwrap().get_selected_protocol(),
        "ludus"
    );
    let request = server
        .peer
        .get_peer(id)
        .unwrap()
        .get_handshake_request()
        .unwrap()
        .clone();
    assert_eq!(request.header("x-player"), Some("dice"));

    // A client without the sub-protocol is refused: connection_failed.
    let mut stranger = Node::new(WebSocketMultiplayerPeer::new());
    stranger
        .peer
        .create_client(&url, Some(pki.client_options()))
        .unwrap();
    wait_for("stranger refused", || {
        tick(&mut [&mut server, &mut stranger]);
        stranger
            .events
            .contains(&MultiplayerEvent::ConnectionFailed)
    });
    assert_eq!(
        stranger.peer.get_connection_status(),
        ConnectionStatus::Disconnected
    );
    assert!(stranger.peer.get_last_error().is_some());
}

#[test]
fn disconnect_peer_without_force_reports_after_the_next_poll() {
    let mut server = server_with(MultiplayerConfig::default());
    let mut a = join(&mut server, MultiplayerConfig::default());
    let mut b = join(&mut server, MultiplayerConfig::default());
    let (ia, ib) = (a.id(), b.id());
    server.events.clear();
    server.peer.disconnect_peer(ia, false).unwrap();
    assert!(server.peer.pop_event().is_none());
    wait_for("a gone everywhere", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        a.events.contains(&MultiplayerEvent::ServerDisconnected)
            && b.events.contains(&MultiplayerEvent::PeerDisconnected(ia))
    });
    assert_eq!(server.events, [MultiplayerEvent::PeerDisconnected(ia)]);
    assert_eq!(
        a.peer.get_connection_status(),
        ConnectionStatus::Disconnected
    );
    assert_eq!(a.peer.get_unique_id(), 0);
    // The closed socket stays readable: the server closed with 1000.
    assert_eq!(a.peer.get_peer(1).unwrap().get_close_code(), 1000);
    assert_eq!(server.peer.peer_ids(), [ib]);
}

#[test]
fn disconnect_peer_with_force_reports_nothing_but_others_learn_it() {
    let mut server = server_with(MultiplayerConfig::default());
    let mut a = join(&mut server, MultiplayerConfig::default());
    let mut b = join(&mut server, MultiplayerConfig::default());
    let (ia, ib) = (a.id(), b.id());
    server.events.clear();
    server.peer.disconnect_peer(ia, true).unwrap();
    assert_eq!(server.peer.peer_ids(), [ib]);
    assert!(server.peer.get_peer(ia).is_none());
    wait_for("a gone everywhere", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        a.events.contains(&MultiplayerEvent::ServerDisconnected)
            && b.events.contains(&MultiplayerEvent::PeerDisconnected(ia))
    });
    settle(&mut [&mut server, &mut a, &mut b], &mut []);
    assert!(server.events.is_empty(), "{:?}", server.events);

    // A client forcing its own disconnect: no events, disconnected at once; the server
    // notices through the close.
    b.events.clear();
    b.peer.disconnect_peer(1, true).unwrap();
    assert_eq!(
        b.peer.get_connection_status(),
        ConnectionStatus::Disconnected
    );
    assert!(matches!(b.peer.send_bytes(b"x", 1), Err(Error::NotOpen)));
    wait_for("server sees b leave", || {
        tick(&mut [&mut server, &mut b]);
        server
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(ib))
    });
    assert!(b.events.is_empty(), "{:?}", b.events);
    assert!(matches!(
        b.peer.disconnect_peer(1, false),
        Err(Error::NotOpen)
    ));
}

#[test]
fn close_drops_everything_without_events() {
    let mut server = server_with(MultiplayerConfig::default());
    let mut a = join(&mut server, MultiplayerConfig::default());
    let mut b = join(&mut server, MultiplayerConfig::default());
    a.peer.send_bytes(b"unread", 1).unwrap();
    server.read = false;
    wait_for("packet queued", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        server.peer.get_available_packet_count() == 1
    });
    server.events.clear();
    server.peer.close();
    assert_eq!(
        server.peer.get_connection_status(),
        ConnectionStatus::Disconnected
    );
    assert_eq!(server.peer.get_available_packet_count(), 0);
    assert!(server.peer.pop_event().is_none());
    assert!(server.peer.local_addr().is_none());
    wait_for("clients see the server go", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        a.events.contains(&MultiplayerEvent::ServerDisconnected)
            && b.events.contains(&MultiplayerEvent::ServerDisconnected)
    });
    assert!(server.events.is_empty());
    // A closed peer can start again.
    server.peer.create_server(0, "127.0.0.1", None).unwrap();
    let mut c = join(&mut server, MultiplayerConfig::default());
    c.peer.close();
    assert_eq!(
        c.peer.get_connection_status(),
        ConnectionStatus::Disconnected
    );
    assert!(c.peer.pop_event().is_none());
}

#[test]
fn refused_and_unreachable_servers_fail_the_connection() {
    let mut server = server_with(MultiplayerConfig::default());
    server.peer.set_refuse_new_connections(true);
    assert!(server.peer.is_refusing_new_connections());
    let mut client = Node::new(WebSocketMultiplayerPeer::new());
    client.peer.create_client(&server.url(), None).unwrap();
    wait_for("refused", || {
        tick(&mut [&mut server, &mut client]);
        client.events.contains(&MultiplayerEvent::ConnectionFailed)
    });
    assert!(server.events.is_empty());
    assert_eq!(client.events, [MultiplayerEvent::ConnectionFailed]);

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut lost = Node::new(WebSocketMultiplayerPeer::new());
    lost.peer
        .create_client(&format!("ws://127.0.0.1:{port}/"), None)
        .unwrap();
    wait_for("connection refused", || {
        tick(&mut [&mut lost]);
        lost.events == [MultiplayerEvent::ConnectionFailed]
    });
    assert!(matches!(
        lost.peer.get_last_error(),
        Some(Error::Connect(_))
    ));
}

/// A plain WebSocket server standing in for a misbehaving multiplayer server.
fn fake_server() -> (WebSocketServer, String) {
    let server = common::server();
    let url = common::url(&server, "/");
    (server, url)
}

fn poll_fake(server: &mut WebSocketServer) -> Option<i32> {
    server.poll();
    let mut joined = None;
    while let Some(event) = server.pop_event() {
        if let ServerEvent::ClientConnected { id, .. } = event {
            joined = Some(id);
        }
    }
    joined
}

#[test]
fn clients_reject_invalid_or_missing_ids() {
    for (first, protocol) in [
        (vec![1, 2, 3], MultiplayerProtocol::Godot4),
        (le(1).to_vec(), MultiplayerProtocol::Godot4),
        (le(-5).to_vec(), MultiplayerProtocol::Godot4Transport),
        (vec![0x03, 0x68, 0x69], MultiplayerProtocol::Godot4),
    ] {
        let (mut fake, url) = fake_server();
        let mut client = Node::new(WebSocketMultiplayerPeer::with_config(config(protocol)));
        client.peer.create_client(&url, None).unwrap();
        let mut sent = false;
        wait_for("client refuses the id", || {
            if let Some(id) = poll_fake(&mut fake) {
                fake.get_peer(id).unwrap().put_packet(&first).unwrap();
                sent = true;
            }
            client.tick();
            !client.events.is_empty()
        });
        assert!(sent);
        assert_eq!(
            client.events,
            [MultiplayerEvent::ConnectionFailed],
            "{first:?}"
        );
        let error = client.peer.get_last_error().unwrap().to_string();
        assert!(error.contains("invalid peer id"), "{error}");
    }

    // A server that never sends an id: the handshake timeout ends the attempt.
    let (mut fake, url) = fake_server();
    let mut config = config(MultiplayerProtocol::Godot3);
    config.websocket.handshake_timeout = Duration::from_millis(300);
    let mut client = Node::new(WebSocketMultiplayerPeer::with_config(config));
    let started = Instant::now();
    client.peer.create_client(&url, None).unwrap();
    wait_for("handshake timeout", || {
        poll_fake(&mut fake);
        client.tick();
        !client.events.is_empty()
    });
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(client.events, [MultiplayerEvent::ConnectionFailed]);
    let error = client.peer.get_last_error().unwrap().to_string();
    assert!(error.contains("handshake timeout"), "{error}");
}

#[test]
fn servers_drop_malformed_and_forged_packets() {
    for protocol in [MultiplayerProtocol::Godot4, MultiplayerProtocol::Godot3] {
        let mut server = server_with(config(protocol));
        let mut friend = join(&mut server, config(protocol));
        let mut raw = raw_client(&mut server);
        let id = *server
            .peer
            .peer_ids()
            .iter()
            .find(|&&p| p != friend.id())
            .unwrap();
        let bad: Vec<Vec<u8>> = match protocol {
            MultiplayerProtocol::Godot3 => vec![
                vec![],
                vec![0; 8],
                godot3::sys(godot3::SYS_ADD, id).to_vec(), // clients send no sys messages
                godot3::raw(friend.id(), 1, b"forged"),    // someone else's id
                godot3::raw(id, id, b"to myself"),
                godot3::raw(id, 999, b"nobody"),
                godot3::raw(id, 1, &[]), // RAW without payload
                cat(&[&godot3::raw(id, 1, &[])[..9], &[0x00, 0x01]]), // an RPC
            ],
            _ => vec![
                vec![],
                vec![0x03],
                vec![0x07],
                vec![0x07, 0x01, 1, 2],
                scene::add_peer(id).to_vec(),
                scene::relay(1, &scene::raw(b"x")),
                scene::relay(999, &scene::raw(b"x")),
                scene::relay(friend.id(), &[]),
                vec![0x00, 0x01, 0x02], // an RPC for a node path never cached
            ],
        };
        let count = bad.len() as u64;
        for message in &bad {
            raw.put_packet(message).unwrap();
        }
        if protocol == MultiplayerProtocol::Godot4 {
            // Authentication after admission is ignored, as SceneMultiplayer does: not
            // counted as dropped.
            raw.put_packet(&[0x07, 0x00, 0x01]).unwrap();
        }
        let good = match protocol {
            MultiplayerProtocol::Godot3 => godot3::raw(id, 1, b"fine"),
            _ => scene::raw(b"fine"),
        };
        raw.put_packet(&good).unwrap();
        wait_for("the good packet after the bad ones", || {
            tick(&mut [&mut server, &mut friend]);
            raw.poll();
            server.got(id, b"fine")
        });
        assert_eq!(server.peer.dropped_packets(), count, "{protocol:?}");
        assert_eq!(server.packets.len(), 1, "{:?}", server.packets);
        assert!(friend.packets.is_empty());
        assert_eq!(raw.get_ready_state(), State::Open);
    }
}

#[test]
fn clients_drop_malformed_and_forged_packets() {
    for protocol in [MultiplayerProtocol::Godot4, MultiplayerProtocol::Godot3] {
        let (mut fake, url) = fake_server();
        let mut client = Node::new(WebSocketMultiplayerPeer::with_config(config(protocol)));
        client.peer.create_client(&url, None).unwrap();
        let mut id = 0;
        let mut client_id = 0;
        wait_for("fake server greets", || {
            if let Some(joined) = poll_fake(&mut fake) {
                id = joined;
                client_id = joined + 1;
                let peer = fake.get_peer(id).unwrap();
                if protocol == MultiplayerProtocol::Godot3 {
                    peer.put_packet(&godot3::sys(godot3::SYS_ADD, 1)).unwrap(); // before SYS_ID
                    peer.put_packet(&godot3::sys(godot3::SYS_ID, client_id))
                        .unwrap();
                    peer.put_packet(&godot3::sys(godot3::SYS_ADD, 1)).unwrap();
                } else {
                    peer.put_packet(&godot4::id_message(client_id)).unwrap();
                }
            }
            client.tick();
            client.events.contains(&MultiplayerEvent::ConnectedToServer)
        });
        assert_eq!(client.id(), client_id);
        let bad: Vec<Vec<u8>> = match protocol {
            MultiplayerProtocol::Godot3 => vec![
                vec![1, 2, 3],
                godot3::raw(777, client_id, b"unknown sender"),
                godot3::sys(godot3::SYS_ID, 55).to_vec(), // id again
                godot3::sys(godot3::SYS_ADD, 0).to_vec(),
                godot3::sys(godot3::SYS_ADD, client_id).to_vec(),
                godot3::message(
                    godot3::Header {
                        kind: godot3::SYS_ADD,
                        from: 4,
                        to: 0,
                    },
                    &le(9),
                ), // sys not from the server
                godot3::message(
                    godot3::Header {
                        kind: 9,
                        from: 1,
                        to: 0,
                    },
                    &le(9),
                ),
                godot3::raw(1, client_id, &[]),
            ],
            _ => vec![
                vec![],
                vec![0x07, 0x01],
                scene::add_peer(0).to_vec(),
                scene::add_peer(1).to_vec(),
                scene::add_peer(client_id).to_vec(),
                scene::relay(777, &scene::raw(b"unknown sender")),
                vec![0x01, 0x02],
            ],
        };
        let count = bad.len() as u64;
        let peer = fake.get_peer(id).unwrap();
        for message in &bad {
            peer.put_packet(message).unwrap();
        }
        let good = match protocol {
            MultiplayerProtocol::Godot3 => godot3::raw(1, client_id, b"fine"),
            _ => scene::raw(b"fine"),
        };
        peer.put_packet(&good).unwrap();
        wait_for("the good packet after the bad ones", || {
            poll_fake(&mut fake);
            client.tick();
            client.got(1, b"fine")
        });
        let expected_drops = count + u64::from(protocol == MultiplayerProtocol::Godot3);
        assert_eq!(
            client.peer.dropped_packets(),
            expected_drops,
            "{protocol:?}"
        );
        assert_eq!(client.events, joined(protocol), "{protocol:?}");
        assert_eq!(client.packets.len(), 1);
    }
}

#[test]
fn full_inbound_queue_pauses_reading_without_losing_packets() {
    for (max_packets, max_bytes, expect_queued) in [(5, usize::MAX, 5), (usize::MAX, 100, 3)] {
        let mut server_config = MultiplayerConfig::default();
        server_config.max_inbound_packets = max_packets;
        server_config.max_inbound_bytes = max_bytes;
        let mut server = server_with(server_config);
        let mut client = join(&mut server, MultiplayerConfig::default());
        server.read = false;
        for i in 0..60u8 {
            client.peer.send_bytes(&[i; 40], 1).unwrap();
        }
        wait_for("queue full", || {
            tick(&mut [&mut server, &mut client]);
            server.peer.get_available_packet_count() == expect_queued
        });
        // Every byte has left the client (on loopback it is then in the server's socket
        // buffer); further polls must not read any of it while the queue is full.
        wait_for("the client's sends written", || {
            tick(&mut [&mut server, &mut client]);
            client
                .peer
                .get_peer(1)
                .unwrap()
                .get_current_outbound_buffered_amount()
                == 0
        });
        for _ in 0..20 {
            tick(&mut [&mut server, &mut client]);
        }
        // 40-byte packets: the byte limit lets the third one overshoot, then stops.
        assert_eq!(server.peer.get_available_packet_count(), expect_queued);
        server.read = true;
        wait_for("every packet", || {
            tick(&mut [&mut server, &mut client]);
            server.packets.len() == 60
        });
        for (i, (from, data)) in server.packets.iter().enumerate() {
            assert_eq!((*from, data.as_slice()), (client.id(), &[i as u8; 40][..]));
        }
        assert_eq!(server.peer.dropped_packets(), 0);
    }

    // The same on a client.
    let mut server = server_with(MultiplayerConfig::default());
    let mut client_config = MultiplayerConfig::default();
    client_config.max_inbound_packets = 4;
    let mut client = join(&mut server, client_config);
    client.read = false;
    for i in 0..30u8 {
        server.peer.send_bytes(&[i], client.id()).unwrap();
    }
    wait_for("a full queue", || {
        tick(&mut [&mut server, &mut client]);
        client.peer.get_available_packet_count() == 4
    });
    // And it stays at the limit while nobody reads, once every byte has left the server.
    let cid = client.id();
    wait_for("the server's sends written", || {
        tick(&mut [&mut server, &mut client]);
        server
            .peer
            .get_peer(cid)
            .unwrap()
            .get_current_outbound_buffered_amount()
            == 0
    });
    for _ in 0..20 {
        tick(&mut [&mut server, &mut client]);
    }
    assert_eq!(client.peer.get_available_packet_count(), 4);
    client.read = true;
    wait_for("every packet", || {
        tick(&mut [&mut server, &mut client]);
        client.packets.len() == 30
    });
    assert!(
        client
            .packets
            .iter()
            .enumerate()
            .all(|(i, (f, d))| *f == 1 && d == &[i as u8])
    );
}

#[test]
fn a_peer_leaving_mid_relay_is_dropped_quietly() {
    let mut server = server_with(MultiplayerConfig::default());
    let mut a = join(&mut server, MultiplayerConfig::default());
    let mut b = join(&mut server, MultiplayerConfig::default());
    let ib = b.id();
    wait_for("a knows b", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        a.peer.peer_ids().contains(&ib)
    });
    // b is gone at the server while a, not polled meanwhile, still knows it: a's packet
    // for b reaches a server that has nobody to relay it to.
    b.peer.close();
    wait_for("the server sees b leave", || {
        tick(&mut [&mut server, &mut b]);
        server
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(ib))
    });
    assert!(a.peer.peer_ids().contains(&ib), "a has not heard yet");
    a.peer.send_bytes(b"late", ib).unwrap();
    wait_for("a told b left", || {
        tick(&mut [&mut server, &mut a]);
        a.events.contains(&MultiplayerEvent::PeerDisconnected(ib))
    });
    settle(&mut [&mut server, &mut a], &mut []);
    assert_eq!(
        server.peer.get_connection_status(),
        ConnectionStatus::Connected
    );
    assert_eq!(server.peer.dropped_packets(), 1, "the late packet, dropped");
    assert!(server.packets.is_empty(), "{:?}", server.packets);
}

#[test]
fn server_handshake_timeout_drops_silent_connections() {
    let mut server = WebSocketMultiplayerPeer::new();
    server
        .set_handshake_timeout(Duration::from_millis(200))
        .unwrap();
    server.create_server(0, "127.0.0.1", None).unwrap();
    let mut server = Node::new(server);
    let silent = std::net::TcpStream::connect(server.peer.local_addr().unwrap()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let started = Instant::now();
    wait_for("the silent connection dropped", || {
        tick(&mut [&mut server]);
        let mut byte = [0u8; 1];
        // EOF (or a reset) once the server gives up on the handshake.
        match std::io::Read::read(&mut &silent, &mut byte) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    });
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(server.events.is_empty());
}

#[test]
fn rpc_events_count_against_the_inbound_limits_and_nothing_is_lost() {
    for protocol in [MultiplayerProtocol::Godot4, MultiplayerProtocol::Godot3] {
        let node = RpcNode::new().method("hit", RpcMode::AnyPeer);
        let mut server_config = config(protocol);
        server_config.max_inbound_packets = 4;
        let mut server = WebSocketMultiplayerPeer::with_config(server_config);
        server.rpc_config("/root/Main", node.clone());
        server.create_server(0, "127.0.0.1", None).unwrap();
        let mut server = Node::new(server);
        let mut client = join(&mut server, config(protocol));
        client.peer.rpc_config("/root/Main", node);
        for i in 0..20 {
            client
                .peer
                .rpc_id(1, "/root/Main", "hit", &[Variant::from(i)])
                .unwrap();
        }
        // Poll without draining the events: at most 4 calls are held at a time.
        let mut held = Vec::new();
        for _ in 0..200 {
            client.tick();
            server.peer.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        while let Some(event) = server.peer.pop_event() {
            held.push(event);
        }
        let calls = |events: &[MultiplayerEvent]| {
            events
                .iter()
                .filter(|e| matches!(e, MultiplayerEvent::RemoteCall(_)))
                .count()
        };
        assert_eq!(calls(&held), 4, "{protocol:?}: {held:?}");
        // Drained, the rest follow, in order, none dropped.
        let mut all = held;
        wait_for("every call", || {
            server.peer.poll();
            while let Some(event) = server.peer.pop_event() {
                all.push(event);
            }
            client.tick();
            calls(&all) == 20
        });
        let args: Vec<i64> = all
            .iter()
            .filter_map(|e| match e {
                MultiplayerEvent::RemoteCall(call) => call.args[0].as_int(),
                _ => None,
            })
            .collect();
        assert_eq!(args, (0..20).collect::<Vec<i64>>(), "{protocol:?}");
        assert_eq!(server.peer.dropped_packets(), 0);
    }
}
