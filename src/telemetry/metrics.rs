//! Prometheus metrics: the registry, the text exposition and one-call recording functions.
//!
//! Owns: every metric name and label spbridge exposes (see CONTRACTS / the Grafana
//! dashboard), histogram buckets, and rendering `/metrics` in the Prometheus text format
//! (0.0.4). Built on the `metrics` facade with `metrics-exporter-prometheus` as the recorder:
//! any module records with a plain function call and no handle to thread through, recording
//! costs nothing before the recorder is installed (CLI commands, unit tests), and the exporter
//! renders the classic text format every Prometheus and parser reads. Its own HTTP listener is
//! not used: spbridge's HTTP layer serves `/metrics`.
//! Must not: take label values from request content. Labels are route templates, methods,
//! status codes, issue codes, configured provider ids and fixed outcome words.

use crate::store::Store;
use metrics::{counter, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

pub const HTTP_REQUESTS: &str = "spbridge_http_requests_total";
pub const HTTP_DURATION: &str = "spbridge_http_request_duration_seconds";
pub const VALIDATION_FAILURES: &str = "spbridge_validation_failures_total";
pub const REFERRALS_ACCEPTED: &str = "spbridge_referrals_accepted_total";
pub const REFERRALS_ROUTED: &str = "spbridge_referrals_routed_total";
pub const OUTBOX_BACKLOG: &str = "spbridge_outbox_backlog";
pub const OUTBOX_OLDEST_AGE: &str = "spbridge_outbox_oldest_age_seconds";
pub const PUBLISH_CONFIRM_DURATION: &str = "spbridge_publish_confirm_duration_seconds";
pub const BROKER_CONNECTED: &str = "spbridge_broker_connected";
pub const TASK_UPDATES: &str = "spbridge_task_updates_total";
pub const NOTIFICATIONS_PENDING: &str = "spbridge_notifications_pending";
pub const NOTIFICATIONS_DELIVERED: &str = "spbridge_notifications_delivered_total";
pub const NOTIFICATIONS_FAILED: &str = "spbridge_notifications_failed_total";
pub const TOKEN_REQUESTS: &str = "spbridge_token_requests_total";
pub const CONNECTIONS_REFUSED: &str = "spbridge_http_connections_refused_total";
pub const COMMIT_BATCH_UNITS: &str = "spbridge_store_commit_batch_units";

/// Every metric name, for checks of dashboards and alert rules.
pub const ALL: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    VALIDATION_FAILURES,
    REFERRALS_ACCEPTED,
    REFERRALS_ROUTED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    PUBLISH_CONFIRM_DURATION,
    BROKER_CONNECTED,
    TASK_UPDATES,
    NOTIFICATIONS_PENDING,
    NOTIFICATIONS_DELIVERED,
    NOTIFICATIONS_FAILED,
    TOKEN_REQUESTS,
    CONNECTIONS_REFUSED,
    COMMIT_BATCH_UNITS,
];

/// The histograms among them (exposed as `_bucket`, `_sum`, `_count`).
pub const HISTOGRAMS: &[&str] = &[HTTP_DURATION, PUBLISH_CONFIRM_DURATION, COMMIT_BATCH_UNITS];

/// The media type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const CONFIRM_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process-wide recorder (idempotent). `None` when another `metrics` recorder was
/// installed first; spbridge's metrics then go there and `/metrics` renders nothing.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(PUBLISH_CONFIRM_DURATION.into()),
                        CONFIRM_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(COMMIT_BATCH_UNITS.into()),
                        BATCH_BUCKETS,
                    )
                })
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
    describe_counter!(
        VALIDATION_FAILURES,
        "Error issues found by validation, by issue code"
    );
    describe_counter!(
        REFERRALS_ACCEPTED,
        "Referrals committed with their outbox row, by provider"
    );
    describe_counter!(
        REFERRALS_ROUTED,
        "Referral messages confirmed by the broker, by provider"
    );
    describe_gauge!(
        OUTBOX_BACKLOG,
        "Outbox rows not yet confirmed by the broker"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest unsent outbox row"
    );
    describe_histogram!(
        PUBLISH_CONFIRM_DURATION,
        Unit::Seconds,
        "Publish to broker confirm"
    );
    describe_gauge!(
        BROKER_CONNECTED,
        "1 while the relay holds a broker connection"
    );
    describe_counter!(
        TASK_UPDATES,
        "Provider Task updates, by channel and outcome"
    );
    describe_gauge!(NOTIFICATIONS_PENDING, "Notifications waiting for delivery");
    describe_counter!(
        NOTIFICATIONS_DELIVERED,
        "Notifications delivered to subscribers"
    );
    describe_counter!(
        NOTIFICATIONS_FAILED,
        "Notification delivery attempts that failed"
    );
    describe_counter!(TOKEN_REQUESTS, "Token endpoint requests, by outcome");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed before any request: over max_connections or a handshake too slow"
    );
    describe_histogram!(
        COMMIT_BATCH_UNITS,
        "Write units (referrals, Task updates, …) committed together in one store transaction"
    );
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// An HTTP method as a bounded label (OpenTelemetry's `_OTHER` for extension methods).
pub fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "GET",
        hyper::Method::POST => "POST",
        hyper::Method::PUT => "PUT",
        hyper::Method::PATCH => "PATCH",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::HEAD => "HEAD",
        hyper::Method::OPTIONS => "OPTIONS",
        hyper::Method::TRACE => "TRACE",
        hyper::Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// One answered HTTP request.
/// `route` is a template from `spans::route_template`, never a raw path.
pub fn http_request(route: &str, method: &'static str, status: u16, seconds: f64) {
    counter!(HTTP_REQUESTS, "route" => route.to_string(), "method" => method,
        "status" => status.to_string())
    .increment(1);
    histogram!(HTTP_DURATION, "route" => route.to_string(), "method" => method).record(seconds);
}

/// One error issue of a validation, by its FHIR issue-type code.
pub fn validation_failure(code: &'static str) {
    counter!(VALIDATION_FAILURES, "code" => code).increment(1);
}

/// A referral committed for `provider` (a configured provider id).
pub fn referral_accepted(provider: &str) {
    counter!(REFERRALS_ACCEPTED, "provider" => provider.to_string()).increment(1);
}

/// A referral message to `provider` confirmed by the broker.
pub fn referral_routed(provider: &str) {
    counter!(REFERRALS_ROUTED, "provider" => provider.to_string()).increment(1);
}

/// The outbox backlog right now.
pub fn outbox(pending: i64, oldest_age_ms: i64) {
    gauge!(OUTBOX_BACKLOG).set(pending.max(0) as f64);
    gauge!(OUTBOX_OLDEST_AGE).set(oldest_age_ms.max(0) as f64 / 1000.0);
}

/// Time from publishing a message to the broker's confirm.
pub fn publish_confirmed(seconds: f64) {
    histogram!(PUBLISH_CONFIRM_DURATION).record(seconds);
}

/// Whether the relay holds a broker connection.
pub fn broker_connected(connected: bool) {
    gauge!(BROKER_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// One provider Task update: `channel` is `amqp` or `http`, `outcome` one of `applied`,
/// `dead_lettered`, `duplicate`, `rejected`.
pub fn task_update(channel: &'static str, outcome: &'static str) {
    counter!(TASK_UPDATES, "channel" => channel, "outcome" => outcome).increment(1);
}

/// A notification delivered to its subscriber.
pub fn notification_delivered() {
    counter!(NOTIFICATIONS_DELIVERED).increment(1);
}

/// A notification delivery attempt that failed.
pub fn notification_failed() {
    counter!(NOTIFICATIONS_FAILED).increment(1);
}

/// Notifications waiting for delivery right now.
pub fn set_notifications_pending(n: u64) {
    gauge!(NOTIFICATIONS_PENDING).set(n as f64);
}

/// One token endpoint request, by a fixed outcome word (e.g. `issued`, `invalid_client`).
pub fn token_request(outcome: &'static str) {
    counter!(TOKEN_REQUESTS, "outcome" => outcome).increment(1);
}

/// A connection closed before serving a request, by reason (`max_connections`,
/// `handshake_timeout`).
pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// One store transaction written by the group-commit writer, with `units` units in it.
pub fn commit_batch(units: usize) {
    histogram!(COMMIT_BATCH_UNITS).record(units as f64);
}

/// Gauges refreshed when `/metrics` is scraped.
pub trait ScrapeRefresh: Send + Sync {
    fn refresh(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// A scrape-time refresher, as the HTTP layer holds it.
#[derive(Clone)]
pub struct Scrape(pub Arc<dyn ScrapeRefresh>);

impl Scrape {
    pub async fn refresh(&self) {
        self.0.refresh().await
    }
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

/// The service's own gauges: outbox backlog from the store, broker connection state.
pub struct ServiceGauges {
    store: Store,
    broker_connected: Arc<AtomicBool>,
}

impl ServiceGauges {
    /// The `/metrics` refresher of one service.
    pub fn scrape(store: Store, broker_connected: Arc<AtomicBool>) -> Scrape {
        Scrape(Arc::new(ServiceGauges {
            store,
            broker_connected,
        }))
    }
}

impl ScrapeRefresh for ServiceGauges {
    fn refresh(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            broker_connected(self.broker_connected.load(Ordering::Relaxed));
            match self.store.outbox_stats().await {
                Ok(stats) => outbox(stats.pending, stats.oldest_age_ms),
                Err(err) => tracing::warn!(error = %err, "outbox stats unavailable for /metrics"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders() {
        assert!(install().is_some());
        http_request("/ServiceRequest", "POST", 201, 0.02);
        validation_failure("required");
        task_update("amqp", "applied");
        set_notifications_pending(3);
        let text = render();
        assert!(text.contains(
            "spbridge_http_requests_total{route=\"/ServiceRequest\",method=\"POST\",status=\"201\"} 1"
        ));
        assert!(text.contains("spbridge_http_request_duration_seconds_bucket"));
        assert!(text.contains("spbridge_validation_failures_total{code=\"required\"} 1"));
        assert!(text.contains("spbridge_notifications_pending 3"));
    }

    #[test]
    fn methods_are_bounded() {
        let odd = hyper::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "_OTHER");
        assert_eq!(method_label(&hyper::Method::PATCH), "PATCH");
    }
}
