//! Godot's `Variant` and its binary form (`var_to_bytes` / `bytes_to_var`), Godot 4 and
//! Godot 3: the values inside RPCs, spawns, syncs and `put_var` packets.
//!
//! ```
//! use wspeer::variant::{self, Limits, Variant, Vector2};
//!
//! let value = Variant::from((7, "hi", Vector2 { x: 1.0, y: 2.0 }));
//! let bytes = value.to_godot4_bytes()?;
//! assert_eq!(Variant::from_godot4_bytes(&bytes)?, value);
//! assert_eq!(value.to_string(), r#"[7, "hi", (1.0, 2.0)]"#);
//!
//! // Inside multiplayer packets, values use the compressed form and follow each other.
//! let mut packet = Vec::new();
//! variant::godot4::encode_compressed(&Variant::Int(300), &mut packet)?;
//! assert_eq!(packet, [0x42, 0x2c, 0x01]);
//! let (decoded, used) = variant::godot4::decode_compressed(&packet, &Limits::default())?;
//! assert_eq!((decoded, used), (Variant::Int(300), 3));
//! # Ok::<(), wspeer::variant::VariantError>(())
//! ```
//!
//! # What matches Godot, and where this codec decides
//!
//! - **Numbers.** An `Int` is written as `i32` unless it needs 64 bits, a `Float` as `f32`
//!   unless `(v as f32) as f64 != v`, exactly Godot's rules (so `1.5` is 4 bytes and `0.1`
//!   is 8). NaN never equals itself, so NaN is written as `f64`, as Godot writes it.
//! - **Math types** hold `f32` (Godot's default `real_t`). A value sent by a Godot built with
//!   `precision=double` (header flag `1 << 16`) is read as `f64` and rounded to `f32`, as a
//!   standard Godot build reads it; Color is always `f32`. Godot 3 always reads `f32`.
//! - **Strings** are decoded like Godot's `parse_utf8`: the text ends at the first NUL byte, a
//!   leading UTF-8 BOM is dropped, and invalid UTF-8 is an error. So a Rust string that
//!   contains `'\0'` comes back cut at the NUL.
//! - **Objects** travel as instance ids ([`Variant::Object`]). Godot writes a null Object
//!   (`Object(0)`) as a bare NIL header (Godot 4, and Godot 3.2.3's `var2bytes`), so
//!   `Object(0)` decodes back as [`Variant::Nil`]; an id-0 Object header is still read as
//!   `Object(0)`. The full form (class name and properties, sent only with
//!   `allow_object_decoding`) is refused with [`VariantError::FullObjectRefused`].
//! - **RID** has no payload in Godot 3: it is sent without its id and decodes as `Rid(0)`.
//! - **Dictionaries** keep their entries in wire order, duplicates included (Godot would keep
//!   the last value at the first key's position); [`Dictionary::insert`] replaces like Godot.
//! - **Typed containers** keep their header exactly, including a `Builtin(0)` (Nil) element
//!   type that Godot itself would treat as untyped.
//! - **Pad bytes** are written as zeros and ignored when reading; a PackedByteArray whose
//!   padding is missing at the end of the input is treated as truncated.
//! - **Nesting.** [`Limits::max_depth`] counts arrays and dictionaries nested in each other:
//!   with the default 1024, 1024 nested arrays decode and 1025 do not (Godot 4.4 would still
//!   accept a 1025th level if it is empty). Encoding refuses more than
//!   [`DEFAULT_MAX_DEPTH`]. Neither direction recurses, so no input overflows the stack.
//! - **Counts** are checked against the bytes left before anything is allocated for them.

mod codec;
mod convert;
mod display;
mod error;
pub mod godot3;
pub mod godot4;
mod math;
#[cfg(test)]
mod tests;

pub use error::{GodotVersion, VariantError};
pub use math::{
    Aabb, Basis, Color, Plane, Projection, Quaternion, Rect2, Rect2i, Transform2D, Transform3D,
    Vector2, Vector2i, Vector3, Vector3i, Vector4, Vector4i,
};

/// Godot's nesting limit for arrays and dictionaries (`Variant::MAX_RECURSION_DEPTH`).
pub const DEFAULT_MAX_DEPTH: usize = 1024;

/// Bounds applied while decoding untrusted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How many arrays and dictionaries may be nested in each other; one more is an error.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// One Godot value.
///
/// Variant names follow Godot 4 (`Float`, `Quaternion`, `Transform3D`, `Packed*`); Godot 3
/// values map onto them (`REAL` → `Float`, `Quat` → `Quaternion`, `Transform` →
/// `Transform3D`, `POOL_INT_ARRAY` → `PackedInt32Array`, `POOL_REAL_ARRAY` →
/// `PackedFloat32Array`, …). `Display` prints like GDScript 4's `str()`.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Variant {
    /// `null`.
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` (64-bit in Godot).
    Int(i64),
    /// `float` (64-bit in Godot).
    Float(f64),
    /// `String`.
    String(String),
    /// `Vector2`.
    Vector2(Vector2),
    /// `Vector2i` (Godot 4 only).
    Vector2i(Vector2i),
    /// `Rect2`.
    Rect2(Rect2),
    /// `Rect2i` (Godot 4 only).
    Rect2i(Rect2i),
    /// `Vector3`.
    Vector3(Vector3),
    /// `Vector3i` (Godot 4 only).
    Vector3i(Vector3i),
    /// `Transform2D`.
    Transform2D(Transform2D),
    /// `Vector4` (Godot 4 only).
    Vector4(Vector4),
    /// `Vector4i` (Godot 4 only).
    Vector4i(Vector4i),
    /// `Plane`.
    Plane(Plane),
    /// `Quaternion` (`Quat` in Godot 3).
    Quaternion(Quaternion),
    /// `AABB`.
    Aabb(Aabb),
    /// `Basis`.
    Basis(Basis),
    /// `Transform3D` (`Transform` in Godot 3).
    Transform3D(Transform3D),
    /// `Projection` (Godot 4 only).
    Projection(Projection),
    /// `Color`.
    Color(Color),
    /// `StringName` (`&"name"`, Godot 4 only); sent like a String.
    StringName(String),
    /// `NodePath` (`^"path"`).
    NodePath(NodePath),
    /// `RID`: the raw id (always 0 when read from Godot 3, which does not send it).
    Rid(u64),
    /// An Object, by instance id; 0 is `null`.
    Object(u64),
    /// A `Callable`; Godot sends none of its contents, so it decodes as an empty Callable.
    Callable,
    /// A `Signal` (Godot 4 only): its name and the instance id of its object.
    Signal {
        /// The signal's name.
        name: String,
        /// Instance id of the object that owns it.
        object: u64,
    },
    /// `Dictionary`, possibly typed.
    Dictionary(Dictionary),
    /// `Array`, possibly typed.
    Array(Array),
    /// `PackedByteArray` (`PoolByteArray`).
    PackedByteArray(Vec<u8>),
    /// `PackedInt32Array` (`PoolIntArray`).
    PackedInt32Array(Vec<i32>),
    /// `PackedInt64Array` (Godot 4 only).
    PackedInt64Array(Vec<i64>),
    /// `PackedFloat32Array` (`PoolRealArray`).
    PackedFloat32Array(Vec<f32>),
    /// `PackedFloat64Array` (Godot 4 only).
    PackedFloat64Array(Vec<f64>),
    /// `PackedStringArray` (`PoolStringArray`).
    PackedStringArray(Vec<String>),
    /// `PackedVector2Array` (`PoolVector2Array`).
    PackedVector2Array(Vec<Vector2>),
    /// `PackedVector3Array` (`PoolVector3Array`).
    PackedVector3Array(Vec<Vector3>),
    /// `PackedColorArray` (`PoolColorArray`).
    PackedColorArray(Vec<Color>),
    /// `PackedVector4Array` (Godot 4.3+).
    PackedVector4Array(Vec<Vector4>),
}

/// The element, key or value type of a typed container (Godot 4 only).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum ContainerType {
    /// Any value (a plain `Array` or `Dictionary`).
    #[default]
    Untyped,
    /// A builtin type, by Godot 4 type id (see [`Variant::type_id`]): `Array[int]` is
    /// `Builtin(2)`.
    Builtin(u32),
    /// Objects of a native class, by name (Godot sends `"EncodedObjectAsID"` unless object
    /// decoding is allowed).
    ClassName(String),
    /// Objects of a script class, by resource path (`res://...`).
    Script(String),
}

/// A Godot `Array`, possibly typed (`Array[int]`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Array {
    /// The element type; `Untyped` for a plain Array.
    pub element: ContainerType,
    /// The elements.
    pub items: Vec<Variant>,
}

impl Array {
    /// An untyped array of `items`.
    pub fn new(items: Vec<Variant>) -> Self {
        Array {
            element: ContainerType::Untyped,
            items,
        }
    }

    /// An array typed as `element` (the items are not checked against it).
    pub fn typed(element: ContainerType, items: Vec<Variant>) -> Self {
        Array { element, items }
    }
}

/// A Godot `Dictionary`, possibly typed (`Dictionary[String, int]`), in insertion order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dictionary {
    /// The key type; `Untyped` for a plain Dictionary.
    pub key: ContainerType,
    /// The value type; `Untyped` for a plain Dictionary.
    pub value: ContainerType,
    /// The entries, in insertion (and wire) order.
    pub entries: Vec<(Variant, Variant)>,
}

impl Dictionary {
    /// An empty untyped dictionary.
    pub fn new() -> Self {
        Dictionary::default()
    }

    /// The value of the first entry whose key equals `key`.
    pub fn get(&self, key: &Variant) -> Option<&Variant> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value` as Godot's `dict[key] = value` does: an existing entry keeps
    /// its position, a new one goes last. Returns the value it replaced.
    pub fn insert(
        &mut self,
        key: impl Into<Variant>,
        value: impl Into<Variant>,
    ) -> Option<Variant> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A Godot `NodePath`: node names separated by `/`, then property subnames after `:`.
///
/// `Main/Player:position:x` has names `["Main", "Player"]` and subnames
/// `["position", "x"]`; `/root/Main` is absolute.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct NodePath {
    /// True when the path starts at the scene-tree root (`/`).
    pub absolute: bool,
    /// The node names.
    pub names: Vec<String>,
    /// The property (sub)names after the first `:`.
    pub subnames: Vec<String>,
}

impl NodePath {
    /// Parses Godot's path syntax. Like Godot's `NodePath(String)`, empty names (`a//b`) and
    /// a trailing `:` are ignored; empty subnames in the middle (`a::b`), which Godot
    /// rejects, are skipped too.
    ///
    /// ```
    /// use wspeer::variant::NodePath;
    ///
    /// let path = NodePath::parse("Main/Player:position:x");
    /// assert_eq!(path.names, ["Main", "Player"]);
    /// assert_eq!(path.subnames, ["position", "x"]);
    /// assert_eq!(path.to_string(), "Main/Player:position:x");
    /// assert!(NodePath::parse("/root/Main").absolute);
    /// ```
    pub fn parse(path: &str) -> NodePath {
        let absolute = path.starts_with('/');
        let (nodes, properties) = match path.split_once(':') {
            Some((nodes, properties)) => (nodes, Some(properties)),
            None => (path, None),
        };
        let owned = |parts: std::str::Split<'_, char>| -> Vec<String> {
            parts
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect()
        };
        NodePath {
            absolute,
            names: owned(nodes.split('/')),
            subnames: properties.map(|p| owned(p.split(':'))).unwrap_or_default(),
        }
    }

    /// True for the empty path (`NodePath()`).
    pub fn is_empty(&self) -> bool {
        !self.absolute && self.names.is_empty() && self.subnames.is_empty()
    }
}

/// Godot 4 type names, indexed by Godot 4 type id.
const TYPE_NAMES: [&str; 39] = [
    "Nil",
    "bool",
    "int",
    "float",
    "String",
    "Vector2",
    "Vector2i",
    "Rect2",
    "Rect2i",
    "Vector3",
    "Vector3i",
    "Transform2D",
    "Vector4",
    "Vector4i",
    "Plane",
    "Quaternion",
    "AABB",
    "Basis",
    "Transform3D",
    "Projection",
    "Color",
    "StringName",
    "NodePath",
    "RID",
    "Object",
    "Callable",
    "Signal",
    "Dictionary",
    "Array",
    "PackedByteArray",
    "PackedInt32Array",
    "PackedInt64Array",
    "PackedFloat32Array",
    "PackedFloat64Array",
    "PackedStringArray",
    "PackedVector2Array",
    "PackedVector3Array",
    "PackedColorArray",
    "PackedVector4Array",
];

impl Variant {
    /// The Godot 4 type id (`Variant::Type`, e.g. 2 for `int`, 28 for `Array`), also the
    /// id a [`ContainerType::Builtin`] holds.
    pub fn type_id(&self) -> u32 {
        use codec::id;
        match self {
            Variant::Nil => id::NIL,
            Variant::Bool(_) => id::BOOL,
            Variant::Int(_) => id::INT,
            Variant::Float(_) => id::FLOAT,
            Variant::String(_) => id::STRING,
            Variant::Vector2(_) => id::VECTOR2,
            Variant::Vector2i(_) => id::VECTOR2I,
            Variant::Rect2(_) => id::RECT2,
            Variant::Rect2i(_) => id::RECT2I,
            Variant::Vector3(_) => id::VECTOR3,
            Variant::Vector3i(_) => id::VECTOR3I,
            Variant::Transform2D(_) => id::TRANSFORM2D,
            Variant::Vector4(_) => id::VECTOR4,
            Variant::Vector4i(_) => id::VECTOR4I,
            Variant::Plane(_) => id::PLANE,
            Variant::Quaternion(_) => id::QUATERNION,
            Variant::Aabb(_) => id::AABB,
            Variant::Basis(_) => id::BASIS,
            Variant::Transform3D(_) => id::TRANSFORM3D,
            Variant::Projection(_) => id::PROJECTION,
            Variant::Color(_) => id::COLOR,
            Variant::StringName(_) => id::STRING_NAME,
            Variant::NodePath(_) => id::NODE_PATH,
            Variant::Rid(_) => id::RID,
            Variant::Object(_) => id::OBJECT,
            Variant::Callable => id::CALLABLE,
            Variant::Signal { .. } => id::SIGNAL,
            Variant::Dictionary(_) => id::DICTIONARY,
            Variant::Array(_) => id::ARRAY,
            Variant::PackedByteArray(_) => id::PACKED_BYTE_ARRAY,
            Variant::PackedInt32Array(_) => id::PACKED_INT32_ARRAY,
            Variant::PackedInt64Array(_) => id::PACKED_INT64_ARRAY,
            Variant::PackedFloat32Array(_) => id::PACKED_FLOAT32_ARRAY,
            Variant::PackedFloat64Array(_) => id::PACKED_FLOAT64_ARRAY,
            Variant::PackedStringArray(_) => id::PACKED_STRING_ARRAY,
            Variant::PackedVector2Array(_) => id::PACKED_VECTOR2_ARRAY,
            Variant::PackedVector3Array(_) => id::PACKED_VECTOR3_ARRAY,
            Variant::PackedColorArray(_) => id::PACKED_COLOR_ARRAY,
            Variant::PackedVector4Array(_) => id::PACKED_VECTOR4_ARRAY,
        }
    }

    /// The Godot 4 type name, as `type_string(typeof(v))` gives it: `"int"`, `"Vector2"`,
    /// `"PackedByteArray"`, …
    pub fn type_name(&self) -> &'static str {
        type_name_of(self.type_id())
    }

    /// Encodes the value in the Godot 4 format (`var_to_bytes`).
    pub fn to_godot4_bytes(&self) -> Result<Vec<u8>, VariantError> {
        let mut out = Vec::new();
        godot4::encode(self, &mut out)?;
        Ok(out)
    }

    /// Decodes a whole Godot 4 buffer (`bytes_to_var`) with the default [`Limits`]; bytes
    /// left after the value are an error.
    pub fn from_godot4_bytes(bytes: &[u8]) -> Result<Variant, VariantError> {
        whole(bytes, godot4::decode(bytes, &Limits::default())?)
    }

    /// Encodes the value in the Godot 3 format (`var2bytes`); Godot-4-only types and typed
    /// containers are refused.
    pub fn to_godot3_bytes(&self) -> Result<Vec<u8>, VariantError> {
        let mut out = Vec::new();
        godot3::encode(self, &mut out)?;
        Ok(out)
    }

    /// Decodes a whole Godot 3 buffer (`bytes2var`) with the default [`Limits`]; bytes left
    /// after the value are an error.
    pub fn from_godot3_bytes(bytes: &[u8]) -> Result<Variant, VariantError> {
        whole(bytes, godot3::decode(bytes, &Limits::default())?)
    }

    /// Encodes the value in `version`'s format.
    pub fn to_bytes(&self, version: GodotVersion) -> Result<Vec<u8>, VariantError> {
        match version {
            GodotVersion::Godot3 => self.to_godot3_bytes(),
            GodotVersion::Godot4 => self.to_godot4_bytes(),
        }
    }

    /// Decodes a whole buffer in `version`'s format within `limits`; bytes left after the
    /// value are an error.
    pub fn from_bytes(
        bytes: &[u8],
        version: GodotVersion,
        limits: &Limits,
    ) -> Result<Variant, VariantError> {
        let decoded = match version {
            GodotVersion::Godot3 => godot3::decode(bytes, limits)?,
            GodotVersion::Godot4 => godot4::decode(bytes, limits)?,
        };
        whole(bytes, decoded)
    }
}

/// The Godot 4 type name for a Godot 4 type id.
fn type_name_of(type_id: u32) -> &'static str {
    usize::try_from(type_id)
        .ok()
        .and_then(|index| TYPE_NAMES.get(index).copied())
        .unwrap_or("<unknown type>")
}

fn whole(bytes: &[u8], (value, consumed): (Variant, usize)) -> Result<Variant, VariantError> {
    if consumed != bytes.len() {
        return Err(VariantError::TrailingBytes {
            consumed,
            total: bytes.len(),
        });
    }
    Ok(value)
}
