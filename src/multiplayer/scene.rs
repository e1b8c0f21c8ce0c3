//! The RPC layer of a multiplayer peer, without I/O: declared RPC nodes, the node-path
//! caches in both directions, and what each received RPC, path-cache or replication packet
//! means (Godot 4's `SceneMultiplayer`, Godot 3's `MultiplayerAPI`).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::rpc::{self, NodeTarget, RpcError, RpcTable};
use crate::variant::{Limits, Variant};

/// Who may call an RPC method on a node (Godot 4's `@rpc` mode; for Godot 3,
/// [`AnyPeer`](Self::AnyPeer) is `remote`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RpcMode {
    /// Godot's `"any_peer"` (Godot 3: `remote`): anyone.
    AnyPeer,
    /// Godot's default `"authority"` (Godot 3: `puppet`): only the node's multiplayer
    /// authority (peer 1 unless [`RpcNode::authority`] says otherwise).
    #[default]
    Authority,
    /// A method the Godot side has but this side never runs (it still counts in Godot 4's
    /// method numbering): calls to it are refused.
    Disabled,
}

/// One node's RPC methods, declared as the Godot side has them: Godot 4 numbers methods by
/// their sorted names, so the declaration must list **every** `@rpc` method of the node's
/// script (inherited ones included) and every name given to `Node.rpc_config`, even those
/// this side never accepts ([`RpcMode::Disabled`]).
///
/// ```
/// use wspeer::{RpcMode, RpcNode};
///
/// let main = RpcNode::new()
///     .method("echo", RpcMode::AnyPeer)
///     .method("echo_reply", RpcMode::AnyPeer);
/// assert_eq!(main.names().collect::<Vec<_>>(), ["echo", "echo_reply"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpcNode {
    script: Vec<(String, RpcMode)>,
    node: Vec<(String, RpcMode)>,
    authority: Option<i32>,
}

impl RpcNode {
    /// A node with no methods, whose authority is the server (peer 1).
    pub fn new() -> RpcNode {
        RpcNode::default()
    }

    /// Adds a script method (`@rpc func name`) and who may call it here. For Godot 3 this
    /// also declares a property other peers may `rset` (`remote var name`).
    pub fn method(mut self, name: &str, mode: RpcMode) -> RpcNode {
        self.script.retain(|(n, _)| n != name);
        self.script.push((name.to_string(), mode));
        self
    }

    /// Adds a node-level method (`Node.rpc_config(name, ...)`; Godot 4 numbers these
    /// apart, with the high bit set).
    pub fn node_method(mut self, name: &str, mode: RpcMode) -> RpcNode {
        self.node.retain(|(n, _)| n != name);
        self.node.push((name.to_string(), mode));
        self
    }

    /// Sets the node's multiplayer authority (Godot's `set_multiplayer_authority`; 1 by
    /// default).
    pub fn authority(mut self, peer: i32) -> RpcNode {
        self.authority = Some(peer);
        self
    }

    /// The node's multiplayer authority.
    pub fn get_authority(&self) -> i32 {
        self.authority.unwrap_or(super::TARGET_PEER_SERVER)
    }

    /// Every method name, node-level ones first, each group in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.node
            .iter()
            .chain(&self.script)
            .map(|(n, _)| n.as_str())
    }

    fn mode_of(&self, name: &str) -> Option<RpcMode> {
        self.script
            .iter()
            .chain(&self.node)
            .find(|(n, _)| n == name)
            .map(|(_, mode)| *mode)
    }

    fn table(&self) -> RpcTable {
        let names = |list: &[(String, RpcMode)]| -> Vec<String> {
            list.iter().map(|(n, _)| n.clone()).collect()
        };
        RpcTable::with_node_methods(&names(&self.script), &names(&self.node))
    }
}

/// An RPC that arrived: Godot's `rpc` / `rpc_id` from peer `from`.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteCall {
    /// The caller's peer id (the original sender of a relayed call).
    pub from: i32,
    /// The node's absolute path, as declared (`/root/Main`).
    pub node: String,
    /// The method's name.
    pub method: String,
    /// The arguments.
    pub args: Vec<Variant>,
}

/// A Godot 3 `rset` that arrived: set `property` of `node` to `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSet {
    /// The sender's peer id.
    pub from: i32,
    /// The node's absolute path, as declared.
    pub node: String,
    /// The property's name.
    pub property: String,
    /// The new value.
    pub value: Variant,
}

/// Which packet family the layer speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Godot 4's `SceneMultiplayer`.
    Godot4,
    /// Godot 3's `MultiplayerAPI`.
    Godot3,
}

/// What a received packet meant.
#[derive(Debug, PartialEq)]
pub(crate) enum Received<'a> {
    /// User bytes (`send_bytes`): for the packet queue.
    Raw(&'a [u8]),
    /// An RPC for the application.
    Call(RemoteCall),
    /// A Godot 3 property set for the application.
    Set(RemoteSet),
    /// A Godot 4 replication packet (spawn, despawn, sync), whole, for the application.
    Replication(Vec<u8>),
    /// Handled here (a path-cache packet); maybe a reply was queued.
    Handled,
}

/// Why a received packet is dropped.
#[derive(Debug, PartialEq)]
pub(crate) enum Refused {
    /// It could not be read.
    Packet(RpcError),
    /// It was read, but cannot be accepted.
    Rule(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Packet(e) => write!(f, "malformed packet: {e}"),
            Refused::Rule(why) => f.write_str(why),
        }
    }
}

impl From<RpcError> for Refused {
    fn from(e: RpcError) -> Refused {
        Refused::Packet(e)
    }
}

fn refuse<T>(why: String) -> Result<T, Refused> {
    Err(Refused::Rule(why))
}

/// A declared node, ready for the wire.
struct Declared {
    absolute: String,
    node: RpcNode,
    table: RpcTable,
    checksum: String,
}

/// What this side told the others about one node's path.
struct SentPath {
    id: u32,
    /// Peers sent a `SIMPLIFY_PATH` for it.
    simplified: BTreeSet<i32>,
    /// Peers that confirmed it: they get the cache id instead of the path.
    confirmed: BTreeSet<i32>,
}

/// The RPC layer's state on one multiplayer peer.
pub(crate) struct Scene {
    flavor: Flavor,
    root: String,
    /// Declared nodes by path relative to the root.
    nodes: HashMap<String, Declared>,
    sent: HashMap<String, SentPath>,
    next_id: u32,
    /// Paths the other peers simplified: (sender, id) → relative path.
    received: HashMap<(i32, u32), String>,
    /// How many of `received` each sender holds, to bound them.
    received_per_peer: HashMap<i32, usize>,
    max_paths_per_peer: usize,
    limits: Limits,
    /// Replies (confirmations) to send, in order, each with its destination.
    pub(crate) outgoing: Vec<(i32, Vec<u8>)>,
}

impl Scene {
    pub(crate) fn new(
        flavor: Flavor,
        root: &str,
        max_paths_per_peer: usize,
        limits: Limits,
    ) -> Scene {
        Scene {
            flavor,
            root: root.trim_end_matches('/').to_string(),
            nodes: HashMap::new(),
            sent: HashMap::new(),
            next_id: 1,
            received: HashMap::new(),
            received_per_peer: HashMap::new(),
            max_paths_per_peer,
            limits,
            outgoing: Vec::new(),
        }
    }

    /// The path relative to the multiplayer root (`/root/Main` → `Main`, `/root` → `.`),
    /// as Godot puts it on the wire; a relative path is kept as it is.
    fn relative(&self, path: &str) -> String {
        if !path.starts_with('/') {
            return path.to_string();
        }
        // Godot's `rel_path_to`: up from the root to the common ancestor, then down.
        let root = node_names(&self.root);
        let target = node_names(path);
        let common = root.iter().zip(&target).take_while(|(a, b)| a == b).count();
        let mut parts = vec![".."; root.len() - common];
        parts.extend(&target[common..]);
        match parts.is_empty() {
            true => ".".to_string(),
            false => parts.join("/"),
        }
    }

    fn absolute(&self, relative: &str) -> String {
        let mut parts = node_names(&self.root);
        for name in relative.split('/') {
            match name {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// The packet family.
    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Declares (or replaces) the RPC methods of the node at `path`.
    pub(crate) fn declare(&mut self, path: &str, node: RpcNode) {
        let relative = self.relative(path);
        let table = node.table();
        let checksum = table.checksum();
        self.nodes.insert(
            relative.clone(),
            Declared {
                absolute: self.absolute(&relative),
                node,
                table,
                checksum,
            },
        );
    }

    /// Forgets what peer `id` cached and confirmed: it left.
    pub(crate) fn peer_left(&mut self, id: i32) {
        if self.received_per_peer.remove(&id).is_some() {
            self.received.retain(|(sender, _), _| *sender != id);
        }
        for sent in self.sent.values_mut() {
            sent.simplified.remove(&id);
            sent.confirmed.remove(&id);
        }
    }

    /// Forgets everything but the declarations (the connection ended).
    pub(crate) fn reset(&mut self) {
        self.sent.clear();
        self.next_id = 1;
        self.received.clear();
        self.received_per_peer.clear();
        self.outgoing.clear();
    }

    /// The packets, each with its destination (a `set_target_peer` value), that call
    /// `method` on the node at `path` for `recipients` (who `target` selects: one peer,
    /// everyone, or everyone but one): a `SIMPLIFY_PATH` first
    /// to each recipient that never had one, then one packet for `target` when every
    /// recipient confirmed the node's cache id, else one per recipient (the cache id to
    /// those that confirmed, the full path to the others), as Godot sends them.
    pub(crate) fn call(
        &mut self,
        target: i32,
        recipients: &[i32],
        path: &str,
        method: &str,
        args: &[Variant],
    ) -> Result<Vec<(i32, Vec<u8>)>, CallError> {
        let relative = self.relative(path);
        let declared = self
            .nodes
            .get(&relative)
            .ok_or_else(|| CallError::UnknownNode(path.to_string()))?;
        let method_id = match self.flavor {
            Flavor::Godot4 => declared
                .table
                .id_of(method)
                .ok_or_else(|| CallError::UnknownMethod(method.to_string(), path.to_string()))?,
            Flavor::Godot3 => {
                if declared.node.mode_of(method).is_none() {
                    return Err(CallError::UnknownMethod(
                        method.to_string(),
                        path.to_string(),
                    ));
                }
                0
            }
        };
        let checksum = declared.checksum.clone();
        let flavor = self.flavor;
        let build = |target: NodeTarget<'_>| match flavor {
            Flavor::Godot4 => rpc::godot4::remote_call(target, method_id, args),
            Flavor::Godot3 => rpc::godot3::remote_call(target, method, args),
        };
        // Build before touching the cache, so a bad argument changes nothing.
        let full = build(NodeTarget::Path(&relative)).map_err(CallError::Packet)?;
        let sent = match self.sent.entry(relative.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let id = self.next_id;
                self.next_id += 1;
                entry.insert(SentPath {
                    id,
                    simplified: BTreeSet::new(),
                    confirmed: BTreeSet::new(),
                })
            }
        };
        let id = sent.id;
        let cached = build(NodeTarget::Cached(id)).map_err(CallError::Packet)?;
        let mut packets = Vec::new();
        for &peer in recipients {
            if sent.simplified.insert(peer) {
                let simplify = match flavor {
                    Flavor::Godot4 => rpc::godot4::simplify_path(&checksum, id, &relative),
                    Flavor::Godot3 => rpc::godot3::simplify_path(id, &relative),
                };
                packets.push((peer, simplify));
            }
        }
        if recipients.iter().all(|peer| sent.confirmed.contains(peer)) {
            packets.push((target, cached));
        } else {
            for &peer in recipients {
                let packet = match sent.confirmed.contains(&peer) {
                    true => cached.clone(),
                    false => full.clone(),
                };
                packets.push((peer, packet));
            }
        }
        Ok(packets)
    }

    /// Reads a packet from `from` that is not a system packet.
    pub(crate) fn receive<'a>(
        &mut self,
        from: i32,
        packet: &'a [u8],
    ) -> Result<Received<'a>, Refused> {
        match self.flavor {
            Flavor::Godot4 => self.receive4(from, packet),
            Flavor::Godot3 => self.receive3(from, packet),
        }
    }

    fn receive4<'a>(&mut self, from: i32, packet: &'a [u8]) -> Result<Received<'a>, Refused> {
        use rpc::godot4::{
            CMD_CONFIRM_PATH, CMD_DESPAWN, CMD_REMOTE_CALL, CMD_SIMPLIFY_PATH, CMD_SPAWN, CMD_SYNC,
            Confirmed, confirm_path, parse_confirm_path, parse_remote_call, parse_simplify_path,
        };
        let Some(&first) = packet.first() else {
            return refuse("empty packet".into());
        };
        match first & 0x07 {
            CMD_REMOTE_CALL => {
                let call = parse_remote_call(packet, &self.limits)?;
                let relative = self.resolve(from, call.target)?;
                let declared = self.declared(&relative)?;
                let Some(method) = declared.table.name_of(call.method) else {
                    return refuse(format!(
                        "method id {:#x} is not declared on {} (declare every @rpc method \
                         the Godot side has: ids follow their sorted names)",
                        call.method, declared.absolute
                    ));
                };
                self.admit_call(from, declared, method)?;
                Ok(Received::Call(RemoteCall {
                    from,
                    node: declared.absolute.clone(),
                    method: method.to_string(),
                    args: call.args,
                }))
            }
            CMD_SIMPLIFY_PATH => {
                let simplify = parse_simplify_path(packet)?;
                self.remember(from, simplify.id, simplify.path)?;
                match self.nodes.get(simplify.path) {
                    Some(declared) => {
                        let valid = declared.checksum == simplify.checksum;
                        if !valid {
                            log::warn!(
                                "peer {from}'s RPC methods of {} differ from the declared ones \
                                 (checksum {} against {}): method ids will not match",
                                declared.absolute,
                                simplify.checksum,
                                declared.checksum
                            );
                        }
                        self.outgoing
                            .push((from, confirm_path(valid, simplify.id).to_vec()));
                    }
                    // Godot answers only for a node it has; the sender then keeps sending
                    // the full path, which is refused as undeclared when it arrives.
                    None => log::debug!(
                        "peer {from} cached path {:?}, which has no declared RPC node",
                        simplify.path
                    ),
                }
                Ok(Received::Handled)
            }
            CMD_CONFIRM_PATH => {
                let confirm = parse_confirm_path(packet)?;
                let sent = match confirm.confirmed {
                    Confirmed::Id(id) => self.sent.iter_mut().find(|(_, s)| s.id == id),
                    Confirmed::Path(path) => self.sent.iter_mut().find(|(p, _)| p.as_str() == path),
                };
                let Some((path, sent)) = sent else {
                    return refuse(format!("confirmation of a path never sent: {confirm:?}"));
                };
                if !sent.simplified.contains(&from) {
                    return refuse(format!("confirmation of {path:?}, never sent to this peer"));
                }
                if !confirm.valid {
                    log::warn!(
                        "peer {from} reports that its RPC methods of {path:?} differ from the \
                         declared ones: method ids will not match"
                    );
                }
                sent.confirmed.insert(from);
                Ok(Received::Handled)
            }
            super::wire::scene::CMD_RAW if packet.len() >= 2 => Ok(Received::Raw(&packet[1..])),
            super::wire::scene::CMD_RAW => refuse("RAW packet without payload".into()),
            CMD_SPAWN | CMD_DESPAWN | CMD_SYNC => Ok(Received::Replication(packet.to_vec())),
            _ => refuse("a system packet where none may be".into()),
        }
    }

    fn receive3<'a>(&mut self, from: i32, packet: &'a [u8]) -> Result<Received<'a>, Refused> {
        use rpc::godot3::{Packet, confirm_path, parse};
        match parse(packet, &self.limits)? {
            Packet::Raw(bytes) => Ok(Received::Raw(bytes)),
            Packet::RemoteCall {
                target,
                method,
                args,
            } => {
                let relative = self.resolve(from, target)?;
                let declared = self.declared(&relative)?;
                self.admit_call(from, declared, method)?;
                Ok(Received::Call(RemoteCall {
                    from,
                    node: declared.absolute.clone(),
                    method: method.to_string(),
                    args,
                }))
            }
            Packet::RemoteSet {
                target,
                property,
                value,
            } => {
                let relative = self.resolve(from, target)?;
                let declared = self.declared(&relative)?;
                self.admit_call(from, declared, property)?;
                Ok(Received::Set(RemoteSet {
                    from,
                    node: declared.absolute.clone(),
                    property: property.to_string(),
                    value,
                }))
            }
            Packet::SimplifyPath { id, path } => {
                self.remember(from, id, path)?;
                if self.nodes.contains_key(path) {
                    self.outgoing.push((from, confirm_path(path)));
                } else {
                    log::debug!("peer {from} cached path {path:?}, which has no declared RPC node");
                }
                Ok(Received::Handled)
            }
            Packet::ConfirmPath { path } => {
                let Some(sent) = self.sent.get_mut(path) else {
                    return refuse(format!("confirmation of a path never sent: {path:?}"));
                };
                if !sent.simplified.contains(&from) {
                    return refuse(format!("confirmation of {path:?}, never sent to this peer"));
                }
                sent.confirmed.insert(from);
                Ok(Received::Handled)
            }
        }
    }

    /// The relative path a received target names.
    fn resolve(&self, from: i32, target: NodeTarget<'_>) -> Result<String, Refused> {
        match target {
            NodeTarget::Path(path) => Ok(path.to_string()),
            NodeTarget::Cached(id) => match self.received.get(&(from, id)) {
                Some(path) => Ok(path.clone()),
                None => refuse(format!("unknown node cache id {id}")),
            },
        }
    }

    fn declared(&self, relative: &str) -> Result<&Declared, Refused> {
        match self.nodes.get(relative) {
            Some(declared) => Ok(declared),
            None => refuse(format!(
                "no RPC node declared at {:?}",
                self.absolute(relative)
            )),
        }
    }

    /// Godot's mode check.
    fn admit_call(&self, from: i32, declared: &Declared, method: &str) -> Result<(), Refused> {
        match declared.node.mode_of(method) {
            Some(RpcMode::AnyPeer) => Ok(()),
            Some(RpcMode::Authority) if from == declared.node.get_authority() => Ok(()),
            Some(RpcMode::Authority) => refuse(format!(
                "{method} on {} accepts calls from its authority (peer {}) only",
                declared.absolute,
                declared.node.get_authority()
            )),
            Some(RpcMode::Disabled) => refuse(format!(
                "{method} on {} is not accepted on this side",
                declared.absolute
            )),
            None => refuse(format!("{method} is not declared on {}", declared.absolute)),
        }
    }

    /// Stores a path a peer simplified, within the per-peer bound.
    fn remember(&mut self, from: i32, id: u32, path: &str) -> Result<(), Refused> {
        if self.received.contains_key(&(from, id)) {
            return refuse(format!("path cache id {id} was already given"));
        }
        let count = self.received_per_peer.entry(from).or_default();
        if *count >= self.max_paths_per_peer {
            return refuse(format!(
                "more than {} cached node paths (max_cached_paths_per_peer)",
                self.max_paths_per_peer
            ));
        }
        *count += 1;
        self.received.insert((from, id), path.to_string());
        Ok(())
    }
}

/// The names of a node path (`/root/Main` → `root`, `Main`).
fn node_names(path: &str) -> Vec<&str> {
    path.split('/').filter(|name| !name.is_empty()).collect()
}

/// Why an RPC could not be sent.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No node is declared at this path.
    UnknownNode(String),
    /// The method is not declared on the node.
    UnknownMethod(String, String),
    /// The packet could not be built (an argument).
    Packet(RpcError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownNode(path) => {
                write!(
                    f,
                    "no RPC node declared at {path:?} (declare it with rpc_config)"
                )
            }
            CallError::UnknownMethod(method, path) => {
                write!(f, "method {method:?} is not declared on {path:?}")
            }
            CallError::Packet(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The layer alone, as a state machine: packets go in by hand and the packets and
    //! events it produces are checked byte for byte (reference `godot-rpc.md` §4.4, §4.5,
    //! §6), without sockets or time.

    use super::*;

    const MAIN: &str = "/root/Main";
    /// `md5("net" + "echo" + "never" + "secret")`, computed outside wspeer.
    const MAIN_MD5: &str = "d92daeba95add4876cec9925973a16d9";

    /// Godot 4 ids: `echo` 0, `never` 1, `secret` 2, node-level `net` 0x8000.
    fn main_node() -> RpcNode {
        RpcNode::new()
            .method("secret", RpcMode::Authority)
            .method("echo", RpcMode::AnyPeer)
            .method("never", RpcMode::Disabled)
            .node_method("net", RpcMode::AnyPeer)
    }

    fn scene(flavor: Flavor, max_paths: usize) -> Scene {
        let mut scene = Scene::new(flavor, "/root", max_paths, Limits::default());
        scene.declare(MAIN, main_node());
        scene
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn seven() -> Vec<Variant> {
        vec![Variant::Int(7)]
    }

    /// `01 md5 00 <u32 id> "Main" 00`.
    fn simplify4(checksum: &str, id: u32, path: &str) -> Vec<u8> {
        cat(&[
            &[0x01],
            checksum.as_bytes(),
            &[0],
            &id.to_le_bytes(),
            path.as_bytes(),
            &[0],
        ])
    }

    /// `echo(7)` on `Main` with the full path: the path at offset 9.
    fn full_echo4() -> Vec<u8> {
        cat(&[
            &[0x20, 0x09, 0x00, 0x00, 0x80, 0x00, 0x01, 0x02, 0x07],
            b"Main\0",
        ])
    }

    /// `echo(7)` on cache id 1.
    const CACHED_ECHO4: [u8; 6] = [0x00, 0x01, 0x00, 0x01, 0x02, 0x07];

    fn call4(target: NodeTarget<'_>, method: u16, args: &[Variant]) -> Vec<u8> {
        rpc::godot4::remote_call(target, method, args).unwrap()
    }

    fn call3(target: NodeTarget<'_>, method: &str, args: &[Variant]) -> Vec<u8> {
        rpc::godot3::remote_call(target, method, args).unwrap()
    }

    fn is_rule(result: Result<Received<'_>, Refused>) -> bool {
        matches!(result, Err(Refused::Rule(_)))
    }

    fn called(from: i32, node: &str, method: &str, args: Vec<Variant>) -> Received<'static> {
        Received::Call(RemoteCall {
            from,
            node: node.into(),
            method: method.into(),
            args,
        })
    }

    #[test]
    fn the_path_travels_until_the_peer_confirms_then_the_cache_id() {
        let mut s = scene(Flavor::Godot4, 16);
        let echo = |s: &mut Scene, target: i32, recipients: &[i32]| {
            s.call(target, recipients, MAIN, "echo", &seven()).unwrap()
        };
        // First call: SIMPLIFY_PATH, then the full path.
        assert_eq!(
            echo(&mut s, 5, &[5]),
            [(5, simplify4(MAIN_MD5, 1, "Main")), (5, full_echo4())]
        );
        // Not confirmed yet: the path again, no second SIMPLIFY_PATH.
        assert_eq!(echo(&mut s, 5, &[5]), [(5, full_echo4())]);
        assert_eq!(
            s.receive(5, &[0x02, 0x01, 0x01, 0x00, 0x00, 0x00]),
            Ok(Received::Handled)
        );
        assert_eq!(echo(&mut s, 5, &[5]), [(5, CACHED_ECHO4.to_vec())]);
        // A broadcast while peer 6 has not confirmed: one packet each, peer 6 first gets
        // the same cache id.
        assert_eq!(
            echo(&mut s, 0, &[5, 6]),
            [
                (6, simplify4(MAIN_MD5, 1, "Main")),
                (5, CACHED_ECHO4.to_vec()),
                (6, full_echo4()),
            ]
        );
        s.receive(6, &[0x02, 0x01, 0x01, 0x00, 0x00, 0x00]).unwrap();
        // Everyone confirmed: one packet for the whole target.
        assert_eq!(echo(&mut s, 0, &[5, 6]), [(0, CACHED_ECHO4.to_vec())]);
        assert_eq!(echo(&mut s, -5, &[6]), [(-5, CACHED_ECHO4.to_vec())]);
        // Nobody to reach: nothing but the (empty) broadcast.
        assert_eq!(echo(&mut s, 0, &[]), [(0, CACHED_ECHO4.to_vec())]);
        // A second node gets the next id; node-level methods have a u16 id.
        s.declare(
            "/root/Hud",
            RpcNode::new().node_method("show", RpcMode::AnyPeer),
        );
        let hud = s.call(5, &[5], "/root/Hud", "show", &[]).unwrap();
        assert_eq!(hud[0].1[34..38], 2u32.to_le_bytes());
        assert_eq!(
            hud[1],
            (
                5,
                cat(&[&[0xe0, 0x07, 0x00, 0x00, 0x80, 0x00, 0x80], b"Hud\0"])
            )
        );
        assert!(s.outgoing.is_empty());
    }

    #[test]
    fn godot3_paths_travel_by_name_until_confirmed() {
        let mut s = scene(Flavor::Godot3, 16);
        let simplify = cat(&[&[0x02], &1u32.to_le_bytes(), b"Main\0"]);
        let full = cat(&[
            &[0x00, 0x13, 0x00, 0x00, 0x80],
            b"echo\0",
            &[0x01, 0x02, 0, 0, 0, 0x07, 0, 0, 0],
            b"Main\0",
        ]);
        let cached = cat(&[
            &[0x00],
            &1u32.to_le_bytes(),
            b"echo\0",
            &[0x01, 0x02, 0, 0, 0, 0x07, 0, 0, 0],
        ]);
        let packets = s.call(5, &[5], MAIN, "echo", &seven()).unwrap();
        assert_eq!(packets, [(5, simplify), (5, full)]);
        // CONFIRM_PATH names the path.
        assert!(is_rule(s.receive(6, b"\x03Main\0")));
        assert_eq!(s.receive(5, b"\x03Main\0"), Ok(Received::Handled));
        assert_eq!(
            s.call(5, &[5], MAIN, "echo", &seven()).unwrap(),
            [(5, cached)]
        );
        assert!(is_rule(s.receive(5, b"\x03Nowhere\0")));
        // Received: SIMPLIFY_PATH is answered with CONFIRM_PATH; cached calls resolve;
        // REMOTE_SET goes through the same mode check.
        assert_eq!(
            s.receive(7, &cat(&[&[0x02], &4u32.to_le_bytes(), b"Main\0"])),
            Ok(Received::Handled)
        );
        assert_eq!(s.outgoing, [(7, b"\x03Main\0".to_vec())]);
        assert_eq!(
            s.receive(7, &call3(NodeTarget::Cached(4), "net", &seven())),
            Ok(called(7, MAIN, "net", seven()))
        );
        let set = |property: &str| {
            rpc::godot3::remote_set(NodeTarget::Cached(4), property, &Variant::Int(3)).unwrap()
        };
        assert_eq!(
            s.receive(7, &set("echo")),
            Ok(Received::Set(RemoteSet {
                from: 7,
                node: MAIN.into(),
                property: "echo".into(),
                value: Variant::Int(3),
            }))
        );
        assert!(is_rule(s.receive(7, &set("hp"))));
        assert!(is_rule(s.receive(7, &set("never"))));
        assert_eq!(s.receive(7, &[0x04, 0xaa]), Ok(Received::Raw(&[0xaa])));
        assert!(matches!(s.receive(7, &[0x04]), Err(Refused::Packet(_))));
    }

    #[test]
    fn confirmations_must_answer_a_simplify_sent_to_that_peer() {
        let mut s = scene(Flavor::Godot4, 16);
        let confirm = |id: u32| cat(&[&[0x02, 0x01], &id.to_le_bytes()]);
        assert!(is_rule(s.receive(5, &confirm(1))));
        s.call(5, &[5], MAIN, "echo", &seven()).unwrap();
        assert!(is_rule(s.receive(6, &confirm(1))), "never sent to 6");
        assert!(is_rule(s.receive(5, &confirm(2))), "no such id");
        assert!(matches!(
            s.receive(5, &[0x02, 0x01]),
            Err(Refused::Packet(_))
        ));
        assert_eq!(
            s.call(5, &[5], MAIN, "echo", &seven()).unwrap(),
            [(5, full_echo4())]
        );
        // Godot 4.0–4.2's form, by path; and an invalid checksum still confirms.
        assert_eq!(s.receive(5, b"\x02\x01Main\0"), Ok(Received::Handled));
        assert_eq!(
            s.call(5, &[5], MAIN, "echo", &seven()).unwrap(),
            [(5, CACHED_ECHO4.to_vec())]
        );
        s.call(6, &[6], MAIN, "echo", &seven()).unwrap();
        assert_eq!(
            s.receive(6, &[0x02, 0x00, 0x01, 0x00, 0x00, 0x00]),
            Ok(Received::Handled)
        );
        assert_eq!(
            s.call(6, &[6], MAIN, "echo", &seven()).unwrap(),
            [(6, CACHED_ECHO4.to_vec())]
        );
    }

    #[test]
    fn received_calls_follow_the_modes() {
        for flavor in [Flavor::Godot4, Flavor::Godot3] {
            let mut s = scene(flavor, 16);
            s.declare(
                "/root/Owned",
                RpcNode::new()
                    .method("secret", RpcMode::Authority)
                    .authority(5),
            );
            let call = |path: &str, method: &str| match flavor {
                Flavor::Godot4 => {
                    // Owned's only method is 0; Main's ids are those of `main_node`.
                    let id = match path {
                        "Owned" => 0,
                        _ => main_node().table().id_of(method).unwrap_or(3),
                    };
                    call4(NodeTarget::Path(path), id, &seven())
                }
                Flavor::Godot3 => call3(NodeTarget::Path(path), method, &seven()),
            };
            let ok = |from: i32, node: &str, method: &str| Ok(called(from, node, method, seven()));
            assert_eq!(s.receive(5, &call("Main", "echo")), ok(5, MAIN, "echo"));
            assert_eq!(s.receive(5, &call("Main", "net")), ok(5, MAIN, "net"));
            assert!(is_rule(s.receive(5, &call("Main", "secret"))));
            assert_eq!(s.receive(1, &call("Main", "secret")), ok(1, MAIN, "secret"));
            assert!(is_rule(s.receive(1, &call("Main", "never"))));
            assert!(is_rule(s.receive(5, &call("Main", "never"))));
            assert_eq!(
                s.receive(5, &call("Owned", "secret")),
                ok(5, "/root/Owned", "secret")
            );
            assert!(is_rule(s.receive(1, &call("Owned", "secret"))));
            assert!(is_rule(s.receive(5, &call("Main", "undeclared"))));
            assert!(is_rule(s.receive(5, &call("Other", "echo"))));
            // A cache id nobody gave.
            let cached = match flavor {
                Flavor::Godot4 => call4(NodeTarget::Cached(9), 0, &seven()),
                Flavor::Godot3 => call3(NodeTarget::Cached(9), "echo", &seven()),
            };
            assert!(is_rule(s.receive(5, &cached)));
        }
        // Godot 4 ids beyond either table.
        let mut s = scene(Flavor::Godot4, 16);
        for id in [3, 0xff, 0x100, 0x7fff, 0x8001, 0xffff] {
            let packet = call4(NodeTarget::Path("Main"), id, &seven());
            assert!(is_rule(s.receive(5, &packet)), "{id:#x}");
        }
    }

    #[test]
    fn the_received_path_cache_is_bounded_per_peer_and_ids_are_unique() {
        for flavor in [Flavor::Godot4, Flavor::Godot3] {
            let mut s = scene(flavor, 2);
            let simplify = |id: u32, path: &str| match flavor {
                Flavor::Godot4 => simplify4(MAIN_MD5, id, path),
                Flavor::Godot3 => cat(&[&[0x02], &id.to_le_bytes(), path.as_bytes(), &[0]]),
            };
            let cached = |id: u32| match flavor {
                Flavor::Godot4 => call4(NodeTarget::Cached(id), 0, &seven()),
                Flavor::Godot3 => call3(NodeTarget::Cached(id), "echo", &seven()),
            };
            assert_eq!(s.receive(5, &simplify(1, "Main")), Ok(Received::Handled));
            assert!(is_rule(s.receive(5, &simplify(1, "Main"))), "id reused");
            // An undeclared path is kept (and counted) but not confirmed.
            assert_eq!(s.receive(5, &simplify(2, "Other")), Ok(Received::Handled));
            assert!(
                is_rule(s.receive(5, &simplify(3, "Main"))),
                "over the bound"
            );
            // Each peer has its own ids and its own bound.
            assert_eq!(s.receive(6, &simplify(1, "Main")), Ok(Received::Handled));
            assert_eq!(s.outgoing.len(), 2, "{flavor:?}: {:?}", s.outgoing);
            assert_eq!(
                s.outgoing.iter().map(|(to, _)| *to).collect::<Vec<_>>(),
                [5, 6]
            );
            assert_eq!(
                s.receive(5, &cached(1)),
                Ok(called(5, MAIN, "echo", seven()))
            );
            assert!(is_rule(s.receive(5, &cached(2))), "undeclared node");
            assert!(is_rule(s.receive(5, &cached(3))), "refused id");
            // A departed peer's entries and budget are gone.
            s.peer_left(5);
            assert!(is_rule(s.receive(5, &cached(1))));
            assert_eq!(s.receive(5, &simplify(3, "Main")), Ok(Received::Handled));
            assert_eq!(
                s.receive(5, &cached(3)),
                Ok(called(5, MAIN, "echo", seven()))
            );
            assert_eq!(
                s.receive(6, &cached(1)),
                Ok(called(6, MAIN, "echo", seven()))
            );
        }
    }

    #[test]
    fn a_checksum_mismatch_is_confirmed_as_invalid() {
        let mut s = scene(Flavor::Godot4, 16);
        let wrong = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            s.receive(5, &simplify4(wrong, 7, "Main")),
            Ok(Received::Handled)
        );
        assert_eq!(s.outgoing, [(5, vec![0x02, 0x00, 0x07, 0x00, 0x00, 0x00])]);
        s.outgoing.clear();
        assert_eq!(
            s.receive(5, &simplify4(MAIN_MD5, 8, "Main")),
            Ok(Received::Handled)
        );
        assert_eq!(s.outgoing, [(5, vec![0x02, 0x01, 0x08, 0x00, 0x00, 0x00])]);
        // Both entries resolve.
        for id in [7, 8] {
            let packet = call4(NodeTarget::Cached(id), 0, &seven());
            assert_eq!(s.receive(5, &packet), Ok(called(5, MAIN, "echo", seven())));
        }
    }

    #[test]
    fn a_departed_peer_is_simplified_again_and_reset_restarts_the_ids() {
        let mut s = scene(Flavor::Godot4, 16);
        s.declare("/root/Hud", RpcNode::new().method("echo", RpcMode::AnyPeer));
        s.call(5, &[5], "/root/Hud", "echo", &seven()).unwrap(); // Hud: id 1
        s.call(5, &[5], MAIN, "echo", &seven()).unwrap(); // Main: id 2
        s.receive(5, &[0x02, 0x01, 0x02, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(
            s.call(5, &[5], MAIN, "echo", &seven()).unwrap(),
            [(5, vec![0x00, 0x02, 0x00, 0x01, 0x02, 0x07])]
        );
        // Peer 5 leaves (and an id can come back): the same cache id, simplified again.
        s.peer_left(5);
        let again = s.call(5, &[5], MAIN, "echo", &seven()).unwrap();
        assert_eq!(again[0], (5, simplify4(MAIN_MD5, 2, "Main")));
        assert_eq!(again[1].1[0], 0x20);
        // A new connection: ids start at 1 again, the declarations stay.
        s.outgoing.push((5, vec![1]));
        s.reset();
        assert!(s.outgoing.is_empty());
        assert_eq!(
            s.call(5, &[5], MAIN, "echo", &seven()).unwrap(),
            [(5, simplify4(MAIN_MD5, 1, "Main")), (5, full_echo4())]
        );
    }

    #[test]
    fn paths_are_relative_to_the_root() {
        let mut s = Scene::new(Flavor::Godot4, "/root/Game/", 16, Limits::default());
        s.declare(
            "/root/Game",
            RpcNode::new().method("start", RpcMode::AnyPeer),
        );
        s.declare(
            "Level/Player",
            RpcNode::new().method("hit", RpcMode::AnyPeer),
        );
        let root = s.call(5, &[5], "/root/Game", "start", &[]).unwrap();
        assert_eq!(root[0].1[34..], *b"\x01\x00\x00\x00.\0");
        assert_eq!(
            root[1].1,
            cat(&[&[0xa0, 0x06, 0x00, 0x00, 0x80, 0x00], b".\0"])
        );
        // Declared relative, called absolute (and the other way round).
        let player = s
            .call(5, &[5], "/root/Game/Level/Player", "hit", &[])
            .unwrap();
        assert!(player[0].1.ends_with(b"Level/Player\0"));
        assert!(s.call(5, &[5], "Level/Player", "hit", &[]).is_ok());
        // A node outside the root travels as Godot's `rel_path_to` writes it, and calls
        // to it are reported with its absolute path.
        s.declare(
            "/root/Lobby",
            RpcNode::new().method("join", RpcMode::AnyPeer),
        );
        let lobby = s.call(5, &[5], "/root/Lobby", "join", &[]).unwrap();
        assert!(lobby[0].1.ends_with(b"../Lobby\0"), "{:?}", lobby[0].1);
        let call = [&[0xa0, 0x06, 0x00, 0x00, 0x80, 0x00][..], b"../Lobby\0"].concat();
        match s.receive(7, &call) {
            Ok(Received::Call(call)) => assert_eq!(call.node, "/root/Lobby"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            s.call(5, &[5], "/root/Game/Level", "hit", &[]),
            Err(CallError::UnknownNode(_))
        ));
        // Received calls name the absolute path.
        assert_eq!(
            s.receive(5, &call4(NodeTarget::Path("."), 0, &[])),
            Ok(called(5, "/root/Game", "start", vec![]))
        );
        assert_eq!(
            s.receive(5, &call4(NodeTarget::Path("Level/Player"), 0, &[])),
            Ok(called(5, "/root/Game/Level/Player", "hit", vec![]))
        );
    }

    #[test]
    fn a_call_that_cannot_be_built_changes_nothing() {
        let mut s = scene(Flavor::Godot3, 16);
        s.declare("/root/Hud", RpcNode::new().method("echo", RpcMode::AnyPeer));
        assert!(matches!(
            s.call(5, &[5], "/root/Nope", "echo", &[]),
            Err(CallError::UnknownNode(_))
        ));
        assert!(matches!(
            s.call(5, &[5], MAIN, "nope", &[]),
            Err(CallError::UnknownMethod(..))
        ));
        // A Godot 4 type in Godot 3, and too many arguments.
        let vector2i = Variant::Vector2i(crate::variant::Vector2i { x: 1, y: 2 });
        assert!(matches!(
            s.call(5, &[5], "/root/Hud", "echo", &[vector2i]),
            Err(CallError::Packet(RpcError::Argument { index: 0, .. }))
        ));
        assert!(matches!(
            s.call(5, &[5], MAIN, "echo", &vec![Variant::Nil; 256]),
            Err(CallError::Packet(RpcError::TooManyArguments(256)))
        ));
        // The first call that works still simplifies, with id 1: the failed call to Hud
        // took no id.
        let packets = s.call(5, &[5], MAIN, "echo", &[]).unwrap();
        assert_eq!(
            packets[0],
            (5, cat(&[&[0x02], &1u32.to_le_bytes(), b"Main\0"]))
        );
        assert_eq!(packets.len(), 2);
    }

    #[test]
    fn raw_replication_and_stray_system_packets() {
        let mut s = scene(Flavor::Godot4, 16);
        assert_eq!(s.receive(5, &[0x03, 0x68, 0x69]), Ok(Received::Raw(b"hi")));
        assert!(is_rule(s.receive(5, &[0x03])));
        assert!(is_rule(s.receive(5, &[])));
        for packet in [
            &[0x04, 0x00, 0x02, 0x00, 0x00, 0x00][..],
            &[0x05, 0x01, 0x00, 0x00, 0x00],
            &[0x06, 0x05, 0x00],
            &[0x16, 0x01],
        ] {
            assert_eq!(
                s.receive(5, packet),
                Ok(Received::Replication(packet.to_vec()))
            );
        }
        assert!(is_rule(s.receive(5, &[0x07, 0x01, 0x02, 0x00, 0x00, 0x00])));
        assert!(matches!(
            s.receive(5, &[0x01, 0x02]),
            Err(Refused::Packet(_))
        ));
        assert!(matches!(s.receive(5, &[0x00]), Err(Refused::Packet(_))));
        assert!(s.outgoing.is_empty());
    }
}
