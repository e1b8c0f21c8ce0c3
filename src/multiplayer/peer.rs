//! `WebSocketMultiplayerPeer`: the server and client sides of Godot's multiplayer
//! transport, their peer lists, the shared inbound queue and the relay.

#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::net::{IpAddr, SocketAddr};
#[cfg(target_arch = "wasm32")]
use std::time::Duration;
#[cfg(not(target_arch = "wasm32"))]
use std::time::{Duration, Instant};
#[cfg(target_arch = "wasm32")]
use web_time::Instant;

use super::RpcNode;
use super::codec::{Codec, FromServer};
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use super::routing::{self, Addressing, Deliver, Source};
use super::scene::{Flavor, Received, Scene};
use super::wire::scene as scene_wire;
use super::{
    ConnectionStatus, MultiplayerEvent, MultiplayerPeer, TARGET_PEER_BROADCAST, TARGET_PEER_SERVER,
    TransferMode,
};
use crate::config::{ServerConfig, check_handshake_timeout};
use crate::error::Error;
#[cfg(not(target_arch = "wasm32"))]
use crate::peer::WebSocketPeer;
#[cfg_attr(target_arch = "wasm32", allow(unused_imports))]
use crate::proto::{Packet, State};
#[cfg(not(target_arch = "wasm32"))]
use crate::server::{ServerEvent, WebSocketServer};
#[cfg(not(target_arch = "wasm32"))]
use crate::sources::SourceToken;
#[cfg(not(target_arch = "wasm32"))]
use crate::tls::TlsOptions;
use crate::variant::{GodotVersion, Limits, Variant, VariantError};
#[cfg(target_arch = "wasm32")]
use crate::web::WebSocketPeer;

/// Which Godot multiplayer protocol a [`WebSocketMultiplayerPeer`] speaks. Both ends must
/// use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MultiplayerProtocol {
    /// What a Godot 4 game speaks: the `WebSocketMultiplayerPeer` transport (the id as the
    /// first message) with the `SceneMultiplayer` layer on top. The server announces peers
    /// (`[07 01 id]` / `[07 02 id]`) and relays client-to-client packets (`[07 03 ...]`);
    /// packets are RAW packets (`[03 ...]`, Godot's `send_bytes` / `peer_packet`), so
    /// `put_packet` / `get_packet` carry only the user bytes.
    #[default]
    Godot4,
    /// Godot 4's bare `WebSocketMultiplayerPeer` transport, byte for byte: the id message,
    /// then every packet exactly as put, with no announcements and no relay (clients only
    /// reach the server). For applications that bring their own layer.
    Godot4Transport,
    /// Godot 3's `WebSocketServer` / `WebSocketClient` with `gd_mp_api = true`: a 9-byte
    /// header on every message, id and peer announcements as `SYS_ID` / `SYS_ADD` /
    /// `SYS_DEL`, relay by the `to` field. Packets are Godot 3 RAW packets (`[04 ...]`,
    /// `send_bytes` / `network_peer_packet`).
    Godot3,
}

impl MultiplayerProtocol {
    /// The Variant format of this protocol's Godot version.
    fn variant_version(self) -> GodotVersion {
        match self {
            MultiplayerProtocol::Godot3 => GodotVersion::Godot3,
            MultiplayerProtocol::Godot4 | MultiplayerProtocol::Godot4Transport => {
                GodotVersion::Godot4
            }
        }
    }
}

/// Settings of a [`WebSocketMultiplayerPeer`]. They apply at the next `create_server` /
/// `create_client`.
#[derive(Clone, Debug)]
pub struct MultiplayerConfig {
    /// The WebSocket settings (sub-protocols, headers, buffer sizes, heartbeat, close
    /// timeout) of every connection, and the listener's limits. Its `handshake_timeout`
    /// (Godot: 3 s) also bounds a client's time from `create_client` to knowing its id.
    pub websocket: ServerConfig,
    /// The wire protocol; [`MultiplayerProtocol::Godot4`] by default.
    pub protocol: MultiplayerProtocol,
    /// Server only: announce clients to each other and pass packets between them (Godot's
    /// `SceneMultiplayer.server_relay`, default on). Off: each client sees only the server;
    /// packets addressed to other clients are dropped (the server still gets its share of
    /// a broadcast). No effect with [`MultiplayerProtocol::Godot4Transport`], which never
    /// relays.
    pub server_relay: bool,
    /// Most received packets waiting in the shared queue for `get_packet`, counting the
    /// queued events that carry received data (RPCs, authentication payloads,
    /// replication). When it is full, reading from the connections pauses (their own
    /// queues fill, then TCP pushes back on the senders); nothing is dropped.
    pub max_inbound_packets: usize,
    /// Most payload bytes waiting in the shared queue, with the packets behind those
    /// events; reading pauses once they are reached (the last packet read may overshoot
    /// by one message).
    pub max_inbound_bytes: usize,
    /// Godot 4's `SceneMultiplayer` authentication (what setting `auth_callback` turns on),
    /// on both sides; [`MultiplayerProtocol::Godot4`] only. A new connection is *pending*:
    /// nothing but authentication packets is accepted from it, it is not announced, and
    /// it is admitted ([`PeerConnected`](crate::MultiplayerEvent::PeerConnected)) once this
    /// side called [`complete_auth`](WebSocketMultiplayerPeer::complete_auth) and the other
    /// side completed too. Off by default, as in Godot; both ends must agree.
    pub authentication: bool,
    /// How long a peer may stay pending (`SceneMultiplayer.auth_timeout`, 3 s); then its
    /// connection is closed and
    /// [`PeerAuthenticationFailed`](crate::MultiplayerEvent::PeerAuthenticationFailed) is
    /// reported. Zero: no limit.
    pub auth_timeout: Duration,
    /// The multiplayer root (`SceneMultiplayer.root_path`, `/root`): node paths travel
    /// relative to it (`/root/Main` → `Main`).
    pub root_path: String,
    /// Most node paths one peer may ask this side to remember (`SIMPLIFY_PATH`); a peer
    /// that sends more gets the rest refused (logged and counted) and keeps sending full
    /// paths for those nodes. Godot has no such bound.
    pub max_cached_paths_per_peer: usize,
    /// Bounds on the Variants this side decodes (RPC arguments, `get_var`).
    pub variant_limits: Limits,
}

impl Default for MultiplayerConfig {
    fn default() -> Self {
        MultiplayerConfig {
            websocket: ServerConfig::default(),
            protocol: MultiplayerProtocol::default(),
            server_relay: true,
            max_inbound_packets: 4096,
            max_inbound_bytes: 4 * 1024 * 1024,
            authentication: false,
            auth_timeout: Duration::from_secs(3),
            root_path: "/root".into(),
            max_cached_paths_per_peer: 4096,
            variant_limits: Limits::default(),
        }
    }
}

impl MultiplayerConfig {
    fn validate(&self) -> Result<(), Error> {
        if self.max_inbound_packets == 0 {
            return Err(Error::InvalidConfig(
                "max_inbound_packets must be at least 1".into(),
            ));
        }
        if self.max_inbound_bytes == 0 {
            return Err(Error::InvalidConfig(
                "max_inbound_bytes must be at least 1".into(),
            ));
        }
        if self.authentication && self.protocol != MultiplayerProtocol::Godot4 {
            return Err(Error::InvalidConfig(format!(
                "authentication is part of Godot 4's SceneMultiplayer: it needs \
                 MultiplayerProtocol::Godot4, not {:?}",
                self.protocol
            )));
        }
        if !self.root_path.starts_with('/') {
            return Err(Error::InvalidConfig(format!(
                "root_path must be an absolute node path, not {:?}",
                self.root_path
            )));
        }
        if self.max_cached_paths_per_peer == 0 {
            return Err(Error::InvalidConfig(
                "max_cached_paths_per_peer must be at least 1".into(),
            ));
        }
        check_handshake_timeout(self.websocket.handshake_timeout)
    }

    /// The RPC layer of this protocol, with `nodes` declared (none for the bare transport).
    fn scene(&self, nodes: &[(String, RpcNode)]) -> Option<Scene> {
        let flavor = match self.protocol {
            MultiplayerProtocol::Godot4 => Flavor::Godot4,
            MultiplayerProtocol::Godot3 => Flavor::Godot3,
            MultiplayerProtocol::Godot4Transport => return None,
        };
        let mut scene = Scene::new(
            flavor,
            &self.root_path,
            self.max_cached_paths_per_peer,
            self.variant_limits,
        );
        for (path, node) in nodes {
            scene.declare(path, node.clone());
        }
        Some(scene)
    }

    /// When a peer that starts pending must have completed authentication.
    fn auth_deadline(&self) -> Option<Instant> {
        (!self.auth_timeout.is_zero()).then(|| Instant::now() + self.auth_timeout)
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Whether the server tells clients about each other.
    fn announces_peers(&self) -> bool {
        routing::announces_peers(self.protocol, self.server_relay)
    }
}

/// Received packets and events, shared by both roles. Events that carry received data
/// (RPCs, authentication payloads, replication) count against the same limits as packets,
/// with the size of the packet they came in.
#[derive(Default)]
struct Inbox {
    packets: VecDeque<(i32, Vec<u8>)>,
    /// Bytes of the queued packets and of the packets behind the queued events.
    bytes: usize,
    /// Each event, with the size of the packet behind it for those that carry data.
    events: VecDeque<(MultiplayerEvent, Option<usize>)>,
    /// Queued events that carry received data.
    data_events: usize,
    dropped: u64,
}

impl Inbox {
    fn has_room(&self, config: &MultiplayerConfig) -> bool {
        self.packets.len() + self.data_events < config.max_inbound_packets
            && self.bytes < config.max_inbound_bytes
    }

    fn push(&mut self, from: i32, data: &[u8]) {
        self.bytes += data.len();
        self.packets.push_back((from, data.to_vec()));
    }

    fn pop(&mut self) -> Option<(i32, Vec<u8>)> {
        let (from, data) = self.packets.pop_front()?;
        self.bytes -= data.len();
        Some((from, data))
    }

    /// Counts and logs a packet that will not be delivered. Godot logs these as errors
    /// too; a flood of them costs one log line each, never memory.
    fn reject(&mut self, from: i32, why: impl fmt::Display) {
        self.dropped += 1;
        log::warn!("dropped a packet from peer {from}: {why}");
    }

    fn event(&mut self, event: MultiplayerEvent) {
        self.events.push_back((event, None));
    }

    /// An event carrying received data that came in a packet of `size` bytes.
    fn data_event(&mut self, event: MultiplayerEvent, size: usize) {
        self.bytes += size;
        self.data_events += 1;
        self.events.push_back((event, Some(size)));
    }

    fn pop_event(&mut self) -> Option<MultiplayerEvent> {
        let (event, size) = self.events.pop_front()?;
        if let Some(size) = size {
            self.bytes -= size;
            self.data_events -= 1;
        }
        Some(event)
    }

    fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.events.clear();
        self.data_events = 0;
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Sends one WebSocket message to server-side peer `id`.
fn send_to(server: &mut WebSocketServer, id: i32, bytes: &[u8]) -> Result<(), Error> {
    server
        .get_peer(id)
        .ok_or(Error::PeerNotFound(id))?
        .put_packet(bytes)
}

/// The authentication state of a pending peer (Godot 4's `pending_peers`).
struct Pending {
    /// When it must have been admitted (`auth_timeout`).
    deadline: Option<Instant>,
    /// This side called `complete_auth`.
    local: bool,
    /// The other side's `[07 00]` arrived.
    remote: bool,
}

impl Pending {
    fn new(config: &MultiplayerConfig) -> Pending {
        Pending {
            deadline: config.auth_deadline(),
            local: false,
            remote: false,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
    }
}

/// The payload of a Godot 4 authentication packet `[07 00 payload]`.
fn auth_payload(packet: &[u8]) -> Option<&[u8]> {
    match packet {
        [scene_wire::CMD_SYS, scene_wire::SYS_AUTH, payload @ ..] => Some(payload),
        _ => None,
    }
}

/// An authentication packet: `[07 00] + payload` (an empty payload completes this side).
fn auth_packet(payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![scene_wire::CMD_SYS, scene_wire::SYS_AUTH];
    packet.extend_from_slice(payload);
    packet
}

/// A packet this side keeps, from peer `from`: RAW bytes go to the queue, RPCs and
/// replication packets become events, path-cache packets update `scene` (its replies wait
/// in `scene.outgoing`). Without an RPC layer (the bare transport) the packet is queued.
fn deliver(
    from: i32,
    framed: &[u8],
    scene: Option<&mut Scene>,
    codec: &dyn Codec,
    inbox: &mut Inbox,
) {
    let Some(scene) = scene else {
        match codec.open(framed) {
            Ok(bytes) => inbox.push(from, bytes),
            Err(why) => inbox.reject(from, why),
        }
        return;
    };
    if scene.flavor() == Flavor::Godot4 && auth_payload(framed).is_some() {
        // SceneMultiplayer ignores authentication packets once a peer is admitted.
        log::debug!("authentication packet from admitted peer {from} ignored");
        return;
    }
    let size = framed.len();
    match scene.receive(from, framed) {
        Ok(Received::Raw(bytes)) => inbox.push(from, bytes),
        Ok(Received::Call(call)) => {
            inbox.data_event(MultiplayerEvent::RemoteCall(Box::new(call)), size)
        }
        Ok(Received::Set(set)) => {
            inbox.data_event(MultiplayerEvent::RemoteSet(Box::new(set)), size)
        }
        Ok(Received::Replication(packet)) => {
            inbox.data_event(MultiplayerEvent::Replication { from, packet }, size)
        }
        Ok(Received::Handled) => {}
        Err(refused) => inbox.reject(from, refused),
    }
}

/// Turns the RPC layer's refusal to send into the crate's error.
fn call_error(e: super::scene::CallError) -> Error {
    match e {
        super::scene::CallError::Packet(super::rpc::RpcError::Argument { error, .. }) => {
            Error::Variant(error)
        }
        other => Error::Rpc(other.to_string()),
    }
}

fn no_rpc_layer() -> Error {
    Error::Rpc(
        "MultiplayerProtocol::Godot4Transport has no RPC layer (use Godot4 or Godot3)".into(),
    )
}

#[cfg(not(target_arch = "wasm32"))]
/// The server role.
struct Host {
    server: WebSocketServer,
    /// Clients that received their id and were announced, in id order (as Godot's set).
    peers: BTreeSet<i32>,
    /// Peers whose packets wait in their own queue because the shared queue was full.
    backlog: Vec<i32>,
    /// Peers closed by `disconnect_peer(id, false)`: reported gone at the next poll.
    leaving: Vec<i32>,
    /// Clients that have their id but are still authenticating.
    pending: BTreeMap<i32, Pending>,
    /// The RPC layer (none for the bare transport).
    scene: Option<Scene>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Host {
    fn poll(&mut self, inbox: &mut Inbox, config: &MultiplayerConfig, wait: Option<Duration>) {
        match wait {
            Some(max_wait) => self.server.poll_with_timeout(max_wait),
            None => self.server.poll(),
        }
        for id in std::mem::take(&mut self.leaving) {
            self.forget(id, inbox, config, true);
        }
        let now = Instant::now();
        let expired: Vec<i32> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.expired(now))
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            log::info!("peer {id} did not complete authentication within auth_timeout");
            self.pending.remove(&id);
            let _ = self.server.disconnect_peer(id, 1000, "");
            inbox.event(MultiplayerEvent::PeerAuthenticationFailed(id));
        }
        for id in std::mem::take(&mut self.backlog) {
            match self.pending.contains_key(&id) {
                true => self.pull_auth(id, inbox, config),
                false => self.pull(id, inbox, config),
            }
        }
        while let Some(event) = self.server.pop_event() {
            match event {
                ServerEvent::UpgradeRequested {
                    id,
                    request,
                    address,
                } => inbox.event(MultiplayerEvent::UpgradeRequested {
                    id,
                    request,
                    address,
                }),
                ServerEvent::SourceReady {
                    token,
                    readable,
                    writable,
                    read_closed,
                    write_closed,
                    error,
                } => inbox.event(MultiplayerEvent::SourceReady {
                    token,
                    readable,
                    writable,
                    read_closed,
                    write_closed,
                    error,
                }),
                ServerEvent::Woken => inbox.event(MultiplayerEvent::Woken),
                ServerEvent::ClientConnected { id, .. } => self.greet(id, inbox, config),
                ServerEvent::DataReceived { id } if self.pending.contains_key(&id) => {
                    self.pull_auth(id, inbox, config)
                }
                ServerEvent::DataReceived { id } => self.pull(id, inbox, config),
                // Godot drops a peer as soon as it is no longer open: a close request is
                // the end. What it sent before still reaches the queue.
                ServerEvent::ClientCloseRequest { id, .. }
                | ServerEvent::ClientDisconnected { id, .. } => {
                    if self.pending.remove(&id).is_some() {
                        // SceneMultiplayer::_del_peer on a pending peer.
                        inbox.event(MultiplayerEvent::PeerAuthenticationFailed(id));
                        continue;
                    }
                    self.pull(id, inbox, config);
                    self.forget(id, inbox, config, true);
                }
            }
        }
    }

    /// Sends a client that finished its WebSocket handshake its id, then admits it, or
    /// with authentication on, leaves it pending.
    fn greet(&mut self, id: i32, inbox: &mut Inbox, config: &MultiplayerConfig) {
        let codec = config.protocol.codec();
        for message in &codec.greeting(id) {
            if let Err(e) = send_to(&mut self.server, id, message) {
                log::warn!("cannot send peer {id} its id ({e}); dropping the connection");
                let _ = self.server.disconnect_peer(id, -1, "");
                return;
            }
        }
        if config.authentication {
            self.pending.insert(id, Pending::new(config));
            inbox.event(MultiplayerEvent::PeerAuthenticating(id));
        } else {
            self.admit(id, inbox, config);
        }
    }

    /// Whether client `id` is connected, admitted or still authenticating.
    fn knows(&self, id: i32) -> bool {
        self.peers.contains(&id) || self.pending.contains_key(&id)
    }

    /// Reads a pending client's packets: authentication only, until it is admitted.
    fn pull_auth(&mut self, id: i32, inbox: &mut Inbox, config: &MultiplayerConfig) {
        while let Some(packet) = self.next_packet(id, inbox, config) {
            match auth_payload(packet.data()) {
                Some([]) => {
                    if let Some(pending) = self.pending.get_mut(&id) {
                        pending.remote = true;
                        if pending.local {
                            self.pending.remove(&id);
                            self.admit(id, inbox, config);
                            // What follows the admission is ordinary traffic.
                            return self.pull(id, inbox, config);
                        }
                    }
                }
                Some(payload) => inbox.data_event(
                    MultiplayerEvent::AuthReceived {
                        id,
                        data: payload.to_vec(),
                    },
                    payload.len(),
                ),
                None => inbox.reject(id, "a packet before authentication completed"),
            }
        }
    }

    /// This side's authentication payload for pending client `id`.
    fn send_auth(&mut self, id: i32, data: &[u8]) -> Result<(), Error> {
        let pending = self
            .pending
            .get(&id)
            .ok_or_else(|| Error::Auth(format!("peer {id} is not authenticating")))?;
        if pending.local {
            return Err(Error::Auth(format!(
                "authentication with peer {id} was already completed on this side"
            )));
        }
        if pending.remote {
            // As Godot's send_auth: the other side takes no more payloads.
            return Err(Error::Auth(format!(
                "peer {id} already completed its side of the authentication"
            )));
        }
        if data.is_empty() {
            return Err(Error::Auth(
                "an empty payload would read as completion; use complete_auth".into(),
            ));
        }
        send_to(&mut self.server, id, &auth_packet(data))
    }

    /// Completes this side of client `id`'s authentication; admits it if its side is done.
    fn complete_auth(
        &mut self,
        id: i32,
        inbox: &mut Inbox,
        config: &MultiplayerConfig,
    ) -> Result<(), Error> {
        let pending = self
            .pending
            .get_mut(&id)
            .ok_or_else(|| Error::Auth(format!("peer {id} is not authenticating")))?;
        if pending.local {
            return Err(Error::Auth(format!(
                "authentication with peer {id} was already completed on this side"
            )));
        }
        send_to(&mut self.server, id, &auth_packet(&[]))?;
        pending.local = true;
        if pending.remote {
            self.pending.remove(&id);
            self.admit(id, inbox, config);
            self.pull(id, inbox, config);
        }
        Ok(())
    }

    /// Announces client `id` and reports it connected.
    fn admit(&mut self, id: i32, inbox: &mut Inbox, config: &MultiplayerConfig) {
        let codec = config.protocol.codec();
        if config.announces_peers() {
            let joined = codec.announcement(true, id);
            for &other in &self.peers {
                for (to, message) in [
                    (other, joined.clone()),
                    (id, codec.announcement(true, other)),
                ] {
                    if let Err(e) = send_to(&mut self.server, to, &message) {
                        log::warn!("cannot announce a peer to peer {to}: {e}");
                    }
                }
            }
        }
        self.peers.insert(id);
        inbox.event(MultiplayerEvent::PeerConnected(id));
    }

    /// Removes a client: announces its departure and, unless forced, reports it.
    fn forget(&mut self, id: i32, inbox: &mut Inbox, config: &MultiplayerConfig, report: bool) {
        if !self.peers.remove(&id) {
            return;
        }
        if let Some(scene) = &mut self.scene {
            scene.peer_left(id);
        }
        self.backlog.retain(|&p| p != id);
        let unread = self
            .server
            .get_peer(id)
            .map_or(0, |peer| peer.get_available_packet_count());
        if unread > 0 {
            inbox.dropped += unread as u64;
            log::debug!("{unread} unread packet(s) from peer {id} discarded: it left");
        }
        if config.announces_peers() {
            let left = config.protocol.codec().announcement(false, id);
            for &other in &self.peers {
                if let Err(e) = send_to(&mut self.server, other, &left) {
                    log::warn!("cannot announce a departure to peer {other}: {e}");
                }
            }
        }
        if report {
            inbox.event(MultiplayerEvent::PeerDisconnected(id));
        }
    }

    /// Moves client `id`'s packets into the shared queue while it has room.
    fn pull(&mut self, id: i32, inbox: &mut Inbox, config: &MultiplayerConfig) {
        if !self.peers.contains(&id) {
            return;
        }
        while let Some(packet) = self.next_packet(id, inbox, config) {
            self.handle(id, packet.data(), inbox, config);
        }
    }

    /// Client `id`'s next packet, if the shared queue has room for what it may bring;
    /// without room the client waits in the backlog, its packets in its own queue.
    fn next_packet(
        &mut self,
        id: i32,
        inbox: &Inbox,
        config: &MultiplayerConfig,
    ) -> Option<Packet> {
        let peer = self.server.get_peer(id)?;
        if peer.get_available_packet_count() == 0 {
            return None;
        }
        if !inbox.has_room(config) {
            if !self.backlog.contains(&id) {
                self.backlog.push(id);
            }
            return None;
        }
        peer.recv()
    }

    /// One message from client `from`: relayed to the clients its destination selects,
    /// and kept when the server is among them.
    fn handle(&mut self, from: i32, data: &[u8], inbox: &mut Inbox, config: &MultiplayerConfig) {
        let codec = config.protocol.codec();
        let packet = match codec.read_client(from, data) {
            Ok(packet) => packet,
            Err(why) => return inbox.reject(from, why),
        };
        let route = routing::route(
            config.protocol,
            config.server_relay,
            from,
            packet.to,
            &self.peers,
        );
        let route = match route {
            Ok(route) => route,
            Err(refusal) => return inbox.reject(from, refusal),
        };
        if route.deliver != Deliver::Nobody {
            let relayed = codec.relayed(from, data, packet.framed);
            for to in route.deliver.recipients(&self.peers) {
                if let Err(e) = send_to(&mut self.server, to, &relayed) {
                    inbox.reject(from, format_args!("cannot relay to peer {to}: {e}"));
                }
            }
        }
        if route.keep {
            deliver(from, packet.framed, self.scene.as_mut(), codec, inbox);
            self.send_replies(config);
        }
    }

    /// Sends what the RPC layer queued (path confirmations).
    fn send_replies(&mut self, config: &MultiplayerConfig) {
        let Some(scene) = &mut self.scene else {
            return;
        };
        for (target, packet) in std::mem::take(&mut scene.outgoing) {
            if let Err(e) = self.send_upper(target, &packet, config) {
                log::warn!("cannot answer peer {target}: {e}");
            }
        }
    }

    /// The clients `target` (an id, 0, or `-id`) selects; an unknown id is an error.
    fn deliver_to(&self, target: i32) -> Result<Deliver, Error> {
        routing::server_send(target, &self.peers).map_err(|_| Error::PeerNotFound(target))
    }

    /// The application's packet, from the server to the target.
    fn put(&mut self, target: i32, data: &[u8], config: &MultiplayerConfig) -> Result<(), Error> {
        let deliver = self.deliver_to(target)?;
        let message = config.protocol.codec().server_packet(target, data);
        self.send_message(deliver, &message)
    }

    /// A packet of the layer above the transport (RPC, path cache), to the target.
    fn send_upper(
        &mut self,
        target: i32,
        packet: &[u8],
        config: &MultiplayerConfig,
    ) -> Result<(), Error> {
        let deliver = self.deliver_to(target)?;
        let message = config.protocol.codec().server_message(target, packet);
        self.send_message(deliver, &message)
    }

    /// An RPC from the server to `target` (an id, 0 for every client, `-id` for all but one).
    fn rpc(
        &mut self,
        target: i32,
        call: (&str, &str, &[Variant]),
        config: &MultiplayerConfig,
    ) -> Result<(), Error> {
        let deliver = self.deliver_to(target)?;
        let recipients: Vec<i32> = deliver.recipients(&self.peers).collect();
        let scene = self.scene.as_mut().ok_or_else(no_rpc_layer)?;
        let (node, method, args) = call;
        let packets = scene
            .call(target, &recipients, node, method, args)
            .map_err(call_error)?;
        send_all(packets, target, |to, packet| {
            self.send_upper(to, packet, config)
        })
    }

    fn send_message(&mut self, deliver: Deliver, message: &[u8]) -> Result<(), Error> {
        if let Deliver::One(id) = deliver {
            return send_to(&mut self.server, id, message);
        }
        // As Godot: a broadcast goes to every peer that can take it; one full queue does
        // not stop the others.
        for id in deliver.recipients(&self.peers) {
            if let Err(e) = send_to(&mut self.server, id, message) {
                log::warn!("broadcast not delivered to peer {id}: {e}");
            }
        }
        Ok(())
    }
}

/// Sends an RPC's packets: an error for a call to one peer is returned; for a broadcast,
/// a peer that cannot take its packet is skipped (logged), as with `put_packet`.
fn send_all(
    packets: Vec<(i32, Vec<u8>)>,
    target: i32,
    mut send: impl FnMut(i32, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    for (to, packet) in packets {
        if let Err(e) = send(to, &packet) {
            if target > 0 {
                return Err(e);
            }
            log::warn!("RPC not delivered to peer {to}: {e}");
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Connecting, or waiting for our id.
    Joining,
    /// We have our id; the server is pending until both sides complete authentication.
    Authenticating,
    Connected,
    /// The connection ended; the socket may still be finishing its close handshake.
    Ended,
}

/// The client role.
struct Guest {
    socket: WebSocketPeer,
    deadline: Instant,
    phase: Phase,
    unique_id: i32,
    /// Other clients the server announced.
    peers: BTreeSet<i32>,
    /// `disconnect_peer(1, false)` was called: reported gone at the next poll.
    leaving: bool,
    /// The protocol the connection started with: the order of its events depends on it.
    protocol: MultiplayerProtocol,
    /// The server's authentication state while [`Phase::Authenticating`].
    auth: Option<Pending>,
    /// The RPC layer (none for the bare transport).
    scene: Option<Scene>,
}

impl Guest {
    fn poll(&mut self, inbox: &mut Inbox, config: &MultiplayerConfig, error: &mut Option<Error>) {
        self.socket.poll();
        if self.phase == Phase::Ended {
            return;
        }
        if self.leaving {
            return self.end(inbox);
        }
        while self.socket.get_available_packet_count() > 0 {
            if self.phase != Phase::Joining && !inbox.has_room(config) {
                break;
            }
            let Some(packet) = self.socket.recv() else {
                break;
            };
            self.handle(packet.data(), inbox, config, error);
            if self.phase == Phase::Ended {
                return;
            }
        }
        if self.phase == Phase::Authenticating
            && self
                .auth
                .as_ref()
                .is_some_and(|auth| auth.expired(Instant::now()))
        {
            return self.fail(
                Error::Auth(format!(
                    "not admitted by the server within auth_timeout ({:?})",
                    config.auth_timeout
                )),
                inbox,
                error,
            );
        }
        if self.phase == Phase::Joining && Instant::now() >= self.deadline {
            let timeout = config.websocket.handshake_timeout;
            return self.fail(
                Error::Handshake(format!(
                    "the server did not send our peer id within the handshake timeout \
                     ({timeout:?})"
                )),
                inbox,
                error,
            );
        }
        // Packets that arrived before the close are delivered first.
        if self.socket.get_ready_state() == State::Closed
            && self.socket.get_available_packet_count() == 0
        {
            self.end(inbox);
        }
    }

    /// One message from the server.
    fn handle(
        &mut self,
        data: &[u8],
        inbox: &mut Inbox,
        config: &MultiplayerConfig,
        error: &mut Option<Error>,
    ) {
        const SERVER: i32 = TARGET_PEER_SERVER;
        if self.phase == Phase::Ended {
            return;
        }
        let joining = self.phase == Phase::Joining;
        let connected = self.phase == Phase::Connected;
        let codec = config.protocol.codec();
        let message = match codec.read_server(joining, data) {
            Ok(message) => message,
            Err(dropped) => return inbox.reject(dropped.from, dropped.why),
        };
        if self.phase == Phase::Authenticating {
            return match message {
                FromServer::Auth(payload) => self.receive_auth(payload, inbox),
                // SceneMultiplayer drops everything from a peer not yet admitted.
                _ => inbox.reject(SERVER, "a packet before authentication completed"),
            };
        }
        match message {
            FromServer::Welcome(Ok(id)) if config.authentication => {
                self.unique_id = id;
                self.phase = Phase::Authenticating;
                self.auth = Some(Pending::new(config));
                inbox.event(MultiplayerEvent::PeerAuthenticating(SERVER));
            }
            FromServer::Welcome(Ok(id)) => self.connected(id, inbox),
            FromServer::Auth(_) => {
                log::debug!("authentication packet from the server ignored: not authenticating")
            }
            FromServer::Welcome(Err(e)) => self.fail(
                Error::Handshake(format!("invalid peer id from the server: {e}")),
                inbox,
                error,
            ),
            FromServer::AssignedId(id) if joining && id >= 2 => self.unique_id = id,
            FromServer::Accepted if joining && self.unique_id >= 2 => {
                self.connected(self.unique_id, inbox)
            }
            FromServer::Accepted => inbox.reject(SERVER, "unexpected SYS_ADD for the server"),
            FromServer::PeerJoined(id) if connected => self.add_peer(id, inbox),
            FromServer::PeerLeft(id) if connected => self.del_peer(id, inbox),
            other @ (FromServer::AssignedId(_)
            | FromServer::PeerJoined(_)
            | FromServer::PeerLeft(_)) => inbox.reject(
                SERVER,
                format_args!("system message {other:?} out of order"),
            ),
            FromServer::Packet { from, framed } => {
                self.receive(from, framed, codec, inbox);
                self.send_replies(config);
            }
        }
    }

    /// A packet from `from`, still in `codec`'s framing.
    fn receive(&mut self, from: Source, framed: &[u8], codec: &dyn Codec, inbox: &mut Inbox) {
        let id = from.id();
        if self.phase != Phase::Connected {
            return inbox.reject(id, "data before the server accepted us");
        }
        if !routing::client_accepts(from, &self.peers) {
            return inbox.reject(id, "data from a peer the server never announced");
        }
        deliver(id, framed, self.scene.as_mut(), codec, inbox);
    }

    /// The server's authentication packet while it is pending.
    fn receive_auth(&mut self, payload: &[u8], inbox: &mut Inbox) {
        let Some(auth) = &mut self.auth else {
            return;
        };
        if !payload.is_empty() {
            return inbox.data_event(
                MultiplayerEvent::AuthReceived {
                    id: TARGET_PEER_SERVER,
                    data: payload.to_vec(),
                },
                payload.len(),
            );
        }
        auth.remote = true;
        if auth.local {
            self.connected(self.unique_id, inbox);
        }
    }

    /// This side's authentication payload for the server.
    fn send_auth(&mut self, id: i32, data: &[u8]) -> Result<(), Error> {
        let auth = self.pending_server(id)?;
        if auth.local {
            return Err(Error::Auth(
                "authentication with the server was already completed on this side".into(),
            ));
        }
        if auth.remote {
            // As Godot's send_auth: the other side takes no more payloads.
            return Err(Error::Auth(
                "the server already completed its side of the authentication".into(),
            ));
        }
        if data.is_empty() {
            return Err(Error::Auth(
                "an empty payload would read as completion; use complete_auth".into(),
            ));
        }
        self.socket.put_packet(&auth_packet(data))
    }

    /// Completes this side of the authentication; admits the server if its side is done.
    fn complete_auth(&mut self, id: i32, inbox: &mut Inbox) -> Result<(), Error> {
        let auth = self.pending_server(id)?;
        if auth.local {
            return Err(Error::Auth(
                "authentication with the server was already completed on this side".into(),
            ));
        }
        self.socket.put_packet(&auth_packet(&[]))?;
        let auth = self.pending_server(id)?;
        auth.local = true;
        if auth.remote {
            self.connected(self.unique_id, inbox);
        }
        Ok(())
    }

    fn pending_server(&mut self, id: i32) -> Result<&mut Pending, Error> {
        match (&mut self.auth, self.phase) {
            (Some(auth), Phase::Authenticating) if id == TARGET_PEER_SERVER => Ok(auth),
            _ => Err(Error::Auth(format!("peer {id} is not authenticating"))),
        }
    }

    /// Sends what the RPC layer queued (path confirmations).
    fn send_replies(&mut self, config: &MultiplayerConfig) {
        let Some(scene) = &mut self.scene else {
            return;
        };
        for (target, packet) in std::mem::take(&mut scene.outgoing) {
            if let Err(e) = self.send_upper(target, &packet, config) {
                log::warn!("cannot answer peer {target}: {e}");
            }
        }
    }

    /// The peers `target` selects: the server and the announced clients.
    fn recipients(&self, target: i32) -> Result<Vec<i32>, Error> {
        let known = std::iter::once(TARGET_PEER_SERVER).chain(self.peers.iter().copied());
        match target {
            TARGET_PEER_BROADCAST => Ok(known.collect()),
            id if id == TARGET_PEER_SERVER || self.peers.contains(&id) => Ok(vec![id]),
            id if id > 0 => Err(Error::PeerNotFound(id)),
            excluded => Ok(known.filter(|&id| id != -excluded).collect()),
        }
    }

    /// An RPC to `target` (1 the server, a client id, 0 everyone, `-id` all but one).
    fn rpc(
        &mut self,
        target: i32,
        call: (&str, &str, &[Variant]),
        config: &MultiplayerConfig,
    ) -> Result<(), Error> {
        if self.phase != Phase::Connected || self.leaving {
            return Err(Error::NotOpen);
        }
        let recipients = self.recipients(target)?;
        let scene = self.scene.as_mut().ok_or_else(no_rpc_layer)?;
        let (node, method, args) = call;
        let packets = scene
            .call(target, &recipients, node, method, args)
            .map_err(call_error)?;
        send_all(packets, target, |to, packet| {
            self.send_upper(to, packet, config)
        })
    }

    /// A packet of the layer above the transport (RPC, path cache), to the target.
    fn send_upper(
        &mut self,
        target: i32,
        packet: &[u8],
        config: &MultiplayerConfig,
    ) -> Result<(), Error> {
        if self.phase != Phase::Connected || self.leaving {
            return Err(Error::NotOpen);
        }
        let to: Addressing = routing::client_send(config.protocol, target, &self.peers)
            .map_err(|_| Error::PeerNotFound(target))?;
        let message = config
            .protocol
            .codec()
            .client_message(self.unique_id, to, packet);
        self.socket.put_packet(&message)
    }

    fn add_peer(&mut self, id: i32, inbox: &mut Inbox) {
        if id < 2 || id == self.unique_id {
            return inbox.reject(
                TARGET_PEER_SERVER,
                format_args!("announced invalid peer id {id}"),
            );
        }
        if self.peers.insert(id) {
            inbox.event(MultiplayerEvent::PeerConnected(id));
        }
    }

    fn del_peer(&mut self, id: i32, inbox: &mut Inbox) {
        if self.peers.remove(&id) {
            if let Some(scene) = &mut self.scene {
                scene.peer_left(id);
            }
            inbox.event(MultiplayerEvent::PeerDisconnected(id));
        }
    }

    fn connected(&mut self, id: i32, inbox: &mut Inbox) {
        self.unique_id = id;
        self.phase = Phase::Connected;
        self.auth = None;
        let joined = MultiplayerEvent::PeerConnected(TARGET_PEER_SERVER);
        let accepted = MultiplayerEvent::ConnectedToServer;
        let order = match self.protocol {
            // Godot 3's client emits peer_connected(1) first, then connection_succeeded.
            MultiplayerProtocol::Godot3 => [joined, accepted],
            // SceneMultiplayer::_admit_peer(1): connected_to_server, then peer_connected.
            MultiplayerProtocol::Godot4 | MultiplayerProtocol::Godot4Transport => {
                [accepted, joined]
            }
        };
        for event in order {
            inbox.event(event);
        }
    }

    fn fail(&mut self, why: Error, inbox: &mut Inbox, error: &mut Option<Error>) {
        log::warn!("multiplayer connection failed: {why}");
        *error = Some(why);
        self.end(inbox);
    }

    /// Reports the end of the connection and lets the socket finish closing.
    fn end(&mut self, inbox: &mut Inbox) {
        match self.phase {
            Phase::Joining => inbox.event(MultiplayerEvent::ConnectionFailed),
            // As SceneMultiplayer: the pending server fails authentication, and since the
            // transport was connected, the end is a disconnection.
            Phase::Authenticating => {
                inbox.event(MultiplayerEvent::PeerAuthenticationFailed(
                    TARGET_PEER_SERVER,
                ));
                inbox.event(MultiplayerEvent::ServerDisconnected);
            }
            Phase::Connected => {
                // Godot 4's transport reports peer_disconnected(1), which SceneMultiplayer
                // passes on before its status turns to server_disconnected; Godot 3's
                // client reports no peer at all. Either way the other clients are forgotten
                // without an event each.
                if self.protocol != MultiplayerProtocol::Godot3 {
                    inbox.event(MultiplayerEvent::PeerDisconnected(TARGET_PEER_SERVER));
                }
                inbox.event(MultiplayerEvent::ServerDisconnected);
            }
            Phase::Ended => return,
        }
        self.quiet_end();
    }

    /// Ends without events (Godot's forced disconnect).
    fn quiet_end(&mut self) {
        self.phase = Phase::Ended;
        self.auth = None;
        if let Some(scene) = &mut self.scene {
            scene.reset();
        }
        self.peers.clear();
        self.unique_id = 0;
        self.leaving = false;
        if self.socket.get_ready_state() != State::Closed {
            let _ = self.socket.close(1000, "");
        }
    }

    fn put(&mut self, target: i32, data: &[u8], config: &MultiplayerConfig) -> Result<(), Error> {
        if self.phase != Phase::Connected || self.leaving {
            return Err(Error::NotOpen);
        }
        let to = routing::client_send(config.protocol, target, &self.peers)
            .map_err(|_| Error::PeerNotFound(target))?;
        let message = config
            .protocol
            .codec()
            .client_packet(self.unique_id, to, data);
        self.socket.put_packet(&message)
    }
}

enum Role {
    Idle,
    #[cfg(not(target_arch = "wasm32"))]
    Server(Box<Host>),
    Client(Box<Guest>),
}

/// Godot's `WebSocketMultiplayerPeer`: a [`MultiplayerPeer`] over WebSocket, as a server
/// (id 1) hosting clients or as a client of such a server, Godot 4 or Godot 3 compatible.
///
#[cfg_attr(
    not(target_arch = "wasm32"),
    doc = "The server uses a [`WebSocketServer`], so its client ids are unpredictable, never
repeated, and in 2..=2³¹−1."
)]
#[cfg_attr(
    target_arch = "wasm32",
    doc = "On wasm32 it is a client only: a page cannot listen."
)]
/// Everything happens in [`poll`](MultiplayerPeer::poll).
///
/// ```
/// use wspeer::{MultiplayerEvent, MultiplayerPeer, WebSocketMultiplayerPeer};
///
/// let mut server = WebSocketMultiplayerPeer::new();
/// server.create_server(0, "127.0.0.1", None)?;
/// let url = format!("ws://{}", server.local_addr().unwrap());
/// let mut client = WebSocketMultiplayerPeer::new();
/// client.create_client(&url, None)?;
///
/// let mut sent = false;
/// loop {
///     server.poll();
///     client.poll();
///     while let Some(event) = client.pop_event() {
///         if event == MultiplayerEvent::ConnectedToServer {
///             client.send_bytes(b"hello", 1)?; // to the server
///             sent = true;
///         }
///     }
///     if let Some((from, packet)) = server.recv() {
///         assert_eq!((from, &packet[..]), (client.get_unique_id(), &b"hello"[..]));
///         break;
///     }
///     std::thread::sleep(std::time::Duration::from_millis(1));
/// }
/// assert!(sent);
/// # Ok::<(), wspeer::Error>(())
/// ```
pub struct WebSocketMultiplayerPeer {
    config: MultiplayerConfig,
    role: Role,
    inbox: Inbox,
    target_peer: i32,
    transfer_mode: TransferMode,
    transfer_channel: u8,
    refusing: bool,
    last_error: Option<Error>,
    /// The RPC nodes declared with `rpc_config`, kept across connections.
    rpc_nodes: Vec<(String, RpcNode)>,
}

impl Default for WebSocketMultiplayerPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WebSocketMultiplayerPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketMultiplayerPeer")
            .field("protocol", &self.config.protocol)
            .field("status", &self.get_connection_status())
            .field("unique_id", &self.get_unique_id())
            .field("packets", &self.inbox.packets.len())
            .finish_non_exhaustive()
    }
}

impl WebSocketMultiplayerPeer {
    /// A disconnected peer with Godot's defaults ([`MultiplayerProtocol::Godot4`], relay on).
    pub fn new() -> Self {
        Self::with_config(MultiplayerConfig::default())
    }

    /// A disconnected peer with the given settings.
    pub fn with_config(config: MultiplayerConfig) -> Self {
        WebSocketMultiplayerPeer {
            config,
            role: Role::Idle,
            inbox: Inbox::default(),
            target_peer: TARGET_PEER_BROADCAST,
            transfer_mode: TransferMode::Reliable,
            transfer_channel: 0,
            refusing: false,
            last_error: None,
            rpc_nodes: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &MultiplayerConfig {
        &self.config
    }

    /// Changes the settings; they apply at the next `create_server` / `create_client`.
    pub fn config_mut(&mut self) -> &mut MultiplayerConfig {
        &mut self.config
    }

    fn check_idle(&self) -> Result<(), Error> {
        if self.get_connection_status() == ConnectionStatus::Disconnected {
            Ok(())
        } else {
            Err(Error::AlreadyInUse)
        }
    }

    fn reset(&mut self) {
        self.role = Role::Idle;
        self.inbox.clear();
        self.last_error = None;
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Starts a server on `bind` (an IP address, `"*"` for every interface, or
    /// `"localhost"`) and `port` (`0`: any free port, see
    /// [`local_addr`](Self::local_addr)), serving `wss://` with server `tls` options.
    /// The server is connected at once, with id 1.
    pub fn create_server(
        &mut self,
        port: u16,
        bind: &str,
        tls: Option<TlsOptions>,
    ) -> Result<(), Error> {
        self.check_idle()?;
        self.config.validate()?;
        let mut server = WebSocketServer::try_with_config(self.config.websocket.clone())?;
        server.set_tls_options(tls)?;
        server.set_refuse_new_connections(self.refusing);
        server.listen_on(bind, port)?;
        self.reset();
        self.role = Role::Server(Box::new(Host {
            server,
            peers: BTreeSet::new(),
            backlog: Vec::new(),
            leaving: Vec::new(),
            pending: BTreeMap::new(),
            scene: self.config.scene(&self.rpc_nodes),
        }));
        Ok(())
    }

    /// Starts connecting to a server at a `ws://` or `wss://` URL (`tls`: client options
    /// for `wss://`, `None` for the default trust store). The status is
    /// [`ConnectionStatus::Connecting`] until the server sends our id, which must happen
    /// within the handshake timeout.
    #[cfg_attr(
        target_arch = "wasm32",
        doc = "\n\nOn wasm32 there is no `tls` parameter: the browser does `wss://` with its own trust store."
    )]
    pub fn create_client(
        &mut self,
        url: &str,
        #[cfg(not(target_arch = "wasm32"))] tls: Option<TlsOptions>,
    ) -> Result<(), Error> {
        self.check_idle()?;
        self.config.validate()?;
        let mut socket = WebSocketPeer::with_config(self.config.websocket.peer.clone());
        #[cfg(not(target_arch = "wasm32"))]
        socket.connect_to_url(url, tls)?;
        #[cfg(target_arch = "wasm32")]
        socket.connect_to_url(url)?;
        self.reset();
        self.role = Role::Client(Box::new(Guest {
            socket,
            deadline: Instant::now() + self.config.websocket.handshake_timeout,
            phase: Phase::Joining,
            unique_id: 0,
            peers: BTreeSet::new(),
            leaving: false,
            protocol: self.config.protocol,
            auth: None,
            scene: self.config.scene(&self.rpc_nodes),
        }));
        Ok(())
    }

    // ----- RPCs, Variants and authentication -----

    /// Declares the RPC methods of the node at `path` (absolute, `/root/Main`, or relative
    /// to the multiplayer root), replacing an earlier declaration of that node. Godot 4
    /// numbers methods by their sorted names, so declare every `@rpc` method the Godot side
    /// has on that node (see [`RpcNode`]). Calls to undeclared nodes or methods are refused
    /// both ways. Takes effect at once, and is kept for later connections.
    pub fn rpc_config(&mut self, path: &str, node: RpcNode) {
        self.rpc_nodes.retain(|(p, _)| p != path);
        self.rpc_nodes.push((path.to_string(), node.clone()));
        let scene = match &mut self.role {
            Role::Idle => None,
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.scene.as_mut(),
            Role::Client(guest) => guest.scene.as_mut(),
        };
        if let Some(scene) = scene {
            scene.declare(path, node);
        }
    }

    /// Calls `method` on the node at `path` of peer `peer` with `args` (Godot's
    /// `node.rpc_id(peer, method, args…)`): `peer` is an id, `0` for every peer, or `-id`
    /// for every peer but `id`. The first call for a node sends each peer its path-cache
    /// entry (`SIMPLIFY_PATH`); until a peer confirms it, that peer's calls carry the full
    /// path. Calls arrive as [`MultiplayerEvent::RemoteCall`] on the other side. Fails for
    /// an undeclared node or method, an argument the protocol's Variant format cannot
    /// hold, an unknown peer, or a full outbound buffer (for a single peer; a broadcast
    /// skips, and logs, peers that cannot take it).
    pub fn rpc_id(
        &mut self,
        peer: i32,
        path: &str,
        method: &str,
        args: &[Variant],
    ) -> Result<(), Error> {
        let call = (path, method, args);
        match &mut self.role {
            Role::Idle => Err(Error::NotOpen),
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.rpc(peer, call, &self.config),
            Role::Client(guest) => guest.rpc(peer, call, &self.config),
        }
    }

    /// Calls `method` on the node at `path` of every peer (Godot's `node.rpc(method, …)`).
    pub fn rpc(&mut self, path: &str, method: &str, args: &[Variant]) -> Result<(), Error> {
        self.rpc_id(TARGET_PEER_BROADCAST, path, method, args)
    }

    /// Sends an authentication payload to pending peer `id` (Godot's
    /// `SceneMultiplayer.send_auth`; a client sends to the server, 1). Needs
    /// [`MultiplayerConfig::authentication`]; fails once either side completed (as Godot:
    /// the other side's `complete_auth` ends its payloads too).
    pub fn send_auth(&mut self, id: i32, data: &[u8]) -> Result<(), Error> {
        match &mut self.role {
            Role::Idle => Err(Error::NotOpen),
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.send_auth(id, data),
            Role::Client(guest) => guest.send_auth(id, data),
        }
    }

    /// Completes this side of pending peer `id`'s authentication (Godot's
    /// `SceneMultiplayer.complete_auth`). The peer is admitted, and reported with
    /// [`MultiplayerEvent::PeerConnected`], once its side has completed too.
    pub fn complete_auth(&mut self, id: i32) -> Result<(), Error> {
        match &mut self.role {
            Role::Idle => Err(Error::NotOpen),
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.complete_auth(id, &mut self.inbox, &self.config),
            Role::Client(guest) => guest.complete_auth(id, &mut self.inbox),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server, with `websocket.decide_upgrades`: accepts the upgrade request of `id` (after
    /// [`MultiplayerEvent::UpgradeRequested`]) as
    /// [`WebSocketServer::accept_upgrade`] does; the client then gets its id and
    /// [`PeerConnected`](MultiplayerEvent::PeerConnected) (or, with authentication,
    /// `PeerAuthenticating`) follows in a later `poll()`. Fails with
    /// [`Error::NoUpgradePending`] on a client or a closed peer, and otherwise as
    /// `WebSocketServer::accept_upgrade`.
    pub fn accept_upgrade(
        &mut self,
        id: i32,
        protocol: Option<&str>,
        headers: &[&str],
    ) -> Result<(), Error> {
        match &mut self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.server.accept_upgrade(id, protocol, headers),
            _ => Err(Error::NoUpgradePending),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server, with `websocket.decide_upgrades`: rejects the upgrade request of `id` with
    /// an HTTP answer, as [`WebSocketServer::reject_upgrade`] does; no event follows.
    /// Fails with [`Error::NoUpgradePending`] on a client or a closed peer, and otherwise
    /// as `WebSocketServer::reject_upgrade`.
    pub fn reject_upgrade(
        &mut self,
        id: i32,
        status: u16,
        headers: &[&str],
        body: &[u8],
    ) -> Result<(), Error> {
        match &mut self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.server.reject_upgrade(id, status, headers, body),
            _ => Err(Error::NoUpgradePending),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server: starts draining, as [`WebSocketServer::drain`]: clients already connected
    /// (admitted or authenticating) keep playing, new upgrade requests get `503` with
    /// `Retry-After`, and the health check (`websocket.health_path`) answers `503`; then
    /// [`close`](MultiplayerPeer::close) when the game allows. Fails with
    /// [`Error::NotOpen`] unless this peer is a server.
    pub fn drain(&mut self) -> Result<(), Error> {
        match &mut self.role {
            Role::Server(host) => {
                host.server.drain();
                Ok(())
            }
            _ => Err(Error::NotOpen),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Whether this peer is a server that [`drain`](Self::drain)s.
    pub fn is_draining(&self) -> bool {
        matches!(&self.role, Role::Server(host) if host.server.is_draining())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server: registers another mio source with the server's poller, as
    /// [`WebSocketServer::register_source`]; its readiness is reported as
    /// [`MultiplayerEvent::SourceReady`]. The registration belongs to the server started
    /// by `create_server` and ends with it (`close()`): register again on the next one.
    /// Fails with [`Error::NotOpen`] unless this peer is a server.
    pub fn register_source<S: mio::event::Source + ?Sized>(
        &mut self,
        source: &mut S,
        interest: mio::Interest,
    ) -> Result<SourceToken, Error> {
        match &mut self.role {
            Role::Server(host) => host.server.register_source(source, interest),
            _ => Err(Error::NotOpen),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server: changes a registered source's interest, as
    /// [`WebSocketServer::reregister_source`]. Fails with [`Error::NotOpen`] unless this
    /// peer is a server.
    pub fn reregister_source<S: mio::event::Source + ?Sized>(
        &mut self,
        source: &mut S,
        token: SourceToken,
        interest: mio::Interest,
    ) -> Result<(), Error> {
        match &mut self.role {
            Role::Server(host) => host.server.reregister_source(source, token, interest),
            _ => Err(Error::NotOpen),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server: takes a registered source out of the poller, as
    /// [`WebSocketServer::deregister_source`] (queued `SourceReady` events for it are
    /// dropped too). Fails with [`Error::NotOpen`] unless this peer is a server.
    pub fn deregister_source<S: mio::event::Source + ?Sized>(
        &mut self,
        source: &mut S,
        token: SourceToken,
    ) -> Result<(), Error> {
        match &mut self.role {
            Role::Server(host) => {
                host.server.deregister_source(source, token)?;
                // Source events carry no data: the byte and data counts stay as they are.
                self.inbox.events.retain(|(event, _)| {
                    !matches!(event, MultiplayerEvent::SourceReady { token: t, .. } if *t == token)
                });
                Ok(())
            }
            _ => Err(Error::NotOpen),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Server: the server's waker, as [`WebSocketServer::waker`]; waking it makes the
    /// next poll report [`MultiplayerEvent::Woken`] (and `poll_with_timeout` return at
    /// once). Each `create_server` has a new one. Fails with [`Error::NotOpen`] unless
    /// this peer is a server.
    pub fn waker(&mut self) -> Result<std::sync::Arc<mio::Waker>, Error> {
        match &mut self.role {
            Role::Server(host) => host.server.waker(),
            _ => Err(Error::NotOpen),
        }
    }

    /// The peers still authenticating, in id order (Godot's `get_authenticating_peers`).
    pub fn get_authenticating_peers(&self) -> Vec<i32> {
        match &self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.pending.keys().copied().collect(),
            Role::Client(guest) if guest.phase == Phase::Authenticating => {
                vec![TARGET_PEER_SERVER]
            }
            _ => Vec::new(),
        }
    }

    /// Sends `value` as one packet to the current target (Godot's `put_var`), in the
    /// protocol's Variant format: Godot 3's for [`MultiplayerProtocol::Godot3`], Godot 4's
    /// otherwise.
    pub fn put_var(&mut self, value: &Variant) -> Result<(), Error> {
        let bytes = value.to_bytes(self.config.protocol.variant_version())?;
        self.put_packet(&bytes)
    }

    /// Takes the next packet and decodes it as one Variant (Godot's `get_var`): `None`
    /// when no packet waits; the packet is consumed either way.
    pub fn get_var(&mut self) -> Option<Result<Variant, VariantError>> {
        let packet = self.get_packet()?;
        Some(Variant::from_bytes(
            &packet,
            self.config.protocol.variant_version(),
            &self.config.variant_limits,
        ))
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Like [`poll`](MultiplayerPeer::poll), but a server with nothing to do sleeps in the
    /// OS until network activity, its next timer or `max_wait` (for headless servers with
    /// no frame to render). A client polls once without waiting.
    pub fn poll_with_timeout(&mut self, max_wait: Duration) {
        self.poll_inner(Some(max_wait));
    }

    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    fn poll_inner(&mut self, wait: Option<Duration>) {
        match &mut self.role {
            Role::Idle => {}
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.poll(&mut self.inbox, &self.config, wait),
            Role::Client(guest) => guest.poll(&mut self.inbox, &self.config, &mut self.last_error),
        }
    }

    /// The WebSocket connection to peer `id`: on a server a connected client (or one still
    /// authenticating, so its address can decide), on a client
    /// the server (id 1, kept after the connection ends so its close code and reason stay
    /// readable). For its settings, address and close details; reading packets from it
    /// directly bypasses the multiplayer protocol.
    pub fn get_peer(&mut self, id: i32) -> Option<&mut WebSocketPeer> {
        match &mut self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) if host.knows(id) => host.server.get_peer(id),
            Role::Client(guest) if id == TARGET_PEER_SERVER => Some(&mut guest.socket),
            _ => None,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The IP address of peer `id` (on a client, the server's, id 1). On a server behind
    /// trusted proxies, the client's as they tell it (see
    /// [`WebSocketServer::get_peer_address`]).
    pub fn get_peer_address(&self, id: i32) -> Option<IpAddr> {
        match &self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) if host.knows(id) => host.server.get_peer_address(id),
            Role::Client(guest) if id == TARGET_PEER_SERVER => guest.socket.get_connected_host(),
            _ => None,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The TCP port of peer `id` (on a client, the server's, id 1).
    pub fn get_peer_port(&self, id: i32) -> Option<u16> {
        match &self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) if host.knows(id) => host.server.get_peer_port(id),
            Role::Client(guest) if id == TARGET_PEER_SERVER => guest
                .socket
                .get_connected_host()
                .map(|_| guest.socket.get_connected_port()),
            _ => None,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The address at the other end of peer `id`'s socket: on a server behind a proxy,
    /// the proxy's (where [`get_peer_address`](Self::get_peer_address) gives the client's).
    /// Beyond Godot.
    pub fn get_socket_peer_address(&self, id: i32) -> Option<SocketAddr> {
        match &self.role {
            Role::Server(host) if host.knows(id) => host.server.get_socket_peer_address(id),
            Role::Client(guest) if id == TARGET_PEER_SERVER => {
                guest.socket.get_socket_peer_address()
            }
            _ => None,
        }
    }

    /// Ids of the peers this one can reach, in increasing order: on a server its clients,
    /// on a connected client the server (1) and the clients the server announced.
    pub fn peer_ids(&self) -> Vec<i32> {
        match &self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.peers.iter().copied().collect(),
            Role::Client(guest) if guest.phase == Phase::Connected => {
                std::iter::once(TARGET_PEER_SERVER)
                    .chain(guest.peers.iter().copied())
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The address a server listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.role {
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.server.local_addr(),
            _ => None,
        }
    }

    /// Why the last client connection failed or ended uncleanly: an invalid or late id
    /// from the server, or the WebSocket error (refused, TLS, timeout...). Beyond Godot.
    pub fn get_last_error(&self) -> Option<&Error> {
        if let Some(error) = &self.last_error {
            return Some(error);
        }
        match &self.role {
            Role::Client(guest) => guest.socket.get_last_error(),
            _ => None,
        }
    }

    /// Packets received but never delivered since this peer was created: malformed,
    /// forged (a wrong sender id), for an unknown peer, not RAW, not relayable (relay off,
    /// or the destination's queue was full), or left unread by a peer that disconnected.
    /// Each one is also logged. Beyond Godot, which only logs.
    pub fn dropped_packets(&self) -> u64 {
        self.inbox.dropped
    }

    /// Godot's `get_max_packet_size`: a packet of this many bytes always fits, on a server
    /// and on a client, to any target, while nothing else waits in the connection's
    /// outbound buffer. It is a guarantee, not the exact cap: a larger packet goes through
    /// as long as it fits, otherwise `put_packet` fails with the WebSocket error.
    ///
    /// Godot 4 protocols: `outbound_buffer_size − 9`, Godot 4's number (it still subtracts
    /// Godot 3's 9-byte header size); wspeer adds at most 7 bytes (a RAW byte, and a
    /// client's relay header). [`MultiplayerProtocol::Godot3`]: `outbound_buffer_size − 10`,
    /// the 9-byte header and the RAW byte, which is also the exact cap. (Godot 3.2.3 reports
    /// its buffer rounded up to a power of two KiB, minus 9; its packets include the
    /// command byte.) With `outbound_buffer_size` 0 (no byte limit), nearly `usize::MAX`.
    pub fn get_max_packet_size(&self) -> usize {
        let reserved = self.config.protocol.codec().reserved();
        match self.config.websocket.peer.outbound_buffer_size {
            0 => usize::MAX - reserved,
            limit => limit.saturating_sub(reserved),
        }
    }

    // ----- Godot's properties -----

    /// Godot's `supported_protocols`: sub-protocols a client offers or a server accepts
    /// (the websocket_multiplayer demo uses `["ludus"]`).
    pub fn set_supported_protocols<S: AsRef<str>>(&mut self, protocols: &[S]) {
        self.config.websocket.peer.supported_protocols = protocols
            .iter()
            .map(|p| p.as_ref().trim().to_string())
            .collect();
    }

    /// Godot's `supported_protocols` getter.
    pub fn get_supported_protocols(&self) -> &[String] {
        &self.config.websocket.peer.supported_protocols
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Godot's `handshake_headers`: extra `"Name: value"` lines in the client's request or
    /// the server's response.
    pub fn set_handshake_headers<S: AsRef<str>>(&mut self, headers: &[S]) {
        self.config.websocket.peer.handshake_headers =
            headers.iter().map(|h| h.as_ref().to_string()).collect();
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Godot's `handshake_headers` getter.
    pub fn get_handshake_headers(&self) -> &[String] {
        &self.config.websocket.peer.handshake_headers
    }

    /// Godot's `handshake_timeout`: on a server, from TCP accept to an open WebSocket; on
    /// a client, from `create_client` to receiving the id. Must be more than zero.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        check_handshake_timeout(timeout)?;
        self.config.websocket.handshake_timeout = timeout;
        Ok(())
    }

    /// Godot's `handshake_timeout` getter.
    pub fn get_handshake_timeout(&self) -> Duration {
        self.config.websocket.handshake_timeout
    }

    /// Godot's `inbound_buffer_size`: the largest message accepted from a peer.
    pub fn set_inbound_buffer_size(&mut self, bytes: usize) {
        self.config.websocket.peer.inbound_buffer_size = bytes;
    }

    /// Godot's `inbound_buffer_size` getter.
    pub fn get_inbound_buffer_size(&self) -> usize {
        self.config.websocket.peer.inbound_buffer_size
    }

    /// Godot's `outbound_buffer_size`: bytes that may wait to be written, per connection.
    pub fn set_outbound_buffer_size(&mut self, bytes: usize) {
        self.config.websocket.peer.outbound_buffer_size = bytes;
    }

    /// Godot's `outbound_buffer_size` getter.
    pub fn get_outbound_buffer_size(&self) -> usize {
        self.config.websocket.peer.outbound_buffer_size
    }

    /// Godot's `max_queued_packets`: messages that may wait in each direction, per
    /// connection.
    pub fn set_max_queued_packets(&mut self, packets: usize) {
        self.config.websocket.peer.max_queued_packets = packets;
    }

    /// Godot's `max_queued_packets` getter.
    pub fn get_max_queued_packets(&self) -> usize {
        self.config.websocket.peer.max_queued_packets
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Ping every connection at this interval and drop the ones that do not answer
    /// (`Duration::ZERO`, the default, turns it off). Godot's multiplayer peer has no
    /// such setting.
    pub fn set_heartbeat_interval(&mut self, interval: Duration) {
        self.config.websocket.peer.heartbeat_interval = interval;
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The heartbeat interval.
    pub fn get_heartbeat_interval(&self) -> Duration {
        self.config.websocket.peer.heartbeat_interval
    }

    /// `SceneMultiplayer.server_relay`: see [`MultiplayerConfig::server_relay`]. Applies
    /// at the next `create_server`.
    pub fn set_server_relay_enabled(&mut self, enabled: bool) {
        self.config.server_relay = enabled;
    }

    /// Whether the server relays between clients.
    pub fn is_server_relay_enabled(&self) -> bool {
        self.config.server_relay
    }
}

impl MultiplayerPeer for WebSocketMultiplayerPeer {
    fn poll(&mut self) {
        self.poll_inner(None);
    }

    fn pop_event(&mut self) -> Option<MultiplayerEvent> {
        self.inbox.pop_event()
    }

    fn get_unique_id(&self) -> i32 {
        match &self.role {
            Role::Idle => 0,
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(_) => TARGET_PEER_SERVER,
            Role::Client(guest) => guest.unique_id,
        }
    }

    fn set_target_peer(&mut self, id: i32) {
        self.target_peer = id;
    }

    fn get_target_peer(&self) -> i32 {
        self.target_peer
    }

    /// Sends `data` to the target. Fails with [`Error::NotOpen`] unless connected, with
    /// [`Error::PeerNotFound`] for a peer id this side does not know (a server sending to
    /// 1 included), with [`Error::InvalidPacket`] for an empty packet in the RAW-packet
    /// protocols (Godot refuses those too), and with the WebSocket error when the
    /// connection's outbound limits are reached. A broadcast skips peers that cannot take
    /// the packet (logged), as Godot does.
    fn put_packet(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() && !self.config.protocol.codec().sends_empty_packets() {
            return Err(Error::InvalidPacket(
                "empty packet: Godot's RAW packets carry at least one byte".into(),
            ));
        }
        let target = self.target_peer;
        match &mut self.role {
            Role::Idle => Err(Error::NotOpen),
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.put(target, data, &self.config),
            Role::Client(guest) => guest.put(target, data, &self.config),
        }
    }

    fn get_packet(&mut self) -> Option<Vec<u8>> {
        self.inbox.pop().map(|(_, data)| data)
    }

    fn get_packet_peer(&self) -> Option<i32> {
        self.inbox.packets.front().map(|(from, _)| *from)
    }

    fn get_available_packet_count(&self) -> usize {
        self.inbox.packets.len()
    }

    fn get_connection_status(&self) -> ConnectionStatus {
        match &self.role {
            Role::Idle => ConnectionStatus::Disconnected,
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(_) => ConnectionStatus::Connected,
            Role::Client(guest) => match guest.phase {
                Phase::Joining | Phase::Authenticating => ConnectionStatus::Connecting,
                Phase::Connected => ConnectionStatus::Connected,
                Phase::Ended => ConnectionStatus::Disconnected,
            },
        }
    }

    /// Closes the connection to `id` with code 1000. On a server, with relay on, the other
    /// clients are told it left in both cases (Godot skips that when forced, leaving them
    /// with a peer that is gone); a peer still authenticating is reported with
    /// [`PeerAuthenticationFailed`](MultiplayerEvent::PeerAuthenticationFailed) unless
    /// forced. On a client, `id` must be 1 (the server).
    fn disconnect_peer(&mut self, id: i32, force: bool) -> Result<(), Error> {
        match &mut self.role {
            Role::Idle => Err(Error::NotOpen),
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => {
                if host.pending.contains_key(&id) {
                    // SceneMultiplayer reports a pending peer that goes as failed.
                    host.server.disconnect_peer(id, 1000, "")?;
                    host.pending.remove(&id);
                    host.backlog.retain(|&p| p != id);
                    if !force {
                        self.inbox
                            .event(MultiplayerEvent::PeerAuthenticationFailed(id));
                    }
                    return Ok(());
                }
                if !host.peers.contains(&id) {
                    return Err(Error::PeerNotFound(id));
                }
                host.server.disconnect_peer(id, 1000, "")?;
                if force {
                    host.forget(id, &mut self.inbox, &self.config, false);
                } else if !host.leaving.contains(&id) {
                    host.leaving.push(id);
                }
                Ok(())
            }
            Role::Client(guest) => {
                if id != TARGET_PEER_SERVER {
                    return Err(Error::PeerNotFound(id));
                }
                if guest.phase == Phase::Ended {
                    return Err(Error::NotOpen);
                }
                if force {
                    guest.quiet_end();
                } else {
                    let _ = guest.socket.close(1000, "");
                    guest.leaving = true;
                }
                Ok(())
            }
        }
    }

    /// Drops every connection at once: a server sends its clients a 1001 close frame as
    /// far as their sockets take it, a client a 1000 one, without waiting for answers.
    /// Queued packets and events are discarded and no event follows.
    fn close(&mut self) {
        match &mut self.role {
            Role::Idle => {}
            #[cfg(not(target_arch = "wasm32"))]
            Role::Server(host) => host.server.stop(),
            Role::Client(guest) => {
                let _ = guest.socket.close(1000, "");
            }
        }
        self.reset();
    }

    fn set_refuse_new_connections(&mut self, refuse: bool) {
        self.refusing = refuse;
        #[cfg(not(target_arch = "wasm32"))]
        if let Role::Server(host) = &mut self.role {
            host.server.set_refuse_new_connections(refuse);
        }
    }

    fn is_refusing_new_connections(&self) -> bool {
        self.refusing
    }

    fn set_transfer_mode(&mut self, mode: TransferMode) {
        self.transfer_mode = mode;
    }

    fn get_transfer_mode(&self) -> TransferMode {
        self.transfer_mode
    }

    fn set_transfer_channel(&mut self, channel: u8) {
        self.transfer_channel = channel;
    }

    fn get_transfer_channel(&self) -> u8 {
        self.transfer_channel
    }

    /// Always true, as in Godot: the server can carry packets between clients (wspeer's
    /// own server does so unless [`MultiplayerConfig::server_relay`] is off or the
    /// protocol is [`MultiplayerProtocol::Godot4Transport`]).
    fn is_server_relay_supported(&self) -> bool {
        true
    }
}
