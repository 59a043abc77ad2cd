//! The audit trail: one FHIR AuditEvent per access, kept in the store.
//!
//! Owns: building AuditEvents (who — client id and organisation —, what — the resource
//! type and id from the path, never the query —, when, outcome, correlation and request
//! ids), their search rows, and the auditor's `GET /AuditEvent` search and
//! `GET /AuditEvent/{id}` read.
//! Must not: record patient data: no query strings, bodies or headers, and any path
//! segment shaped like an NHS number is redacted.

use super::{Interaction, Principal};
use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::IssueType;
use crate::store::AUDIT_EVENT;
use crate::store::{instant_text, now_millis, SearchQuery, Store, StoreError, TimeBound};
use hyper::StatusCode;
use serde_json::{json, Value};

/// Identifier system of client ids in AuditEvent agents.
pub const CLIENT_ID_SYSTEM: &str = "https://fhir.spbridge.org/Id/client-id";
/// Identifier system of ODS organisation codes.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// What one request did, as far as the audit trail is concerned.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// The verified caller; `None` when authentication failed.
    pub principal: Option<Principal>,
    /// The client id a failed token request named (unverified; recorded as such).
    pub claimed_client: Option<String>,
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// `Type/id` of the resource the answer points at (`Location`), when there is one.
    pub created: Option<String>,
    pub interaction: Option<(String, Interaction)>,
    pub status: u16,
    /// Why, in words safe to keep (e.g. "token has expired").
    pub reason: Option<String>,
    pub correlation_id: String,
    pub request_id: String,
}

/// Search parameters `GET /AuditEvent` understands (plus `date`, `_lastUpdated`, `_count`).
pub const SEARCH_PARAMS: &[&str] = &[
    "agent",
    "entity",
    "entity-type",
    "outcome",
    "action",
    "subtype",
    "altid",
];

/// Write the AuditEvent for `record`.
pub async fn record(store: &Store, record: &AuditRecord) -> Result<(), StoreError> {
    let (resource, index) = audit_event(record);
    store.append_audit_event(resource, &index).await.map(|_| ())
}

/// Redact path segments that look like NHS numbers (10 digits).
fn safe_path(path: &str) -> String {
    let mut out: String = path
        .split('/')
        .map(|segment| {
            let digits = segment.chars().filter(char::is_ascii_digit).count();
            if digits >= 10 && segment.len() <= 12 {
                "[redacted]"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    out.retain(|c| c.is_ascii_graphic());
    out.truncate(200);
    out
}

fn action_code(method: &str, interaction: Option<Interaction>) -> &'static str {
    match interaction {
        Some(Interaction::Create) => "C",
        Some(Interaction::Read | Interaction::Search) => "R",
        Some(Interaction::Update) => "U",
        Some(Interaction::Delete) => "D",
        None if method == "GET" => "R",
        None => "E",
    }
}

fn subtype_code(interaction: Option<Interaction>, path: &str) -> &'static str {
    match interaction {
        Some(Interaction::Create) => "create",
        Some(Interaction::Read) => "read",
        Some(Interaction::Search) => "search-type",
        Some(Interaction::Update) => "update",
        Some(Interaction::Delete) => "delete",
        None if path == "/oauth2/token" => "token",
        None => "operation",
    }
}

fn outcome_code(status: u16) -> &'static str {
    match status {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    }
}

/// The AuditEvent and its `(param, value)` search rows.
pub fn audit_event(record: &AuditRecord) -> (Value, Vec<(&'static str, String)>) {
    let interaction = record.interaction.as_ref().map(|(_, i)| *i);
    let path = safe_path(&record.path);
    let action = action_code(&record.method, interaction);
    let subtype = subtype_code(interaction, &record.path);
    let outcome = outcome_code(record.status);
    let mut index: Vec<(&'static str, String)> = vec![
        ("action", action.into()),
        ("subtype", subtype.into()),
        ("outcome", outcome.into()),
        ("altid", record.correlation_id.clone()),
    ];
    let mut agents = Vec::new();
    match &record.principal {
        Some(p) => {
            index.push(("agent", p.client_id.clone()));
            index.push(("agent", format!("{CLIENT_ID_SYSTEM}|{}", p.client_id)));
            index.push(("agent", p.organisation.clone()));
            agents.push(json!({
                "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": p.client_id}},
                "altId": record.correlation_id,
                "role": [{"text": p.role.as_str()}],
                "requestor": true
            }));
            agents.push(json!({
                "who": {"identifier": {"system": ODS_SYSTEM, "value": p.organisation}},
                "requestor": false
            }));
        }
        None => {
            let mut who = json!({"display": "unauthenticated caller"});
            if let Some(claimed) = &record.claimed_client {
                let claimed = safe_path(claimed);
                index.push(("agent", claimed.clone()));
                who = json!({"identifier": {"system": CLIENT_ID_SYSTEM, "value": claimed},
                    "display": "claimed, not authenticated"});
            }
            agents.push(json!({"who": who, "altId": record.correlation_id, "requestor": true}));
        }
    }
    let mut entity = json!({
        "detail": [
            {"type": "correlation-id", "valueString": record.correlation_id},
            {"type": "request-id", "valueString": record.request_id},
            {"type": "http-method", "valueString": record.method},
            {"type": "http-status", "valueString": record.status.to_string()},
        ]
    });
    let what = record
        .created
        .as_deref()
        .map(safe_path)
        .or_else(|| instance_reference(&path));
    match what {
        Some(reference) => {
            index.push(("entity", reference.clone()));
            entity["what"] = json!({"reference": reference});
        }
        None => entity["what"] = json!({"display": path}),
    }
    if let Some((resource_type, _)) = &record.interaction {
        index.push(("entity-type", resource_type.clone()));
        entity["type"] =
            json!({"system": "http://hl7.org/fhir/resource-types", "code": resource_type});
    }
    let mut event = json!({
        "resourceType": AUDIT_EVENT,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
        "action": action,
        "recorded": instant_text(now_millis()),
        "outcome": outcome,
        "agent": agents,
        "source": {"site": "spbridge", "observer": {"display": "spbridge"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": [entity]
    });
    let desc = match &record.reason {
        Some(reason) => format!("HTTP {}: {reason}", record.status),
        None => format!("HTTP {}", record.status),
    };
    event["outcomeDesc"] = json!(desc);
    (event, index)
}

/// `Type/id` from `/Type/id[/...]`.
fn instance_reference(path: &str) -> Option<String> {
    let mut parts = path.trim_matches('/').split('/');
    let rtype = parts.next()?;
    let id = parts.next()?;
    (rtype.chars().next()?.is_ascii_uppercase() && !id.starts_with('_') && !id.starts_with('$'))
        .then(|| format!("{rtype}/{id}"))
}

/// `GET /AuditEvent` and `GET /AuditEvent/{id}` for auditors (the gate checked the role).
pub async fn serve(store: &Store, request: &ApiRequest) -> ApiResponse {
    let rest = request.path.trim_start_matches("/AuditEvent");
    let id = rest.trim_start_matches('/');
    if !id.is_empty() {
        return match store.read(AUDIT_EVENT, id).await {
            Ok(Some(stored)) => ApiResponse::json(StatusCode::OK, stored.resource),
            Ok(None) => ApiResponse::error(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                "AuditEvent not found",
            ),
            Err(err) => store_failure(err),
        };
    }
    let query = match search_query(request) {
        Ok(q) => q,
        Err(message) => {
            return ApiResponse::error(StatusCode::BAD_REQUEST, IssueType::NotSupported, message)
        }
    };
    match store.search(AUDIT_EVENT, &query).await {
        Ok(result) => {
            let entries: Vec<Value> = result
                .matches
                .into_iter()
                .map(|m| {
                    json!({"fullUrl": format!("{}/AuditEvent/{}", request.base_url, m.id),
                       "resource": m.resource, "search": {"mode": "match"}})
                })
                .collect();
            ApiResponse::json(
                StatusCode::OK,
                json!({"resourceType": "Bundle", "type": "searchset",
                   "total": result.total, "entry": entries}),
            )
        }
        Err(err) => store_failure(err),
    }
}

fn store_failure(err: StoreError) -> ApiResponse {
    tracing::error!(error = %err, "audit store read failed");
    ApiResponse::error(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Transient,
        "the audit trail is unavailable; retry later",
    )
}

fn search_query(request: &ApiRequest) -> Result<SearchQuery, String> {
    let mut query = SearchQuery {
        count: 50,
        ..SearchQuery::default()
    };
    for (name, value) in &request.query {
        match name.as_str() {
            "_count" => {
                query.count = value
                    .parse::<u32>()
                    .map_err(|_| "_count must be a number".to_string())?
                    .clamp(1, 500)
            }
            "date" | "_lastUpdated" => query.last_updated.extend(time_bounds(value)?),
            "_format" => {}
            p if SEARCH_PARAMS.contains(&p) => {
                query.params.push((
                    p.to_string(),
                    value.split(',').map(str::to_string).collect(),
                ));
            }
            other => return Err(format!("unknown AuditEvent search parameter {other:?}")),
        }
    }
    Ok(query)
}

/// `ge2026-12-02T10:00:00Z`, `lt2026-12-03`, `2026-12-02` (that whole day).
fn time_bounds(value: &str) -> Result<Vec<TimeBound>, String> {
    let (prefix, text) = match value.get(..2) {
        Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let bad = || format!("date {value:?} is not a FHIR date or dateTime");
    let (start, end) = if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(text) {
        let m = dt.timestamp_millis();
        (m, m)
    } else {
        let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?;
        let start = day
            .and_hms_opt(0, 0, 0)
            .ok_or_else(bad)?
            .and_utc()
            .timestamp_millis();
        (start, start + 86_400_000 - 1)
    };
    Ok(match prefix {
        "ge" => vec![TimeBound::Ge(start)],
        "gt" => vec![TimeBound::Gt(end)],
        "le" => vec![TimeBound::Le(end)],
        "lt" => vec![TimeBound::Lt(start)],
        _ => vec![TimeBound::Ge(start), TimeBound::Le(end)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn audit_event_names_client_and_organisation_but_no_query() {
        let record = AuditRecord {
            principal: Some(Principal {
                client_id: "gp-1".into(),
                organisation: "A81001".into(),
                role: Role::Requester,
                provider_id: None,
                scopes: vec![],
            }),
            claimed_client: None,
            method: "GET".into(),
            path: "/Patient/9434765919".into(),
            created: None,
            interaction: Some(("Patient".into(), Interaction::Read)),
            status: 200,
            reason: None,
            correlation_id: "corr-1".into(),
            request_id: "req-1".into(),
        };
        let (event, index) = audit_event(&record);
        let text = event.to_string();
        assert!(!text.contains("9434765919"));
        assert!(text.contains("A81001") && text.contains("gp-1") && text.contains("corr-1"));
        assert!(index.contains(&("agent", "gp-1".into())));
        assert_eq!(event["outcome"], "0");
    }

    #[test]
    fn date_bounds() {
        assert_eq!(time_bounds("ge2026-12-02T10:00:00Z").unwrap().len(), 1);
        assert_eq!(time_bounds("2026-12-02").unwrap().len(), 2);
        assert!(time_bounds("yesterday").is_err());
    }
}
