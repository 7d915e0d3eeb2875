//! Tolerant reading of Hostaway JSON: ids as numbers or strings, booleans as
//! 0/1 or true/false, and `"YYYY-MM-DD HH:MM:SS"` date-times in UTC. Used on
//! raw `serde_json::Value`s (the raw JSON is what gets stored) and, through
//! the `de` module, in typed structs.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

/// The value at `key`, treating JSON null as absent.
pub fn field<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// A positive-or-zero integer id from a JSON number or a numeric string.
pub fn id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

pub fn id_field(object: &Value, key: &str) -> Option<i64> {
    field(object, key).and_then(id)
}

/// 0/1, true/false, "0"/"1", "true"/"false".
pub fn boolish(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.trim() {
            "1" | "true" | "TRUE" | "True" => Some(true),
            "0" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Hostaway's naive `"YYYY-MM-DD HH:MM:SS"` read as UTC; RFC 3339 and plain
/// dates (midnight UTC) are accepted too.
pub fn datetime(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?.trim();
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(naive.and_utc());
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f") {
        return Some(naive.and_utc());
    }
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
}

pub fn datetime_field(object: &Value, key: &str) -> Option<DateTime<Utc>> {
    field(object, key).and_then(datetime)
}

pub fn date(value: &Value) -> Option<NaiveDate> {
    let text = value.as_str()?.trim();
    NaiveDate::parse_from_str(text.get(..10).unwrap_or(text), "%Y-%m-%d").ok()
}

pub fn date_field(object: &Value, key: &str) -> Option<NaiveDate> {
    field(object, key).and_then(date)
}

pub fn string_field(object: &Value, key: &str) -> Option<String> {
    match field(object, key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Formats a time the way Hostaway writes it.
pub fn format_datetime(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Whether JSON text may hold a NUL character (only the escape `\u0000`
/// can put one in a JSON string): a cheap test before `replace_nul`.
pub fn may_hold_nul(json: &[u8]) -> bool {
    json.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

/// Replaces every NUL character in strings and object keys with U+FFFD.
/// PostgreSQL's JSONB cannot store NUL; SQLite could, but both backends get
/// the same normalised value so the two mirrors stay equal. Returns how many
/// were replaced.
pub fn replace_nul(value: &mut Value) -> usize {
    const NUL: char = '\u{0}';
    match value {
        Value::String(text) if text.contains(NUL) => {
            let count = text.matches(NUL).count();
            *text = text.replace(NUL, "\u{FFFD}");
            count
        }
        Value::Array(items) => items.iter_mut().map(replace_nul).sum(),
        Value::Object(map) => {
            let mut count: usize = map.values_mut().map(replace_nul).sum();
            if map.keys().any(|k| k.contains(NUL)) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (key, item) in entries {
                    count += key.matches(NUL).count();
                    map.insert(key.replace(NUL, "\u{FFFD}"), item);
                }
            }
            count
        }
        _ => 0,
    }
}

/// serde helpers for typed structs.
pub mod de {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let value = Value::deserialize(d)?;
        super::id(&value)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an id, got {value}")))
    }

    pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let value = Value::deserialize(d)?;
        if value.is_null() {
            return Ok(None);
        }
        super::id(&value)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected an id, got {value}")))
    }

    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let value = Value::deserialize(d)?;
        Ok(super::boolish(&value))
    }
}

/// Serializes JSON with object keys sorted at every level, so equal objects
/// always produce equal text (dedupe keys, SQLite comparisons).
pub fn canonical_json(value: &Value) -> String {
    let mut text = Vec::with_capacity(256);
    write_canonical(value, &mut text).expect("writing to a Vec cannot fail");
    // Only serde_json's own output and ASCII punctuation were written.
    String::from_utf8(text).expect("JSON text is UTF-8")
}

/// `canonical_json` written to `out` as it is produced: no copy of the
/// value, no intermediate string (a dedupe key hashes it on the fly).
pub fn write_canonical<W: std::io::Write>(value: &Value, out: &mut W) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Already in order unless serde_json keeps insertion order.
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.write_all(b"{")?;
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, key)?;
                out.write_all(b":")?;
                write_canonical(item, out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(out, scalar)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_from_numbers_and_strings() {
        assert_eq!(id(&json!(51234567)), Some(51234567));
        assert_eq!(id(&json!("51234567")), Some(51234567));
        assert_eq!(id(&json!(12.0)), Some(12));
        assert_eq!(id(&json!("abc")), None);
        assert_eq!(id(&json!(null)), None);
        assert_eq!(id(&json!(1.5)), None);
    }

    #[test]
    fn booleans() {
        assert_eq!(boolish(&json!(1)), Some(true));
        assert_eq!(boolish(&json!(0)), Some(false));
        assert_eq!(boolish(&json!(true)), Some(true));
        assert_eq!(boolish(&json!("1")), Some(true));
        assert_eq!(boolish(&json!(null)), None);
    }

    #[test]
    fn datetimes_are_utc() {
        let t = datetime(&json!("2025-06-14 09:45:30")).unwrap();
        assert_eq!(t.to_rfc3339(), "2025-06-14T09:45:30+00:00");
        assert_eq!(format_datetime(t), "2025-06-14 09:45:30");
        let raw = br#"{"a\u0000":["x\u0000y", {"b": "\u0000"}], "c": 1}"#;
        assert!(may_hold_nul(raw));
        assert!(!may_hold_nul(br#"{"a": "fine"}"#));
        let mut value: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(replace_nul(&mut value), 3);
        assert_eq!(
            value,
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"b": "\u{FFFD}"}], "c": 1})
        );
        assert!(datetime(&json!("2025-06-14T09:45:30Z")).is_some());
        assert!(datetime(&json!("2025-06-14")).is_some());
        assert!(datetime(&json!("yesterday")).is_none());
        assert_eq!(
            date(&json!("2025-07-03")),
            NaiveDate::from_ymd_opt(2025, 7, 3)
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":[{"y":1,"x":2}]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"c":[{"x":2,"y":1}],"d":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":[{"x":2,"y":1}],"d":2},"b":1}"#
        );
        // Escapes, non-ASCII, numbers and nulls come out as serde_json
        // writes them (stored dedupe keys stay valid across versions).
        let c: Value = serde_json::from_str(
            r#"{"z":"line\nbreak \"q\" \u00e9 \u2028","n":-1.5e3,"big":18446744073709551615,"e":[],"o":{},"t":true,"u":null}"#,
        )
        .unwrap();
        assert_eq!(canonical_json(&c), c.to_string());
    }
}
