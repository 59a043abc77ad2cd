//! The spans spbridge opens, shaped after the OpenTelemetry semantic conventions.
//!
//! Owns: span names and attributes of the HTTP server span, the validation span and the
//! broker publish span; route templates (`/ServiceRequest/{id}`, never a raw path with ids);
//! the bounded resource-type and operation names used in them.
//! Must not: record request content. Only route templates, methods, status codes, resource
//! type names from the R4 list, configured profile URLs, counts, exchange names and message
//! ids go into spans.

use crate::definitions::R4_RESOURCE_TYPES;
use crate::outcome::{OperationOutcome, Severity};
use std::borrow::Cow;
use tracing::field::Empty;

/// Paths served as they are.
const STATIC_ROUTES: &[&str] = &[
    "metadata",
    "livez",
    "readyz",
    "metrics",
    "token",
    "oauth2/token",
    ".well-known/smart-configuration",
    ".well-known/jwks.json",
];

/// FHIR operations kept by name in route templates; others become `$operation`.
const KNOWN_OPERATIONS: &[&str] = &[
    "$process-message",
    "$validate",
    "$everything",
    "$meta",
    "$status",
];

/// Route label for paths no route template matches.
pub const UNMATCHED_ROUTE: &str = "unmatched";

fn resource_type(segment: &str) -> Option<&'static str> {
    R4_RESOURCE_TYPES.iter().copied().find(|t| *t == segment)
}

fn operation(segment: &str) -> &'static str {
    KNOWN_OPERATIONS
        .iter()
        .copied()
        .find(|op| *op == segment)
        .unwrap_or("$operation")
}

/// A resource type name safe for spans: from the R4 list, else `unknown`.
pub fn safe_resource_type(name: &str) -> &'static str {
    resource_type(name).unwrap_or("unknown")
}

/// The FHIR REST route template of a request path (`http.route`), with bounded values only.
pub fn route_template(path: &str) -> Cow<'static, str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Cow::Borrowed("/");
    }
    if let Some(route) = STATIC_ROUTES.iter().find(|r| **r == trimmed) {
        return Cow::Owned(format!("/{route}"));
    }
    let segs: Vec<&str> = trimmed.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Cow::Borrowed(UNMATCHED_ROUTE);
    }
    if let [op] = segs.as_slice() {
        if op.starts_with('$') {
            return Cow::Owned(format!("/{}", operation(op)));
        }
    }
    let Some(rtype) = resource_type(segs[0]) else {
        return Cow::Borrowed(UNMATCHED_ROUTE);
    };
    let tail = match &segs[1..] {
        [] => String::new(),
        ["_history"] => "/_history".into(),
        ["_search"] => "/_search".into(),
        [op] if op.starts_with('$') => format!("/{}", operation(op)),
        [_] => "/{id}".into(),
        [_, "_history"] => "/{id}/_history".into(),
        [_, "_history", _] => "/{id}/_history/{vid}".into(),
        [_, op] if op.starts_with('$') => format!("/{{id}}/{}", operation(op)),
        _ => return Cow::Borrowed(UNMATCHED_ROUTE),
    };
    Cow::Owned(format!("/{rtype}{tail}"))
}

/// Probe routes: counted in metrics, but no span (a trace every few seconds is noise).
pub fn is_probe(route: &str) -> bool {
    matches!(route, "/livez" | "/readyz")
}

/// The HTTP server span of one request (a disabled span for probes).
/// `http.response.status_code` and `trace_id` are recorded when known (see
/// `record_http_status`).
pub fn http_server(method: &'static str, route: &str, scheme: &'static str) -> tracing::Span {
    if is_probe(route) {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "http.server.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        url.scheme = scheme,
        http.response.status_code = Empty,
        trace_id = Empty,
        span_id = Empty,
        request_id = Empty,
        correlation_id = Empty,
    )
}

/// Record the answer on an HTTP server span (5xx marks the span as an error).
pub fn record_http_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// Run one validation inside a `validate` span that records the resource type, the profile
/// asked for and the error/warning counts, and count its error issues by code.
pub fn validation(
    resource_type: &str,
    profile: Option<&str>,
    validate: impl FnOnce() -> OperationOutcome,
) -> OperationOutcome {
    let rtype = safe_resource_type(resource_type);
    let span = tracing::info_span!(
        "validate",
        otel.name = %format!("validate {rtype}"),
        fhir.resource_type = rtype,
        fhir.profile = Empty,
        validation.errors = Empty,
        validation.warnings = Empty,
    );
    if let Some(profile) = profile {
        span.record("fhir.profile", profile);
    }
    let outcome = span.in_scope(validate);
    let mut errors = 0u64;
    let mut warnings = 0u64;
    for issue in &outcome.issues {
        if issue.severity.is_failure() {
            errors += 1;
            super::metrics::validation_failure(issue.code.as_code());
        } else if issue.severity == Severity::Warning {
            warnings += 1;
        }
    }
    span.record("validation.errors", errors);
    span.record("validation.warnings", warnings);
    outcome
}

/// The producer span of publishing one outbox row to RabbitMQ.
pub fn amqp_publish(exchange: &str, routing_key: &str, message_id: &str) -> tracing::Span {
    tracing::info_span!(
        "amqp.publish",
        otel.name = %format!("publish {exchange}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = "rabbitmq",
        messaging.operation = "publish",
        messaging.operation.type = "send",
        messaging.destination.name = %exchange,
        messaging.rabbitmq.destination.routing_key = %routing_key,
        messaging.message.id = %message_id,
        messaging.confirm = Empty,
    )
}

/// Record how the broker answered a publish (`ack`, `returned`, `nack`, `failed`).
pub fn record_publish_outcome(span: &tracing::Span, outcome: &'static str) {
    span.record("messaging.confirm", outcome);
    if outcome != "ack" {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", outcome);
    }
}

/// The consumer span of processing one AMQP delivery (a provider's Task update), a child of
/// the trace context in its headers when they carry one. `queue` is the queue consumed from.
pub fn amqp_process(
    queue: &str,
    message_id: Option<&str>,
    headers: Option<&lapin::types::FieldTable>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "amqp.process",
        otel.name = %format!("process {queue}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "rabbitmq",
        messaging.operation = "process",
        messaging.operation.type = "process",
        messaging.destination.name = %queue,
        messaging.message.id = message_id.unwrap_or(""),
        outcome = Empty,
    );
    if let Some(headers) = headers {
        super::propagation::set_parent_from_amqp(&span, headers);
    }
    span
}

/// Record how a delivery was handled (`applied`, `duplicate`, `rejected`, `dead_lettered`);
/// anything but `applied`/`duplicate` marks the span as an error.
pub fn record_process_outcome(span: &tracing::Span, outcome: &'static str) {
    span.record("outcome", outcome);
    if !matches!(outcome, "applied" | "duplicate") {
        span.record("otel.status_code", "error");
    }
}

/// The client span of an outgoing HTTP request (a rest-hook notification). Only the server
/// address and port are recorded, never the full URL (it may carry a subscriber's secret).
/// Inject its context into the request with `propagation::inject_http`; record the answer
/// with `record_http_status`.
pub fn http_client(method: &'static str, server_address: &str, server_port: u16) -> tracing::Span {
    tracing::info_span!(
        "http.client.request",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        server.address = %server_address,
        server.port = server_port,
        http.response.status_code = Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hide_ids() {
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template(""), "/");
        assert_eq!(route_template("/metadata"), "/metadata");
        assert_eq!(route_template("/readyz"), "/readyz");
        assert_eq!(route_template("/ServiceRequest"), "/ServiceRequest");
        assert_eq!(
            route_template("/ServiceRequest/abc-123"),
            "/ServiceRequest/{id}"
        );
        assert_eq!(
            route_template("/Task/1/_history/2"),
            "/Task/{id}/_history/{vid}"
        );
        assert_eq!(route_template("/Task/1/_history"), "/Task/{id}/_history");
        assert_eq!(route_template("/$process-message"), "/$process-message");
        assert_eq!(route_template("/$9434765919"), "/$operation");
        assert_eq!(route_template("/Task/$foo"), "/Task/$operation");
    }

    #[test]
    fn unknown_paths_are_one_label() {
        for p in [
            "/9434765919",
            "/Jane Smith",
            "/ServiceRequest/1/2/3/4",
            "/Patientx/1",
            "//x",
        ] {
            assert_eq!(route_template(p), UNMATCHED_ROUTE, "{p}");
        }
    }

    #[test]
    fn resource_types_are_bounded() {
        assert_eq!(safe_resource_type("ServiceRequest"), "ServiceRequest");
        assert_eq!(safe_resource_type("Jane Smith"), "unknown");
    }
}
