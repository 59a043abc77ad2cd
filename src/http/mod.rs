//! HTTP transport for the FHIR REST API.
//!
//! Owns: the listener and its `Acceptor` seam (plain TCP, or rustls in `tls.rs`),
//! HTTP/1.1 + HTTP/2 serving (hyper-util auto builder), request ids and correlation
//! ids, the body limit (413), the in-flight limit (429), content negotiation
//! (406/415), JSON parsing (400), and rendering every error as an OperationOutcome.
//! Must not: know about referrals, FHIR resource types or the store — routes are
//! behind the `Routes` trait.

mod listener;
mod negotiate;
mod server;
mod tls;

use crate::outcome::{Issue, IssueType, OperationOutcome};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

pub use listener::{Acceptor, PlainAcceptor};
pub use server::{parse_query as parse_query_string, serve, HttpSettings};
pub use tls::{load_certificates, server_config, TlsAcceptor, TlsError, TlsSettings};

/// The FHIR JSON media type spbridge answers with.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A parsed request, ready for routing.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Path without query, percent-decoding not applied (FHIR ids are URL-safe).
    pub path: String,
    /// Query parameters in order, percent-decoded.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// Parsed JSON body, when one was sent.
    pub body: Option<Value>,
    /// `X-Request-ID` as sent, or generated.
    pub request_id: String,
    /// Whether the client sent `X-Request-ID` itself.
    pub request_id_from_client: bool,
    /// `X-Correlation-ID` as sent, or generated.
    pub correlation_id: String,
    /// W3C trace context from the request, if well-formed.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Absolute base URL of the service, no trailing slash.
    pub base_url: String,
    /// The verified caller; `None` when authentication is off (local development only).
    pub principal: Option<std::sync::Arc<crate::auth::Principal>>,
}

impl ApiRequest {
    /// A header value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Values of a query parameter.
    pub fn query_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a route answers.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Value>,
    /// Media type of the body; `None` = FHIR JSON.
    pub content_type: Option<&'static str>,
}

impl ApiResponse {
    pub fn json(status: StatusCode, body: Value) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Some(body),
            content_type: None,
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: None,
            content_type: None,
        }
    }

    pub fn outcome(status: StatusCode, outcome: &OperationOutcome) -> Self {
        ApiResponse::json(status, outcome.to_json())
    }

    /// A one-issue error OperationOutcome.
    pub fn error(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> Self {
        ApiResponse::outcome(
            status,
            &OperationOutcome::from_issue(Issue::error(code, diagnostics)),
        )
    }

    /// Add a header; values that are not valid header text are dropped.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

/// The application behind the listener.
pub trait Routes: Send + Sync + 'static {
    fn handle(&self, request: ApiRequest)
        -> Pin<Box<dyn Future<Output = ApiResponse> + Send + '_>>;
}
