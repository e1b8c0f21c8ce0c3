//! The Godot 3 Variant format (`var2bytes` / `bytes2var`, MultiplayerAPI RPC arguments).
//!
//! Godot 3 has no typed containers, no StringName, integer vectors, Vector4, Projection,
//! Callable, Signal or 64-bit packed arrays: encoding one is an error. Its RID carries no id.

use super::codec;
use super::{GodotVersion, Limits, Variant, VariantError};

/// Appends the Godot 3 encoding of `value` to `out`; on error `out` is unchanged.
///
/// ```
/// use wspeer::variant::{godot3, Variant};
///
/// let mut out = Vec::new();
/// godot3::encode(&Variant::from(1.5), &mut out)?;
/// assert_eq!(out, [0x03, 0, 0, 0, 0x00, 0x00, 0xc0, 0x3f]);
/// # Ok::<(), wspeer::variant::VariantError>(())
/// ```
pub fn encode(value: &Variant, out: &mut Vec<u8>) -> Result<(), VariantError> {
    codec::encode(value, GodotVersion::Godot3, out)
}

/// Decodes the Godot 3 Variant at the start of `bytes`; returns it and the bytes it used
/// (the rest may be other data, as in an RPC packet).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<(Variant, usize), VariantError> {
    codec::decode(bytes, GodotVersion::Godot3, limits)
}
