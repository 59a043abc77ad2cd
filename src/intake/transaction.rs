//! `POST /` with a transaction Bundle: a referral with the resources it needs.
//!
//! Owns: checking the transaction's shape (one ServiceRequest, POST/PUT entries of
//! supported types), assigning server ids, resolving `urn:uuid` (and other
//! fullUrl) references to them, validating every entry, and the
//! transaction-response Bundle. All-or-nothing: one `Intake::accept` commit.
//! Must not: store anything itself.

use super::accept::{identifier_keys, AcceptOutcome, Companion, Submission};
use super::respond::{
    etag, http_date, require_resource, return_preference, store_failure, task_link, unprocessable,
    ReturnPreference,
};
use super::Intake;
use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::{Issue, IssueType, OperationOutcome};
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Resource types that may travel with a referral and are stored with it.
pub(crate) const COMPANION_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "HealthcareService",
    "RelatedPerson",
    "Condition",
    "Observation",
    "Consent",
    "QuestionnaireResponse",
    "DocumentReference",
    "Encounter",
    "CareTeam",
    "Location",
];

/// Chooses an entry's server id: `Ok(Some(id))` keeps/uses that id, `Ok(None)`
/// assigns a new one, `Err` refuses the entry.
pub(crate) type AssignId<'a> = &'a dyn Fn(usize, &Value) -> Result<Option<String>, Issue>;

/// One entry after ids are assigned.
pub(crate) struct PreparedEntry {
    pub index: usize,
    pub resource_type: String,
    pub id: String,
    pub resource: Value,
}

/// Bundle entries → prepared entries with server ids and rewritten references.
/// `assign_new` decides whether an entry gets a new id (else it keeps its own).
pub(crate) fn prepare_entries(
    entries: &[Value],
    skip: usize,
    assign_new: AssignId<'_>,
    outcome: &mut OperationOutcome,
) -> Vec<PreparedEntry> {
    let mut aliases: HashMap<String, String> = HashMap::new();
    let mut prepared = Vec::new();
    for (index, entry) in entries.iter().enumerate().skip(skip) {
        let at = format!("Bundle.entry[{index}]");
        let Some(resource) = entry.get("resource").filter(|r| r.is_object()) else {
            outcome.push(Issue::error(IssueType::Required, "entry has no resource").at(at));
            continue;
        };
        let rtype = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if rtype != "ServiceRequest" && !COMPANION_TYPES.contains(&rtype) {
            outcome.push(
                Issue::error(
                    IssueType::NotSupported,
                    format!("resource type {rtype:?} is not accepted with a referral"),
                )
                .at(format!("{at}.resource.resourceType")),
            );
            continue;
        }
        let id = match assign_new(index, entry) {
            Ok(Some(id)) => id,
            Ok(None) => crate::store::new_id(),
            Err(issue) => {
                outcome.push(issue.at(at));
                continue;
            }
        };
        let target = format!("{rtype}/{id}");
        if let Some(full) = entry.get("fullUrl").and_then(Value::as_str) {
            aliases.insert(full.to_string(), target.clone());
        }
        if let Some(old) = resource.get("id").and_then(Value::as_str) {
            aliases
                .entry(format!("{rtype}/{old}"))
                .or_insert(target.clone());
        }
        let mut resource = resource.clone();
        if let Value::Object(map) = &mut resource {
            map.insert("id".into(), json!(id));
        }
        prepared.push(PreparedEntry {
            index,
            resource_type: rtype.to_string(),
            id,
            resource,
        });
    }
    for p in &mut prepared {
        let at = format!("Bundle.entry[{}].resource", p.index);
        rewrite_references(&mut p.resource, &aliases, &at, "", outcome);
    }
    prepared
}

/// Replace every `reference` that names another entry by its server `Type/id`;
/// an unresolved `urn:uuid:` reference is an error.
fn rewrite_references(
    value: &mut Value,
    aliases: &HashMap<String, String>,
    at: &str,
    path: &str,
    outcome: &mut OperationOutcome,
) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("reference") {
                if let Some(target) = aliases.get(r.as_str()) {
                    *r = target.clone();
                } else if r.starts_with("urn:uuid:") || r.starts_with("urn:oid:") {
                    outcome.push(
                        Issue::error(
                            IssueType::NotFound,
                            "reference to a fullUrl not in this Bundle",
                        )
                        .at(format!("{at}{path}.reference")),
                    );
                }
            }
            for (key, child) in map.iter_mut() {
                if key != "reference" {
                    rewrite_references(child, aliases, at, &format!("{path}.{key}"), outcome);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                rewrite_references(child, aliases, at, &format!("{path}[{i}]"), outcome);
            }
        }
        _ => {}
    }
}

/// Split prepared entries into the one ServiceRequest and its companions.
pub(crate) fn split_referral(
    prepared: Vec<PreparedEntry>,
    outcome: &mut OperationOutcome,
) -> Option<(PreparedEntry, Vec<PreparedEntry>)> {
    let (mut srs, companions): (Vec<_>, Vec<_>) = prepared
        .into_iter()
        .partition(|p| p.resource_type == "ServiceRequest");
    if srs.len() != 1 {
        outcome.push(Issue::error(
            IssueType::Invalid,
            format!(
                "exactly one ServiceRequest is required per referral, found {}",
                srs.len()
            ),
        ));
        return None;
    }
    srs.pop().map(|sr| (sr, companions))
}

pub(crate) async fn handle(intake: &Intake, request: ApiRequest) -> ApiResponse {
    let bundle = match require_resource(&request, "Bundle") {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return ApiResponse::outcome(
            StatusCode::BAD_REQUEST,
            &OperationOutcome::from_issue(
                Issue::error(IssueType::NotSupported, "only transaction Bundles can be POSTed to the base; use $process-message for messages")
                    .at("Bundle.type"),
            ),
        );
    }
    let entries: Vec<Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut outcome = OperationOutcome::new();
    let existing = match conditional_matches(intake, &entries).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let assign = |index: usize, entry: &Value| -> Result<Option<String>, Issue> {
        if let Some(id) = existing.get(&index) {
            return Ok(Some(id.clone()));
        }
        let method = entry
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or("");
        let url = entry
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or("");
        match method {
            "POST" => Ok(None),
            "PUT" => {
                let id = url
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                let rtype = entry
                    .pointer("/resource/resourceType")
                    .and_then(Value::as_str);
                let ok = rtype != Some("ServiceRequest")
                    && !id.is_empty()
                    && id.len() <= 64
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if ok {
                    Ok(Some(id.to_string()))
                } else {
                    Err(Issue::error(IssueType::NotSupported,
                        "PUT needs request.url Type/id with a valid id (the ServiceRequest must be POSTed)"))
                }
            }
            _ => Err(Issue::error(
                IssueType::NotSupported,
                "entry request.method must be POST or PUT",
            )),
        }
    };
    let prepared = prepare_entries(&entries, 0, &assign, &mut outcome);
    let order: Vec<(usize, String, String)> = prepared
        .iter()
        .map(|p| (p.index, p.resource_type.clone(), p.id.clone()))
        .collect();
    let Some((sr, companions)) = split_referral(prepared, &mut outcome) else {
        return unprocessable(&outcome);
    };
    if outcome.has_errors() {
        return unprocessable(&outcome);
    }
    // Entries whose ifNoneExist matched are referenced, not written.
    let companions: Vec<PreparedEntry> = companions
        .into_iter()
        .filter(|c| !existing.contains_key(&c.index))
        .collect();
    let keys = identifier_keys(&sr.resource);
    match intake.find_duplicate(&keys).await {
        Err(err) => return store_failure(&err),
        Ok(Some(refs)) => return duplicate_answer(&request, &refs),
        Ok(None) => {}
    }
    intake.validate_resource(
        &sr.resource,
        Some(&format!("Bundle.entry[{}].resource", sr.index)),
        &mut outcome,
    );
    for c in &companions {
        intake.validate_resource(
            &c.resource,
            Some(&format!("Bundle.entry[{}].resource", c.index)),
            &mut outcome,
        );
    }
    if outcome.has_errors() {
        return unprocessable(&outcome);
    }
    let mut extra_refs = Map::new();
    extra_refs.insert(
        "entries".into(),
        json!(order
            .iter()
            .map(|(_, t, id)| format!("{t}/{id}"))
            .collect::<Vec<_>>()),
    );
    let submission = Submission {
        service_request_id: sr.id.clone(),
        service_request: sr.resource,
        companions: companions
            .into_iter()
            .map(|c| Companion {
                resource_type: c.resource_type,
                id: c.id,
                resource: c.resource,
            })
            .collect(),
        extra_keys: Vec::new(),
        extra_refs,
        correlation_id: request.correlation_id.clone(),
        traceparent: request.traceparent.clone(),
        tracestate: request.tracestate.clone(),
        base_url: request.base_url.clone(),
        principal: request.principal.clone(),
    };
    match intake.accept(submission).await {
        Err(err) => store_failure(&err),
        Ok(AcceptOutcome::Duplicate(refs)) => duplicate_answer(&request, &refs),
        Ok(AcceptOutcome::Accepted(accepted)) => {
            let mut all = vec![accepted.service_request.clone()];
            all.extend(accepted.companions.iter().cloned());
            let preference = return_preference(&request);
            let response_entries: Vec<Value> = order
                .iter()
                .map(|(_, t, id)| match all.iter().find(|s| &s.resource_type == t && &s.id == id) {
                    None => json!({
                        "fullUrl": format!("{}/{t}/{id}", request.base_url),
                        "response": {"status": "200 OK", "location": format!("{t}/{id}")}
                    }),
                    Some(s) => {
                    let status = if s.version_id == 1 { "201 Created" } else { "200 OK" };
                    let mut e = json!({
                        "fullUrl": format!("{}/{}/{}", request.base_url, s.resource_type, s.id),
                        "response": {
                            "status": status,
                            "location": format!("{}/{}/_history/{}", s.resource_type, s.id, s.version_id),
                            "etag": etag(s),
                            "lastModified": crate::store::instant_text(s.last_updated),
                        }
                    });
                    if preference == ReturnPreference::Representation {
                        e["resource"] = s.resource.clone();
                    }
                    e
                }})
                .collect();
            let body = json!({
                "resourceType": "Bundle",
                "id": uuid::Uuid::new_v4().to_string(),
                "type": "transaction-response",
                "link": [{"relation": "related", "url": format!("{}/{}", request.base_url, accepted.task.reference())}],
                "entry": response_entries,
            });
            let answer = ApiResponse::json(StatusCode::OK, body).with_header(
                hyper::header::LAST_MODIFIED,
                &http_date(accepted.task.last_updated),
            );
            task_link(answer, &request.base_url, &accepted.task.reference())
        }
    }
}

/// `ifNoneExist` of POST entries (not the ServiceRequest, which has the identifier
/// guard): entry index → id of the one existing match. Several matches → 412.
async fn conditional_matches(
    intake: &Intake,
    entries: &[Value],
) -> Result<HashMap<usize, String>, ApiResponse> {
    let mut found = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(condition) = entry
            .pointer("/request/ifNoneExist")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let rtype = entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if rtype == "ServiceRequest" || !COMPANION_TYPES.contains(&rtype) {
            continue;
        }
        let params = crate::http::parse_query_string(condition.trim_start_matches('?'));
        let query = super::read::build_query(intake, rtype, &params, 2)?;
        let result = intake
            .store
            .search(rtype, &query)
            .await
            .map_err(|e| store_failure(&e))?;
        match result.matches.as_slice() {
            [] => {}
            [one] => {
                found.insert(index, one.id.clone());
            }
            _ => {
                return Err(ApiResponse::outcome(
                    StatusCode::PRECONDITION_FAILED,
                    &OperationOutcome::from_issue(
                        Issue::error(
                            IssueType::MultipleMatches,
                            "ifNoneExist matches more than one resource",
                        )
                        .at(format!("Bundle.entry[{index}].request.ifNoneExist")),
                    ),
                ))
            }
        }
    }
    Ok(found)
}

/// The transaction was already processed: its entries as `200 OK`, nothing new.
fn duplicate_answer(request: &ApiRequest, refs: &Value) -> ApiResponse {
    let entries: Vec<Value> = refs
        .get("entries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|r| {
            json!({"fullUrl": format!("{}/{r}", request.base_url),
                        "response": {"status": "200 OK", "location": r}})
        })
        .collect();
    let entries = if entries.is_empty() {
        refs.get("serviceRequest")
            .and_then(Value::as_str)
            .map(|r| vec![json!({"response": {"status": "200 OK", "location": r}})])
            .unwrap_or_default()
    } else {
        entries
    };
    let task = refs.get("task").and_then(Value::as_str).unwrap_or("");
    let body = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "transaction-response",
        "link": [{"relation": "related", "url": format!("{}/{task}", request.base_url)}],
        "entry": entries,
    });
    task_link(
        ApiResponse::json(StatusCode::OK, body),
        &request.base_url,
        task,
    )
}
