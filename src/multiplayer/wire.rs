//! The byte layouts of Godot's multiplayer protocols, as pure functions: what
//! [`WebSocketMultiplayerPeer`](crate::WebSocketMultiplayerPeer) puts on the wire, exposed so
//! tools and tests can build and check the same bytes.
//!
//! Every integer is a little-endian `i32`, as Godot writes them on every platform it ships.

use std::fmt;

pub use super::rpc;

/// Why a packet could not be decoded; the packet is dropped (and logged) by its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedPacket(pub &'static str);

impl fmt::Display for MalformedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MalformedPacket {}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let slice = bytes.get(at..at + 4)?;
    Some(i32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
}

/// Godot 4's `WebSocketMultiplayerPeer` transport: the server's first message on a new
/// connection is the client's id; after it, one WebSocket message is one packet, with no
/// header.
pub mod godot4 {
    use super::{MalformedPacket, read_i32};

    /// Length of the id message.
    pub const ID_MESSAGE_LEN: usize = 4;

    /// The id message the server sends first: `id` as a 4-byte little-endian `i32`
    /// (id `0x1C04BEB6` → `b6 be 04 1c`).
    pub fn id_message(id: i32) -> [u8; ID_MESSAGE_LEN] {
        id.to_le_bytes()
    }

    /// Reads the id message as a Godot 4 client does: exactly 4 bytes, and an id of at
    /// least 2 (0 means "everyone", 1 is the server).
    pub fn parse_id_message(message: &[u8]) -> Result<i32, MalformedPacket> {
        if message.len() != ID_MESSAGE_LEN {
            return Err(MalformedPacket(
                "the server's first message must be the 4-byte peer id",
            ));
        }
        match read_i32(message, 0) {
            Some(id) if id >= 2 => Ok(id),
            _ => Err(MalformedPacket("the server sent a peer id below 2")),
        }
    }
}

/// Godot 4's `SceneMultiplayer` packets (the default `MultiplayerAPI`): a command byte, then
/// its payload. This module has the system packets (announcements, relay, authentication)
/// and RAW; remote calls and the path cache are in [`rpc`].
pub mod scene {
    use super::{MalformedPacket, read_i32};

    /// The command is in the low 3 bits of the first byte; RPCs use the others as flags.
    pub const CMD_MASK: u8 = 7;
    /// `NETWORK_COMMAND_REMOTE_CALL`: an RPC (see [`rpc::godot4`](super::rpc::godot4)).
    pub const CMD_REMOTE_CALL: u8 = 0;
    /// `NETWORK_COMMAND_RAW`: user bytes (`send_bytes` → `peer_packet`).
    pub const CMD_RAW: u8 = 3;
    /// `NETWORK_COMMAND_SYS`: a system command, `[07 <sys> <i32 peer> ...]`.
    pub const CMD_SYS: u8 = 7;
    /// `SYS_COMMAND_AUTH`: authentication, `[07 00 payload]` (an empty payload: "my side
    /// completed").
    pub const SYS_AUTH: u8 = 0;
    /// `SYS_COMMAND_ADD_PEER`: the server announces a peer, `[07 01 id]`.
    pub const SYS_ADD_PEER: u8 = 1;
    /// `SYS_COMMAND_DEL_PEER`: the server announces that a peer left, `[07 02 id]`.
    pub const SYS_DEL_PEER: u8 = 2;
    /// `SYS_COMMAND_RELAY`: `[07 03 <destination or source> <inner packet>]`.
    pub const SYS_RELAY: u8 = 3;
    /// `SYS_CMD_SIZE`: command byte, sys byte and the `i32` peer.
    pub const SYS_CMD_SIZE: usize = 6;

    /// One decoded SceneMultiplayer packet.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Message<'a> {
        /// `[03 payload]`: user bytes; the payload is never empty.
        Raw(&'a [u8]),
        /// `[07 01 id]`: peer `id` joined.
        AddPeer(i32),
        /// `[07 02 id]`: peer `id` left.
        DelPeer(i32),
        /// `[07 03 peer inner]`: client → server, `peer` is the destination (an id, `0` for
        /// everyone, `-id` for everyone but `id`); server → client, it is the source.
        Relay {
            /// Destination (client → server) or source (server → client).
            peer: i32,
            /// The wrapped packet, with its own command byte; never empty.
            inner: &'a [u8],
        },
        /// An authentication message `[07 00 ...]`.
        Auth(&'a [u8]),
        /// Any other command (RPC, path cache, spawn, despawn, sync), decoded elsewhere
        /// ([`rpc`](super::rpc)) or not at all (replication).
        Other {
            /// The command (low 3 bits of the first byte).
            command: u8,
        },
    }

    /// A RAW packet: `[03] + payload`.
    pub fn raw(payload: &[u8]) -> Vec<u8> {
        let mut packet = Vec::with_capacity(1 + payload.len());
        packet.push(CMD_RAW);
        packet.extend_from_slice(payload);
        packet
    }

    fn sys(command: u8, peer: i32) -> [u8; SYS_CMD_SIZE] {
        let id = peer.to_le_bytes();
        [CMD_SYS, command, id[0], id[1], id[2], id[3]]
    }

    /// The announcement that peer `id` joined: `[07 01 id]`.
    pub fn add_peer(id: i32) -> [u8; SYS_CMD_SIZE] {
        sys(SYS_ADD_PEER, id)
    }

    /// The announcement that peer `id` left: `[07 02 id]`.
    pub fn del_peer(id: i32) -> [u8; SYS_CMD_SIZE] {
        sys(SYS_DEL_PEER, id)
    }

    /// A relay wrapper: `[07 03 peer] + inner`. Clients put the destination in `peer`, the
    /// server the source.
    pub fn relay(peer: i32, inner: &[u8]) -> Vec<u8> {
        let mut packet = Vec::with_capacity(SYS_CMD_SIZE + inner.len());
        packet.extend_from_slice(&sys(SYS_RELAY, peer));
        packet.extend_from_slice(inner);
        packet
    }

    /// Decodes a packet, with SceneMultiplayer's length rules: RAW needs at least one payload
    /// byte, system commands the full 6-byte header, a relay at least one inner byte.
    pub fn parse(packet: &[u8]) -> Result<Message<'_>, MalformedPacket> {
        let Some(&first) = packet.first() else {
            return Err(MalformedPacket("empty packet"));
        };
        match first & CMD_MASK {
            CMD_RAW if packet.len() < 2 => Err(MalformedPacket("RAW packet without payload")),
            CMD_RAW => Ok(Message::Raw(&packet[1..])),
            CMD_SYS => {
                if packet.get(1) == Some(&SYS_AUTH) {
                    return Ok(Message::Auth(&packet[2..]));
                }
                let (Some(&command), Some(peer)) = (packet.get(1), read_i32(packet, 2)) else {
                    return Err(MalformedPacket("system command shorter than 6 bytes"));
                };
                match command {
                    SYS_ADD_PEER => Ok(Message::AddPeer(peer)),
                    SYS_DEL_PEER => Ok(Message::DelPeer(peer)),
                    SYS_RELAY if packet.len() <= SYS_CMD_SIZE => {
                        Err(MalformedPacket("relay without an inner packet"))
                    }
                    SYS_RELAY => Ok(Message::Relay {
                        peer,
                        inner: &packet[SYS_CMD_SIZE..],
                    }),
                    _ => Err(MalformedPacket("unknown system command")),
                }
            }
            command => Ok(Message::Other { command }),
        }
    }
}

/// Godot 3's `WebSocketMultiplayerPeer` (`gd_mp_api = true`): every message is a 9-byte
/// header (`u8 type`, `i32 from`, `i32 to`) and a payload. System messages carry one `i32`
/// peer id; data messages carry a Godot 3 `MultiplayerAPI` packet: RAW (`[04 ...]`,
/// `send_bytes` → `network_peer_packet`) here, remote calls and the path cache in
/// [`rpc::godot3`](super::rpc::godot3).
pub mod godot3 {
    use super::{MalformedPacket, read_i32};

    /// Length of the header in front of every message.
    pub const HEADER_LEN: usize = 9;
    /// Length of a system message (header and one id).
    pub const SYS_LEN: usize = HEADER_LEN + 4;
    /// `SYS_NONE`: a data message.
    pub const SYS_NONE: u8 = 0;
    /// `SYS_ADD`: the server announces a peer (id 1: the client is now connected).
    pub const SYS_ADD: u8 = 1;
    /// `SYS_DEL`: the server announces that a peer left.
    pub const SYS_DEL: u8 = 2;
    /// `SYS_ID`: the server tells a new client its id.
    pub const SYS_ID: u8 = 3;
    /// Godot 3 `MultiplayerAPI`'s `NETWORK_COMMAND_RAW`.
    pub const CMD_RAW: u8 = 4;

    /// The 9-byte header.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Header {
        /// [`SYS_NONE`], [`SYS_ADD`], [`SYS_DEL`] or [`SYS_ID`].
        pub kind: u8,
        /// The sender's id (1 for the server's own messages).
        pub from: i32,
        /// `0` everyone, `1` the server, an id, or `-id` for everyone but `id`.
        pub to: i32,
    }

    /// A message: header and payload.
    pub fn message(header: Header, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.push(header.kind);
        bytes.extend_from_slice(&header.from.to_le_bytes());
        bytes.extend_from_slice(&header.to.to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// A system message from the server (`from = 1`, `to = 0`, as Godot 3 sends them) about
    /// peer `id`: `[kind 01000000 00000000 id]`.
    pub fn sys(kind: u8, id: i32) -> [u8; SYS_LEN] {
        let mut bytes = [0u8; SYS_LEN];
        bytes[0] = kind;
        bytes[1..5].copy_from_slice(&1i32.to_le_bytes());
        bytes[9..13].copy_from_slice(&id.to_le_bytes());
        bytes
    }

    /// A data message carrying RAW user bytes: `[00 from to 04] + payload`.
    pub fn raw(from: i32, to: i32, payload: &[u8]) -> Vec<u8> {
        let mut inner = Vec::with_capacity(1 + payload.len());
        inner.push(CMD_RAW);
        inner.extend_from_slice(payload);
        message(
            Header {
                kind: SYS_NONE,
                from,
                to,
            },
            &inner,
        )
    }

    /// Splits a message into its header and payload.
    pub fn parse(message: &[u8]) -> Result<(Header, &[u8]), MalformedPacket> {
        let (Some(&kind), Some(from), Some(to)) =
            (message.first(), read_i32(message, 1), read_i32(message, 5))
        else {
            return Err(MalformedPacket("message shorter than the 9-byte header"));
        };
        Ok((Header { kind, from, to }, &message[HEADER_LEN..]))
    }

    /// The id carried by a system message's payload.
    pub fn sys_id(payload: &[u8]) -> Result<i32, MalformedPacket> {
        read_i32(payload, 0).ok_or(MalformedPacket("system message without a peer id"))
    }

    /// The user bytes of a RAW `MultiplayerAPI` packet (`[04 ...]`, at least one byte).
    pub fn parse_raw(payload: &[u8]) -> Result<&[u8], MalformedPacket> {
        match payload {
            [CMD_RAW, rest @ ..] if !rest.is_empty() => Ok(rest),
            [CMD_RAW] => Err(MalformedPacket("RAW packet without payload")),
            [] => Err(MalformedPacket("data message without payload")),
            _ => Err(MalformedPacket(
                "not a RAW packet (remote calls and property sets are read by rpc::godot3)",
            )),
        }
    }
}
