//! Search parameters: which values of a resource are indexed, and the query shape.
//!
//! Owns: the fixed table of supported search parameters per resource type, the
//! extraction of index values from resource JSON, and `SearchQuery`.
//! Must not: run SQL (resources.rs does) or parse HTTP query strings (intake does).

use serde_json::Value;

/// A `_lastUpdated` comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    Gt(i64),
    Ge(i64),
    Lt(i64),
    Le(i64),
}

/// A search: every `(param, value)` pair must match (AND); values of one pair are
/// already split by the caller when they are ORs.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// `(param, [alternatives])`: a resource matches when it has any alternative.
    pub params: Vec<(String, Vec<String>)>,
    pub last_updated: Vec<TimeBound>,
    pub count: u32,
    pub offset: u32,
}

/// One page of matches, oldest first.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub total: i64,
    pub matches: Vec<super::StoredResource>,
}

/// Search parameters the store indexes for a resource type (beyond `_id` and `_lastUpdated`).
pub fn supported_params(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "ServiceRequest" => &[
            "identifier",
            "patient",
            "subject",
            "status",
            "requester",
            "performer",
            "_tag",
        ],
        "Task" => &[
            "identifier",
            "based-on",
            "focus",
            "status",
            "owner",
            "requester",
            "patient",
            "_tag",
        ],
        "Subscription" => &["status", "_tag"],
        "Patient" | "Organization" | "Practitioner" | "PractitionerRole" | "HealthcareService" => {
            &["identifier"]
        }
        _ => &[],
    }
}

/// `(param, value)` rows to index for a resource.
pub fn extract(resource_type: &str, resource: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let identifiers = |out: &mut Vec<(&'static str, String)>| {
        for ident in array(resource, "identifier") {
            tokens(ident, out, "identifier");
        }
    };
    match resource_type {
        "ServiceRequest" => {
            identifiers(&mut out);
            reference(resource.get("subject"), &mut out, "patient");
            reference(resource.get("subject"), &mut out, "subject");
            code(resource.get("status"), &mut out, "status");
            reference(resource.get("requester"), &mut out, "requester");
            for p in array(resource, "performer") {
                reference(Some(p), &mut out, "performer");
            }
        }
        "Task" => {
            identifiers(&mut out);
            for b in array(resource, "basedOn") {
                reference(Some(b), &mut out, "based-on");
            }
            reference(resource.get("focus"), &mut out, "focus");
            code(resource.get("status"), &mut out, "status");
            reference(resource.get("owner"), &mut out, "owner");
            reference(resource.get("requester"), &mut out, "requester");
            reference(resource.get("for"), &mut out, "patient");
        }
        "Patient" | "Organization" | "Practitioner" | "PractitionerRole" | "HealthcareService" => {
            identifiers(&mut out)
        }
        "Subscription" => code(resource.get("status"), &mut out, "status"),
        _ => {}
    }
    for tag in array(resource.get("meta").unwrap_or(&Value::Null), "tag") {
        if let (Some(system), Some(code)) = (
            tag.get("system").and_then(Value::as_str),
            tag.get("code").and_then(Value::as_str),
        ) {
            out.push(("_tag", format!("{system}|{code}")));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn array<'a>(resource: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    resource
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn code(value: Option<&Value>, out: &mut Vec<(&'static str, String)>, param: &'static str) {
    if let Some(s) = value.and_then(Value::as_str) {
        out.push((param, s.to_string()));
    }
}

/// Identifier tokens: `system|value` and bare `value`.
fn tokens(ident: &Value, out: &mut Vec<(&'static str, String)>, param: &'static str) {
    let Some(value) = ident.get("value").and_then(Value::as_str) else {
        return;
    };
    if let Some(system) = ident.get("system").and_then(Value::as_str) {
        out.push((param, format!("{system}|{value}")));
    }
    out.push((param, value.to_string()));
}

/// Reference values: `Type/id` and bare `id` for literal references; the identifier
/// tokens for logical references.
fn reference(value: Option<&Value>, out: &mut Vec<(&'static str, String)>, param: &'static str) {
    let Some(value) = value else { return };
    if let Some(r) = value.get("reference").and_then(Value::as_str) {
        let tail: Vec<&str> = r.rsplitn(3, '/').collect();
        if let [id, rtype, ..] = tail.as_slice() {
            out.push((param, format!("{rtype}/{id}")));
            out.push((param, (*id).to_string()));
        } else {
            out.push((param, r.to_string()));
        }
    }
    if let Some(ident) = value.get("identifier") {
        tokens(ident, out, param);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_references_are_indexed_both_ways() {
        let task = json!({"resourceType": "Task", "status": "requested",
            "basedOn": [{"reference": "ServiceRequest/abc"}],
            "owner": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "X1"}}});
        let rows = extract("Task", &task);
        assert!(rows.contains(&("based-on", "ServiceRequest/abc".into())));
        assert!(rows.contains(&("based-on", "abc".into())));
        assert!(rows.contains(&("owner", "X1".into())));
        assert!(rows.contains(&("status", "requested".into())));
    }
}
