//! The outbox relay: claims rows, publishes them with pipelined publisher
//! confirms, and marks them sent only after the broker acks.
//!
//! Owns: the connection lifecycle (connect, declare topology, confirm mode,
//! reconnect with exponential backoff), the publish loop (a batch's frames are all
//! queued for lapin's I/O loop in row order, then the writes and confirms are awaited), retry scheduling of nacked or
//! returned messages, releasing leases on disconnect, and draining on shutdown.
//! Must not: build or change message bodies.

use super::topology::{declare_topology, Topology};
use super::{long_text, short, BrokerError};
use crate::config::BrokerConfig;
use crate::store::{OutboxRow, Store};
use crate::telemetry::{metrics, propagation, spans};
use futures_util::future::{ready, Either};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How long a shutdown keeps publishing what is due.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The relay's settings and shared state.
pub struct Relay {
    store: Store,
    config: BrokerConfig,
    topology: Topology,
    connected: Arc<AtomicBool>,
    owner: String,
}

/// A running relay: stop it with `shutdown`.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// Stop claiming new work after draining due rows (bounded), close the connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Stop requested, or the handle was dropped (which also means stop).
fn stop_requested(stopped: &watch::Receiver<bool>) -> bool {
    *stopped.borrow() || stopped.has_changed().is_err()
}

/// Wait until a stop is requested (returns at once if the handle is gone).
async fn wait_for_stop(stopped: &mut watch::Receiver<bool>) {
    while !stop_requested(stopped) {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

enum LoopEnd {
    Shutdown,
    Disconnected(BrokerError),
}

impl Relay {
    pub fn new(
        store: Store,
        config: BrokerConfig,
        topology: Topology,
        connected: Arc<AtomicBool>,
    ) -> Relay {
        Relay {
            store,
            config,
            topology,
            connected,
            owner: format!("relay-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Run on a tokio task until the handle is shut down.
    pub fn spawn(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(stopped));
        RelayHandle { stop, task }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let base = Duration::from_millis(self.config.reconnect_base_ms.max(1));
        let max = Duration::from_millis(self.config.reconnect_max_ms.max(1));
        let mut delay = base;
        loop {
            if stop_requested(&stopped) {
                break;
            }
            match self.connect().await {
                Ok((connection, channel)) => {
                    self.connected.store(true, Ordering::Relaxed);
                    metrics::broker_connected(true);
                    tracing::info!(owner = %self.owner, "relay connected to broker");
                    delay = base;
                    let end = self.publish_loop(&connection, &channel, &mut stopped).await;
                    self.connected.store(false, Ordering::Relaxed);
                    metrics::broker_connected(false);
                    if let Err(err) = self.store.release_outbox_leases(&self.owner).await {
                        tracing::warn!(error = %err, "could not release outbox leases");
                    }
                    let _ = connection
                        .close(200, "spbridge relay stopping".into())
                        .await;
                    match end {
                        LoopEnd::Shutdown => break,
                        LoopEnd::Disconnected(err) => {
                            tracing::warn!(error = %err, "relay lost the broker; reconnecting")
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_ms = delay.as_millis() as u64, "relay cannot reach the broker");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for_stop(&mut stopped) => {}
            }
            delay = (delay * 2).min(max);
        }
        self.connected.store(false, Ordering::Relaxed);
        metrics::broker_connected(false);
    }

    async fn connect(&self) -> Result<(Connection, Channel), BrokerError> {
        let connection = super::connect(&self.config.url, &self.config.tls_files()).await?;
        let channel = connection.create_channel().await?;
        declare_topology(&channel, &self.topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((connection, channel))
    }

    async fn publish_loop(
        &self,
        connection: &Connection,
        channel: &Channel,
        stopped: &mut watch::Receiver<bool>,
    ) -> LoopEnd {
        let signal = self.store.outbox_signal();
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let lease_ms = (self.config.lease_secs.max(1) * 1000) as i64;
        let mut drain_until: Option<tokio::time::Instant> = None;
        // Rows the broker has confirmed, marked sent together with the next claim.
        let mut confirmed: Vec<String> = Vec::new();
        let end = loop {
            if drain_until.is_none() && stop_requested(stopped) {
                drain_until = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
            }
            if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break LoopEnd::Shutdown;
            }
            if !connection.status().connected() || !channel.status().connected() {
                break LoopEnd::Disconnected(BrokerError::Disconnected);
            }
            let rows = match self
                .store
                .mark_sent_and_claim(
                    &confirmed,
                    &self.owner,
                    self.config.batch_size.max(1),
                    lease_ms,
                )
                .await
            {
                Ok(rows) => {
                    confirmed.clear();
                    rows
                }
                Err(err) => {
                    // Confirmed rows stay leased and are marked with the next claim; if
                    // the lease runs out first they are re-sent with the same message_id.
                    tracing::warn!(error = %err, "relay cannot claim outbox rows");
                    tokio::time::sleep(poll).await;
                    continue;
                }
            };
            if rows.is_empty() {
                if drain_until.is_some() {
                    break LoopEnd::Shutdown;
                }
                tokio::select! {
                    _ = signal.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = wait_for_stop(stopped) => {}
                }
                continue;
            }
            let (sent, failure) = self.publish_batch(channel, rows).await;
            confirmed.extend(sent);
            if let Some(err) = failure {
                break LoopEnd::Disconnected(err);
            }
        };
        if let Err(err) = self.store.mark_outbox_sent(&confirmed, &self.owner).await {
            // The rows stay leased and are re-sent after the lease; same message_id.
            tracing::error!(error = %err, count = confirmed.len(), "could not mark confirmed rows sent");
        }
        end
    }

    /// Publish every row back-to-back, then collect the confirms: the ids the broker
    /// confirmed (to be marked sent), and the channel failure that cut the batch short.
    async fn publish_batch(
        &self,
        channel: &Channel,
        rows: Vec<OutboxRow>,
    ) -> (Vec<String>, Option<BrokerError>) {
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure: Option<BrokerError> = None;
        for row in &rows {
            let m = &row.message;
            if !self.topology.knows_destination(&m.destination) {
                self.retry(row, "no exchange declared for this destination")
                    .await;
                continue;
            }
            let exchange = self.topology.exchange(&m.destination);
            let (Some(exchange_name), Some(key)) = (short(&exchange), short(&m.routing_key)) else {
                self.retry(row, "exchange or routing key too long").await;
                continue;
            };
            // The publish span continues the trace of the request that wrote the row.
            let span = spans::amqp_publish(&exchange, &m.routing_key, &m.id);
            if let Some(tp) = &m.traceparent {
                propagation::set_remote_parent(&span, tp, m.tracestate.as_deref());
            }
            let started = Instant::now();
            let mut publish = Box::pin(
                channel
                    .basic_publish(
                        exchange_name,
                        key,
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        m.body.as_bytes(),
                        properties(row, &span),
                    )
                    .instrument(span.clone()),
            );
            // One poll takes the message's delivery tag and queues its frames for lapin's
            // I/O loop, in row order; waiting for each write before queueing the next would
            // cost two thread hand-offs per message. The writes are awaited below.
            let first = std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await;
            let queued = match first {
                Poll::Ready(Err(err)) => {
                    spans::record_publish_outcome(&span, "failed");
                    failure = Some(err.into());
                    break;
                }
                // Written already, or still being written: awaited alike below.
                Poll::Ready(Ok(confirm)) => Either::Left(ready(Ok(confirm))),
                Poll::Pending => Either::Right(publish),
            };
            pending.push((row, queued, span, started));
        }
        let mut sent = Vec::with_capacity(pending.len());
        for (row, queued, span, started) in pending {
            let confirmed = match queued.await {
                Ok(confirm) => confirm.instrument(span.clone()).await,
                Err(err) => Err(err),
            };
            let outcome = match confirmed {
                Ok(Confirmation::Ack(None)) => {
                    metrics::publish_confirmed(started.elapsed().as_secs_f64());
                    if let Some(provider) = routed_provider(row) {
                        metrics::referral_routed(provider);
                    }
                    sent.push(row.message.id.clone());
                    "ack"
                }
                Ok(Confirmation::Ack(Some(returned))) => {
                    let why = format!("returned by broker: {}", returned.reply_text);
                    self.retry(row, &why).await;
                    "returned"
                }
                Ok(Confirmation::Nack(_)) => {
                    self.retry(row, "nacked by broker").await;
                    "nack"
                }
                Ok(Confirmation::NotRequested) => {
                    self.retry(row, "confirms not enabled").await;
                    "not_requested"
                }
                Err(err) => {
                    if failure.is_none() {
                        failure = Some(err.into());
                    }
                    "failed"
                }
            };
            spans::record_publish_outcome(&span, outcome);
        }
        (sent, failure)
    }

    async fn retry(&self, row: &OutboxRow, why: &str) {
        let attempts = row.attempts.clamp(0, 20) as u32;
        let delay = self
            .config
            .retry_base_ms
            .saturating_mul(1u64 << attempts.min(16))
            .min(self.config.retry_max_ms) as i64;
        tracing::warn!(message_id = %row.message.id, attempts, delay_ms = delay, reason = why, "publish will be retried");
        if let Err(err) = self
            .store
            .reschedule_outbox(&row.message.id, &self.owner, delay, why)
            .await
        {
            tracing::error!(error = %err, "could not reschedule outbox row");
        }
    }
}

/// The provider a confirmed referral message went to (its routing key `provider.<id>`).
fn routed_provider(row: &OutboxRow) -> Option<&str> {
    let m = &row.message;
    (m.destination == crate::intake::REFERRALS_DESTINATION)
        .then(|| m.routing_key.strip_prefix("provider."))
        .flatten()
}

/// AMQP properties of an outbox row: persistent, typed, identified, traced. The trace
/// context is the publish span's; without trace export, the row's own.
fn properties(row: &OutboxRow, span: &tracing::Span) -> BasicProperties {
    let m = &row.message;
    let mut headers = FieldTable::default();
    if let Some(profile) = &m.profile {
        headers.insert("profile".into(), long_text(profile));
    }
    if !propagation::inject_span_amqp(&mut headers, span) {
        if let Some(tp) = &m.traceparent {
            propagation::inject_amqp(&mut headers, tp, m.tracestate.as_deref());
        }
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_timestamp((row.created_at / 1000).max(0) as u64)
        .with_headers(headers);
    if let Some(v) = short(&m.content_type) {
        props = props.with_content_type(v);
    }
    if let Some(v) = short(&m.id) {
        props = props.with_message_id(v);
    }
    if let Some(v) = short(&m.message_type) {
        props = props.with_type(v);
    }
    if let Some(v) = m.correlation_id.as_deref().and_then(short) {
        props = props.with_correlation_id(v);
    }
    if let Some(v) = short("spbridge") {
        props = props.with_app_id(v);
    }
    props
}
