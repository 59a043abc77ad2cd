//! The exchanges and queues spbridge needs, declared idempotently at start-up.
//!
//! Owns: names (`<prefix>.referrals`, `<prefix>.provider.<id>`, `<prefix>.unroutable`,
//! `<prefix>.dead-letter`) and their declaration: a durable topic exchange with an
//! alternate exchange, one quorum queue per provider bound with `provider.<id>`
//! and dead-lettering to the dead-letter exchange.
//! Must not: publish or consume.

use super::BrokerError;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// Names derived from the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
    pub provider_ids: Vec<String>,
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
    /// Outbox destinations this topology declares an exchange for. A row for any
    /// other destination is held back instead of publishing to a missing exchange
    /// (which would close the channel).
    pub fn knows_destination(&self, destination: &str) -> bool {
        destination == "referrals"
    }
    /// Every queue declared (for clean-up in tests and tools).
    pub fn queues(&self) -> Vec<String> {
        let mut q: Vec<String> = self
            .provider_ids
            .iter()
            .map(|p| self.provider_queue(p))
            .collect();
        q.push(self.unroutable_exchange());
        q.push(self.dead_letter_exchange());
        q
    }
    /// Every exchange declared.
    pub fn exchanges(&self) -> Vec<String> {
        vec![
            self.referrals_exchange(),
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

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

fn quorum_args(dead_letter: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    if let Some(dlx) = dead_letter {
        args.insert("x-dead-letter-exchange".into(), text(dlx));
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
    let mut exchange_args = FieldTable::default();
    exchange_args.insert("alternate-exchange".into(), text(&ae));
    let referrals = topology.referrals_exchange();
    channel
        .exchange_declare(
            referrals.as_str().into(),
            ExchangeKind::Topic,
            durable_exchange(),
            exchange_args,
        )
        .await?;
    for provider in &topology.provider_ids {
        let queue = topology.provider_queue(provider);
        channel
            .queue_declare(
                queue.as_str().into(),
                durable_queue(),
                quorum_args(Some(&dlx)),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                referrals.as_str().into(),
                format!("provider.{provider}").into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
