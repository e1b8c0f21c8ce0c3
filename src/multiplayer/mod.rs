//! Godot's high-level multiplayer: `MultiplayerPeer`, `WebSocketMultiplayerPeer`, wire formats.

// Their server halves are only used by the server role, which wasm32 does not have.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod codec;
mod peer;
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
mod routing;
pub mod rpc;
mod scene;
pub mod wire;

pub use peer::{MultiplayerConfig, MultiplayerProtocol, WebSocketMultiplayerPeer};
pub use scene::{RemoteCall, RemoteSet, RpcMode, RpcNode};

use crate::error::Error;

/// `set_target_peer` value that addresses every connected peer (Godot's
/// `TARGET_PEER_BROADCAST`).
pub const TARGET_PEER_BROADCAST: i32 = 0;

/// `set_target_peer` value, and peer id, of the server (Godot's `TARGET_PEER_SERVER`).
pub const TARGET_PEER_SERVER: i32 = 1;

/// Where a multiplayer peer is, as Godot's `MultiplayerPeer.ConnectionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// Not started, closed, or failed.
    Disconnected,
    /// A client that has not yet received its id from the server.
    Connecting,
    /// A listening server, or a client that knows its id.
    Connected,
}

/// Godot's `MultiplayerPeer.TransferMode`. WebSocket runs over TCP, so every packet is
/// delivered reliably and in order whatever mode is set; the setting is kept only so code
/// written for other transports runs unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TransferMode {
    /// Packets may be lost or reordered (not on WebSocket).
    Unreliable,
    /// Packets may be lost but not reordered (not on WebSocket).
    UnreliableOrdered,
    /// Every packet arrives, in order: what WebSocket always does.
    #[default]
    Reliable,
}

/// What happened to a multiplayer peer, drained in order after `poll()` (Godot's signals,
/// as values: those of `SceneMultiplayer` for the Godot 4 protocols, of `MultiplayerAPI` for
/// [`MultiplayerProtocol::Godot3`](crate::MultiplayerProtocol::Godot3)).
///
/// On a client, in order:
///
/// - Joining, Godot 4 protocols: [`ConnectedToServer`](Self::ConnectedToServer), then
///   [`PeerConnected(1)`](Self::PeerConnected) (`SceneMultiplayer::_admit_peer` emits
///   `connected_to_server` before `peer_connected`), then `PeerConnected` for each client
///   the server announces.
/// - Joining, Godot 3: `PeerConnected(1)`, then `ConnectedToServer` (Godot 3's `SYS_ADD(1)`
///   handler emits `peer_connected(1)` before `connection_succeeded`), then the other
///   clients.
/// - The connection to the server ends (closed by either side, lost, or
///   [`disconnect_peer(1, false)`](MultiplayerPeer::disconnect_peer)), Godot 4 protocols:
///   `PeerDisconnected(1)`, then [`ServerDisconnected`](Self::ServerDisconnected). Godot 3:
///   `ServerDisconnected` alone. The other clients the server announced are forgotten
///   without a `PeerDisconnected` each, as in Godot (`SceneMultiplayer::clear` and Godot 3
///   drop them silently). Godot 3.2.3's `WebSocketClient` reports this end as
///   `connection_failed`; wspeer says `ServerDisconnected` and keeps `ConnectionFailed`
///   for connections that never succeeded.
/// - The connection never succeeded: [`ConnectionFailed`](Self::ConnectionFailed) alone.
/// - [`close`](MultiplayerPeer::close) and `disconnect_peer(1, true)`: nothing.
///
/// With [`MultiplayerConfig::authentication`](crate::MultiplayerConfig::authentication)
/// (Godot 4's `auth_callback`), a new connection first reports
/// [`PeerAuthenticating`](Self::PeerAuthenticating) (on a client, for the server), then
/// [`AuthReceived`](Self::AuthReceived) for each payload the other side sends, and
/// `PeerConnected` (a client: `ConnectedToServer` first) only once both sides called
/// `complete_auth`, or [`PeerAuthenticationFailed`](Self::PeerAuthenticationFailed) (a client
/// then gets [`ServerDisconnected`](Self::ServerDisconnected): its connection was open).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MultiplayerEvent {
    /// Peer `id` joined: on a server a client finished its handshake; on a client the server
    /// (id 1) accepted us or announced another client.
    PeerConnected(i32),
    /// Peer `id` left: on a server a client disconnected; on a client the server announced
    /// that another client left, or (Godot 4 protocols) our connection to the server (id 1)
    /// ended.
    PeerDisconnected(i32),
    /// Client only: the server accepted us and told us our id.
    ConnectedToServer,
    /// Client only: the connection attempt failed (refused, timed out, or the server's
    /// first messages were invalid); see
    /// [`WebSocketMultiplayerPeer::get_last_error`].
    ConnectionFailed,
    /// Client only: an established connection to the server ended.
    ServerDisconnected,
    /// Peer `id` connected and must authenticate before anything else is accepted from it
    /// (Godot's `peer_authenticating`): answer with
    /// [`send_auth`](crate::WebSocketMultiplayerPeer::send_auth) and
    /// [`complete_auth`](crate::WebSocketMultiplayerPeer::complete_auth).
    PeerAuthenticating(i32),
    /// Peer `id`, still authenticating, sent an authentication payload (what Godot passes to
    /// `auth_callback`).
    AuthReceived {
        /// The peer.
        id: i32,
        /// Its payload (never empty).
        data: Vec<u8>,
    },
    /// Peer `id` did not complete authentication within `auth_timeout`, or left before it
    /// did (Godot's `peer_authentication_failed`); its connection is closed.
    PeerAuthenticationFailed(i32),
    /// An RPC arrived for a declared node (Godot 4 `@rpc`, Godot 3 `remote func`).
    RemoteCall(Box<RemoteCall>),
    /// A Godot 3 `rset` arrived for a declared node and property.
    RemoteSet(Box<RemoteSet>),
    /// A Godot 4 replication packet (`MultiplayerSpawner` spawn or despawn,
    /// `MultiplayerSynchronizer` sync), whole, command byte included: wspeer does not
    /// decode replication; see `multiplayer_wire::scene` for the command numbers.
    Replication {
        /// The sender (the original one, for a relayed packet).
        from: i32,
        /// The packet.
        packet: Vec<u8>,
    },
    #[cfg(not(target_arch = "wasm32"))]
    /// Server only, with
    /// [`ServerConfig::decide_upgrades`](crate::ServerConfig::decide_upgrades) in
    /// `MultiplayerConfig::websocket`: a client's complete, valid upgrade request waits for
    /// [`accept_upgrade`](crate::WebSocketMultiplayerPeer::accept_upgrade) or
    /// [`reject_upgrade`](crate::WebSocketMultiplayerPeer::reject_upgrade), within the
    /// handshake timeout. The client is no peer yet: it is not sent its id, announced, or
    /// found by `get_peer` until accepted. Beyond Godot.
    UpgradeRequested {
        /// The id the client gets if accepted (its `PeerConnected` follows the accept).
        id: i32,
        /// The request: path, query and headers.
        request: crate::HandshakeRequest,
        /// The client's address.
        address: std::net::SocketAddr,
    },
    #[cfg(not(target_arch = "wasm32"))]
    /// Server only: a source registered with
    /// [`register_source`](crate::WebSocketMultiplayerPeer::register_source) is ready, as
    /// [`ServerEvent::SourceReady`](crate::ServerEvent::SourceReady). Beyond Godot.
    SourceReady {
        /// The source, as `register_source` returned it.
        token: crate::SourceToken,
        /// It can be read.
        readable: bool,
        /// It can be written.
        writable: bool,
        /// Its reading side is closed (a hint).
        read_closed: bool,
        /// Its writing side is closed (a hint).
        write_closed: bool,
        /// It has an error pending.
        error: bool,
    },
    #[cfg(not(target_arch = "wasm32"))]
    /// Server only: its [`waker`](crate::WebSocketMultiplayerPeer::waker) was woken since
    /// the last poll, as [`ServerEvent::Woken`](crate::ServerEvent::Woken). Beyond Godot.
    Woken,
}

/// Godot 4's `MultiplayerPeer`: a packet transport between a server (id 1) and clients
/// (ids 2 to 2³¹−1), advanced only by [`poll`](Self::poll).
///
/// After each `poll()`, drain [`pop_event`](Self::pop_event) and the packet queue
/// ([`get_available_packet_count`](Self::get_available_packet_count),
/// [`get_packet_peer`](Self::get_packet_peer), [`get_packet`](Self::get_packet)). Packets
/// go to the peers chosen with [`set_target_peer`](Self::set_target_peer).
pub trait MultiplayerPeer {
    /// Does all pending network work and queues the packets and events that arrived.
    fn poll(&mut self);

    /// Takes the oldest event, if any.
    fn pop_event(&mut self) -> Option<MultiplayerEvent>;

    /// This peer's id: 1 on a server, the id the server assigned on a client, 0 while unknown.
    fn get_unique_id(&self) -> i32;

    /// Whether this peer is the server (its id is 1).
    fn is_server(&self) -> bool {
        self.get_unique_id() == TARGET_PEER_SERVER
    }

    /// A random id in 2..=2³¹−1, as Godot's `generate_unique_id`, for a custom server that
    /// hands out client ids itself. Drawn from the OS random source; two calls can return
    /// the same id (one in 2³¹), so check it against the ids in use.
    fn generate_unique_id(&self) -> i32 {
        crate::ids::random_peer_id()
    }

    /// Chooses who the next [`put_packet`](Self::put_packet) calls go to: `0` everyone,
    /// `1` the server, a peer id, or `-id` for everyone except `id`.
    fn set_target_peer(&mut self, id: i32);

    /// The current target (see [`set_target_peer`](Self::set_target_peer)); 0 by default.
    fn get_target_peer(&self) -> i32;

    /// Sends one packet to the current target.
    fn put_packet(&mut self, data: &[u8]) -> Result<(), Error>;

    /// Sends one packet to `to` (same values as `set_target_peer`) without changing the
    /// current target; Godot's `SceneMultiplayer.send_bytes`.
    fn send_bytes(&mut self, data: &[u8], to: i32) -> Result<(), Error> {
        let previous = self.get_target_peer();
        self.set_target_peer(to);
        let result = self.put_packet(data);
        self.set_target_peer(previous);
        result
    }

    /// Takes the next received packet, if any.
    fn get_packet(&mut self) -> Option<Vec<u8>>;

    /// The id of the peer that sent the packet [`get_packet`](Self::get_packet) returns
    /// next, if any.
    fn get_packet_peer(&self) -> Option<i32>;

    /// Takes the next received packet with its sender's id.
    fn recv(&mut self) -> Option<(i32, Vec<u8>)> {
        let from = self.get_packet_peer()?;
        self.get_packet().map(|data| (from, data))
    }

    /// How many received packets wait to be read.
    fn get_available_packet_count(&self) -> usize;

    /// Where the peer is.
    fn get_connection_status(&self) -> ConnectionStatus;

    /// Closes the connection to peer `id`. Without `force`, its
    /// [`PeerDisconnected`](MultiplayerEvent::PeerDisconnected) follows after the next
    /// `poll()`; with `force`, it is forgotten at once and no event follows.
    fn disconnect_peer(&mut self, id: i32, force: bool) -> Result<(), Error>;

    /// Drops every connection at once, without events, and returns to
    /// [`ConnectionStatus::Disconnected`].
    fn close(&mut self);

    /// While true, a server accepts no new clients.
    fn set_refuse_new_connections(&mut self, refuse: bool);

    /// Whether new clients are refused.
    fn is_refusing_new_connections(&self) -> bool;

    /// Sets the transfer mode of the next packets (accepted; WebSocket is always reliable
    /// and ordered).
    fn set_transfer_mode(&mut self, mode: TransferMode);

    /// The transfer mode last set.
    fn get_transfer_mode(&self) -> TransferMode;

    /// Sets the channel of the next packets (accepted; WebSocket has one ordered channel).
    fn set_transfer_channel(&mut self, channel: u8);

    /// The channel last set.
    fn get_transfer_channel(&self) -> u8;

    /// The mode the next packet was sent with: always [`TransferMode::Reliable`].
    fn get_packet_mode(&self) -> TransferMode {
        TransferMode::Reliable
    }

    /// The channel the next packet was sent on: always 0.
    fn get_packet_channel(&self) -> u8 {
        0
    }

    /// Whether the server can pass packets between clients for them.
    fn is_server_relay_supported(&self) -> bool;
}
