//! What RabbitMQ's CPU costs per message, by how many publishes are in flight (not a test).
//!
//! `cargo run --release --example broker_window_cost -- [messages]`
//!
//! Publishes 4.2 kB persistent messages with publisher confirms to a quorum queue, in
//! windows of 256 and of 16 (publish a window, await its confirms, repeat), once through
//! the default exchange with plain properties (as `intake_bench`'s baseline) and once as
//! spbridge's relay publishes (a topic exchange with an alternate exchange, `mandatory`,
//! headers and the other properties). Prints messages/s and RabbitMQ's (`beam.smp`'s) CPU
//! milliseconds per message, from `/proc`. It shows why a referral costs the broker more
//! than a baseline message: the relay has only the referrals of the last commit or two in
//! flight, and a quorum queue's cost per message grows as its batches shrink. Needs
//! RabbitMQ (SPBRIDGE_TEST_AMQP_URL); removes what it declares.

#[path = "support/process_cpu.rs"]
mod process_cpu;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::time::{Duration, Instant};

/// User + system milliseconds of every `beam.smp` process (RabbitMQ).
fn rabbitmq_cpu_ms() -> f64 {
    process_cpu::process_cpu_ms()
        .into_iter()
        .filter(|(_, name, _)| name == "beam.smp")
        .map(|(_, _, ms)| ms)
        .sum()
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let url = std::env::var("SPBRIDGE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (queue, topic, alternate) = (
        format!("spbbench-{tag}.window"),
        format!("spbbench-{tag}.referrals"),
        format!("spbbench-{tag}.unroutable"),
    );
    let durable = || ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut queue_args = FieldTable::default();
    queue_args.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            queue_args,
        )
        .await
        .expect("queue");
    channel
        .exchange_declare(
            alternate.as_str().into(),
            ExchangeKind::Fanout,
            durable(),
            FieldTable::default(),
        )
        .await
        .expect("alternate exchange");
    let mut topic_args = FieldTable::default();
    topic_args.insert("alternate-exchange".into(), text(&alternate));
    channel
        .exchange_declare(
            topic.as_str().into(),
            ExchangeKind::Topic,
            durable(),
            topic_args,
        )
        .await
        .expect("topic exchange");
    channel
        .queue_bind(
            queue.as_str().into(),
            topic.as_str().into(),
            "provider.bench".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");

    let body = vec![b'x'; 4200];
    println!("messages={total} body=4200 bytes, quorum queue, persistent, confirms");
    for window in [256, 16] {
        for as_relay in [false, true] {
            channel
                .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
                .await
                .expect("purge");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let cpu_before = rabbitmq_cpu_ms();
            let started = Instant::now();
            let mut sent = 0;
            while sent < total {
                let mut confirms = Vec::with_capacity(window);
                for _ in 0..window.min(total - sent) {
                    let mut props = BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/fhir+json".into())
                        .with_message_id(uuid::Uuid::new_v4().to_string().into());
                    let (exchange, key) = if as_relay {
                        let mut headers = FieldTable::default();
                        headers.insert(
                            "profile".into(),
                            text(
                                "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest",
                            ),
                        );
                        headers.insert(
                            "traceparent".into(),
                            text("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                        );
                        props = props
                            .with_headers(headers)
                            .with_type(ShortString::from("servicerequest-request"))
                            .with_correlation_id(uuid::Uuid::new_v4().to_string().into())
                            .with_app_id("spbridge".into())
                            .with_timestamp(1);
                        (topic.as_str(), "provider.bench")
                    } else {
                        ("", queue.as_str())
                    };
                    let confirm = channel
                        .basic_publish(
                            exchange.into(),
                            key.into(),
                            BasicPublishOptions {
                                mandatory: as_relay,
                                ..Default::default()
                            },
                            &body,
                            props,
                        )
                        .await
                        .expect("publish");
                    confirms.push(confirm);
                    sent += 1;
                }
                for confirm in confirms {
                    confirm.await.expect("confirm");
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            // RabbitMQ finishes writing shortly after the last confirm.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let cpu = rabbitmq_cpu_ms() - cpu_before;
            println!(
                "window {window:3}, {:38} {:6.0} msgs/s, rabbitmq {:.3} ms CPU per message",
                if as_relay {
                    "as the relay publishes:"
                } else {
                    "default exchange, plain properties:"
                },
                total as f64 / elapsed,
                cpu / total as f64
            );
        }
    }
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    for exchange in [&topic, &alternate] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}
