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

    /// Adds a script method (`@rpc func name`) and who may call it here.
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
        if path == self.root {
            return ".".to_string();
        }
        match path
            .strip_prefix(&self.root)
            .and_then(|p| p.strip_prefix('/'))
        {
            Some(rest) => rest.to_string(),
            None => path.trim_start_matches('/').to_string(),
        }
    }

    fn absolute(&self, relative: &str) -> String {
        match relative {
            "." => self.root.clone(),
            _ => format!("{}/{relative}", self.root),
        }
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
