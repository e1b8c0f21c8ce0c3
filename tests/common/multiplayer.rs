//! `WebSocketMultiplayerPeer`s in process on 127.0.0.1, polled together like a game loop,
//! each with everything it reported.

use std::time::{Duration, Instant};

use wspeer::{
    MultiplayerConfig, MultiplayerEvent, MultiplayerPeer, MultiplayerProtocol,
    WebSocketMultiplayerPeer, WebSocketPeer,
};

use super::TIMEOUT;

/// A multiplayer peer with everything it reported so far.
pub struct Node {
    pub peer: WebSocketMultiplayerPeer,
    pub events: Vec<MultiplayerEvent>,
    pub packets: Vec<(i32, Vec<u8>)>,
    /// Whether `tick` drains the packet queue (off to test the queue limits, or to read
    /// with `get_var`).
    pub read: bool,
}

impl Node {
    pub fn new(peer: WebSocketMultiplayerPeer) -> Node {
        Node {
            peer,
            events: Vec::new(),
            packets: Vec::new(),
            read: true,
        }
    }

    pub fn id(&self) -> i32 {
        self.peer.get_unique_id()
    }

    pub fn tick(&mut self) {
        self.peer.poll();
        while let Some(event) = self.peer.pop_event() {
            self.events.push(event);
        }
        while self.read {
            let Some(packet) = self.peer.recv() else {
                break;
            };
            self.packets.push(packet);
        }
    }

    pub fn got(&self, from: i32, data: &[u8]) -> bool {
        self.packets.iter().any(|(f, d)| *f == from && d == data)
    }

    pub fn has(&self, event: &MultiplayerEvent) -> bool {
        self.events.contains(event)
    }

    pub fn url(&self) -> String {
        format!(
            "ws://{}/",
            self.peer.local_addr().expect("a listening server")
        )
    }
}

pub fn config(protocol: MultiplayerProtocol) -> MultiplayerConfig {
    MultiplayerConfig {
        protocol,
        ..MultiplayerConfig::default()
    }
}

/// `peer` as a server on 127.0.0.1 with an ephemeral port.
pub fn listening(mut peer: WebSocketMultiplayerPeer) -> Node {
    peer.create_server(0, "127.0.0.1", None)
        .expect("create_server");
    Node::new(peer)
}

/// `client` (connecting to `server`) and `server` polled until both report the connection.
pub fn wait_joined(server: &mut Node, client: &mut Node) {
    wait_for("client connected", || {
        tick(&mut [server, client]);
        client.has(&MultiplayerEvent::ConnectedToServer)
            && server.has(&MultiplayerEvent::PeerConnected(client.id()))
    });
}

pub fn tick(nodes: &mut [&mut Node]) {
    for node in nodes.iter_mut() {
        node.tick();
    }
}

/// Calls `step` (which polls and checks) until it returns true or TIMEOUT passes.
pub fn wait_for(what: &str, mut step: impl FnMut() -> bool) {
    let start = Instant::now();
    while !step() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// The next message `ws` receives, polling `nodes` meanwhile.
pub fn next_message(ws: &mut WebSocketPeer, nodes: &mut [&mut Node]) -> Vec<u8> {
    let mut message = None;
    wait_for("a message", || {
        tick(nodes);
        ws.poll();
        message = ws.get_packet();
        message.is_some()
    });
    message.unwrap()
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
