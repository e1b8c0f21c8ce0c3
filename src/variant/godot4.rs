//! The Godot 4 Variant format (`var_to_bytes` / `bytes_to_var`), and the compressed form
//! SceneMultiplayer uses for RPC, spawn and sync arguments.

use super::codec::{self, id};
use super::{GodotVersion, Limits, Variant, VariantError};

/// Compressed meta byte: the type is in the low 6 bits.
const META_TYPE_MASK: u8 = 0x3F;
/// Compressed BOOL: the value is bit 7.
const META_BOOL_TRUE: u8 = 0x80;
/// Compressed INT: the width is in bits 6–7 (0 = i8, 1 = i16, 2 = i32, 3 = i64).
const META_MODE_SHIFT: u8 = 6;

/// Appends the Godot 4 encoding of `value` to `out`; on error `out` is unchanged.
///
/// ```
/// use wspeer::variant::{godot4, Variant};
///
/// let mut out = Vec::new();
/// godot4::encode(&Variant::from("hi"), &mut out)?;
/// assert_eq!(out, [4, 0, 0, 0, 2, 0, 0, 0, b'h', b'i', 0, 0]);
/// # Ok::<(), wspeer::variant::VariantError>(())
/// ```
pub fn encode(value: &Variant, out: &mut Vec<u8>) -> Result<(), VariantError> {
    codec::encode(value, GodotVersion::Godot4, out)
}

/// Decodes the Godot 4 Variant at the start of `bytes`; returns it and the bytes it used
/// (the rest may be other data).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<(Variant, usize), VariantError> {
    codec::decode(bytes, GodotVersion::Godot4, limits)
}

/// Appends `value` in SceneMultiplayer's compressed form (`encode_and_compress_variant`):
/// a BOOL is one byte (`01` false, `81` true), an INT a meta byte and the smallest signed
/// width (`300` → `42 2c 01`), anything else the plain encoding.
///
/// A null Object is written as NIL (`00 00 00 00`): Godot would write `18 00 00 00`, a NIL
/// header whose first byte it overwrites with OBJECT, which no receiver can decode.
pub fn encode_compressed(value: &Variant, out: &mut Vec<u8>) -> Result<(), VariantError> {
    match value {
        Variant::Bool(b) => {
            out.push(id::BOOL as u8 | if *b { META_BOOL_TRUE } else { 0 });
            Ok(())
        }
        Variant::Int(i) => {
            let mode: u8 = if i8::try_from(*i).is_ok() {
                0
            } else if i16::try_from(*i).is_ok() {
                1
            } else if i32::try_from(*i).is_ok() {
                2
            } else {
                3
            };
            out.push(id::INT as u8 | mode << META_MODE_SHIFT);
            // Little-endian: the low bytes of the i64 are the value at the smaller width.
            let bytes = i.to_le_bytes();
            out.extend_from_slice(bytes.get(..1 << mode).unwrap_or(&bytes));
            Ok(())
        }
        // The plain encoding already starts with the type id, which is what Godot puts in
        // the first byte (and Object(0) is already a plain NIL).
        other => encode(other, out),
    }
}

/// Decodes one compressed value at the start of `bytes` (`decode_and_decompress_variant`);
/// returns it and the bytes it used, so consecutive arguments can be read one by one.
pub fn decode_compressed(bytes: &[u8], limits: &Limits) -> Result<(Variant, usize), VariantError> {
    let Some(&meta) = bytes.first() else {
        return Err(VariantError::Truncated {
            offset: 0,
            what: "compressed Variant",
            needed: 1,
            available: 0,
        });
    };
    let type_id = u32::from(meta & META_TYPE_MASK);
    match type_id {
        id::BOOL => Ok((Variant::Bool(meta & META_BOOL_TRUE != 0), 1)),
        id::INT => {
            let width = 1usize << (meta >> META_MODE_SHIFT);
            let payload = bytes.get(1..1 + width).ok_or(VariantError::Truncated {
                offset: 1,
                what: "compressed int",
                needed: width,
                available: bytes.len().saturating_sub(1),
            })?;
            // Sign-extend from the sent width.
            let mut raw = [0u8; 8];
            for (slot, byte) in raw.iter_mut().zip(payload) {
                *slot = *byte;
            }
            let shift = 64 - 8 * (width as u32);
            let value = (i64::from_le_bytes(raw) << shift) >> shift;
            Ok((Variant::Int(value), 1 + width))
        }
        t if t >= id::COUNT => Err(VariantError::UnknownType {
            offset: 0,
            id: t,
            version: GodotVersion::Godot4,
        }),
        // Everything else is a plain Variant, read with its whole header byte as Godot does.
        _ => decode(bytes, limits),
    }
}
