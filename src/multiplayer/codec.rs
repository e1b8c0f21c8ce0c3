//! One codec per multiplayer protocol: the bytes sent, and the meaning of bytes received.

use std::borrow::Cow;

use super::routing::{Addressing, Source};
use super::wire::{MalformedPacket, godot3, godot4, scene};
use super::{MultiplayerProtocol, TARGET_PEER_SERVER};

/// Why a received message is dropped; logged and counted, never fatal. Owned only when the
/// reason names a value, so the common rejections allocate nothing.
pub(crate) type Why = Cow<'static, str>;

/// A client's message as the server reads it: where it goes and the packet, still in its
/// protocol's framing (opened with [`Codec::open`] only if the server keeps it).
pub(crate) struct FromClient<'a> {
    /// The destination the client gave.
    pub(crate) to: Addressing,
    /// The packet, as [`Codec::open`] and [`Codec::relayed`] take it.
    pub(crate) framed: &'a [u8],
}

/// A server's message as a client reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromServer<'a> {
    /// Godot 4's first message: our id (or why it is not one), after which we are connected.
    Welcome(Result<i32, MalformedPacket>),
    /// Godot 3's `SYS_ID`: our id; we are connected only at [`Accepted`](Self::Accepted).
    AssignedId(i32),
    /// Godot 3's `SYS_ADD(1)`: the server accepted us.
    Accepted,
    /// Godot 4's authentication packet `[07 00 payload]` (an empty payload: the server
    /// completed its side).
    Auth(&'a [u8]),
    /// Another client joined.
    PeerJoined(i32),
    /// Another client left.
    PeerLeft(i32),
    /// A packet from the server or relayed from a client, still in its protocol's framing.
    Packet {
        /// Who it says it comes from.
        from: Source,
        /// The packet, as [`Codec::open`] takes it.
        framed: &'a [u8],
    },
}

/// A message a client drops, and the peer its log line names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// The peer the message claims to be from (the server when it cannot tell).
    pub(crate) from: i32,
    /// Why it is dropped.
    pub(crate) why: Why,
}

impl Dropped {
    fn blaming_server(why: impl Into<Why>) -> Dropped {
        Dropped {
            from: TARGET_PEER_SERVER,
            why: why.into(),
        }
    }
}

/// What differs between the multiplayer protocols, all of it pure: bytes to send, and the
/// meaning of bytes received. Routing (who gets a packet) is in `routing.rs`.
pub(crate) trait Codec {
    /// The messages the server sends a client that finished its WebSocket handshake, in order.
    fn greeting(&self, id: i32) -> Vec<Vec<u8>>;

    /// The server's announcement that client `id` joined (`joined`) or left. Only asked when
    /// `routing::announces_peers` allows.
    fn announcement(&self, joined: bool, id: i32) -> Vec<u8>;

    /// The server's own packet for `target`.
    fn server_packet(&self, target: i32, data: &[u8]) -> Vec<u8>;

    /// Client `own_id`'s packet, addressed as `routing::client_send` chose.
    fn client_packet(&self, own_id: i32, to: Addressing, data: &[u8]) -> Vec<u8>;

    /// The server's message carrying `packet`, a packet of the layer above the transport
    /// (an RPC or path-cache packet, command byte included), for `target`.
    fn server_message<'a>(&self, target: i32, packet: &'a [u8]) -> Cow<'a, [u8]>;

    /// Client `own_id`'s message carrying `packet` (as in
    /// [`server_message`](Self::server_message)), addressed as `routing::client_send` chose.
    fn client_message<'a>(&self, own_id: i32, to: Addressing, packet: &'a [u8]) -> Cow<'a, [u8]>;

    /// Reads a message that arrived on the server's connection to client `from`.
    fn read_client<'a>(&self, from: i32, message: &'a [u8]) -> Result<FromClient<'a>, Why>;

    /// What the server passes on for client `from`: `message` as received, holding `framed`.
    fn relayed<'a>(&self, from: i32, message: &'a [u8], framed: &'a [u8]) -> Cow<'a, [u8]>;

    /// Reads a message from the server; `joining`: we do not know our id yet.
    fn read_server<'a>(&self, joining: bool, message: &'a [u8]) -> Result<FromServer<'a>, Dropped>;

    /// The application's bytes inside a packet this side keeps.
    fn open<'a>(&self, framed: &'a [u8]) -> Result<&'a [u8], Why>;

    /// Bytes `get_max_packet_size` keeps back from `outbound_buffer_size`: never less than
    /// what the protocol adds to a packet, whatever the role and target.
    fn reserved(&self) -> usize;

    /// Whether an empty packet can be sent (Godot's RAW packets carry at least one byte).
    fn sends_empty_packets(&self) -> bool;
}

impl MultiplayerProtocol {
    /// The codec of this protocol: the one place that chooses per protocol.
    pub(crate) fn codec(self) -> &'static dyn Codec {
        match self {
            MultiplayerProtocol::Godot4 => &SceneCodec,
            MultiplayerProtocol::Godot4Transport => &TransportCodec,
            MultiplayerProtocol::Godot3 => &Godot3Codec,
        }
    }
}

/// Godot 4's `WebSocketMultiplayerPeer::PROTO_SIZE`: a header size left over from Godot 3,
/// still subtracted by `get_max_packet_size` although Godot 4 adds no header.
const GODOT4_PROTO_SIZE: usize = 9;

/// Godot 4's transport greeting, shared by both Godot 4 codecs.
fn godot4_greeting(id: i32) -> Vec<Vec<u8>> {
    vec![godot4::id_message(id).to_vec()]
}

/// Godot 4's transport on a client, shared by both Godot 4 codecs: while joining, every
/// message is the id message.
fn godot4_welcome(message: &[u8]) -> FromServer<'_> {
    FromServer::Welcome(godot4::parse_id_message(message))
}

// ----- Godot 4: transport + SceneMultiplayer -----

/// [`MultiplayerProtocol::Godot4`]: SceneMultiplayer packets over Godot 4's transport.
struct SceneCodec;

impl Codec for SceneCodec {
    fn greeting(&self, id: i32) -> Vec<Vec<u8>> {
        godot4_greeting(id)
    }

    fn announcement(&self, joined: bool, id: i32) -> Vec<u8> {
        match joined {
            true => scene::add_peer(id).to_vec(),
            false => scene::del_peer(id).to_vec(),
        }
    }

    fn server_packet(&self, _target: i32, data: &[u8]) -> Vec<u8> {
        scene::raw(data)
    }

    fn client_packet(&self, _own_id: i32, to: Addressing, data: &[u8]) -> Vec<u8> {
        match to {
            Addressing::Server => scene::raw(data),
            Addressing::To(target) => scene::relay(target, &scene::raw(data)),
        }
    }

    fn server_message<'a>(&self, _target: i32, packet: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(packet)
    }

    fn client_message<'a>(&self, _own_id: i32, to: Addressing, packet: &'a [u8]) -> Cow<'a, [u8]> {
        match to {
            Addressing::Server => Cow::Borrowed(packet),
            Addressing::To(target) => Cow::Owned(scene::relay(target, packet)),
        }
    }

    fn read_client<'a>(&self, _from: i32, message: &'a [u8]) -> Result<FromClient<'a>, Why> {
        match scene::parse(message) {
            Err(e) => Err(e.0.into()),
            // RAW, RPC, path-cache, replication and authentication packets are for the
            // server itself; the RPC layer reads them.
            Ok(scene::Message::Raw(_) | scene::Message::Auth(_) | scene::Message::Other { .. }) => {
                Ok(FromClient {
                    to: Addressing::Server,
                    framed: message,
                })
            }
            Ok(scene::Message::Relay { peer, inner }) => Ok(FromClient {
                to: Addressing::To(peer),
                framed: inner,
            }),
            Ok(scene::Message::AddPeer(_) | scene::Message::DelPeer(_)) => {
                Err("only the server announces peers".into())
            }
        }
    }

    /// The inner packet, rewrapped with its source in place of its destination, whatever its
    /// command, so Godot clients can exchange RPCs through wspeer.
    fn relayed<'a>(&self, from: i32, _message: &'a [u8], framed: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Owned(scene::relay(from, framed))
    }

    fn read_server<'a>(&self, joining: bool, message: &'a [u8]) -> Result<FromServer<'a>, Dropped> {
        if joining {
            return Ok(godot4_welcome(message));
        }
        match scene::parse(message) {
            Err(e) => Err(Dropped::blaming_server(e.0)),
            Ok(scene::Message::Raw(_) | scene::Message::Other { .. }) => Ok(FromServer::Packet {
                from: Source::Server,
                framed: message,
            }),
            Ok(scene::Message::AddPeer(id)) => Ok(FromServer::PeerJoined(id)),
            Ok(scene::Message::DelPeer(id)) => Ok(FromServer::PeerLeft(id)),
            Ok(scene::Message::Relay { peer, inner }) => Ok(FromServer::Packet {
                from: Source::Relayed(peer),
                framed: inner,
            }),
            Ok(scene::Message::Auth(payload)) => Ok(FromServer::Auth(payload)),
        }
    }

    fn open<'a>(&self, framed: &'a [u8]) -> Result<&'a [u8], Why> {
        match scene::parse(framed) {
            Ok(scene::Message::Raw(payload)) => Ok(payload),
            Ok(_) => Err("not a RAW packet (remote calls are read by the RPC layer)".into()),
            Err(e) => Err(e.0.into()),
        }
    }

    /// Godot 4's `PROTO_SIZE`, which its `get_max_packet_size` subtracts: more than the
    /// RAW command byte plus a client's relay header (7), the most this codec adds.
    fn reserved(&self) -> usize {
        GODOT4_PROTO_SIZE
    }

    fn sends_empty_packets(&self) -> bool {
        false
    }
}

// ----- Godot 4: bare transport -----

/// [`MultiplayerProtocol::Godot4Transport`]: Godot 4's transport alone, packets as put.
struct TransportCodec;

impl Codec for TransportCodec {
    fn greeting(&self, id: i32) -> Vec<Vec<u8>> {
        godot4_greeting(id)
    }

    /// Never sent (the transport has no announcements); SceneMultiplayer's bytes are what a
    /// Godot 4 peer would understand, should that ever change.
    fn announcement(&self, joined: bool, id: i32) -> Vec<u8> {
        SceneCodec.announcement(joined, id)
    }

    fn server_packet(&self, _target: i32, data: &[u8]) -> Vec<u8> {
        data.to_vec()
    }

    fn client_packet(&self, _own_id: i32, _to: Addressing, data: &[u8]) -> Vec<u8> {
        data.to_vec()
    }

    /// The bare transport has no layer above it: the packet goes as it is.
    fn server_message<'a>(&self, _target: i32, packet: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(packet)
    }

    fn client_message<'a>(&self, _own_id: i32, _to: Addressing, packet: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(packet)
    }

    fn read_client<'a>(&self, _from: i32, message: &'a [u8]) -> Result<FromClient<'a>, Why> {
        Ok(FromClient {
            to: Addressing::Server,
            framed: message,
        })
    }

    fn relayed<'a>(&self, _from: i32, message: &'a [u8], _framed: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(message)
    }

    fn read_server<'a>(&self, joining: bool, message: &'a [u8]) -> Result<FromServer<'a>, Dropped> {
        if joining {
            return Ok(godot4_welcome(message));
        }
        Ok(FromServer::Packet {
            from: Source::Server,
            framed: message,
        })
    }

    fn open<'a>(&self, framed: &'a [u8]) -> Result<&'a [u8], Why> {
        Ok(framed)
    }

    /// Godot 4's `PROTO_SIZE`, so both Godot 4 protocols report Godot's number; this codec
    /// adds nothing.
    fn reserved(&self) -> usize {
        GODOT4_PROTO_SIZE
    }

    fn sends_empty_packets(&self) -> bool {
        true
    }
}

// ----- Godot 3 -----

/// The header's `to` for a client's packet.
fn godot3_target(to: Addressing) -> i32 {
    match to {
        Addressing::Server => TARGET_PEER_SERVER,
        Addressing::To(target) => target,
    }
}

/// A data message carrying a `MultiplayerAPI` packet.
fn godot3_data(from: i32, to: i32, packet: &[u8]) -> Vec<u8> {
    godot3::message(
        godot3::Header {
            kind: godot3::SYS_NONE,
            from,
            to,
        },
        packet,
    )
}

/// [`MultiplayerProtocol::Godot3`]: the 9-byte header on every message, RAW packets inside.
struct Godot3Codec;

impl Codec for Godot3Codec {
    /// As `_send_add`: the id, then "the server joined", which completes the connection.
    fn greeting(&self, id: i32) -> Vec<Vec<u8>> {
        vec![
            godot3::sys(godot3::SYS_ID, id).to_vec(),
            godot3::sys(godot3::SYS_ADD, TARGET_PEER_SERVER).to_vec(),
        ]
    }

    fn announcement(&self, joined: bool, id: i32) -> Vec<u8> {
        match joined {
            true => godot3::sys(godot3::SYS_ADD, id).to_vec(),
            false => godot3::sys(godot3::SYS_DEL, id).to_vec(),
        }
    }

    fn server_packet(&self, target: i32, data: &[u8]) -> Vec<u8> {
        godot3::raw(TARGET_PEER_SERVER, target, data)
    }

    fn client_packet(&self, own_id: i32, to: Addressing, data: &[u8]) -> Vec<u8> {
        godot3::raw(own_id, godot3_target(to), data)
    }

    fn server_message<'a>(&self, target: i32, packet: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Owned(godot3_data(TARGET_PEER_SERVER, target, packet))
    }

    fn client_message<'a>(&self, own_id: i32, to: Addressing, packet: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Owned(godot3_data(own_id, godot3_target(to), packet))
    }

    /// Godot 3's checks ("Only server sends sys messages", "Someone is cheating").
    fn read_client<'a>(&self, from: i32, message: &'a [u8]) -> Result<FromClient<'a>, Why> {
        let (header, payload) = godot3::parse(message).map_err(|e| e.0)?;
        if header.kind != godot3::SYS_NONE {
            return Err("only the server sends system messages".into());
        }
        if header.from != from {
            return Err(format!("forged sender id {} in the header", header.from).into());
        }
        Ok(FromClient {
            to: Addressing::To(header.to),
            framed: payload,
        })
    }

    /// The whole message unchanged: its header already names the sender, which the server
    /// checked.
    fn relayed<'a>(&self, _from: i32, message: &'a [u8], _framed: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(message)
    }

    fn read_server<'a>(
        &self,
        _joining: bool,
        message: &'a [u8],
    ) -> Result<FromServer<'a>, Dropped> {
        let (header, payload) = godot3::parse(message).map_err(|e| Dropped::blaming_server(e.0))?;
        if header.kind == godot3::SYS_NONE {
            let from = match header.from {
                TARGET_PEER_SERVER => Source::Server,
                id => Source::Relayed(id),
            };
            return Ok(FromServer::Packet {
                from,
                framed: payload,
            });
        }
        if header.from != TARGET_PEER_SERVER {
            return Err(Dropped {
                from: header.from,
                why: "system message not sent by the server".into(),
            });
        }
        let id = godot3::sys_id(payload).map_err(|e| Dropped::blaming_server(e.0))?;
        match header.kind {
            godot3::SYS_ID => Ok(FromServer::AssignedId(id)),
            godot3::SYS_ADD if id == TARGET_PEER_SERVER => Ok(FromServer::Accepted),
            godot3::SYS_ADD => Ok(FromServer::PeerJoined(id)),
            godot3::SYS_DEL => Ok(FromServer::PeerLeft(id)),
            other => Err(Dropped::blaming_server(format!(
                "unknown message type {other}"
            ))),
        }
    }

    fn open<'a>(&self, framed: &'a [u8]) -> Result<&'a [u8], Why> {
        godot3::parse_raw(framed).map_err(|e| e.0.into())
    }

    /// The header and the RAW command byte. Godot 3 subtracts only the header (`PROTO_SIZE`)
    /// because its packets already hold the MultiplayerAPI command byte; wspeer's hold the
    /// application's bytes, so the RAW byte is kept back too.
    fn reserved(&self) -> usize {
        godot3::HEADER_LEN + 1
    }

    fn sends_empty_packets(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use MultiplayerProtocol::{Godot3, Godot4, Godot4Transport};

    #[test]
    fn every_protocol_round_trips_a_packet_for_the_server() {
        for protocol in [Godot4, Godot4Transport, Godot3] {
            let codec = protocol.codec();
            let sent = codec.client_packet(1234, Addressing::Server, b"hi");
            let read = codec.read_client(1234, &sent).expect("a valid packet");
            let to_server = match protocol {
                Godot3 => Addressing::To(TARGET_PEER_SERVER),
                _ => Addressing::Server,
            };
            assert_eq!(read.to, to_server, "{protocol:?}");
            assert_eq!(codec.open(read.framed), Ok(&b"hi"[..]), "{protocol:?}");
        }
    }

    #[test]
    fn reserved_bytes_cover_what_every_role_adds() {
        let data = [0xAB; 100];
        for protocol in [Godot4, Godot4Transport, Godot3] {
            let codec = protocol.codec();
            let sizes = [
                codec.server_packet(1234, &data).len(),
                codec.server_packet(0, &data).len(),
                codec.client_packet(1234, Addressing::Server, &data).len(),
                codec.client_packet(1234, Addressing::To(5678), &data).len(),
                codec
                    .client_packet(1234, Addressing::To(-5678), &data)
                    .len(),
            ];
            for size in sizes {
                assert!(
                    size - data.len() <= codec.reserved(),
                    "{protocol:?}: {size}"
                );
            }
        }
        // Godot 4's number, for both Godot 4 protocols.
        assert_eq!(Godot4.codec().reserved(), 9);
        assert_eq!(Godot4Transport.codec().reserved(), 9);
    }

    #[test]
    fn godot4_relay_is_rewrapped_with_its_source() {
        let codec = Godot4.codec();
        let sent = codec.client_packet(1234, Addressing::To(5678), b"hi");
        assert_eq!(sent, [7, 3, 0x2e, 0x16, 0, 0, 3, b'h', b'i']);
        let read = codec.read_client(1234, &sent).expect("a valid relay");
        assert_eq!(read.to, Addressing::To(5678));
        let passed_on = codec.relayed(1234, &sent, read.framed);
        assert_eq!(&passed_on[..], [7, 3, 0xd2, 0x04, 0, 0, 3, b'h', b'i']);
        let at_b = codec.read_server(false, &passed_on).expect("a valid relay");
        assert_eq!(
            at_b,
            FromServer::Packet {
                from: Source::Relayed(1234),
                framed: &[3, b'h', b'i'],
            }
        );
    }

    #[test]
    fn godot3_relays_the_message_unchanged_and_refuses_forged_senders() {
        let codec = Godot3.codec();
        let sent = codec.client_packet(1234, Addressing::To(5678), b"hi");
        let read = codec.read_client(1234, &sent).expect("a valid message");
        assert_eq!(read.to, Addressing::To(5678));
        assert_eq!(&codec.relayed(1234, &sent, read.framed)[..], &sent[..]);
        assert!(codec.read_client(4444, &sent).is_err());
    }

    #[test]
    fn godot3_greeting_reads_as_our_id_then_acceptance() {
        let codec = Godot3.codec();
        let greeting = codec.greeting(1234);
        let read: Vec<_> = greeting
            .iter()
            .map(|message| codec.read_server(true, message))
            .collect();
        assert_eq!(
            read,
            [Ok(FromServer::AssignedId(1234)), Ok(FromServer::Accepted)]
        );
    }

    #[test]
    fn godot4_greeting_reads_as_a_welcome_while_joining_only() {
        for protocol in [Godot4, Godot4Transport] {
            let codec = protocol.codec();
            let greeting = codec.greeting(1234);
            assert_eq!(greeting.len(), 1);
            let welcome = codec.read_server(true, &greeting[0]);
            assert_eq!(welcome, Ok(FromServer::Welcome(Ok(1234))), "{protocol:?}");
        }
    }
}
