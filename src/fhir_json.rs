//! Reading FHIR JSON from the wire, as every entry point (HTTP bodies, AMQP task updates)
//! does it.
//!
//! Owns: turning bytes into a `serde_json::Value` under FHIR's JSON rules that serde_json
//! alone does not enforce — a property name appears once per object (FHIR JSON §"JSON
//! representation": objects are never allowed duplicate names; serde_json would silently
//! keep the last) — with the line and column of the first problem.
//! Must not: validate content (the validator does) or log the bytes (they hold patient data).
//!
//! Limits that come from serde_json and are relied on: nesting deeper than 128 levels, numbers
//! out of the f64 range and invalid UTF-8 are errors, not panics or stack overflows.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why bytes are not acceptable FHIR JSON.
#[derive(Debug, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct JsonError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl From<serde_json::Error> for JsonError {
    fn from(err: serde_json::Error) -> Self {
        let text = err.to_string();
        // serde_json appends " at line L column C"; keep the reason only.
        let message = match text.rfind(" at line ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        JsonError {
            message,
            line: err.line(),
            column: err.column(),
        }
    }
}

/// Parse FHIR JSON in one pass: syntax, depth and number range as serde_json checks them,
/// and no duplicate property names, checked while each object is built.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let FhirValue(value) = FhirValue::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A `serde_json::Value` built by a visitor that refuses an object naming a property twice
/// (serde_json's own `Value` keeps the last silently).
struct FhirValue(Value);

impl<'de> Deserialize<'de> for FhirValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FhirValueVisitor)
    }
}

struct FhirValueVisitor;

impl<'de> Visitor<'de> for FhirValueVisitor {
    type Value = FhirValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FhirValue, E> {
        Ok(FhirValue(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FhirValue, E> {
        Ok(FhirValue(Value::Number(v.into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FhirValue, E> {
        Ok(FhirValue(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<FhirValue, E> {
        // serde_json never hands over a non-finite number; refuse one rather than invent null.
        Number::from_f64(v)
            .map(|n| FhirValue(Value::Number(n)))
            .ok_or_else(|| de::Error::custom("number out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<FhirValue, E> {
        Ok(FhirValue(Value::String(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<FhirValue, E> {
        Ok(FhirValue(Value::String(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FhirValue, E> {
        Ok(FhirValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FhirValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(FhirValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(FhirValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FhirValue, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom(format!(
                    "property \"{}\" appears more than once in one object",
                    truncate(&name)
                )));
            }
            let FhirValue(value) = map.next_value()?;
            object.insert(name, value);
        }
        Ok(FhirValue(Value::Object(object)))
    }
}

/// A property name as quoted in an error: at most 64 characters.
fn truncate(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn duplicate_names_are_refused_with_their_place() {
        let err = parse(b"{\"resourceType\":\"Patient\",\n\"id\":\"a\",\"id\":\"b\"}").unwrap_err();
        assert!(
            err.message.contains("\"id\" appears more than once"),
            "{err}"
        );
        assert_eq!(err.line, 2);
        // Nested objects and arrays are walked; the same name in sibling objects is fine.
        assert!(parse(br#"{"a":[{"x":1},{"x":2}],"b":{"x":1,"y":{"z":1,"z":2}}}"#).is_err());
        assert!(parse(br#"{"a":[{"x":1},{"x":2}],"b":{"x":1}}"#).is_ok());
    }

    #[test]
    fn serde_json_limits_hold() {
        assert!(parse(b"{\"n\":1e400}")
            .unwrap_err()
            .message
            .contains("out of range"));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .message
            .contains("recursion"));
        assert!(parse(b"{\"s\":\"\xff\"}").is_err());
        assert_eq!(parse(br#"{"a":1}"#).unwrap()["a"], 1);
    }
}
