//! `POST /$process-message`: a BaRS-style referral message Bundle.
//!
//! Owns: checking the message (MessageHeader first, event
//! `servicerequest-request`, focus the ServiceRequest), `X-Request-ID`
//! de-duplication (the same id with the same body → the original answer; with a
//! different body → 409 `duplicate`), and the response message Bundle
//! (MessageHeader.response `ok`, focus the Task).
//! Must not: store anything except through `Intake::accept`.

use super::accept::{identifier_keys, AcceptOutcome, Companion, Submission};
use super::respond::{require_resource, store_failure, task_link, unprocessable};
use super::transaction::{prepare_entries, split_referral};
use super::{Intake, EVENT_SERVICEREQUEST_REQUEST, MESSAGE_EVENTS_SYSTEM};
use crate::http::{ApiRequest, ApiResponse};
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::store::{instant_text, now_millis, StoredResource};
use hyper::StatusCode;
use serde_json::{json, Map, Value};

/// FNV-1a over the body text: tells a retry from a different message.
fn body_hash(body: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.to_string().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) async fn handle(intake: &Intake, request: ApiRequest) -> ApiResponse {
    let bundle = match require_resource(&request, "Bundle") {
        Ok(b) => b.clone(),
        Err(answer) => return answer,
    };
    let mut outcome = OperationOutcome::new();
    if bundle.get("type").and_then(Value::as_str) != Some("message") {
        outcome.push(
            Issue::error(IssueType::Invalid, "Bundle.type must be message").at("Bundle.type"),
        );
        return ApiResponse::outcome(StatusCode::BAD_REQUEST, &outcome);
    }
    let entries: Vec<Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let header = entries
        .first()
        .and_then(|e| e.get("resource"))
        .cloned()
        .unwrap_or(Value::Null);
    if header.get("resourceType").and_then(Value::as_str) != Some("MessageHeader") {
        outcome.push(
            Issue::error(
                IssueType::Structure,
                "the first entry must be a MessageHeader",
            )
            .at("Bundle.entry[0].resource"),
        );
        return ApiResponse::outcome(StatusCode::BAD_REQUEST, &outcome);
    }
    let event = header
        .pointer("/eventCoding/code")
        .and_then(Value::as_str)
        .unwrap_or("");
    if event != EVENT_SERVICEREQUEST_REQUEST {
        outcome.push(
            Issue::error(
                IssueType::NotSupported,
                format!("event {event:?} is not supported; only {EVENT_SERVICEREQUEST_REQUEST}"),
            )
            .at("Bundle.entry[0].resource.eventCoding.code"),
        );
        return unprocessable(&outcome);
    }
    let request_header_id = header
        .get("id")
        .and_then(Value::as_str)
        .or_else(|| bundle.get("id").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let hash = body_hash(&bundle);
    let mut extra_keys = Vec::new();
    if request.request_id_from_client {
        let key = format!("process-message|{}", request.request_id);
        match intake.find_duplicate(std::slice::from_ref(&key)).await {
            Err(err) => return store_failure(&err),
            Ok(Some(refs)) => return replay(intake, &request, &refs, &hash).await,
            Ok(None) => {}
        }
        extra_keys.push(key);
    }
    // The focus must be the ServiceRequest.
    let focus = header
        .pointer("/focus/0/reference")
        .and_then(Value::as_str)
        .unwrap_or("");
    let focus_is_sr = entries.iter().skip(1).any(|e| {
        e.get("fullUrl").and_then(Value::as_str) == Some(focus)
            && e.pointer("/resource/resourceType").and_then(Value::as_str) == Some("ServiceRequest")
    });
    if !focus_is_sr {
        outcome.push(
            Issue::error(
                IssueType::Invalid,
                "MessageHeader.focus must reference the ServiceRequest entry's fullUrl",
            )
            .at("Bundle.entry[0].resource.focus[0]"),
        );
    }
    let assign = |_index: usize, entry: &Value| -> Result<Option<String>, Issue> {
        let full = entry.get("fullUrl").and_then(Value::as_str).unwrap_or("");
        let own = entry.pointer("/resource/id").and_then(Value::as_str);
        let is_sr = entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            == Some("ServiceRequest");
        match own {
            Some(id) if !is_sr && !full.starts_with("urn:") && valid_id(id) => {
                Ok(Some(id.to_string()))
            }
            _ => Ok(None),
        }
    };
    let prepared = prepare_entries(&entries, 1, &assign, &mut outcome);
    let Some((sr, companions)) = split_referral(prepared, &mut outcome) else {
        return unprocessable(&outcome);
    };
    if outcome.has_errors() {
        return unprocessable(&outcome);
    }
    match intake.find_duplicate(&identifier_keys(&sr.resource)).await {
        Err(err) => return store_failure(&err),
        Ok(Some(refs)) => return replay(intake, &request, &refs, &hash).await,
        Ok(None) => {}
    }
    intake.validate_resource(&header, Some("Bundle.entry[0].resource"), &mut outcome);
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
    extra_refs.insert("requestHeader".into(), json!(request_header_id));
    extra_refs.insert("bodyHash".into(), json!(hash));
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
        extra_keys,
        extra_refs,
        correlation_id: request.correlation_id.clone(),
        traceparent: request.traceparent.clone(),
        tracestate: request.tracestate.clone(),
        base_url: request.base_url.clone(),
        principal: request.principal.clone(),
    };
    match intake.accept(submission).await {
        Err(err) => store_failure(&err),
        Ok(AcceptOutcome::Duplicate(refs)) => replay(intake, &request, &refs, &hash).await,
        Ok(AcceptOutcome::Accepted(accepted)) => {
            let body = response_message(intake, &request, &request_header_id, &accepted.task);
            task_link(
                ApiResponse::json(StatusCode::OK, body),
                &request.base_url,
                &accepted.task.reference(),
            )
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The answer to a message that was already processed.
async fn replay(intake: &Intake, request: &ApiRequest, refs: &Value, hash: &str) -> ApiResponse {
    let same_request = refs.get("bodyHash").and_then(Value::as_str) == Some(hash);
    let by_request_id = request.request_id_from_client
        && intake
            .store
            .idempotency_refs(&format!("process-message|{}", request.request_id))
            .await
            .ok()
            .flatten()
            .is_some();
    if by_request_id && !same_request {
        return ApiResponse::error(
            StatusCode::CONFLICT,
            IssueType::Duplicate,
            "X-Request-ID was already used for a different message",
        );
    }
    let task_ref = refs.get("task").and_then(Value::as_str).unwrap_or("");
    let task_id = task_ref.strip_prefix("Task/").unwrap_or(task_ref);
    let header_id = refs
        .get("requestHeader")
        .and_then(Value::as_str)
        .unwrap_or("");
    match intake.store.read("Task", task_id).await {
        Err(err) => store_failure(&err),
        Ok(None) => ApiResponse::error(
            StatusCode::CONFLICT,
            IssueType::Duplicate,
            "this referral was already received",
        ),
        Ok(Some(task)) => {
            let body = response_message(intake, request, header_id, &task);
            task_link(
                ApiResponse::json(StatusCode::OK, body),
                &request.base_url,
                task_ref,
            )
            .with_header(
                hyper::header::HeaderName::from_static("x-spbridge-duplicate"),
                "true",
            )
        }
    }
}

/// Response message: MessageHeader (response ok, focus the Task) + the Task.
fn response_message(
    intake: &Intake,
    request: &ApiRequest,
    request_header_id: &str,
    task: &StoredResource,
) -> Value {
    let task_url = format!("{}/Task/{}", request.base_url, task.id);
    let header_id = uuid::Uuid::new_v4().to_string();
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "message",
        "timestamp": instant_text(now_millis()),
        "entry": [
            {"fullUrl": format!("urn:uuid:{header_id}"), "resource": {
                "resourceType": "MessageHeader",
                "id": header_id,
                "eventCoding": {"system": MESSAGE_EVENTS_SYSTEM, "code": EVENT_SERVICEREQUEST_REQUEST},
                "source": {"name": "spbridge", "endpoint": intake.config.source_endpoint},
                "response": {"identifier": request_header_id, "code": "ok"},
                "focus": [{"reference": task_url}],
            }},
            {"fullUrl": task_url, "resource": task.resource},
        ]
    })
}
