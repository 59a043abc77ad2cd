//! The accept loop and the per-request pipeline in front of `Routes`.
//!
//! Owns: accepting connections, serving HTTP/1.1 and HTTP/2 on each, graceful
//! shutdown (stop accepting, let in-flight requests finish within a grace period),
//! and the request pipeline: ids → limits → negotiation → body → routes → response.
//! Must not: interpret FHIR content.

use super::negotiate::{
    accept_allows_json, acceptable_id, acceptable_traceparent, content_type_is_form,
    content_type_is_json, form_to_json, format_allows_json, TOKEN_PATH,
};
use super::{Acceptor, ApiRequest, ApiResponse, Routes, FHIR_JSON};
use crate::outcome::IssueType;
use crate::telemetry::{metrics, propagation, spans};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Listener settings (from `[http]`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub base_url: String,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    /// TLS handshake, and each HTTP/1 request's headers, must arrive within this.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this (else 408).
    pub body_read_timeout: Duration,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
    /// Gauges refreshed when `/metrics` is scraped (outbox backlog, broker state).
    pub metrics_refresh: Option<metrics::Scrape>,
}

struct Shared {
    routes: Arc<dyn Routes>,
    settings: HttpSettings,
    in_flight: Arc<Semaphore>,
    /// `url.scheme` of the server spans.
    scheme: &'static str,
}

/// Serve until `shutdown` completes, then drain connections for the grace period.
pub async fn serve<A: Acceptor>(
    listener: TcpListener,
    acceptor: A,
    routes: Arc<dyn Routes>,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = Arc::new(acceptor);
    metrics::install();
    let scheme = if settings.base_url.starts_with("https:") {
        "https"
    } else {
        "http"
    };
    let shared = Arc::new(Shared {
        in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
        routes,
        settings,
        scheme,
    });
    let connections = Arc::new(Semaphore::new(shared.settings.max_connections));
    let handshake_timeout = shared.settings.header_read_timeout;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the connection limit: close at once rather than queue without bound.
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    metrics::connection_refused("max_connections");
                    drop(stream);
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permit = permit;
                    // A client must start talking (ClientHello or request line) within the
                    // header timeout; hyper's own timer only starts at the first byte.
                    // (`readable()` may report ready with nothing to read: peek for a byte.)
                    // One deadline covers both the first byte and the TLS handshake.
                    let deadline = tokio::time::Instant::now() + handshake_timeout;
                    let mut first = [0u8; 1];
                    let spoke = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
                    if !matches!(spoke, Ok(Ok(n)) if n > 0) {
                        metrics::connection_refused("handshake_timeout");
                        return;
                    }
                    let io = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(io)) => io,
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "connection handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics::connection_refused("handshake_timeout");
                            tracing::debug!("connection handshake timed out");
                            return;
                        }
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(shared, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
                    if let Err(err) = watcher.watch(conn).await {
                        tracing::debug!(error = %err, "connection ended with error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let grace = shared.settings.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("http shutdown grace period elapsed with connections still open");
    }
}

/// `GET /metrics`: the Prometheus text exposition, unauthenticated, outside the FHIR routes.
async fn metrics_response(shared: &Shared) -> Response<Full<Bytes>> {
    if let Some(refresh) = &shared.settings.metrics_refresh {
        refresh.refresh().await;
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics::render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        return metrics_response(&shared).await;
    }
    let started = Instant::now();
    let request_id = header_id(&req, "x-request-id");
    let correlation_id = header_id(&req, "x-correlation-id");
    let client_request_id = request_id.is_some();
    let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let correlation_id = correlation_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let method_label = metrics::method_label(&method);
    let route = spans::route_template(&path);
    let span = server_span(&shared, &req, method_label, &route);
    span.record("request_id", request_id.as_str());
    span.record("correlation_id", correlation_id.as_str());
    let answer = pipeline(
        &shared,
        req,
        request_id.clone(),
        client_request_id,
        correlation_id.clone(),
    )
    .instrument(span.clone())
    .await;
    let status = answer.status.as_u16();
    spans::record_http_status(&span, status);
    span.in_scope(|| {
        tracing::info!(method = %method, path = %path, status,
            request_id = %request_id, correlation_id = %correlation_id, "request")
    });
    metrics::http_request(
        &route,
        method_label,
        status,
        started.elapsed().as_secs_f64(),
    );
    render(answer, &request_id, &correlation_id)
}

/// The server span of a request, continuing the caller's W3C trace when it sent one.
fn server_span(
    shared: &Shared,
    req: &Request<Incoming>,
    method: &'static str,
    route: &str,
) -> tracing::Span {
    let span = spans::http_server(method, route, shared.scheme);
    let traceparent = req
        .headers()
        .get(propagation::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| acceptable_traceparent(t));
    let tracestate = req
        .headers()
        .get(propagation::TRACESTATE)
        .and_then(|v| v.to_str().ok())
        .filter(|t| t.len() <= 512);
    if let Some(tp) = traceparent {
        propagation::set_remote_parent(&span, tp, tracestate);
    }
    // The exported trace id; without export, the caller's (so logs still correlate).
    let trace_id = propagation::trace_id(&span).or_else(|| {
        traceparent
            .and_then(|tp| propagation::remote_context(tp, None))
            .map(|cx| {
                use opentelemetry::trace::TraceContextExt;
                cx.span().span_context().trace_id().to_string()
            })
    });
    if let Some(id) = trace_id {
        span.record("trace_id", id.as_str());
    }
    if let Some(id) = propagation::span_id(&span) {
        span.record("span_id", id.as_str());
    }
    span
}

fn header_id(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| acceptable_id(v))
        .map(str::to_string)
}

async fn pipeline(
    shared: &Shared,
    req: Request<Incoming>,
    request_id: String,
    request_id_from_client: bool,
    correlation_id: String,
) -> ApiResponse {
    let (parts, body) = req.into_parts();
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let format = query
        .iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.as_str());
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    if !format_allows_json(format) || !accept_allows_json(accept) {
        return ApiResponse::error(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            "only FHIR JSON (application/fhir+json) is available",
        );
    }
    let max = shared.settings.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        // Read (and discard) a moderately oversized body before answering, so the client is
        // not cut off mid-upload and reliably sees the 413; anything larger is not read.
        // The drain is bounded in time as well as size: a trickled body is cut off.
        if declared.is_some_and(|len| len <= DRAIN_LIMIT as u64) {
            let draining = Limited::new(body, DRAIN_LIMIT).collect();
            let _ = tokio::time::timeout(shared.settings.body_read_timeout, draining).await;
        }
        return too_large(max);
    }
    let reading = Limited::new(body, max).collect();
    let bytes = match tokio::time::timeout(shared.settings.body_read_timeout, reading).await {
        Err(_) => {
            return ApiResponse::error(
                StatusCode::REQUEST_TIMEOUT,
                IssueType::Timeout,
                format!(
                    "the request body did not arrive within {} ms",
                    shared.settings.body_read_timeout.as_millis()
                ),
            )
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => return too_large(max),
        Ok(Err(_)) => {
            return ApiResponse::error(
                StatusCode::BAD_REQUEST,
                IssueType::Incomplete,
                "request body could not be read",
            )
        }
    };
    let mut body = None;
    if !bytes.is_empty() {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if content_type_is_form(content_type) && parts.uri.path() == TOKEN_PATH {
            // OAuth token requests are forms; handed on as a JSON object of strings.
            body = Some(form_to_json(&bytes));
        } else if !content_type_is_json(content_type) {
            return ApiResponse::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueType::NotSupported,
                "request bodies must be FHIR JSON (Content-Type: application/fhir+json)",
            );
        } else {
            match crate::fhir_json::parse(&bytes) {
                Ok(value) => body = Some(value),
                Err(err) => {
                    return ApiResponse::error(
                        StatusCode::BAD_REQUEST,
                        IssueType::Structure,
                        format!("request body is not valid FHIR JSON: {err}"),
                    )
                }
            }
        }
    } else if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if content_type.is_some() && !content_type_is_json(content_type) {
            return ApiResponse::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueType::NotSupported,
                "request bodies must be FHIR JSON (Content-Type: application/fhir+json)",
            );
        }
    }
    let trace = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_string)
    };
    let traceparent = trace("traceparent").filter(|t| acceptable_traceparent(t));
    let tracestate = traceparent
        .as_ref()
        .and(trace("tracestate"))
        .filter(|t| t.len() <= 512);
    let base_url = shared.settings.base_url.trim_end_matches('/').to_string();
    let request = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
        request_id,
        request_id_from_client,
        correlation_id,
        traceparent,
        tracestate,
        base_url,
        principal: None,
    };
    // The in-flight limit bounds the work, not the waiting: it is taken once the body has
    // arrived, so clients trickling bodies (bounded by the body timeout) cannot starve others.
    let Ok(_permit) = shared.in_flight.clone().try_acquire_owned() else {
        return ApiResponse::error(
            StatusCode::TOO_MANY_REQUESTS,
            IssueType::Throttled,
            "too many requests in flight; retry later",
        )
        .with_header(header::RETRY_AFTER, "1");
    };
    shared.routes.handle(request).await
}

/// Oversized bodies up to this size are read and discarded before the 413 is sent.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

fn too_large(max: usize) -> ApiResponse {
    ApiResponse::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        IssueType::TooLong,
        format!("request body exceeds the limit of {max} bytes"),
    )
}

fn render(answer: ApiResponse, request_id: &str, correlation_id: &str) -> Response<Full<Bytes>> {
    let body = match &answer.body {
        Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        None => Bytes::new(),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = answer.status;
    let headers = response.headers_mut();
    if answer.body.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type.unwrap_or(FHIR_JSON)),
        );
    }
    for (name, value) in answer.headers {
        headers.append(name, value);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(correlation_id) {
        headers.insert("x-correlation-id", v);
    }
    response
}

/// Split and percent-decode a query string (`+` is a space).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query("identifier=https%3A%2F%2Fx%7C1&status=active&x=a+b&bad=%zz&end=%4");
        assert_eq!(q[0], ("identifier".into(), "https://x|1".into()));
        assert_eq!(q[2].1, "a b");
        assert_eq!(q[3].1, "%zz");
        assert_eq!(q[4].1, "%4");
    }
}
