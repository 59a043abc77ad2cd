//! `POST /ServiceRequest`: a referral sent as a single resource.
//!
//! Owns: conditional create (`If-None-Exist`), the identifier duplicate guard
//! answer (200 with the existing referral), validation (422), and the 201 answer
//! with `Location`, `ETag`, `Last-Modified` and a `Link` to the new Task.
//! Must not: write anything except through `Intake::accept`.

use super::accept::{AcceptOutcome, Submission};
use super::read::build_query;
use super::respond::{require_resource, resource_answer, store_failure, task_link, unprocessable};
use super::Intake;
use crate::http::parse_query_string;
use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::{IssueType, OperationOutcome};
use hyper::StatusCode;
use serde_json::{Map, Value};

pub(crate) async fn handle(intake: &Intake, request: ApiRequest) -> ApiResponse {
    let body = match require_resource(&request, "ServiceRequest") {
        Ok(body) => body.clone(),
        Err(answer) => return answer,
    };
    if let Some(condition) = request.header("if-none-exist") {
        let params = parse_query_string(condition.trim_start_matches('?'));
        let query = match build_query(intake, "ServiceRequest", &params, 2) {
            Ok(q) => q,
            Err(answer) => return answer,
        };
        match intake.store.search("ServiceRequest", &query).await {
            Err(err) => return store_failure(&err),
            Ok(found) if found.total > 1 => {
                return ApiResponse::error(
                    StatusCode::PRECONDITION_FAILED,
                    IssueType::MultipleMatches,
                    "If-None-Exist matches more than one ServiceRequest",
                )
            }
            Ok(found) => {
                if let Some(existing) = found.matches.into_iter().next() {
                    let task = first_task_of(intake, &existing.id).await;
                    let answer = resource_answer(
                        &request,
                        StatusCode::OK,
                        &existing,
                        "a matching ServiceRequest already exists; nothing was created",
                    );
                    return match task {
                        Some(t) => task_link(answer, &request.base_url, &t),
                        None => answer,
                    };
                }
            }
        }
    }
    // The identifier duplicate guard is the commit itself: it claims the identifier's key
    // and answers `Duplicate` (200 with the existing referral below) when a retry finds it
    // taken. No look-up first: that was one more store round trip for every referral.
    let mut outcome = OperationOutcome::new();
    intake.validate_resource(&body, None, &mut outcome);
    if outcome.has_errors() {
        return unprocessable(&outcome);
    }
    let mut service_request = body;
    let id = crate::store::new_id();
    if let Value::Object(map) = &mut service_request {
        map.insert("id".into(), Value::String(id.clone()));
    }
    let submission = Submission {
        service_request_id: id,
        service_request,
        companions: Vec::new(),
        extra_keys: Vec::new(),
        extra_refs: Map::new(),
        correlation_id: request.correlation_id.clone(),
        traceparent: request.traceparent.clone(),
        tracestate: request.tracestate.clone(),
        base_url: request.base_url.clone(),
        principal: request.principal.clone(),
    };
    match intake.accept(submission).await {
        Err(err) => store_failure(&err),
        Ok(AcceptOutcome::Duplicate(refs)) => existing_answer(intake, &request, &refs).await,
        Ok(AcceptOutcome::Accepted(accepted)) => {
            let note = format!(
                "created ServiceRequest/{} and Task/{} for provider {}",
                accepted.service_request.id, accepted.task.id, accepted.provider.id
            );
            let answer = resource_answer(
                &request,
                StatusCode::CREATED,
                &accepted.service_request,
                &note,
            );
            task_link(answer, &request.base_url, &accepted.task.reference())
        }
    }
}

/// 200 with the referral an earlier request created.
pub(crate) async fn existing_answer(
    intake: &Intake,
    request: &ApiRequest,
    refs: &Value,
) -> ApiResponse {
    let sr_ref = refs
        .get("serviceRequest")
        .and_then(Value::as_str)
        .unwrap_or("");
    let id = sr_ref.strip_prefix("ServiceRequest/").unwrap_or(sr_ref);
    match intake.store.read("ServiceRequest", id).await {
        Err(err) => store_failure(&err),
        Ok(None) => ApiResponse::error(
            StatusCode::CONFLICT,
            IssueType::Duplicate,
            "this referral was already received but its ServiceRequest is gone",
        ),
        Ok(Some(existing)) => {
            let answer = resource_answer(
                request,
                StatusCode::OK,
                &existing,
                "this referral was already received; nothing was created",
            );
            match refs.get("task").and_then(Value::as_str) {
                Some(task) => task_link(answer, &request.base_url, task),
                None => answer,
            }
        }
    }
}

async fn first_task_of(intake: &Intake, service_request_id: &str) -> Option<String> {
    let query = crate::store::SearchQuery {
        params: vec![(
            "based-on".into(),
            vec![format!("ServiceRequest/{service_request_id}")],
        )],
        last_updated: Vec::new(),
        count: 1,
        offset: 0,
    };
    let found = intake.store.search("Task", &query).await.ok()?;
    found.matches.first().map(|t| t.reference())
}
