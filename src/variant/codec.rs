//! The Variant byte layout shared by Godot 3 and Godot 4: one encoder and one decoder, told
//! which version's type ids and features to use.
//!
//! Both walk nested arrays and dictionaries with an explicit stack instead of recursion, so
//! no input and no `max_depth` setting can overflow the thread's stack.

use super::error::{GodotVersion, VariantError};
use super::math::{
    Aabb, Basis, Color, Plane, Projection, Quaternion, Rect2, Rect2i, Transform2D, Transform3D,
    Vector2, Vector2i, Vector3, Vector3i, Vector4, Vector4i,
};
use super::{Array, ContainerType, DEFAULT_MAX_DEPTH, Dictionary, Limits, NodePath, Variant};

/// Low byte of a header: the type id.
const HEADER_TYPE_MASK: u32 = 0xFF;
/// INT, FLOAT and (Godot 4) math types: the payload is 64-bit.
const FLAG_64: u32 = 1 << 16;
/// OBJECT: the payload is a `u64` instance id (the same bit as `FLAG_64`).
const FLAG_OBJECT_AS_ID: u32 = 1 << 16;
/// Typed ARRAY kind, and typed DICTIONARY key kind, live in bits 16–17.
const CONTAINER_SHIFT_FIRST: u32 = 16;
/// Typed DICTIONARY value kind lives in bits 18–19.
const CONTAINER_SHIFT_SECOND: u32 = 18;
/// Container-type kinds (`ContainerTypeKind` in Godot's marshalls.cpp).
const KIND_NONE: u32 = 0;
const KIND_BUILTIN: u32 = 1;
const KIND_CLASS_NAME: u32 = 2;
const KIND_SCRIPT: u32 = 3;
/// NodePath name counts carry bit 31 to tell them from the pre-3.0 string form.
const NODE_PATH_NEW_FORMAT: u32 = 0x8000_0000;
/// Godot reads every length and count as an `int32_t`.
const MAX_LEN: usize = i32::MAX as usize;

/// Godot 4 type ids (`Variant::Type`), the ids this module works with internally.
pub(super) mod id {
    pub const NIL: u32 = 0;
    pub const BOOL: u32 = 1;
    pub const INT: u32 = 2;
    pub const FLOAT: u32 = 3;
    pub const STRING: u32 = 4;
    pub const VECTOR2: u32 = 5;
    pub const VECTOR2I: u32 = 6;
    pub const RECT2: u32 = 7;
    pub const RECT2I: u32 = 8;
    pub const VECTOR3: u32 = 9;
    pub const VECTOR3I: u32 = 10;
    pub const TRANSFORM2D: u32 = 11;
    pub const VECTOR4: u32 = 12;
    pub const VECTOR4I: u32 = 13;
    pub const PLANE: u32 = 14;
    pub const QUATERNION: u32 = 15;
    pub const AABB: u32 = 16;
    pub const BASIS: u32 = 17;
    pub const TRANSFORM3D: u32 = 18;
    pub const PROJECTION: u32 = 19;
    pub const COLOR: u32 = 20;
    pub const STRING_NAME: u32 = 21;
    pub const NODE_PATH: u32 = 22;
    pub const RID: u32 = 23;
    pub const OBJECT: u32 = 24;
    pub const CALLABLE: u32 = 25;
    pub const SIGNAL: u32 = 26;
    pub const DICTIONARY: u32 = 27;
    pub const ARRAY: u32 = 28;
    pub const PACKED_BYTE_ARRAY: u32 = 29;
    pub const PACKED_INT32_ARRAY: u32 = 30;
    pub const PACKED_INT64_ARRAY: u32 = 31;
    pub const PACKED_FLOAT32_ARRAY: u32 = 32;
    pub const PACKED_FLOAT64_ARRAY: u32 = 33;
    pub const PACKED_STRING_ARRAY: u32 = 34;
    pub const PACKED_VECTOR2_ARRAY: u32 = 35;
    pub const PACKED_VECTOR3_ARRAY: u32 = 36;
    pub const PACKED_COLOR_ARRAY: u32 = 37;
    pub const PACKED_VECTOR4_ARRAY: u32 = 38;
    /// `Variant::VARIANT_MAX` in Godot 4.3+.
    pub const COUNT: u32 = 39;
}

/// Godot 3 type id → Godot 4 type id; Godot 3 ids are the indices (3.2.3 `core/variant.h`).
const GODOT3_TO_4: [u32; 27] = [
    id::NIL,
    id::BOOL,
    id::INT,
    id::FLOAT,
    id::STRING,
    id::VECTOR2,
    id::RECT2,
    id::VECTOR3,
    id::TRANSFORM2D,
    id::PLANE,
    id::QUATERNION,
    id::AABB,
    id::BASIS,
    id::TRANSFORM3D,
    id::COLOR,
    id::NODE_PATH,
    id::RID,
    id::OBJECT,
    id::DICTIONARY,
    id::ARRAY,
    id::PACKED_BYTE_ARRAY,
    id::PACKED_INT32_ARRAY,
    id::PACKED_FLOAT32_ARRAY,
    id::PACKED_STRING_ARRAY,
    id::PACKED_VECTOR2_ARRAY,
    id::PACKED_VECTOR3_ARRAY,
    id::PACKED_COLOR_ARRAY,
];

/// The Godot 4 id of a header's type, or why there is none.
fn canonical_id(raw: u32, version: GodotVersion, offset: usize) -> Result<u32, VariantError> {
    let known = match version {
        GodotVersion::Godot4 => (raw < id::COUNT).then_some(raw),
        GodotVersion::Godot3 => usize::try_from(raw)
            .ok()
            .and_then(|index| GODOT3_TO_4.get(index).copied()),
    };
    known.ok_or(VariantError::UnknownType {
        offset,
        id: raw,
        version,
    })
}

/// The id a version writes for a Godot 4 type id, `None` if that version lacks the type.
fn wire_id(canonical: u32, version: GodotVersion) -> Option<u32> {
    match version {
        GodotVersion::Godot4 => Some(canonical),
        GodotVersion::Godot3 => GODOT3_TO_4
            .iter()
            .position(|&id| id == canonical)
            .and_then(|index| u32::try_from(index).ok()),
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Appends the encoding of `value`; on error `out` is left as it was.
pub(super) fn encode(
    value: &Variant,
    version: GodotVersion,
    out: &mut Vec<u8>,
) -> Result<(), VariantError> {
    let start = out.len();
    let result = encode_tree(value, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// A container whose elements are still being written.
enum Writing<'a> {
    Items(std::slice::Iter<'a, Variant>),
    /// Entries, and the value of the entry whose key was just written.
    Entries(
        std::slice::Iter<'a, (Variant, Variant)>,
        Option<&'a Variant>,
    ),
}

fn encode_tree(
    root: &Variant,
    version: GodotVersion,
    out: &mut Vec<u8>,
) -> Result<(), VariantError> {
    let mut open: Vec<Writing<'_>> = Vec::new();
    let mut next = Some(root);
    loop {
        if let Some(value) = next.take() {
            if let Some(container) = encode_value(value, version, open.len(), out)? {
                open.push(container);
            }
        }
        // Find the next element to write, closing finished containers.
        loop {
            let Some(top) = open.last_mut() else {
                return Ok(());
            };
            match top {
                Writing::Items(items) => {
                    if let Some(item) = items.next() {
                        next = Some(item);
                        break;
                    }
                }
                Writing::Entries(entries, pending) => {
                    if let Some(value) = pending.take() {
                        next = Some(value);
                        break;
                    }
                    if let Some((key, value)) = entries.next() {
                        *pending = Some(value);
                        next = Some(key);
                        break;
                    }
                }
            }
            open.pop();
        }
    }
}

/// Writes a whole value, or the head of a container and returns it for its elements.
fn encode_value<'a>(
    value: &'a Variant,
    version: GodotVersion,
    already_open: usize,
    out: &mut Vec<u8>,
) -> Result<Option<Writing<'a>>, VariantError> {
    match value {
        Variant::Array(array) => {
            check_encode_depth(already_open)?;
            encode_array_head(array, version, out)?;
            Ok(Some(Writing::Items(array.items.iter())))
        }
        Variant::Dictionary(dict) => {
            check_encode_depth(already_open)?;
            encode_dictionary_head(dict, version, out)?;
            Ok(Some(Writing::Entries(dict.entries.iter(), None)))
        }
        leaf => encode_leaf(leaf, version, out).map(|()| None),
    }
}

/// `already_open` containers enclose the one about to be written.
fn check_encode_depth(already_open: usize) -> Result<(), VariantError> {
    if already_open >= DEFAULT_MAX_DEPTH {
        return Err(VariantError::TooDeep {
            max_depth: DEFAULT_MAX_DEPTH,
            offset: None,
        });
    }
    Ok(())
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_i32(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_f32(out: &mut Vec<u8>, value: f32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    for &value in values {
        put_f32(out, value);
    }
}

/// Zero bytes up to the next multiple of 4 of `len`.
fn put_pad(out: &mut Vec<u8>, len: usize) {
    let pad = (4 - len % 4) % 4;
    out.extend_from_slice(&[0; 3][..pad]);
}

/// A length or count as Godot's 32-bit field, refusing what Godot would read as negative.
fn len_u32(len: usize, what: &'static str) -> Result<u32, VariantError> {
    if len > MAX_LEN {
        return Err(VariantError::TooLarge { what, len });
    }
    u32::try_from(len).map_err(|_| VariantError::TooLarge { what, len })
}

/// `u32 length`, UTF-8 bytes, zero pad (`_encode_string`).
fn put_string(out: &mut Vec<u8>, text: &str, what: &'static str) -> Result<(), VariantError> {
    put_u32(out, len_u32(text.len(), what)?);
    out.extend_from_slice(text.as_bytes());
    put_pad(out, text.len());
    Ok(())
}

fn not_in(what: &'static str, version: GodotVersion) -> VariantError {
    VariantError::NotInVersion { what, version }
}

/// The header for `value`'s type in `version`, refusing types the version lacks.
fn header_for(value: &Variant, version: GodotVersion, flags: u32) -> Result<u32, VariantError> {
    let canonical = value.type_id();
    let wire = wire_id(canonical, version).ok_or_else(|| not_in(value.type_name(), version))?;
    Ok(wire | flags)
}

/// The 2-bit kind a container type puts in the header; Godot 3 has only untyped ones.
fn container_kind(
    kind: &ContainerType,
    version: GodotVersion,
    what: &'static str,
) -> Result<u32, VariantError> {
    if version == GodotVersion::Godot3 && *kind != ContainerType::Untyped {
        return Err(not_in(what, version));
    }
    Ok(match kind {
        ContainerType::Untyped => KIND_NONE,
        ContainerType::Builtin(_) => KIND_BUILTIN,
        ContainerType::ClassName(_) => KIND_CLASS_NAME,
        ContainerType::Script(_) => KIND_SCRIPT,
    })
}

fn put_container_type(out: &mut Vec<u8>, kind: &ContainerType) -> Result<(), VariantError> {
    match kind {
        ContainerType::Untyped => Ok(()),
        ContainerType::Builtin(id) => {
            if *id >= id::COUNT {
                return Err(VariantError::InvalidContainerType { id: *id });
            }
            put_u32(out, *id);
            Ok(())
        }
        ContainerType::ClassName(name) => put_string(out, name, "class name"),
        ContainerType::Script(path) => put_string(out, path, "script path"),
    }
}

fn encode_array_head(
    array: &Array,
    version: GodotVersion,
    out: &mut Vec<u8>,
) -> Result<(), VariantError> {
    let kind = container_kind(&array.element, version, "typed Array")?;
    let count = len_u32(array.items.len(), "Array length")?;
    let wire = wire_id(id::ARRAY, version).unwrap_or(id::ARRAY);
    put_u32(out, wire | kind << CONTAINER_SHIFT_FIRST);
    put_container_type(out, &array.element)?;
    put_u32(out, count);
    Ok(())
}

fn encode_dictionary_head(
    dict: &Dictionary,
    version: GodotVersion,
    out: &mut Vec<u8>,
) -> Result<(), VariantError> {
    let key_kind = container_kind(&dict.key, version, "typed Dictionary")?;
    let value_kind = container_kind(&dict.value, version, "typed Dictionary")?;
    let count = len_u32(dict.entries.len(), "Dictionary size")?;
    let wire = wire_id(id::DICTIONARY, version).unwrap_or(id::DICTIONARY);
    put_u32(
        out,
        wire | key_kind << CONTAINER_SHIFT_FIRST | value_kind << CONTAINER_SHIFT_SECOND,
    );
    put_container_type(out, &dict.key)?;
    put_container_type(out, &dict.value)?;
    put_u32(out, count);
    Ok(())
}

fn vector3s(values: &[Vector3]) -> impl Iterator<Item = f32> + '_ {
    values.iter().flat_map(|v| [v.x, v.y, v.z])
}

fn encode_leaf(
    value: &Variant,
    version: GodotVersion,
    out: &mut Vec<u8>,
) -> Result<(), VariantError> {
    match value {
        Variant::Nil => put_u32(out, header_for(value, version, 0)?),
        Variant::Bool(b) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, u32::from(*b));
        }
        Variant::Int(i) => match i32::try_from(*i) {
            Ok(small) => {
                put_u32(out, header_for(value, version, 0)?);
                put_i32(out, small);
            }
            Err(_) => {
                put_u32(out, header_for(value, version, FLAG_64)?);
                out.extend_from_slice(&i.to_le_bytes());
            }
        },
        Variant::Float(f) => {
            // Godot's rule, `(double)(float)v != v`: NaN never equals itself, so it is
            // written as f64 (payload kept) exactly as Godot writes it.
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                put_u32(out, header_for(value, version, 0)?);
                put_f32(out, narrow);
            } else {
                put_u32(out, header_for(value, version, FLAG_64)?);
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
        Variant::String(s) | Variant::StringName(s) => {
            put_u32(out, header_for(value, version, 0)?);
            put_string(out, s, "String length")?;
        }
        Variant::Vector2(v) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[v.x, v.y]);
        }
        Variant::Vector2i(v) => {
            put_u32(out, header_for(value, version, 0)?);
            put_i32(out, v.x);
            put_i32(out, v.y);
        }
        Variant::Rect2(r) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[r.position.x, r.position.y, r.size.x, r.size.y]);
        }
        Variant::Rect2i(r) => {
            put_u32(out, header_for(value, version, 0)?);
            for v in [r.position.x, r.position.y, r.size.x, r.size.y] {
                put_i32(out, v);
            }
        }
        Variant::Vector3(v) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[v.x, v.y, v.z]);
        }
        Variant::Vector3i(v) => {
            put_u32(out, header_for(value, version, 0)?);
            for c in [v.x, v.y, v.z] {
                put_i32(out, c);
            }
        }
        Variant::Transform2D(t) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[t.x.x, t.x.y, t.y.x, t.y.y, t.origin.x, t.origin.y]);
        }
        Variant::Vector4(v) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[v.x, v.y, v.z, v.w]);
        }
        Variant::Vector4i(v) => {
            put_u32(out, header_for(value, version, 0)?);
            for c in [v.x, v.y, v.z, v.w] {
                put_i32(out, c);
            }
        }
        Variant::Plane(p) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[p.normal.x, p.normal.y, p.normal.z, p.d]);
        }
        Variant::Quaternion(q) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[q.x, q.y, q.z, q.w]);
        }
        Variant::Aabb(b) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[b.position.x, b.position.y, b.position.z]);
            put_f32s(out, &[b.size.x, b.size.y, b.size.z]);
        }
        Variant::Basis(b) => {
            put_u32(out, header_for(value, version, 0)?);
            for c in vector3s(&b.rows) {
                put_f32(out, c);
            }
        }
        Variant::Transform3D(t) => {
            put_u32(out, header_for(value, version, 0)?);
            for c in vector3s(&t.basis.rows) {
                put_f32(out, c);
            }
            put_f32s(out, &[t.origin.x, t.origin.y, t.origin.z]);
        }
        Variant::Projection(p) => {
            put_u32(out, header_for(value, version, 0)?);
            for column in &p.columns {
                put_f32s(out, &[column.x, column.y, column.z, column.w]);
            }
        }
        Variant::Color(c) => {
            put_u32(out, header_for(value, version, 0)?);
            put_f32s(out, &[c.r, c.g, c.b, c.a]);
        }
        Variant::NodePath(path) => {
            put_u32(out, header_for(value, version, 0)?);
            let names = len_u32(path.names.len(), "NodePath name count")?;
            let subnames = len_u32(path.subnames.len(), "NodePath subname count")?;
            put_u32(out, names | NODE_PATH_NEW_FORMAT);
            put_u32(out, subnames);
            put_u32(out, u32::from(path.absolute));
            for name in path.names.iter().chain(&path.subnames) {
                put_string(out, name, "NodePath name length")?;
            }
        }
        Variant::Rid(rid) => {
            put_u32(out, header_for(value, version, 0)?);
            // Godot 3 sends RIDs without their id (3.2.3 marshalls.cpp `_RID`).
            if version == GodotVersion::Godot4 {
                out.extend_from_slice(&rid.to_le_bytes());
            }
        }
        Variant::Object(object_id) => {
            if *object_id == 0 {
                // Godot writes a null or freed Object as a bare NIL header (4.x, and 3.2.3
                // as observed from its `var2bytes`).
                put_u32(out, id::NIL);
            } else {
                put_u32(out, header_for(value, version, FLAG_OBJECT_AS_ID)?);
                out.extend_from_slice(&object_id.to_le_bytes());
            }
        }
        Variant::Callable => put_u32(out, header_for(value, version, 0)?),
        Variant::Signal { name, object } => {
            put_u32(out, header_for(value, version, 0)?);
            put_string(out, name, "Signal name length")?;
            out.extend_from_slice(&object.to_le_bytes());
        }
        Variant::PackedByteArray(bytes) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(bytes.len(), "PackedByteArray length")?);
            out.extend_from_slice(bytes);
            put_pad(out, bytes.len());
        }
        Variant::PackedInt32Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedInt32Array length")?);
            for &v in values {
                put_i32(out, v);
            }
        }
        Variant::PackedInt64Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedInt64Array length")?);
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Variant::PackedFloat32Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedFloat32Array length")?);
            put_f32s(out, values);
        }
        Variant::PackedFloat64Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedFloat64Array length")?);
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Variant::PackedStringArray(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedStringArray length")?);
            for s in values {
                // Unlike String, each element counts and carries a terminating NUL.
                let with_nul = s.len().saturating_add(1);
                put_u32(out, len_u32(with_nul, "PackedStringArray element length")?);
                out.extend_from_slice(s.as_bytes());
                out.push(0);
                put_pad(out, with_nul);
            }
        }
        Variant::PackedVector2Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedVector2Array length")?);
            for v in values {
                put_f32s(out, &[v.x, v.y]);
            }
        }
        Variant::PackedVector3Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedVector3Array length")?);
            for c in vector3s(values) {
                put_f32(out, c);
            }
        }
        Variant::PackedColorArray(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedColorArray length")?);
            for c in values {
                put_f32s(out, &[c.r, c.g, c.b, c.a]);
            }
        }
        Variant::PackedVector4Array(values) => {
            put_u32(out, header_for(value, version, 0)?);
            put_u32(out, len_u32(values.len(), "PackedVector4Array length")?);
            for v in values {
                put_f32s(out, &[v.x, v.y, v.z, v.w]);
            }
        }
        // `encode_value` writes containers itself and never passes them here.
        Variant::Array(_) | Variant::Dictionary(_) => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// A bounds-checked cursor: every read either succeeds or says what was cut short, where.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn pos(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], VariantError> {
        let slice = self
            .pos
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(VariantError::Truncated {
                offset: self.pos,
                what,
                needed: len,
                available: self.remaining(),
            })?;
        self.pos += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], VariantError> {
        Ok(fixed(self.take(N, what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, VariantError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, VariantError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// `u32 length`, bytes, pad; parsed as Godot's `parse_utf8` does.
    fn string(&mut self, what: &'static str) -> Result<String, VariantError> {
        let len = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        let start = self.pos;
        let padded = len.saturating_add((4 - len % 4) % 4);
        let bytes = self.take(padded, what)?;
        parse_utf8(bytes.get(..len).unwrap_or(bytes), start)
    }

    /// Reads a `u32` count of elements at least `min_size` bytes each and refuses counts
    /// the rest of the input cannot hold, before anything is allocated for them.
    fn count(
        &mut self,
        what: &'static str,
        min_size: usize,
        mask: u32,
    ) -> Result<usize, VariantError> {
        let offset = self.pos;
        let count = self.u32(what)? & mask;
        let remaining = self.remaining();
        let fits = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(min_size))
            .is_some_and(|needed| needed <= remaining);
        if !fits {
            return Err(VariantError::CountTooLarge {
                offset,
                what,
                count: u64::from(count),
                remaining,
            });
        }
        Ok(usize::try_from(count).unwrap_or(0))
    }
}

/// The first `N` bytes of `slice` (callers pass exactly `N`), without a panic path.
fn fixed<const N: usize>(slice: &[u8]) -> [u8; N] {
    slice.try_into().unwrap_or([0; N])
}

/// Godot's `String::parse_utf8`: the text ends at the first NUL, a leading UTF-8 BOM is
/// skipped, and anything else that is not valid UTF-8 is refused.
fn parse_utf8(bytes: &[u8], offset: usize) -> Result<String, VariantError> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = bytes.get(..end).unwrap_or(bytes);
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    std::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|_| VariantError::InvalidUtf8 { offset })
}

/// `N` reals: `f32`, or `f64` rounded to `f32` when the header has FLAG_64 (a Godot
/// built with `precision=double`), as a standard Godot build reads them.
fn reals<const N: usize>(
    r: &mut Reader<'_>,
    wide: bool,
    what: &'static str,
) -> Result<[f32; N], VariantError> {
    let width = if wide { 8 } else { 4 };
    let bytes = r.take(N * width, what)?;
    let mut out = [0.0; N];
    for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(width)) {
        *slot = if wide {
            f64::from_le_bytes(fixed(chunk)) as f32
        } else {
            f32::from_le_bytes(fixed(chunk))
        };
    }
    Ok(out)
}

fn ints<const N: usize>(r: &mut Reader<'_>, what: &'static str) -> Result<[i32; N], VariantError> {
    let bytes = r.take(N * 4, what)?;
    let mut out = [0; N];
    for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *slot = i32::from_le_bytes(fixed(chunk));
    }
    Ok(out)
}

/// A packed array of fixed-size elements: `u32 count`, then the elements.
fn packed<T>(
    r: &mut Reader<'_>,
    what: &'static str,
    size: usize,
    parse: impl Fn(&[u8]) -> T,
) -> Result<Vec<T>, VariantError> {
    let count = r.count(what, size, u32::MAX)?;
    let bytes = r.take(count * size, what)?;
    let mut out = Vec::with_capacity(count);
    out.extend(bytes.chunks_exact(size).map(parse));
    Ok(out)
}

fn f32_at(chunk: &[u8], index: usize) -> f32 {
    let at = index * 4;
    f32::from_le_bytes(fixed(chunk.get(at..at + 4).unwrap_or(&[])))
}

/// Component `index` of an element of reals 4 or 8 bytes wide.
fn real_at(chunk: &[u8], index: usize, wide: bool) -> f32 {
    if wide {
        let at = index * 8;
        f64::from_le_bytes(fixed(chunk.get(at..at + 8).unwrap_or(&[]))) as f32
    } else {
        f32_at(chunk, index)
    }
}

fn vector3(c: [f32; 3]) -> Vector3 {
    Vector3 {
        x: c[0],
        y: c[1],
        z: c[2],
    }
}

fn vector4(c: [f32; 4]) -> Vector4 {
    Vector4 {
        x: c[0],
        y: c[1],
        z: c[2],
        w: c[3],
    }
}

/// A container whose elements are still being read.
enum Reading {
    Array {
        element: ContainerType,
        items: Vec<Variant>,
        left: usize,
    },
    Dictionary {
        key: ContainerType,
        value: ContainerType,
        entries: Vec<(Variant, Variant)>,
        key_read: Option<Variant>,
        left: usize,
    },
}

impl Reading {
    fn is_complete(&self) -> bool {
        match self {
            Reading::Array { left, .. } | Reading::Dictionary { left, .. } => *left == 0,
        }
    }

    /// Adds one decoded element; true when the container is complete.
    fn push(&mut self, element: Variant) -> bool {
        match self {
            Reading::Array { items, left, .. } => {
                items.push(element);
                *left = left.saturating_sub(1);
            }
            Reading::Dictionary {
                entries,
                key_read,
                left,
                ..
            } => match key_read.take() {
                None => *key_read = Some(element),
                Some(key) => {
                    entries.push((key, element));
                    *left = left.saturating_sub(1);
                }
            },
        }
        self.is_complete()
    }

    fn finish(self) -> Variant {
        match self {
            Reading::Array { element, items, .. } => Variant::Array(Array { element, items }),
            Reading::Dictionary {
                key,
                value,
                entries,
                ..
            } => Variant::Dictionary(Dictionary {
                key,
                value,
                entries,
            }),
        }
    }
}

/// What the bytes at the cursor start: a whole value, or a container to fill.
enum Start {
    Value(Variant),
    Open(Reading),
}

/// Elements a container may reserve room for up front. Outermost containers reserve their
/// whole (already bounded) count; nested ones only this much, since every level's count is
/// checked against the same remaining bytes and their sum is not.
const NESTED_PREALLOCATION: usize = 8;

/// Decodes one value at the start of `bytes`; returns it and the bytes it used.
pub(super) fn decode(
    bytes: &[u8],
    version: GodotVersion,
    limits: &Limits,
) -> Result<(Variant, usize), VariantError> {
    let mut r = Reader::new(bytes);
    let mut open: Vec<Reading> = Vec::new();
    loop {
        let mut value = match start_value(&mut r, version, open.len(), limits)? {
            Start::Value(value) => value,
            Start::Open(reading) if reading.is_complete() => reading.finish(),
            Start::Open(reading) => {
                open.push(reading);
                continue;
            }
        };
        // Hand the value to its container, closing every container it completes.
        loop {
            let Some(top) = open.last_mut() else {
                return Ok((value, r.pos()));
            };
            if !top.push(value) {
                break;
            }
            let Some(done) = open.pop() else {
                break; // Unreachable: `top` was on the stack.
            };
            value = done.finish();
        }
    }
}

fn read_container_type(r: &mut Reader<'_>, kind: u32) -> Result<ContainerType, VariantError> {
    match kind & 3 {
        KIND_NONE => Ok(ContainerType::Untyped),
        KIND_BUILTIN => {
            let offset = r.pos();
            let builtin = r.u32("typed container builtin type")?;
            if builtin >= id::COUNT {
                return Err(VariantError::UnknownType {
                    offset,
                    id: builtin,
                    version: GodotVersion::Godot4,
                });
            }
            Ok(ContainerType::Builtin(builtin))
        }
        KIND_CLASS_NAME => Ok(ContainerType::ClassName(
            r.string("typed container class name")?,
        )),
        _ => Ok(ContainerType::Script(
            r.string("typed container script path")?,
        )),
    }
}

fn start_value(
    r: &mut Reader<'_>,
    version: GodotVersion,
    already_open: usize,
    limits: &Limits,
) -> Result<Start, VariantError> {
    let offset = r.pos();
    let header = r.u32("Variant header")?;
    let type_id = canonical_id(header & HEADER_TYPE_MASK, version, offset)?;
    let godot4 = version == GodotVersion::Godot4;
    match type_id {
        id::ARRAY | id::DICTIONARY => {
            if already_open >= limits.max_depth {
                return Err(VariantError::TooDeep {
                    max_depth: limits.max_depth,
                    offset: Some(offset),
                });
            }
            // Godot 3 has no typed containers and ignores these bits.
            let kinds = if godot4 {
                header >> CONTAINER_SHIFT_FIRST
            } else {
                0
            };
            let first = read_container_type(r, kinds)?;
            let second = if type_id == id::DICTIONARY {
                read_container_type(r, kinds >> 2)?
            } else {
                ContainerType::Untyped
            };
            // Bit 31 of the count is an old "shared" flag, ignored as Godot does. Every
            // element is at least a 4-byte header.
            let (what, min_size) = if type_id == id::ARRAY {
                ("Array", 4)
            } else {
                ("Dictionary", 8)
            };
            let count = r.count(what, min_size, 0x7FFF_FFFF)?;
            let reserve = if already_open == 0 {
                count
            } else {
                count.min(NESTED_PREALLOCATION)
            };
            Ok(Start::Open(if type_id == id::ARRAY {
                Reading::Array {
                    element: first,
                    items: Vec::with_capacity(reserve),
                    left: count,
                }
            } else {
                Reading::Dictionary {
                    key: first,
                    value: second,
                    entries: Vec::with_capacity(reserve),
                    key_read: None,
                    left: count,
                }
            }))
        }
        _ => decode_leaf(r, type_id, header, godot4, offset).map(Start::Value),
    }
}

fn decode_leaf(
    r: &mut Reader<'_>,
    type_id: u32,
    header: u32,
    godot4: bool,
    offset: usize,
) -> Result<Variant, VariantError> {
    let flag64 = header & FLAG_64 != 0;
    // Godot 3 math types are always f32, whatever the header says.
    let wide = godot4 && flag64;
    Ok(match type_id {
        id::NIL => Variant::Nil,
        id::BOOL => Variant::Bool(r.u32("bool")? != 0),
        id::INT if flag64 => Variant::Int(i64::from_le_bytes(r.array("int (64-bit)")?)),
        id::INT => Variant::Int(i64::from(i32::from_le_bytes(r.array("int")?))),
        id::FLOAT if flag64 => Variant::Float(f64::from_le_bytes(r.array("float (64-bit)")?)),
        id::FLOAT => Variant::Float(f64::from(f32::from_le_bytes(r.array("float")?))),
        id::STRING => Variant::String(r.string("String")?),
        id::STRING_NAME => Variant::StringName(r.string("StringName")?),
        id::VECTOR2 => {
            let [x, y] = reals(r, wide, "Vector2")?;
            Variant::Vector2(Vector2 { x, y })
        }
        id::VECTOR2I => {
            let [x, y] = ints(r, "Vector2i")?;
            Variant::Vector2i(Vector2i { x, y })
        }
        id::RECT2 => {
            let [px, py, sx, sy] = reals(r, wide, "Rect2")?;
            Variant::Rect2(Rect2 {
                position: Vector2 { x: px, y: py },
                size: Vector2 { x: sx, y: sy },
            })
        }
        id::RECT2I => {
            let [px, py, sx, sy] = ints(r, "Rect2i")?;
            Variant::Rect2i(Rect2i {
                position: Vector2i { x: px, y: py },
                size: Vector2i { x: sx, y: sy },
            })
        }
        id::VECTOR3 => Variant::Vector3(vector3(reals(r, wide, "Vector3")?)),
        id::VECTOR3I => {
            let [x, y, z] = ints(r, "Vector3i")?;
            Variant::Vector3i(Vector3i { x, y, z })
        }
        id::TRANSFORM2D => {
            let [xx, xy, yx, yy, ox, oy] = reals(r, wide, "Transform2D")?;
            Variant::Transform2D(Transform2D {
                x: Vector2 { x: xx, y: xy },
                y: Vector2 { x: yx, y: yy },
                origin: Vector2 { x: ox, y: oy },
            })
        }
        id::VECTOR4 => Variant::Vector4(vector4(reals(r, wide, "Vector4")?)),
        id::VECTOR4I => {
            let [x, y, z, w] = ints(r, "Vector4i")?;
            Variant::Vector4i(Vector4i { x, y, z, w })
        }
        id::PLANE => {
            let [x, y, z, d] = reals(r, wide, "Plane")?;
            Variant::Plane(Plane {
                normal: Vector3 { x, y, z },
                d,
            })
        }
        id::QUATERNION => {
            let [x, y, z, w] = reals(r, wide, "Quaternion")?;
            Variant::Quaternion(Quaternion { x, y, z, w })
        }
        id::AABB => {
            let [px, py, pz, sx, sy, sz] = reals(r, wide, "AABB")?;
            Variant::Aabb(Aabb {
                position: vector3([px, py, pz]),
                size: vector3([sx, sy, sz]),
            })
        }
        id::BASIS => {
            let c: [f32; 9] = reals(r, wide, "Basis")?;
            Variant::Basis(basis(&c))
        }
        id::TRANSFORM3D => {
            let c: [f32; 12] = reals(r, wide, "Transform3D")?;
            Variant::Transform3D(Transform3D {
                basis: basis(&c),
                origin: vector3([c[9], c[10], c[11]]),
            })
        }
        id::PROJECTION => {
            let c: [f32; 16] = reals(r, wide, "Projection")?;
            let column = |i: usize| vector4([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
            Variant::Projection(Projection {
                columns: [column(0), column(1), column(2), column(3)],
            })
        }
        id::COLOR => {
            // Always f32, also in double-precision builds.
            let [r_, g, b, a] = reals(r, false, "Color")?;
            Variant::Color(Color { r: r_, g, b, a })
        }
        id::NODE_PATH => decode_node_path(r)?,
        id::RID if godot4 => Variant::Rid(r.u64("RID")?),
        // Godot 3 sends no id: the receiver gets an empty RID.
        id::RID => Variant::Rid(0),
        id::OBJECT if header & FLAG_OBJECT_AS_ID != 0 => Variant::Object(r.u64("Object id")?),
        id::OBJECT => return Err(VariantError::FullObjectRefused { offset }),
        id::CALLABLE => Variant::Callable,
        id::SIGNAL => {
            let name = r.string("Signal name")?;
            let object = r.u64("Signal object id")?;
            Variant::Signal { name, object }
        }
        id::PACKED_BYTE_ARRAY => {
            let count = r.count("PackedByteArray", 1, u32::MAX)?;
            let bytes = r.take(count, "PackedByteArray")?.to_vec();
            r.take((4 - count % 4) % 4, "PackedByteArray padding")?;
            Variant::PackedByteArray(bytes)
        }
        id::PACKED_INT32_ARRAY => {
            Variant::PackedInt32Array(packed(r, "PackedInt32Array", 4, |c| {
                i32::from_le_bytes(fixed(c))
            })?)
        }
        id::PACKED_INT64_ARRAY => {
            Variant::PackedInt64Array(packed(r, "PackedInt64Array", 8, |c| {
                i64::from_le_bytes(fixed(c))
            })?)
        }
        id::PACKED_FLOAT32_ARRAY => {
            Variant::PackedFloat32Array(packed(r, "PackedFloat32Array", 4, |c| {
                f32::from_le_bytes(fixed(c))
            })?)
        }
        id::PACKED_FLOAT64_ARRAY => {
            Variant::PackedFloat64Array(packed(r, "PackedFloat64Array", 8, |c| {
                f64::from_le_bytes(fixed(c))
            })?)
        }
        id::PACKED_STRING_ARRAY => {
            let count = r.count("PackedStringArray", 4, u32::MAX)?;
            let mut strings = Vec::with_capacity(count);
            for _ in 0..count {
                // The element's NUL ends the text, as `parse_utf8` stops there.
                strings.push(r.string("PackedStringArray element")?);
            }
            Variant::PackedStringArray(strings)
        }
        id::PACKED_VECTOR2_ARRAY => {
            let size = if wide { 16 } else { 8 };
            Variant::PackedVector2Array(packed(r, "PackedVector2Array", size, |c| Vector2 {
                x: real_at(c, 0, wide),
                y: real_at(c, 1, wide),
            })?)
        }
        id::PACKED_VECTOR3_ARRAY => {
            let size = if wide { 24 } else { 12 };
            Variant::PackedVector3Array(packed(r, "PackedVector3Array", size, |c| {
                vector3([
                    real_at(c, 0, wide),
                    real_at(c, 1, wide),
                    real_at(c, 2, wide),
                ])
            })?)
        }
        id::PACKED_COLOR_ARRAY => {
            Variant::PackedColorArray(packed(r, "PackedColorArray", 16, |c| Color {
                r: f32_at(c, 0),
                g: f32_at(c, 1),
                b: f32_at(c, 2),
                a: f32_at(c, 3),
            })?)
        }
        id::PACKED_VECTOR4_ARRAY => {
            let size = if wide { 32 } else { 16 };
            Variant::PackedVector4Array(packed(r, "PackedVector4Array", size, |c| {
                vector4([
                    real_at(c, 0, wide),
                    real_at(c, 1, wide),
                    real_at(c, 2, wide),
                    real_at(c, 3, wide),
                ])
            })?)
        }
        // `canonical_id` admits no id above 38, and `start_value` opens arrays and
        // dictionaries itself: nothing else reaches here.
        _ => {
            return Err(VariantError::UnknownType {
                offset,
                id: header & HEADER_TYPE_MASK,
                version: if godot4 {
                    GodotVersion::Godot4
                } else {
                    GodotVersion::Godot3
                },
            });
        }
    })
}

/// Rows of a Basis from the first nine reals.
fn basis(c: &[f32]) -> Basis {
    let at = |i: usize| c.get(i).copied().unwrap_or(0.0);
    Basis {
        rows: [
            vector3([at(0), at(1), at(2)]),
            vector3([at(3), at(4), at(5)]),
            vector3([at(6), at(7), at(8)]),
        ],
    }
}

fn decode_node_path(r: &mut Reader<'_>) -> Result<Variant, VariantError> {
    let offset = r.pos();
    let first = r.u32("NodePath name count")?;
    if first & NODE_PATH_NEW_FORMAT == 0 {
        return Err(VariantError::OldNodePathFormat { offset });
    }
    let names = u64::from(first & !NODE_PATH_NEW_FORMAT);
    let subnames = u64::from(r.u32("NodePath subname count")?);
    let flags = r.u32("NodePath flags")?;
    // Obsolete flag bit 1: the property was stored apart from the subpath, as one more
    // subname after the others.
    let subnames = subnames + u64::from(flags & 2 != 0);
    let total = names + subnames;
    let remaining = r.remaining();
    // Every name is at least its 4-byte length.
    if total.saturating_mul(4) > u64::try_from(remaining).unwrap_or(u64::MAX) {
        return Err(VariantError::CountTooLarge {
            offset,
            what: "NodePath name",
            count: total,
            remaining,
        });
    }
    let names = usize::try_from(names).unwrap_or(0);
    let subnames = usize::try_from(subnames).unwrap_or(0);
    let mut path = NodePath {
        absolute: flags & 1 != 0,
        names: Vec::with_capacity(names),
        subnames: Vec::with_capacity(subnames),
    };
    for _ in 0..names {
        path.names.push(r.string("NodePath name")?);
    }
    for _ in 0..subnames {
        path.subnames.push(r.string("NodePath subname")?);
    }
    Ok(Variant::NodePath(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_stop_where_godot_would_read_them_as_negative() {
        assert_eq!(len_u32(MAX_LEN, "String length"), Ok(0x7FFF_FFFF));
        let err = len_u32(MAX_LEN + 1, "String length").unwrap_err();
        assert_eq!(
            err.to_string(),
            "String length of 2147483648 is too large for Godot's 32-bit length (max 2147483647)"
        );
    }

    #[test]
    fn godot3_ids_map_both_ways() {
        for (godot3, &godot4) in GODOT3_TO_4.iter().enumerate() {
            let godot3 = u32::try_from(godot3).unwrap();
            assert_eq!(canonical_id(godot3, GodotVersion::Godot3, 0), Ok(godot4));
            assert_eq!(wire_id(godot4, GodotVersion::Godot3), Some(godot3));
        }
        assert_eq!(wire_id(id::STRING_NAME, GodotVersion::Godot3), None);
        assert_eq!(
            wire_id(id::PACKED_FLOAT32_ARRAY, GodotVersion::Godot3),
            Some(22)
        );
    }
}
