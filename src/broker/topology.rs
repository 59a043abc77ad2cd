//! The exchanges and queues spbridge needs, declared idempotently at start-up.
//!
//! Owns: names (`<prefix>.referrals`, `<prefix>.provider.<id>`, `<prefix>.unroutable`,
//! `<prefix>.dead-letter`, `<prefix>.task-updates`, `<prefix>.notifications`,
//! `<prefix>.requester.<ODS>`) and their declaration: durable topic exchanges with
//! an alternate exchange, one quorum queue per provider bound with `provider.<id>`,
//! the task-updates queue bound with `provider.*`, one quorum queue per configured
//! requester bound with `requester.<ODS>`, all dead-lettering to the dead-letter exchange.
//! Must not: publish or consume.

use super::{long_text, BrokerError};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// Names derived from the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
    pub provider_ids: Vec<String>,
    /// ODS codes of requesters with a notification queue.
    pub requester_queues: Vec<String>,
    /// Most messages a provider queue holds (`x-max-length` with `x-overflow:
    /// reject-publish`): beyond it the broker nacks, the outbox row stays unsent and the
    /// relay retries with backoff until the provider has read some. `None`: no limit.
    pub provider_queue_max_length: Option<u32>,
}

impl Topology {
    pub fn exchange(&self, destination: &str) -> String {
        format!("{}.{destination}", self.prefix)
    }
    pub fn referrals_exchange(&self) -> String {
        self.exchange("referrals")
    }
    pub fn unroutable_exchange(&self) -> String {
        self.exchange("unroutable")
    }
    pub fn dead_letter_exchange(&self) -> String {
        self.exchange("dead-letter")
    }
    pub fn provider_queue(&self, provider_id: &str) -> String {
        format!("{}.provider.{provider_id}", self.prefix)
    }
    /// Exchange providers publish Task updates to (routing key `provider.<id>`).
    pub fn task_updates_exchange(&self) -> String {
        self.exchange("task-updates")
    }
    /// The queue spbridge consumes Task updates from.
    pub fn task_updates_queue(&self) -> String {
        self.exchange("task-updates")
    }
    /// Exchange of referrer notifications (routing key `requester.<ODS>`).
    pub fn notifications_exchange(&self) -> String {
        self.exchange("notifications")
    }
    pub fn requester_queue(&self, ods: &str) -> String {
        format!("{}.requester.{}", self.prefix, ods.to_ascii_uppercase())
    }
    /// Outbox destinations this topology declares an exchange for. A row for any
    /// other destination is held back instead of publishing to a missing exchange
    /// (which would close the channel).
    pub fn knows_destination(&self, destination: &str) -> bool {
        destination == "referrals" || destination == "notifications"
    }
    /// Every queue declared (for clean-up in tests and tools).
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .provider_ids
            .iter()
            .map(|p| self.provider_queue(p))
            .collect();
        q.extend(
            self.requester_queues
                .iter()
                .map(|o| self.requester_queue(o)),
        );
        q.push(self.task_updates_queue());
        q.push(self.unroutable_exchange());
        q.push(self.dead_letter_exchange());
        q
    }
    /// Every exchange declared.
    pub fn exchanges(&self) -> Vec<String> {
        vec![
            self.referrals_exchange(),
            self.task_updates_exchange(),
            self.notifications_exchange(),
            self.unroutable_exchange(),
            self.dead_letter_exchange(),
        ]
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn quorum_args(dead_letter: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_text("quorum"));
    if let Some(dlx) = dead_letter {
        args.insert("x-dead-letter-exchange".into(), long_text(dlx));
    }
    args
}

/// Declare everything; safe to repeat (same arguments every time).
pub async fn declare_topology(channel: &Channel, topology: &Topology) -> Result<(), BrokerError> {
    let dlx = topology.dead_letter_exchange();
    let ae = topology.unroutable_exchange();
    for (exchange, queue_args) in [(&dlx, quorum_args(None)), (&ae, quorum_args(Some(&dlx)))] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(exchange.as_str().into(), durable_queue(), queue_args)
            .await?;
        channel
            .queue_bind(
                exchange.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let referrals = topology.referrals_exchange();
    let updates = topology.task_updates_exchange();
    let notifications = topology.notifications_exchange();
    for exchange in [&referrals, &updates, &notifications] {
        let mut exchange_args = FieldTable::default();
        exchange_args.insert("alternate-exchange".into(), long_text(&ae));
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                durable_exchange(),
                exchange_args,
            )
            .await?;
    }
    let mut bindings: Vec<(String, &String, String, FieldTable)> = Vec::new();
    for provider in &topology.provider_ids {
        let mut args = quorum_args(Some(&dlx));
        if let Some(limit) = topology.provider_queue_max_length {
            args.insert(
                "x-max-length".into(),
                AMQPValue::LongLongInt(i64::from(limit)),
            );
            args.insert("x-overflow".into(), long_text("reject-publish"));
        }
        bindings.push((
            topology.provider_queue(provider),
            &referrals,
            format!("provider.{provider}"),
            args,
        ));
    }
    bindings.push((
        topology.task_updates_queue(),
        &updates,
        "provider.*".into(),
        quorum_args(Some(&dlx)),
    ));
    for ods in &topology.requester_queues {
        bindings.push((
            topology.requester_queue(ods),
            &notifications,
            format!("requester.{}", ods.to_ascii_uppercase()),
            quorum_args(Some(&dlx)),
        ));
    }
    for (queue, exchange, key, args) in bindings {
        channel
            .queue_declare(queue.as_str().into(), durable_queue(), args)
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
