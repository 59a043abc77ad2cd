//! The outbox under failure: referrals keep being accepted while RabbitMQ is
//! unreachable and are delivered exactly once when it is back; several relays on
//! one database never publish the same row twice; concurrent retries of one
//! referral make one referral and one message.

#[path = "support/intake.rs"]
mod common;

use common::{fixture, test_config, Db, Harness, DEAD_AMQP_URL};
use futures_util::future::join_all;
use hyper::StatusCode;
use serde_json::json;
use spbridge::broker::{Relay, Topology};
use spbridge::store::Store;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_millis(1500);

fn referral(n: usize) -> serde_json::Value {
    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!(format!("OUTAGE-{n:04}"));
    sr
}

async fn broker_down_then_up(db: Db) {
    let mut h = Harness::start_with_broker(db, DEAD_AMQP_URL).await;
    let ready = h.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["broker"], false);

    let mut sr_ids = HashSet::new();
    for n in 0..5 {
        let answer = h.post("/ServiceRequest", &referral(n), &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        sr_ids.insert(answer.body["id"].as_str().unwrap().to_string());
    }
    let tx = h
        .post("/", &fixture("referral-transaction-bundle.json"), &[])
        .await;
    assert_eq!(tx.status, StatusCode::OK);
    let tx_sr = tx.body["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    sr_ids.insert(tx_sr);
    assert_eq!(h.running().store.outbox_stats().await.unwrap().pending, 6);

    // The broker "comes back": the relay is restarted against the real one.
    let mut broker = h.config.broker.clone();
    broker.url = common::amqp_url();
    h.running.as_mut().unwrap().restart_relay(&broker).await;

    let messages = h.take(&h.queue("8kx42"), 6, WAIT, SETTLE).await;
    let delivered: HashSet<String> = messages
        .iter()
        .map(|(_, body)| {
            common::entry_of(body, "ServiceRequest").unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(delivered, sr_ids, "every referral delivered, each once");
    let ids: HashSet<String> = messages
        .iter()
        .map(|(p, _)| p.message_id().as_ref().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(h.running().store.outbox_stats().await.unwrap().pending, 0);
    let mut ready = h.get("/readyz").await;
    for _ in 0..20 {
        if ready.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = h.get("/readyz").await;
    }
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_sqlite() {
    broker_down_then_up(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_then_up_postgres() {
    broker_down_then_up(Db::Postgres).await;
}

/// Three relays (each with its own pool, as three instances would have) drain one
/// outbox; every row is published exactly once.
async fn several_relays_publish_each_row_once(db: Db) {
    let (mut config, schema, dir) = test_config(db, &common::amqp_url());
    config.broker.relay_enabled = false;
    let h = Harness::start_config(db, config.clone(), schema, dir).await;
    let posts = (0..30).map(|n| {
        let h = &h;
        async move {
            h.post("/ServiceRequest", &referral(100 + n), &[])
                .await
                .status
        }
    });
    let statuses = join_all(posts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );

    let mut broker = config.broker.clone();
    broker.batch_size = 4;
    let topology: Topology = h.running().topology().clone();
    let mut relays = Vec::new();
    for _ in 0..3 {
        let store = Store::connect(&config.store).await.unwrap();
        relays.push(
            Relay::new(
                store,
                broker.clone(),
                topology.clone(),
                Arc::new(AtomicBool::new(false)),
            )
            .spawn(),
        );
    }
    let messages = h.take(&h.queue("8kx42"), 30, WAIT, SETTLE).await;
    let ids: HashSet<String> = messages
        .iter()
        .map(|(p, _)| p.message_id().as_ref().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 30, "no message published twice");
    for relay in relays {
        relay.shutdown().await;
    }
    assert_eq!(h.running().store.outbox_stats().await.unwrap().pending, 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_relays_publish_each_row_once_sqlite() {
    several_relays_publish_each_row_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_relays_publish_each_row_once_postgres() {
    several_relays_publish_each_row_once(Db::Postgres).await;
}

/// Eight identical POSTs at once: one 201, seven 200s, one message.
async fn concurrent_retries_make_one_referral(db: Db) {
    let h = Harness::start(db).await;
    let sr = referral(9999);
    let answers = join_all((0..8).map(|_| h.post("/ServiceRequest", &sr, &[]))).await;
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .count();
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(
        (created, ok),
        (1, 7),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let ids: HashSet<&str> = answers
        .iter()
        .map(|a| a.body["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    h.take(&h.queue("8kx42"), 1, WAIT, SETTLE).await;
    assert_eq!(h.get("/Task").await.body["total"], 1);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_make_one_referral_sqlite() {
    concurrent_retries_make_one_referral(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_make_one_referral_postgres() {
    concurrent_retries_make_one_referral(Db::Postgres).await;
}
