//! Fault: a provider's queue reaches its length limit (`broker.provider_queue_max_length`,
//! RabbitMQ `x-max-length` with `reject-publish`). The broker nacks further referrals; each
//! stays in the outbox and is retried with backoff; intake keeps answering 201 throughout.
//! Once the provider reads, every referral arrives, each exactly once, and the outbox drains.
//! Real RabbitMQ, its own queues only (it runs with the other tests).

#[path = "support/intake.rs"]
mod common;

use common::{fixture, test_config, wait_for, Db, Harness};
use futures_util::StreamExt;
use hyper::StatusCode;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

const LIMIT: u32 = 5;
const REFERRALS: usize = 20;
const WINDOW: u32 = 4;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_provider_queue_holds_referrals_in_the_outbox_until_read() {
    let (mut config, schema, dir) = test_config(Db::Sqlite, &common::amqp_url());
    config.broker.provider_queue_max_length = Some(LIMIT);
    config.broker.retry_base_ms = 100;
    config.broker.retry_max_ms = 400;
    // The relay's publish window: a quorum queue admits what was already in flight when it
    // reached its limit, so it may overshoot by up to one window.
    config.broker.batch_size = WINDOW;
    let h = Harness::start_config(Db::Sqlite, config, schema, dir).await;
    let queue = h.queue("8kx42");
    wait_for("topology never declared", WAIT, async || {
        h.depth(&queue).await.is_some()
    })
    .await;

    for n in 0..REFERRALS {
        let mut sr = fixture("referral/servicerequest.json");
        sr["identifier"][0]["value"] = json!(format!("QUEUE-FULL-{n:03}"));
        sr["performer"] = json!([{"identifier": {
            "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8KX42"}}]);
        let answer = h.post("/ServiceRequest", &sr, &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    // The queue fills to its limit and no further than one publish window beyond it (a
    // quorum queue rejects publishes once it is at its limit, but admits those already in
    // flight, and the relay pipelines a window of them); the rest wait in the outbox.
    wait_for("queue never filled", WAIT, async || {
        h.depth(&queue).await.unwrap_or(0) >= LIMIT
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let depth = h.depth(&queue).await.unwrap_or(0);
    assert!(depth <= LIMIT + WINDOW, "the limit holds: depth {depth}");
    let ready = h.get("/readyz").await;
    let pending = ready.body["outbox"]["pending"].as_u64().unwrap_or(0);
    assert_eq!(
        pending + u64::from(depth),
        REFERRALS as u64,
        "the referrals beyond the limit wait in the outbox: {}",
        ready.body
    );

    // The provider reads: everything arrives, each referral once.
    let channel = h.amqp.create_channel().await.unwrap();
    channel.basic_qos(2, Default::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "slow-provider".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < REFERRALS {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("every referral arrives once the provider reads")
            .expect("consumer open")
            .expect("delivery");
        ids.push(
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        );
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Nothing more comes: no duplicates.
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
    assert!(extra.is_err(), "a referral was delivered twice");
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), REFERRALS, "each referral exactly once");

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = h.get("/readyz").await;
        if ready.body["outbox"]["pending"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never drained: {}",
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(consumer);
    let _ = channel.close(200, "done".into()).await;
    h.finish().await;
}
