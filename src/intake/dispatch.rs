//! Path and method dispatch of the FHIR REST API.
//!
//! Owns: mapping `(method, path)` to a handler, and 404/405 answers.
//! Must not: implement any interaction itself.

use super::{
    capability, create, health, message, read, subscription, task_update, transaction, Intake,
};
use crate::http::{ApiRequest, ApiResponse, Routes};
use crate::outcome::IssueType;
use hyper::{header, Method, StatusCode};
use std::future::Future;
use std::pin::Pin;

/// Resource types that can be read (`GET /{type}/{id}`).
pub const READABLE_TYPES: &[&str] = &[
    "ServiceRequest",
    "Task",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "HealthcareService",
    "Subscription",
];

/// Resource types that can be searched.
pub const SEARCHABLE_TYPES: &[&str] = &["ServiceRequest", "Task"];

impl Routes for Intake {
    fn handle(
        &self,
        request: ApiRequest,
    ) -> Pin<Box<dyn Future<Output = ApiResponse> + Send + '_>> {
        Box::pin(self.dispatch(request))
    }
}

impl Intake {
    async fn dispatch(&self, request: ApiRequest) -> ApiResponse {
        let segments: Vec<String> = request
            .path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = request.method.clone();
        match (segs.as_slice(), &method) {
            ([], &Method::POST) => transaction::handle(self, request).await,
            ([], _) => not_allowed("POST"),
            (["metadata"], &Method::GET) => capability::handle(self, &request),
            (["metadata"], _) => not_allowed("GET"),
            (["openapi.json"], &Method::GET) => super::openapi_response(&request.base_url, false),
            (["openapi.json"], _) => not_allowed("GET"),
            (["livez"], &Method::GET) => health::livez(),
            (["livez"], _) => not_allowed("GET"),
            (["readyz"], &Method::GET) => health::readyz(self).await,
            (["readyz"], _) => not_allowed("GET"),
            (["$process-message"], &Method::POST) => message::handle(self, request).await,
            (["$process-message"], _) => not_allowed("POST"),
            (["ServiceRequest"], &Method::POST) => create::handle(self, request).await,
            (["ServiceRequest"], &Method::GET) => {
                read::search(self, "ServiceRequest", &request).await
            }
            (["ServiceRequest"], _) => not_allowed("GET, POST"),
            (["Task"], &Method::GET) => read::search(self, "Task", &request).await,
            (["Subscription"], &Method::POST) => subscription::create(self, request).await,
            (["Subscription"], _) => not_allowed("POST"),
            (["Task", id], &Method::PUT) => {
                let id = id.to_string();
                task_update::put(self, &id, request).await
            }
            (["Task", id], &Method::PATCH) => {
                let id = id.to_string();
                task_update::patch(self, &id, request).await
            }
            ([t, id, "_history"], &Method::GET) if READABLE_TYPES.contains(t) => {
                read::history(self, t, id, &request).await
            }
            ([t, _, "_history"], _) if READABLE_TYPES.contains(t) => not_allowed("GET"),
            ([t], _) if SEARCHABLE_TYPES.contains(t) || READABLE_TYPES.contains(t) => {
                if SEARCHABLE_TYPES.contains(t) {
                    not_allowed("GET")
                } else {
                    unknown_path()
                }
            }
            ([t, id], &Method::GET) if READABLE_TYPES.contains(t) => {
                read::read(self, t, id, None, &request).await
            }
            (["Task", _], _) => not_allowed("GET, PUT, PATCH"),
            ([t, _], _) if READABLE_TYPES.contains(t) => not_allowed("GET"),
            ([t, id, "_history", vid], &Method::GET) if READABLE_TYPES.contains(t) => {
                read::read(self, t, id, Some(vid), &request).await
            }
            ([t, _, "_history", _], _) if READABLE_TYPES.contains(t) => not_allowed("GET"),
            _ => unknown_path(),
        }
    }
}

fn not_allowed(allow: &str) -> ApiResponse {
    ApiResponse::error(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        format!("method not allowed here; allowed: {allow}"),
    )
    .with_header(header::ALLOW, allow)
}

fn unknown_path() -> ApiResponse {
    ApiResponse::error(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        "no such endpoint; see /metadata for what this server implements",
    )
}
