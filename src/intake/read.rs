//! Reads, version reads and searches.
//!
//! Owns: `GET /{type}/{id}`, `GET /{type}/{id}/_history/{vid}`, `GET /{type}?…`
//! for ServiceRequest and Task: parsing search parameters (unknown ones → 400),
//! `_lastUpdated` prefixes, `_count`/`_offset` paging, searchset Bundles with
//! `self`/`next` links.
//! Must not: write.

use super::respond::{etag, http_date, store_failure};
use super::Intake;
use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::store::{supported_params, SearchQuery, TimeBound};
use crate::workflow::tenancy;
use hyper::{header, StatusCode};
use serde_json::{json, Value};

/// Parameters every search accepts besides the type's own.
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_offset",
    "_lastUpdated",
    "_id",
    "_format",
    "_pretty",
];

pub(crate) async fn read(
    intake: &Intake,
    resource_type: &str,
    id: &str,
    version: Option<&str>,
    request: &ApiRequest,
) -> ApiResponse {
    let found = match version {
        None => intake.store.read(resource_type, id).await,
        Some(v) => match v.parse::<i64>() {
            Ok(v) => intake.store.read_version(resource_type, id, v).await,
            Err(_) => return not_found(resource_type, id),
        },
    };
    match found {
        Err(err) => store_failure(&err),
        Ok(None) => not_found(resource_type, id),
        Ok(Some(stored)) if !tenancy::visible(request.principal.as_deref(), &stored.resource) => {
            not_found(resource_type, id)
        }
        Ok(Some(stored)) => {
            let tag = etag(&stored);
            if request
                .header("if-none-match")
                .is_some_and(|v| v.trim() == tag)
            {
                return ApiResponse::empty(StatusCode::NOT_MODIFIED)
                    .with_header(header::ETAG, &tag);
            }
            ApiResponse::json(StatusCode::OK, stored.resource.clone())
                .with_header(header::ETAG, &tag)
                .with_header(header::LAST_MODIFIED, &http_date(stored.last_updated))
        }
    }
}

/// `GET /{type}/{id}/_history`: every version, newest first, as a history Bundle.
pub(crate) async fn history(
    intake: &Intake,
    resource_type: &str,
    id: &str,
    request: &ApiRequest,
) -> ApiResponse {
    let versions = match intake.store.history(resource_type, id).await {
        Ok(v) => v,
        Err(err) => return store_failure(&err),
    };
    let Some(current) = versions.iter().max_by_key(|v| v.version_id) else {
        return not_found(resource_type, id);
    };
    if !tenancy::visible(request.principal.as_deref(), &current.resource) {
        return not_found(resource_type, id);
    }
    let base = &request.base_url;
    let mut versions = versions.clone();
    versions.sort_by_key(|v| std::cmp::Reverse(v.version_id));
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "fullUrl": format!("{base}/{}/{}", v.resource_type, v.id),
                "resource": v.resource,
                "request": {
                    "method": if v.version_id == 1 { "POST" } else { "PUT" },
                    "url": if v.version_id == 1 {
                        v.resource_type.clone()
                    } else {
                        format!("{}/{}", v.resource_type, v.id)
                    }
                },
                "response": {
                    "status": if v.version_id == 1 { "201" } else { "200" },
                    "etag": etag(v),
                    "lastModified": crate::store::instant_text(v.last_updated)
                }
            })
        })
        .collect();
    ApiResponse::json(
        StatusCode::OK,
        json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "history",
            "total": entries.len(),
            "link": [{"relation": "self", "url": format!("{base}/{resource_type}/{id}/_history")}],
            "entry": entries,
        }),
    )
}

fn not_found(resource_type: &str, id: &str) -> ApiResponse {
    ApiResponse::error(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        format!("{resource_type}/{id} is not known"),
    )
}

pub(crate) async fn search(
    intake: &Intake,
    resource_type: &str,
    request: &ApiRequest,
) -> ApiResponse {
    let count = match request.query_values("_count").next() {
        None => intake.config.default_page_size,
        Some(c) => match c.parse::<u32>() {
            Ok(c) => c.min(intake.config.max_page_size),
            Err(_) => return bad_param("_count", "must be a non-negative integer"),
        },
    };
    let mut query = match build_query(intake, resource_type, &request.query, count) {
        Ok(q) => q,
        Err(answer) => return answer,
    };
    if let Some(tag) = tenancy::search_restriction(request.principal.as_deref()) {
        query.params.push(("_tag".into(), vec![tag]));
    }
    let result = match intake.store.search(resource_type, &query).await {
        Ok(r) => r,
        Err(err) => return store_failure(&err),
    };
    let base = &request.base_url;
    let link_for = |offset: u32| {
        let mut parts: Vec<String> = request
            .query
            .iter()
            .filter(|(k, _)| k != "_offset" && k != "_count" && k != "_format")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        parts.push(format!("_count={count}"));
        parts.push(format!("_offset={offset}"));
        format!("{base}/{resource_type}?{}", parts.join("&"))
    };
    let mut links = vec![json!({"relation": "self", "url": link_for(query.offset)})];
    let next = query.offset as i64 + query.count as i64;
    if count > 0 && next < result.total {
        links.push(json!({"relation": "next", "url": link_for(next as u32)}));
    }
    if query.offset > 0 {
        links.push(json!({"relation": "previous",
            "url": link_for(query.offset.saturating_sub(count))}));
    }
    let entries: Vec<Value> = result
        .matches
        .iter()
        .map(|m| {
            json!({
                "fullUrl": format!("{base}/{}/{}", m.resource_type, m.id),
                "resource": m.resource,
                "search": {"mode": "match"}
            })
        })
        .collect();
    ApiResponse::json(
        StatusCode::OK,
        json!({
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "meta": {"lastUpdated": crate::store::instant_text(crate::store::now_millis())},
            "type": "searchset",
            "total": result.total,
            "link": links,
            "entry": entries,
        }),
    )
}

/// Turn query parameters into a store query; unknown parameters and bad values → 400.
pub(crate) fn build_query(
    _intake: &Intake,
    resource_type: &str,
    params: &[(String, String)],
    count: u32,
) -> Result<SearchQuery, ApiResponse> {
    let supported = supported_params(resource_type);
    let mut query = SearchQuery {
        count,
        ..Default::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "_count" | "_format" | "_pretty" => {}
            "_offset" => {
                query.offset = value
                    .parse()
                    .map_err(|_| bad_param("_offset", "must be a non-negative integer"))?
            }
            "_lastUpdated" => query.last_updated.extend(time_bounds(value)?),
            "_id" => query
                .params
                .push(("_id".into(), value.split(',').map(str::to_string).collect())),
            n if supported.contains(&n) => query.params.push((
                n.to_string(),
                value.split(',').map(|v| v.trim().to_string()).collect(),
            )),
            n => {
                let mut known: Vec<&str> = supported.to_vec();
                known.extend(RESULT_PARAMS);
                return Err(bad_param(
                    n,
                    &format!(
                        "is not a supported search parameter; supported: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(query)
}

fn bad_param(name: &str, why: &str) -> ApiResponse {
    ApiResponse::outcome(
        StatusCode::BAD_REQUEST,
        &OperationOutcome::from_issue(Issue::error(
            IssueType::NotSupported,
            format!("search parameter {name} {why}"),
        )),
    )
}

/// `_lastUpdated=[gt|ge|lt|le|eq]<date or instant>`.
fn time_bounds(value: &str) -> Result<Vec<TimeBound>, ApiResponse> {
    let (prefix, text) = match value.get(..2) {
        Some(p @ ("gt" | "ge" | "lt" | "le" | "eq")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let bad = || {
        bad_param(
            "_lastUpdated",
            "must be a date or instant with an optional prefix",
        )
    };
    let (start, end) = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        let m = t.timestamp_millis();
        (m, m)
    } else if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = d
            .and_hms_opt(0, 0, 0)
            .ok_or_else(bad)?
            .and_utc()
            .timestamp_millis();
        (start, start + 86_400_000 - 1)
    } else {
        return Err(bad());
    };
    Ok(match prefix {
        "gt" => vec![TimeBound::Gt(end)],
        "ge" => vec![TimeBound::Ge(start)],
        "lt" => vec![TimeBound::Lt(start)],
        "le" => vec![TimeBound::Le(end)],
        _ => vec![TimeBound::Ge(start), TimeBound::Le(end)],
    })
}

/// Percent-encode a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
