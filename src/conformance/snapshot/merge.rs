//! Constraining one inherited ElementDefinition with one differential element
//! (the spec's "snapshot generation" merge, as HAPI's updateFromDefinition):
//! cardinality, documentation, flags, fixed[x]/pattern[x], binding, types,
//! slicing, conditions, constraints (added with `source`), mappings.
//! Must not: navigate the tree, create slices, or resolve canonicals.

use serde_json::{Map, Value};

/// Keys a differential simply replaces when present.
const REPLACED: &[&str] = &[
    "sliceIsConstraining",
    "label",
    "short",
    "definition",
    "comment",
    "requirements",
    "min",
    "max",
    "defaultValue",
    "meaningWhenMissing",
    "orderMeaning",
    "maxLength",
    "mustSupport",
    "isModifier",
    "isModifierReason",
    "isSummary",
    "type",
];

/// Keys that describe where/what the element is and never come from a differential.
const STRUCTURAL: &[&str] = &["id", "path", "base", "contentReference", "representation"];

/// Apply `diff` on top of `elem` (which is a copy of the inherited definition).
/// `profile_url` becomes the `source` of constraints the differential adds.
/// Returns human-readable warnings (e.g. cardinality widened).
pub fn merge_element(
    elem: &mut Map<String, Value>,
    diff: &Map<String, Value>,
    profile_url: &str,
) -> Vec<String> {
    let mut warnings = Vec::new();
    check_cardinality(elem, diff, &mut warnings);
    check_types(elem, diff, &mut warnings);
    for (key, value) in diff {
        let key = key.as_str();
        if STRUCTURAL.contains(&key) {
            continue;
        }
        if key == "sliceName" || REPLACED.contains(&key) {
            elem.insert(key.into(), value.clone());
        } else if key.starts_with("fixed") || key.starts_with("pattern") {
            // A fixed value replaces any inherited pattern of the same element and vice versa
            // only when it is the same kind; an element carries at most one of each.
            let prefix = if key.starts_with("fixed") {
                "fixed"
            } else {
                "pattern"
            };
            elem.retain(|k, _| !(k.starts_with(prefix) && is_choice_value_key(k, prefix)));
            elem.insert(key.into(), value.clone());
        } else if key.starts_with("minValue") || key.starts_with("maxValue") {
            let prefix = if key.starts_with("min") {
                "minValue"
            } else {
                "maxValue"
            };
            elem.retain(|k, _| !k.starts_with(prefix));
            elem.insert(key.into(), value.clone());
        } else if key == "binding" {
            merge_object(elem, "binding", value);
        } else if key == "slicing" {
            merge_object(elem, "slicing", value);
        } else if key == "constraint" {
            add_constraints(elem, value, profile_url);
        } else if ["condition", "alias", "code", "mapping"].contains(&key) {
            union_array(elem, key, value);
        } else if key == "example" {
            elem.insert(key.into(), value.clone());
        } else if key == "extension" {
            merge_extensions(elem, value);
        } else {
            // Anything else a differential states wins (forward compatible).
            elem.insert(key.into(), value.clone());
        }
    }
    warnings
}

fn is_choice_value_key(k: &str, prefix: &str) -> bool {
    k.len() > prefix.len() && k[prefix.len()..].starts_with(|c: char| c.is_ascii_uppercase())
}

fn merge_object(elem: &mut Map<String, Value>, key: &str, value: &Value) {
    match (elem.get_mut(key), value) {
        (Some(Value::Object(base)), Value::Object(d)) => {
            for (k, v) in d {
                base.insert(k.clone(), v.clone());
            }
        }
        _ => {
            elem.insert(key.into(), value.clone());
        }
    }
}

fn union_array(elem: &mut Map<String, Value>, key: &str, value: &Value) {
    let Some(new) = value.as_array() else { return };
    let entry = elem
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(arr) = entry {
        for v in new {
            if !arr.contains(v) {
                arr.push(v.clone());
            }
        }
    }
}

fn add_constraints(elem: &mut Map<String, Value>, value: &Value, profile_url: &str) {
    let Some(new) = value.as_array() else { return };
    let entry = elem
        .entry("constraint".to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(arr) = entry else { return };
    for c in new {
        let Some(obj) = c.as_object() else { continue };
        let mut obj = obj.clone();
        if !obj.contains_key("source") {
            obj.insert("source".into(), Value::String(profile_url.to_string()));
        }
        let key = obj.get("key").cloned();
        match arr
            .iter_mut()
            .find(|e| key.is_some() && e.get("key") == key.as_ref())
        {
            // Same key restated: the profile's wording wins.
            Some(existing) => *existing = Value::Object(obj),
            None => arr.push(Value::Object(obj)),
        }
    }
}

fn merge_extensions(elem: &mut Map<String, Value>, value: &Value) {
    let Some(new) = value.as_array() else { return };
    let entry = elem
        .entry("extension".to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(arr) = entry else { return };
    for ext in new {
        let url = ext.get("url");
        arr.retain(|e| e.get("url") != url);
        arr.push(ext.clone());
    }
}

/// `max` as a number (`*` = unbounded).
pub fn max_value(v: Option<&Value>) -> Option<u64> {
    match v?.as_str()? {
        "*" => Some(u64::MAX),
        s => s.parse().ok(),
    }
}

fn check_cardinality(elem: &Map<String, Value>, diff: &Map<String, Value>, w: &mut Vec<String>) {
    let id = elem.get("id").and_then(Value::as_str).unwrap_or("");
    if let (Some(base_max), Some(new_max)) =
        (max_value(elem.get("max")), max_value(diff.get("max")))
    {
        if new_max > base_max {
            w.push(format!(
                "{id}: max {new_max} widens inherited max {base_max}"
            ));
        }
    }
    if let (Some(base_min), Some(new_min)) = (
        elem.get("min").and_then(Value::as_u64),
        diff.get("min").and_then(Value::as_u64),
    ) {
        if new_min < base_min {
            w.push(format!(
                "{id}: min {new_min} relaxes inherited min {base_min}"
            ));
        }
    }
}

/// Type narrowing may only keep types the inherited element allows.
fn check_types(elem: &Map<String, Value>, diff: &Map<String, Value>, w: &mut Vec<String>) {
    let codes = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("code").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let (base, new) = (codes(elem.get("type")), codes(diff.get("type")));
    if base.is_empty() {
        return;
    }
    let id = elem.get("id").and_then(Value::as_str).unwrap_or("");
    for code in new.iter().filter(|c| !base.contains(c)) {
        w.push(format!(
            "{id}: type {code} is not among the inherited types {}",
            base.join(", ")
        ));
    }
}

/// Documentation an element using a profiled type takes from the profile's
/// root element before the differential applies (HAPI does the same).
pub fn take_profile_root_doc(elem: &mut Map<String, Value>, profile_root: &Map<String, Value>) {
    for key in [
        "definition",
        "short",
        "comment",
        "requirements",
        "alias",
        "mapping",
    ] {
        if let Some(v) = profile_root.get(key) {
            elem.insert(key.into(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn merges_constraints_with_source_and_cardinality() {
        let mut e = obj(json!({"id":"A.b","path":"A.b","min":0,"max":"*",
            "constraint":[{"key":"ele-1","source":"http://hl7.org/fhir/StructureDefinition/Element"}]}));
        let d = obj(json!({"id":"A.b","path":"A.b","min":1,"max":"1",
            "constraint":[{"key":"x-1","expression":"true"}],"fixedUri":"urn:x"}));
        let w = merge_element(&mut e, &d, "http://p");
        assert!(w.is_empty());
        assert_eq!(e["min"], 1);
        assert_eq!(e["constraint"][1]["source"], "http://p");
        assert_eq!(e["fixedUri"], "urn:x");
    }

    #[test]
    fn warns_on_widening() {
        let mut e = obj(json!({"id":"A.b","min":1,"max":"1"}));
        let d = obj(json!({"max":"*"}));
        assert_eq!(merge_element(&mut e, &d, "p").len(), 1);
    }

    #[test]
    fn binding_merges_keys() {
        let mut e = obj(json!({"binding":{"strength":"required","valueSet":"a"}}));
        let d = obj(json!({"binding":{"description":"d"}}));
        merge_element(&mut e, &d, "p");
        assert_eq!(e["binding"]["valueSet"], "a");
        assert_eq!(e["binding"]["description"], "d");
    }
}
