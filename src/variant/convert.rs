//! Conversions between Rust values and [`Variant`], and typed accessors.
//!
//! Into a Variant: numbers, strings, every math type, `Vec`s of the packed element types,
//! tuples (as an Array), maps (as a Dictionary) and `Option` (`None` is `Nil`). Out of a
//! Variant: `TryFrom` for the common scalar and container types, with an error that names the
//! expected and the actual type.

use std::collections::{BTreeMap, HashMap};

use super::math::{
    Aabb, Basis, Color, Plane, Projection, Quaternion, Rect2, Rect2i, Transform2D, Transform3D,
    Vector2, Vector2i, Vector3, Vector3i, Vector4, Vector4i,
};
use super::{Array, Dictionary, NodePath, Variant, VariantError};

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Variant {
            fn from(value: $t) -> Self {
                Variant::Int(i64::from(value))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

/// Fails for values above `i64::MAX`, which Godot's `int` cannot hold.
impl TryFrom<u64> for Variant {
    type Error = VariantError;

    fn try_from(value: u64) -> Result<Self, VariantError> {
        i64::try_from(value)
            .map(Variant::Int)
            .map_err(|_| VariantError::OutOfRange {
                value: value.to_string(),
                target: "int",
            })
    }
}

macro_rules! from_into {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for Variant {
            fn from(value: $t) -> Self {
                Variant::$variant(value.into())
            }
        }
    )*};
}
from_into!(
    bool => Bool,
    f32 => Float,
    f64 => Float,
    &str => String,
    String => String,
    &String => String,
    Vector2 => Vector2,
    Vector2i => Vector2i,
    Rect2 => Rect2,
    Rect2i => Rect2i,
    Vector3 => Vector3,
    Vector3i => Vector3i,
    Transform2D => Transform2D,
    Vector4 => Vector4,
    Vector4i => Vector4i,
    Plane => Plane,
    Quaternion => Quaternion,
    Aabb => Aabb,
    Basis => Basis,
    Transform3D => Transform3D,
    Projection => Projection,
    Color => Color,
    NodePath => NodePath,
    Array => Array,
    Dictionary => Dictionary,
    Vec<u8> => PackedByteArray,
    &[u8] => PackedByteArray,
    Vec<i32> => PackedInt32Array,
    Vec<i64> => PackedInt64Array,
    Vec<f32> => PackedFloat32Array,
    Vec<f64> => PackedFloat64Array,
    Vec<String> => PackedStringArray,
    Vec<Vector2> => PackedVector2Array,
    Vec<Vector3> => PackedVector3Array,
    Vec<Color> => PackedColorArray,
    Vec<Vector4> => PackedVector4Array,
);

/// An untyped Array.
impl From<Vec<Variant>> for Variant {
    fn from(items: Vec<Variant>) -> Self {
        Variant::Array(Array::new(items))
    }
}

/// `None` is `Nil`.
impl<T: Into<Variant>> From<Option<T>> for Variant {
    fn from(value: Option<T>) -> Self {
        value.map_or(Variant::Nil, Into::into)
    }
}

macro_rules! from_tuple {
    ($($name:ident),+) => {
        /// An untyped Array of the tuple's elements.
        impl<$($name: Into<Variant>),+> From<($($name,)+)> for Variant {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Self {
                Variant::from(vec![$($name.into()),+])
            }
        }
    };
}
from_tuple!(A);
from_tuple!(A, B);
from_tuple!(A, B, C);
from_tuple!(A, B, C, D);

/// An untyped Dictionary, in the map's iteration order (arbitrary for a `HashMap`).
impl<K: Into<Variant>, V: Into<Variant>, S> From<HashMap<K, V, S>> for Variant {
    fn from(map: HashMap<K, V, S>) -> Self {
        dictionary(map)
    }
}

/// An untyped Dictionary, in key order.
impl<K: Into<Variant>, V: Into<Variant>> From<BTreeMap<K, V>> for Variant {
    fn from(map: BTreeMap<K, V>) -> Self {
        dictionary(map)
    }
}

fn dictionary<K: Into<Variant>, V: Into<Variant>>(
    map: impl IntoIterator<Item = (K, V)>,
) -> Variant {
    Variant::Dictionary(Dictionary {
        entries: map.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        ..Dictionary::default()
    })
}

fn mismatch(expected: &'static str, got: &Variant) -> VariantError {
    VariantError::TypeMismatch {
        expected,
        got: got.type_name(),
    }
}

impl TryFrom<&Variant> for bool {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        value.as_bool().ok_or_else(|| mismatch("bool", value))
    }
}

impl TryFrom<&Variant> for i64 {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        value.as_int().ok_or_else(|| mismatch("int", value))
    }
}

/// An `int` within `i32`'s range.
impl TryFrom<&Variant> for i32 {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        let wide = i64::try_from(value)?;
        i32::try_from(wide).map_err(|_| VariantError::OutOfRange {
            value: wide.to_string(),
            target: "i32",
        })
    }
}

/// A `float`, or an `int` converted as GDScript converts an int argument to a float
/// parameter (rounding above 2⁵³).
impl TryFrom<&Variant> for f64 {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        value.as_float().ok_or_else(|| mismatch("float", value))
    }
}

/// A `String` or a `StringName`.
impl TryFrom<&Variant> for String {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| mismatch("String", value))
    }
}

/// The items of an Array (typed or not).
impl TryFrom<&Variant> for Vec<Variant> {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        value
            .as_array()
            .map(<[Variant]>::to_vec)
            .ok_or_else(|| mismatch("Array", value))
    }
}

/// The bytes of a PackedByteArray.
impl TryFrom<&Variant> for Vec<u8> {
    type Error = VariantError;

    fn try_from(value: &Variant) -> Result<Self, VariantError> {
        match value {
            Variant::PackedByteArray(bytes) => Ok(bytes.clone()),
            other => Err(mismatch("PackedByteArray", other)),
        }
    }
}

macro_rules! try_from_owned_by_ref {
    ($($t:ty),*) => {$(
        /// As the conversion from `&Variant`.
        impl TryFrom<Variant> for $t {
            type Error = VariantError;

            fn try_from(value: Variant) -> Result<Self, VariantError> {
                <$t>::try_from(&value)
            }
        }
    )*};
}
try_from_owned_by_ref!(bool, i64, i32, f64);

/// A `String` or a `StringName`, without copying.
impl TryFrom<Variant> for String {
    type Error = VariantError;

    fn try_from(value: Variant) -> Result<Self, VariantError> {
        match value {
            Variant::String(s) | Variant::StringName(s) => Ok(s),
            other => Err(mismatch("String", &other)),
        }
    }
}

/// The items of an Array (typed or not), without copying.
impl TryFrom<Variant> for Vec<Variant> {
    type Error = VariantError;

    fn try_from(value: Variant) -> Result<Self, VariantError> {
        match value {
            Variant::Array(array) => Ok(array.items),
            other => Err(mismatch("Array", &other)),
        }
    }
}

/// The bytes of a PackedByteArray, without copying.
impl TryFrom<Variant> for Vec<u8> {
    type Error = VariantError;

    fn try_from(value: Variant) -> Result<Self, VariantError> {
        match value {
            Variant::PackedByteArray(bytes) => Ok(bytes),
            other => Err(mismatch("PackedByteArray", &other)),
        }
    }
}

impl Variant {
    /// True for `null`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Variant::Nil)
    }

    /// The value of a `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Variant::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value of an `int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Variant::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value of a `float`, or of an `int` converted to `f64` (as GDScript passes an int
    /// to a float parameter).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Variant::Float(f) => Some(*f),
            Variant::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text of a `String` or a `StringName`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Variant::String(s) | Variant::StringName(s) => Some(s),
            _ => None,
        }
    }

    /// The items of an `Array` (typed or not).
    pub fn as_array(&self) -> Option<&[Variant]> {
        match self {
            Variant::Array(array) => Some(&array.items),
            _ => None,
        }
    }

    /// A `Dictionary`.
    pub fn as_dictionary(&self) -> Option<&Dictionary> {
        match self {
            Variant::Dictionary(dict) => Some(dict),
            _ => None,
        }
    }
}
