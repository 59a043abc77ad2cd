//! Delivering queued notifications to rest-hook endpoints.
//!
//! Owns: the delivery loop (claim the oldest pending notification of each Task for each
//! Subscription, send them side by side, mark each delivered), retry with exponential backoff, and
//! putting a Subscription into `error` (with the reason) after `max_attempts`
//! failures, after which its pending notifications are abandoned, not lost from
//! the record. With a payload the Task version is sent as `PUT [endpoint]/Task/[id]`
//! (FHIR R4 rest-hook); without one, an empty `POST [endpoint]`.
//! Must not: decide who is notified (that is fixed when the Task change commits).

use super::subscription::headers;
use crate::config::NotifyConfig;
use crate::store::{
    CommitOutcome, PendingNotification, ResourceWrite, Store, StoreError, WriteUnit,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Delivers notifications until stopped.
pub struct Notifier {
    store: Store,
    config: NotifyConfig,
    client: HttpsClient,
    owner: String,
}

/// A running notifier.
pub struct NotifierHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NotifierHandle {
    /// Stop after the deliveries in flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Failed(String),
    /// The Subscription is gone or no longer active.
    Inactive,
}

impl Notifier {
    pub fn new(store: Store, config: NotifyConfig) -> Notifier {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Notifier {
            store,
            config,
            client: Client::builder(TokioExecutor::new()).build(connector),
            owner: format!("notifier-{}", uuid::Uuid::new_v4()),
        }
    }

    pub fn spawn(self) -> NotifierHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(stopped));
        NotifierHandle { stop, task }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let signal = self.store.notification_signal();
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        loop {
            if *stopped.borrow() {
                return;
            }
            let claimed = match self
                .store
                .claim_notifications(&self.owner, self.config.batch_size.max(1), 60_000)
                .await
            {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming notifications failed");
                    Vec::new()
                }
            };
            let busy = !claimed.is_empty();
            if let Ok(n) = self.store.notifications_pending().await {
                crate::telemetry::metrics::set_notifications_pending(u64::try_from(n).unwrap_or(0));
            }
            futures_util::future::join_all(claimed.into_iter().map(|n| self.handle(n))).await;
            if busy {
                continue;
            }
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.changed() => {}
            }
        }
    }

    async fn handle(&self, pending: PendingNotification) {
        let n = &pending.notification;
        let result = match self.attempt(&pending).await {
            Ok(Attempt::Delivered) => {
                crate::telemetry::metrics::notification_delivered();
                tracing::info!(subscription = %n.subscription_id, resource = %format!("{}/{}", n.resource_type, n.resource_id),
                    version = n.version_id, correlation_id = n.correlation_id.as_deref().unwrap_or(""), "notification delivered");
                self.store
                    .mark_notification_delivered(&n.id, &self.owner)
                    .await
            }
            Ok(Attempt::Inactive) => self
                .store
                .abandon_notifications(&n.subscription_id, "subscription is not active")
                .await
                .map(|_| ()),
            Ok(Attempt::Failed(reason)) => self.failed(&pending, &reason).await,
            Err(err) => self.failed(&pending, &format!("store: {err}")).await,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, subscription = %n.subscription_id, "recording a notification attempt failed");
        }
    }

    async fn failed(&self, pending: &PendingNotification, reason: &str) -> Result<(), StoreError> {
        let n = &pending.notification;
        crate::telemetry::metrics::notification_failed();
        let attempts = pending.attempts + 1;
        tracing::warn!(subscription = %n.subscription_id, attempts, reason, "notification delivery failed");
        if attempts >= i64::from(self.config.max_attempts.max(1)) {
            let why = format!("rest-hook delivery failed {attempts} times; last error: {reason}");
            self.set_error(&n.subscription_id, &why).await?;
            self.store
                .abandon_notifications(&n.subscription_id, &why)
                .await?;
            return Ok(());
        }
        let exp = u32::try_from(attempts - 1).unwrap_or(30).min(30);
        let delay = self
            .config
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.config.retry_max_ms);
        self.store
            .reschedule_notification(
                &n.id,
                &self.owner,
                i64::try_from(delay).unwrap_or(i64::MAX),
                reason,
            )
            .await
    }

    /// Put the Subscription into `error` with the reason (a new version).
    async fn set_error(&self, subscription_id: &str, why: &str) -> Result<(), StoreError> {
        for _ in 0..3 {
            let Some(current) = self.store.read("Subscription", subscription_id).await? else {
                return Ok(());
            };
            let mut resource = current.resource.clone();
            resource["status"] = json!("error");
            resource["error"] = json!(why);
            let unit = WriteUnit {
                writes: vec![ResourceWrite {
                    resource_type: "Subscription".into(),
                    id: subscription_id.to_string(),
                    resource,
                    if_match: Some(current.version_id),
                }],
                ..Default::default()
            };
            match self.store.commit(unit).await {
                Ok(CommitOutcome::Committed(_)) | Ok(CommitOutcome::Duplicate { .. }) => {
                    tracing::warn!(subscription = %subscription_id, "subscription set to error");
                    return Ok(());
                }
                Err(StoreError::VersionConflict(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    async fn attempt(&self, pending: &PendingNotification) -> Result<Attempt, StoreError> {
        let n = &pending.notification;
        let Some(subscription) = self.store.read("Subscription", &n.subscription_id).await? else {
            return Ok(Attempt::Inactive);
        };
        let subscription = subscription.resource;
        if subscription.get("status").and_then(Value::as_str) != Some("active") {
            return Ok(Attempt::Inactive);
        }
        let Some(version) = self
            .store
            .read_version(&n.resource_type, &n.resource_id, n.version_id)
            .await?
        else {
            return Ok(Attempt::Failed(
                "the announced version is not in the store".into(),
            ));
        };
        let endpoint = subscription
            .pointer("/channel/endpoint")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let with_payload = subscription.pointer("/channel/payload").is_some();
        let (method, uri, body) = if with_payload {
            (
                Method::PUT,
                format!("{endpoint}/{}/{}", n.resource_type, n.resource_id),
                Bytes::from(version.resource.to_string()),
            )
        } else {
            (Method::POST, endpoint, Bytes::new())
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if with_payload {
            builder = builder.header("content-type", "application/fhir+json");
        }
        for line in headers(&subscription) {
            if let Some((name, value)) = line.split_once(':') {
                builder = builder.header(name.trim(), value.trim());
            }
        }
        for (name, value) in [
            ("x-correlation-id", &n.correlation_id),
            ("traceparent", &n.traceparent),
            ("tracestate", &n.tracestate),
        ] {
            if let Some(v) = value {
                builder = builder.header(name, v.as_str());
            }
        }
        let request = match builder.body(Full::new(body)) {
            Ok(r) => r,
            Err(err) => return Ok(Attempt::Failed(format!("cannot build the request: {err}"))),
        };
        let timeout = Duration::from_millis(self.config.timeout_ms.max(100));
        let port = request
            .uri()
            .port_u16()
            .unwrap_or(match request.uri().scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
        let host = request.uri().host().unwrap_or("").to_string();
        let method = if with_payload { "PUT" } else { "POST" };
        let span = crate::telemetry::spans::http_client(method, &host, port);
        if let Some(tp) = &n.traceparent {
            crate::telemetry::propagation::set_remote_parent(&span, tp, n.tracestate.as_deref());
        }
        let mut request = request;
        crate::telemetry::propagation::inject_http(request.headers_mut(), &span);
        let answer = {
            use tracing::Instrument;
            tokio::time::timeout(timeout, self.client.request(request))
                .instrument(span.clone())
                .await
        };
        Ok(match answer {
            Err(_) => Attempt::Failed(format!("no answer within {} ms", timeout.as_millis())),
            Ok(Err(err)) => Attempt::Failed(format!("connection failed: {err}")),
            Ok(Ok(response)) => {
                crate::telemetry::spans::record_http_status(&span, response.status().as_u16());
                if response.status().is_success() {
                    Attempt::Delivered
                } else {
                    Attempt::Failed(format!("endpoint answered {}", response.status()))
                }
            }
        })
    }
}
