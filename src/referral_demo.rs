//! `spbridge demo`: start the service on an embedded SQLite store against the
//! local RabbitMQ, post the fixture referrals over HTTP, show them arriving in the
//! provider queues, then run the whole loop for one provider: its inbox receives
//! the referrals, it accepts, starts and completes one, and the GP's rest-hook
//! Subscription hears every change.
//!
//! Owns: the demo run (its own temporary database and a `spbridge-demo` broker
//! prefix, removed again at the end) and its terminal output.
//! Must not: be used by the service itself; prints no patient identifiers.

use crate::broker::Topology;
use crate::config::Config;
use crate::intake::ReferralValidator;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use serde_json::Value;
use std::path::{Path, PathBuf};

mod task_loop;
use std::sync::Arc;
use std::time::Duration;
use task_loop::{call, task_loop, RestHook, LOOP_PROVIDER, LOOP_REQUESTER};

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
}

/// The fixture referrals posted, with the endpoint each goes to. The transaction Bundle
/// comes first: it carries the surgery's Organization, so its Task names the requester the
/// GP's Subscription asks about; the single POST and the message repeat the same referral.
const FIXTURES: &[(&str, &str)] = &[
    ("referral-transaction-bundle.json", "/"),
    ("referral/servicerequest.json", "/ServiceRequest"),
    ("referral-message-bundle.json", "/$process-message"),
    (
        "referral/variants/healthcareservice-performer-leeds-south.json",
        "/",
    ),
    (
        "referral/variants/financial-no-performer-manchester.json",
        "/",
    ),
    ("referral/variants/triage-no-performer-bradford.json", "/"),
    (
        "referral/variants/message-hackney.json",
        "/$process-message",
    ),
];

/// Run the demo. `config` supplies broker URL and routing; the store and
/// listener are replaced by a temporary SQLite file and an ephemeral port.
pub async fn run(
    mut config: Config,
    fixtures: &Path,
    validator: Arc<dyn ReferralValidator>,
) -> Result<(), DemoError> {
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    config.store.url = format!("sqlite://{}", dir.path().join("demo.db").display());
    config.http.listen = "127.0.0.1:0".into();
    config.broker.prefix = "spbridge-demo".into();
    if config.routing.directory.is_none() && fixtures.join("providers").is_dir() {
        // The fixture set's providers, its Manchester rule and its triage hub.
        config.routing.directory = Some(fixtures.join("providers"));
        config.routing.triage_provider = "8wy01".into();
        config.routing.providers.clear();
        config.routing.rules = vec![crate::config::RuleConfig {
            provider: "8lt19".into(),
            codes: vec![
                "http://snomed.info/sct|160932005".into(),
                "http://snomed.info/sct|73438004".into(),
            ],
            postcode_districts: ["M13", "M14", "M15", "M16"].map(String::from).to_vec(),
        }];
    }
    let broker = crate::broker::connect(&config.broker.url, &config.broker.tls_files()).await;
    if let Err(err) = &broker {
        println!("RabbitMQ is not reachable at the configured broker.url ({err}).");
        println!("Start it (e.g. `service rabbitmq-server start`, or `docker run -p 5672:5672 rabbitmq:4`).");
        println!("Intake keeps working: referrals wait in the outbox until the broker is back.\n");
    }
    let running = crate::service::start(config.clone(), validator).await?;
    println!(
        "spbridge demo listening on {} (SQLite in {})\n",
        running.base_url,
        dir.path().display()
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let hook = RestHook::start().await;
    if let Some(hook) = &hook {
        let subscription = serde_json::json!({
            "resourceType": "Subscription", "status": "requested",
            "reason": "The surgery wants to hear what happens to its referrals",
            "criteria": format!("Task?requester={LOOP_REQUESTER}"),
            "channel": {"type": "rest-hook", "endpoint": hook.url, "payload": "application/fhir+json"}
        });
        let (status, _) = call(
            &client,
            hyper::Method::POST,
            &format!("{}/Subscription", running.base_url),
            Some(&subscription),
        )
        .await;
        println!(
            "  POST /Subscription  Task?requester={LOOP_REQUESTER} → {status} (rest-hook {})\n",
            hook.url
        );
    }
    for (file, endpoint) in FIXTURES {
        let path = fixtures.join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("  skipped {file}: not found under {}", fixtures.display());
            continue;
        };
        let request = hyper::Request::post(format!("{}{endpoint}", running.base_url))
            .header("content-type", "application/fhir+json")
            .header("x-request-id", uuid::Uuid::new_v4().to_string())
            .body(Full::new(Bytes::from(text)));
        let Ok(request) = request else { continue };
        match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                let task = response
                    .headers()
                    .get("x-spbridge-task")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                let _ = response.into_body().collect().await;
                println!("  POST {endpoint:<18} {file:<62} → {status} {task}");
            }
            Err(err) => println!("  POST {endpoint} {file}: {err}"),
        }
    }
    if let Ok(connection) = broker {
        // The relay declares the queues when it connects; wait for it.
        for _ in 0..100 {
            if running
                .broker_connected
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("\nProvider queues:");
        let topology = running.topology().clone();
        show_queues(&connection, &topology, LOOP_PROVIDER).await;
        task_loop(
            &running,
            &connection,
            &topology,
            &client,
            &hook,
            &config.broker,
        )
        .await;
        running.shutdown().await;
        remove_topology(&connection, &topology).await;
        return Ok(());
    } else {
        let stats = running.store.outbox_stats().await.unwrap_or_default();
        println!(
            "\n{} referral message(s) wait in the outbox for RabbitMQ.",
            stats.pending
        );
    }
    running.shutdown().await;
    Ok(())
}

/// Default fixtures folder: `$SPBRIDGE_FIXTURES`, else `./fixtures`.
pub fn default_fixtures() -> PathBuf {
    std::env::var_os("SPBRIDGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fixtures"))
}

async fn show_queues(connection: &lapin::Connection, topology: &Topology, skip: &str) {
    for provider in topology.provider_ids.iter().filter(|p| *p != skip) {
        let queue = topology.provider_queue(provider);
        let Ok(channel) = connection.create_channel().await else {
            return;
        };
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        let Ok(mut consumer) = consumer else { continue };
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(3), consumer.next()).await
        {
            let _ = delivery.ack(BasicAckOptions::default()).await;
            let body: Value = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
            println!("  {queue}: {}", summary(&body));
        }
        let _ = channel.close(200, "demo done".into()).await;
    }
}

/// One line per referral message: what, for whom (by reference only), from whom, Task.
fn summary(bundle: &Value) -> String {
    let resource = |t: &str| {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == t)
    };
    let sr = resource("ServiceRequest");
    let task = resource("Task");
    let reasons: Vec<&str> = sr
        .and_then(|s| s["reasonCode"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c["coding"][0]["display"].as_str())
        .collect();
    format!(
        "ServiceRequest/{} for {} from {} — {} — Task/{} ({})",
        sr.and_then(|s| s["id"].as_str()).unwrap_or("?"),
        sr.and_then(|s| s["subject"]["reference"].as_str())
            .unwrap_or("?"),
        sr.and_then(|s| s["requester"]["display"].as_str())
            .unwrap_or("?"),
        if reasons.is_empty() {
            "no coded reason".to_string()
        } else {
            reasons.join(", ")
        },
        task.and_then(|t| t["id"].as_str()).unwrap_or("?"),
        task.and_then(|t| t["status"].as_str()).unwrap_or("?"),
    )
}

async fn remove_topology(connection: &lapin::Connection, topology: &Topology) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    for q in topology.queues() {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in topology.exchanges() {
        let _ = channel
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
}
