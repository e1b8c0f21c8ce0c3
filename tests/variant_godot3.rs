//! The Godot 3 Variant codec (`wspeer::variant::godot3`) against the real engine: Debian's
//! `godot3-server` (Godot 3.2.3, headless) runs `tests/multiplayer/g3_variants.gd`, which
//! holds the same named samples as [`samples`] below, one or more for every Godot 3 type id
//! 0–26.
//!
//! - Godot → Rust: the bot prints `var2bytes()` of every sample; each must decode to the
//!   table's value, and encode back to Godot's exact bytes.
//! - Rust → Godot: the table is encoded here, and the bot decodes every value with
//!   `bytes2var()` and compares it with its own sample (as `var2bytes()` bytes, so floats
//!   are compared exactly).
//!
//! Needs `godot3-server` (`apt-get install -y godot3-server`, or tests/interop/setup.sh);
//! without it the engine tests fail, saying so.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::TempDir;
use common::godot::{ENGINE, Godot};
use wspeer::variant::{
    Aabb, Array, Basis, Color, ContainerType, Dictionary, NodePath, Plane, Quaternion, Rect2,
    Transform2D, Transform3D, Variant, Vector2, Vector3,
};

/// One engine run: it takes well under a second; only a hung engine gets near this.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// The Object id encoded for the `object_*` samples in the Rust → Godot direction (above
/// 2³², so the whole u64 has to arrive); `CHECK_OBJECT_ID` in g3_variants.gd.
const CHECK_OBJECT_ID: u64 = 8_589_934_597;

/// What a sample's bytes are compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The value itself, both ways; re-encoding must give Godot's bytes.
    Value,
    /// A live Object: its instance id differs per run. Godot → Rust: the id the bot prints;
    /// Rust → Godot: [`CHECK_OBJECT_ID`].
    Object,
    /// A null Object. Godot 3.2.3's `var2bytes()` writes it as a bare NIL header, which
    /// decodes as Nil; `Object(0)` sent to Godot must decode as null.
    NullObject,
}

struct Sample {
    name: &'static str,
    kind: Kind,
    value: Variant,
}

fn int(v: i64) -> Variant {
    Variant::Int(v)
}

fn float(v: f64) -> Variant {
    Variant::Float(v)
}

fn string(v: &str) -> Variant {
    Variant::String(v.to_string())
}

fn vec2(x: f32, y: f32) -> Vector2 {
    Vector2 { x, y }
}

fn vec3(x: f32, y: f32, z: f32) -> Vector3 {
    Vector3 { x, y, z }
}

fn color(r: f32, g: f32, b: f32, a: f32) -> Color {
    Color { r, g, b, a }
}

fn node_path(path: &str) -> Variant {
    Variant::NodePath(NodePath::parse(path))
}

fn array(items: Vec<Variant>) -> Variant {
    Variant::Array(Array {
        element: ContainerType::Untyped,
        items,
    })
}

fn dictionary(entries: Vec<(Variant, Variant)>) -> Variant {
    Variant::Dictionary(Dictionary {
        key: ContainerType::Untyped,
        value: ContainerType::Untyped,
        entries,
    })
}

/// GDScript's `Basis(Vector3(1, 2, 3), Vector3(4, 5, 6), Vector3(7, 8, 9))` takes the
/// three axes, i.e. columns: its rows are (1, 4, 7), (2, 5, 8), (3, 6, 9).
fn basis_from_columns() -> Basis {
    Basis {
        rows: [
            vec3(1.0, 4.0, 7.0),
            vec3(2.0, 5.0, 8.0),
            vec3(3.0, 6.0, 9.0),
        ],
    }
}

/// The samples of g3_variants.gd, by name, as Rust values.
fn samples() -> Vec<Sample> {
    let value = |name, value| Sample {
        name,
        kind: Kind::Value,
        value,
    };
    vec![
        value("nil", Variant::Nil),
        value("bool_true", Variant::Bool(true)),
        value("bool_false", Variant::Bool(false)),
        value("int_zero", int(0)),
        value("int_one", int(1)),
        value("int_minus_one", int(-1)),
        value("int_i32_max", int(i32::MAX.into())),
        value("int_i32_min", int(i32::MIN.into())),
        value("int_2_pow_31", int(1 << 31)),
        value("int_below_i32_min", int(-(1 << 31) - 1)),
        value("int_2_pow_40", int(1 << 40)),
        value("int_i64_max", int(i64::MAX)),
        value("int_i64_min", int(i64::MIN)),
        value("real_1_5", float(1.5)),
        value("real_minus_2_25", float(-2.25)),
        value("real_0_1", float(0.1)),
        value("real_1e300", float(1e300)),
        value("real_minus_zero", float(-0.0)),
        value("real_inf", float(f64::INFINITY)),
        value("real_nan", float(f64::NAN)),
        value("string_hi", string("hi")),
        value("string_empty", string("")),
        value("string_hello_accent", string("héllo")),
        value("string_cjk_emoji", string("日本語 🎮")),
        value("string_len_4", string("abcd")),
        value("vector2", Variant::Vector2(vec2(1.0, 2.0))),
        value("vector2_fractions", Variant::Vector2(vec2(1.5, -0.1))),
        value(
            "rect2",
            Variant::Rect2(Rect2 {
                position: vec2(1.0, 2.0),
                size: vec2(3.0, 4.0),
            }),
        ),
        value("vector3", Variant::Vector3(vec3(1.5, -2.0, 1e10))),
        value(
            "transform2d",
            Variant::Transform2D(Transform2D {
                x: vec2(1.0, 2.0),
                y: vec2(3.0, 4.0),
                origin: vec2(5.0, 6.0),
            }),
        ),
        value(
            "plane",
            Variant::Plane(Plane {
                normal: vec3(1.0, 2.0, 3.0),
                d: 4.0,
            }),
        ),
        value(
            "quat",
            Variant::Quaternion(Quaternion {
                x: 0.1,
                y: 0.2,
                z: 0.3,
                w: 0.9,
            }),
        ),
        value(
            "aabb",
            Variant::Aabb(Aabb {
                position: vec3(1.0, 2.0, 3.0),
                size: vec3(4.0, 5.0, 6.0),
            }),
        ),
        value("basis", Variant::Basis(basis_from_columns())),
        value(
            "transform",
            Variant::Transform3D(Transform3D {
                basis: basis_from_columns(),
                origin: vec3(10.0, 11.0, 12.0),
            }),
        ),
        value("color", Variant::Color(color(1.0, 0.0, 0.0, 1.0))),
        value("color_fractions", Variant::Color(color(0.1, 0.2, 0.3, 0.5))),
        value("node_path_absolute", node_path("/root/Main")),
        value("node_path_subnames", node_path("Main/Player:position:x")),
        value("node_path_subnames_only", node_path(":position:x")),
        value("node_path_unicode", node_path("/root/Pläyer")),
        value("node_path_empty", node_path("")),
        value("rid", Variant::Rid(0)),
        Sample {
            name: "object_node",
            kind: Kind::Object,
            value: Variant::Object(CHECK_OBJECT_ID),
        },
        Sample {
            name: "object_reference",
            kind: Kind::Object,
            value: Variant::Object(CHECK_OBJECT_ID),
        },
        Sample {
            name: "object_null",
            kind: Kind::NullObject,
            value: Variant::Object(0),
        },
        value("dictionary_empty", dictionary(vec![])),
        value(
            "dictionary_one",
            dictionary(vec![(string("k"), Variant::Bool(true))]),
        ),
        value(
            "dictionary_mixed",
            dictionary(vec![
                (int(1), array(vec![int(2), string("x")])),
                (string("d"), dictionary(vec![(string("e"), Variant::Nil)])),
                (Variant::Vector2(vec2(1.0, 2.0)), float(1.5)),
                (int(1 << 31), string("big")),
            ]),
        ),
        value("array_empty", array(vec![])),
        value("array_int_string", array(vec![int(1), string("a")])),
        value(
            "array_nested",
            array(vec![
                array(vec![int(1), array(vec![int(2), array(vec![])])]),
                dictionary(vec![(string("a"), int(1))]),
                Variant::PackedByteArray(vec![1, 2, 3]),
                Variant::Nil,
                float(0.1),
                string("é"),
            ]),
        ),
        value("pool_byte_array", Variant::PackedByteArray(vec![1, 2, 3])),
        value("pool_byte_array_empty", Variant::PackedByteArray(vec![])),
        value(
            "pool_byte_array_4",
            Variant::PackedByteArray(vec![0, 127, 128, 255]),
        ),
        value(
            "pool_int_array",
            Variant::PackedInt32Array(vec![1, -1, i32::MAX, i32::MIN]),
        ),
        value("pool_int_array_empty", Variant::PackedInt32Array(vec![])),
        value(
            "pool_real_array",
            Variant::PackedFloat32Array(vec![1.5, 0.1, -2.0]),
        ),
        value(
            "pool_string_array",
            Variant::PackedStringArray(["ab", "", "héllo", "abc"].map(str::to_string).to_vec()),
        ),
        value(
            "pool_string_array_empty",
            Variant::PackedStringArray(vec![]),
        ),
        value(
            "pool_vector2_array",
            Variant::PackedVector2Array(vec![vec2(1.0, 2.0), vec2(-0.5, 0.1)]),
        ),
        value(
            "pool_vector3_array",
            Variant::PackedVector3Array(vec![vec3(1.0, 2.0, 3.0), vec3(-4.0, 0.5, 6.0)]),
        ),
        value(
            "pool_color_array",
            Variant::PackedColorArray(vec![color(1.0, 0.0, 0.0, 1.0), color(0.1, 0.2, 0.3, 0.4)]),
        ),
    ]
}

/// What one engine run printed.
struct Run {
    stdout: Vec<String>,
    stderr: String,
    code: Option<i32>,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit code {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

/// Runs `godot3-server --path tests/multiplayer -s g3_variants.gd <args>` to completion
/// (see [`Godot::start`]); kills it after [`RUN_LIMIT`].
fn run_bot(args: &[&str]) -> Run {
    let mut bot_args = args.to_vec();
    bot_args.extend(["--limit", "20"]);
    let mut bot = Godot::start("g3_variants.gd", "g3_variants.gd", &bot_args);
    let status = bot.finish(RUN_LIMIT);
    let run = Run {
        stdout: std::mem::take(&mut bot.seen),
        stderr: bot.stderr_text(),
        code: status.and_then(|s| s.code()),
    };
    assert!(
        status.is_some(),
        "{ENGINE} {args:?} did not finish within {RUN_LIMIT:?}; {}",
        run.describe()
    );
    run
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex length: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Equal as values, with NaN equal to NaN (`Debug` prints floats so that they parse back
/// to the same bits, and -0.0 apart from 0.0).
fn same(a: &Variant, b: &Variant) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

/// `bytes` (a top-level NODE_PATH) with the pad bytes after each name set to zero: Godot
/// 3.2.3's `encode_variant` skips them without writing (`buf += pad + utf8.length()`), so
/// they hold whatever the buffer held.
fn zero_node_path_pads(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    if bytes.len() < 16 || bytes[0] != 15 {
        return out;
    }
    let count = (word(4) & 0x7fff_ffff) + word(8);
    let mut at = 16;
    for _ in 0..count {
        if at + 4 > bytes.len() {
            break;
        }
        let len = word(at);
        let pad = (4 - len % 4) % 4;
        let start = at + 4 + len;
        for byte in out.iter_mut().skip(start).take(pad) {
            *byte = 0;
        }
        at = start + pad;
    }
    out
}

/// Fails unless the first bytes (type ids) of `encodings` include every Godot 3 type id.
fn assert_covers_every_type<'a>(encodings: impl IntoIterator<Item = &'a [u8]>, what: &str) {
    let ids: BTreeSet<u8> = encodings
        .into_iter()
        .filter_map(|b| b.first().copied())
        .collect();
    let missing: Vec<u8> = (0..=26).filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{what} miss Godot 3 type ids {missing:?} (have {ids:?})"
    );
}

#[test]
fn the_samples_cover_every_godot3_type_id() {
    let samples = samples();
    let encodings: Vec<Vec<u8>> = samples
        .iter()
        .map(|s| {
            s.value
                .to_godot3_bytes()
                .unwrap_or_else(|e| panic!("encoding {}: {e}", s.name))
        })
        .collect();
    assert_covers_every_type(encodings.iter().map(Vec::as_slice), "the samples");
    let mut names = BTreeSet::new();
    for sample in &samples {
        assert!(names.insert(sample.name), "{} twice", sample.name);
    }
}

#[test]
fn godot3_var2bytes_decodes_to_the_same_values_in_rust() {
    let run = run_bot(&["--dump"]);
    assert!(
        run.code == Some(0) && run.stdout.iter().any(|l| l == "DONE"),
        "the --dump run failed; {}",
        run.describe()
    );
    // name → (bytes, instance id for live objects)
    let mut dumped = std::collections::BTreeMap::new();
    for line in run.stdout.iter().filter(|l| l.starts_with("VAR ")) {
        let words: Vec<&str> = line.split(' ').collect();
        assert!(
            words.len() == 3 || words.len() == 4,
            "bad line {line:?}; {}",
            run.describe()
        );
        let id = words
            .get(3)
            .map(|id| id.parse::<u64>().expect("instance id"));
        dumped.insert(words[1].to_string(), (unhex(words[2]), id));
    }
    assert_covers_every_type(
        dumped.values().map(|(bytes, _)| bytes.as_slice()),
        "Godot's var2bytes() dumps",
    );

    let samples = samples();
    let mut failures = Vec::new();
    for name in dumped.keys() {
        if !samples.iter().any(|s| s.name == name) {
            failures.push(format!("{name}: dumped by Godot but not in the Rust table"));
        }
    }
    for sample in &samples {
        let name = sample.name;
        let Some((godot, id)) = dumped.get(name) else {
            failures.push(format!("{name}: not dumped by Godot"));
            continue;
        };
        let expected = match sample.kind {
            Kind::Value => sample.value.clone(),
            Kind::Object => {
                // Header 0x11 with ENCODE_FLAG_OBJECT_AS_ID (1 << 16), then the u64 id.
                if godot.len() != 12 || godot[..4] != [0x11, 0x00, 0x01, 0x00] {
                    failures.push(format!(
                        "{name}: Godot wrote {} (expected 11000100 + u64 id)",
                        hex(godot)
                    ));
                }
                match id {
                    Some(id) => Variant::Object(*id),
                    None => {
                        failures.push(format!("{name}: Godot printed no instance id"));
                        continue;
                    }
                }
            }
            Kind::NullObject => {
                if godot[..] != [0, 0, 0, 0] {
                    failures.push(format!(
                        "{name}: Godot 3.2.3 wrote a null Object as {} (expected a bare NIL \
                         header 00000000)",
                        hex(godot)
                    ));
                }
                Variant::Nil
            }
        };
        let decoded = match Variant::from_godot3_bytes(godot) {
            Ok(decoded) => decoded,
            Err(e) => {
                failures.push(format!("{name}: cannot decode Godot's {}: {e}", hex(godot)));
                continue;
            }
        };
        if !same(&decoded, &expected) {
            failures.push(format!(
                "{name}: Godot's {} decodes to {decoded:?}, expected {expected:?}",
                hex(godot)
            ));
            continue;
        }
        match decoded.to_godot3_bytes() {
            Ok(again) => {
                let (ours, theirs) = (zero_node_path_pads(&again), zero_node_path_pads(godot));
                if ours != theirs {
                    failures.push(format!(
                        "{name}: {decoded:?} re-encodes to {}, Godot wrote {}",
                        hex(&again),
                        hex(godot)
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: cannot re-encode {decoded:?}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} samples disagree with Godot 3.2.3:\n{}\n\n{}",
        failures.len(),
        samples.len(),
        failures.join("\n"),
        run.describe()
    );
}

#[test]
fn rust_encodings_decode_to_the_same_values_in_godot3() {
    let samples = samples();
    let mut file = String::new();
    for sample in &samples {
        let bytes = sample
            .value
            .to_godot3_bytes()
            .unwrap_or_else(|e| panic!("encoding {} ({:?}): {e}", sample.name, sample.value));
        file.push_str(&format!("{} {}\n", sample.name, hex(&bytes)));
    }
    let dir = TempDir::new("g3-variants");
    let path = dir.write("rust_values.txt", &file);
    let run = run_bot(&["--check", &path]);

    let mut failures: Vec<String> = run
        .stdout
        .iter()
        .filter(|l| l.starts_with("MISMATCH "))
        .cloned()
        .collect();
    for sample in &samples {
        let ok = format!("OK {}", sample.name);
        if !run.stdout.contains(&ok) {
            let sent = file
                .lines()
                .find(|l| l.split(' ').next() == Some(sample.name))
                .unwrap_or_default();
            failures.push(format!("no {ok:?} (sent: {sent})"));
        }
    }
    if !run.stdout.iter().any(|l| l == "DONE") || run.code != Some(0) {
        failures.push("the --check run did not finish cleanly".to_string());
    }
    assert!(
        failures.is_empty(),
        "Godot 3.2.3 disagrees with the Rust encodings:\n{}\n\nsent:\n{file}\n{}",
        failures.join("\n"),
        run.describe()
    );
}
