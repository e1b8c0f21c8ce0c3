//! The bytes of remote calls and of the node-path cache: Godot 4's `SceneMultiplayer`
//! (`REMOTE_CALL`, `SIMPLIFY_PATH`, `CONFIRM_PATH`, method numbering and its checksum) and
//! Godot 3's `MultiplayerAPI` (`REMOTE_CALL`, `REMOTE_SET`, `SIMPLIFY_PATH`,
//! `CONFIRM_PATH`), as pure functions.
//!
//! The layouts are those of the project reference `godot-rpc.md` (§4.4, §4.5, §5, §6),
//! read from Godot 4.4.1's and 3.2.3's sources; every integer is little-endian.

use std::fmt;

use md5::{Digest, Md5};

use crate::variant::{Limits, Variant, VariantError};

/// Why an RPC or path-cache packet could not be built or read (a packet that cannot be read
/// is dropped and logged).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RpcError {
    /// The packet's layout is wrong (too short, bad offsets, an invalid size code...).
    Malformed(&'static str),
    /// Argument `index` (or the `REMOTE_SET` value, index 0) is not a valid Variant, or
    /// cannot be encoded.
    Argument {
        /// Which argument, from 0.
        index: usize,
        /// What was wrong with it.
        error: VariantError,
    },
    /// More arguments than the one-byte count holds (255).
    TooManyArguments(usize),
    /// The packet would be 2 GiB or more: its path offset does not fit.
    TooLarge,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Malformed(why) => f.write_str(why),
            RpcError::Argument { index, error } => write!(f, "argument {index}: {error}"),
            RpcError::TooManyArguments(count) => {
                write!(f, "{count} arguments; a remote call carries at most 255")
            }
            RpcError::TooLarge => f.write_str("a remote call of 2 GiB or more"),
        }
    }
}

impl std::error::Error for RpcError {}

fn malformed<T>(why: &'static str) -> Result<T, RpcError> {
    Err(RpcError::Malformed(why))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The text from `bytes` up to its first NUL (or its end), as Godot's `String::utf8` reads
/// a NUL-terminated name or path.
fn c_string(bytes: &[u8]) -> Result<(&str, usize), RpcError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    match std::str::from_utf8(&bytes[..end]) {
        Ok(text) => Ok((text, end)),
        Err(_) => malformed("a name or node path is not UTF-8"),
    }
}

/// The bit of a target that says "the node path follows at this offset" instead of a
/// cache id (both Godot versions).
const PATH_FLAG: u32 = 0x8000_0000;

/// Where a remote call or property set is aimed, as sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTarget<'a> {
    /// A path-cache id the receiver learnt from the sender's `SIMPLIFY_PATH`.
    Cached(u32),
    /// The node's path relative to the multiplayer root (`Main`, `Main/Player`), sent in
    /// full because the receiver has not confirmed a cache id for it.
    Path(&'a str),
}

/// A node's RPC method names and the ids Godot 4 gives them (reference §5): script methods
/// sorted by code point get 0, 1, 2…; node-level methods (`Node.rpc_config`) sorted the
/// same way get `0x8000 | index`. Declaration order does not matter; both sides must know
/// the same complete set, or the ids shift.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RpcTable {
    script: Vec<String>,
    node: Vec<String>,
}

/// The bit that marks a node-level (`Node.rpc_config`) method id.
pub const NODE_METHOD_FLAG: u16 = 0x8000;

impl RpcTable {
    /// The table of a node whose script declares `script_methods` with `@rpc` (including
    /// those inherited from GDScript base classes) and which has no node-level methods.
    pub fn new<S: AsRef<str>>(script_methods: &[S]) -> RpcTable {
        RpcTable::with_node_methods(script_methods, &[] as &[&str])
    }

    /// The table of a node with `script_methods` (`@rpc` functions) and `node_methods`
    /// (names given to `Node.rpc_config`).
    pub fn with_node_methods<S: AsRef<str>, N: AsRef<str>>(
        script_methods: &[S],
        node_methods: &[N],
    ) -> RpcTable {
        let sorted = |names: &[&str]| {
            let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            // Rust's `str` order is byte order of UTF-8, which is code-point order: the
            // order of Godot's `String <`.
            names.sort();
            names.dedup();
            names
        };
        let script: Vec<&str> = script_methods.iter().map(AsRef::as_ref).collect();
        let node: Vec<&str> = node_methods.iter().map(AsRef::as_ref).collect();
        RpcTable {
            script: sorted(&script),
            node: sorted(&node),
        }
    }

    /// The id of method `name`, if the node has it.
    pub fn id_of(&self, name: &str) -> Option<u16> {
        if let Ok(index) = self.script.binary_search_by(|n| n.as_str().cmp(name)) {
            return u16::try_from(index).ok();
        }
        let index = self.node.binary_search_by(|n| n.as_str().cmp(name)).ok()?;
        u16::try_from(index).ok().map(|i| i | NODE_METHOD_FLAG)
    }

    /// The name of method `id`, if the node has it.
    pub fn name_of(&self, id: u16) -> Option<&str> {
        let (names, index) = if id & NODE_METHOD_FLAG != 0 {
            (&self.node, id & !NODE_METHOD_FLAG)
        } else {
            (&self.script, id)
        };
        names.get(usize::from(index)).map(String::as_str)
    }

    /// Every method name: node-level ones first, then the script's, each sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.node.iter().chain(&self.script).map(String::as_str)
    }

    /// The checksum Godot 4 puts in `SIMPLIFY_PATH` (`get_rpc_md5`): the lowercase hex MD5
    /// of the names concatenated in table order (node-level ones, then the script's).
    pub fn checksum(&self) -> String {
        let mut md5 = Md5::new();
        for name in self.names() {
            md5.update(name.as_bytes());
        }
        md5.finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Godot 4's `SceneMultiplayer` packets for remote calls and the path cache.
pub mod godot4 {
    use super::*;
    use crate::variant::godot4 as variant4;

    /// `NETWORK_COMMAND_REMOTE_CALL`.
    pub const CMD_REMOTE_CALL: u8 = 0;
    /// `NETWORK_COMMAND_SIMPLIFY_PATH`.
    pub const CMD_SIMPLIFY_PATH: u8 = 1;
    /// `NETWORK_COMMAND_CONFIRM_PATH`.
    pub const CMD_CONFIRM_PATH: u8 = 2;
    /// `NETWORK_COMMAND_SPAWN` (replication; not decoded by wspeer).
    pub const CMD_SPAWN: u8 = 4;
    /// `NETWORK_COMMAND_DESPAWN` (replication; not decoded by wspeer).
    pub const CMD_DESPAWN: u8 = 5;
    /// `NETWORK_COMMAND_SYNC` (replication; not decoded by wspeer).
    pub const CMD_SYNC: u8 = 6;

    /// Meta-byte bits 4–5: the size of the node target (0 → u8, 1 → u16, 2 → u32).
    const NODE_SIZE_SHIFT: u8 = 4;
    /// Meta-byte bit 6: the method id is a u16 (else a u8).
    const NAME_U16: u8 = 0x40;
    /// Meta-byte bit 7: no argument count; nothing (no arguments) or one raw byte array.
    const BYTE_ONLY_OR_NO_ARGS: u8 = 0x80;

    /// A decoded `REMOTE_CALL`.
    #[derive(Clone, Debug, PartialEq)]
    pub struct RemoteCall<'a> {
        /// The node it is aimed at.
        pub target: NodeTarget<'a>,
        /// The method's id in the node's [`RpcTable`].
        pub method: u16,
        /// The arguments.
        pub args: Vec<Variant>,
    }

    /// A `REMOTE_CALL` of `method` on `target` with `args`, in the smallest form Godot
    /// would send: a cached target in the smallest of u8/u16/u32, a full path behind a
    /// u32 `0x80000000 | offset`; the method id in a u8 when it fits; no argument count
    /// when there are no arguments or exactly one non-empty `PackedByteArray` (sent raw;
    /// Godot sends an empty one raw too, which then arrives as no argument).
    pub fn remote_call(
        target: NodeTarget<'_>,
        method: u16,
        args: &[Variant],
    ) -> Result<Vec<u8>, RpcError> {
        let mut packet = vec![CMD_REMOTE_CALL];
        let mut meta = CMD_REMOTE_CALL;
        let path_at = match target {
            NodeTarget::Cached(id) if id <= u32::from(u8::MAX) => {
                packet.push(id as u8);
                None
            }
            NodeTarget::Cached(id) if id <= u32::from(u16::MAX) => {
                meta |= 1 << NODE_SIZE_SHIFT;
                packet.extend_from_slice(&(id as u16).to_le_bytes());
                None
            }
            NodeTarget::Cached(id) => {
                meta |= 2 << NODE_SIZE_SHIFT;
                packet.extend_from_slice(&id.to_le_bytes());
                None
            }
            NodeTarget::Path(path) => {
                meta |= 2 << NODE_SIZE_SHIFT;
                // The offset is filled in once the arguments' length is known.
                packet.extend_from_slice(&[0; 4]);
                Some(path)
            }
        };
        match u8::try_from(method) {
            Ok(small) => packet.push(small),
            Err(_) => {
                meta |= NAME_U16;
                packet.extend_from_slice(&method.to_le_bytes());
            }
        }
        match args {
            [] => meta |= BYTE_ONLY_OR_NO_ARGS,
            // An empty array in this form would read as no arguments at all (Godot sends it
            // so); with a count it arrives as the one empty array it is.
            [Variant::PackedByteArray(bytes)] if !bytes.is_empty() => {
                meta |= BYTE_ONLY_OR_NO_ARGS;
                packet.extend_from_slice(bytes);
            }
            _ => {
                let Ok(count) = u8::try_from(args.len()) else {
                    return Err(RpcError::TooManyArguments(args.len()));
                };
                packet.push(count);
                for (index, arg) in args.iter().enumerate() {
                    variant4::encode_compressed(arg, &mut packet)
                        .map_err(|error| RpcError::Argument { index, error })?;
                }
            }
        }
        if let Some(path) = path_at {
            let offset = u32::try_from(packet.len())
                .ok()
                .filter(|offset| offset & PATH_FLAG == 0)
                .ok_or(RpcError::TooLarge)?;
            packet[1..5].copy_from_slice(&(offset | PATH_FLAG).to_le_bytes());
            packet.extend_from_slice(path.as_bytes());
            packet.push(0);
        }
        packet[0] = meta;
        Ok(packet)
    }

    /// Reads a `REMOTE_CALL` in any of its twelve header forms, as Godot's `process_rpc`.
    pub fn parse_remote_call<'a>(
        packet: &'a [u8],
        limits: &Limits,
    ) -> Result<RemoteCall<'a>, RpcError> {
        let Some(&meta) = packet.first() else {
            return malformed("empty packet");
        };
        if meta & 0x07 != CMD_REMOTE_CALL {
            return malformed("not a remote call");
        }
        let mut at = 1;
        let (target, args_end) = match (meta >> NODE_SIZE_SHIFT) & 3 {
            0 => {
                let Some(&id) = packet.get(at) else {
                    return malformed("remote call shorter than its node id");
                };
                at += 1;
                (NodeTarget::Cached(u32::from(id)), packet.len())
            }
            1 => {
                let Some(id) = read_u16(packet, at) else {
                    return malformed("remote call shorter than its node id");
                };
                at += 2;
                (NodeTarget::Cached(u32::from(id)), packet.len())
            }
            2 => {
                let Some(id) = read_u32(packet, at) else {
                    return malformed("remote call shorter than its node id");
                };
                at += 4;
                if id & PATH_FLAG == 0 {
                    (NodeTarget::Cached(id), packet.len())
                } else {
                    let offset = (id & !PATH_FLAG) as usize;
                    if offset >= packet.len() {
                        return malformed("remote call's node path offset is past its end");
                    }
                    let (path, _) = c_string(&packet[offset..])?;
                    (NodeTarget::Path(path), offset)
                }
            }
            _ => return malformed("remote call with an invalid node id size"),
        };
        let method = if meta & NAME_U16 != 0 {
            let Some(id) = read_u16(packet, at) else {
                return malformed("remote call shorter than its method id");
            };
            at += 2;
            id
        } else {
            let Some(&id) = packet.get(at) else {
                return malformed("remote call shorter than its method id");
            };
            at += 1;
            u16::from(id)
        };
        if at > args_end {
            return malformed("remote call's node path offset is inside its header");
        }
        let body = &packet[at..args_end];
        let args = if meta & BYTE_ONLY_OR_NO_ARGS != 0 {
            if body.is_empty() {
                Vec::new()
            } else {
                vec![Variant::PackedByteArray(body.to_vec())]
            }
        } else {
            let Some((&count, mut rest)) = body.split_first() else {
                return malformed("remote call without its argument count");
            };
            // Each compressed argument takes at least one byte: a count the rest cannot
            // hold is refused before anything is allocated for it.
            if usize::from(count) > rest.len() {
                return malformed("remote call's argument count exceeds its length");
            }
            let mut args = Vec::with_capacity(usize::from(count));
            for index in 0..usize::from(count) {
                let (value, used) = variant4::decode_compressed(rest, limits)
                    .map_err(|error| RpcError::Argument { index, error })?;
                args.push(value);
                rest = &rest[used..];
            }
            if !rest.is_empty() {
                return malformed("remote call has bytes after its last argument");
            }
            args
        };
        Ok(RemoteCall {
            target,
            method,
            args,
        })
    }

    /// A decoded `SIMPLIFY_PATH`: "from now on, `id` means the node at `path`".
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct SimplifyPath<'a> {
        /// The sender's [`RpcTable::checksum`] of the node's methods.
        pub checksum: &'a str,
        /// The cache id the sender will use.
        pub id: u32,
        /// The node's path relative to the multiplayer root.
        pub path: &'a str,
    }

    /// The length of the checksum: 32 lowercase hex digits.
    const CHECKSUM_LEN: usize = 32;

    /// `SIMPLIFY_PATH`: `[01][32-digit checksum][00][u32 id][path][00]`.
    pub fn simplify_path(checksum: &str, id: u32, path: &str) -> Vec<u8> {
        let mut packet = Vec::with_capacity(1 + CHECKSUM_LEN + 1 + 4 + path.len() + 1);
        packet.push(CMD_SIMPLIFY_PATH);
        packet.extend_from_slice(checksum.as_bytes());
        packet.push(0);
        packet.extend_from_slice(&id.to_le_bytes());
        packet.extend_from_slice(path.as_bytes());
        packet.push(0);
        packet
    }

    /// Reads a `SIMPLIFY_PATH` (at least 38 bytes, as Godot requires).
    pub fn parse_simplify_path(packet: &[u8]) -> Result<SimplifyPath<'_>, RpcError> {
        if packet.len() < 38 {
            return malformed("SIMPLIFY_PATH shorter than 38 bytes");
        }
        if packet[0] & 0x07 != CMD_SIMPLIFY_PATH {
            return malformed("not a SIMPLIFY_PATH");
        }
        let (checksum, len) = c_string(&packet[1..])?;
        if len != CHECKSUM_LEN {
            return malformed("SIMPLIFY_PATH checksum is not 32 characters");
        }
        let at = 1 + CHECKSUM_LEN + 1;
        let Some(id) = read_u32(packet, at) else {
            return malformed("SIMPLIFY_PATH shorter than its id");
        };
        let (path, _) = c_string(&packet[at + 4..])?;
        if path.is_empty() {
            return malformed("SIMPLIFY_PATH with an empty path");
        }
        Ok(SimplifyPath { checksum, id, path })
    }

    /// What a `CONFIRM_PATH` confirms.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Confirmed<'a> {
        /// Godot 4.3+: the cache id.
        Id(u32),
        /// Godot 4.0–4.2: the node path.
        Path(&'a str),
    }

    /// A decoded `CONFIRM_PATH`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ConfirmPath<'a> {
        /// Whether the receiver's checksum matched (it logs a mismatch and confirms anyway).
        pub valid: bool,
        /// The id (4.3+) or path (4.0–4.2) confirmed.
        pub confirmed: Confirmed<'a>,
    }

    /// `CONFIRM_PATH` as Godot 4.3+ sends it: `[02][valid][u32 id]`, exactly 6 bytes.
    pub fn confirm_path(valid: bool, id: u32) -> [u8; 6] {
        let id = id.to_le_bytes();
        [
            CMD_CONFIRM_PATH,
            u8::from(valid),
            id[0],
            id[1],
            id[2],
            id[3],
        ]
    }

    /// `CONFIRM_PATH` as Godot 4.0–4.2 sent it: `[02][valid][path][00]`.
    pub fn confirm_path_legacy(valid: bool, path: &str) -> Vec<u8> {
        let mut packet = Vec::with_capacity(2 + path.len() + 1);
        packet.extend_from_slice(&[CMD_CONFIRM_PATH, u8::from(valid)]);
        packet.extend_from_slice(path.as_bytes());
        packet.push(0);
        packet
    }

    /// Reads a `CONFIRM_PATH` of either form. Six bytes are read as the 4.3+ form (a
    /// 4.0–4.2 path of three characters would look the same; wspeer sends 4.3+ paths only
    /// as ids, so a six-byte packet is an id).
    pub fn parse_confirm_path(packet: &[u8]) -> Result<ConfirmPath<'_>, RpcError> {
        if packet.len() < 3 {
            return malformed("CONFIRM_PATH shorter than 3 bytes");
        }
        if packet[0] & 0x07 != CMD_CONFIRM_PATH {
            return malformed("not a CONFIRM_PATH");
        }
        let valid = packet[1] != 0;
        // Six bytes are an id, whatever they hold: `[02 v xx xx xx 00]` could also be a
        // three-character path, but an id is what a 4.3+ peer sends.
        if let (6, Some(id)) = (packet.len(), read_u32(packet, 2)) {
            return Ok(ConfirmPath {
                valid,
                confirmed: Confirmed::Id(id),
            });
        }
        let (path, _) = c_string(&packet[2..])?;
        if path.is_empty() {
            return malformed("CONFIRM_PATH with an empty path");
        }
        Ok(ConfirmPath {
            valid,
            confirmed: Confirmed::Path(path),
        })
    }
}

/// Godot 3's `MultiplayerAPI` packets: remote calls and property sets by name, with plain
/// (uncompressed) Godot 3 Variants, and the path cache.
pub mod godot3 {
    use super::*;
    use crate::variant::godot3 as variant3;

    /// `NETWORK_COMMAND_REMOTE_CALL`.
    pub const CMD_REMOTE_CALL: u8 = 0;
    /// `NETWORK_COMMAND_REMOTE_SET`.
    pub const CMD_REMOTE_SET: u8 = 1;
    /// `NETWORK_COMMAND_SIMPLIFY_PATH`.
    pub const CMD_SIMPLIFY_PATH: u8 = 2;
    /// `NETWORK_COMMAND_CONFIRM_PATH`.
    pub const CMD_CONFIRM_PATH: u8 = 3;
    /// `NETWORK_COMMAND_RAW`.
    pub const CMD_RAW: u8 = 4;

    /// One decoded Godot 3 `MultiplayerAPI` packet.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Packet<'a> {
        /// `rpc`: call `method` on `target` with `args`.
        RemoteCall {
            /// The node.
            target: NodeTarget<'a>,
            /// The method's name.
            method: &'a str,
            /// The arguments.
            args: Vec<Variant>,
        },
        /// `rset`: set `property` of `target` to `value`.
        RemoteSet {
            /// The node.
            target: NodeTarget<'a>,
            /// The property's name.
            property: &'a str,
            /// The new value.
            value: Variant,
        },
        /// "From now on, `id` means the node at `path`".
        SimplifyPath {
            /// The cache id the sender will use.
            id: u32,
            /// The node's path relative to the multiplayer root.
            path: &'a str,
        },
        /// "I know the node at `path`".
        ConfirmPath {
            /// The path the receiver confirms.
            path: &'a str,
        },
        /// `send_bytes`: user bytes (never empty).
        Raw(&'a [u8]),
    }

    /// Appends the target: the id, or a placeholder for the path offset.
    fn begin(command: u8, target: NodeTarget<'_>, name: &str) -> Vec<u8> {
        let mut packet = vec![command];
        let id = match target {
            NodeTarget::Cached(id) => id,
            NodeTarget::Path(_) => 0,
        };
        packet.extend_from_slice(&id.to_le_bytes());
        packet.extend_from_slice(name.as_bytes());
        packet.push(0);
        packet
    }

    /// Appends the path of a full-path packet and writes its offset into the target.
    fn finish(mut packet: Vec<u8>, target: NodeTarget<'_>) -> Result<Vec<u8>, RpcError> {
        if let NodeTarget::Path(path) = target {
            let offset = u32::try_from(packet.len())
                .ok()
                .filter(|offset| offset & PATH_FLAG == 0)
                .ok_or(RpcError::TooLarge)?;
            packet[1..5].copy_from_slice(&(offset | PATH_FLAG).to_le_bytes());
            packet.extend_from_slice(path.as_bytes());
            packet.push(0);
        }
        Ok(packet)
    }

    /// `REMOTE_CALL`: `[00][u32 target][method][00][u8 argc][Variants][path 00]?`.
    pub fn remote_call(
        target: NodeTarget<'_>,
        method: &str,
        args: &[Variant],
    ) -> Result<Vec<u8>, RpcError> {
        let count = u8::try_from(args.len()).map_err(|_| RpcError::TooManyArguments(args.len()))?;
        let mut packet = begin(CMD_REMOTE_CALL, target, method);
        packet.push(count);
        for (index, arg) in args.iter().enumerate() {
            variant3::encode(arg, &mut packet)
                .map_err(|error| RpcError::Argument { index, error })?;
        }
        finish(packet, target)
    }

    /// `REMOTE_SET`: `[01][u32 target][property][00][Variant][path 00]?`.
    pub fn remote_set(
        target: NodeTarget<'_>,
        property: &str,
        value: &Variant,
    ) -> Result<Vec<u8>, RpcError> {
        let mut packet = begin(CMD_REMOTE_SET, target, property);
        variant3::encode(value, &mut packet)
            .map_err(|error| RpcError::Argument { index: 0, error })?;
        finish(packet, target)
    }

    /// `SIMPLIFY_PATH`: `[02][u32 id][path][00]`.
    pub fn simplify_path(id: u32, path: &str) -> Vec<u8> {
        let mut packet = Vec::with_capacity(5 + path.len() + 1);
        packet.push(CMD_SIMPLIFY_PATH);
        packet.extend_from_slice(&id.to_le_bytes());
        packet.extend_from_slice(path.as_bytes());
        packet.push(0);
        packet
    }

    /// `CONFIRM_PATH`: `[03][path][00]`.
    pub fn confirm_path(path: &str) -> Vec<u8> {
        let mut packet = Vec::with_capacity(1 + path.len() + 1);
        packet.push(CMD_CONFIRM_PATH);
        packet.extend_from_slice(path.as_bytes());
        packet.push(0);
        packet
    }

    /// Reads the target, the name and where the body and the arguments end.
    fn target_and_name(packet: &[u8]) -> Result<(NodeTarget<'_>, &str, usize, usize), RpcError> {
        let Some(raw) = read_u32(packet, 1) else {
            return malformed("remote call shorter than its target");
        };
        let (name, len) = c_string(&packet[5..])?;
        if name.is_empty() || 5 + len >= packet.len() {
            return malformed("remote call without a NUL-terminated name");
        }
        let body = 5 + len + 1;
        if raw & PATH_FLAG == 0 {
            return Ok((NodeTarget::Cached(raw), name, body, packet.len()));
        }
        let offset = (raw & !PATH_FLAG) as usize;
        if offset < body || offset >= packet.len() {
            return malformed("remote call's node path offset is outside its body");
        }
        let (path, _) = c_string(&packet[offset..])?;
        Ok((NodeTarget::Path(path), name, body, offset))
    }

    /// Reads any Godot 3 `MultiplayerAPI` packet.
    pub fn parse<'a>(packet: &'a [u8], limits: &Limits) -> Result<Packet<'a>, RpcError> {
        let Some(&command) = packet.first() else {
            return malformed("empty packet");
        };
        match command {
            CMD_REMOTE_CALL => {
                let (target, method, body, end) = target_and_name(packet)?;
                let Some((&count, mut rest)) = packet[body..end].split_first() else {
                    return malformed("remote call without its argument count");
                };
                // A Godot 3 Variant is at least 4 bytes.
                if usize::from(count) * 4 > rest.len() {
                    return malformed("remote call's argument count exceeds its length");
                }
                let mut args = Vec::with_capacity(usize::from(count));
                for index in 0..usize::from(count) {
                    let (value, used) = variant3::decode(rest, limits)
                        .map_err(|error| RpcError::Argument { index, error })?;
                    args.push(value);
                    rest = &rest[used..];
                }
                if !rest.is_empty() {
                    return malformed("remote call has bytes after its last argument");
                }
                Ok(Packet::RemoteCall {
                    target,
                    method,
                    args,
                })
            }
            CMD_REMOTE_SET => {
                let (target, property, body, end) = target_and_name(packet)?;
                let (value, used) = variant3::decode(&packet[body..end], limits)
                    .map_err(|error| RpcError::Argument { index: 0, error })?;
                if body + used != end {
                    return malformed("property set has bytes after its value");
                }
                Ok(Packet::RemoteSet {
                    target,
                    property,
                    value,
                })
            }
            CMD_SIMPLIFY_PATH => {
                let Some(id) = read_u32(packet, 1) else {
                    return malformed("SIMPLIFY_PATH shorter than its id");
                };
                let (path, _) = c_string(&packet[5..])?;
                if path.is_empty() {
                    return malformed("SIMPLIFY_PATH with an empty path");
                }
                Ok(Packet::SimplifyPath { id, path })
            }
            CMD_CONFIRM_PATH => {
                let (path, _) = c_string(&packet[1..])?;
                if path.is_empty() {
                    return malformed("CONFIRM_PATH with an empty path");
                }
                Ok(Packet::ConfirmPath { path })
            }
            CMD_RAW if packet.len() > 1 => Ok(Packet::Raw(&packet[1..])),
            CMD_RAW => malformed("RAW packet without payload"),
            _ => malformed("unknown MultiplayerAPI command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    /// `hex` with quoted ASCII between the hex digits, as the reference writes packets.
    fn bytes(parts: &[&str]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|part| match part.strip_prefix('"') {
                Some(text) => text.trim_end_matches('"').as_bytes().to_vec(),
                None => hex(part),
            })
            .collect()
    }

    /// The node of reference §5.2: `hello`, `Zap`, `_private`.
    fn main_table() -> RpcTable {
        RpcTable::new(&["hello", "Zap", "_private"])
    }

    #[test]
    fn methods_are_numbered_by_sorted_name_and_node_methods_get_the_high_bit() {
        let table = main_table();
        assert_eq!(
            (
                table.id_of("Zap"),
                table.id_of("_private"),
                table.id_of("hello")
            ),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(table.name_of(2), Some("hello"));
        assert_eq!(table.id_of("missing"), None);
        assert_eq!(table.name_of(3), None);
        let with_node = RpcTable::with_node_methods(&["hello", "Zap", "_private"], &["net_sync"]);
        assert_eq!(with_node.id_of("net_sync"), Some(0x8000));
        assert_eq!(with_node.id_of("hello"), Some(2));
        assert_eq!(with_node.name_of(0x8000), Some("net_sync"));
        assert_eq!(with_node.name_of(0x8001), None);
    }

    #[test]
    fn checksums_match_the_reference() {
        assert_eq!(main_table().checksum(), "13ab4824a6d0876de7a8c69ce993d347");
        let with_node = RpcTable::with_node_methods(&["hello", "Zap", "_private"], &["net_sync"]);
        assert_eq!(with_node.checksum(), "90b9906f230f5731cadbc24ac53b3cff");
        assert_eq!(
            RpcTable::new(&[] as &[&str]).checksum(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn godot4_remote_calls_match_the_reference_bytes() {
        use godot4::*;
        let cases: Vec<(NodeTarget, u16, Vec<Variant>, &str)> = vec![
            (
                NodeTarget::Path("Main"),
                2,
                vec![Variant::Int(7)],
                "20 09000080 02 01 0207 4d61696e00",
            ),
            (
                NodeTarget::Cached(1),
                2,
                vec![Variant::Int(7)],
                "00 01 02 01 0207",
            ),
            (NodeTarget::Cached(1), 0, vec![], "80 01 00"),
            (
                NodeTarget::Cached(1),
                2,
                vec![Variant::PackedByteArray(vec![1, 2, 3])],
                "80 01 02 010203",
            ),
            (
                NodeTarget::Cached(1),
                2,
                vec![Variant::Bool(true), Variant::Int(300)],
                "00 01 02 02 81 422c01",
            ),
            (
                NodeTarget::Path("Main/Player"),
                2,
                vec![Variant::String("hi".into())],
                "20 13000080 02 01 04000000 02000000 68690000 4d61696e2f506c6179657200",
            ),
            (
                NodeTarget::Cached(300),
                0x8000,
                vec![Variant::Float(1.5)],
                "50 2c01 0080 01 03000000 0000c03f",
            ),
            (NodeTarget::Cached(300), 0x8000, vec![], "d0 2c01 0080"),
        ];
        for (target, method, args, expected) in cases {
            let packet = remote_call(target, method, &args).unwrap();
            assert_eq!(packet, hex(expected), "{target:?} {method} {args:?}");
            let call = parse_remote_call(&packet, &Limits::default()).unwrap();
            assert_eq!(
                call,
                RemoteCall {
                    target,
                    method,
                    args
                }
            );
        }
    }

    #[test]
    fn godot4_remote_call_reads_every_header_form() {
        use godot4::*;
        let limits = Limits::default();
        // Every node-id size, method-id size and argument form Godot's receiver takes,
        // including a u32 plain id and a u16 id that would have fit a u8.
        let cases: Vec<(&str, NodeTarget, u16, Vec<Variant>)> = vec![
            (
                "00 05 02 01 0207",
                NodeTarget::Cached(5),
                2,
                vec![Variant::Int(7)],
            ),
            (
                "10 0500 02 01 0207",
                NodeTarget::Cached(5),
                2,
                vec![Variant::Int(7)],
            ),
            (
                "20 05000000 02 01 0207",
                NodeTarget::Cached(5),
                2,
                vec![Variant::Int(7)],
            ),
            ("40 05 0200 00", NodeTarget::Cached(5), 2, vec![]),
            ("50 0500 0201 00", NodeTarget::Cached(5), 0x102, vec![]),
            ("60 05000000 0200 00", NodeTarget::Cached(5), 2, vec![]),
            ("80 05 02", NodeTarget::Cached(5), 2, vec![]),
            (
                "90 0500 02 ff",
                NodeTarget::Cached(5),
                2,
                vec![Variant::PackedByteArray(vec![0xff])],
            ),
            ("a0 06000080 02 4d00", NodeTarget::Path("M"), 2, vec![]),
            ("c0 05 0200", NodeTarget::Cached(5), 2, vec![]),
            (
                "d0 0500 0200 aa",
                NodeTarget::Cached(5),
                2,
                vec![Variant::PackedByteArray(vec![0xaa])],
            ),
            (
                "e0 08000080 0200 aa 4d00",
                NodeTarget::Path("M"),
                2,
                vec![Variant::PackedByteArray(vec![0xaa])],
            ),
        ];
        for (packet, target, method, args) in cases {
            let bytes = hex(packet);
            let call =
                parse_remote_call(&bytes, &limits).unwrap_or_else(|e| panic!("{packet}: {e}"));
            assert_eq!(
                call,
                RemoteCall {
                    target,
                    method,
                    args
                },
                "{packet}"
            );
        }
    }

    #[test]
    fn godot4_one_empty_byte_array_keeps_its_argument() {
        use godot4::*;
        let args = vec![Variant::PackedByteArray(Vec::new())];
        let packet = remote_call(NodeTarget::Cached(1), 2, &args).unwrap();
        assert_eq!(packet, hex("00 01 02 01 1d000000 00000000"));
        let call = parse_remote_call(&packet, &Limits::default()).unwrap();
        assert_eq!(call.args, args);
    }

    #[test]
    fn godot4_remote_call_refuses_malformed_packets() {
        use godot4::*;
        let limits = Limits::default();
        for (packet, why) in [
            ("", "empty packet"),
            ("30 01 02", "remote call with an invalid node id size"),
            ("00", "remote call shorter than its node id"),
            ("10 01", "remote call shorter than its node id"),
            ("00 01", "remote call shorter than its method id"),
            ("00 01 02", "remote call without its argument count"),
            (
                "00 01 02 05 0207",
                "remote call's argument count exceeds its length",
            ),
            (
                "00 01 02 01 0207 00",
                "remote call has bytes after its last argument",
            ),
            (
                "20 20000080 02 00",
                "remote call's node path offset is past its end",
            ),
            (
                "20 02000080 02 00 4d00",
                "remote call's node path offset is inside its header",
            ),
        ] {
            assert_eq!(
                parse_remote_call(&hex(packet), &limits),
                Err(RpcError::Malformed(why)),
                "{packet}"
            );
        }
        // A bad argument names its index.
        let err = parse_remote_call(&hex("00 01 02 02 0207 3f"), &limits).unwrap_err();
        assert!(
            matches!(err, RpcError::Argument { index: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn godot4_path_cache_packets_match_the_reference() {
        use godot4::*;
        let checksum = main_table().checksum();
        let simplify = simplify_path(&checksum, 1, "Main");
        assert_eq!(
            simplify,
            bytes(&[
                "01",
                "\"13ab4824a6d0876de7a8c69ce993d347\"",
                "00 01000000",
                "\"Main\"",
                "00"
            ])
        );
        assert_eq!(simplify.len(), 43);
        assert_eq!(
            parse_simplify_path(&simplify).unwrap(),
            SimplifyPath {
                checksum: &checksum,
                id: 1,
                path: "Main"
            }
        );
        let confirm = confirm_path(true, 1);
        assert_eq!(confirm.to_vec(), hex("02 01 01000000"));
        assert_eq!(
            parse_confirm_path(&confirm).unwrap(),
            ConfirmPath {
                valid: true,
                confirmed: Confirmed::Id(1)
            }
        );
        let legacy = confirm_path_legacy(false, "Main/Player");
        assert_eq!(legacy, bytes(&["02 00", "\"Main/Player\"", "00"]));
        assert_eq!(
            parse_confirm_path(&legacy).unwrap(),
            ConfirmPath {
                valid: false,
                confirmed: Confirmed::Path("Main/Player")
            }
        );
        assert!(parse_simplify_path(&simplify[..37]).is_err());
        assert!(parse_confirm_path(&hex("02 01")).is_err());
        let mut short_sum = simplify.clone();
        short_sum[5] = 0;
        assert!(parse_simplify_path(&short_sum).is_err());
    }

    #[test]
    fn godot3_packets_match_the_engine_bytes() {
        use godot3::*;
        let limits = Limits::default();
        // Captured between two real 3.2.3 engines (reference §6, after the 9-byte header).
        let cases: Vec<(Vec<u8>, Packet)> = vec![
            (
                bytes(&["02 01000000", "\"Main\"", "00"]),
                Packet::SimplifyPath {
                    id: 1,
                    path: "Main",
                },
            ),
            (
                bytes(&[
                    "00 14000080",
                    "\"hello\"",
                    "00 01 02000000 07000000",
                    "\"Main\"",
                    "00",
                ]),
                Packet::RemoteCall {
                    target: NodeTarget::Path("Main"),
                    method: "hello",
                    args: vec![Variant::Int(7)],
                },
            ),
            (
                bytes(&["03", "\"Main\"", "00"]),
                Packet::ConfirmPath { path: "Main" },
            ),
            (
                bytes(&[
                    "00 14000080",
                    "\"hello\"",
                    "00 01 03000000 0000c03f",
                    "\"Main\"",
                    "00",
                ]),
                Packet::RemoteCall {
                    target: NodeTarget::Path("Main"),
                    method: "hello",
                    args: vec![Variant::Float(1.5)],
                },
            ),
            (
                bytes(&[
                    "00 01000000",
                    "\"hello\"",
                    "00 01 04000000 02000000 68690000",
                ]),
                Packet::RemoteCall {
                    target: NodeTarget::Cached(1),
                    method: "hello",
                    args: vec![Variant::String("hi".into())],
                },
            ),
            (
                bytes(&["01 01000000", "\"rv\"", "00 02000000 05000000"]),
                Packet::RemoteSet {
                    target: NodeTarget::Cached(1),
                    property: "rv",
                    value: Variant::Int(5),
                },
            ),
            (
                bytes(&["00 01000000", "\"ping\"", "00 00"]),
                Packet::RemoteCall {
                    target: NodeTarget::Cached(1),
                    method: "ping",
                    args: vec![],
                },
            ),
            (hex("04 aabb"), Packet::Raw(&[0xaa, 0xbb])),
        ];
        for (packet, expected) in cases {
            assert_eq!(parse(&packet, &limits).unwrap(), expected, "{packet:02x?}");
            let rebuilt = match &expected {
                Packet::RemoteCall {
                    target,
                    method,
                    args,
                } => remote_call(*target, method, args).unwrap(),
                Packet::RemoteSet {
                    target,
                    property,
                    value,
                } => remote_set(*target, property, value).unwrap(),
                Packet::SimplifyPath { id, path } => simplify_path(*id, path),
                Packet::ConfirmPath { path } => confirm_path(path),
                Packet::Raw(_) => continue,
            };
            assert_eq!(rebuilt, packet);
        }
    }

    #[test]
    fn godot3_refuses_malformed_packets() {
        use godot3::*;
        let limits = Limits::default();
        for packet in [
            hex(""),
            hex("00 01000000"),
            bytes(&["00 01000000", "\"hello\""]),
            bytes(&["00 01000000", "\"hello\"", "00"]),
            bytes(&["00 01000000", "\"hello\"", "00 02 02000000 07000000"]),
            bytes(&["00 01000080", "\"hello\"", "00 00", "\"Main\"", "00"]),
            bytes(&["00 ff000080", "\"hello\"", "00 00", "\"Main\"", "00"]),
            bytes(&["01 01000000", "\"rv\"", "00 02000000"]),
            hex("02 01000000 00"),
            hex("03 00"),
            hex("04"),
            hex("09 00"),
        ] {
            assert!(parse(&packet, &limits).is_err(), "{packet:02x?}");
        }
    }
}
