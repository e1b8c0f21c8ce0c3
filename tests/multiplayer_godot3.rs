//! Godot 3 mode against the real engine: Debian's `godot3-server` (Godot 3.2.3, headless)
//! runs the GDScript bots in `tests/multiplayer/` — `g3_client.gd` (`WebSocketClient`) and
//! `g3_server.gd` (`WebSocketServer`), both with `gd_mp_api = true` and `send_bytes` — in
//! both directions: Godot clients relaying through a wspeer server (in-process, and the
//! `mp_server --godot3` example), and wspeer clients relaying through a Godot server.
//!
//! The bots print every multiplayer event and obey `send <to> <text>` / `kick <id>` /
//! `quit` commands that arrive as packets, so the test steers them over the wire.
//! Needs `godot3-server` (`apt-get install -y godot3-server`, or tests/interop/setup.sh);
//! without it every test here fails, saying so.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::godot::{Godot, free_port, godot3_config};
use common::{KillOnDrop, TIMEOUT, example_bin, line_channel};
use wspeer::*;

// The bot of this file (the runner is common::godot::Godot).
impl Godot {
    /// `g3_client.gd` joining `url` with the sub-protocol `ludus`.
    fn client(name: &str, url: &str) -> Godot {
        Godot::start(
            name,
            "g3_client.gd",
            &["--url", url, "--protocol", "ludus", "--limit", "40"],
        )
    }
}

/// A wspeer multiplayer peer with what it reported.
struct Side {
    peer: WebSocketMultiplayerPeer,
    events: Vec<MultiplayerEvent>,
    packets: Vec<(i32, String)>,
}

impl Side {
    fn new(peer: WebSocketMultiplayerPeer) -> Side {
        Side {
            peer,
            events: Vec::new(),
            packets: Vec::new(),
        }
    }

    fn tick(&mut self) {
        self.peer.poll();
        while let Some(event) = self.peer.pop_event() {
            self.events.push(event);
        }
        while let Some((from, data)) = self.peer.recv() {
            self.packets
                .push((from, String::from_utf8_lossy(&data).into_owned()));
        }
    }

    fn got(&self, from: i32, text: &str) -> bool {
        self.packets.iter().any(|(f, t)| *f == from && t == text)
    }
}

fn tick_each(sides: &mut [Side]) {
    for side in sides.iter_mut() {
        side.tick();
    }
}

fn wait_for(what: &str, mut step: impl FnMut() -> bool) {
    let start = Instant::now();
    while !step() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn godot3_clients_join_and_relay_through_a_wspeer_server() {
    let mut server = WebSocketMultiplayerPeer::with_config(godot3_config());
    server.create_server(0, "127.0.0.1", None).unwrap();
    let url = format!("ws://{}/", server.local_addr().unwrap());
    let mut server = Side::new(server);
    let mut bots: Vec<Godot> = ["a", "b", "c"]
        .iter()
        .map(|name| Godot::client(name, &url))
        .collect();
    let ids: Vec<i32> = bots
        .iter_mut()
        .map(|bot| {
            bot.expect("connected_to_server ", || server.tick())
                .parse()
                .unwrap()
        })
        .collect();
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    for &id in &ids {
        assert!(id >= 2);
        assert!(server.events.contains(&MultiplayerEvent::PeerConnected(id)));
    }
    // Join announcements: every bot learns the server and the two others. Godot 3.2.3
    // reports the server as a peer before it reports the connection (wspeer's Godot 3
    // clients keep that order).
    for (bot, &own) in bots.iter_mut().zip(&ids) {
        bot.expect("peer_connected 1", || server.tick());
        let at = |line: &str| bot.seen.iter().position(|l| l.starts_with(line));
        assert!(
            at("peer_connected 1") < at("connected_to_server "),
            "{}: {:#?}",
            bot.name,
            bot.seen
        );
        for &other in ids.iter().filter(|&&id| id != own) {
            bot.expect(&format!("peer_connected {other}"), || server.tick());
        }
    }

    // The server to one client; then a steered to send with every kind of target.
    server.peer.send_bytes(b"hello a", a).unwrap();
    bots[0].expect("packet 1 hello a", || server.tick());
    for command in [
        format!("send {b} to b"),
        "send 0 to all".to_string(),
        format!("send -{b} not b"),
        "send 1 to server".to_string(),
    ] {
        server.peer.send_bytes(command.as_bytes(), a).unwrap();
    }
    bots[1].expect(&format!("packet {a} to b"), || server.tick());
    bots[1].expect(&format!("packet {a} to all"), || server.tick());
    bots[2].expect(&format!("packet {a} to all"), || server.tick());
    bots[2].expect(&format!("packet {a} not b"), || server.tick());
    wait_for("the server's share", || {
        server.tick();
        server.got(a, "to server")
    });
    assert!(server.got(a, "to all") && server.got(a, "not b"));
    assert!(!server.got(a, "to b"));
    // Everything a sent went through the relay before this marker: nothing else arrives.
    server.peer.send_bytes(b"marker", 0).unwrap();
    for bot in bots.iter_mut() {
        bot.expect("packet 1 marker", || server.tick());
    }
    assert!(!bots[1].saw(&format!("packet {a} not b")));
    assert!(!bots[2].saw(&format!("packet {a} to b")));
    assert!(
        !bots[0]
            .seen
            .iter()
            .any(|l| l.starts_with(&format!("packet {a} ")))
    );

    // c leaves on its own: the server reports it, a and b are told.
    server.peer.send_bytes(b"quit", c).unwrap();
    assert_eq!(bots[2].wait_exit(|| server.tick()), Some(0));
    bots[0].expect(&format!("peer_disconnected {c}"), || server.tick());
    bots[1].expect(&format!("peer_disconnected {c}"), || server.tick());
    wait_for("server sees c leave", || {
        server.tick();
        server
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(c))
    });

    // The server drops b: b's connection ends, a is told.
    server.peer.disconnect_peer(b, false).unwrap();
    bots[0].expect(&format!("peer_disconnected {b}"), || server.tick());
    wait_for("server reports b gone", || {
        server.tick();
        server
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(b))
    });
    // Godot 3.2.3 reports a server-side close as connection_failed (observed), not
    // server_disconnected, and reports no peer leaving: neither the server nor a.
    bots[1].expect("connection_failed", || server.tick());
    assert!(!bots[1].saw("peer_disconnected 1"), "{:#?}", bots[1].seen);
    assert!(
        !bots[1].saw(&format!("peer_disconnected {a}")),
        "{:#?}",
        bots[1].seen
    );
    assert_eq!(server.peer.peer_ids(), [a]);
    assert_eq!(server.peer.dropped_packets(), 0);
    for bot in &bots {
        bot.assert_no_protocol_errors();
    }
}

#[test]
fn wspeer_clients_join_and_relay_through_a_godot3_server() {
    let port = free_port();
    let port_arg = port.to_string();
    let mut godot = Godot::start(
        "godot server",
        "g3_server.gd",
        &["--port", &port_arg, "--protocol", "ludus", "--limit", "40"],
    );
    godot.expect(&format!("listening {port}"), || {});
    let url = format!("ws://127.0.0.1:{port}/");
    let mut sides: Vec<Side> = (0..3)
        .map(|_| {
            let mut peer = WebSocketMultiplayerPeer::with_config(godot3_config());
            peer.create_client(&url, None).unwrap();
            Side::new(peer)
        })
        .collect();
    wait_for("three clients connected", || {
        tick_each(&mut sides);
        sides.iter().all(|side| {
            side.events.starts_with(&[
                MultiplayerEvent::PeerConnected(1),
                MultiplayerEvent::ConnectedToServer,
            ]) && side.peer.peer_ids().len() == 3
        })
    });
    let ids: Vec<i32> = sides.iter().map(|s| s.peer.get_unique_id()).collect();
    let (ia, ib, ic) = (ids[0], ids[1], ids[2]);
    for id in [ia, ib, ic] {
        assert!(id >= 2);
        godot.expect(&format!("peer_connected {id}"), || tick_each(&mut sides));
    }
    // A client's peers: the server and the other clients, not itself.
    let mut expected = vec![1, ib, ic];
    expected.sort();
    assert_eq!(sides[0].peer.peer_ids(), expected);

    // Every kind of target, from a.
    let a = &mut sides[0].peer;
    a.send_bytes(b"hello server", 1).unwrap();
    a.send_bytes(b"to b", ib).unwrap();
    a.send_bytes(b"to all", 0).unwrap();
    a.send_bytes(b"not b", -ib).unwrap();
    for line in ["hello server", "to all", "not b"] {
        godot.expect(&format!("packet {ia} {line}"), || tick_each(&mut sides));
    }
    // The Godot server's own packets, steered by a.
    let a = &mut sides[0].peer;
    a.send_bytes(format!("send {ib} from server").as_bytes(), 1)
        .unwrap();
    a.send_bytes(b"send 0 everyone", 1).unwrap();
    wait_for("relayed and server packets", || {
        tick_each(&mut sides);
        let [a, b, c] = &sides[..] else {
            unreachable!()
        };
        b.got(ia, "to b")
            && b.got(ia, "to all")
            && c.got(ia, "to all")
            && c.got(ia, "not b")
            && b.got(1, "from server")
            && [a, b, c].iter().all(|side| side.got(1, "everyone"))
    });
    assert!(!sides[1].got(ia, "not b") && !sides[2].got(ia, "to b"));
    assert!(
        sides[0].packets.iter().all(|(from, _)| *from == 1),
        "{:?}",
        sides[0].packets
    );

    // c leaves: Godot announces it to a and b.
    sides[2].peer.disconnect_peer(1, false).unwrap();
    wait_for("c's departure announced", || {
        tick_each(&mut sides);
        sides[0]
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(ic))
            && sides[1]
                .events
                .contains(&MultiplayerEvent::PeerDisconnected(ic))
            && sides[2]
                .events
                .contains(&MultiplayerEvent::ServerDisconnected)
    });
    godot.expect(&format!("peer_disconnected {ic}"), || tick_each(&mut sides));

    // The Godot server kicks b (code 4000): b's connection ends, a is told.
    sides[0]
        .peer
        .send_bytes(format!("kick {ib}").as_bytes(), 1)
        .unwrap();
    wait_for("b kicked", || {
        tick_each(&mut sides);
        sides[1]
            .events
            .contains(&MultiplayerEvent::ServerDisconnected)
            && sides[0]
                .events
                .contains(&MultiplayerEvent::PeerDisconnected(ib))
    });
    // As Godot 3's own client: the end of b's connection reports no peer leaving.
    assert!(
        !sides[1]
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(1))
            && !sides[1]
                .events
                .contains(&MultiplayerEvent::PeerDisconnected(ia)),
        "{:?}",
        sides[1].events
    );
    let b_socket = sides[1].peer.get_peer(1).unwrap();
    assert_eq!(b_socket.get_close_code(), 4000);
    // Godot 3.2.3 sends the reason with its C string's terminating NUL (observed).
    assert_eq!(b_socket.get_close_reason(), "kicked\0");

    // The Godot server stops: a is disconnected.
    sides[0].peer.send_bytes(b"quit", 1).unwrap();
    wait_for("server gone", || {
        tick_each(&mut sides);
        sides[0]
            .events
            .contains(&MultiplayerEvent::ServerDisconnected)
    });
    for side in &sides {
        assert_eq!(side.peer.dropped_packets(), 0);
    }
    godot.assert_no_protocol_errors();
}

#[test]
fn mp_server_example_relays_between_godot3_clients() {
    let mut server = Command::new(example_bin("mp_server"))
        .args(["--godot3", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mp_server");
    let server_lines = line_channel(server.stdout.take().unwrap());
    let server = KillOnDrop(server);
    let mut server_log = Vec::new();
    let mut server_line = |needle: &str, tick: &mut dyn FnMut()| -> String {
        let start = Instant::now();
        loop {
            while let Ok(line) = server_lines.try_recv() {
                server_log.push(line);
            }
            if let Some(line) = server_log.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            tick();
            assert!(
                start.elapsed() < TIMEOUT,
                "mp_server printed no {needle:?}: {server_log:#?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let listening = server_line("Listening on ", &mut || {});
    let url = listening.trim_start_matches("Listening on ").to_string();

    let mut a = Godot::client("a", &url);
    let mut b = Godot::client("b", &url);
    let ia: i32 = a.expect("connected_to_server ", || {}).parse().unwrap();
    let ib: i32 = b.expect("connected_to_server ", || {}).parse().unwrap();
    server_line(&format!("Peer {ia} connected"), &mut || {});
    server_line(&format!("Peer {ib} connected"), &mut || {});

    // A wspeer client in Godot 3 mode steers the Godot clients through the relay.
    let mut steer = WebSocketMultiplayerPeer::with_config(godot3_config());
    steer.create_client(&url, None).unwrap();
    let mut steer = Side::new(steer);
    wait_for("steering client sees both bots", || {
        steer.tick();
        steer.peer.peer_ids().len() == 3
    });
    let is = steer.peer.get_unique_id();
    a.expect(&format!("peer_connected {is}"), || steer.tick());
    steer
        .peer
        .send_bytes(format!("send {ib} hi from a").as_bytes(), ia)
        .unwrap();
    b.expect(&format!("packet {ia} hi from a"), || steer.tick());
    steer
        .peer
        .send_bytes(format!("send {is} back to you").as_bytes(), ib)
        .unwrap();
    wait_for("b answers the steering client", || {
        steer.tick();
        steer.got(ib, "back to you")
    });

    // a quits: the server logs it and b is told.
    steer.peer.send_bytes(b"quit", ia).unwrap();
    server_line(&format!("Peer {ia} disconnected"), &mut || steer.tick());
    b.expect(&format!("peer_disconnected {ia}"), || steer.tick());
    wait_for("steering client told", || {
        steer.tick();
        steer
            .events
            .contains(&MultiplayerEvent::PeerDisconnected(ia))
    });
    a.assert_no_protocol_errors();
    b.assert_no_protocol_errors();
    drop(server);
}
