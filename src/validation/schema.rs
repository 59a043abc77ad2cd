//! Structure layer on the official FHIR R4 JSON Schema (`fhir.schema.json`, draft-06), compiled
//! per resource type (`{"$ref":"#/definitions/<Type>","definitions":…}`), lazily and cached.
//!
//! Owns: loading and patching the schema, per-type `jsonschema::Validator`s, mapping schema errors
//! to issues. Must not: descend into nested resources (the walker calls this once per resource).
//!
//! Known defects of the published schema, overridden here because the StructureDefinitions win:
//! 1. `ResourceList` is a `oneOf` over all 146 resource types; it is replaced by "an object with a
//!    string `resourceType`" so contained / `Bundle.entry.resource` / `Parameters.parameter.resource`
//!    are validated as their own resources, each against their own per-type schema.
//! 2. Every `enum` of FHIR versions stops at 4.0.0 (the enum for `fhirVersion` in StructureDefinition,
//!    CapabilityStatement, ImplementationGuide…), so the R4 version 4.0.1 itself fails; those enums are
//!    removed and the required binding to `FHIRVersion` in the profile layer checks the code.
//! 3. Arrays of primitives may hold `null` where the `_field` array carries the id/extension of that
//!    position (FHIR JSON rule); the schema forbids nulls in both arrays. Items are widened to allow
//!    `null`; the walker checks that each null is matched by the other array.

use crate::outcome::{Issue, IssueType};
use jsonschema::error::ValidationErrorKind;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Per-resource-type compiled schemas.
pub struct SchemaLayer {
    definitions: Arc<Value>,
    compiled: RwLock<HashMap<String, Option<Arc<jsonschema::Validator>>>>,
}

impl SchemaLayer {
    /// Takes the parsed `fhir.schema.json` and applies the documented patches.
    pub fn new(schema: &Value) -> Option<Self> {
        let mut defs = schema.get("definitions")?.clone();
        patch(&mut defs);
        Some(SchemaLayer {
            definitions: Arc::new(defs),
            compiled: RwLock::new(HashMap::new()),
        })
    }

    /// The compiled schema for one resource type (compiled on first use).
    pub fn for_type(&self, resource_type: &str) -> Option<Arc<jsonschema::Validator>> {
        if let Ok(map) = self.compiled.read() {
            if let Some(v) = map.get(resource_type) {
                return v.clone();
            }
        }
        let v = self.definitions.get(resource_type).and_then(|_| {
            let root = json!({
                "$schema": "http://json-schema.org/draft-06/schema#",
                "$ref": format!("#/definitions/{resource_type}"),
                "definitions": self.definitions.as_ref(),
            });
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft6)
                .build(&root)
                .ok()
                .map(Arc::new)
        });
        if let Ok(mut map) = self.compiled.write() {
            map.insert(resource_type.to_string(), v.clone());
        }
        v
    }

    /// Validates one resource (not its nested resources) and appends issues at `base` (the
    /// resource's FHIRPath location), skipping locations `already` reported by the profile walk.
    pub fn check(
        &self,
        resource_type: &str,
        resource: &Value,
        base: &str,
        already: &[Issue],
        out: &mut Vec<Issue>,
    ) {
        let Some(v) = self.for_type(resource_type) else {
            return;
        };
        if v.is_valid(resource) {
            return;
        }
        for err in v.iter_errors(resource) {
            let mut path = String::from(base);
            for seg in err.instance_path().as_str().split('/').skip(1) {
                let seg = seg.replace("~1", "/").replace("~0", "~");
                if seg.bytes().all(|b| b.is_ascii_digit()) && !seg.is_empty() {
                    path.push('[');
                    path.push_str(&seg);
                    path.push(']');
                } else {
                    path.push('.');
                    path.push_str(seg.strip_prefix('_').unwrap_or(&seg));
                }
            }
            let (code, text, paths): (IssueType, String, Vec<String>) = match err.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => (
                    IssueType::Structure,
                    "Unrecognised element (JSON schema)".into(),
                    unexpected
                        .iter()
                        .map(|k| format!("{path}.{}", k.strip_prefix('_').unwrap_or(k)))
                        .collect(),
                ),
                ValidationErrorKind::Type { kind } => (
                    IssueType::Structure,
                    format!("Wrong JSON type: expected {kind:?} (JSON schema)"),
                    vec![path],
                ),
                ValidationErrorKind::Pattern { pattern } => (
                    IssueType::Value,
                    format!("Value does not match the FHIR format {pattern} (JSON schema)"),
                    vec![path],
                ),
                ValidationErrorKind::Enum { .. } => (
                    IssueType::Value,
                    "Value is not one of the codes the JSON schema allows".into(),
                    vec![path],
                ),
                ValidationErrorKind::Required { property } => (
                    IssueType::Required,
                    format!("Missing required property {property} (JSON schema)"),
                    vec![path],
                ),
                ValidationErrorKind::MinItems { .. } => (
                    IssueType::Structure,
                    "Arrays must not be empty (JSON schema)".into(),
                    vec![path],
                ),
                _ => (
                    IssueType::Structure,
                    format!("JSON schema check failed at {}", err.schema_path().as_str()),
                    vec![path],
                ),
            };
            for p in paths {
                if covered(&p, already) || covered(&p, out) {
                    continue;
                }
                out.push(Issue::error(code, text.clone()).at(p));
            }
        }
    }
}

/// True when an error issue already sits at `p`, above it, or below it.
fn covered(p: &str, issues: &[Issue]) -> bool {
    issues.iter().filter(|i| i.severity.is_failure()).any(|i| {
        i.expression.iter().any(|e| {
            let e = normalise_choice(e);
            e == p || starts_with_segment(p, &e) || starts_with_segment(&e, p)
        })
    })
}

fn starts_with_segment(long: &str, prefix: &str) -> bool {
    long.len() > prefix.len()
        && long.starts_with(prefix)
        && matches!(long.as_bytes()[prefix.len()], b'.' | b'[')
}

/// `Observation.value.ofType(Quantity)` → `Observation.valueQuantity` (the JSON name).
fn normalise_choice(e: &str) -> String {
    let mut out = String::with_capacity(e.len());
    let mut rest = e;
    while let Some(i) = rest.find(".ofType(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 8..];
        let Some(end) = after.find(')') else { break };
        let ty = &after[..end];
        let mut c = ty.chars();
        if let Some(f) = c.next() {
            out.extend(f.to_uppercase());
            out.push_str(c.as_str());
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn patch(defs: &mut Value) {
    if let Some(map) = defs.as_object_mut() {
        map.insert(
            "ResourceList".into(),
            json!({"type": "object", "required": ["resourceType"],
                   "properties": {"resourceType": {"type": "string"}}}),
        );
        for def in map.values_mut() {
            if let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) {
                patch_properties(props);
            }
        }
    }
}

fn patch_properties(props: &mut Map<String, Value>) {
    for prop in props.values_mut() {
        let Some(obj) = prop.as_object_mut() else {
            continue;
        };
        let fhir_versions = obj
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().any(|v| v == "4.0.0") && !e.iter().any(|v| v == "4.0.1"));
        if fhir_versions {
            obj.remove("enum");
            obj.insert("type".into(), json!("string"));
        }
        if obj.get("type").and_then(Value::as_str) == Some("array") {
            if let Some(items) = obj.remove("items") {
                let nullable = json!({"anyOf": [{"type": "null"}, items]});
                obj.insert("items".into(), nullable);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_normalisation() {
        assert_eq!(
            normalise_choice("Observation.value.ofType(Quantity).value"),
            "Observation.valueQuantity.value"
        );
    }
}
