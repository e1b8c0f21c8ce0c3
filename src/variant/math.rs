//! Godot's math value types, as plain data with `f32` components (Godot's default `real_t`).
//!
//! They carry no math: they exist so that values read from a Godot peer can be inspected and
//! sent back unchanged.

/// A 2D vector (`Vector2`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Vector2 {
    /// Horizontal component.
    pub x: f32,
    /// Vertical component.
    pub y: f32,
}

/// A 2D vector of integers (`Vector2i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Vector2i {
    /// Horizontal component.
    pub x: i32,
    /// Vertical component.
    pub y: i32,
}

/// An axis-aligned rectangle (`Rect2`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Rect2 {
    /// Top-left corner.
    pub position: Vector2,
    /// Width and height.
    pub size: Vector2,
}

/// An axis-aligned rectangle with integer coordinates (`Rect2i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect2i {
    /// Top-left corner.
    pub position: Vector2i,
    /// Width and height.
    pub size: Vector2i,
}

/// A 3D vector (`Vector3`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Vector3 {
    /// X component.
    pub x: f32,
    /// Y component.
    pub y: f32,
    /// Z component.
    pub z: f32,
}

/// A 3D vector of integers (`Vector3i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Vector3i {
    /// X component.
    pub x: i32,
    /// Y component.
    pub y: i32,
    /// Z component.
    pub z: i32,
}

/// A 2D affine transform (`Transform2D`): two basis columns and the origin.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Transform2D {
    /// The X basis column.
    pub x: Vector2,
    /// The Y basis column.
    pub y: Vector2,
    /// The translation.
    pub origin: Vector2,
}

/// A 4D vector (`Vector4`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Vector4 {
    /// X component.
    pub x: f32,
    /// Y component.
    pub y: f32,
    /// Z component.
    pub z: f32,
    /// W component.
    pub w: f32,
}

/// A 4D vector of integers (`Vector4i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Vector4i {
    /// X component.
    pub x: i32,
    /// Y component.
    pub y: i32,
    /// Z component.
    pub z: i32,
    /// W component.
    pub w: i32,
}

/// A plane in Hessian normal form (`Plane`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Plane {
    /// The plane's normal.
    pub normal: Vector3,
    /// Distance from the origin along the normal.
    pub d: f32,
}

/// A rotation quaternion (`Quaternion`, `Quat` in Godot 3).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Quaternion {
    /// X component of the vector part.
    pub x: f32,
    /// Y component of the vector part.
    pub y: f32,
    /// Z component of the vector part.
    pub z: f32,
    /// Scalar part.
    pub w: f32,
}

/// An axis-aligned bounding box (`AABB`).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Aabb {
    /// The minimum corner.
    pub position: Vector3,
    /// Extent along each axis.
    pub size: Vector3,
}

/// A 3×3 matrix (`Basis`), stored as rows as Godot does (and as it is sent).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Basis {
    /// The three rows; column `i` is `(rows[0][i], rows[1][i], rows[2][i])`.
    pub rows: [Vector3; 3],
}

impl Basis {
    /// Column `index` (0 = X axis, 1 = Y, 2 = Z), as Godot prints it; `None` past 2.
    pub fn column(&self, index: usize) -> Option<Vector3> {
        let pick = |row: &Vector3| match index {
            0 => Some(row.x),
            1 => Some(row.y),
            2 => Some(row.z),
            _ => None,
        };
        Some(Vector3 {
            x: pick(&self.rows[0])?,
            y: pick(&self.rows[1])?,
            z: pick(&self.rows[2])?,
        })
    }
}

/// A 3D affine transform (`Transform3D`, `Transform` in Godot 3).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Transform3D {
    /// Rotation, scale and shear.
    pub basis: Basis,
    /// The translation.
    pub origin: Vector3,
}

/// A 4×4 matrix (`Projection`), stored as columns as Godot does (and as it is sent).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Projection {
    /// The four columns.
    pub columns: [Vector4; 4],
}

/// An RGBA colour (`Color`); always `f32`, also in double-precision Godot builds.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Color {
    /// Red.
    pub r: f32,
    /// Green.
    pub g: f32,
    /// Blue.
    pub b: f32,
    /// Alpha (opacity).
    pub a: f32,
}
