//! Shaping intake answers: `Prefer: return=…`, resource headers, store failures.
//!
//! Owns: parsing `Prefer`, `Location`/`ETag`/`Last-Modified`/`Link` headers for a
//! stored resource, and turning store errors into OperationOutcomes (never with
//! resource content).
//! Must not: decide whether a request succeeds.

use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::store::{StoreError, StoredResource};
use hyper::header::{self, HeaderName};
use hyper::StatusCode;
use serde_json::Value;

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReturnPreference {
    Minimal,
    Representation,
    OperationOutcome,
}

pub(crate) fn return_preference(request: &ApiRequest) -> ReturnPreference {
    let prefer = request
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("return="))
        .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
        .next();
    match prefer.as_deref() {
        Some("minimal") => ReturnPreference::Minimal,
        Some("operationoutcome") => ReturnPreference::OperationOutcome,
        _ => ReturnPreference::Representation,
    }
}

/// `W/"<version>"`.
pub(crate) fn etag(stored: &StoredResource) -> String {
    format!("W/\"{}\"", stored.version_id)
}

/// HTTP-date of `lastUpdated`.
pub(crate) fn http_date(millis: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// `<base>/Type/id/_history/v`.
pub(crate) fn versioned_location(base: &str, stored: &StoredResource) -> String {
    format!(
        "{base}/{}/{}/_history/{}",
        stored.resource_type, stored.id, stored.version_id
    )
}

/// A stored resource as the answer, per `Prefer`, with its headers.
pub(crate) fn resource_answer(
    request: &ApiRequest,
    status: StatusCode,
    stored: &StoredResource,
    note: &str,
) -> ApiResponse {
    let mut answer = match return_preference(request) {
        ReturnPreference::Minimal => ApiResponse::empty(status),
        ReturnPreference::Representation => ApiResponse::json(status, stored.resource.clone()),
        ReturnPreference::OperationOutcome => ApiResponse::outcome(
            status,
            &OperationOutcome::from_issue(Issue::information(IssueType::Informational, note)),
        ),
    };
    if status == StatusCode::CREATED || status == StatusCode::OK {
        answer = answer.with_header(
            header::LOCATION,
            &versioned_location(&request.base_url, stored),
        );
    }
    answer
        .with_header(header::ETAG, &etag(stored))
        .with_header(header::LAST_MODIFIED, &http_date(stored.last_updated))
}

/// `Link: <base/Task/id>; rel="related"` telling the referrer its Task.
pub(crate) fn task_link(answer: ApiResponse, base: &str, task_ref: &str) -> ApiResponse {
    answer
        .with_header(
            header::LINK,
            &format!("<{base}/{task_ref}>; rel=\"related\""),
        )
        .with_header(HeaderName::from_static("x-spbridge-task"), task_ref)
}

/// A store failure: 503 (transient), never resource content.
pub(crate) fn store_failure(err: &StoreError) -> ApiResponse {
    tracing::error!(error = %err, "store failure");
    ApiResponse::error(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueType::Transient,
        "the store is unavailable; nothing was saved; retry later",
    )
    .with_header(header::RETRY_AFTER, "5")
}

/// The body is required and must be a JSON object of the given resource type.
pub(crate) fn require_resource<'a>(
    request: &'a ApiRequest,
    resource_type: &str,
) -> Result<&'a Value, ApiResponse> {
    let Some(body) = request.body.as_ref() else {
        return Err(ApiResponse::error(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            format!("a {resource_type} resource is required in the body"),
        ));
    };
    match body.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(body),
        _ => Err(ApiResponse::outcome(
            StatusCode::BAD_REQUEST,
            &OperationOutcome::from_issue(
                Issue::error(
                    IssueType::Invalid,
                    format!("the body must be a {resource_type} resource"),
                )
                .at("resourceType"),
            ),
        )),
    }
}

/// 422 with the validator's issues.
pub(crate) fn unprocessable(outcome: &OperationOutcome) -> ApiResponse {
    ApiResponse::outcome(StatusCode::UNPROCESSABLE_ENTITY, outcome)
}
