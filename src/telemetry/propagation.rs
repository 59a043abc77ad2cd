//! W3C trace-context propagation (`traceparent`, `tracestate`).
//!
//! Owns: reading the trace context of a `tracing` span, making a span the child of a remote
//! context (an HTTP request's headers, an outbox row, an AMQP message), and carrying the
//! context in AMQP header tables.
//! Must not: decide which spans exist (see `spans`) or touch anything but the two W3C headers.
//!
//! Without an OpenTelemetry layer (trace export off) spans have no trace context: the
//! functions here then return `None` / do nothing, and callers pass the incoming
//! `traceparent` on unchanged.

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Header names.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// `(traceparent, tracestate)` of a context, when it holds a valid span context.
fn headers_of(cx: &Context) -> Option<(String, Option<String>)> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut map: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut map);
    let traceparent = map.remove(TRACEPARENT)?;
    let tracestate = map.remove(TRACESTATE).filter(|s| !s.is_empty());
    Some((traceparent, tracestate))
}

/// The trace context of the current span, as W3C header values.
pub fn current_traceparent() -> Option<(String, Option<String>)> {
    span_traceparent(&tracing::Span::current())
}

/// The trace context of `span`, as W3C header values.
pub fn span_traceparent(span: &tracing::Span) -> Option<(String, Option<String>)> {
    headers_of(&span.context())
}

/// The trace id (32 lower-case hex digits) of `span`, when it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Parse W3C header values into a remote context (`None` when `traceparent` is malformed).
pub fn remote_context(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert(TRACEPARENT.into(), traceparent.trim().to_string());
    if let Some(ts) = tracestate {
        map.insert(TRACESTATE.into(), ts.trim().to_string());
    }
    let cx = TraceContextPropagator::new().extract(&map);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Make `span` a child of the remote context. Call before the span is first entered; a
/// malformed `traceparent` is ignored (the span starts a new trace).
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    if let Some(cx) = remote_context(traceparent, tracestate) {
        if let Err(err) = span.set_parent(cx) {
            tracing::debug!(error = %err, "could not continue the remote trace");
        }
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Write `traceparent`/`tracestate` into AMQP headers (replacing earlier values).
pub fn inject_amqp(headers: &mut FieldTable, traceparent: &str, tracestate: Option<&str>) {
    if tracestate.is_none() && headers.contains_key(TRACESTATE) {
        let mut kept = headers.inner().clone();
        kept.retain(|k, _| k.as_str() != TRACESTATE);
        *headers = FieldTable::from(kept);
    }
    headers.insert(TRACEPARENT.into(), text(traceparent));
    if let Some(ts) = tracestate {
        headers.insert(TRACESTATE.into(), text(ts));
    }
}

/// Write the trace context of `span` into AMQP headers; returns false (headers untouched)
/// when the span has none.
pub fn inject_span_amqp(headers: &mut FieldTable, span: &tracing::Span) -> bool {
    match span_traceparent(span) {
        Some((tp, ts)) => {
            inject_amqp(headers, &tp, ts.as_deref());
            true
        }
        None => false,
    }
}

/// `(traceparent, tracestate)` from AMQP headers, when a well-formed traceparent is there.
pub fn extract_amqp(headers: &FieldTable) -> Option<(String, Option<String>)> {
    let traceparent = header_text(headers, TRACEPARENT)?;
    remote_context(&traceparent, None)?;
    Some((traceparent, header_text(headers, TRACESTATE)))
}

/// Make `span` (a consumer's receive/process span) a child of the context in AMQP headers.
pub fn set_parent_from_amqp(span: &tracing::Span, headers: &FieldTable) {
    if let Some((tp, ts)) = extract_amqp(headers) {
        set_remote_parent(span, &tp, ts.as_deref());
    }
}

/// Write the trace context of `span` into outgoing HTTP headers (a notification request);
/// returns false (headers untouched) when the span has none.
pub fn inject_http(headers: &mut hyper::HeaderMap, span: &tracing::Span) -> bool {
    let Some((tp, ts)) = span_traceparent(span) else {
        return false;
    };
    let Ok(tp) = hyper::header::HeaderValue::from_str(&tp) else {
        return false;
    };
    headers.insert(TRACEPARENT, tp);
    headers.remove(TRACESTATE);
    if let Some(ts) = ts.and_then(|t| hyper::header::HeaderValue::from_str(&t).ok()) {
        headers.insert(TRACESTATE, ts);
    }
    true
}

/// The span id (16 lower-case hex digits) of `span`, when it has one.
pub fn span_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.span_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn remote_context_parses_w3c() {
        let cx = remote_context(TP, Some("vendor=x")).expect("valid");
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote());
        assert_eq!(headers_of(&cx).map(|h| h.0).as_deref(), Some(TP));
        assert!(remote_context("00-zz-00f067aa0ba902b7-01", None).is_none());
        assert!(remote_context("", None).is_none());
    }

    #[test]
    fn amqp_round_trip() {
        let mut headers = FieldTable::default();
        assert_eq!(extract_amqp(&headers), None);
        inject_amqp(&mut headers, TP, Some("a=b"));
        assert_eq!(
            extract_amqp(&headers),
            Some((TP.to_string(), Some("a=b".to_string())))
        );
        inject_amqp(&mut headers, TP, None);
        assert_eq!(extract_amqp(&headers), Some((TP.to_string(), None)));
        headers.insert(TRACEPARENT.into(), text("garbage"));
        assert_eq!(extract_amqp(&headers), None);
    }

    #[test]
    fn no_context_without_a_trace_layer() {
        let span = tracing::info_span!("x");
        assert_eq!(span_traceparent(&span), None);
        assert_eq!(trace_id(&span), None);
        set_remote_parent(&span, TP, None);
    }
}
