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
use serde_json::Value;
use std::collections::HashSet;
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

/// Parse FHIR JSON: syntax, then no duplicate property names.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    UniqueNames::deserialize(&mut deserializer)?;
    Ok(value)
}

/// Walks a JSON document without building it, refusing an object that names a property twice.
struct UniqueNames;

impl<'de> Deserialize<'de> for UniqueNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueNamesVisitor)
    }
}

struct UniqueNamesVisitor;

impl<'de> Visitor<'de> for UniqueNamesVisitor {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_unit<E: de::Error>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueNames, A::Error> {
        while seq.next_element::<UniqueNames>()?.is_some() {}
        Ok(UniqueNames)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueNames, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format!(
                    "property \"{}\" appears more than once in one object",
                    truncate(&name)
                )));
            }
            map.next_value::<UniqueNames>()?;
            seen.insert(name);
        }
        Ok(UniqueNames)
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
