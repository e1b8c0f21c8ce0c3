//! Raw benchmark records: one flat JSON object per line (JSON Lines), strings, numbers,
//! booleans and null only. The runner writes every measured number of a run this way, and
//! the report can be regenerated from such a file alone.

use std::fmt::Write as _;

/// One value of a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null` (also how a non-finite number is written).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number; written in Rust's shortest form that reads back to the same `f64`.
    Num(f64),
    /// A string.
    Str(String),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        if v.is_finite() {
            Value::Num(v)
        } else {
            Value::Null
        }
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Num(v as f64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// A flat JSON object whose keys keep their order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record(pub Vec<(String, Value)>);

impl Record {
    /// A record with `"record": kind` as its first field.
    pub fn new(kind: &str) -> Record {
        Record(vec![("record".into(), Value::from(kind))])
    }

    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The number under `key`.
    pub fn num(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Value::Num(v) => Some(*v),
            _ => None,
        }
    }

    /// The string under `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean under `key`.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The `"record"` kind.
    pub fn kind(&self) -> &str {
        self.str("record").unwrap_or("")
    }

    /// One line of JSON (no newline).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, k);
            out.push(':');
            match v {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Num(n) if n.is_finite() => {
                    let _ = write!(out, "{n}");
                }
                Value::Num(_) => out.push_str("null"),
                Value::Str(s) => write_str(&mut out, s),
            }
        }
        out.push('}');
        out
    }

    /// Parses one line written by [`to_json`](Self::to_json) (any flat JSON object).
    pub fn parse(line: &str) -> Result<Record, String> {
        let mut p = Parser {
            s: line.as_bytes(),
            i: 0,
        };
        let record = p.object()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing text at byte {}", p.i));
        }
        Ok(record)
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", b as char, self.i))
        }
    }

    fn object(&mut self) -> Result<Record, String> {
        self.expect(b'{')?;
        let mut record = Record::default();
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(record);
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            record.0.push((key, value));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(record);
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
            }
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        let rest = &self.s[self.i..];
        for (word, value) in [
            (&b"null"[..], Value::Null),
            (b"true", Value::Bool(true)),
            (b"false", Value::Bool(false)),
        ] {
            if rest.starts_with(word) {
                self.i += word.len();
                return Ok(value);
            }
        }
        match rest.first() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let len = rest
                    .iter()
                    .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(rest.len());
                let text = std::str::from_utf8(&rest[..len]).map_err(|e| e.to_string())?;
                let n = text
                    .parse::<f64>()
                    .map_err(|_| format!("bad number {text:?}"))?;
                self.i += len;
                Ok(Value::Num(n))
            }
            _ => Err(format!(
                "unsupported value at byte {} (records are flat)",
                self.i
            )),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated escape".into());
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err("lone surrogate".into());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or("bad \\u escape")?
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let text = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or("short \\u escape")?;
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|_| format!("bad \\u escape {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_value_exactly() {
        let mut r = Record::new("run");
        r.set("scenario", "c100x20");
        r.set("round", 3usize);
        r.set("rate", 103_456.789_012_345_6f64);
        r.set("tiny", 1.0e-300f64);
        r.set("neg", -0.25f64);
        r.set("ok", true);
        r.set("error", Option::<String>::None);
        r.set(
            "text",
            "quote \" backslash \\ tab\t newline\n ctrl\u{1} ünï 🦀",
        );
        let line = r.to_json();
        assert!(!line.contains('\n'));
        let back = Record::parse(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.num("rate"), Some(103_456.789_012_345_6));
        assert_eq!(back.kind(), "run");
    }

    #[test]
    fn non_finite_numbers_become_null() {
        let mut r = Record::new("x");
        r.set("nan", f64::NAN);
        let back = Record::parse(&r.to_json()).unwrap();
        assert_eq!(back.get("nan"), Some(&Value::Null));
        assert_eq!(back.num("nan"), None);
    }

    #[test]
    fn foreign_json_and_errors() {
        let r = Record::parse(r#" { "a" : 1e3 , "b":"\u00e9\ud83e\udd80" } "#).unwrap();
        assert_eq!(r.num("a"), Some(1000.0));
        assert_eq!(r.str("b"), Some("é🦀"));
        assert!(Record::parse(r#"{"a":[1]}"#).is_err());
        assert!(Record::parse(r#"{"a":1} x"#).is_err());
        assert!(Record::parse(r#"{"a":"#).is_err());
    }
}
