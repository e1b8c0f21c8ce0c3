//! Who gets each multiplayer packet and whether the server keeps a copy, per protocol.
//!
//! Pure functions, so every relay rule is tested without a socket. The rules follow Godot
//! 4's `SceneMultiplayer` (the project reference `shared/reference/godot-rpc.md` §4.2,
//! "Admission / relay") and Godot 3's transport relay (`godot-websocket.md` §3.2), with the
//! deviations noted where they are made.

use std::collections::BTreeSet;
use std::fmt;

use super::{MultiplayerProtocol, TARGET_PEER_BROADCAST, TARGET_PEER_SERVER};

/// How a client's packet names its destination on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addressing {
    /// No destination on the wire, so the packet is for the server alone: a Godot 4 packet
    /// outside a relay wrapper, or any `Godot4Transport` packet.
    Server,
    /// A `set_target_peer` value (`0`, `1`, an id or `-id`): the destination of Godot 4's
    /// relay wrapper `[07 03 to …]`, or Godot 3's header `to`.
    To(i32),
}

/// Who a packet that reached a client says it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The server's own packet.
    Server,
    /// Another client's packet, passed on by the server.
    Relayed(i32),
}

impl Source {
    /// The peer id the packet is reported as coming from.
    pub(crate) fn id(self) -> i32 {
        match self {
            Source::Server => TARGET_PEER_SERVER,
            Source::Relayed(id) => id,
        }
    }
}

/// Which of the server's clients get a packet; expanded by
/// [`recipients`](Deliver::recipients) so that routing a packet allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deliver {
    /// No client.
    Nobody,
    /// One client, known to be connected when the route was chosen.
    One(i32),
    /// Every connected client except these two ids; either may be an id no client has
    /// (1, 0, or a negated `i32::MIN`), which then excludes nobody.
    AllBut(i32, i32),
}

impl Deliver {
    /// The clients in `connected` this selects, in id order.
    pub(crate) fn recipients(self, connected: &BTreeSet<i32>) -> impl Iterator<Item = i32> + '_ {
        // A range keeps `One` a lookup instead of a scan of every client; ids are never 0, so
        // skipping 0 excludes nobody.
        let (selected, skip) = match self {
            Deliver::Nobody => (connected.range(0..0), (0, 0)),
            Deliver::One(id) => (connected.range(id..=id), (0, 0)),
            Deliver::AllBut(a, b) => (connected.range(..), (a, b)),
        };
        selected
            .copied()
            .filter(move |&id| id != skip.0 && id != skip.1)
    }
}

/// Where the server sends a client's packet, and whether it keeps one for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The clients the packet is passed on to.
    pub(crate) deliver: Deliver,
    /// Whether the server's own application gets the packet too.
    pub(crate) keep: bool,
}

impl Route {
    /// For the server alone.
    const SERVER_ONLY: Route = Route {
        deliver: Deliver::Nobody,
        keep: true,
    };
}

/// Why a packet goes to nobody; on the server it is dropped and counted, on a sender's
/// side it becomes `Error::PeerNotFound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A Godot 4 relay wrapper addressed to the server, which clients never send: they reach
    /// the server unwrapped.
    RelayToServer,
    /// Relay is off (or the protocol has none) and the server is not a destination.
    RelayOff,
    /// A Godot 3 packet addressed to its own sender.
    ToSender,
    /// A destination that is not a connected (server) or announced (client) peer.
    UnknownPeer(i32),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RelayToServer => f.write_str("relay addressed to the server itself"),
            Refusal::RelayOff => f.write_str("server relay is off: clients reach only the server"),
            Refusal::ToSender => f.write_str("a packet addressed to its own sender"),
            Refusal::UnknownPeer(id) => write!(f, "relay to unknown peer {id}"),
        }
    }
}

/// On the server: where the packet client `from` addressed as `to` goes, and whether the
/// server keeps it. `connected` are the server's clients, the sender among them.
pub(crate) fn route(
    protocol: MultiplayerProtocol,
    relay_enabled: bool,
    from: i32,
    to: Addressing,
    connected: &BTreeSet<i32>,
) -> Result<Route, Refusal> {
    let to = match to {
        Addressing::Server => return Ok(Route::SERVER_ONLY),
        Addressing::To(to) => to,
    };
    match protocol {
        // The bare transport relays nothing: a Godot 4 client reaches only the server
        // (godot-websocket.md §2.4, layer 2).
        MultiplayerProtocol::Godot4Transport => Err(Refusal::RelayOff),
        MultiplayerProtocol::Godot4 => {
            // SceneMultiplayer only wraps packets whose target is not 1 (`send_command`,
            // godot-rpc.md §4.2), so a wrapper for 1 is not from a Godot client.
            if to == TARGET_PEER_SERVER {
                return Err(Refusal::RelayToServer);
            }
            // `_process_sys` forwards to `to` without comparing it with the sender: a client
            // may relay to itself.
            relay(relay_enabled, from, to, connected)
        }
        MultiplayerProtocol::Godot3 => {
            // `to = 1` is Godot 3's ordinary way to reach the server (godot-websocket.md
            // §3.2): nothing to relay, whatever the relay setting.
            if to == TARGET_PEER_SERVER {
                return Ok(Route::SERVER_ONLY);
            }
            if relay_enabled && to == from {
                return Err(Refusal::ToSender);
            }
            relay(relay_enabled, from, to, connected)
        }
    }
}

/// The rules Godot 4 and Godot 3 share for a destination other than the server itself.
fn relay(
    relay_enabled: bool,
    from: i32,
    to: i32,
    connected: &BTreeSet<i32>,
) -> Result<Route, Refusal> {
    // The server is among "everyone" (0) and "everyone but id" (-id), but not in "everyone
    // but the server" (-1) (godot-rpc.md §4.2, `:337-341`). Godot 3 also keeps `-1`, by
    // comparing `-to` with the sender (godot-websocket.md §3.2); wspeer does not copy that
    // bug.
    let keep = to == TARGET_PEER_BROADCAST || to < -1;
    if !relay_enabled {
        // Beyond Godot 4, which drops the whole relay packet when relay is off: the server
        // still takes its share of a broadcast (docs/multiplayer.md, `server_relay = false`).
        return if keep {
            Ok(Route::SERVER_ONLY)
        } else {
            Err(Refusal::RelayOff)
        };
    }
    let deliver = if to > 0 {
        // Godot 4.4 drops a relay to a departed peer silently (godot-rpc.md §7); wspeer
        // drops it too, but counts it.
        if !connected.contains(&to) {
            return Err(Refusal::UnknownPeer(to));
        }
        Deliver::One(to)
    } else {
        // Never back to the sender (godot-rpc.md §4.2, `:331`). `wrapping_neg`: a hostile
        // `i32::MIN` must not overflow, and excludes no real client.
        Deliver::AllBut(from, to.wrapping_neg())
    };
    Ok(Route { deliver, keep })
}

/// On the server: which clients get a packet the server itself sends to `target`, the same
/// in every protocol. The server is not its own client, so `target` 1 is an unknown peer,
/// and `0` and `-1` both mean every client.
pub(crate) fn server_send(target: i32, connected: &BTreeSet<i32>) -> Result<Deliver, Refusal> {
    if target > 0 {
        return match connected.contains(&target) {
            true => Ok(Deliver::One(target)),
            false => Err(Refusal::UnknownPeer(target)),
        };
    }
    Ok(Deliver::AllBut(TARGET_PEER_SERVER, target.wrapping_neg()))
}

/// On a client: how a packet for `target` is addressed, given the clients the server
/// announced. Everything goes to the server; only the addressing differs.
pub(crate) fn client_send(
    protocol: MultiplayerProtocol,
    target: i32,
    announced: &BTreeSet<i32>,
) -> Result<Addressing, Refusal> {
    match protocol {
        // As Godot's transport: a client only ever talks to the server, whatever the target.
        MultiplayerProtocol::Godot4Transport => Ok(Addressing::Server),
        // A client cannot know a peer the server did not announce (its own id included),
        // so sending there is a mistake worth an error rather than a silent drop.
        _ if target > TARGET_PEER_SERVER && !announced.contains(&target) => {
            Err(Refusal::UnknownPeer(target))
        }
        // As SceneMultiplayer's `send_command`: only packets for the server go unwrapped.
        MultiplayerProtocol::Godot4 if target == TARGET_PEER_SERVER => Ok(Addressing::Server),
        MultiplayerProtocol::Godot4 | MultiplayerProtocol::Godot3 => Ok(Addressing::To(target)),
    }
}

/// On a client: whether it takes a packet from `source`. A relayed packet must name a
/// client the server announced (never the server, which does not wrap its own packets,
/// nor this client itself).
pub(crate) fn client_accepts(source: Source, announced: &BTreeSet<i32>) -> bool {
    match source {
        Source::Server => true,
        Source::Relayed(id) => announced.contains(&id),
    }
}

/// On the server: whether clients are told about each other. Only with relay on (Godot 4's
/// `server_relay`; Godot 3 always announces) and never in the bare transport, which has no
/// announcements.
pub(crate) fn announces_peers(protocol: MultiplayerProtocol, relay_enabled: bool) -> bool {
    relay_enabled && protocol != MultiplayerProtocol::Godot4Transport
}

#[cfg(test)]
mod tests {
    use super::*;

    use MultiplayerProtocol::{Godot3, Godot4, Godot4Transport};

    /// The sender in every server-side case.
    const A: i32 = 1234;
    /// Other connected clients.
    const B: i32 = 5678;
    const C: i32 = 9012;
    /// An id no client has.
    const GONE: i32 = 4444;

    fn clients() -> BTreeSet<i32> {
        BTreeSet::from([A, B, C])
    }

    /// Routes a packet from A to `to` among A, B and C: the clients that get it and whether
    /// the server keeps it.
    fn relayed(
        protocol: MultiplayerProtocol,
        relay_enabled: bool,
        to: i32,
    ) -> Result<(Vec<i32>, bool), Refusal> {
        let connected = clients();
        let route = route(protocol, relay_enabled, A, Addressing::To(to), &connected)?;
        Ok((route.deliver.recipients(&connected).collect(), route.keep))
    }

    fn server_sends(target: i32) -> Result<Vec<i32>, Refusal> {
        let connected = clients();
        Ok(server_send(target, &connected)?
            .recipients(&connected)
            .collect())
    }

    // ----- Godot 4 SceneMultiplayer, relay on (godot-rpc.md §4.2) -----

    #[test]
    fn godot4_broadcast_reaches_every_other_client_and_the_server() {
        assert_eq!(relayed(Godot4, true, 0), Ok((vec![B, C], true)));
    }

    #[test]
    fn godot4_all_but_one_skips_the_sender_and_that_client_and_is_kept() {
        assert_eq!(relayed(Godot4, true, -B), Ok((vec![C], true)));
    }

    #[test]
    fn godot4_all_but_the_sender_reaches_the_others_and_is_kept() {
        assert_eq!(relayed(Godot4, true, -A), Ok((vec![B, C], true)));
    }

    #[test]
    fn godot4_all_but_an_unknown_id_reaches_every_other_client() {
        assert_eq!(relayed(Godot4, true, -GONE), Ok((vec![B, C], true)));
    }

    #[test]
    fn godot4_all_but_the_server_is_not_kept() {
        assert_eq!(relayed(Godot4, true, -1), Ok((vec![B, C], false)));
    }

    #[test]
    fn godot4_to_one_client_reaches_only_it_and_is_not_kept() {
        assert_eq!(relayed(Godot4, true, B), Ok((vec![B], false)));
    }

    #[test]
    fn godot4_to_the_sender_itself_is_echoed_back() {
        assert_eq!(relayed(Godot4, true, A), Ok((vec![A], false)));
    }

    #[test]
    fn godot4_to_an_unknown_client_is_refused() {
        assert_eq!(relayed(Godot4, true, GONE), Err(Refusal::UnknownPeer(GONE)));
    }

    #[test]
    fn godot4_relay_wrapper_for_the_server_is_refused_whatever_the_setting() {
        assert_eq!(relayed(Godot4, true, 1), Err(Refusal::RelayToServer));
        assert_eq!(relayed(Godot4, false, 1), Err(Refusal::RelayToServer));
    }

    #[test]
    fn godot4_unwrapped_packet_is_for_the_server_alone() {
        for relay_enabled in [true, false] {
            let route = route(Godot4, relay_enabled, A, Addressing::Server, &clients());
            assert_eq!(route, Ok(Route::SERVER_ONLY));
        }
    }

    #[test]
    fn godot4_hostile_minimum_target_excludes_only_the_sender() {
        assert_eq!(relayed(Godot4, true, i32::MIN), Ok((vec![B, C], true)));
    }

    // ----- Godot 4 SceneMultiplayer, relay off -----

    #[test]
    fn godot4_relay_off_broadcast_is_kept_and_not_forwarded() {
        assert_eq!(relayed(Godot4, false, 0), Ok((vec![], true)));
    }

    #[test]
    fn godot4_relay_off_all_but_one_is_kept_and_not_forwarded() {
        assert_eq!(relayed(Godot4, false, -B), Ok((vec![], true)));
    }

    #[test]
    fn godot4_relay_off_refuses_what_the_server_would_not_keep() {
        for to in [B, A, GONE, -1] {
            assert_eq!(
                relayed(Godot4, false, to),
                Err(Refusal::RelayOff),
                "to {to}"
            );
        }
    }

    // ----- Godot 4 bare transport -----

    #[test]
    fn transport_keeps_every_packet_and_relays_none() {
        for relay_enabled in [true, false] {
            let route = route(
                Godot4Transport,
                relay_enabled,
                A,
                Addressing::Server,
                &clients(),
            );
            assert_eq!(route, Ok(Route::SERVER_ONLY));
            for to in [0, 1, B, -B, -1] {
                let refused = relayed(Godot4Transport, relay_enabled, to);
                assert_eq!(refused, Err(Refusal::RelayOff), "to {to}");
            }
        }
    }

    // ----- Godot 3, relay on (godot-websocket.md §3.2) -----

    #[test]
    fn godot3_to_the_server_is_kept_and_not_forwarded_whatever_the_setting() {
        assert_eq!(relayed(Godot3, true, 1), Ok((vec![], true)));
        assert_eq!(relayed(Godot3, false, 1), Ok((vec![], true)));
    }

    #[test]
    fn godot3_broadcast_reaches_every_other_client_and_the_server() {
        assert_eq!(relayed(Godot3, true, 0), Ok((vec![B, C], true)));
    }

    #[test]
    fn godot3_all_but_one_skips_the_sender_and_that_client_and_is_kept() {
        assert_eq!(relayed(Godot3, true, -C), Ok((vec![B], true)));
    }

    #[test]
    fn godot3_all_but_the_server_is_not_kept_unlike_godot3_itself() {
        assert_eq!(relayed(Godot3, true, -1), Ok((vec![B, C], false)));
    }

    #[test]
    fn godot3_to_one_client_reaches_only_it_and_is_not_kept() {
        assert_eq!(relayed(Godot3, true, C), Ok((vec![C], false)));
    }

    #[test]
    fn godot3_to_the_sender_itself_is_refused() {
        assert_eq!(relayed(Godot3, true, A), Err(Refusal::ToSender));
    }

    #[test]
    fn godot3_to_an_unknown_client_is_refused() {
        assert_eq!(relayed(Godot3, true, GONE), Err(Refusal::UnknownPeer(GONE)));
    }

    #[test]
    fn godot3_hostile_minimum_target_excludes_only_the_sender() {
        assert_eq!(relayed(Godot3, true, i32::MIN), Ok((vec![B, C], true)));
    }

    // ----- Godot 3, relay off -----

    #[test]
    fn godot3_relay_off_broadcast_and_all_but_one_are_kept_and_not_forwarded() {
        assert_eq!(relayed(Godot3, false, 0), Ok((vec![], true)));
        assert_eq!(relayed(Godot3, false, -B), Ok((vec![], true)));
    }

    #[test]
    fn godot3_relay_off_refuses_what_the_server_would_not_keep() {
        // The sender itself too: with relay off it is one more client the server cannot reach.
        for to in [B, A, GONE, -1] {
            assert_eq!(
                relayed(Godot3, false, to),
                Err(Refusal::RelayOff),
                "to {to}"
            );
        }
    }

    // ----- The server's own packets (every protocol) -----

    #[test]
    fn server_broadcast_and_all_but_the_server_reach_every_client() {
        assert_eq!(server_sends(0), Ok(vec![A, B, C]));
        assert_eq!(server_sends(-1), Ok(vec![A, B, C]));
    }

    #[test]
    fn server_all_but_one_skips_that_client() {
        assert_eq!(server_sends(-B), Ok(vec![A, C]));
        assert_eq!(server_sends(-GONE), Ok(vec![A, B, C]));
        assert_eq!(server_sends(i32::MIN), Ok(vec![A, B, C]));
    }

    #[test]
    fn server_to_one_client_reaches_only_it() {
        assert_eq!(server_sends(B), Ok(vec![B]));
    }

    #[test]
    fn server_to_itself_or_an_unknown_client_is_refused() {
        assert_eq!(server_sends(1), Err(Refusal::UnknownPeer(1)));
        assert_eq!(server_sends(GONE), Err(Refusal::UnknownPeer(GONE)));
    }

    // ----- A client's packets -----

    #[test]
    fn godot4_client_wraps_everything_but_packets_for_the_server() {
        let announced = BTreeSet::from([B]);
        let send = |target| client_send(Godot4, target, &announced);
        assert_eq!(send(1), Ok(Addressing::Server));
        for target in [B, 0, -1, -B, -GONE] {
            assert_eq!(send(target), Ok(Addressing::To(target)), "target {target}");
        }
    }

    #[test]
    fn godot3_client_addresses_everything_in_the_header() {
        let announced = BTreeSet::from([B]);
        for target in [1, B, 0, -1, -B, -GONE] {
            let addressing = client_send(Godot3, target, &announced);
            assert_eq!(addressing, Ok(Addressing::To(target)), "target {target}");
        }
    }

    #[test]
    fn client_refuses_a_peer_the_server_never_announced() {
        // A is the client itself: the server never announces a client to itself.
        let announced = BTreeSet::from([B]);
        for protocol in [Godot4, Godot3] {
            for target in [GONE, A] {
                let refused = client_send(protocol, target, &announced);
                assert_eq!(refused, Err(Refusal::UnknownPeer(target)));
            }
        }
    }

    #[test]
    fn transport_client_sends_everything_to_the_server_whatever_the_target() {
        for target in [1, 0, -1, B, GONE] {
            let addressing = client_send(Godot4Transport, target, &BTreeSet::new());
            assert_eq!(addressing, Ok(Addressing::Server), "target {target}");
        }
    }

    #[test]
    fn client_accepts_the_server_and_announced_clients_only() {
        let announced = BTreeSet::from([B]);
        assert!(client_accepts(Source::Server, &announced));
        assert!(client_accepts(Source::Relayed(B), &announced));
        for id in [GONE, 1, 0, -B] {
            assert!(
                !client_accepts(Source::Relayed(id), &announced),
                "from {id}"
            );
        }
    }

    // ----- Announcements -----

    #[test]
    fn clients_are_announced_to_each_other_only_with_relay_on_and_not_in_the_transport() {
        assert!(announces_peers(Godot4, true));
        assert!(announces_peers(Godot3, true));
        assert!(!announces_peers(Godot4, false));
        assert!(!announces_peers(Godot3, false));
        assert!(!announces_peers(Godot4Transport, true));
        assert!(!announces_peers(Godot4Transport, false));
    }

    // ----- Expansion -----

    #[test]
    fn recipients_select_connected_clients_in_id_order() {
        let connected = clients();
        let expand = |deliver: Deliver| deliver.recipients(&connected).collect::<Vec<_>>();
        assert_eq!(expand(Deliver::Nobody), Vec::<i32>::new());
        assert_eq!(expand(Deliver::One(C)), vec![C]);
        assert_eq!(expand(Deliver::One(GONE)), Vec::<i32>::new());
        assert_eq!(expand(Deliver::AllBut(A, C)), vec![B]);
        assert_eq!(expand(Deliver::AllBut(1, 0)), vec![A, B, C]);
        assert_eq!(Deliver::Nobody.recipients(&BTreeSet::new()).count(), 0);
    }
}
