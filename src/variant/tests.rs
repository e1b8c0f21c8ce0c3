//! Golden bytes from the reference (`godot-rpc.md` §2.1, §2.2, §3.1), round trips, and
//! malformed input.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::*;

/// Hex as the reference writes it: pairs of digits, spaces ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd hex: {text}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn limits() -> Limits {
    Limits::default()
}

fn g4(value: &Variant) -> Vec<u8> {
    value.to_godot4_bytes().unwrap()
}

fn g3(value: &Variant) -> Vec<u8> {
    value.to_godot3_bytes().unwrap()
}

fn compressed(value: &Variant) -> Vec<u8> {
    let mut out = Vec::new();
    godot4::encode_compressed(value, &mut out).unwrap();
    out
}

fn v2(x: f32, y: f32) -> Vector2 {
    Vector2 { x, y }
}

fn v3(x: f32, y: f32, z: f32) -> Vector3 {
    Vector3 { x, y, z }
}

fn v4(x: f32, y: f32, z: f32, w: f32) -> Vector4 {
    Vector4 { x, y, z, w }
}

fn dict(entries: Vec<(Variant, Variant)>) -> Variant {
    Variant::Dictionary(Dictionary {
        entries,
        ..Dictionary::default()
    })
}

fn path(text: &str) -> Variant {
    Variant::NodePath(NodePath::parse(text))
}

// ---------------------------------------------------------------------------------------
// Golden bytes
// ---------------------------------------------------------------------------------------

/// §2.1, Godot 4 (computed from the 4.4.1 source).
fn godot4_examples() -> Vec<(Variant, &'static str)> {
    vec![
        (Variant::Nil, "00000000"),
        (Variant::Bool(true), "01000000 01000000"),
        (Variant::Int(1), "02000000 01000000"),
        (Variant::Int(-1), "02000000 ffffffff"),
        (Variant::Int(1 << 40), "02000100 00000000 00010000"),
        (Variant::Float(1.5), "03000000 0000c03f"),
        (Variant::Float(0.1), "03000100 9a999999 9999b93f"),
        (Variant::from("hi"), "04000000 02000000 68690000"),
        (
            Variant::StringName("hi".into()),
            "15000000 02000000 68690000",
        ),
        (Variant::Vector2(v2(1.0, 2.0)), "05000000 0000803f 00000040"),
        (
            Variant::Vector2i(Vector2i { x: 1, y: 2 }),
            "06000000 01000000 02000000",
        ),
        (
            Variant::from((1, "a")),
            "1c000000 02000000 02000000 01000000 04000000 01000000 61000000",
        ),
        (
            dict(vec![("k".into(), true.into())]),
            "1b000000 01000000 04000000 01000000 6b000000 01000000 01000000",
        ),
        (
            Variant::PackedByteArray(vec![1, 2, 3]),
            "1d000000 03000000 01020300",
        ),
        (
            Variant::PackedStringArray(vec!["ab".into()]),
            "22000000 01000000 03000000 61620000",
        ),
        (
            path("/root/Main"),
            "16000000 02000080 00000000 01000000 04000000 726f6f74 04000000 4d61696e",
        ),
        (
            path("Main/Player:position:x"),
            "16000000 02000080 02000000 00000000 04000000 4d61696e 06000000 506c6179 \
             65720000 08000000 706f7369 74696f6e 01000000 78000000",
        ),
        (
            Variant::Array(Array::typed(ContainerType::Builtin(2), vec![1.into()])),
            "1c000100 02000000 01000000 02000000 01000000",
        ),
        (
            Variant::Dictionary(Dictionary {
                key: ContainerType::Builtin(4),
                value: ContainerType::Builtin(2),
                entries: vec![("a".into(), 1.into())],
            }),
            "1b000500 04000000 02000000 01000000 04000000 01000000 61000000 02000000 01000000",
        ),
        (Variant::Object(1288), "18000100 08050000 00000000"),
    ]
}

#[test]
fn godot4_golden_encode() {
    for (value, bytes) in godot4_examples() {
        assert_eq!(g4(&value), hex(bytes), "encoding {value:?}");
    }
}

#[test]
fn godot4_golden_decode() {
    for (value, bytes) in godot4_examples() {
        let bytes = hex(bytes);
        assert_eq!(
            godot4::decode(&bytes, &limits()).unwrap(),
            (value.clone(), bytes.len()),
            "decoding {value:?}"
        );
    }
}

/// §2.2: the compressed form inside RPC / spawn / sync packets.
fn compressed_examples() -> Vec<(Variant, &'static str)> {
    vec![
        (Variant::Bool(false), "01"),
        (Variant::Bool(true), "81"),
        (Variant::Int(7), "02 07"),
        (Variant::Int(-1), "02 ff"),
        (Variant::Int(300), "42 2c 01"),
        (Variant::Int(70000), "82 70 11 01 00"),
        (Variant::Int(1 << 40), "c2 00 00 00 00 00 01 00 00"),
        (Variant::Float(1.5), "03 00 00 00 00 00 c0 3f"),
        (Variant::from("hi"), "04 00 00 00 02 00 00 00 68 69 00 00"),
        // §4.6 spawn state.
        (Variant::Vector2(v2(1.0, 2.0)), "05000000 0000803f 00000040"),
    ]
}

#[test]
fn compressed_golden_encode() {
    for (value, bytes) in compressed_examples() {
        assert_eq!(compressed(&value), hex(bytes), "encoding {value:?}");
    }
}

#[test]
fn compressed_golden_decode() {
    for (value, bytes) in compressed_examples() {
        let bytes = hex(bytes);
        assert_eq!(
            godot4::decode_compressed(&bytes, &limits()).unwrap(),
            (value.clone(), bytes.len()),
            "decoding {value:?}"
        );
    }
}

#[test]
fn compressed_null_object_is_nil_not_godots_broken_header() {
    // The §2.2 pitfall: Godot would send `18 00 00 00`.
    assert_eq!(compressed(&Variant::Object(0)), hex("00 00 00 00"));
    assert_eq!(
        godot4::decode_compressed(&hex("00000000"), &limits()).unwrap(),
        (Variant::Nil, 4)
    );
    // What Godot sends is refused (an OBJECT header without its payload), never a panic.
    assert!(godot4::decode_compressed(&hex("18000000"), &limits()).is_err());
}

#[test]
fn compressed_arguments_follow_each_other() {
    // §4.5 `rpc("hello", true, 300)`: the arguments after the header are `81 42 2c 01`.
    let args = hex("81 42 2c 01");
    let (first, used) = godot4::decode_compressed(&args, &limits()).unwrap();
    let (second, used2) = godot4::decode_compressed(&args[used..], &limits()).unwrap();
    assert_eq!((first, second), (Variant::Bool(true), Variant::Int(300)));
    assert_eq!(used + used2, args.len());
}

#[test]
fn compressed_int_widths_at_the_edges() {
    for (value, len) in [
        (i64::from(i8::MIN), 2),
        (i64::from(i8::MAX), 2),
        (i64::from(i8::MAX) + 1, 3),
        (i64::from(i16::MIN), 3),
        (i64::from(i16::MIN) - 1, 5),
        (i64::from(i32::MAX), 5),
        (i64::from(i32::MAX) + 1, 9),
        (i64::MIN, 9),
        (i64::MAX, 9),
    ] {
        let bytes = compressed(&Variant::Int(value));
        assert_eq!(bytes.len(), len, "{value}");
        assert_eq!(
            godot4::decode_compressed(&bytes, &limits()).unwrap(),
            (Variant::Int(value), len)
        );
    }
}

/// §3.1, Godot 3 (printed by `var2bytes()` on a 3.2.3 engine).
fn godot3_examples() -> Vec<(Variant, &'static str)> {
    vec![
        (Variant::Nil, "00000000"),
        (Variant::Bool(true), "01000000 01000000"),
        (Variant::Int(1), "02000000 01000000"),
        (Variant::Int(-1), "02000000 ffffffff"),
        (Variant::Int(2147483648), "02000100 00000080 00000000"),
        (Variant::Int(1099511627776), "02000100 00000000 00010000"),
        (Variant::Float(1.5), "03000000 0000c03f"),
        (Variant::Float(0.1), "03000100 9a999999 9999b93f"),
        (Variant::from("hi"), "04000000 02000000 68690000"),
        (
            Variant::from("héllo"),
            "04000000 06000000 68c3a96c 6c6f0000",
        ),
        (Variant::from(""), "04000000 00000000"),
        (Variant::Vector2(v2(1.0, 2.0)), "05000000 0000803f 00000040"),
        (
            Variant::Rect2(Rect2 {
                position: v2(1.0, 2.0),
                size: v2(3.0, 4.0),
            }),
            "06000000 0000803f 00000040 00004040 00008040",
        ),
        (
            Variant::Color(Color {
                r: 1.0,
                g: 0.0,
                b: 0.0,
                a: 1.0,
            }),
            "0e000000 0000803f 00000000 00000000 0000803f",
        ),
        (
            Variant::from((1, "a")),
            "13000000 02000000 02000000 01000000 04000000 01000000 61000000",
        ),
        (
            dict(vec![("k".into(), true.into())]),
            "12000000 01000000 04000000 01000000 6b000000 01000000 01000000",
        ),
        (
            Variant::PackedByteArray(vec![1, 2, 3]),
            "14000000 03000000 01020300",
        ),
        (
            Variant::PackedStringArray(vec!["ab".into()]),
            "17000000 01000000 03000000 61620000",
        ),
        (
            path("/root/Main"),
            "0f000000 02000080 00000000 01000000 04000000 726f6f74 04000000 4d61696e",
        ),
        (
            path("Main/Player:position:x"),
            "0f000000 02000080 02000000 00000000 04000000 4d61696e 06000000 506c6179 \
             65720000 08000000 706f7369 74696f6e 01000000 78000000",
        ),
        (Variant::Object(1288), "11000100 08050000 00000000"),
        (Variant::Rid(0), "10000000"),
    ]
}

#[test]
fn godot3_golden_encode() {
    for (value, bytes) in godot3_examples() {
        assert_eq!(g3(&value), hex(bytes), "encoding {value:?}");
    }
}

#[test]
fn godot3_golden_decode() {
    for (value, bytes) in godot3_examples() {
        let bytes = hex(bytes);
        assert_eq!(
            godot3::decode(&bytes, &limits()).unwrap(),
            (value.clone(), bytes.len()),
            "decoding {value:?}"
        );
    }
}

#[test]
fn godot3_observed_rpc_arguments() {
    // §6 trace: the argument bytes of `hello(7)`, `hello(1.5)`, `hello("hi")`, `hello([1, "a"])`.
    for (bytes, value) in [
        ("02000000 07000000", Variant::Int(7)),
        ("03000000 0000c03f", Variant::Float(1.5)),
        ("04000000 02000000 68690000", Variant::from("hi")),
        ("02000000 05000000", Variant::Int(5)),
    ] {
        assert_eq!(Variant::from_godot3_bytes(&hex(bytes)).unwrap(), value);
    }
}

#[test]
fn godot3_rid_is_sent_without_its_id() {
    assert_eq!(g3(&Variant::Rid(77)), hex("10000000"));
    assert_eq!(g4(&Variant::Rid(77)), hex("17000000 4d000000 00000000"));
}

#[test]
fn a_null_object_is_sent_as_nil() {
    // Godot 3.2.3's var2bytes(null Object) is a bare NIL header (tests/variant_godot3.rs).
    assert_eq!(g3(&Variant::Object(0)), hex("00000000"));
    assert_eq!(
        Variant::from_godot3_bytes(&hex("11000100 00000000 00000000")).unwrap(),
        Variant::Object(0)
    );
    assert_eq!(g4(&Variant::Object(0)), hex("00000000"));
    assert_eq!(
        Variant::from_godot4_bytes(&hex("18000100 00000000 00000000")).unwrap(),
        Variant::Object(0)
    );
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

/// One value of every type, plus edge cases. The second element says whether Godot 3 has it.
fn samples() -> Vec<(Variant, bool)> {
    let color = Color {
        r: 0.25,
        g: 0.5,
        b: 0.75,
        a: 1.0,
    };
    let basis = Basis {
        rows: [v3(1.0, 2.0, 3.0), v3(4.0, 5.0, 6.0), v3(7.0, 8.0, 9.5)],
    };
    vec![
        (Variant::Nil, true),
        (Variant::Bool(false), true),
        (Variant::Bool(true), true),
        (Variant::Int(0), true),
        (Variant::Int(i64::from(i32::MIN)), true),
        (Variant::Int(i64::from(i32::MAX) + 1), true),
        (Variant::Int(i64::MIN), true),
        (Variant::Int(i64::MAX), true),
        (Variant::Float(-2.5), true),
        (Variant::Float(1e300), true),
        (Variant::Float(f64::INFINITY), true),
        (Variant::Float(f64::MIN_POSITIVE), true),
        (Variant::from(""), true),
        (Variant::from("héllo wörld ✓ 🎮"), true),
        (Variant::from("abcd"), true),
        (Variant::StringName("ünïcode".into()), false),
        (Variant::Vector2(v2(-1.5, 3.25)), true),
        (Variant::Vector2i(Vector2i { x: -7, y: i32::MAX }), false),
        (
            Variant::Rect2(Rect2 {
                position: v2(1.0, 2.0),
                size: v2(3.0, 4.0),
            }),
            true,
        ),
        (
            Variant::Rect2i(Rect2i {
                position: Vector2i { x: 1, y: 2 },
                size: Vector2i { x: 3, y: 4 },
            }),
            false,
        ),
        (Variant::Vector3(v3(1.0, -2.0, 3.5)), true),
        (Variant::Vector3i(Vector3i { x: 1, y: -2, z: 3 }), false),
        (
            Variant::Transform2D(Transform2D {
                x: v2(1.0, 0.0),
                y: v2(0.0, 1.0),
                origin: v2(10.0, -20.0),
            }),
            true,
        ),
        (Variant::Vector4(v4(1.0, 2.0, 3.0, 4.0)), false),
        (
            Variant::Vector4i(Vector4i {
                x: 1,
                y: 2,
                z: 3,
                w: i32::MIN,
            }),
            false,
        ),
        (
            Variant::Plane(Plane {
                normal: v3(0.0, 1.0, 0.0),
                d: 5.0,
            }),
            true,
        ),
        (
            Variant::Quaternion(Quaternion {
                x: 0.0,
                y: 0.0,
                z: 0.0,
                w: 1.0,
            }),
            true,
        ),
        (
            Variant::Aabb(Aabb {
                position: v3(1.0, 2.0, 3.0),
                size: v3(4.0, 5.0, 6.0),
            }),
            true,
        ),
        (Variant::Basis(basis), true),
        (
            Variant::Transform3D(Transform3D {
                basis,
                origin: v3(-1.0, -2.0, -3.0),
            }),
            true,
        ),
        (
            Variant::Projection(Projection {
                columns: [
                    v4(1.0, 2.0, 3.0, 4.0),
                    v4(5.0, 6.0, 7.0, 8.0),
                    v4(9.0, 10.0, 11.0, 12.0),
                    v4(13.0, 14.0, 15.0, 16.0),
                ],
            }),
            false,
        ),
        (Variant::Color(color), true),
        (path("Main/Player:position:x"), true),
        (path("/root"), true),
        (path(":position"), true),
        (Variant::NodePath(NodePath::default()), true),
        (Variant::Rid(0), true),
        (Variant::Rid(u64::MAX), true),
        (Variant::Object(1), true),
        (Variant::Object(u64::MAX), true),
        (Variant::Callable, false),
        (
            Variant::Signal {
                name: "hit".into(),
                object: 42,
            },
            false,
        ),
        (Variant::from(Vec::<Variant>::new()), true),
        (dict(vec![]), true),
        (
            Variant::from((
                1,
                "two",
                vec![Variant::Float(3.5), Variant::Nil],
                dict(vec![(Variant::Int(1), Variant::from(vec![1u8, 2]))]),
            )),
            true,
        ),
        (
            dict(vec![
                ("a".into(), 1.into()),
                (Variant::Vector2(v2(1.0, 1.0)), Variant::from(("x",))),
                ("a".into(), 2.into()), // duplicates stay as sent
            ]),
            true,
        ),
        (
            Variant::Array(Array::typed(
                ContainerType::Builtin(4),
                vec!["a".into(), "b".into()],
            )),
            false,
        ),
        (
            Variant::Array(Array::typed(
                ContainerType::ClassName("Node".into()),
                vec![Variant::Object(5)],
            )),
            false,
        ),
        (
            Variant::Array(Array::typed(
                ContainerType::Script("res://player.gd".into()),
                vec![],
            )),
            false,
        ),
        (
            Variant::Dictionary(Dictionary {
                key: ContainerType::ClassName("Resource".into()),
                value: ContainerType::Script("res://x.gd".into()),
                entries: vec![(Variant::Object(1), Variant::Object(2))],
            }),
            false,
        ),
        (
            Variant::Dictionary(Dictionary {
                key: ContainerType::Untyped,
                value: ContainerType::Builtin(28),
                entries: vec![],
            }),
            false,
        ),
        (Variant::PackedByteArray(vec![]), true),
        (Variant::PackedByteArray(vec![9; 5]), true),
        (Variant::PackedInt32Array(vec![1, -2, i32::MAX]), true),
        (Variant::PackedInt64Array(vec![i64::MIN, 0, 1]), false),
        (Variant::PackedFloat32Array(vec![0.5, -1.0]), true),
        (Variant::PackedFloat64Array(vec![0.1, 1e-300]), false),
        (
            Variant::PackedStringArray(vec!["".into(), "abc".into(), "ünï".into()]),
            true,
        ),
        (
            Variant::PackedVector2Array(vec![v2(1.0, 2.0), v2(3.0, 4.0)]),
            true,
        ),
        (Variant::PackedVector3Array(vec![v3(1.0, 2.0, 3.0)]), true),
        (Variant::PackedColorArray(vec![color, color]), true),
        (
            Variant::PackedVector4Array(vec![v4(1.0, 2.0, 3.0, 4.0)]),
            false,
        ),
    ]
}

fn assert_round_trip(
    value: &Variant,
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<(Variant, usize), VariantError>,
    what: &str,
) {
    assert_eq!(bytes.len() % 4, 0, "{what}: {value:?} is not padded");
    let (back, used) = decode(bytes).unwrap_or_else(|e| panic!("{what}: {value:?}: {e}"));
    assert_eq!(&back, value, "{what}");
    assert_eq!(used, bytes.len(), "{what}: {value:?}");
}

#[test]
fn round_trip_godot4() {
    for (value, _) in samples() {
        assert_round_trip(
            &value,
            &g4(&value),
            |b| godot4::decode(b, &limits()),
            "godot4",
        );
    }
}

#[test]
fn round_trip_godot4_compressed() {
    for (value, _) in samples() {
        let bytes = compressed(&value);
        let (back, used) = godot4::decode_compressed(&bytes, &limits()).unwrap();
        assert_eq!((back, used), (value.clone(), bytes.len()));
        // Only BOOL and INT are compressed; everything else is the plain encoding.
        if !matches!(value, Variant::Bool(_) | Variant::Int(_)) {
            assert_eq!(bytes, g4(&value));
        }
    }
}

#[test]
fn round_trip_godot3() {
    for (value, in_godot3) in samples() {
        if !in_godot3 {
            continue;
        }
        let expected = match &value {
            Variant::Rid(_) => Variant::Rid(0),
            other => other.clone(),
        };
        assert_round_trip(
            &expected,
            &g3(&value),
            |b| godot3::decode(b, &limits()),
            "godot3",
        );
    }
}

#[test]
fn godot3_refuses_what_it_does_not_have() {
    for (value, in_godot3) in samples() {
        if in_godot3 {
            continue;
        }
        let mut out = vec![0xAA];
        let err = godot3::encode(&value, &mut out).unwrap_err();
        assert!(
            matches!(
                err,
                VariantError::NotInVersion {
                    version: GodotVersion::Godot3,
                    ..
                }
            ),
            "{value:?}: {err}"
        );
        assert_eq!(out, [0xAA], "output left as it was");
    }
    let err = g3_err(&Variant::Vector2i(Vector2i::default()));
    assert_eq!(err.to_string(), "Vector2i does not exist in Godot 3");
    let typed = Variant::Array(Array::typed(ContainerType::Builtin(2), vec![]));
    assert_eq!(
        g3_err(&typed).to_string(),
        "typed Array does not exist in Godot 3"
    );
    // Nested deep inside an otherwise valid value.
    let nested = Variant::from((1, vec![Variant::Callable]));
    assert_eq!(
        g3_err(&nested).to_string(),
        "Callable does not exist in Godot 3"
    );
}

fn g3_err(value: &Variant) -> VariantError {
    value.to_godot3_bytes().unwrap_err()
}

#[test]
fn every_type_has_a_name_and_godot4_id() {
    let names: Vec<&str> = samples().iter().map(|(v, _)| v.type_name()).collect();
    for name in [
        "Nil",
        "bool",
        "int",
        "float",
        "String",
        "StringName",
        "AABB",
        "RID",
        "Callable",
        "PackedByteArray",
        "PackedVector4Array",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    assert_eq!(Variant::Array(Array::default()).type_id(), 28);
    assert_eq!(Variant::PackedVector4Array(vec![]).type_id(), 38);
    // The first header byte of a Godot 4 encoding is the type id.
    for (value, _) in samples() {
        let first = g4(&value)[0];
        if value != Variant::Object(0) {
            assert_eq!(u32::from(first), value.type_id(), "{value:?}");
        }
    }
}

#[test]
fn int_and_float_width_rules() {
    assert_eq!(
        g4(&Variant::Int(i64::from(i32::MAX))),
        hex("02000000 ffffff7f")
    );
    assert_eq!(
        g4(&Variant::Int(i64::from(i32::MIN) - 1)),
        hex("02000100 ffffff7f ffffffff")
    );
    // f32 holds 0.5 and infinity exactly, not 0.1.
    assert_eq!(g4(&Variant::Float(0.5)).len(), 8);
    assert_eq!(g4(&Variant::Float(f64::INFINITY)), hex("03000000 0000807f"));
    assert_eq!(g4(&Variant::Float(0.1)).len(), 12);
    // NaN never equals itself: written as f64, as Godot does, and read back as NaN.
    let nan = g4(&Variant::Float(f64::NAN));
    assert_eq!(&nan[..4], &hex("03000100")[..]);
    assert!(matches!(
        Variant::from_godot4_bytes(&nan).unwrap(),
        Variant::Float(f) if f.is_nan()
    ));
}

#[test]
fn double_precision_math_is_read_and_rounded_to_f32() {
    // Vector2(0.1, 2) from a `precision=double` build: FLAG_64 and two f64.
    let mut bytes = hex("05000100");
    bytes.extend_from_slice(&0.1f64.to_le_bytes());
    bytes.extend_from_slice(&2.0f64.to_le_bytes());
    assert_eq!(
        Variant::from_godot4_bytes(&bytes).unwrap(),
        Variant::Vector2(v2(0.1, 2.0))
    );
    // Packed: one Vector3 of f64.
    let mut bytes = hex("24000100 01000000");
    for c in [1.0f64, 2.0, 3.0] {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    assert_eq!(
        Variant::from_godot4_bytes(&bytes).unwrap(),
        Variant::PackedVector3Array(vec![v3(1.0, 2.0, 3.0)])
    );
    // Every double-capable math type, with 0.5 everywhere.
    for (id, reals) in [
        (5u8, 2),
        (7, 4),
        (9, 3),
        (11, 6),
        (12, 4),
        (14, 4),
        (15, 4),
        (16, 6),
        (17, 9),
        (18, 12),
        (19, 16),
    ] {
        let mut bytes = vec![id, 0, 1, 0];
        for _ in 0..reals {
            bytes.extend_from_slice(&0.5f64.to_le_bytes());
        }
        let value = Variant::from_godot4_bytes(&bytes).unwrap();
        assert_eq!(value.type_id(), u32::from(id));
        // Written back at f32, it is half the size.
        assert_eq!(g4(&value).len(), 4 + reals * 4);
    }
    // Color ignores the flag: always f32.
    let color = hex("14000100 0000803f 00000000 00000000 0000803f");
    assert!(matches!(
        Variant::from_godot4_bytes(&color).unwrap(),
        Variant::Color(_)
    ));
    // Godot 3 always reads f32 for math types.
    assert_eq!(
        Variant::from_godot3_bytes(&hex("05000100 0000803f 00000040")).unwrap(),
        Variant::Vector2(v2(1.0, 2.0))
    );
}

// ---------------------------------------------------------------------------------------
// Strings and NodePaths
// ---------------------------------------------------------------------------------------

#[test]
fn strings_follow_parse_utf8() {
    // Text ends at the first NUL.
    assert_eq!(
        Variant::from_godot4_bytes(&hex("04000000 03000000 61006200")).unwrap(),
        Variant::from("a")
    );
    // A leading BOM is dropped.
    assert_eq!(
        Variant::from_godot4_bytes(&hex("04000000 04000000 efbbbf61")).unwrap(),
        Variant::from("a")
    );
    // Invalid UTF-8 is refused, with the offset of the text.
    let err = Variant::from_godot4_bytes(&hex("04000000 02000000 fffe0000")).unwrap_err();
    assert_eq!(err, VariantError::InvalidUtf8 { offset: 8 });
    assert_eq!(err.to_string(), "string at byte 8 is not valid UTF-8");
    // Invalid bytes after the NUL are never looked at, as in Godot.
    assert_eq!(
        Variant::from_godot4_bytes(&hex("04000000 03000000 6100ff00")).unwrap(),
        Variant::from("a")
    );
    // Pad bytes may hold anything.
    assert_eq!(
        Variant::from_godot4_bytes(&hex("04000000 01000000 61ffffff")).unwrap(),
        Variant::from("a")
    );
}

#[test]
fn packed_string_array_elements_count_their_nul() {
    let value = Variant::PackedStringArray(vec!["abc".into(), "".into()]);
    assert_eq!(
        g4(&value),
        hex("22000000 02000000 04000000 61626300 01000000 00000000")
    );
}

#[test]
fn node_path_parse_and_print() {
    let p = NodePath::parse("/root/Main");
    assert!(p.absolute);
    assert_eq!(p.names, ["root", "Main"]);
    assert!(p.subnames.is_empty());
    assert_eq!(p.to_string(), "/root/Main");

    let p = NodePath::parse("Main/Player:position:x");
    assert!(!p.absolute);
    assert_eq!(p.to_string(), "Main/Player:position:x");

    let p = NodePath::parse(":position");
    assert!(p.names.is_empty());
    assert_eq!(p.subnames, ["position"]);
    assert_eq!(p.to_string(), ":position");

    assert_eq!(NodePath::parse("a//b/:x:").to_string(), "a/b:x");
    assert_eq!(NodePath::parse("/").to_string(), "/");
    assert!(NodePath::parse("").is_empty());
    assert_eq!(NodePath::parse("../Sibling").names, ["..", "Sibling"]);
}

#[test]
fn node_path_obsolete_flag_adds_a_subname() {
    // One name, no subnames, flags = 2: one more subname follows.
    let bytes = hex("16000000 01000080 00000000 02000000 01000000 61000000 01000000 78000000");
    let p = match Variant::from_godot4_bytes(&bytes).unwrap() {
        Variant::NodePath(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (p.names, p.subnames),
        (vec!["a".to_owned()], vec!["x".to_owned()])
    );
}

#[test]
fn node_path_pads_are_ignored() {
    // Godot 4.4 leaves NodePath pads uninitialised.
    let bytes = hex("16000000 01000080 00000000 01000000 01000000 61dead00");
    assert_eq!(Variant::from_godot4_bytes(&bytes).unwrap(), path("/a"));
}

#[test]
fn node_path_without_bit_31_is_refused() {
    let bytes = hex("16000000 02000000 00000000 00000000");
    let err = Variant::from_godot4_bytes(&bytes).unwrap_err();
    assert_eq!(err, VariantError::OldNodePathFormat { offset: 4 });
    assert!(err.to_string().contains("bit 31"), "{err}");
    assert!(Variant::from_godot3_bytes(&hex("0f000000 02000000")).is_err());
}

// ---------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------

fn complex_values() -> Vec<Variant> {
    vec![
        Variant::from((
            1,
            "héllo",
            vec![Variant::Float(0.1), Variant::Int(1 << 40)],
            dict(vec![(
                Variant::from("k"),
                Variant::PackedStringArray(vec!["ab".into(), "cde".into()]),
            )]),
        )),
        path("/root/Main/Player:position:x"),
        Variant::Dictionary(Dictionary {
            key: ContainerType::Builtin(4),
            value: ContainerType::ClassName("Node".into()),
            entries: vec![("a".into(), Variant::Object(9))],
        }),
        Variant::PackedByteArray(vec![1, 2, 3, 4, 5]),
        Variant::Transform3D(Transform3D::default()),
        Variant::Signal {
            name: "sig".into(),
            object: 3,
        },
    ]
}

#[test]
fn every_truncation_is_an_error() {
    for value in complex_values() {
        let bytes = g4(&value);
        for end in 0..bytes.len() {
            let cut = &bytes[..end];
            assert!(
                godot4::decode(cut, &limits()).is_err(),
                "{value:?} cut at {end}"
            );
            assert!(godot4::decode_compressed(cut, &limits()).is_err());
        }
        if let Ok(bytes) = value.to_godot3_bytes() {
            for end in 0..bytes.len() {
                assert!(godot3::decode(&bytes[..end], &limits()).is_err());
            }
        }
    }
    for value in [Variant::Int(1 << 40), Variant::Int(300)] {
        let bytes = compressed(&value);
        for end in 0..bytes.len() {
            assert!(godot4::decode_compressed(&bytes[..end], &limits()).is_err());
        }
    }
    let err = godot4::decode(&hex("02000000 0100"), &limits()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "truncated Variant: int at byte 4 needs 4 bytes, only 2 left"
    );
}

#[test]
fn unknown_type_ids_are_refused() {
    let err = godot4::decode(&hex("27000000"), &limits()).unwrap_err();
    assert_eq!(
        err,
        VariantError::UnknownType {
            offset: 0,
            id: 39,
            version: GodotVersion::Godot4
        }
    );
    assert_eq!(
        err.to_string(),
        "unknown Godot 4 Variant type id 39 at byte 0"
    );
    // Godot 3 stops at 26.
    assert!(godot3::decode(&hex("1b000000"), &limits()).is_err());
    assert!(godot3::decode(&hex("1a000000 00000000"), &limits()).is_ok());
    // Inside an array, the offset points at the element.
    let err = godot4::decode(&hex("1c000000 01000000 ff000000"), &limits()).unwrap_err();
    assert!(matches!(
        err,
        VariantError::UnknownType {
            offset: 8,
            id: 255,
            ..
        }
    ));
    // A typed container naming a type that does not exist.
    let err = godot4::decode(&hex("1c000100 27000000 00000000"), &limits()).unwrap_err();
    assert!(matches!(
        err,
        VariantError::UnknownType {
            offset: 4,
            id: 39,
            ..
        }
    ));
    // Compressed: type bits beyond VARIANT_MAX, and mode bits on a plain type.
    assert!(godot4::decode_compressed(&hex("3f"), &limits()).is_err());
    assert!(godot4::decode_compressed(&hex("43000000 0000c03f"), &limits()).is_err());
    // Encoding a typed container with an unknown builtin type.
    let bad = Variant::Array(Array::typed(ContainerType::Builtin(99), vec![]));
    assert_eq!(
        bad.to_godot4_bytes().unwrap_err(),
        VariantError::InvalidContainerType { id: 99 }
    );
}

#[test]
fn huge_counts_fail_fast_without_allocating() {
    let started = Instant::now();
    for bytes in [
        "1c000000 ffffff7f",                   // Array
        "1c000000 ffffffff",                   // Array, bit 31 ignored
        "1b000000 ffffff7f 00000000",          // Dictionary
        "1d000000 ffffffff",                   // PackedByteArray
        "1e000000 ffffff7f",                   // PackedInt32Array
        "1f000000 00000040 00000000 00000000", // PackedInt64Array
        "22000000 ffffffff",                   // PackedStringArray
        "23000100 ffffffff",                   // PackedVector2Array (f64)
        "26000000 ffffff3f",                   // PackedVector4Array
        "25000000 ffffffff",                   // PackedColorArray
        "16000000 ffffffff ffffffff 02000000", // NodePath
        "04000000 ffffffff",                   // String
    ] {
        let err = godot4::decode(&hex(bytes), &limits()).unwrap_err();
        assert!(
            matches!(
                err,
                VariantError::CountTooLarge { .. } | VariantError::Truncated { .. }
            ),
            "{bytes}: {err}"
        );
    }
    let err = godot4::decode(&hex("1c000000 ffffff7f"), &limits()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Array count 2147483647 at byte 4 cannot fit in the 0 bytes left"
    );
    // Nested arrays that each claim as many elements as the rest could hold.
    let mut bytes = Vec::new();
    for level in 0..1000u32 {
        let left = (1000 - level) * 8;
        bytes.extend_from_slice(&hex("1c000000"));
        bytes.extend_from_slice(&(left / 4 - 2).to_le_bytes());
    }
    assert!(godot4::decode(&bytes, &limits()).is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// `levels` arrays nested in each other, the innermost empty.
fn nested_array_bytes(levels: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for level in 0..levels {
        bytes.extend_from_slice(&hex("1c000000"));
        let count: u32 = if level + 1 == levels { 0 } else { 1 };
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    bytes
}

fn depth_of(value: &Variant) -> usize {
    let mut depth = 0;
    let mut at = value;
    while let Variant::Array(array) = at {
        depth += 1;
        match array.items.first() {
            Some(inner) => at = inner,
            None => break,
        }
    }
    depth
}

fn nested_array(levels: usize) -> Variant {
    let mut value = Variant::from(Vec::<Variant>::new());
    for _ in 1..levels {
        value = Variant::from(vec![value]);
    }
    value
}

#[test]
fn depth_limit_without_stack_overflow() {
    // A small stack proves that neither direction recurses per level.
    let worker = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let ok = nested_array_bytes(DEFAULT_MAX_DEPTH);
            let (value, used) = godot4::decode(&ok, &Limits::default()).unwrap();
            assert_eq!((depth_of(&value), used), (DEFAULT_MAX_DEPTH, ok.len()));
            assert_eq!(g4(&value), ok);

            let deep = nested_array_bytes(DEFAULT_MAX_DEPTH + 1);
            let err = godot4::decode(&deep, &Limits::default()).unwrap_err();
            assert_eq!(
                err,
                VariantError::TooDeep {
                    max_depth: DEFAULT_MAX_DEPTH,
                    offset: Some(DEFAULT_MAX_DEPTH * 8)
                }
            );
            assert!(godot3::decode(&deep, &Limits::default()).is_err());
            let too_deep = nested_array(DEFAULT_MAX_DEPTH + 1);
            assert_eq!(
                too_deep.to_godot4_bytes().unwrap_err(),
                VariantError::TooDeep {
                    max_depth: DEFAULT_MAX_DEPTH,
                    offset: None
                }
            );
            // Far deeper input than the limit is refused just as calmly.
            let huge = nested_array_bytes(200_000);
            assert!(godot4::decode(&huge, &Limits::default()).is_err());
            let unlimited = Limits {
                max_depth: usize::MAX,
            };
            let (value, _) = godot4::decode(&huge, &unlimited).unwrap();
            assert_eq!(depth_of(&value), 200_000);
            // Dropping that value would recurse once per level; leak it instead.
            std::mem::forget(value);
        })
        .unwrap();
    worker.join().unwrap();
}

#[test]
fn configured_depth_limit() {
    let eight = Limits { max_depth: 8 };
    assert!(godot4::decode(&nested_array_bytes(8), &eight).is_ok());
    assert!(matches!(
        godot4::decode(&nested_array_bytes(9), &eight),
        Err(VariantError::TooDeep { max_depth: 8, .. })
    ));
    // Dictionaries count too.
    let mut bytes = Vec::new();
    for _ in 0..8 {
        bytes.extend_from_slice(&hex("1b000000 01000000 00000000"));
    }
    bytes.extend_from_slice(&hex("1b000000 00000000"));
    assert!(godot4::decode(&bytes, &eight).is_err());
    assert!(godot4::decode(&bytes, &Limits { max_depth: 9 }).is_ok());
    // Max depth 0: no containers at all.
    assert!(godot4::decode(&hex("1c000000 00000000"), &Limits { max_depth: 0 }).is_err());
    assert!(godot4::decode(&hex("02000000 01000000"), &Limits { max_depth: 0 }).is_ok());
}

#[test]
fn full_objects_are_refused() {
    // OBJECT without the as-id flag: class name "Node", then properties.
    let bytes = hex("18000000 04000000 4e6f6465 00000000");
    let err = godot4::decode(&bytes, &limits()).unwrap_err();
    assert_eq!(err, VariantError::FullObjectRefused { offset: 0 });
    assert!(err.to_string().contains("full"), "{err}");
    assert!(godot3::decode(&hex("11000000 00000000"), &limits()).is_err());
    // Also inside a container.
    let nested = hex("1c000000 01000000 18000000 00000000");
    assert_eq!(
        godot4::decode(&nested, &limits()).unwrap_err(),
        VariantError::FullObjectRefused { offset: 8 }
    );
}

#[test]
fn trailing_bytes() {
    let err = Variant::from_godot4_bytes(&hex("00000000 00")).unwrap_err();
    assert_eq!(
        err,
        VariantError::TrailingBytes {
            consumed: 4,
            total: 5
        }
    );
    assert_eq!(
        err.to_string(),
        "trailing bytes: the Variant ends at byte 4 of 5"
    );
    assert!(Variant::from_godot3_bytes(&hex("00000000 00000000")).is_err());
    // `decode` itself reports the length and leaves the rest alone.
    assert_eq!(
        godot4::decode(&hex("01000000 01000000 ffff"), &limits()).unwrap(),
        (Variant::Bool(true), 8)
    );
}

#[test]
fn encoding_appends_and_restores_on_error() {
    let mut out = vec![7];
    godot4::encode(&Variant::Nil, &mut out).unwrap();
    assert_eq!(out, [7, 0, 0, 0, 0]);
    let bad = Variant::from((
        1,
        Variant::Array(Array::typed(ContainerType::Builtin(40), vec![])),
    ));
    assert!(godot4::encode(&bad, &mut out).is_err());
    assert_eq!(out, [7, 0, 0, 0, 0]);
}

/// xorshift64*: deterministic bytes for a no-panic sweep.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let small = Limits { max_depth: 16 };
    let check = |bytes: &[u8]| {
        let _ = godot4::decode(bytes, &small);
        let _ = godot3::decode(bytes, &small);
        let _ = godot4::decode_compressed(bytes, &small);
    };
    for _ in 0..20_000 {
        let len = (noise.next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        // Keep the type byte in range most of the time so the payload code runs.
        if let Some(first) = bytes.first_mut() {
            *first %= 40;
        }
        check(&bytes);
    }
    let mut seeds: Vec<Vec<u8>> = samples().iter().map(|(v, _)| g4(v)).collect();
    seeds.extend(complex_values().iter().map(g4));
    for seed in &seeds {
        for _ in 0..200 {
            let mut bytes = seed.clone();
            let at = (noise.next() as usize) % bytes.len();
            bytes[at] = noise.next() as u8;
            check(&bytes);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------

#[test]
fn conversions_into_variant() {
    assert_eq!(Variant::from(true), Variant::Bool(true));
    assert_eq!(Variant::from(-3i8), Variant::Int(-3));
    assert_eq!(Variant::from(u32::MAX), Variant::Int(i64::from(u32::MAX)));
    assert_eq!(Variant::try_from(5u64).unwrap(), Variant::Int(5));
    assert_eq!(
        Variant::try_from(u64::MAX).unwrap_err().to_string(),
        "value 18446744073709551615 does not fit in int"
    );
    assert_eq!(Variant::from(1.5f32), Variant::Float(1.5));
    assert_eq!(Variant::from("a"), Variant::String("a".into()));
    assert_eq!(Variant::from(&"b".to_owned()), Variant::String("b".into()));
    assert_eq!(Variant::from(v2(1.0, 2.0)), Variant::Vector2(v2(1.0, 2.0)));
    assert_eq!(Variant::from(NodePath::parse("a")), path("a"));
    assert_eq!(
        Variant::from(vec![1u8, 2]),
        Variant::PackedByteArray(vec![1, 2])
    );
    assert_eq!(
        Variant::from(vec![1i32]),
        Variant::PackedInt32Array(vec![1])
    );
    assert_eq!(
        Variant::from(vec![1i64]),
        Variant::PackedInt64Array(vec![1])
    );
    assert_eq!(
        Variant::from(vec![1f32]),
        Variant::PackedFloat32Array(vec![1.0])
    );
    assert_eq!(
        Variant::from(vec![1f64]),
        Variant::PackedFloat64Array(vec![1.0])
    );
    assert_eq!(
        Variant::from(vec!["x".to_owned()]),
        Variant::PackedStringArray(vec!["x".into()])
    );
    assert_eq!(
        Variant::from((1,)),
        Variant::Array(Array::new(vec![Variant::Int(1)]))
    );
    assert_eq!(
        Variant::from((1, "a", 2.5, None::<i32>)),
        Variant::from(vec![
            Variant::Int(1),
            "a".into(),
            Variant::Float(2.5),
            Variant::Nil
        ])
    );
    assert_eq!(Variant::from(Some(3)), Variant::Int(3));
    let tree: BTreeMap<&str, i32> = [("b", 2), ("a", 1)].into_iter().collect();
    assert_eq!(
        Variant::from(tree),
        dict(vec![("a".into(), 1.into()), ("b".into(), 2.into())])
    );
    let hash: HashMap<String, bool> = [("k".to_owned(), true)].into_iter().collect();
    assert_eq!(Variant::from(hash), dict(vec![("k".into(), true.into())]));
}

#[test]
fn conversions_out_of_variant() {
    assert!(bool::try_from(Variant::Bool(true)).unwrap());
    assert_eq!(i64::try_from(&Variant::Int(-5)).unwrap(), -5);
    assert_eq!(i32::try_from(Variant::Int(7)).unwrap(), 7);
    assert_eq!(
        i32::try_from(Variant::Int(1 << 40))
            .unwrap_err()
            .to_string(),
        "value 1099511627776 does not fit in i32"
    );
    assert_eq!(f64::try_from(Variant::Float(0.25)).unwrap(), 0.25);
    // GDScript passes an int to a float parameter; so does this conversion.
    assert_eq!(f64::try_from(Variant::Int(3)).unwrap(), 3.0);
    assert_eq!(String::try_from(Variant::from("s")).unwrap(), "s");
    assert_eq!(
        String::try_from(&Variant::StringName("n".into())).unwrap(),
        "n"
    );
    assert_eq!(
        Vec::<Variant>::try_from(Variant::from((1, 2))).unwrap(),
        vec![Variant::Int(1), Variant::Int(2)]
    );
    assert_eq!(Vec::<u8>::try_from(Variant::from(vec![4u8])).unwrap(), [4]);
    assert_eq!(Vec::<u8>::try_from(&Variant::from(vec![4u8])).unwrap(), [4]);

    let err = i64::try_from(Variant::Float(1.0)).unwrap_err();
    assert_eq!(
        err,
        VariantError::TypeMismatch {
            expected: "int",
            got: "float"
        }
    );
    assert_eq!(err.to_string(), "expected a Variant of type int, got float");
    assert_eq!(
        String::try_from(Variant::Nil).unwrap_err().to_string(),
        "expected a Variant of type String, got Nil"
    );
    assert!(Vec::<u8>::try_from(Variant::PackedInt32Array(vec![])).is_err());
    assert!(bool::try_from(&Variant::Int(1)).is_err());
    assert!(f64::try_from(Variant::from("1.0")).is_err());
}

#[test]
fn accessors() {
    assert_eq!(Variant::Int(2).as_int(), Some(2));
    assert_eq!(Variant::Float(2.0).as_int(), None);
    assert_eq!(Variant::Int(2).as_float(), Some(2.0));
    assert_eq!(Variant::from("x").as_str(), Some("x"));
    assert_eq!(Variant::StringName("y".into()).as_str(), Some("y"));
    assert_eq!(Variant::Bool(false).as_bool(), Some(false));
    assert_eq!(Variant::Nil.as_bool(), None);
    assert_eq!(Variant::from((1,)).as_array(), Some(&[Variant::Int(1)][..]));
    assert!(Variant::Nil.is_nil());
    let mut d = Dictionary::new();
    assert_eq!(d.insert("a", 1), None);
    assert_eq!(d.insert("b", 2), None);
    assert_eq!(d.insert("a", 3), Some(Variant::Int(1)));
    assert_eq!(d.len(), 2);
    assert_eq!(d.entries[0], ("a".into(), 3.into()));
    assert_eq!(d.get(&"b".into()), Some(&Variant::Int(2)));
    let v = Variant::from(d);
    assert_eq!(v.as_dictionary().map(Dictionary::len), Some(2));
}

// ---------------------------------------------------------------------------------------
// Display
// ---------------------------------------------------------------------------------------

#[test]
fn display_like_gdscript_str() {
    let cases: Vec<(Variant, &str)> = vec![
        (Variant::Nil, "<null>"),
        (Variant::Bool(true), "true"),
        (Variant::Int(7), "7"),
        (Variant::Int(-7), "-7"),
        (Variant::Float(1.5), "1.5"),
        (Variant::Float(1.0), "1.0"),
        (Variant::Float(0.1), "0.1"),
        (Variant::Float(-0.0), "-0.0"),
        (Variant::Float(1e20), "1e20"),
        (Variant::Float(1e-7), "1e-7"),
        (Variant::Float(0.00001), "0.00001"),
        (Variant::Float(f64::NAN), "nan"),
        (Variant::Float(f64::NEG_INFINITY), "-inf"),
        (Variant::from("hi"), "hi"),
        (Variant::StringName("hi".into()), "hi"),
        (Variant::Vector2(v2(1.0, 2.0)), "(1.0, 2.0)"),
        (Variant::Vector2(v2(0.1, -2.5)), "(0.1, -2.5)"),
        (Variant::Vector2i(Vector2i { x: 1, y: 2 }), "(1, 2)"),
        (Variant::Vector3(v3(1.0, 2.0, 3.0)), "(1.0, 2.0, 3.0)"),
        (
            Variant::Rect2(Rect2 {
                position: v2(0.0, 0.0),
                size: v2(1.0, 2.0),
            }),
            "[P: (0.0, 0.0), S: (1.0, 2.0)]",
        ),
        (
            Variant::Plane(Plane {
                normal: v3(0.0, 1.0, 0.0),
                d: 5.0,
            }),
            "[N: (0.0, 1.0, 0.0), D: 5]",
        ),
        (
            Variant::Quaternion(Quaternion {
                x: 0.0,
                y: 0.0,
                z: 0.0,
                w: 1.0,
            }),
            "(0, 0, 0, 1)",
        ),
        (
            Variant::Basis(Basis {
                rows: [v3(1.0, 2.0, 3.0), v3(4.0, 5.0, 6.0), v3(7.0, 8.0, 9.0)],
            }),
            "[X: (1.0, 4.0, 7.0), Y: (2.0, 5.0, 8.0), Z: (3.0, 6.0, 9.0)]",
        ),
        (
            Variant::Color(Color {
                r: 1.0,
                g: 0.5,
                b: 0.0,
                a: 1.0,
            }),
            "(1, 0.5, 0, 1)",
        ),
        (path("/root/Main"), "/root/Main"),
        (Variant::Rid(3), "RID(3)"),
        (Variant::Object(0), "<Object#null>"),
        (Variant::Object(1288), "<Object#1288>"),
        (Variant::Callable, "null::null"),
        (Variant::from((1, "a")), "[1, \"a\"]"),
        (dict(vec![("k".into(), true.into())]), "{ \"k\": true }"),
        (dict(vec![]), "{  }"),
        (Variant::from(Vec::<Variant>::new()), "[]"),
        (
            Variant::from((
                Variant::StringName("n".into()),
                path("a:b"),
                "say \"hi\"?\n",
                1.0,
            )),
            r#"[&"n", ^"a:b", "say \"hi\"\?\n", 1.0]"#,
        ),
        (Variant::PackedByteArray(vec![1, 2]), "[1, 2]"),
        (Variant::PackedFloat32Array(vec![0.1, 2.0]), "[0.1, 2.0]"),
        (Variant::PackedStringArray(vec!["a".into()]), "[\"a\"]"),
        (
            Variant::PackedVector2Array(vec![v2(1.0, 2.0)]),
            "[(1.0, 2.0)]",
        ),
    ];
    for (value, text) in cases {
        assert_eq!(value.to_string(), text, "{value:?}");
    }
}

#[test]
fn display_stops_at_godots_print_depth() {
    let text = nested_array(150).to_string();
    assert!(text.starts_with("[[[["), "{text}");
    assert!(text.contains("[...]"), "{text}");
}
