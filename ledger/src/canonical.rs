//! RFC 8785 (JSON Canonicalization Scheme) and the hashes built on it.
//!
//! The server stores decimals exactly as written (`serde_json`'s `arbitrary_precision`), but
//! RFC 8785 hashes numbers as IEEE doubles printed the ECMAScript way, so `185.50`, `185.5`
//! and `1.855e2` are one number here. That is deliberate: a verifier in any language that
//! parses JSON into doubles reproduces the hash, and FHIR itself treats them as equal values.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::{Error, Hash};

/// The RFC 8785 canonical form of `value`.
///
/// Object members are sorted by the UTF-16 code units of their names; strings escape only
/// `"`, `\` and U+0000..U+001F (with the short forms `\b \t \n \f \r`, otherwise `\u00xx`);
/// numbers are formatted as ECMAScript's `Number.prototype.toString` formats the nearest
/// IEEE double. Fails only on a number that is not a finite double (e.g. `1e400`).
pub fn canonical_json(value: &Value) -> Result<String, Error> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

/// SHA-256 of the UTF-8 bytes of [`canonical_json`]: the content hash of a resource version.
pub fn content_hash(value: &Value) -> Result<Hash, Error> {
    Ok(content_hash_of_canonical(&canonical_json(value)?))
}

/// [`content_hash`] of a value whose [`canonical_json`] is `canonical`, for a writer that
/// produces the canonical form itself.
pub fn content_hash_of_canonical(canonical: &str) -> Hash {
    Sha256::digest(canonical.as_bytes()).into()
}

/// The value that stands for a deleted version: `resourceType`, `id`, `versionId` (the
/// version as a decimal string, as in `meta.versionId`) and `"tombstone": "fhir-notary/1"`.
/// No valid FHIR resource has a `tombstone` element, so it cannot collide with a served one.
pub fn tombstone(resource_type: &str, id: &str, version: i64) -> Value {
    let mut map = Map::new();
    map.insert("resourceType".into(), Value::String(resource_type.into()));
    map.insert("id".into(), Value::String(id.into()));
    map.insert("versionId".into(), Value::String(version.to_string()));
    map.insert("tombstone".into(), Value::String("fhir-notary/1".into()));
    Value::Object(map)
}

/// Content hash of a delete: [`content_hash`] of [`tombstone`].
pub fn tombstone_hash(resource_type: &str, id: &str, version: i64) -> Hash {
    // Only strings inside: canonicalization cannot meet a number, so it cannot fail.
    content_hash(&tombstone(resource_type, id, version)).expect("a tombstone has no numbers")
}

fn write_value(value: &Value, out: &mut String) -> Result<(), Error> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // UTF-16 order differs from UTF-8/code point order above U+FFFF (surrogates
            // D800–DFFF sort before U+E000–U+FFFF), and RFC 8785 follows ECMAScript.
            members.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push('{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(name, out);
                out.push(':');
                write_value(item, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_number(number: &Number, out: &mut String) -> Result<(), Error> {
    // Under `arbitrary_precision` the Display form is the literal as written; without it,
    // it is the shortest round-trip form. Either way parsing gives the nearest double
    // (Rust's float parsing is correctly rounded), which is what RFC 8785 hashes.
    let literal = number.to_string();
    let double: f64 = literal.parse().map_err(|_| Error::NonFiniteNumber {
        literal: literal.clone(),
    })?;
    if !double.is_finite() {
        return Err(Error::NonFiniteNumber { literal });
    }
    if double == 0.0 {
        // ECMAScript prints -0 as "0".
        out.push('0');
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(double));
    }
    Ok(())
}

/// Orders names by their UTF-16 code units. Below U+E000 UTF-8 byte order is the same
/// order, and names (FHIR's are ASCII) almost never reach it: only then are code units
/// compared.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    // Lead bytes of U+E000 and above: 0xEE, 0xEF (three bytes) and 0xF0.. (four).
    let high = |s: &str| s.bytes().any(|b| b >= 0xEE);
    if high(a) || high(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Runs of characters that need no escape are copied whole.
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.push_str(&s[run..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            _ => out.push_str(&format!("\\u{b:04x}")),
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        canonical_json(&serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn name_order_is_utf16_order() {
        let names = [
            "",
            "a",
            "ab",
            "b",
            "Z",
            "\u{7f}",
            "é",
            "\u{20ac}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{fb33}",
            "\u{ffff}",
            "\u{10000}",
            "\u{1f600}",
            "a\u{1f600}",
            "a\u{ffff}",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    utf16_order(a, b),
                    a.encode_utf16().cmp(b.encode_utf16()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn escapes_split_runs_of_plain_text() {
        let mut out = String::new();
        write_string("a\"b\\c\u{8}\t\n\u{c}\r\u{1}\u{1f}/é\u{1f600}", &mut out);
        assert_eq!(out, r#""a\"b\\c\b\t\n\f\r\u0001\u001f/é😀""#);
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting_example() {
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let keys: Vec<String> = {
            let v: Value = serde_json::from_str(&canon(input)).unwrap();
            v.as_object().unwrap().keys().cloned().collect()
        };
        let expected = [
            "\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ];
        assert_eq!(keys, expected);
    }

    #[test]
    fn numbers_follow_ecmascript() {
        let cases = [
            ("185.50", "185.5"),
            ("1e21", "1e+21"),
            ("1E21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("123e18", "123000000000000000000"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("0.1000000000000000055511151231257827", "0.1"),
            ("9007199254740993", "9007199254740992"),
            ("12345678901234567890", "12345678901234567000"),
            ("-1.5e-300", "-1.5e-300"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("42", "42"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input), expected, "{input}");
        }
    }

    #[test]
    fn numbers_without_a_double_are_rejected() {
        for literal in ["1e400", "-1e400"] {
            let value: Value = serde_json::from_str(literal).unwrap();
            assert!(matches!(
                canonical_json(&value),
                Err(Error::NonFiniteNumber { .. })
            ));
        }
    }

    #[test]
    fn strings_escape_only_what_rfc8785_escapes() {
        let value = Value::String("\u{0}\u{1f}\u{7f}\u{2028}é/<>\"\\\u{8}\u{c}\t\n\r".into());
        assert_eq!(
            canonical_json(&value).unwrap(),
            "\"\\u0000\\u001f\u{7f}\u{2028}é/<>\\\"\\\\\\b\\f\\t\\n\\r\""
        );
    }

    #[test]
    fn key_order_of_the_input_does_not_matter() {
        assert_eq!(
            canon(r#"{"b":1,"a":{"d":[],"c":{}}}"#),
            r#"{"a":{"c":{},"d":[]},"b":1}"#
        );
        assert_eq!(
            content_hash(&serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap()).unwrap(),
            content_hash(&serde_json::from_str(r#"{"a":2.0,"b":1}"#).unwrap()).unwrap()
        );
    }

    #[test]
    fn tombstones_are_distinct_per_version() {
        assert_ne!(
            tombstone_hash("Patient", "a", 2),
            tombstone_hash("Patient", "a", 3)
        );
        assert_eq!(
            canonical_json(&tombstone("Patient", "a", 2)).unwrap(),
            r#"{"id":"a","resourceType":"Patient","tombstone":"fhir-notary/1","versionId":"2"}"#
        );
    }
}
