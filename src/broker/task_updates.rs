//! The provider side of the Task loop over AMQP: consuming `<prefix>.task-updates`.
//!
//! Owns: the consumer connection (manual acks, bounded prefetch, reconnect with
//! backoff), spreading deliveries over up to 8 lanes by Task id (one Task's updates in
//! order, different Tasks' in parallel), reading one message into a `TaskUpdate` (a Task, or a message Bundle
//! whose MessageHeader focus is the Task; the provider from the routing key
//! `provider.<id>`; exactly-once by `message_id`), and settling it: ack only after
//! the change is committed; an invalid, unauthorised or illegal update is published
//! to the dead-letter exchange with its OperationOutcome (body, and an
//! `x-spbridge-error` header) and then acked; a store outage requeues it. When the
//! message has `reply_to`, the provider gets the result there with its
//! `correlation_id`.
//! Must not: decide Task rules (the workflow does) or publish outbox rows (the relay does).

use super::topology::{declare_topology, Topology};
use super::{long_text, short, BrokerError};
use crate::config::BrokerConfig;
use crate::outcome::{Issue, IssueType, OperationOutcome};
use crate::workflow::{Caller, TaskUpdate, UpdateError, UpdateOutcome, Workflow};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use serde_json::{json, Value};
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Consumes provider Task updates until stopped.
pub struct TaskUpdateConsumer {
    workflow: Arc<Workflow>,
    config: BrokerConfig,
    topology: Topology,
    prefetch: u16,
    base_url: String,
}

/// A running consumer.
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ConsumerHandle {
    /// Stop consuming; unacked messages return to the queue.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How a message is settled.
#[derive(Debug)]
enum Settle {
    /// Committed (or already applied): ack, and reply with the Task.
    Applied(Value),
    /// Refused: dead-letter with the outcome, ack, reply with the outcome.
    DeadLetter {
        reason: String,
        outcome: OperationOutcome,
    },
    /// Temporary failure: requeue after a pause.
    Retry(String),
}

/// Lanes for a prefetch window: enough to keep the store writer's batches full, never more
/// than the deliveries that can be outstanding.
fn lane_count(prefetch: u16) -> usize {
    usize::from(prefetch).clamp(1, 8)
}

/// A task-update message read: the provider id and the proposed Task, or why it cannot be
/// read (the reason in words and as an OperationOutcome).
pub type ReadTaskUpdate = Result<(String, Value), (String, OperationOutcome)>;

/// The lane of a message already read: a hash of its Task id; lane 0 for messages that
/// could not be read or name no Task id (they are dead-lettered, whatever lane handles them).
fn lane_of(read: &ReadTaskUpdate, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    match read
        .as_ref()
        .ok()
        .and_then(|(_, task)| task.get("id")?.as_str())
    {
        Some(id) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut hasher);
            (hasher.finish() % lanes as u64) as usize
        }
        None => 0,
    }
}

/// A task-update message (routing key `provider.<id>`, body a Task or a message Bundle
/// focused on one) read into the provider id and the proposed Task, or why it cannot be.
pub fn read_task_update(routing_key: &str, body: &[u8]) -> ReadTaskUpdate {
    let refuse = |code: IssueType, why: String| {
        (
            why.clone(),
            OperationOutcome::from_issue(Issue::error(code, why)),
        )
    };
    let provider = routing_key
        .strip_prefix("provider.")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            refuse(
                IssueType::Security,
                format!("routing key '{routing_key}' does not name a provider (provider.<id>)"),
            )
        })?;
    let value: Value = crate::fhir_json::parse(body).map_err(|e| {
        refuse(
            IssueType::Structure,
            format!("the message body is not valid FHIR JSON: {e}"),
        )
    })?;
    let task = match value.get("resourceType").and_then(Value::as_str) {
        Some("Task") => value,
        Some("Bundle") => focus_task(&value).ok_or_else(|| {
            refuse(
                IssueType::Invalid,
                "a message Bundle must start with a MessageHeader whose focus is a Task in the Bundle"
                    .into(),
            )
        })?,
        _ => {
            return Err(refuse(
                IssueType::Invalid,
                "a task update must be a Task or a message Bundle focused on a Task".into(),
            ))
        }
    };
    Ok((provider.to_string(), task))
}

/// The Task a message Bundle's MessageHeader points at.
fn focus_task(bundle: &Value) -> Option<Value> {
    let entries = bundle.get("entry")?.as_array()?;
    let header = entries.first()?.get("resource")?;
    if header.get("resourceType")?.as_str()? != "MessageHeader" {
        return None;
    }
    let focus = header.pointer("/focus/0/reference")?.as_str()?;
    entries.iter().find_map(|e| {
        let resource = e.get("resource")?;
        let full_url = e.get("fullUrl").and_then(Value::as_str).unwrap_or_default();
        let rtype = resource.get("resourceType")?.as_str()?;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let matches = full_url == focus
            || focus == format!("{rtype}/{id}")
            || (!id.is_empty() && focus.ends_with(&format!("/{rtype}/{id}")));
        (matches && rtype == "Task").then(|| resource.clone())
    })
}

fn header_string(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

impl TaskUpdateConsumer {
    pub fn new(
        workflow: Arc<Workflow>,
        config: BrokerConfig,
        topology: Topology,
        prefetch: u16,
        base_url: String,
    ) -> Self {
        TaskUpdateConsumer {
            workflow,
            config,
            topology,
            prefetch,
            base_url,
        }
    }

    pub fn spawn(self) -> ConsumerHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(Arc::new(self).run(stopped));
        ConsumerHandle { stop, task }
    }

    async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let base = Duration::from_millis(self.config.reconnect_base_ms.max(1));
        let max = Duration::from_millis(self.config.reconnect_max_ms.max(1));
        let mut delay = base;
        loop {
            if *stopped.borrow() {
                return;
            }
            match self.consume(&mut stopped).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, retry_ms = delay.as_millis() as u64, "task-update consumer lost the broker")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped.changed() => {}
            }
            delay = (delay * 2).min(max);
        }
    }

    async fn consume(
        self: &Arc<Self>,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), BrokerError> {
        let connection = super::connect(&self.config.url, &self.config.tls_files()).await?;
        let channel = connection.create_channel().await?;
        declare_topology(&channel, &self.topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_qos(self.prefetch.max(1), BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                self.topology.task_updates_queue().as_str().into(),
                "spbridge-task-updates".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let lanes = lane_count(self.prefetch);
        tracing::info!(queue = %self.topology.task_updates_queue(), prefetch = self.prefetch, lanes, "consuming task updates");
        // Deliveries are read once here and spread over lanes by Task id: one Task's updates
        // are applied one after another in delivery order, different Tasks' side by side (so
        // their commits share store transactions). A lane that loses the channel stops the
        // whole consumer; unacked deliveries go back to the queue when the connection closes.
        let (failed, mut failures) = tokio::sync::mpsc::channel::<BrokerError>(lanes);
        let mut senders = Vec::with_capacity(lanes);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..lanes {
            let (send, mut deliveries) = tokio::sync::mpsc::channel::<(Delivery, ReadTaskUpdate)>(
                usize::from(self.prefetch.max(1)),
            );
            senders.push(send);
            let this = self.clone();
            let channel = channel.clone();
            let failed = failed.clone();
            workers.spawn(async move {
                while let Some((delivery, read)) = deliveries.recv().await {
                    if let Err(err) = this.handle(&channel, delivery, read).await {
                        let _ = failed.send(err).await;
                        return;
                    }
                }
            });
        }
        // A connection or channel that died without ending the delivery stream is noticed
        // here within a second, and the consumer reconnects. (One fault-suite run stopped
        // applying updates after a broker restart, with nothing reconnecting; a stream left
        // open by a dead connection is a suspected cause, not a proven one.)
        let mut watchdog = tokio::time::interval(Duration::from_secs(1));
        let ended = loop {
            tokio::select! {
                _ = watchdog.tick() => {
                    if !connection.status().connected() || !channel.status().connected() {
                        break Err(BrokerError::Disconnected);
                    }
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let read = read_task_update(delivery.routing_key.as_str(), &delivery.data);
                        let lane = lane_of(&read, lanes);
                        if senders[lane].send((delivery, read)).await.is_err() {
                            break Err(BrokerError::Disconnected);
                        }
                    }
                    Some(Err(err)) => break Err(err.into()),
                    None => break Err(BrokerError::Disconnected),
                },
                Some(err) = failures.recv() => break Err(err),
                _ = stopped.changed() => {
                    let _ = connection.close(200, "spbridge stopping".into()).await;
                    break Ok(());
                }
            }
        };
        workers.abort_all();
        ended
    }

    async fn handle(
        &self,
        channel: &Channel,
        delivery: Delivery,
        read: ReadTaskUpdate,
    ) -> Result<(), BrokerError> {
        let props = delivery.properties.clone();
        let routing_key = delivery.routing_key.to_string();
        let message_id = props.message_id().as_ref().map(|m| m.to_string());
        let span = crate::telemetry::spans::amqp_process(
            &self.topology.task_updates_queue(),
            message_id.as_deref(),
            props.headers().as_ref(),
        );
        let settle = {
            use tracing::Instrument;
            self.settle(read, message_id.as_deref(), &props, &delivery.data)
                .instrument(span.clone())
                .await
        };
        let outcome = match &settle {
            Settle::Applied(v) if v.get("resourceType").and_then(Value::as_str) == Some("Task") => {
                "applied"
            }
            Settle::Applied(_) => "duplicate",
            Settle::DeadLetter { .. } => "dead_lettered",
            Settle::Retry(_) => "rejected",
        };
        crate::telemetry::spans::record_process_outcome(&span, outcome);
        crate::telemetry::metrics::task_update("amqp", outcome);
        match &settle {
            Settle::Retry(why) => {
                tracing::warn!(reason = %why, "task update requeued");
                tokio::time::sleep(Duration::from_millis(500)).await;
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
                return Ok(());
            }
            Settle::DeadLetter { reason, outcome } => {
                tracing::info!(message_id = message_id.as_deref().unwrap_or(""), routing_key = %routing_key, reason = %reason, "task update dead-lettered");
                self.dead_letter(channel, &delivery, reason, outcome)
                    .await?;
            }
            Settle::Applied(_) => {}
        }
        if let Some(reply_to) = props.reply_to().as_ref().map(|r| r.to_string()) {
            let body = match &settle {
                Settle::Applied(task) => task.clone(),
                Settle::DeadLetter { outcome, .. } => outcome.to_json(),
                Settle::Retry(_) => Value::Null,
            };
            self.reply(channel, &reply_to, &props, &body).await?;
        }
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    async fn settle(
        &self,
        read: ReadTaskUpdate,
        message_id: Option<&str>,
        props: &BasicProperties,
        body: &[u8],
    ) -> Settle {
        let (provider_id, task) = match read {
            Ok(found) => found,
            Err((reason, outcome)) => return Settle::DeadLetter { reason, outcome },
        };
        let Some(task_id) = task.get("id").and_then(Value::as_str).map(str::to_string) else {
            let why = "the Task has no id; send the id of the Task you received".to_string();
            return Settle::DeadLetter {
                reason: why.clone(),
                outcome: OperationOutcome::from_issue(
                    Issue::error(IssueType::Required, why).at("Task.id"),
                ),
            };
        };
        let expected_version = task
            .pointer("/meta/versionId")
            .and_then(Value::as_str)
            .and_then(|v| v.parse().ok());
        // Without a message id, the body itself identifies a redelivery.
        let key = message_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("sha256:{:x}", sha2::Sha256::digest(body)));
        let update = TaskUpdate {
            task_id,
            proposed: task,
            expected_version,
            caller: Caller::Amqp { provider_id },
            message_id: Some(key),
            correlation_id: props
                .correlation_id()
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            // The process span's context when traces are exported, else the provider's.
            traceparent: crate::telemetry::propagation::current_traceparent()
                .map(|(tp, _)| tp)
                .or_else(|| header_string(props, "traceparent")),
            tracestate: header_string(props, "tracestate"),
            base_url: self.base_url.clone(),
        };
        match self.workflow.apply(&update).await {
            Ok(UpdateOutcome::Applied(applied)) => Settle::Applied(applied.task.resource),
            Ok(UpdateOutcome::Duplicate { task, version }) => {
                tracing::info!(task = %task, version, "task update already applied");
                Settle::Applied(json!({"resourceType": "OperationOutcome", "issue": [{
                    "severity": "information", "code": "duplicate",
                    "diagnostics": format!("this message was applied before as {task} version {version}")}]}))
            }
            Err(err) if err.is_transient() => Settle::Retry(err.to_string()),
            Err(UpdateError::Store(err)) => Settle::DeadLetter {
                reason: err.to_string(),
                outcome: OperationOutcome::from_issue(Issue::error(
                    IssueType::Exception,
                    err.to_string(),
                )),
            },
            Err(err) => Settle::DeadLetter {
                reason: format!("{}: {err}", err.detail_code().unwrap_or("refused")),
                outcome: err.outcome(),
            },
        }
    }

    async fn dead_letter(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        reason: &str,
        outcome: &OperationOutcome,
    ) -> Result<(), BrokerError> {
        let props = &delivery.properties;
        let mut headers = FieldTable::default();
        headers.insert("x-spbridge-error".into(), long_text(reason));
        headers.insert(
            "x-spbridge-source-queue".into(),
            long_text(&self.topology.task_updates_queue()),
        );
        headers.insert(
            "x-original-routing-key".into(),
            long_text(delivery.routing_key.as_str()),
        );
        if let Some(id) = props.message_id() {
            headers.insert("x-original-message-id".into(), long_text(id.as_str()));
        }
        headers.insert(
            "x-original-body".into(),
            AMQPValue::LongString(LongString::from(delivery.data.clone())),
        );
        let mut out = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/fhir+json".into())
            .with_headers(headers);
        if let Some(c) = props.correlation_id() {
            out = out.with_correlation_id(c.clone());
        }
        if let Some(id) = short(&uuid::Uuid::new_v4().to_string()) {
            out = out.with_message_id(id);
        }
        let body = outcome.to_json().to_string();
        let confirm = channel
            .basic_publish(
                self.topology.dead_letter_exchange().as_str().into(),
                "task-updates".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                out,
            )
            .await?
            .await?;
        if !confirm.is_ack() {
            return Err(BrokerError::Disconnected);
        }
        Ok(())
    }

    async fn reply(
        &self,
        channel: &Channel,
        reply_to: &str,
        props: &BasicProperties,
        body: &Value,
    ) -> Result<(), BrokerError> {
        let Some(key) = short(reply_to) else {
            return Ok(());
        };
        let mut out = BasicProperties::default()
            .with_content_type("application/fhir+json".into())
            .with_delivery_mode(2);
        if let Some(c) = props.correlation_id() {
            out = out.with_correlation_id(c.clone());
        }
        let _confirm = channel
            .basic_publish(
                "".into(),
                key,
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                out,
            )
            .await?
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_task_and_a_message_bundle() {
        let task = json!({"resourceType": "Task", "id": "t1", "status": "accepted"});
        let (provider, found) =
            read_task_update("provider.walk", task.to_string().as_bytes()).unwrap();
        assert_eq!(provider, "walk");
        assert_eq!(found["id"], "t1");
        let bundle = json!({"resourceType": "Bundle", "type": "message", "entry": [
            {"fullUrl": "urn:uuid:h", "resource": {"resourceType": "MessageHeader", "focus": [{"reference": "urn:uuid:t"}]}},
            {"fullUrl": "urn:uuid:t", "resource": task}]});
        let (_, found) = read_task_update("provider.walk", bundle.to_string().as_bytes()).unwrap();
        assert_eq!(found["status"], "accepted");
    }

    #[test]
    fn refuses_bad_keys_and_bodies() {
        assert!(read_task_update("walk", b"{}").is_err());
        assert!(read_task_update("provider.walk", b"not json").is_err());
        assert!(read_task_update("provider.walk", br#"{"resourceType":"Patient"}"#).is_err());
        let no_focus = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MessageHeader"}}]});
        assert!(read_task_update("provider.walk", no_focus.to_string().as_bytes()).is_err());
    }
}
