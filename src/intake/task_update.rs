//! `PUT /Task/{id}` and `PATCH /Task/{id}`: a provider (or the referrer, to cancel)
//! changes a referral's Task over HTTP.
//!
//! Owns: `If-Match` (required for PUT: 428 without, 412 when stale), JSON Patch
//! (`application/json-patch+json`) applied to the current version, and turning
//! `workflow::UpdateError` into a status code and OperationOutcome (409 names an
//! illegal transition). `X-Request-ID` sent by the client makes a retry safe.
//! Must not: change anything except through `Workflow::apply`.

use super::respond::{require_resource, resource_answer, store_failure};
use super::Intake;
use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::workflow::{Caller, TaskUpdate, UpdateError, UpdateOutcome};
use hyper::StatusCode;
use serde_json::Value;

/// Parse `W/"3"`, `"3"` or `3`.
fn parse_if_match(value: &str) -> Option<i64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"').parse().ok()
}

fn if_match(request: &ApiRequest, required: bool) -> Result<Option<i64>, ApiResponse> {
    match request.header("if-match") {
        None if required => Err(ApiResponse::error(
            StatusCode::PRECONDITION_REQUIRED,
            IssueType::Required,
            "PUT /Task/{id} needs If-Match with the version you read (ETag W/\"n\")",
        )),
        None => Ok(None),
        Some(v) => parse_if_match(v).map(Some).ok_or_else(|| {
            ApiResponse::error(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                "If-Match must be an ETag of the form W/\"<version>\"",
            )
        }),
    }
}

pub(crate) async fn put(intake: &Intake, id: &str, request: ApiRequest) -> ApiResponse {
    let expected = match if_match(&request, true) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let proposed = match require_resource(&request, "Task") {
        Ok(body) => body.clone(),
        Err(answer) => return answer,
    };
    apply(intake, id, proposed, expected, &request).await
}

pub(crate) async fn patch(intake: &Intake, id: &str, request: ApiRequest) -> ApiResponse {
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json-patch+json")
    {
        return ApiResponse::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "PATCH /Task/{id} takes a JSON Patch (Content-Type: application/json-patch+json)",
        );
    }
    let expected = match if_match(&request, false) {
        Ok(v) => v,
        Err(answer) => return answer,
    };
    let operations: json_patch::Patch = match request.body.clone().map(serde_json::from_value) {
        Some(Ok(p)) => p,
        _ => {
            return ApiResponse::error(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                "the body must be a JSON Patch document (an array of operations)",
            )
        }
    };
    let current = match intake.store.read("Task", id).await {
        Err(err) => return store_failure(&err),
        Ok(None) => return not_found(id),
        Ok(Some(c)) => c,
    };
    if !crate::workflow::tenancy::visible(request.principal.as_deref(), &current.resource) {
        return not_found(id);
    }
    let mut proposed = current.resource.clone();
    if let Err(err) = json_patch::patch(&mut proposed, &operations) {
        return ApiResponse::outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            &OperationOutcome::from_issue(Issue::error(
                IssueType::Processing,
                format!("the JSON Patch cannot be applied: {err}"),
            )),
        );
    }
    // Patch what you read: without If-Match, the version patched is the one expected.
    let expected = expected.or(Some(current.version_id));
    apply(intake, id, proposed, expected, &request).await
}

async fn apply(
    intake: &Intake,
    id: &str,
    proposed: Value,
    expected: Option<i64>,
    request: &ApiRequest,
) -> ApiResponse {
    let update = TaskUpdate {
        task_id: id.to_string(),
        proposed,
        expected_version: expected,
        caller: Caller::Http(request.principal.clone()),
        message_id: request
            .request_id_from_client
            .then(|| request.request_id.clone()),
        correlation_id: request.correlation_id.clone(),
        traceparent: request.traceparent.clone(),
        tracestate: request.tracestate.clone(),
        base_url: request.base_url.clone(),
    };
    let result = intake.workflow.apply(&update).await;
    crate::telemetry::metrics::task_update(
        "http",
        match &result {
            Ok(UpdateOutcome::Applied(_)) => "applied",
            Ok(UpdateOutcome::Duplicate { .. }) => "duplicate",
            Err(_) => "rejected",
        },
    );
    match result {
        Ok(UpdateOutcome::Applied(applied)) => resource_answer(
            request,
            StatusCode::OK,
            &applied.task,
            &format!("Task/{id} is now {}", applied.to),
        ),
        Ok(UpdateOutcome::Duplicate { .. }) => match intake.store.read("Task", id).await {
            Ok(Some(task)) => resource_answer(
                request,
                StatusCode::OK,
                &task,
                "this request was applied before; nothing changed",
            ),
            Ok(None) => not_found(id),
            Err(err) => store_failure(&err),
        },
        Err(UpdateError::Store(err)) => store_failure(&err),
        Err(err) => {
            tracing::info!(task = %id, reason = err.detail_code().unwrap_or("refused"),
                correlation_id = %request.correlation_id, "task update refused");
            ApiResponse::outcome(err.http_status(), &err.outcome())
        }
    }
}

fn not_found(id: &str) -> ApiResponse {
    ApiResponse::error(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        format!("Task/{id} is not known"),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_if_match;

    #[test]
    fn etags_parse() {
        assert_eq!(parse_if_match("W/\"3\""), Some(3));
        assert_eq!(parse_if_match("\"12\""), Some(12));
        assert_eq!(parse_if_match("7"), Some(7));
        assert_eq!(parse_if_match("W/\"x\""), None);
    }
}
