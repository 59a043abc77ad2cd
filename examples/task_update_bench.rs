//! End-to-end provider-update benchmark (not a test).
//!
//! `cargo run --release --example task_update_bench -- [sqlite|postgres] [updates]`
//!
//! Seeds `updates` referrals over HTTP (not timed), subscribes a local rest-hook
//! endpoint to every Task change, then publishes one `accepted` update per Task to
//! `<prefix>.task-updates` with pipelined confirms and measures updates/s from the
//! first publish until the rest-hook endpoint has received the last notification:
//! consume → validate → merge/state machine → commit (Task version + notification
//! row) → deliver. In the same run, the baseline: a plain lapin publisher with
//! pipelined confirms and a consumer acking each message, same body size, a quorum
//! queue — the broker round trip alone. Prints both and the ratio.

/// The allocator `spbridge` itself uses, so the figures match the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};
use spbridge::config::{Config, ProviderConfig};
use spbridge::definitions::{Definitions, DefinitionsConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The fixture referral (valid against the spbridge referral profile) with a unique placer id.
fn referral(n: usize) -> Value {
    static FIXTURE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let mut sr = FIXTURE
        .get_or_init(|| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/referral/servicerequest.json"
            );
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
        })
        .clone();
    sr["identifier"][0]["value"] = json!(format!("UPD-{n:08}"));
    // Routed by the performer's ODS code to the bench provider.
    sr["performer"] = json!([{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8KX42"}}]);
    sr
}

/// A rest-hook endpoint that only counts.
async fn counting_hook() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let shared = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            count.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, count)
}

async fn publish_all(channel: &Channel, exchange: &str, key: &str, bodies: &[Vec<u8>]) {
    for chunk in bodies.chunks(256) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for body in chunk {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/fhir+json".into())
                .with_message_id(uuid::Uuid::new_v4().to_string().into());
            confirms.push(
                channel
                    .basic_publish(
                        exchange.into(),
                        key.into(),
                        BasicPublishOptions::default(),
                        body,
                        props,
                    )
                    .await
                    .expect("publish"),
            );
        }
        for c in confirms {
            c.await.expect("confirm");
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).cloned().unwrap_or_else(|| "sqlite".into());
    let total: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let amqp = env(
        "SPBRIDGE_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".into();
    config.http.max_in_flight = 4096;
    config.broker.url = amqp.clone();
    config.broker.prefix = format!("spbupd-{tag}");
    config.tasks.prefetch = 64;
    config.notify.poll_interval_ms = 20;
    config.routing.providers = vec![ProviderConfig {
        id: "8kx42".into(),
        name: "bench provider".into(),
        ods_codes: vec!["8KX42".into()],
        service_identifiers: vec![],
    }];
    let schema = format!("spbupd_{tag}");
    if backend == "postgres" {
        config.store.url = env(
            "SPBRIDGE_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        );
        config.store.postgres_schema = schema.clone();
        config.store.max_connections = 16;
    } else {
        config.store.url = format!("sqlite://{}", dir.path().join("bench.db").display());
    }
    let running = spbridge::service::start(config.clone(), bench_validator())
        .await
        .expect("start");
    let topology = running.topology().clone();
    while !running.broker_connected.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connection = Connection::connect(&amqp, ConnectionProperties::default())
        .await
        .expect("amqp");

    // Seed: referrals over HTTP, their Task ids from the provider queue (not timed).
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let base = running.base_url.clone();
    let (hook_url, notified) = counting_hook().await;
    let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "bench",
        "criteria": "Task?status=accepted",
        "channel": {"type": "rest-hook", "endpoint": hook_url, "payload": "application/fhir+json"}});
    let request = hyper::Request::post(format!("{base}/Subscription"))
        .header("content-type", "application/fhir+json")
        .body(Full::new(Bytes::from(subscription.to_string())))
        .expect("request");
    assert_eq!(
        client.request(request).await.expect("subscribe").status(),
        201
    );
    let mut seeds = Vec::new();
    for c in 0..16 {
        let client = client.clone();
        let base = base.clone();
        seeds.push(tokio::spawn(async move {
            let mut n = c;
            while n < total {
                let request = hyper::Request::post(format!("{base}/ServiceRequest"))
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(Full::new(Bytes::from(referral(n).to_string())))
                    .expect("request");
                let response = client.request(request).await.expect("post");
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                n += 16;
            }
        }));
    }
    for s in seeds {
        s.await.expect("seed");
    }
    let consume = connection.create_channel().await.expect("channel");
    let mut consumer = consume
        .basic_consume(
            topology.provider_queue("8kx42").as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut task_ids = Vec::with_capacity(total);
    while task_ids.len() < total {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(60), consumer.next()).await
        else {
            panic!("seeding stalled at {} referrals", task_ids.len());
        };
        let bundle: Value = serde_json::from_slice(&delivery.data).expect("json");
        let task = bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Task")
            .expect("task");
        task_ids.push(task["id"].as_str().expect("id").to_string());
    }
    let bodies: Vec<Vec<u8>> = task_ids
        .iter()
        .map(|id| {
            json!({"resourceType": "Task", "id": id, "status": "accepted",
                          "businessStatus": {"text": "Link worker assigned"}})
            .to_string()
            .into_bytes()
        })
        .collect();

    // Measured: publish every update, until the last notification is delivered.
    let publish = connection.create_channel().await.expect("channel");
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let started = Instant::now();
    publish_all(
        &publish,
        &topology.task_updates_exchange(),
        "provider.8kx42",
        &bodies,
    )
    .await;
    let published = started.elapsed();
    while notified.load(Ordering::SeqCst) < total {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stalled at {}",
            notified.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end_to_end = started.elapsed();

    // Baseline: the broker round trip alone (publish with confirms, consume with acks).
    let baseline_queue = format!("spbupd-{tag}.baseline");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    publish
        .queue_declare(
            baseline_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("declare");
    let echo = connection.create_channel().await.expect("channel");
    echo.basic_qos(64, Default::default()).await.expect("qos");
    let mut echo_consumer = echo
        .basic_consume(
            baseline_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let baseline_start = Instant::now();
    let consumer_task = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            match echo_consumer.next().await {
                Some(Ok(d)) => {
                    d.ack(BasicAckOptions::default()).await.expect("ack");
                    n += 1;
                }
                _ => break,
            }
        }
        n
    });
    publish_all(&publish, "", &baseline_queue, &bodies).await;
    let consumed = consumer_task.await.expect("consumer");
    let baseline = baseline_start.elapsed();

    let rate = total as f64 / end_to_end.as_secs_f64();
    let baseline_rate = consumed as f64 / baseline.as_secs_f64();
    println!("backend={backend} updates={total}");
    println!(
        "task updates: {:.0} updates/s end to end (consume → validate → commit → rest-hook delivered); publishing took {:.2}s",
        rate,
        published.as_secs_f64()
    );
    println!("baseline: {baseline_rate:.0} msgs/s (plain lapin: pipelined confirms + consumer acking, quorum queue)");
    println!("ratio: {:.2}", rate / baseline_rate);

    let _ = publish
        .queue_delete(
            baseline_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
    for q in topology.queues() {
        let _ = publish
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for e in topology.exchanges() {
        let _ = publish
            .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    running.shutdown().await;
    if backend == "postgres" {
        use sqlx::Connection as _;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&config.store.url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// The real validator, as `spbridge serve` uses it.
fn bench_validator() -> Arc<spbridge::validation::Validator> {
    let packages = std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-packages").into());
    let config = DefinitionsConfig::standard(
        packages,
        Some(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles").into()),
    );
    let defs = Definitions::load(&config).expect("FHIR definitions");
    defs.precompile_standard_profiles()
        .expect("profiles compile");
    defs.validator.clone()
}
