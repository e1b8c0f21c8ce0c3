//! The RPC layer and SceneMultiplayer authentication of `WebSocketMultiplayerPeer`, in
//! process on 127.0.0.1: wspeer peers calling each other, and plain WebSocket peers that
//! write and check the bytes of `godot-rpc.md` §4 (Godot 4) and §6 (Godot 3) by hand.

mod common;

use std::time::{Duration, Instant};

use common::TIMEOUT;
use common::multiplayer::{
    Node, cat, config, listening, next_message, tick, wait_for, wait_joined,
};
use wspeer::multiplayer_wire::rpc::RpcTable;
use wspeer::multiplayer_wire::{godot3, godot4, scene};
use wspeer::variant::{
    Aabb, Array, Basis, Color, ContainerType, Dictionary, NodePath, Plane, Quaternion, Rect2,
    Rect2i, Transform2D, Transform3D, Vector2, Vector2i, Vector3, Vector3i, Vector4, Vector4i,
};
use wspeer::*;

const MAIN: &str = "/root/Main";
const G4: MultiplayerProtocol = MultiplayerProtocol::Godot4;
const G3: MultiplayerProtocol = MultiplayerProtocol::Godot3;
const BOTH: [MultiplayerProtocol; 2] = [G4, G3];

/// `md5("net" + "echo" + "never" + "secret")`: the checksum of [`main_node`] (node-level
/// names, then the script's, each sorted; reference §5.3), computed outside wspeer.
const MAIN_MD5: &str = "d92daeba95add4876cec9925973a16d9";
/// `md5("echo")`: a node whose only RPC is `echo`.
const ECHO_MD5: &str = "cbb11ed87dc8a95d81400c7f33c7c171";

// Godot 4 method ids of `main_node` (sorted script names; node-level ones get 0x8000).
const ECHO: u8 = 0;
const NEVER: u8 = 1;
const SECRET: u8 = 2;

/// The node every test declares at [`MAIN`]: Godot 4 ids `echo` 0, `never` 1, `secret` 2,
/// node-level `net` 0x8000.
fn main_node() -> RpcNode {
    RpcNode::new()
        .method("echo", RpcMode::AnyPeer)
        .method("secret", RpcMode::Authority)
        .method("never", RpcMode::Disabled)
        .node_method("net", RpcMode::AnyPeer)
}

fn echo_node() -> RpcNode {
    RpcNode::new().method("echo", RpcMode::AnyPeer)
}

// ----- harness (the shared part is in common::multiplayer) -----

impl Node {
    /// The RPCs received so far, in order.
    fn calls(&self) -> Vec<&RemoteCall> {
        self.events
            .iter()
            .filter_map(|e| match e {
                MultiplayerEvent::RemoteCall(call) => Some(&**call),
                _ => None,
            })
            .collect()
    }

    fn has_call(&self, from: i32, node: &str, method: &str, args: &[Variant]) -> bool {
        self.calls()
            .iter()
            .any(|c| c.from == from && c.node == node && c.method == method && c.args == args)
    }
}

fn auth_config(auth_timeout: Duration) -> MultiplayerConfig {
    let mut config = config(G4);
    config.authentication = true;
    config.auth_timeout = auth_timeout;
    config
}

/// A peer with [`main_node`] declared at [`MAIN`].
fn peer_with(config: MultiplayerConfig) -> WebSocketMultiplayerPeer {
    let mut peer = WebSocketMultiplayerPeer::with_config(config);
    peer.rpc_config(MAIN, main_node());
    peer
}

fn server_with(config: MultiplayerConfig) -> Node {
    listening(peer_with(config))
}

/// A client of `server` that started connecting.
fn client_of(server: &Node, config: MultiplayerConfig) -> Node {
    let mut peer = peer_with(config);
    peer.create_client(&server.url(), None)
        .expect("create_client");
    Node::new(peer)
}

/// Polls for `how_long`: only where no later message can show that something did not
/// happen (a pending peer takes nothing but authentication packets).
fn quiet(nodes: &mut [&mut Node], how_long: Duration) {
    let start = Instant::now();
    while start.elapsed() < how_long {
        tick(nodes);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A client (no authentication) of `server`, polled until both sides report it.
fn join(server: &mut Node, config: MultiplayerConfig) -> Node {
    let mut client = client_of(server, config);
    wait_joined(server, &mut client);
    client
}

/// A client of `server`, both with authentication, polled until both report it pending.
fn pending_client(server: &mut Node, config: MultiplayerConfig) -> Node {
    let mut client = client_of(server, config);
    wait_for("both sides authenticating", || {
        tick(&mut [server, &mut client]);
        client.has(&MultiplayerEvent::PeerAuthenticating(1))
            && server.has(&MultiplayerEvent::PeerAuthenticating(client.id()))
    });
    client
}

/// A pending client admitted by completing both sides.
fn admit(server: &mut Node, client: &mut Node) {
    let id = client.id();
    client.peer.complete_auth(1).unwrap();
    server.peer.complete_auth(id).unwrap();
    wait_for("admission", || {
        tick(&mut [server, client]);
        client.has(&MultiplayerEvent::ConnectedToServer)
            && server.has(&MultiplayerEvent::PeerConnected(id))
    });
}

/// `text` and its NUL.
fn cstr(text: &str) -> Vec<u8> {
    cat(&[text.as_bytes(), &[0]])
}

// ----- hand-written packets (reference §4.4, §4.5, §6) -----

/// Godot 4 `SIMPLIFY_PATH`: `[01][md5 hex][00][u32 id][path][00]`.
fn simplify4(checksum: &str, id: u32, path: &str) -> Vec<u8> {
    cat(&[&[0x01], &cstr(checksum), &id.to_le_bytes(), &cstr(path)])
}

/// Godot 4.3+ `CONFIRM_PATH`: `[02][valid][u32 id]`.
fn confirm4(valid: bool, id: u32) -> Vec<u8> {
    cat(&[&[0x02, u8::from(valid)], &id.to_le_bytes()])
}

/// Godot 4 `REMOTE_CALL` with the full path: meta `20` (u8 method id) or `60` (u16), the
/// target `0x80000000 | offset of the path`, `body` (argc and compressed arguments), path.
fn call4_full(method: u16, body: &[u8], path: &str) -> Vec<u8> {
    let (meta, id): (u8, Vec<u8>) = match u8::try_from(method) {
        Ok(small) => (0x20, vec![small]),
        Err(_) => (0x60, method.to_le_bytes().to_vec()),
    };
    let offset = (1 + 4 + id.len() + body.len()) as u32 | 0x8000_0000;
    cat(&[&[meta], &offset.to_le_bytes(), &id, body, &cstr(path)])
}

/// Godot 4 `REMOTE_CALL` with a u8 cache id and a u8 method id: `[00][id][method][body]`.
fn call4_cached(cache_id: u8, method: u8, body: &[u8]) -> Vec<u8> {
    cat(&[&[0x00, cache_id, method], body])
}

/// Godot 3 `REMOTE_CALL` with the full path: `[00][u32 0x80000000|offset][name 00][argc]
/// [Variants][path 00]`.
fn call3_full(method: &str, args: &[Variant], path: &str) -> Vec<u8> {
    let mut body = vec![args.len() as u8];
    for arg in args {
        body.extend(arg.to_godot3_bytes().unwrap());
    }
    let offset = (1 + 4 + method.len() + 1 + body.len()) as u32 | 0x8000_0000;
    cat(&[
        &[0x00],
        &offset.to_le_bytes(),
        &cstr(method),
        &body,
        &cstr(path),
    ])
}

/// Godot 3 `REMOTE_CALL` with a cache id.
fn call3_cached(cache_id: u32, method: &str, args: &[Variant]) -> Vec<u8> {
    let mut packet = cat(&[&[0x00], &cache_id.to_le_bytes(), &cstr(method)]);
    packet.push(args.len() as u8);
    for arg in args {
        packet.extend(arg.to_godot3_bytes().unwrap());
    }
    packet
}

/// A plain WebSocket client of a wspeer server, speaking the multiplayer bytes by hand.
struct Raw {
    ws: WebSocketPeer,
    id: i32,
    protocol: MultiplayerProtocol,
}

impl Raw {
    /// Connects and reads the greeting: Godot 4 the id; Godot 3 `SYS_ID`, `SYS_ADD(1)`.
    /// [`join`](Self::join), then polls `server` until it reports the raw client connected.
    fn admitted(server: &mut Node, protocol: MultiplayerProtocol) -> Raw {
        let raw = Raw::join(server, protocol);
        wait_for("raw admitted", || {
            server.tick();
            server.has(&MultiplayerEvent::PeerConnected(raw.id))
        });
        raw
    }

    fn join(server: &mut Node, protocol: MultiplayerProtocol) -> Raw {
        let mut ws = WebSocketPeer::new();
        ws.connect_to_url(&server.url(), None).unwrap();
        let first = next_message(&mut ws, &mut [server]);
        let id = match protocol {
            G3 => {
                let id = i32::from_le_bytes(first[9..13].try_into().unwrap());
                assert_eq!(first, godot3::sys(godot3::SYS_ID, id));
                let second = next_message(&mut ws, &mut [server]);
                assert_eq!(second, godot3::sys(godot3::SYS_ADD, 1));
                id
            }
            _ => godot4::parse_id_message(&first).unwrap(),
        };
        Raw { ws, id, protocol }
    }

    /// Sends a packet to the server (Godot 3: in a header from us to 1).
    fn send(&mut self, packet: &[u8]) {
        self.send_to(1, packet);
    }

    /// Sends a packet to `to`: Godot 4 relays through the server unless `to` is 1.
    fn send_to(&mut self, to: i32, packet: &[u8]) {
        let message = match self.protocol {
            G3 => godot3::message(
                godot3::Header {
                    kind: godot3::SYS_NONE,
                    from: self.id,
                    to,
                },
                packet,
            ),
            _ if to == 1 => packet.to_vec(),
            _ => scene::relay(to, packet),
        };
        self.ws.put_packet(&message).unwrap();
    }

    /// The next packet from the server (Godot 3: its header checked and removed).
    fn recv(&mut self, nodes: &mut [&mut Node]) -> Vec<u8> {
        let message = next_message(&mut self.ws, nodes);
        match self.protocol {
            G3 => {
                let (header, payload) = godot3::parse(&message).unwrap();
                assert_eq!(
                    (header.kind, header.from),
                    (godot3::SYS_NONE, 1),
                    "{message:02x?}"
                );
                payload.to_vec()
            }
            _ => message,
        }
    }

    /// A RAW packet carrying `bytes`.
    fn raw_packet(&self, bytes: &[u8]) -> Vec<u8> {
        let command = match self.protocol {
            G3 => godot3::CMD_RAW,
            _ => scene::CMD_RAW,
        };
        cat(&[&[command], bytes])
    }

    /// What the server sent since the last call, once it has handled everything sent to
    /// it: a RAW marker goes to the server and is waited for, then the server sends one
    /// back; what arrives before it is returned.
    fn sync(&mut self, server: &mut Node) -> Vec<Vec<u8>> {
        const MARK: &[u8] = b"sync marker";
        let marker = self.raw_packet(MARK);
        self.send(&marker);
        let id = self.id;
        wait_for("the marker at the server", || {
            server.tick();
            self.ws.poll();
            server.got(id, MARK)
        });
        server.packets.retain(|(_, d)| d != MARK);
        server.peer.send_bytes(MARK, id).unwrap();
        let mut before = Vec::new();
        loop {
            let packet = self.recv(&mut [server]);
            if packet == marker {
                return before;
            }
            before.push(packet);
        }
    }
}

/// Makes sure everything `from` sent (directly or relayed) has been handled by every other
/// node: `from` sends a RAW marker to each of them, and each is waited for. Markers are then
/// removed.
fn flush_from(nodes: &mut [&mut Node], from: usize) {
    const MARK: &[u8] = b"flush marker";
    let sender = nodes[from].id();
    let targets: Vec<i32> = (0..nodes.len())
        .filter(|&i| i != from)
        .map(|i| nodes[i].id())
        .collect();
    for &to in &targets {
        nodes[from].peer.send_bytes(MARK, to).unwrap();
    }
    wait_for("flush markers", || {
        tick(nodes);
        nodes
            .iter()
            .enumerate()
            .all(|(i, n)| i == from || n.got(sender, MARK))
    });
    for node in nodes.iter_mut() {
        node.packets.retain(|(_, d)| d != MARK);
    }
}

/// Every node flushes, in order: afterwards everything sent before, and every answer to it
/// (path confirmations), has arrived.
fn flush_all(nodes: &mut [&mut Node]) {
    for from in 0..nodes.len() {
        flush_from(nodes, from);
    }
    for from in 0..nodes.len() {
        flush_from(nodes, from);
    }
}

// ----- authentication (Godot 4) -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum First {
    Server,
    Client,
}

#[test]
fn authentication_admits_only_after_both_sides_complete_in_either_order() {
    for first in [First::Server, First::Client] {
        let mut server = server_with(auth_config(TIMEOUT));
        let mut client = pending_client(&mut server, auth_config(TIMEOUT));
        let id = client.id();
        assert!(id >= 2);
        assert_eq!(server.events, [MultiplayerEvent::PeerAuthenticating(id)]);
        assert_eq!(client.events, [MultiplayerEvent::PeerAuthenticating(1)]);
        assert_eq!(server.peer.get_authenticating_peers(), [id]);
        assert_eq!(client.peer.get_authenticating_peers(), [1]);
        assert!(server.peer.peer_ids().is_empty());
        assert!(client.peer.peer_ids().is_empty());
        // Its address can decide the authentication.
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        assert_eq!(server.peer.get_peer_address(id), Some(local));
        assert!(server.peer.get_peer_port(id).is_some());
        assert!(server.peer.get_peer(id).is_some());
        assert_eq!(
            client.peer.get_connection_status(),
            ConnectionStatus::Connecting
        );

        // Payloads both ways, each arriving whole.
        client.peer.send_auth(1, b"tok").unwrap();
        client.peer.send_auth(1, b"en").unwrap();
        server.peer.send_auth(id, b"ok").unwrap();
        let from_client = [
            MultiplayerEvent::AuthReceived {
                id,
                data: b"tok".to_vec(),
            },
            MultiplayerEvent::AuthReceived {
                id,
                data: b"en".to_vec(),
            },
        ];
        let from_server = MultiplayerEvent::AuthReceived {
            id: 1,
            data: b"ok".to_vec(),
        };
        wait_for("payloads", || {
            tick(&mut [&mut server, &mut client]);
            server.events.len() == 3 && client.events.len() == 2
        });
        assert_eq!(server.events[1..], from_client);
        assert_eq!(client.events[1], from_server);

        // One side completes: nobody is admitted, whatever time passes.
        match first {
            First::Server => server.peer.complete_auth(id).unwrap(),
            First::Client => client.peer.complete_auth(1).unwrap(),
        }
        quiet(&mut [&mut server, &mut client], Duration::from_millis(150));
        assert_eq!(server.events.len(), 3, "{:?}", server.events);
        assert_eq!(client.events.len(), 2, "{:?}", client.events);
        assert_eq!(server.peer.get_authenticating_peers(), [id]);
        assert_eq!(client.peer.get_authenticating_peers(), [1]);
        // As Godot's send_auth: once the other side said it completed, no more payloads.
        let late = match first {
            First::Server => client.peer.send_auth(1, b"late"),
            First::Client => server.peer.send_auth(id, b"late"),
        };
        assert!(matches!(late, Err(Error::Auth(_))), "{first:?}: {late:?}");

        // The other side completes: both admit.
        match first {
            First::Server => client.peer.complete_auth(1).unwrap(),
            First::Client => server.peer.complete_auth(id).unwrap(),
        }
        wait_for("admission on both sides", || {
            tick(&mut [&mut server, &mut client]);
            server.has(&MultiplayerEvent::PeerConnected(id))
                && client.has(&MultiplayerEvent::PeerConnected(1))
        });
        assert_eq!(server.events[3..], [MultiplayerEvent::PeerConnected(id)]);
        assert_eq!(
            client.events[2..],
            [
                MultiplayerEvent::ConnectedToServer,
                MultiplayerEvent::PeerConnected(1)
            ]
        );
        assert!(server.peer.get_authenticating_peers().is_empty());
        assert!(client.peer.get_authenticating_peers().is_empty());
        assert_eq!(server.peer.peer_ids(), [id]);
        assert_eq!(client.peer.peer_ids(), [1]);
        assert_eq!(
            client.peer.get_connection_status(),
            ConnectionStatus::Connected
        );

        // Ordinary traffic flows both ways now.
        client.peer.rpc_id(1, MAIN, "echo", &["up".into()]).unwrap();
        server
            .peer
            .rpc_id(id, MAIN, "echo", &["down".into()])
            .unwrap();
        client.peer.send_bytes(b"raw", 1).unwrap();
        wait_for("traffic after admission", || {
            tick(&mut [&mut server, &mut client]);
            server.has_call(id, MAIN, "echo", &["up".into()])
                && client.has_call(1, MAIN, "echo", &["down".into()])
                && server.got(id, b"raw")
        });
        assert_eq!(server.peer.dropped_packets(), 0);
        assert_eq!(client.peer.dropped_packets(), 0);
    }
}

#[test]
fn authentication_bytes_on_the_wire() {
    let mut server = server_with(auth_config(TIMEOUT));
    let mut raw = Raw::join(&mut server, G4);
    let id = raw.id;
    wait_for("pending", || {
        server.tick();
        server.has(&MultiplayerEvent::PeerAuthenticating(id))
    });
    // C→S `07 00 "tok"`; S→C `07 00 "ok"`; S→C `07 00`; C→S `07 00` (reference §4.2).
    raw.send(&[0x07, 0x00, b't', b'o', b'k']);
    wait_for("payload", || {
        server.tick();
        raw.ws.poll();
        server.has(&MultiplayerEvent::AuthReceived {
            id,
            data: b"tok".to_vec(),
        })
    });
    server.peer.send_auth(id, b"ok").unwrap();
    assert_eq!(raw.recv(&mut [&mut server]), [0x07, 0x00, b'o', b'k']);
    server.peer.complete_auth(id).unwrap();
    assert_eq!(raw.recv(&mut [&mut server]), [0x07, 0x00]);
    // Still pending: a RAW packet is dropped, and the server is not admitted yet.
    raw.send(&[0x03, 0x01]);
    raw.send(&[0x07, 0x00, b'x']);
    wait_for("second payload", || {
        server.tick();
        raw.ws.poll();
        server.has(&MultiplayerEvent::AuthReceived {
            id,
            data: b"x".to_vec(),
        })
    });
    assert_eq!(server.peer.dropped_packets(), 1);
    assert!(!server.has(&MultiplayerEvent::PeerConnected(id)));
    // The client's `07 00` admits it; what follows is ordinary traffic.
    raw.send(&[0x07, 0x00]);
    raw.send(&[0x03, 0x02]);
    wait_for("admitted", || {
        server.tick();
        raw.ws.poll();
        server.got(id, &[0x02])
    });
    assert_eq!(
        server.events.last(),
        Some(&MultiplayerEvent::PeerConnected(id))
    );
    // A `07 00` after admission is ignored (not dropped, not reported).
    raw.send(&[0x07, 0x00]);
    raw.send(&[0x07, 0x00, b'y']);
    assert!(raw.sync(&mut server).is_empty());
    assert_eq!(server.peer.dropped_packets(), 1);
    assert!(
        !server
            .events
            .iter()
            .any(|e| matches!(e, MultiplayerEvent::AuthReceived { data, .. } if data == b"y"))
    );
}

#[test]
fn nothing_but_authentication_passes_before_admission() {
    let mut server = server_with(auth_config(TIMEOUT));
    let mut a = pending_client(&mut server, auth_config(TIMEOUT));
    admit(&mut server, &mut a);
    let a_id = a.id();

    // B is pending: it can send nothing, nobody can reach it, nobody hears of it.
    let mut b = pending_client(&mut server, auth_config(TIMEOUT));
    let b_id = b.id();
    assert!(matches!(b.peer.send_bytes(b"x", 1), Err(Error::NotOpen)));
    assert!(matches!(
        b.peer.rpc_id(1, MAIN, "echo", &[]),
        Err(Error::NotOpen)
    ));
    assert!(matches!(b.peer.rpc(MAIN, "echo", &[]), Err(Error::NotOpen)));
    b.peer.set_target_peer(1);
    assert!(matches!(
        b.peer.put_var(&Variant::from(1)),
        Err(Error::NotOpen)
    ));
    assert!(matches!(
        server.peer.send_bytes(b"x", b_id),
        Err(Error::PeerNotFound(id)) if id == b_id
    ));
    assert!(matches!(
        server.peer.rpc_id(b_id, MAIN, "echo", &[]),
        Err(Error::PeerNotFound(id)) if id == b_id
    ));
    assert!(matches!(
        a.peer.send_bytes(b"x", b_id),
        Err(Error::PeerNotFound(id)) if id == b_id
    ));
    assert_eq!(server.peer.peer_ids(), [a_id]);
    assert_eq!(server.peer.get_authenticating_peers(), [b_id]);
    // Broadcasts skip it.
    server.peer.send_bytes(b"all", 0).unwrap();
    server.peer.rpc(MAIN, "echo", &["all".into()]).unwrap();

    // A raw pending client: RAW, RPC, relay, path cache and replication are all dropped.
    let mut raw = Raw::join(&mut server, G4);
    let r_id = raw.id;
    wait_for("raw pending", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        server.has(&MultiplayerEvent::PeerAuthenticating(r_id))
    });
    let before = server.peer.dropped_packets();
    let refused: Vec<Vec<u8>> = vec![
        vec![0x03, 0x68, 0x69],
        call4_full(ECHO as u16, &[0x01, 0x02, 0x07], "Main"),
        scene::relay(a_id, &[0x03, 0x68, 0x69]),
        scene::relay(0, &[0x03, 0x68, 0x69]),
        simplify4(MAIN_MD5, 1, "Main"),
        vec![0x05, 0x01, 0x00, 0x00, 0x00],
    ];
    for packet in &refused {
        raw.send(packet);
    }
    raw.send(&[0x07, 0x00, b'm']);
    wait_for("the auth payload after the refused packets", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        raw.ws.poll();
        server.has(&MultiplayerEvent::AuthReceived {
            id: r_id,
            data: b"m".to_vec(),
        })
    });
    assert_eq!(server.peer.dropped_packets() - before, refused.len() as u64);
    assert!(server.packets.is_empty(), "{:?}", server.packets);
    assert!(server.calls().is_empty());
    assert!(
        !server
            .events
            .iter()
            .any(|e| matches!(e, MultiplayerEvent::Replication { .. }))
    );

    // A learnt of neither pending peer; it got both broadcasts (and nothing relayed).
    flush_from(&mut [&mut server, &mut a], 0);
    assert!(a.got(1, b"all"));
    assert!(a.has_call(1, MAIN, "echo", &["all".into()]));
    assert_eq!(a.packets, [(1, b"all".to_vec())]);
    assert!(!a.has(&MultiplayerEvent::PeerConnected(b_id)));
    assert!(!a.has(&MultiplayerEvent::PeerConnected(r_id)));
    assert_eq!(a.peer.peer_ids(), [1]);
    assert!(b.packets.is_empty());
    assert_eq!(b.peer.dropped_packets(), 0);

    // Admitted, B is announced both ways.
    admit(&mut server, &mut b);
    wait_for("B announced", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        a.has(&MultiplayerEvent::PeerConnected(b_id))
            && b.has(&MultiplayerEvent::PeerConnected(a_id))
    });
    assert_eq!(
        b.events,
        [
            MultiplayerEvent::PeerAuthenticating(1),
            MultiplayerEvent::ConnectedToServer,
            MultiplayerEvent::PeerConnected(1),
            MultiplayerEvent::PeerConnected(a_id),
        ]
    );
    // The raw client too, once both sides completed; then its packets are accepted.
    server.peer.complete_auth(r_id).unwrap();
    assert_eq!(raw.recv(&mut [&mut server]), [0x07, 0x00]);
    raw.send(&[0x07, 0x00]);
    let mut announced = vec![
        raw.recv(&mut [&mut server, &mut a, &mut b]),
        raw.recv(&mut [&mut server, &mut a, &mut b]),
    ];
    announced.sort();
    let mut expected = vec![
        scene::add_peer(a_id).to_vec(),
        scene::add_peer(b_id).to_vec(),
    ];
    expected.sort();
    assert_eq!(announced, expected);
    raw.send(&[0x03, 0x68, 0x69]);
    wait_for("raw admitted everywhere", || {
        tick(&mut [&mut server, &mut a, &mut b]);
        raw.ws.poll();
        server.got(r_id, b"hi")
            && a.has(&MultiplayerEvent::PeerConnected(r_id))
            && b.has(&MultiplayerEvent::PeerConnected(r_id))
    });
    assert_eq!(server.peer.dropped_packets() - before, refused.len() as u64);
}

#[test]
fn authentication_timeout_fails_the_peer_on_both_sides() {
    // The server's limit: it closes the client, which never completed.
    let mut server = server_with(auth_config(Duration::from_millis(300)));
    let started = Instant::now();
    let mut client = pending_client(&mut server, auth_config(TIMEOUT));
    let id = client.id();
    wait_for("the server gives up", || {
        tick(&mut [&mut server, &mut client]);
        server.has(&MultiplayerEvent::PeerAuthenticationFailed(id))
            && client.has(&MultiplayerEvent::ServerDisconnected)
    });
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    quiet(&mut [&mut server, &mut client], Duration::from_millis(50));
    assert_eq!(
        server.events,
        [
            MultiplayerEvent::PeerAuthenticating(id),
            MultiplayerEvent::PeerAuthenticationFailed(id),
        ]
    );
    assert_eq!(
        client.events,
        [
            MultiplayerEvent::PeerAuthenticating(1),
            MultiplayerEvent::PeerAuthenticationFailed(1),
            MultiplayerEvent::ServerDisconnected,
        ]
    );
    assert!(server.peer.get_authenticating_peers().is_empty());
    assert!(client.peer.get_authenticating_peers().is_empty());
    assert_eq!(
        client.peer.get_connection_status(),
        ConnectionStatus::Disconnected
    );

    // The client's limit, against a server with none: the client gives up and leaves.
    let mut server = server_with(auth_config(Duration::ZERO));
    let started = Instant::now();
    let mut client = pending_client(&mut server, auth_config(Duration::from_millis(300)));
    let id = client.id();
    wait_for("the client gives up", || {
        tick(&mut [&mut server, &mut client]);
        client.has(&MultiplayerEvent::ServerDisconnected)
            && server.has(&MultiplayerEvent::PeerAuthenticationFailed(id))
    });
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        client.events,
        [
            MultiplayerEvent::PeerAuthenticating(1),
            MultiplayerEvent::PeerAuthenticationFailed(1),
            MultiplayerEvent::ServerDisconnected,
        ]
    );
    assert!(matches!(client.peer.get_last_error(), Some(Error::Auth(_))));
    assert_eq!(
        server.events,
        [
            MultiplayerEvent::PeerAuthenticating(id),
            MultiplayerEvent::PeerAuthenticationFailed(id),
        ]
    );
}

#[test]
fn zero_auth_timeout_means_no_limit() {
    let mut server = server_with(auth_config(Duration::ZERO));
    let mut client = pending_client(&mut server, auth_config(Duration::ZERO));
    let id = client.id();
    quiet(&mut [&mut server, &mut client], Duration::from_millis(400));
    assert_eq!(server.events, [MultiplayerEvent::PeerAuthenticating(id)]);
    assert_eq!(client.events, [MultiplayerEvent::PeerAuthenticating(1)]);
    assert_eq!(server.peer.get_authenticating_peers(), [id]);
    admit(&mut server, &mut client);
}

#[test]
fn authentication_misuse_is_refused() {
    // Authentication is Godot 4's SceneMultiplayer only.
    for protocol in [G3, MultiplayerProtocol::Godot4Transport] {
        let mut config = config(protocol);
        config.authentication = true;
        let mut peer = WebSocketMultiplayerPeer::with_config(config);
        assert!(matches!(
            peer.create_server(0, "127.0.0.1", None),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            peer.create_client("ws://127.0.0.1:9/", None),
            Err(Error::InvalidConfig(_))
        ));
    }
    let mut idle = WebSocketMultiplayerPeer::new();
    assert!(matches!(idle.send_auth(2, b"x"), Err(Error::NotOpen)));
    assert!(matches!(idle.complete_auth(2), Err(Error::NotOpen)));

    let mut server = server_with(auth_config(TIMEOUT));
    let mut client = pending_client(&mut server, auth_config(TIMEOUT));
    let id = client.id();
    let auth_err = |r: Result<(), Error>| matches!(r, Err(Error::Auth(_)));
    // Not a pending peer.
    assert!(auth_err(server.peer.send_auth(id + 1, b"x")));
    assert!(auth_err(server.peer.complete_auth(id + 1)));
    assert!(auth_err(server.peer.send_auth(1, b"x")));
    assert!(auth_err(client.peer.send_auth(id, b"x")));
    assert!(auth_err(client.peer.complete_auth(2)));
    // An empty payload would read as completion.
    assert!(auth_err(server.peer.send_auth(id, b"")));
    assert!(auth_err(client.peer.send_auth(1, b"")));
    // After completing: no payload, no second completion.
    server.peer.complete_auth(id).unwrap();
    assert!(auth_err(server.peer.complete_auth(id)));
    assert!(auth_err(server.peer.send_auth(id, b"x")));
    client.peer.complete_auth(1).unwrap();
    assert!(auth_err(client.peer.complete_auth(1)));
    assert!(auth_err(client.peer.send_auth(1, b"x")));
    wait_for("admission", || {
        tick(&mut [&mut server, &mut client]);
        server.has(&MultiplayerEvent::PeerConnected(id))
            && client.has(&MultiplayerEvent::PeerConnected(1))
    });
    // Admitted: nothing is pending any more.
    assert!(auth_err(server.peer.send_auth(id, b"x")));
    assert!(auth_err(server.peer.complete_auth(id)));
    assert!(auth_err(client.peer.send_auth(1, b"x")));
    assert!(auth_err(client.peer.complete_auth(1)));
    // None of these sent anything.
    assert!(
        client
            .events
            .iter()
            .all(|e| !matches!(e, MultiplayerEvent::AuthReceived { .. }))
    );
    assert!(
        server
            .events
            .iter()
            .all(|e| !matches!(e, MultiplayerEvent::AuthReceived { .. }))
    );

    // Without authentication, nobody is ever pending.
    let mut server = server_with(config(G4));
    let mut client = join(&mut server, config(G4));
    let id = client.id();
    assert!(auth_err(server.peer.send_auth(id, b"x")));
    assert!(auth_err(server.peer.complete_auth(id)));
    assert!(auth_err(client.peer.send_auth(1, b"x")));
    assert!(auth_err(client.peer.complete_auth(1)));
    assert!(server.peer.get_authenticating_peers().is_empty());
    assert!(client.peer.get_authenticating_peers().is_empty());
    tick(&mut [&mut server, &mut client]);
}

#[test]
fn a_pending_peer_that_leaves_fails_authentication_without_a_disconnect() {
    // A wspeer client closes while pending.
    let mut server = server_with(auth_config(TIMEOUT));
    let mut client = pending_client(&mut server, auth_config(TIMEOUT));
    let id = client.id();
    client.peer.close();
    wait_for("the server notices", || {
        tick(&mut [&mut server, &mut client]);
        server.has(&MultiplayerEvent::PeerAuthenticationFailed(id))
    });
    // A second, raw client vanishes without a close frame; a third stays, as a witness
    // that leaving pending peers are not announced.
    let mut raw = Raw::join(&mut server, G4);
    let r_id = raw.id;
    let mut witness = pending_client(&mut server, auth_config(TIMEOUT));
    admit(&mut server, &mut witness);
    wait_for("raw pending", || {
        tick(&mut [&mut server, &mut witness]);
        server.has(&MultiplayerEvent::PeerAuthenticating(r_id))
    });
    raw.ws.close(-1, "").unwrap();
    wait_for("the server notices the raw client", || {
        tick(&mut [&mut server, &mut witness]);
        raw.ws.poll();
        server.has(&MultiplayerEvent::PeerAuthenticationFailed(r_id))
    });
    flush_from(&mut [&mut server, &mut witness], 0);
    let w_id = witness.id();
    assert_eq!(
        server.events,
        [
            MultiplayerEvent::PeerAuthenticating(id),
            MultiplayerEvent::PeerAuthenticationFailed(id),
            MultiplayerEvent::PeerAuthenticating(r_id),
            MultiplayerEvent::PeerAuthenticating(w_id),
            MultiplayerEvent::PeerConnected(w_id),
            MultiplayerEvent::PeerAuthenticationFailed(r_id),
        ]
    );
    assert!(server.peer.get_authenticating_peers().is_empty());
    assert_eq!(server.peer.peer_ids(), [w_id]);
    assert_eq!(
        witness.events,
        [
            MultiplayerEvent::PeerAuthenticating(1),
            MultiplayerEvent::ConnectedToServer,
            MultiplayerEvent::PeerConnected(1),
        ]
    );
    // `close` reports nothing on the client that closed.
    assert!(client.events == [MultiplayerEvent::PeerAuthenticating(1)]);

    // A pending client that leaves with `disconnect_peer(1, false)` reports the failed
    // authentication and the end of its connection, as SceneMultiplayer does when the
    // transport of a pending server ends.
    let mut client = pending_client(&mut server, auth_config(TIMEOUT));
    let id = client.id();
    client.peer.disconnect_peer(1, false).unwrap();
    wait_for("both sides", || {
        tick(&mut [&mut server, &mut client, &mut witness]);
        server.has(&MultiplayerEvent::PeerAuthenticationFailed(id))
            && client.has(&MultiplayerEvent::ServerDisconnected)
    });
    assert_eq!(
        client.events,
        [
            MultiplayerEvent::PeerAuthenticating(1),
            MultiplayerEvent::PeerAuthenticationFailed(1),
            MultiplayerEvent::ServerDisconnected,
        ]
    );
    assert!(!server.has(&MultiplayerEvent::PeerDisconnected(id)));
}

// ----- RPCs between wspeer peers -----

/// Arguments both Godot versions carry.
fn shared_args() -> Vec<Variant> {
    let v2 = Vector2 { x: 1.0, y: -2.5 };
    let v3 = Vector3 {
        x: 1.0,
        y: 2.0,
        z: 3.5,
    };
    let basis = Basis {
        rows: [v3, Vector3::default(), v3],
    };
    let mut dictionary = Dictionary::new();
    dictionary.insert("k", true);
    dictionary.insert(2, vec![Variant::from("nested"), Variant::Nil]);
    vec![
        Variant::Nil,
        true.into(),
        false.into(),
        0.into(),
        7.into(),
        (-1).into(),
        300.into(),
        70000.into(),
        Variant::Int(1 << 40),
        Variant::Int(i64::MIN),
        1.5.into(),
        0.1.into(),
        "héllo".into(),
        "".into(),
        v2.into(),
        v3.into(),
        Rect2 {
            position: v2,
            size: v2,
        }
        .into(),
        Transform2D {
            x: v2,
            y: v2,
            origin: v2,
        }
        .into(),
        Plane { normal: v3, d: 4.0 }.into(),
        Quaternion {
            x: 0.0,
            y: 0.5,
            z: 0.0,
            w: 1.0,
        }
        .into(),
        Aabb {
            position: v3,
            size: v3,
        }
        .into(),
        basis.into(),
        Transform3D { basis, origin: v3 }.into(),
        Color {
            r: 1.0,
            g: 0.5,
            b: 0.0,
            a: 1.0,
        }
        .into(),
        NodePath::parse("Main/Player:position:x").into(),
        NodePath::parse("/root/Main").into(),
        Variant::Object(1288),
        vec![Variant::from(1), "a".into()].into(),
        Variant::Array(Array::new(vec![])),
        dictionary.into(),
        Variant::PackedByteArray(vec![1, 2, 3]),
        Variant::PackedByteArray(vec![]),
        Variant::PackedInt32Array(vec![1, -2, i32::MAX]),
        Variant::PackedFloat32Array(vec![0.5, -1.0]),
        Variant::PackedStringArray(vec!["ab".into(), "".into(), "ü".into()]),
        Variant::PackedVector2Array(vec![v2, v2]),
        Variant::PackedVector3Array(vec![v3]),
        Variant::PackedColorArray(vec![Color::default()]),
    ]
}

/// Arguments only Godot 4 carries.
fn godot4_args() -> Vec<Variant> {
    let v4 = Vector4 {
        x: 1.0,
        y: 2.0,
        z: 3.0,
        w: 4.0,
    };
    vec![
        Vector2i { x: -1, y: 2 }.into(),
        Vector3i { x: 1, y: 2, z: 3 }.into(),
        Rect2i::default().into(),
        v4.into(),
        Vector4i {
            x: 1,
            y: 2,
            z: 3,
            w: 4,
        }
        .into(),
        Variant::StringName("sn".into()),
        Variant::Rid(77),
        Variant::Callable,
        Variant::Signal {
            name: "hit".into(),
            object: 9,
        },
        Variant::PackedInt64Array(vec![i64::MAX, -1]),
        Variant::PackedFloat64Array(vec![0.1]),
        Variant::PackedVector4Array(vec![v4]),
        Variant::Array(Array::typed(
            ContainerType::Builtin(2),
            vec![1.into(), 2.into()],
        )),
    ]
}

fn arg_sets(protocol: MultiplayerProtocol) -> Vec<Vec<Variant>> {
    let mut sets = vec![
        vec![],
        // Godot 4 sends one PackedByteArray raw, without an argument count; an empty one
        // must still arrive as one argument.
        vec![Variant::PackedByteArray(vec![9, 8, 7])],
        vec![Variant::PackedByteArray(vec![])],
        vec![7.into()],
        shared_args(),
    ];
    sets.extend(shared_args().into_iter().map(|arg| vec![arg]));
    if protocol == G4 {
        sets.push(godot4_args());
        sets.extend(godot4_args().into_iter().map(|arg| vec![arg]));
    }
    sets
}

#[test]
fn rpcs_carry_every_argument_type_both_ways() {
    for protocol in BOTH {
        let mut server = server_with(config(protocol));
        let mut client = join(&mut server, config(protocol));
        let id = client.id();
        let sets = arg_sets(protocol);
        // Twice each: the first calls go with the full path, later ones with the cache id.
        for round in 0..2 {
            for (method, args) in [("echo", &sets[..]), ("net", &sets[..3])]
                .iter()
                .flat_map(|(m, sets)| sets.iter().map(move |a| (*m, a)))
            {
                client.peer.rpc_id(1, MAIN, method, args).unwrap();
                server.peer.rpc_id(id, MAIN, method, args).unwrap();
            }
            flush_all(&mut [&mut server, &mut client]);
            let expected = |from: i32| -> Vec<RemoteCall> {
                [("echo", &sets[..]), ("net", &sets[..3])]
                    .iter()
                    .flat_map(|(m, sets)| sets.iter().map(move |a| (*m, a)))
                    .map(|(method, args)| RemoteCall {
                        from,
                        node: MAIN.into(),
                        method: method.into(),
                        args: args.clone(),
                    })
                    .collect()
            };
            let got =
                |node: &Node| -> Vec<RemoteCall> { node.calls().into_iter().cloned().collect() };
            assert_eq!(got(&server), expected(id), "{protocol:?} round {round}");
            assert_eq!(got(&client), expected(1), "{protocol:?} round {round}");
            server.events.clear();
            client.events.clear();
        }
        // The server's broadcast.
        server.peer.rpc(MAIN, "echo", &["everyone".into()]).unwrap();
        wait_for("broadcast", || {
            tick(&mut [&mut server, &mut client]);
            client.has_call(1, MAIN, "echo", &["everyone".into()])
        });
        assert_eq!(server.peer.dropped_packets(), 0, "{protocol:?}");
        assert_eq!(client.peer.dropped_packets(), 0, "{protocol:?}");
    }
}

#[test]
fn rpcs_are_relayed_between_clients_with_the_original_sender() {
    for protocol in BOTH {
        let mut s = server_with(config(protocol));
        let mut a = join(&mut s, config(protocol));
        let mut b = join(&mut s, config(protocol));
        let mut c = join(&mut s, config(protocol));
        let (a_id, b_id, c_id) = (a.id(), b.id(), c.id());
        wait_for("everyone knows everyone", || {
            tick(&mut [&mut s, &mut a, &mut b, &mut c]);
            [&a, &b, &c].iter().all(|n| n.peer.peer_ids().len() == 3)
        });
        for round in 0..2 {
            let arg = |what: &str| vec![Variant::from(format!("{what} {round}"))];
            a.peer.rpc_id(b_id, MAIN, "echo", &arg("to b")).unwrap();
            a.peer.rpc_id(0, MAIN, "echo", &arg("to all")).unwrap();
            a.peer.rpc_id(-b_id, MAIN, "echo", &arg("not b")).unwrap();
            a.peer.rpc_id(1, MAIN, "echo", &arg("to s")).unwrap();
            // A node-level method, and a call from b to the others but a.
            a.peer.rpc_id(c_id, MAIN, "net", &arg("net to c")).unwrap();
            b.peer.rpc_id(-a_id, MAIN, "echo", &arg("b not a")).unwrap();
            // Everything sent and every confirmation arrived; the next round is cached.
            flush_all(&mut [&mut s, &mut a, &mut b, &mut c]);
            // Per sender: calls from one peer keep their order; between two, anything goes.
            let names = |node: &Node, from: i32| -> Vec<(String, Vec<Variant>)> {
                node.calls()
                    .iter()
                    .filter(|c| c.from == from)
                    .map(|c| (c.method.clone(), c.args.clone()))
                    .collect()
            };
            let echo = |what: &str| ("echo".to_string(), arg(what));
            let ctx = format!("{protocol:?} round {round}");
            assert_eq!(
                names(&s, a_id),
                [echo("to all"), echo("not b"), echo("to s")],
                "{ctx}"
            );
            assert_eq!(names(&s, b_id), [echo("b not a")], "{ctx}");
            assert_eq!(names(&b, a_id), [echo("to b"), echo("to all")], "{ctx}");
            assert_eq!(
                names(&c, a_id),
                [
                    echo("to all"),
                    echo("not b"),
                    ("net".to_string(), arg("net to c")),
                ],
                "{ctx}"
            );
            assert_eq!(names(&c, b_id), [echo("b not a")], "{ctx}");
            assert_eq!(s.calls().len(), 4, "{ctx}");
            assert_eq!(b.calls().len(), 2, "{ctx}");
            assert_eq!(c.calls().len(), 4, "{ctx}");
            assert!(a.calls().is_empty(), "{ctx}");
            for node in [&mut s, &mut a, &mut b, &mut c] {
                assert_eq!(node.peer.dropped_packets(), 0, "{protocol:?}");
                assert!(node.calls().iter().all(|call| call.node == MAIN));
                node.events.clear();
            }
        }
        // The server's calls to all but one.
        s.peer
            .rpc_id(-a_id, MAIN, "echo", &["s not a".into()])
            .unwrap();
        flush_all(&mut [&mut s, &mut a, &mut b, &mut c]);
        assert!(a.calls().is_empty());
        assert!(b.has_call(1, MAIN, "echo", &["s not a".into()]));
        assert!(c.has_call(1, MAIN, "echo", &["s not a".into()]));
    }
}

#[test]
fn rpc_modes_and_undeclared_targets() {
    const OWNED: &str = "/root/Owned";
    const OTHER: &str = "/root/Other";
    for protocol in BOTH {
        let mut s = server_with(config(protocol));
        // `a` knows a method `zzz` (Godot 4 id 3, beyond the server's table) and a node the
        // server does not have.
        let mut a = join(&mut s, config(protocol));
        a.peer
            .rpc_config(MAIN, main_node().method("zzz", RpcMode::AnyPeer));
        a.peer.rpc_config(OTHER, echo_node());
        let mut b = join(&mut s, config(protocol));
        let (a_id, b_id) = (a.id(), b.id());
        wait_for("a and b know each other", || {
            tick(&mut [&mut s, &mut a, &mut b]);
            a.peer.peer_ids().len() == 2 && b.peer.peer_ids().len() == 2
        });
        // A node whose authority is `a`.
        let owned = RpcNode::new()
            .method("secret", RpcMode::Authority)
            .authority(a_id);
        for node in [&mut s, &mut a, &mut b] {
            node.peer.rpc_config(OWNED, owned.clone());
        }
        assert_eq!(owned.get_authority(), a_id);

        // Sender-side refusals: undeclared method or node, unknown peer.
        for peer in [&mut s.peer, &mut a.peer] {
            let to = if peer.is_server() { a_id } else { 1 };
            assert!(matches!(
                peer.rpc_id(to, MAIN, "nope", &[]),
                Err(Error::Rpc(_))
            ));
            assert!(matches!(
                peer.rpc_id(to, "/root/Nope", "echo", &[]),
                Err(Error::Rpc(_))
            ));
            assert!(matches!(peer.rpc(MAIN, "nope", &[]), Err(Error::Rpc(_))));
            assert!(matches!(
                peer.rpc_id(424242, MAIN, "echo", &[]),
                Err(Error::PeerNotFound(424242))
            ));
        }
        assert!(matches!(
            s.peer.rpc_id(a_id, OTHER, "echo", &[]),
            Err(Error::Rpc(_))
        ));

        // Receiver-side refusals, each counted once.
        a.peer.rpc_id(1, MAIN, "secret", &[1.into()]).unwrap(); // a is not MAIN's authority
        a.peer.rpc_id(1, MAIN, "never", &[2.into()]).unwrap(); // disabled
        a.peer.rpc_id(1, MAIN, "zzz", &[3.into()]).unwrap(); // undeclared method
        a.peer.rpc_id(1, OTHER, "echo", &[4.into()]).unwrap(); // undeclared node
        b.peer.rpc_id(1, OWNED, "secret", &[5.into()]).unwrap(); // b is not OWNED's authority
        b.peer.rpc_id(a_id, OWNED, "secret", &[6.into()]).unwrap(); // nor on a
        s.peer.rpc_id(a_id, MAIN, "never", &[7.into()]).unwrap(); // disabled on a too
        // Accepted: the authority's calls.
        a.peer.rpc_id(1, OWNED, "secret", &[8.into()]).unwrap();
        a.peer.rpc_id(b_id, OWNED, "secret", &[9.into()]).unwrap();
        s.peer.rpc_id(a_id, MAIN, "secret", &[10.into()]).unwrap();
        s.peer.rpc_id(b_id, MAIN, "secret", &[11.into()]).unwrap();
        flush_all(&mut [&mut s, &mut a, &mut b]);
        let summary = |node: &Node| -> Vec<(i32, String, String, Vec<Variant>)> {
            node.calls()
                .iter()
                .map(|c| (c.from, c.node.clone(), c.method.clone(), c.args.clone()))
                .collect()
        };
        let call = |from: i32, node: &str, arg: i32| {
            (
                from,
                node.to_string(),
                "secret".to_string(),
                vec![arg.into()],
            )
        };
        assert_eq!(summary(&s), [call(a_id, OWNED, 8)], "{protocol:?}");
        assert_eq!(summary(&a), [call(1, MAIN, 10)], "{protocol:?}");
        // b's two calls come from two senders: in either order.
        let mut from_b = summary(&b);
        from_b.sort_by_key(|c| c.0);
        assert_eq!(
            from_b,
            [call(1, MAIN, 11), call(a_id, OWNED, 9)],
            "{protocol:?}"
        );
        assert_eq!(s.peer.dropped_packets(), 5, "{protocol:?}");
        assert_eq!(a.peer.dropped_packets(), 2, "{protocol:?}");
        assert_eq!(b.peer.dropped_packets(), 0, "{protocol:?}");
    }
}

// ----- the path cache and the other packets, byte for byte -----

#[test]
fn godot4_server_sends_the_full_path_until_confirmed_then_the_cache_id() {
    let mut server = server_with(config(G4));
    let mut raw = Raw::admitted(&mut server, G4);
    let id = raw.id;
    server.peer.rpc_id(id, MAIN, "echo", &[7.into()]).unwrap();
    // SIMPLIFY_PATH `01 md5 00 01000000 "Main" 00`, then the call with the path at 9.
    assert_eq!(raw.recv(&mut [&mut server]), simplify4(MAIN_MD5, 1, "Main"));
    let full = cat(&[
        &[0x20, 0x09, 0x00, 0x00, 0x80, ECHO, 0x01, 0x02, 0x07],
        b"Main\0",
    ]);
    assert_eq!(raw.recv(&mut [&mut server]), full);
    // Unconfirmed: the path again, no second SIMPLIFY_PATH; the node-level method has a
    // u16 id (meta 60).
    server.peer.rpc_id(id, MAIN, "echo", &[7.into()]).unwrap();
    server.peer.rpc_id(id, MAIN, "net", &[7.into()]).unwrap();
    server.peer.rpc_id(id, MAIN, "echo", &[]).unwrap();
    assert_eq!(raw.recv(&mut [&mut server]), full);
    assert_eq!(
        raw.recv(&mut [&mut server]),
        cat(&[
            &[0x60, 0x0a, 0x00, 0x00, 0x80, 0x00, 0x80, 0x01, 0x02, 0x07],
            b"Main\0"
        ])
    );
    assert_eq!(
        raw.recv(&mut [&mut server]),
        cat(&[&[0xa0, 0x06, 0x00, 0x00, 0x80, ECHO], b"Main\0"])
    );
    // CONFIRM_PATH `02 01 01000000`: from now on `00 01 ...`.
    raw.send(&confirm4(true, 1));
    assert!(raw.sync(&mut server).is_empty());
    server.peer.rpc_id(id, MAIN, "echo", &[7.into()]).unwrap();
    server
        .peer
        .rpc_id(id, MAIN, "net", &[true.into(), 300.into()])
        .unwrap();
    server
        .peer
        .rpc_id(id, MAIN, "echo", &[Variant::PackedByteArray(vec![1, 2, 3])])
        .unwrap();
    server.peer.rpc(MAIN, "echo", &[]).unwrap();
    assert_eq!(
        raw.recv(&mut [&mut server]),
        [0x00, 0x01, ECHO, 0x01, 0x02, 0x07]
    );
    assert_eq!(
        raw.recv(&mut [&mut server]),
        [0x40, 0x01, 0x00, 0x80, 0x02, 0x81, 0x42, 0x2c, 0x01]
    );
    assert_eq!(
        raw.recv(&mut [&mut server]),
        [0x80, 0x01, ECHO, 0x01, 0x02, 0x03]
    );
    assert_eq!(raw.recv(&mut [&mut server]), [0x80, 0x01, ECHO]);

    // The raw client's own calls, full path and then cached, arrive as the same call.
    raw.send(&call4_full(ECHO as u16, &[0x01, 0x02, 0x07], "Main"));
    raw.send(&simplify4(MAIN_MD5, 5, "Main"));
    raw.send(&call4_cached(5, ECHO, &[0x01, 0x02, 0x07]));
    raw.send(&cat(&[
        &[0x10],
        &5u16.to_le_bytes(),
        &[ECHO, 0x01, 0x02, 0x07],
    ]));
    raw.send(&cat(&[
        &[0x20],
        &5u32.to_le_bytes(),
        &[ECHO, 0x01, 0x02, 0x07],
    ]));
    raw.send(&cat(&[
        &[0x50],
        &5u16.to_le_bytes(),
        &0x8000u16.to_le_bytes(),
        &[0x01, 0x02, 0x07],
    ]));
    assert_eq!(raw.sync(&mut server), [confirm4(true, 5)]);
    let calls: Vec<(i32, &str, &str, &[Variant])> = server
        .calls()
        .iter()
        .map(|c| (c.from, c.node.as_str(), c.method.as_str(), &c.args[..]))
        .collect();
    let seven = [Variant::from(7)];
    let echo = (id, MAIN, "echo", &seven[..]);
    assert_eq!(
        calls,
        [echo, echo, echo, echo, (id, MAIN, "net", &seven[..])]
    );
    assert_eq!(server.peer.dropped_packets(), 0);
}

#[test]
fn godot4_client_sends_the_full_path_until_confirmed_then_the_cache_id() {
    let mut fake = common::server();
    let mut client = Node::new(peer_with(config(G4)));
    client
        .peer
        .create_client(&common::url(&fake, "/"), None)
        .unwrap();
    let client_id = 0x1234;
    let conn = connect_fake(
        &mut fake,
        &mut client,
        &[godot4::id_message(client_id).to_vec()],
    );
    let recv = |fake: &mut WebSocketServer, client: &mut Node| -> Vec<u8> {
        let mut message = None;
        wait_for("a message at the fake server", || {
            fake.poll();
            client.tick();
            message = fake.get_peer(conn).unwrap().get_packet();
            message.is_some()
        });
        message.unwrap()
    };
    client.peer.rpc_id(1, MAIN, "echo", &[7.into()]).unwrap();
    assert_eq!(recv(&mut fake, &mut client), simplify4(MAIN_MD5, 1, "Main"));
    let full = cat(&[
        &[0x20, 0x09, 0x00, 0x00, 0x80, ECHO, 0x01, 0x02, 0x07],
        b"Main\0",
    ]);
    assert_eq!(recv(&mut fake, &mut client), full);
    // The server confirms, then sends a RAW packet: once the client has it, it has the
    // confirmation too.
    let server_side = fake.get_peer(conn).unwrap();
    server_side.put_packet(&confirm4(true, 1)).unwrap();
    server_side.put_packet(&[0x03, 0x6d]).unwrap();
    wait_for("the marker", || {
        fake.poll();
        client.tick();
        client.got(1, b"m")
    });
    client.peer.rpc_id(1, MAIN, "echo", &[7.into()]).unwrap();
    assert_eq!(
        recv(&mut fake, &mut client),
        [0x00, 0x01, ECHO, 0x01, 0x02, 0x07]
    );
    assert_eq!(client.peer.dropped_packets(), 0);
}

/// Waits for `client` to reach the plain WebSocket server `fake`, sends it `greeting`, and
/// returns the connection's id on `fake` once the client reports itself connected.
fn connect_fake(fake: &mut WebSocketServer, client: &mut Node, greeting: &[Vec<u8>]) -> i32 {
    let mut conn = None;
    wait_for("the client at the fake server", || {
        fake.poll();
        while let Some(event) = fake.pop_event() {
            if let ServerEvent::ClientConnected { id, .. } = event {
                for message in greeting {
                    fake.get_peer(id).unwrap().put_packet(message).unwrap();
                }
                conn = Some(id);
            }
        }
        client.tick();
        client.has(&MultiplayerEvent::ConnectedToServer)
    });
    conn.unwrap()
}

#[test]
fn godot3_path_cache_both_directions_byte_for_byte() {
    // Server → raw client.
    let mut server = server_with(config(G3));
    let mut raw = Raw::admitted(&mut server, G3);
    let id = raw.id;
    let seven = [Variant::from(7)];
    server.peer.rpc_id(id, MAIN, "echo", &seven).unwrap();
    // `02 01000000 "Main" 00`, then `00 13000080 "echo" 00 01 <7> "Main" 00` (§6).
    assert_eq!(
        raw.recv(&mut [&mut server]),
        cat(&[&[0x02], &1u32.to_le_bytes(), b"Main\0"])
    );
    let full = call3_full("echo", &seven, "Main");
    assert_eq!(full[1..5], [0x13, 0x00, 0x00, 0x80]);
    assert_eq!(raw.recv(&mut [&mut server]), full);
    server.peer.rpc_id(id, MAIN, "echo", &seven).unwrap();
    assert_eq!(raw.recv(&mut [&mut server]), full);
    raw.send(&cat(&[&[0x03], b"Main\0"]));
    assert!(raw.sync(&mut server).is_empty());
    server.peer.rpc_id(id, MAIN, "echo", &seven).unwrap();
    server.peer.rpc_id(id, MAIN, "echo", &[]).unwrap();
    assert_eq!(
        raw.recv(&mut [&mut server]),
        call3_cached(1, "echo", &seven)
    );
    assert_eq!(
        raw.recv(&mut [&mut server]),
        cat(&[&[0x00], &1u32.to_le_bytes(), b"echo\0", &[0x00]])
    );
    // Raw client → server: full path, SIMPLIFY_PATH answered with CONFIRM_PATH, cached.
    raw.send(&call3_full("net", &seven, "Main"));
    raw.send(&cat(&[&[0x02], &9u32.to_le_bytes(), b"Main\0"]));
    raw.send(&call3_cached(9, "echo", &seven));
    assert_eq!(raw.sync(&mut server), [cat(&[&[0x03], b"Main\0"])]);
    assert!(server.has_call(id, MAIN, "net", &seven));
    assert!(server.has_call(id, MAIN, "echo", &seven));
    assert_eq!(server.calls().len(), 2);
    assert_eq!(server.peer.dropped_packets(), 0);

    // wspeer client → fake server.
    let mut fake = common::server();
    let mut client = Node::new(peer_with(config(G3)));
    client
        .peer
        .create_client(&common::url(&fake, "/"), None)
        .unwrap();
    let cid = 0x0203_0405;
    let conn = connect_fake(
        &mut fake,
        &mut client,
        &[
            godot3::sys(godot3::SYS_ID, cid).to_vec(),
            godot3::sys(godot3::SYS_ADD, 1).to_vec(),
        ],
    );
    let recv = |fake: &mut WebSocketServer, client: &mut Node| -> Vec<u8> {
        let mut message = None;
        wait_for("a message at the fake server", || {
            fake.poll();
            client.tick();
            message = fake.get_peer(conn).unwrap().get_packet();
            message.is_some()
        });
        let message = message.unwrap();
        let (header, payload) = godot3::parse(&message).unwrap();
        assert_eq!((header.kind, header.from, header.to), (0, cid, 1));
        payload.to_vec()
    };
    client.peer.rpc_id(1, MAIN, "echo", &seven).unwrap();
    assert_eq!(
        recv(&mut fake, &mut client),
        cat(&[&[0x02], &1u32.to_le_bytes(), b"Main\0"])
    );
    assert_eq!(recv(&mut fake, &mut client), full);
    let to_client = |packet: &[u8]| {
        godot3::message(
            godot3::Header {
                kind: godot3::SYS_NONE,
                from: 1,
                to: cid,
            },
            packet,
        )
    };
    let server_side = fake.get_peer(conn).unwrap();
    server_side
        .put_packet(&to_client(&cat(&[&[0x03], b"Main\0"])))
        .unwrap();
    server_side.put_packet(&to_client(&[0x04, 0x6d])).unwrap();
    wait_for("the marker", || {
        fake.poll();
        client.tick();
        client.got(1, b"m")
    });
    client.peer.rpc_id(1, MAIN, "echo", &seven).unwrap();
    assert_eq!(
        recv(&mut fake, &mut client),
        call3_cached(1, "echo", &seven)
    );
    assert_eq!(client.peer.dropped_packets(), 0);
}

#[test]
fn godot4_method_ids_outside_the_table_are_dropped() {
    let mut server = server_with(config(G4));
    let mut raw = Raw::join(&mut server, G4);
    let id = raw.id;
    let body = [0x01, 0x02, 0x07];
    raw.send(&call4_full(3, &body, "Main")); // script ids are 0..=2
    raw.send(&call4_full(255, &body, "Main"));
    raw.send(&call4_full(0x8001, &body, "Main")); // one node-level method: 0x8000
    raw.send(&call4_full(0x7fff, &body, "Main"));
    raw.send(&call4_full(NEVER as u16, &body, "Main")); // declared, but disabled
    raw.send(&call4_full(SECRET as u16, &body, "Main")); // the authority is 1
    raw.send(&call4_full(ECHO as u16, &body, "Other")); // no such node
    raw.send(&call4_cached(1, ECHO, &body)); // never cached
    raw.send(&call4_full(0x8000, &body, "Main")); // accepted
    assert!(raw.sync(&mut server).is_empty());
    assert_eq!(server.peer.dropped_packets(), 8);
    assert_eq!(server.calls().len(), 1);
    assert!(server.has_call(id, MAIN, "net", &[7.into()]));
}

#[test]
fn cached_paths_per_peer_are_bounded_and_ids_unique() {
    for protocol in BOTH {
        let mut config = config(protocol);
        config.max_cached_paths_per_peer = 2;
        let mut server = server_with(config);
        server.peer.rpc_config("/root/Second", echo_node());
        server.peer.rpc_config("/root/Third", echo_node());
        let mut raw = Raw::join(&mut server, protocol);
        let id = raw.id;
        let seven = [Variant::from(7)];
        let simplify = |id: u32, path: &str| match protocol {
            G3 => cat(&[&[0x02], &id.to_le_bytes(), &cstr(path)]),
            _ => {
                let md5 = if path == "Main" { MAIN_MD5 } else { ECHO_MD5 };
                simplify4(md5, id, path)
            }
        };
        let confirm = |id: u32, path: &str| match protocol {
            G3 => cat(&[&[0x03], &cstr(path)]),
            _ => confirm4(true, id),
        };
        let full = |path: &str| match protocol {
            G3 => call3_full("echo", &seven, path),
            _ => call4_full(0, &[0x01, 0x02, 0x07], path),
        };
        let cached = |id: u32| match protocol {
            G3 => call3_cached(id, "echo", &seven),
            _ => call4_cached(id as u8, 0, &[0x01, 0x02, 0x07]),
        };
        raw.send(&simplify(1, "Main")); // kept
        raw.send(&simplify(1, "Second")); // id 1 is taken: refused
        raw.send(&simplify(2, "Second")); // kept: the second and last
        raw.send(&simplify(3, "Third")); // over the bound: refused
        raw.send(&cached(3)); // so id 3 means nothing
        raw.send(&full("Third")); // the full path still works
        raw.send(&cached(1));
        raw.send(&cached(2));
        assert_eq!(
            raw.sync(&mut server),
            [confirm(1, "Main"), confirm(2, "Second")],
            "{protocol:?}"
        );
        assert_eq!(server.peer.dropped_packets(), 3, "{protocol:?}");
        let nodes: Vec<&str> = server.calls().iter().map(|c| c.node.as_str()).collect();
        assert_eq!(nodes, ["/root/Third", MAIN, "/root/Second"], "{protocol:?}");
        assert!(
            server
                .calls()
                .iter()
                .all(|c| c.from == id && c.args == seven)
        );
    }
}

#[test]
fn godot4_checksum_mismatch_is_confirmed_as_invalid() {
    let mut server = server_with(config(G4));
    let mut raw = Raw::join(&mut server, G4);
    let id = raw.id;
    let wrong = "0123456789abcdef0123456789abcdef";
    raw.send(&simplify4(wrong, 1, "Main"));
    raw.send(&simplify4(MAIN_MD5, 2, "Main"));
    // `02 00 <id>` for the mismatch, `02 01 <id>` for the match.
    assert_eq!(
        raw.sync(&mut server),
        [
            [0x02, 0x00, 0x01, 0x00, 0x00, 0x00].to_vec(),
            [0x02, 0x01, 0x02, 0x00, 0x00, 0x00].to_vec()
        ]
    );
    // The mismatched entry is cached all the same, as in Godot.
    raw.send(&call4_cached(1, ECHO, &[0x01, 0x02, 0x07]));
    assert!(raw.sync(&mut server).is_empty());
    assert!(server.has_call(id, MAIN, "echo", &[7.into()]));
    assert_eq!(server.peer.dropped_packets(), 0);
    // The library's checksum agrees with the one computed outside it.
    let table = RpcTable::with_node_methods(&["echo", "never", "secret"], &["net"]);
    assert_eq!(table.checksum(), MAIN_MD5);
    assert_eq!(RpcTable::new(&["echo"]).checksum(), ECHO_MD5);
}

#[test]
fn godot4_legacy_confirm_path_by_name_is_accepted() {
    let mut server = server_with(config(G4));
    let mut raw = Raw::admitted(&mut server, G4);
    let id = raw.id;
    server.peer.rpc_id(id, MAIN, "echo", &[7.into()]).unwrap();
    assert_eq!(raw.recv(&mut [&mut server]), simplify4(MAIN_MD5, 1, "Main"));
    assert_eq!(raw.recv(&mut [&mut server])[0], 0x20);
    // Godot 4.0–4.2: `02 01 "Main" 00`.
    raw.send(&cat(&[&[0x02, 0x01], b"Main\0"]));
    assert!(raw.sync(&mut server).is_empty());
    server.peer.rpc_id(id, MAIN, "echo", &[7.into()]).unwrap();
    assert_eq!(
        raw.recv(&mut [&mut server]),
        [0x00, 0x01, ECHO, 0x01, 0x02, 0x07]
    );
    // A confirmation of a path never sent, by name or id, is dropped.
    raw.send(&cat(&[&[0x02, 0x01], b"Nowhere\0"]));
    raw.send(&confirm4(true, 9));
    assert!(raw.sync(&mut server).is_empty());
    assert_eq!(server.peer.dropped_packets(), 2);
}

#[test]
fn godot4_replication_packets_arrive_whole() {
    let mut server = server_with(config(G4));
    let mut witness = join(&mut server, config(G4));
    let w_id = witness.id();
    let mut raw = Raw::join(&mut server, G4);
    let id = raw.id;
    wait_for("everyone admitted", || {
        tick(&mut [&mut server, &mut witness]);
        witness.has(&MultiplayerEvent::PeerConnected(id))
    });
    assert_eq!(
        raw.recv(&mut [&mut server, &mut witness]),
        scene::add_peer(w_id)
    );
    // The reference's examples (§4.6): spawn, despawn, sync, delta sync.
    let spawn = cat(&[
        &[0x04, 0x00],
        &2u32.to_le_bytes(),
        &1u32.to_le_bytes(),
        &1u32.to_le_bytes(),
        &7u32.to_le_bytes(),
        &2u32.to_le_bytes(),
        b"Player\0",
        &[0x05, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40],
    ]);
    let despawn = vec![0x05, 0x01, 0x00, 0x00, 0x00];
    let sync = vec![
        0x06, 0x05, 0x00, 0x02, 0x00, 0x00, 0x80, 0x02, 0x00, 0x00, 0x00, 0x02, 0x07,
    ];
    let delta = cat(&[
        &[0x16],
        &1u32.to_le_bytes(),
        &1u64.to_le_bytes(),
        &2u32.to_le_bytes(),
        &[0x02, 0x07],
    ]);
    let packets = [spawn, despawn, sync, delta];
    for packet in &packets {
        raw.send(packet);
    }
    // Relayed to the witness, they arrive with the original sender.
    raw.send_to(w_id, &packets[1]);
    raw.send_to(0, &packets[2]);
    assert!(raw.sync(&mut server).is_empty());
    flush_from(&mut [&mut server, &mut witness], 0);
    let replication = |node: &Node| -> Vec<(i32, Vec<u8>)> {
        node.events
            .iter()
            .filter_map(|e| match e {
                MultiplayerEvent::Replication { from, packet } => Some((*from, packet.clone())),
                _ => None,
            })
            .collect()
    };
    let mut expected: Vec<(i32, Vec<u8>)> = packets.iter().map(|p| (id, p.clone())).collect();
    expected.push((id, packets[2].clone()));
    assert_eq!(replication(&server), expected);
    assert_eq!(
        replication(&witness),
        [(id, packets[1].clone()), (id, packets[2].clone())]
    );
    assert!(server.packets.is_empty() && witness.packets.is_empty());
    assert_eq!(server.peer.dropped_packets(), 0);
    assert_eq!(witness.peer.dropped_packets(), 0);
}

#[test]
fn put_var_and_get_var_round_trip() {
    for protocol in BOTH {
        let mut server = server_with(config(protocol));
        server.read = false;
        let mut client = join(&mut server, config(protocol));
        client.read = false;
        let id = client.id();
        assert!(server.peer.get_var().is_none());
        let mut values = shared_args();
        if protocol == G4 {
            values.extend(godot4_args());
        }
        values.push(Variant::from(shared_args()));
        client.peer.set_target_peer(1);
        server.peer.set_target_peer(id);
        for value in &values {
            client.peer.put_var(value).unwrap();
            server.peer.put_var(value).unwrap();
        }
        // A value that does not decode, and one followed by stray bytes.
        client
            .peer
            .send_bytes(&[0xff, 0xff, 0xff, 0xff], 1)
            .unwrap();
        client.peer.send_bytes(&[0x02, 0x00, 0x00], 1).unwrap();
        let seven = match protocol {
            G3 => Variant::from(7).to_godot3_bytes().unwrap(),
            _ => Variant::from(7).to_godot4_bytes().unwrap(),
        };
        client
            .peer
            .send_bytes(&cat(&[&seven, &[0, 0, 0, 0]]), 1)
            .unwrap();
        client.peer.send_bytes(&seven, 1).unwrap();
        let total = values.len() + 4;
        wait_for("every value", || {
            tick(&mut [&mut server, &mut client]);
            server.peer.get_available_packet_count() == total
                && client.peer.get_available_packet_count() == values.len()
        });
        for value in &values {
            assert_eq!(server.peer.get_packet_peer(), Some(id));
            assert_eq!(
                server.peer.get_var(),
                Some(Ok(value.clone())),
                "{protocol:?}"
            );
            assert_eq!(
                client.peer.get_var(),
                Some(Ok(value.clone())),
                "{protocol:?}"
            );
        }
        for _ in 0..3 {
            assert!(
                matches!(server.peer.get_var(), Some(Err(_))),
                "{protocol:?}"
            );
        }
        assert_eq!(server.peer.get_var(), Some(Ok(7.into())));
        assert!(server.peer.get_var().is_none());
        assert!(client.peer.get_var().is_none());
    }
}

#[test]
fn godot4_transport_has_no_rpc_layer() {
    let transport = MultiplayerProtocol::Godot4Transport;
    let mut server = server_with(config(transport));
    let mut client = join(&mut server, config(transport));
    let id = client.id();
    assert!(matches!(
        server.peer.rpc_id(id, MAIN, "echo", &[]),
        Err(Error::Rpc(_))
    ));
    assert!(matches!(
        server.peer.rpc(MAIN, "echo", &[]),
        Err(Error::Rpc(_))
    ));
    assert!(matches!(
        client.peer.rpc_id(1, MAIN, "echo", &[]),
        Err(Error::Rpc(_))
    ));
    // put_var still works (Godot 4 Variants), and RPC-looking bytes are plain packets.
    client.peer.set_target_peer(1);
    client.peer.put_var(&Variant::from("v")).unwrap();
    client
        .peer
        .send_bytes(&call4_full(0, &[0x01, 0x02, 0x07], "Main"), 1)
        .unwrap();
    wait_for("both packets", || {
        tick(&mut [&mut server, &mut client]);
        server.packets.len() == 2
    });
    assert_eq!(
        Variant::from_godot4_bytes(&server.packets[0].1),
        Ok("v".into())
    );
    assert!(server.calls().is_empty());
}

#[test]
fn an_rpc_that_cannot_be_encoded_sends_nothing() {
    for protocol in BOTH {
        let mut server = server_with(config(protocol));
        let mut client = join(&mut server, config(protocol));
        let id = client.id();
        let too_many = vec![Variant::Nil; 256];
        assert!(client.peer.rpc_id(1, MAIN, "echo", &too_many).is_err());
        if protocol == G3 {
            // A Godot 4 type in Godot 3.
            assert!(matches!(
                client
                    .peer
                    .rpc_id(1, MAIN, "echo", &[Vector2i::default().into()]),
                Err(Error::Variant(_))
            ));
        }
        let max = vec![Variant::Nil; 255];
        client.peer.rpc_id(1, MAIN, "echo", &max).unwrap();
        server.peer.rpc_id(id, MAIN, "echo", &max).unwrap();
        flush_all(&mut [&mut server, &mut client]);
        assert_eq!(server.calls().len(), 1);
        assert_eq!(server.calls()[0].args.len(), 255);
        assert_eq!(client.calls().len(), 1);
        assert_eq!(server.peer.dropped_packets(), 0);
    }
}
