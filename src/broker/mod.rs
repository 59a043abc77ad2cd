//! RabbitMQ: topology, the outbox relay and the task-update consumer.
//!
//! Owns: the lapin connection, declaring the topology idempotently, publishing
//! outbox rows with pipelined publisher confirms, marking rows sent only after the
//! broker acks, retrying nacks/returns with backoff, reconnecting with backoff,
//! and reporting whether the broker is connected.
//! Must not: decide what a message means or where a referral goes — the outbox
//! row says the destination, routing key, type and body.

mod relay;
mod task_updates;
mod tls;
mod topology;

pub use relay::{Relay, RelayHandle};
pub use task_updates::{read_task_update, ConsumerHandle, TaskUpdateConsumer};
pub use tls::{connect, BrokerTlsFiles};
pub use topology::{declare_topology, Topology};

use lapin::types::ShortString;

/// Broker failures (never carry message bodies).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("amqp error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker connection or channel is closed")]
    Disconnected,
    #[error("timed out connecting to the broker")]
    ConnectTimeout,
    #[error("broker TLS settings: {0}")]
    Tls(String),
    #[error("store error during relay: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// An AMQP long-string value, as headers and queue arguments carry text.
pub(crate) fn long_text(value: &str) -> lapin::types::AMQPValue {
    lapin::types::AMQPValue::LongString(lapin::types::LongString::from(value.as_bytes().to_vec()))
}

/// A `ShortString` if the text fits (255 bytes), never panicking.
pub(crate) fn short(text: &str) -> Option<ShortString> {
    ShortString::try_new(text).ok()
}
