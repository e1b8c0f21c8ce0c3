//! Text forms for log lines: [`Variant`] prints like GDScript 4's `str()`, [`NodePath`] as
//! its path syntax.
//!
//! Floats use the shortest text that reads back to the same value, with `.0` added to whole
//! numbers as Godot 4 does (`1.0`, `0.1`, `nan`, `inf`), and exponent form from 10¹⁶ up and
//! below 10⁻⁵ (`1e20`, `1e-7`); Godot itself rounds to 14 significant digits, so a float like
//! `0.1 + 0.2` prints longer here. Strings are bare at the top level and quoted with C escapes
//! inside containers (`[1, "a"]`), StringNames as `&"..."` and NodePaths as `^"..."` there.
//! Objects print as `<Object#id>`, since only the id is known. Below 100 levels of nesting,
//! containers print as `[...]` / `{ ... }`, the markers Godot's `str()` prints at its own
//! recursion limit.

use std::fmt::{self, Display, Formatter, Write};

use super::math::{
    Aabb, Basis, Color, Plane, Projection, Quaternion, Rect2, Rect2i, Transform2D, Transform3D,
    Vector2, Vector2i, Vector3, Vector3i, Vector4, Vector4i,
};
use super::{NodePath, Variant};

/// Nesting printed before containers are cut to `[...]` / `{ ... }`.
const MAX_PRINT_DEPTH: usize = 100;

/// A real as Godot's `String::num_real(v, trailing)`: shortest round-trip text, `.0` on whole
/// numbers when `trailing`.
struct Real<T>(T, bool);

macro_rules! real_display {
    ($($t:ty),*) => {$(
        impl Display for Real<$t> {
            fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
                let Real(value, trailing) = *self;
                if value.is_nan() {
                    return f.write_str("nan");
                }
                if value.is_infinite() {
                    return f.write_str(if value > 0.0 { "inf" } else { "-inf" });
                }
                // Huge and tiny values would print every digit; use exponent form instead.
                if value.abs() >= 1e16 || (value != 0.0 && value.abs() < 1e-5) {
                    return write!(f, "{value:e}");
                }
                let text = value.to_string();
                f.write_str(&text)?;
                if trailing && !text.contains('.') {
                    f.write_str(".0")?;
                }
                Ok(())
            }
        }
    )*};
}
real_display!(f32, f64);

/// A Color channel as Godot's `String::num(v, 4)`: at most 4 decimals, no trailing zeros.
struct Channel(f32);

impl Display for Channel {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if !self.0.is_finite() {
            return Real(self.0, false).fmt(f);
        }
        let text = format!("{:.4}", self.0);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        f.write_str(if text == "-0" { "0" } else { text })
    }
}

impl Display for Vector2 {
    /// `(1.0, 2.0)`, as Godot 4 prints it.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", Real(self.x, true), Real(self.y, true))
    }
}

impl Display for Vector2i {
    /// `(1, 2)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.x, self.y)
    }
}

impl Display for Rect2 {
    /// `[P: (0.0, 0.0), S: (1.0, 1.0)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[P: {}, S: {}]", self.position, self.size)
    }
}

impl Display for Rect2i {
    /// `[P: (0, 0), S: (1, 1)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[P: {}, S: {}]", self.position, self.size)
    }
}

impl Display for Vector3 {
    /// `(1.0, 2.0, 3.0)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}, {}, {})",
            Real(self.x, true),
            Real(self.y, true),
            Real(self.z, true)
        )
    }
}

impl Display for Vector3i {
    /// `(1, 2, 3)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.x, self.y, self.z)
    }
}

impl Display for Transform2D {
    /// `[X: (1.0, 0.0), Y: (0.0, 1.0), O: (0.0, 0.0)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[X: {}, Y: {}, O: {}]", self.x, self.y, self.origin)
    }
}

impl Display for Vector4 {
    /// `(1.0, 2.0, 3.0, 4.0)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}, {}, {}, {})",
            Real(self.x, true),
            Real(self.y, true),
            Real(self.z, true),
            Real(self.w, true)
        )
    }
}

impl Display for Vector4i {
    /// `(1, 2, 3, 4)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {}, {})", self.x, self.y, self.z, self.w)
    }
}

impl Display for Plane {
    /// `[N: (0.0, 1.0, 0.0), D: 5]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[N: {}, D: {}]", self.normal, Real(self.d, false))
    }
}

impl Display for Quaternion {
    /// `(0, 0, 0, 1)` (Godot prints quaternion components without `.0`).
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}, {}, {}, {})",
            Real(self.x, false),
            Real(self.y, false),
            Real(self.z, false),
            Real(self.w, false)
        )
    }
}

impl Display for Aabb {
    /// `[P: (0.0, 0.0, 0.0), S: (1.0, 1.0, 1.0)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "[P: {}, S: {}]", self.position, self.size)
    }
}

impl Display for Basis {
    /// The columns (axes): `[X: (1.0, 0.0, 0.0), Y: (0.0, 1.0, 0.0), Z: (0.0, 0.0, 1.0)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let column = |i: usize| self.column(i).unwrap_or_default();
        write!(f, "[X: {}, Y: {}, Z: {}]", column(0), column(1), column(2))
    }
}

impl Display for Transform3D {
    /// The basis columns and the origin: `[X: (...), Y: (...), Z: (...), O: (...)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let column = |i: usize| self.basis.column(i).unwrap_or_default();
        write!(
            f,
            "[X: {}, Y: {}, Z: {}, O: {}]",
            column(0),
            column(1),
            column(2),
            self.origin
        )
    }
}

impl Display for Projection {
    /// The columns: `[X: (...), Y: (...), Z: (...), W: (...)]`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let [x, y, z, w] = &self.columns;
        write!(f, "[X: {x}, Y: {y}, Z: {z}, W: {w}]")
    }
}

impl Display for Color {
    /// `(1, 0, 0, 1)`: up to 4 decimals, as Godot prints colours.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}, {}, {}, {})",
            Channel(self.r),
            Channel(self.g),
            Channel(self.b),
            Channel(self.a)
        )
    }
}

impl Display for NodePath {
    /// The path syntax [`NodePath::parse`] reads: `/root/Main`, `Main/Player:position:x`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.absolute {
            f.write_char('/')?;
        }
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                f.write_char('/')?;
            }
            f.write_str(name)?;
        }
        for subname in &self.subnames {
            write!(f, ":{subname}")?;
        }
        Ok(())
    }
}

impl Display for Variant {
    /// Prints like GDScript 4's `str()`: `<null>`, `true`, `7`, `1.5`, `hi`, `(1.0, 2.0)`,
    /// `[1, "a"]`, `{ "k": true }`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        stringify(self, f, 0)
    }
}

/// Godot's `String::c_escape`, then `quote()`.
fn quoted(f: &mut Formatter<'_>, prefix: &str, text: &str) -> fmt::Result {
    f.write_str(prefix)?;
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\u{7}' => f.write_str("\\a")?,
            '\u{8}' => f.write_str("\\b")?,
            '\u{c}' => f.write_str("\\f")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\u{b}' => f.write_str("\\v")?,
            '\'' => f.write_str("\\'")?,
            '?' => f.write_str("\\?")?,
            '"' => f.write_str("\\\"")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// An element inside a container: strings, StringNames and NodePaths are quoted.
fn stringify_element(value: &Variant, f: &mut Formatter<'_>, depth: usize) -> fmt::Result {
    match value {
        Variant::String(s) => quoted(f, "", s),
        Variant::StringName(s) => quoted(f, "&", s),
        Variant::NodePath(path) => quoted(f, "^", &path.to_string()),
        other => stringify(other, f, depth),
    }
}

fn list<T>(
    f: &mut Formatter<'_>,
    items: &[T],
    mut each: impl FnMut(&mut Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_char('[')?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        each(f, item)?;
    }
    f.write_char(']')
}

fn stringify(value: &Variant, f: &mut Formatter<'_>, depth: usize) -> fmt::Result {
    match value {
        Variant::Nil => f.write_str("<null>"),
        Variant::Bool(b) => write!(f, "{b}"),
        Variant::Int(i) => write!(f, "{i}"),
        Variant::Float(x) => Real(*x, true).fmt(f),
        Variant::String(s) | Variant::StringName(s) => f.write_str(s),
        Variant::Vector2(v) => v.fmt(f),
        Variant::Vector2i(v) => v.fmt(f),
        Variant::Rect2(v) => v.fmt(f),
        Variant::Rect2i(v) => v.fmt(f),
        Variant::Vector3(v) => v.fmt(f),
        Variant::Vector3i(v) => v.fmt(f),
        Variant::Transform2D(v) => v.fmt(f),
        Variant::Vector4(v) => v.fmt(f),
        Variant::Vector4i(v) => v.fmt(f),
        Variant::Plane(v) => v.fmt(f),
        Variant::Quaternion(v) => v.fmt(f),
        Variant::Aabb(v) => v.fmt(f),
        Variant::Basis(v) => v.fmt(f),
        Variant::Transform3D(v) => v.fmt(f),
        Variant::Projection(v) => v.fmt(f),
        Variant::Color(v) => v.fmt(f),
        Variant::NodePath(path) => path.fmt(f),
        Variant::Rid(id) => write!(f, "RID({id})"),
        Variant::Object(0) => f.write_str("<Object#null>"),
        Variant::Object(id) => write!(f, "<Object#{id}>"),
        Variant::Callable => f.write_str("null::null"),
        Variant::Signal { name, object: 0 } => write!(f, "null::{name}"),
        Variant::Signal { name, object } => write!(f, "<Object#{object}>::{name}"),
        Variant::Array(array) => {
            if depth >= MAX_PRINT_DEPTH {
                return f.write_str("[...]");
            }
            list(f, &array.items, |f, item| {
                stringify_element(item, f, depth + 1)
            })
        }
        Variant::Dictionary(dict) => {
            if depth >= MAX_PRINT_DEPTH {
                return f.write_str("{ ... }");
            }
            // Godot pads the braces (`{ "k": true }`, and `{  }` when empty) so they are
            // not mistaken for brackets.
            f.write_str("{ ")?;
            for (i, (key, value)) in dict.entries.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                stringify_element(key, f, depth + 1)?;
                f.write_str(": ")?;
                stringify_element(value, f, depth + 1)?;
            }
            f.write_str(" }")
        }
        Variant::PackedByteArray(v) => list(f, v, |f, x| write!(f, "{x}")),
        Variant::PackedInt32Array(v) => list(f, v, |f, x| write!(f, "{x}")),
        Variant::PackedInt64Array(v) => list(f, v, |f, x| write!(f, "{x}")),
        Variant::PackedFloat32Array(v) => list(f, v, |f, x| Real(*x, true).fmt(f)),
        Variant::PackedFloat64Array(v) => list(f, v, |f, x| Real(*x, true).fmt(f)),
        Variant::PackedStringArray(v) => list(f, v, |f, s| quoted(f, "", s)),
        Variant::PackedVector2Array(v) => list(f, v, |f, x| x.fmt(f)),
        Variant::PackedVector3Array(v) => list(f, v, |f, x| x.fmt(f)),
        Variant::PackedColorArray(v) => list(f, v, |f, x| x.fmt(f)),
        Variant::PackedVector4Array(v) => list(f, v, |f, x| x.fmt(f)),
    }
}
