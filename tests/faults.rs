//! Fault injection (issue 9): while referrals and provider updates flow at a steady
//! rate, the broker drops every connection, the broker application stops and
//! starts, and PostgreSQL restarts. Afterwards: every referral answered 2xx is in
//! the store and in its provider queue (distinct by `message_id`), every update the
//! provider sent is applied exactly once, no Task is duplicated, and the outbox
//! drains. The counts are printed per run.
//!
//! These faults disturb the machine's shared RabbitMQ and PostgreSQL, so the test is
//! ignored in the normal run and started on its own by `scripts/faults` (CI calls it
//! after everything else).

#[path = "support/intake.rs"]
mod common;
#[path = "support/store_counts.rs"]
mod store_counts;

use common::{fixture, test_config, Db, Harness};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_counts::StoreCounts;

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "{cmd} {args:?}: {status:?}"
    );
}

fn pg_restart() {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| "15".into());
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, "main", "restart"],
    );
}

/// The provider: consumes its queue (reconnecting across broker faults) and accepts
/// each new referral through task-updates with publisher confirms.
async fn provider(
    prefix: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut accepted: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::SeqCst) {
        let Ok(Ok(conn)) = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&common::amqp_url(), ConnectionProperties::default()),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let (Ok(consume), Ok(publish)) = (conn.create_channel().await, conn.create_channel().await)
        else {
            continue;
        };
        if publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .is_err()
        {
            continue;
        }
        let Ok(mut consumer) = consume
            .basic_consume(
                format!("{prefix}.provider.8kx42").as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut last_delivery = std::time::Instant::now();
        loop {
            let next = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let delivery = match next {
                // No delivery for 500 ms: reconnect if the connection has died without
                // ending the stream, or if nothing has come for 5 s (after the broker
                // application restarted, a CI run once found this consumer's connection
                // "connected" while the queue held 262 ready messages and delivered none).
                Err(_)
                    if conn.status().connected()
                        && consume.status().connected()
                        && last_delivery.elapsed() < Duration::from_secs(5) =>
                {
                    continue
                }
                Err(_) => break,
                Ok(Some(Ok(d))) => d,
                Ok(_) => break,
            };
            last_delivery = std::time::Instant::now();
            let message_id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let bundle: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            let Some(task) = bundle["entry"]
                .as_array()
                .and_then(|e| {
                    e.iter()
                        .map(|e| &e["resource"])
                        .find(|r| r["resourceType"] == "Task")
                })
                .and_then(|t| t["id"].as_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !accepted.contains(&task) {
                let update = json!({"resourceType": "Task", "id": task, "status": "accepted"});
                let props = BasicProperties::default()
                    .with_message_id(format!("accept-{task}").as_str().into())
                    .with_delivery_mode(2);
                let confirmed = match publish
                    .basic_publish(
                        format!("{prefix}.task-updates").as_str().into(),
                        "provider.8kx42".into(),
                        BasicPublishOptions::default(),
                        update.to_string().as_bytes(),
                        props,
                    )
                    .await
                {
                    // A confirm that never comes (the broker went away unnoticed) counts
                    // as a nack.
                    Ok(c) => matches!(
                        tokio::time::timeout(Duration::from_secs(5), c).await,
                        Ok(Ok(c)) if c.is_ack()
                    ),
                    Err(_) => false,
                };
                if !confirmed {
                    break; // not acked: the referral comes back after reconnecting
                }
                accepted.insert(task.clone());
                sent.fetch_add(1, Ordering::SeqCst);
            }
            seen.lock().unwrap().push((message_id, task));
            let acked = tokio::time::timeout(
                Duration::from_secs(5),
                delivery.ack(BasicAckOptions::default()),
            )
            .await;
            if !matches!(acked, Ok(Ok(_))) {
                break;
            }
        }
        // Closing waits for the broker's answer; a connection that died unnoticed never
        // gives one.
        let _ =
            tokio::time::timeout(Duration::from_secs(2), conn.close(200, "reconnect".into())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "disturbs the shared RabbitMQ and PostgreSQL; run by scripts/faults"]
async fn referrals_and_updates_survive_broker_and_database_faults() {
    let (mut config, schema, dir) = test_config(Db::Postgres, &common::amqp_url());
    config.broker.lease_secs = 3;
    let h = Harness::start_config(Db::Postgres, config, schema.clone(), dir).await;
    let prefix = h.prefix.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let provider_task = tokio::spawn(provider(
        prefix.clone(),
        seen.clone(),
        sent.clone(),
        stop.clone(),
    ));

    // The GP system: a steady stream, each referral retried until answered 2xx.
    let answered = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (answered, retries, load_stop) = (answered.clone(), retries.clone(), load_stop.clone());
        let base = h.base();
        tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let mut n = 0;
            while !load_stop.load(Ordering::SeqCst) {
                let mut sr = fixture("referral/servicerequest.json");
                sr["identifier"][0]["value"] = json!(format!("FAULT-{n:06}"));
                sr["performer"] = json!([{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8KX42"}}]);
                loop {
                    let req = hyper::Request::post(format!("{base}/ServiceRequest"))
                        .header("content-type", "application/fhir+json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(
                            sr.to_string(),
                        )))
                        .unwrap();
                    match tokio::time::timeout(Duration::from_secs(15), client.request(req)).await {
                        Ok(Ok(r)) if r.status().is_success() => break,
                        Ok(Ok(r)) => assert!(
                            r.status().is_server_error() || r.status() == 429,
                            "{}",
                            r.status()
                        ),
                        _ => {}
                    }
                    retries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                answered.fetch_add(1, Ordering::SeqCst);
                n += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let settle = || tokio::time::sleep(Duration::from_secs(3));
    settle().await;
    let mut report = Vec::new();
    let mut mark = |name: &str| {
        report.push(format!(
            "{name}: answered so far {}",
            answered.load(Ordering::SeqCst)
        ))
    };
    run(
        "rabbitmqctl",
        &["close_all_connections", "spbridge fault test"],
    );
    mark("close_all_connections");
    settle().await;
    run("rabbitmqctl", &["stop_app"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    run("rabbitmqctl", &["start_app"]);
    mark("stop_app/start_app");
    settle().await;
    pg_restart();
    mark("postgresql restart");
    settle().await;
    load_stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let total = answered.load(Ordering::SeqCst);

    // Drain: everything published, every Task accepted.
    let mut counts =
        StoreCounts::connect(&common::postgres_url(), schema.as_deref().unwrap()).await;
    // On failure, the queues' depths say which side stalled: the provider queue (the
    // provider stopped consuming) or task-updates (spbridge stopped applying).
    let queues = || {
        let listed = Command::new("rabbitmqctl")
            .args([
                "-q",
                "list_queues",
                "name",
                "messages_ready",
                "messages_unacknowledged",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ours: Vec<&str> = listed.lines().filter(|l| l.contains(&prefix)).collect();
        format!("; queues (name, ready, unacked): {}", ours.join(" | "))
    };
    let (pending, accepted) = counts
        .drained_or(total, Duration::from_secs(120), queues)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let _ = provider_task.await;
    let stored = counts.service_requests().await;
    let tasks = counts.tasks().await;
    let versions = counts.task_versions().await;
    let seen = seen.lock().unwrap().clone();
    let distinct: HashSet<&String> = seen.iter().map(|(m, _)| m).collect();
    println!("faults: {}", report.join("; "));
    println!(
        "  referrals answered 2xx: {total} (client retries {}); ServiceRequests stored: {stored}; Tasks: {tasks}\n  \
         provider deliveries: {} ({} distinct message_ids); updates sent: {}; Tasks accepted: {accepted}; Task versions: {versions}; outbox pending: {pending}",
        retries.load(Ordering::SeqCst),
        seen.len(),
        distinct.len(),
        sent.load(Ordering::SeqCst)
    );
    assert_eq!(
        stored as usize, total,
        "nothing answered 2xx is missing from the store, nothing extra"
    );
    assert_eq!(tasks as usize, total, "one Task per referral");
    assert_eq!(
        distinct.len(),
        total,
        "every referral reached its provider queue"
    );
    assert_eq!(accepted as usize, total, "every update applied");
    assert_eq!(
        versions as usize,
        2 * total,
        "each update applied exactly once"
    );
    drop(counts);
    h.finish().await;
}
