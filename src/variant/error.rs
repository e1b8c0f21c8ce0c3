//! Why a Variant could not be encoded, decoded or converted.

use std::fmt;

/// The Godot wire format an operation was about: some types and features exist in only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GodotVersion {
    /// Godot 3.x (`var2bytes`, MultiplayerAPI).
    Godot3,
    /// Godot 4.x (`var_to_bytes`, SceneMultiplayer); the default.
    #[default]
    Godot4,
}

impl fmt::Display for GodotVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GodotVersion::Godot3 => "Godot 3",
            GodotVersion::Godot4 => "Godot 4",
        })
    }
}

/// Everything that can go wrong while encoding, decoding or converting a [`Variant`].
///
/// Decoding errors carry the byte offset (from the start of the input) where the problem
/// was found, so a bad packet can be located in a hex dump.
///
/// [`Variant`]: super::Variant
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VariantError {
    /// The input ends before the value does.
    Truncated {
        /// Where the missing part starts.
        offset: usize,
        /// What was being read.
        what: &'static str,
        /// Bytes that part needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A type id (low byte of a header, or the type of a typed container) that the chosen
    /// Godot version does not have.
    UnknownType {
        /// Offset of the header or typed-container field.
        offset: usize,
        /// The id read.
        id: u32,
        /// The format being decoded.
        version: GodotVersion,
    },
    /// A string's bytes (up to its first NUL) are not valid UTF-8.
    InvalidUtf8 {
        /// Offset of the string's first byte.
        offset: usize,
    },
    /// A NodePath in the pre-3.0 string form (bit 31 of the name count clear), which Godot
    /// rejects too.
    OldNodePathFormat {
        /// Offset of the name count.
        offset: usize,
    },
    /// Arrays and dictionaries are nested deeper than the limit.
    TooDeep {
        /// The limit that was exceeded.
        max_depth: usize,
        /// Offset of the container that went one level too deep (`None` when encoding).
        offset: Option<usize>,
    },
    /// An element count that the rest of the input cannot possibly hold; refused before
    /// anything is allocated for it.
    CountTooLarge {
        /// Offset of the count.
        offset: usize,
        /// What is being counted.
        what: &'static str,
        /// The count read.
        count: u64,
        /// Bytes left after the count.
        remaining: usize,
    },
    /// An Object in the full form (class name and properties). Godot sends it only with
    /// `allow_object_decoding`, and decoding it means instantiating arbitrary classes: it is
    /// refused. Objects sent as instance ids decode to [`Variant::Object`](super::Variant::Object).
    FullObjectRefused {
        /// Offset of the Object header.
        offset: usize,
    },
    /// The value has a type (or a feature, such as a typed container) that the chosen Godot
    /// version does not have.
    NotInVersion {
        /// What is missing, e.g. `"StringName"` or `"typed Array"`.
        what: &'static str,
        /// The version it is missing from.
        version: GodotVersion,
    },
    /// A typed container names a builtin type id that Godot 4 does not have.
    InvalidContainerType {
        /// The id given.
        id: u32,
    },
    /// A length or count too large for Godot's 32-bit fields (Godot reads them as signed,
    /// so the limit is 2³¹ − 1).
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its length or count.
        len: usize,
    },
    /// The input holds more bytes after one complete value.
    TrailingBytes {
        /// Bytes the value used.
        consumed: usize,
        /// Bytes in the input.
        total: usize,
    },
    /// A conversion out of a Variant found another type.
    TypeMismatch {
        /// The Godot type name wanted.
        expected: &'static str,
        /// The Godot type name found.
        got: &'static str,
    },
    /// A conversion found the right type but a value out of the target's range.
    OutOfRange {
        /// The value, as text.
        value: String,
        /// The target type.
        target: &'static str,
    },
}

impl fmt::Display for VariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VariantError::Truncated {
                offset,
                what,
                needed,
                available,
            } => write!(
                f,
                "truncated Variant: {what} at byte {offset} needs {needed} bytes, only {available} left"
            ),
            VariantError::UnknownType {
                offset,
                id,
                version,
            } => write!(f, "unknown {version} Variant type id {id} at byte {offset}"),
            VariantError::InvalidUtf8 { offset } => {
                write!(f, "string at byte {offset} is not valid UTF-8")
            }
            VariantError::OldNodePathFormat { offset } => write!(
                f,
                "NodePath at byte {offset} lacks bit 31 of its name count (the old string form, which Godot refuses too)"
            ),
            VariantError::TooDeep {
                max_depth,
                offset: Some(offset),
            } => write!(
                f,
                "arrays/dictionaries nested deeper than {max_depth} levels (at byte {offset})"
            ),
            VariantError::TooDeep {
                max_depth,
                offset: None,
            } => write!(
                f,
                "arrays/dictionaries nested deeper than {max_depth} levels cannot be encoded"
            ),
            VariantError::CountTooLarge {
                offset,
                what,
                count,
                remaining,
            } => write!(
                f,
                "{what} count {count} at byte {offset} cannot fit in the {remaining} bytes left"
            ),
            VariantError::FullObjectRefused { offset } => write!(
                f,
                "Object at byte {offset} is in the full (class and properties) form, which is refused; only instance ids are decoded"
            ),
            VariantError::NotInVersion { what, version } => {
                write!(f, "{what} does not exist in {version}")
            }
            VariantError::InvalidContainerType { id } => write!(
                f,
                "typed container names type id {id}, which is not a Godot 4 type"
            ),
            VariantError::TooLarge { what, len } => write!(
                f,
                "{what} of {len} is too large for Godot's 32-bit length (max 2147483647)"
            ),
            VariantError::TrailingBytes { consumed, total } => write!(
                f,
                "trailing bytes: the Variant ends at byte {consumed} of {total}"
            ),
            VariantError::TypeMismatch { expected, got } => {
                write!(f, "expected a Variant of type {expected}, got {got}")
            }
            VariantError::OutOfRange { value, target } => {
                write!(f, "value {value} does not fit in {target}")
            }
        }
    }
}

impl std::error::Error for VariantError {}
