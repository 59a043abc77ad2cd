//! Scale-out proof (issue 8): three `spbridge serve` processes on one PostgreSQL
//! schema and the local RabbitMQ share the load; one is killed with SIGKILL in
//! the middle and restarted. Afterwards every accepted referral has reached its
//! provider queue (exactly once by `message_id`), no referral has two Tasks, every
//! provider update was applied once, and the outbox has drained. The counts are
//! printed (`cargo nextest run --test scale_out --no-capture`).

#[path = "support/intake.rs"]
mod common;
#[path = "support/store_counts.rs"]
mod store_counts;

use bytes::Bytes;
use common::{amqp_url, fixture, postgres_url, Db};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_counts::StoreCounts;

const REFERRALS: usize = 240;
const PROVIDER: &str = "8kx42";

struct Instance {
    addr: String,
    child: Option<Child>,
    config: std::path::PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Instance {
    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_spbridge"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("SPBRIDGE_HTTP__LISTEN", &self.addr)
            .env("RUST_LOG", "warn")
            .env(
                "SPBRIDGE_FHIR_PACKAGES",
                std::env::var_os("SPBRIDGE_FHIR_PACKAGES").unwrap_or_else(|| {
                    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-packages").into()
                }),
            )
            .env(
                "SPBRIDGE_PROFILES",
                concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spbridge");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn wait_live(client: &Client<HttpConnector, Full<Bytes>>, addr: &str) {
    for _ in 0..600 {
        let req = hyper::Request::get(format!("http://{addr}/livez"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        if let Ok(r) = client.request(req).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{addr} never became live");
}

fn referral(n: usize) -> Value {
    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!(format!("SCALE-{n:06}"));
    sr["performer"] = json!([{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8KX42"}}]);
    sr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_survive_a_sigkill_exactly_once() {
    let (config, schema, _) = common::test_config(Db::Postgres, &amqp_url());
    let schema = schema.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = config.broker.prefix.clone();
    let toml = format!(
        "[store]\nurl = \"{}\"\npostgres_schema = \"{schema}\"\nmax_connections = 6\n\
         [broker]\nurl = \"{}\"\nprefix = \"{prefix}\"\npoll_interval_ms = 50\nlease_secs = 3\n\
         reconnect_base_ms = 100\nreconnect_max_ms = 1000\n\
         [tasks]\nprefetch = 16\n\
         [routing]\ntriage_provider = \"8wy01\"\ndirectory = \"{}/providers\"\n",
        postgres_url(),
        amqp_url(),
        common::FIXTURES
    );
    let path = dir.path().join("spbridge.toml");
    std::fs::write(&path, toml).unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut instances: Vec<Instance> = (0..3)
        .map(|_| Instance {
            addr: format!("127.0.0.1:{}", free_port()),
            child: None,
            config: path.clone(),
        })
        .collect();
    // Start one first so migrations run once, then the others.
    instances[0].spawn();
    wait_live(&client, &instances[0].addr).await;
    for instance in &mut instances[1..] {
        instance.spawn();
    }
    for instance in &instances[1..] {
        wait_live(&client, &instance.addr).await;
    }
    let addrs: Vec<String> = instances.iter().map(|i| i.addr.clone()).collect();

    // The provider: consumes its queue and accepts each referral through task-updates.
    let amqp = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let queue = format!("{prefix}.provider.{PROVIDER}");
    let consume = amqp.create_channel().await.unwrap();
    let mut consumer = loop {
        match consume
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let publish = amqp.create_channel().await.unwrap();
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let deliveries: Arc<Mutex<Vec<(String, String)>>> = Arc::default(); // (message_id, task id)
    let updates_sent = Arc::new(AtomicUsize::new(0));
    let provider = {
        let deliveries = deliveries.clone();
        let updates_sent = updates_sent.clone();
        let exchange = format!("{prefix}.task-updates");
        tokio::spawn(async move {
            let mut accepted: HashSet<String> = HashSet::new();
            while let Some(Ok(d)) = consumer.next().await {
                let message_id = d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let bundle: Value = serde_json::from_slice(&d.data).unwrap();
                let task = bundle["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| &e["resource"])
                    .find(|r| r["resourceType"] == "Task")
                    .unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                deliveries.lock().unwrap().push((message_id, task.clone()));
                if accepted.insert(task.clone()) {
                    let update = json!({"resourceType": "Task", "id": task, "status": "accepted"});
                    let props = BasicProperties::default()
                        .with_message_id(format!("accept-{task}").as_str().into())
                        .with_delivery_mode(2);
                    let confirm = publish
                        .basic_publish(
                            exchange.as_str().into(),
                            format!("provider.{PROVIDER}").as_str().into(),
                            BasicPublishOptions::default(),
                            update.to_string().as_bytes(),
                            props,
                        )
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    assert!(confirm.is_ack());
                    updates_sent.fetch_add(1, Ordering::SeqCst);
                }
                d.ack(BasicAckOptions::default()).await.unwrap();
            }
        })
    };

    // The GP systems: 8 clients spread referrals round-robin; a failed request (the
    // killed instance) is retried on the next instance with the same identifier.
    let answered: Arc<Mutex<HashMap<String, String>>> = Arc::default(); // placer id → ServiceRequest id
    let posted = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let client = client.clone();
        let addrs = addrs.clone();
        let answered = answered.clone();
        let posted = posted.clone();
        clients.push(tokio::spawn(async move {
            let mut n = c;
            while n < REFERRALS {
                let body = referral(n).to_string();
                let mut target = n;
                loop {
                    let addr = &addrs[target % 3];
                    let req = hyper::Request::post(format!("http://{addr}/ServiceRequest"))
                        .header("content-type", "application/fhir+json")
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap();
                    let result =
                        tokio::time::timeout(Duration::from_secs(20), client.request(req)).await;
                    if let Ok(Ok(response)) = result {
                        let status = response.status();
                        let bytes = response
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if status == 201 || status == 200 {
                            let sr: Value = serde_json::from_slice(&bytes).unwrap();
                            answered.lock().unwrap().insert(
                                format!("SCALE-{n:06}"),
                                sr["id"].as_str().unwrap().to_string(),
                            );
                            break;
                        }
                        assert!(
                            status.is_server_error() || status == 429,
                            "n={n}: {status} {}",
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                    target += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                posted.fetch_add(1, Ordering::SeqCst);
                n += 8;
            }
        }));
    }
    // Mid-load: SIGKILL instance 1, then bring it back.
    while posted.load(Ordering::SeqCst) < REFERRALS / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    instances[1].kill9();
    let killed_at = posted.load(Ordering::SeqCst);
    while posted.load(Ordering::SeqCst) < 2 * REFERRALS / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    instances[1].spawn();
    wait_live(&client, &instances[1].addr).await;
    for c in clients {
        c.await.unwrap();
    }

    // Everything drains: all referrals delivered and all Tasks accepted.
    let mut counts = StoreCounts::connect(&postgres_url(), &schema).await;
    let (pending, accepted_tasks) = counts.drained(REFERRALS, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    provider.abort();

    let answered = answered.lock().unwrap().clone();
    let deliveries = deliveries.lock().unwrap().clone();
    let distinct_messages: HashSet<&String> = deliveries.iter().map(|(m, _)| m).collect();
    let distinct_tasks: HashSet<&String> = deliveries.iter().map(|(_, t)| t).collect();
    let service_requests = counts.service_requests().await;
    let tasks = counts.tasks().await;
    let tasks_per_referral = counts.most_tasks_per_referral().await;
    let task_versions = counts.task_versions().await;
    println!(
        "scale-out: {REFERRALS} referrals over 3 instances, instance 2 SIGKILLed after {killed_at} answers and restarted\n  \
         answered 2xx: {}\n  ServiceRequests stored: {service_requests}; Tasks stored: {tasks}; most Tasks per referral: {tasks_per_referral}\n  \
         provider deliveries: {} ({} distinct message_ids, {} distinct Tasks; {} redelivered copies)\n  \
         updates sent: {}; Tasks accepted: {accepted_tasks}; Task versions: {task_versions}\n  outbox pending: {pending}",
        answered.len(),
        deliveries.len(),
        distinct_messages.len(),
        distinct_tasks.len(),
        deliveries.len() - distinct_messages.len(),
        updates_sent.load(Ordering::SeqCst),
    );
    assert_eq!(answered.len(), REFERRALS, "every referral answered 2xx");
    assert_eq!(
        service_requests as usize, REFERRALS,
        "no referral stored twice"
    );
    assert_eq!(tasks as usize, REFERRALS, "one Task per referral");
    assert_eq!(tasks_per_referral, 1);
    assert_eq!(
        distinct_messages.len(),
        REFERRALS,
        "each referral delivered, distinct by message_id"
    );
    assert_eq!(distinct_tasks.len(), REFERRALS);
    assert_eq!(accepted_tasks as usize, REFERRALS, "no update lost");
    assert_eq!(
        task_versions as usize,
        2 * REFERRALS,
        "each update applied exactly once"
    );
    assert_eq!(pending, 0);

    for i in instances.iter_mut() {
        i.stop();
    }
    drop(counts);
    let _ = config;
    common::drop_schema(&schema).await;
    // Queues and exchanges of this prefix.
    let channel = amqp.create_channel().await.unwrap();
    for q in [
        queue.clone(),
        format!("{prefix}.task-updates"),
        format!("{prefix}.unroutable"),
        format!("{prefix}.dead-letter"),
    ]
    .into_iter()
    .chain(
        ["8hd07", "8kx57", "8lt19", "8wy01"]
            .iter()
            .map(|p| format!("{prefix}.provider.{p}")),
    ) {
        let _ = channel
            .queue_delete(q.as_str().into(), Default::default())
            .await;
    }
    for e in [
        "referrals",
        "task-updates",
        "notifications",
        "unroutable",
        "dead-letter",
    ] {
        let _ = channel
            .exchange_delete(format!("{prefix}.{e}").as_str().into(), Default::default())
            .await;
    }
}
