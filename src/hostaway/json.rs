//! A webhook body read once, borrowing from the bytes received: strings
//! without escapes and object keys point into the body, numbers are
//! `serde_json::Number`s, and an object is a list of its entries. Reading a
//! delivery this way costs a few allocations instead of one per key and
//! string (a `serde_json::Value` of a 1.9 KB reservation is some 150), and
//! the canonical text written from it is byte for byte the one written from
//! the equal `Value` (`decode::canonical_json`): the same number and string
//! formatting, keys sorted, and of repeated keys the last one kept.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value borrowed from its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Entries in the order written; a repeated key's last entry counts.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `text` (the same grammar and nesting limit as `serde_json`).
    pub fn parse(text: &'a [u8]) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// The value at `key` of an object (its last entry), null counting as
    /// absent.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.entry(key).filter(|v| !matches!(v, Json::Null))
    }

    /// The value at `key` of an object (its last entry), null included.
    pub fn entry(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The equal `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(entries) => {
                let mut map = Map::new();
                for (key, item) in entries {
                    map.insert(key.to_string(), item.to_value());
                }
                Value::Object(map)
            }
        }
    }

    /// An object of only the entries named in `keys` (null ones left out),
    /// as a `Value`.
    pub fn pick(&self, keys: &[&str]) -> Value {
        let mut map = Map::new();
        for key in keys {
            if let Some(item) = self.get(key) {
                map.insert((*key).to_string(), item.to_value());
            }
        }
        Value::Object(map)
    }

    /// The canonical text (`decode::canonical_json` of the equal `Value`).
    pub fn canonical(&self) -> String {
        let mut text = Vec::with_capacity(256);
        self.write_canonical(&mut text)
            .expect("writing to a Vec cannot fail");
        // serde_json's own output and ASCII punctuation only.
        String::from_utf8(text).expect("JSON text is UTF-8")
    }

    pub fn write_canonical<W: Write>(&self, out: &mut W) -> io::Result<()> {
        match self {
            Json::Null => out.write_all(b"null"),
            Json::Bool(true) => out.write_all(b"true"),
            Json::Bool(false) => out.write_all(b"false"),
            Json::Number(n) => Ok(serde_json::to_writer(out, n)?),
            Json::String(s) => Ok(serde_json::to_writer(out, s.as_ref())?),
            Json::Array(items) => {
                out.write_all(b"[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    item.write_canonical(out)?;
                }
                out.write_all(b"]")
            }
            Json::Object(entries) => {
                // Sorted by key, stably, so that of a repeated key the last
                // entry ends its run: that one is written.
                let mut order: Vec<usize> = (0..entries.len()).collect();
                order.sort_by(|a, b| entries[*a].0.cmp(&entries[*b].0));
                out.write_all(b"{")?;
                let mut first = true;
                for (at, index) in order.iter().enumerate() {
                    let (key, item) = &entries[*index];
                    if order
                        .get(at + 1)
                        .is_some_and(|next| entries[*next].0 == *key)
                    {
                        continue;
                    }
                    if !first {
                        out.write_all(b",")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut *out, key.as_ref())?;
                    out.write_all(b":")?;
                    item.write_canonical(out)?;
                }
                out.write_all(b"}")
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        // As `serde_json::Value` does: a float that is not finite is null.
        Ok(Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed when it has no escapes (`Cow`'s own
/// `Deserialize` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostaway::decode::canonical_json;

    /// Texts whose canonical form must equal the `Value` route's.
    const SAMPLES: &[&str] = &[
        r#"{"b":1,"a":[1,2.5,-3,1e2,1.0,18446744073709551615,184467440737095516150,-0.0],"c":{"z":null,"y":"x\"y\\u00e9\u00e9\n"}}"#,
        r#"{"dup":1,"other":true,"dup":2}"#,
        r#"{"é":1,"e":2,"E":3,"":4,"\u0041":5}"#,
        r#"[{"k":{}},[],"",null,false]"#,
        r#"  {"nested": {"deep": [[[{"b": 2, "a": 1}]]]}}  "#,
        "12345678901234567890123",
        r#""\ud83d\ude00 and \/ slash""#,
    ];

    #[test]
    fn canonical_text_equals_the_value_route() {
        for text in SAMPLES {
            let json = Json::parse(text.as_bytes()).expect(text);
            let value: Value = serde_json::from_str(text).expect(text);
            assert_eq!(json.canonical(), canonical_json(&value), "{text}");
            assert_eq!(json.to_value(), value, "{text}");
        }
    }

    #[test]
    fn the_fixtures_canonicalize_alike() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostaway");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).expect("read");
                let value: Value = serde_json::from_slice(&text).expect("JSON");
                let json = Json::parse(&text).expect("JSON");
                assert_eq!(json.canonical(), canonical_json(&value), "{path:?}");
                seen += 1;
            }
        }
        assert!(seen > 5, "the fixtures were read");
    }

    #[test]
    fn strings_and_keys_borrow_from_the_text() {
        let text = br#"{"plain":"text","esc\u0061ped":"a\nb"}"#;
        let Json::Object(entries) = Json::parse(text).unwrap() else {
            panic!("an object")
        };
        assert!(matches!(entries[0].0, Cow::Borrowed("plain")));
        assert!(matches!(entries[0].1, Json::String(Cow::Borrowed("text"))));
        assert_eq!(entries[1].0, "escaped");
        assert_eq!(entries[1].1.as_str(), Some("a\nb"));
    }

    #[test]
    fn lookups_take_the_last_entry_and_skip_null() {
        let json = Json::parse(br#"{"a":1,"a":2,"n":null}"#).unwrap();
        assert_eq!(json.get("a"), Some(&Json::Number(2.into())));
        assert_eq!(json.get("n"), None);
        assert_eq!(json.pick(&["a", "n", "x"]), serde_json::json!({"a": 2}));
    }

    #[test]
    fn bad_text_is_refused_as_serde_json_refuses_it() {
        for text in ["{", "[1,]", "{\"a\" 1}", "1 2", "\"\\x\"", &"[".repeat(200)] {
            assert!(Json::parse(text.as_bytes()).is_err(), "{text}");
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
        }
    }
}
