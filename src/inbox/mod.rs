//! The provider inbox client: what a small VCS provider runs to receive referrals
//! and answer them (`spbridge inbox`, `spbridge task`).
//!
//! Owns: consuming a provider's queue (`<prefix>.provider.<id>`) with manual acks,
//! turning a referral message into a readable `ReferralSummary`, recording it as
//! `received` by publishing a Task update to `<prefix>.task-updates` (publisher
//! confirms) BEFORE acking the referral, and building the Task updates a provider
//! sends (`TaskAction`). It is deliberately small: the reference integrators read.
//! Must not: touch spbridge's store — it talks to spbridge only through the broker.

mod summary;

pub use summary::{summarise, ReferralSummary};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{json, Value};

/// Inbox client failures.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm the task update")]
    NotConfirmed,
    #[error("connecting to the broker: {0}")]
    Connect(#[from] crate::broker::BrokerError),
    #[error("the referral message is not usable: {0}")]
    BadReferral(String),
}

/// Where the inbox connects.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    pub amqp_url: String,
    /// CA bundle and client certificate for `amqps://`.
    pub tls: crate::broker::BrokerTlsFiles,
    /// Broker name prefix (`broker.prefix` of spbridge).
    pub prefix: String,
    pub provider_id: String,
}

impl InboxSettings {
    fn queue(&self) -> String {
        format!("{}.provider.{}", self.prefix, self.provider_id)
    }
    fn updates_exchange(&self) -> String {
        format!("{}.task-updates", self.prefix)
    }
}

/// What a provider does with a referral's Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    Receive,
    Accept,
    /// Decline, with the reason told to the referrer.
    Reject {
        reason: String,
    },
    Start,
    /// Close with the outcome told to the referrer (`code` from the spbridge outcome CodeSystem).
    Complete {
        outcome: String,
        code: String,
    },
    Note {
        text: String,
    },
}

/// spbridge's social-prescribing outcome CodeSystem.
pub const OUTCOME_SYSTEM: &str =
    "https://fhir.spbridge.org/CodeSystem/SPBridge-SocialPrescribingOutcome";

impl TaskAction {
    /// The partial Task a provider publishes for this action.
    pub fn task_update(&self, task_id: &str) -> Value {
        let mut task = json!({"resourceType": "Task", "id": task_id});
        match self {
            TaskAction::Receive => task["status"] = json!("received"),
            TaskAction::Accept => task["status"] = json!("accepted"),
            TaskAction::Start => task["status"] = json!("in-progress"),
            TaskAction::Reject { reason } => {
                task["status"] = json!("rejected");
                task["statusReason"] = json!({
                    "coding": [{"system": "http://snomed.info/sct", "code": "871711000000103",
                                "display": "Social prescribing declined"}],
                    "text": reason
                });
            }
            TaskAction::Complete { outcome, code } => {
                task["status"] = json!("completed");
                task["output"] = json!([
                    {"type": {"text": "Social prescribing outcome"},
                     "valueCodeableConcept": {"coding": [{"system": OUTCOME_SYSTEM, "code": code}]}},
                    {"type": {"text": "Outcome summary for the GP"}, "valueString": outcome}
                ]);
            }
            TaskAction::Note { text } => {
                task["note"] = json!([{"time": crate::store::instant_text(crate::store::now_millis()), "text": text}]);
            }
        }
        task
    }
}

async fn connect(settings: &InboxSettings) -> Result<Connection, InboxError> {
    crate::broker::connect(&settings.amqp_url, &settings.tls)
        .await
        .map_err(InboxError::from)
}

async fn publish_update(
    channel: &Channel,
    settings: &InboxSettings,
    update: &Value,
    trace: Option<&FieldTable>,
) -> Result<String, InboxError> {
    let message_id = uuid::Uuid::new_v4().to_string();
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/fhir+json".into())
        .with_message_id(message_id.as_str().into())
        .with_app_id("spbridge-inbox".into());
    // Continue the referral's trace: copy its W3C trace context onto the update.
    if let Some(headers) = trace {
        let mut out = FieldTable::default();
        for name in ["traceparent", "tracestate"] {
            if let Some(v) = headers.inner().get(name) {
                out.insert(name.into(), v.clone());
            }
        }
        props = props.with_headers(out);
    }
    let confirm = channel
        .basic_publish(
            settings.updates_exchange().as_str().into(),
            format!("provider.{}", settings.provider_id).as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            update.to_string().as_bytes(),
            props,
        )
        .await?
        .await?;
    if confirm.is_ack() && confirm.take_message().is_none() {
        Ok(message_id)
    } else {
        Err(InboxError::NotConfirmed)
    }
}

/// Publish one Task update (confirmed by the broker). Returns its message id.
pub async fn send_update(settings: &InboxSettings, update: &Value) -> Result<String, InboxError> {
    let connection = connect(settings).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let sent = publish_update(&channel, settings, update, None).await;
    let _ = connection.close(200, "done".into()).await;
    sent
}

/// Receive referrals until `limit` have been handled (or forever). Each is shown
/// through `show`, recorded as `received`, then acked. A message that is not a
/// referral is rejected to the dead-letter queue, never silently dropped.
pub async fn run(
    settings: &InboxSettings,
    limit: Option<usize>,
    mut show: impl FnMut(&ReferralSummary),
) -> Result<usize, InboxError> {
    let connection = connect(settings).await?;
    let consume = connection.create_channel().await?;
    consume.basic_qos(8, BasicQosOptions::default()).await?;
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            settings.queue().as_str().into(),
            "spbridge-inbox".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut handled = 0;
    while limit.is_none_or(|l| handled < l) {
        let Some(delivery) = consumer.next().await else {
            break;
        };
        let delivery = delivery?;
        let summary = serde_json::from_slice::<Value>(&delivery.data)
            .map_err(|e| InboxError::BadReferral(e.to_string()))
            .and_then(|bundle| summarise(&bundle));
        match summary {
            Ok(summary) => {
                show(&summary);
                let update = TaskAction::Receive.task_update(&summary.task_id);
                let trace = delivery.properties.headers().as_ref();
                publish_update(&publish, settings, &update, trace).await?;
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Err(err) => {
                tracing::warn!(error = %err, "not a referral message; dead-lettered");
                delivery
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..Default::default()
                    })
                    .await?;
            }
        }
        handled += 1;
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(handled)
}
