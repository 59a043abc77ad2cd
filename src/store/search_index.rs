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
            // `patient` is searched through the `subject` rows (see `index_terms`).
            reference(resource.get("subject"), &mut out, resource_type, "subject");
            code(resource.get("status"), &mut out, "status");
            reference(
                resource.get("requester"),
                &mut out,
                resource_type,
                "requester",
            );
            for p in array(resource, "performer") {
                reference(Some(p), &mut out, resource_type, "performer");
            }
        }
        "Task" => {
            identifiers(&mut out);
            for b in array(resource, "basedOn") {
                reference(Some(b), &mut out, resource_type, "based-on");
            }
            reference(resource.get("focus"), &mut out, resource_type, "focus");
            code(resource.get("status"), &mut out, "status");
            reference(resource.get("owner"), &mut out, resource_type, "owner");
            reference(
                resource.get("requester"),
                &mut out,
                resource_type,
                "requester",
            );
            reference(resource.get("for"), &mut out, resource_type, "patient");
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
    // Each (param, value) once: `resources::search_rows_of` relies on it.
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

/// Resource types a reference parameter can point at, when FHIR lists them. Such a
/// reference is indexed as `Type/id` only, and a bare id in a search is looked for as each
/// `Type/id` (`index_terms`); `None` (a `Reference(Any)`) indexes the bare id as well.
/// Fewer index rows per referral is fewer B-tree inserts in the one writer.
fn reference_targets(resource_type: &str, param: &str) -> Option<&'static [&'static str]> {
    const PERFORMERS: &[&str] = &[
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "CareTeam",
        "HealthcareService",
        "Patient",
        "Device",
        "RelatedPerson",
    ];
    const REQUESTERS: &[&str] = &[
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Patient",
        "RelatedPerson",
        "Device",
    ];
    match (resource_type, param) {
        ("ServiceRequest", "subject") => Some(&["Patient", "Group", "Location", "Device"]),
        ("ServiceRequest", "patient") | ("Task", "patient") => Some(&["Patient"]),
        ("ServiceRequest", "requester") | ("Task", "requester") => Some(REQUESTERS),
        ("ServiceRequest", "performer") | ("Task", "owner") => Some(PERFORMERS),
        _ => None,
    }
}

/// What a search `param=value1,value2…` looks for in the index: the indexed parameter and
/// the indexed values that match. A bare id of a reference parameter with listed targets
/// becomes each `Type/id` (and stays itself, for identifier tokens and rows written before
/// bare ids were dropped); ServiceRequest `patient` is its `subject` rows.
pub fn index_terms(resource_type: &str, param: &str, values: &[String]) -> (String, Vec<String>) {
    let indexed = match (resource_type, param) {
        ("ServiceRequest", "patient") => "subject",
        _ => param,
    };
    let Some(targets) = reference_targets(resource_type, param) else {
        return (indexed.to_string(), values.to_vec());
    };
    let mut terms = Vec::with_capacity(values.len() * (targets.len() + 1));
    for value in values {
        terms.push(value.clone());
        if !value.contains('/') && !value.contains('|') && !value.is_empty() {
            terms.extend(targets.iter().map(|t| format!("{t}/{value}")));
        }
    }
    (indexed.to_string(), terms)
}

/// Reference values: `Type/id` for literal references (and the bare `id` when the
/// parameter's targets are not listed); the identifier tokens for logical references.
fn reference(
    value: Option<&Value>,
    out: &mut Vec<(&'static str, String)>,
    resource_type: &str,
    param: &'static str,
) {
    let Some(value) = value else { return };
    if let Some(r) = value.get("reference").and_then(Value::as_str) {
        let tail: Vec<&str> = r.rsplitn(3, '/').collect();
        if let [id, rtype, ..] = tail.as_slice() {
            out.push((param, format!("{rtype}/{id}")));
            if reference_targets(resource_type, param).is_none() {
                out.push((param, (*id).to_string()));
            }
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

    #[test]
    fn listed_targets_index_type_and_id_and_search_bare_ids_as_each_target() {
        let sr = json!({"resourceType": "ServiceRequest", "status": "active",
            "subject": {"reference": "Patient/p1"},
            "requester": {"reference": "https://gp.example/fhir/PractitionerRole/r1"}});
        let rows = extract("ServiceRequest", &sr);
        assert!(rows.contains(&("subject", "Patient/p1".into())));
        assert!(rows.contains(&("requester", "PractitionerRole/r1".into())));
        assert!(!rows
            .iter()
            .any(|(p, v)| *p == "patient" || v == "p1" || v == "r1"));

        let (param, terms) = index_terms("ServiceRequest", "patient", &["p1".into()]);
        assert_eq!(param, "subject");
        assert_eq!(terms, vec!["p1".to_string(), "Patient/p1".to_string()]);
        assert!(terms.iter().any(|t| rows.contains(&("subject", t.clone()))));
        let (_, terms) = index_terms("ServiceRequest", "requester", &["r1".into()]);
        assert!(terms
            .iter()
            .any(|t| rows.contains(&("requester", t.clone()))));
        // Typed ids and identifier tokens are looked for as given.
        let (_, terms) = index_terms(
            "Task",
            "owner",
            &["https://x|X1".into(), "Organization/o".into()],
        );
        assert_eq!(
            terms,
            vec!["https://x|X1".to_string(), "Organization/o".to_string()]
        );
        let (param, terms) = index_terms("Task", "status", &["requested".into()]);
        assert_eq!(
            (param.as_str(), terms),
            ("status", vec!["requested".to_string()])
        );
    }
}
