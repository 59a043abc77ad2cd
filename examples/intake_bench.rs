//! End-to-end intake benchmark (not a test).
//!
//! `cargo run --release --example intake_bench -- [sqlite|postgres] [referrals] [clients] [confirmed|consumed]`
//!
//! Measures referrals/s from the first POST until the last referral is in its provider
//! queue, p50/p99 POST latency, and —
//! in the same run — the physical limit: a plain lapin publisher with pipelined
//! confirms sending the same message bodies to a quorum queue (measured twice: after the
//! intake, and again at the end of the run). Prints both and
//! the ratio; and the HTTP ceiling, a plain hyper service answering the same POSTs from the
//! same clients.
//!
//! When the clock stops: `confirmed` (the default, as the issue defines it: POST → 201, then
//! confirmed in queue) stops it when the provider queue holds every referral, polled with a
//! passive declare, and only then reads the queue; `consumed` has a consumer reading the
//! queue while the POSTs run and stops the clock at the last delivery, so RabbitMQ's
//! deliveries and the consumer's work fall inside the measured window (the baseline has
//! neither). In both modes every referral must be read back exactly once (distinct
//! `message_id`s), or the bench fails.
//!
//! It also prints where the machine's time went, per referral and per baseline message:
//! this process, PostgreSQL's processes and RabbitMQ's, from `/proc`. When both runs keep
//! the cores busy, the ratio cannot beat the inverse ratio of those two costs. Needs
//! RabbitMQ (SPBRIDGE_TEST_AMQP_URL) and, for postgres, SPBRIDGE_TEST_POSTGRES_URL. Removes its queues, exchanges and schema
//! (the schema stays when SPBRIDGE_BENCH_KEEP_SCHEMA is set, to inspect it).

#[path = "support/process_cpu.rs"]
mod process_cpu;

/// The allocator `spbridge` itself uses, so the figures match the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use futures_util::future::{ready, Either};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};
use spbridge::config::{Config, ProviderConfig};
use spbridge::definitions::{Definitions, DefinitionsConfig};
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
    sr["identifier"][0]["value"] = json!(format!("BENCH-{n:08}"));
    // Routed by the performer's ODS code to the bench provider.
    sr["performer"] = json!([{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8KX42"}}]);
    sr
}

/// CPU time from `/proc` (Linux): this process's user and system milliseconds, and the
/// whole machine's busy / idle / iowait / steal milliseconds (all cores).
#[derive(Default)]
struct CpuSample {
    user: f64,
    system: f64,
    machine_busy: f64,
    machine_idle: f64,
    machine_iowait: f64,
    machine_steal: f64,
    /// Context switches of all this process's threads (voluntary and not).
    switches: f64,
    /// User + system milliseconds of the machine's PostgreSQL processes (`postgres`) and
    /// of RabbitMQ (`beam.smp`), summed over the processes alive when sampled.
    postgres: ProcessTimes,
    rabbitmq: ProcessTimes,
    /// In a `since` difference: the milliseconds those processes used in between.
    postgres_ms: f64,
    rabbitmq_ms: f64,
}

/// CPU milliseconds per process id, for processes of one command name.
#[derive(Default)]
struct ProcessTimes(std::collections::HashMap<u32, f64>);

impl ProcessTimes {
    /// Milliseconds used since `before`; a process that started in between counts whole,
    /// one that ended in between is lost (the database's connections stay open through
    /// the window measured, so little is).
    fn since(&self, before: &ProcessTimes) -> f64 {
        self.0
            .iter()
            .map(|(pid, ms)| ms - before.0.get(pid).copied().unwrap_or(0.0))
            .sum()
    }
}

impl CpuSample {
    fn now() -> CpuSample {
        // Clock ticks are 100 per second on Linux.
        let tick_ms = 10.0;
        let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which is in parentheses and may hold spaces).
        let after = own.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let own: Vec<f64> = after
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        let machine = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<f64> = machine
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        let at = |v: &Vec<f64>, i: usize| v.get(i).copied().unwrap_or(0.0) * tick_ms;
        // /proc/stat cpu: user nice system idle iowait irq softirq steal …
        let switches = std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
            .map(|status| {
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum();
        let mut postgres = ProcessTimes::default();
        let mut rabbitmq = ProcessTimes::default();
        for (pid, name, ms) in process_cpu::process_cpu_ms() {
            match name.as_str() {
                "postgres" => postgres.0.insert(pid, ms),
                "beam.smp" => rabbitmq.0.insert(pid, ms),
                _ => None,
            };
        }
        CpuSample {
            switches,
            postgres,
            rabbitmq,
            postgres_ms: 0.0,
            rabbitmq_ms: 0.0,
            user: at(&own, 11),
            system: at(&own, 12),
            machine_busy: at(&cpu, 0) + at(&cpu, 1) + at(&cpu, 2) + at(&cpu, 5) + at(&cpu, 6),
            machine_idle: at(&cpu, 3),
            machine_iowait: at(&cpu, 4),
            machine_steal: at(&cpu, 7),
        }
    }

    fn since(&self, before: &CpuSample) -> CpuSample {
        CpuSample {
            user: self.user - before.user,
            system: self.system - before.system,
            machine_busy: self.machine_busy - before.machine_busy,
            machine_idle: self.machine_idle - before.machine_idle,
            machine_iowait: self.machine_iowait - before.machine_iowait,
            machine_steal: self.machine_steal - before.machine_steal,
            switches: self.switches - before.switches,
            postgres_ms: self.postgres.since(&before.postgres),
            rabbitmq_ms: self.rabbitmq.since(&before.rabbitmq),
            ..CpuSample::default()
        }
    }

    /// Milliseconds of a `since` difference, per item (referral or message).
    fn per(&self, part: f64, items: usize) -> f64 {
        part / items.max(1) as f64
    }

    fn machine_share(&self, part: f64) -> f64 {
        let all = self.machine_busy + self.machine_idle + self.machine_iowait + self.machine_steal;
        if all > 0.0 {
            100.0 * part / all
        } else {
            0.0
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    // Traces are exported exactly as `spbridge serve` would: only when the standard OTEL_*
    // variables ask for it. Compare a run with OTEL_EXPORTER_OTLP_ENDPOINT set to one
    // without to see what exporting traces costs. Started outside the runtime, like `serve`.
    let telemetry = spbridge::telemetry::init(&Default::default(), "warn").expect("telemetry");
    println!(
        "trace export: {}",
        if telemetry.exporting() { "on" } else { "off" }
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench());
    telemetry.shutdown();
}

async fn bench() {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).cloned().unwrap_or_else(|| "sqlite".into());
    let total: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let clients: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(32);
    let consume_live = match args.get(4).map(String::as_str) {
        None | Some("confirmed") => false,
        Some("consumed") => true,
        Some(other) => panic!("unknown mode {other}: confirmed or consumed"),
    };
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
    config.broker.prefix = format!("spbbench-{tag}");
    config.routing.providers = vec![ProviderConfig {
        id: "8kx42".into(),
        name: "bench provider".into(),
        ods_codes: vec!["8KX42".into()],
        service_identifiers: vec![],
    }];
    let schema = format!("spbbench_{tag}");
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
    let queue = topology.provider_queue("8kx42");
    while !running
        .broker_connected
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connection = Connection::connect(&amqp, ConnectionProperties::default())
        .await
        .expect("amqp");
    let consume_channel = connection.create_channel().await.expect("channel");
    let consume = || async {
        consume_channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume")
    };
    let mut consumer = if consume_live {
        Some(consume().await)
    } else {
        None
    };

    // End to end: POST → 201, then in the provider queue.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let base = running.base_url.clone();
    // Request bodies are built before the clock starts: the load generator's own JSON work
    // is not the service's.
    let bodies = request_bodies(0, total);
    let cpu_before = CpuSample::now();
    let writer_before = running.store.writer_stats();
    let started = Instant::now();
    let mut latencies = post_all(&client, &base, &bodies, clients).await;
    let posted = started.elapsed();
    let writer_after = running.store.writer_stats();
    let mut message_ids = std::collections::HashSet::new();
    let mut message_size = 0;
    let end_to_end = if let Some(consumer) = consumer.as_mut() {
        read_back(consumer, total, &mut message_ids, &mut message_size).await;
        started.elapsed()
    } else {
        // Confirmed in queue: the provider queue's depth, asked of the broker.
        let depth_channel = connection.create_channel().await.expect("channel");
        let waited_from = Instant::now();
        loop {
            let depth = depth_channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive declare")
                .message_count() as usize;
            if depth >= total || waited_from.elapsed() > Duration::from_secs(60) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    };
    let cpu = CpuSample::now().since(&cpu_before);
    if consumer.is_none() {
        // Outside the clock: every referral read back from the queue.
        let mut consumer = consume().await;
        read_back(&mut consumer, total, &mut message_ids, &mut message_size).await;
    }
    let received = message_ids.len();
    assert_eq!(received, total, "referrals missing from the provider queue");
    latencies.sort();
    // The baseline sends bodies as large as the provider messages were.
    let sample_body = vec![b'x'; message_size.max(1)];

    // Physical limit: plain publisher, pipelined confirms, same kind of queue.
    let baseline_queue = format!("spbbench-{tag}.baseline");
    let channel = connection.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"quorum".to_vec())),
    );
    channel
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
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let baseline_awaiting =
        publish_baseline(&channel, &baseline_queue, total, &sample_body, false).await;
    let _ = channel
        .queue_purge(baseline_queue.as_str().into(), Default::default())
        .await;
    let baseline_cpu_before = CpuSample::now();
    let baseline = publish_baseline(&channel, &baseline_queue, total, &sample_body, true).await;
    let baseline_cpu = CpuSample::now().since(&baseline_cpu_before);

    // HTTP ceiling: the same clients and bodies against a plain hyper service.
    let echo_base = echo_service().await;
    let echo_bodies = request_bodies(total, total);
    let echo_start = Instant::now();
    let mut echo_latencies = post_all(&client, &echo_base, &echo_bodies, clients).await;
    let echo = echo_start.elapsed();
    echo_latencies.sort();

    // The baseline again, after the HTTP ceiling, into an emptied queue: how far the
    // machine's own speed moved within this run.
    let _ = channel
        .queue_purge(baseline_queue.as_str().into(), Default::default())
        .await;
    let baseline_again =
        publish_baseline(&channel, &baseline_queue, total, &sample_body, true).await;

    let rate = received as f64 / end_to_end.as_secs_f64();
    let baseline_rate = total as f64 / baseline.as_secs_f64();
    let baseline_again_rate = total as f64 / baseline_again.as_secs_f64();
    let baseline_awaiting_rate = total as f64 / baseline_awaiting.as_secs_f64();
    let mode = if consume_live {
        "consumed (a consumer reads the queue inside the window)"
    } else {
        "confirmed (clock stops when the queue holds every referral)"
    };
    println!("backend={backend} referrals={total} clients={clients} mode={mode}");
    println!(
        "intake: {received} delivered exactly once, {:.0} referrals/s end to end (POSTs done in {:.2}s), p50={:.1}ms p99={:.1}ms",
        rate,
        posted.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    let (batches, units) = (
        writer_after.batches - writer_before.batches,
        writer_after.units - writer_before.units,
    );
    println!(
        "store writer during the POSTs: {batches} transactions with units, {:.1} units each on average",
        units as f64 / batches.max(1) as f64
    );
    println!(
        "cpu during intake: this process (spbridge + bench clients) {:.2} ms per referral \
         (user {:.2} + system {:.2}), {:.1} context switches per referral; \
         machine {:.0}% busy, {:.0}% idle, {:.0}% iowait, {:.0}% steal",
        (cpu.user + cpu.system) / received.max(1) as f64,
        cpu.user / received.max(1) as f64,
        cpu.system / received.max(1) as f64,
        cpu.switches / received.max(1) as f64,
        cpu.machine_share(cpu.machine_busy),
        cpu.machine_share(cpu.machine_idle),
        cpu.machine_share(cpu.machine_iowait),
        cpu.machine_share(cpu.machine_steal),
    );
    // Where the machine's time went, per referral and per baseline message: when both
    // runs keep the cores busy, the ratio can be no better than the inverse ratio of these.
    let machine_per_referral = cpu.per(cpu.machine_busy, received);
    let machine_per_message = baseline_cpu.per(baseline_cpu.machine_busy, total);
    println!(
        "machine time per referral: {:.3} ms busy (this process {:.3}, postgres {:.3}, \
         rabbitmq {:.3}, the rest {:.3}); per baseline message: {:.3} ms (this process {:.3}, \
         rabbitmq {:.3}); cores busy: intake {:.2}, baseline {:.2}; \
         ratio of the two costs (message / referral): {:.2}",
        machine_per_referral,
        cpu.per(cpu.user + cpu.system, received),
        cpu.per(cpu.postgres_ms, received),
        cpu.per(cpu.rabbitmq_ms, received),
        cpu.per(
            cpu.machine_busy - cpu.user - cpu.system - cpu.postgres_ms - cpu.rabbitmq_ms,
            received
        ),
        machine_per_message,
        baseline_cpu.per(baseline_cpu.user + baseline_cpu.system, total),
        baseline_cpu.per(baseline_cpu.rabbitmq_ms, total),
        cpu.machine_busy / end_to_end.as_secs_f64() / 1000.0,
        baseline_cpu.machine_busy / baseline.as_secs_f64() / 1000.0,
        machine_per_message / machine_per_referral.max(f64::MIN_POSITIVE),
    );
    println!(
        "baseline: {baseline_rate:.0} msgs/s (plain lapin, pipelined confirms, quorum queue, \
         writes queued as the relay queues them); again at the end of the run: \
         {baseline_again_rate:.0} msgs/s; awaiting each write (the baseline until session 11): \
         {baseline_awaiting_rate:.0} msgs/s"
    );
    println!(
        "ratio: {:.2} (against the end-of-run baseline: {:.2}; against the awaiting-each-write \
         baseline: {:.2})",
        rate / baseline_rate,
        rate / baseline_again_rate,
        rate / baseline_awaiting_rate
    );
    let echo_rate = total as f64 / echo.as_secs_f64();
    println!(
        "http ceiling: {echo_rate:.0} requests/s (plain hyper service reading the same bodies, same clients), p50={:.1}ms p99={:.1}ms; intake/ceiling: {:.2}",
        percentile(&echo_latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&echo_latencies, 0.99).as_secs_f64() * 1000.0,
        rate / echo_rate
    );

    let _ = channel
        .queue_delete(
            baseline_queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await;
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
    running.shutdown().await;
    if backend == "postgres" && std::env::var_os("SPBRIDGE_BENCH_KEEP_SCHEMA").is_some() {
        println!("schema kept for inspection: {schema} (SPBRIDGE_BENCH_KEEP_SCHEMA)");
    } else if backend == "postgres" {
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

/// The physical limit: `total` messages of `body` published to `queue` (a quorum queue,
/// confirms on) by a plain lapin publisher, 256 in flight, each batch's confirms awaited.
/// `queued`: each publish's frames are queued without waiting for the write, as spbridge's
/// relay publishes; otherwise each write is awaited before the next (the baseline until
/// session 11, about half as fast).
async fn publish_baseline(
    channel: &lapin::Channel,
    queue: &str,
    total: usize,
    body: &[u8],
    queued: bool,
) -> Duration {
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let mut confirms = Vec::new();
        for _ in 0..256.min(total - sent) {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/fhir+json".into())
                .with_message_id(uuid::Uuid::new_v4().to_string().into());
            let mut publish = Box::pin(channel.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                props,
            ));
            sent += 1;
            if !queued {
                confirms.push(Either::Left(ready(publish.await)));
                continue;
            }
            // As spbridge's relay publishes: one poll queues the frames for lapin's I/O
            // loop (in order) without waiting for each write; written or not, each is
            // awaited alike below.
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(publish.as_mut(), cx))
            })
            .await;
            confirms.push(match first {
                std::task::Poll::Ready(written) => Either::Left(ready(written)),
                std::task::Poll::Pending => Either::Right(publish),
            });
        }
        for confirm in confirms {
            confirm.await.expect("publish").await.expect("confirm");
        }
    }
    started.elapsed()
}

/// Read the queue until `message_ids` holds `total` ids or no message comes for a minute,
/// recording each message's id (a second delivery of one fails the bench) and the largest
/// body.
async fn read_back(
    consumer: &mut lapin::Consumer,
    total: usize,
    message_ids: &mut std::collections::HashSet<Option<lapin::types::ShortString>>,
    message_size: &mut usize,
) {
    while message_ids.len() < total {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(60), consumer.next()).await
        else {
            return;
        };
        *message_size = (*message_size).max(delivery.data.len());
        let id = delivery.properties.message_id().clone();
        assert!(message_ids.insert(id), "a referral was delivered twice");
    }
}

/// `total` referral bodies, numbered from `first`.
fn request_bodies(first: usize, total: usize) -> Arc<Vec<Bytes>> {
    Arc::new(
        (first..first + total)
            .map(|n| Bytes::from(referral(n).to_string()))
            .collect(),
    )
}

/// POST every body to `{base}/ServiceRequest` from `clients` concurrent clients (each sends
/// its next body when its last is answered), each answer expected 201; the latencies.
async fn post_all(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: &str,
    bodies: &Arc<Vec<Bytes>>,
    clients: usize,
) -> Vec<Duration> {
    let total = bodies.len();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = client.clone();
        let base = base.to_string();
        let bodies = Arc::clone(bodies);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = c;
            while n < total {
                let body = bodies[n].clone();
                let request = hyper::Request::post(format!("{base}/ServiceRequest"))
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(Full::new(body))
                    .expect("request");
                let t = Instant::now();
                let response = client.request(request).await.expect("post");
                assert_eq!(response.status(), hyper::StatusCode::CREATED);
                let _ = response.into_body().collect().await;
                latencies.push(t.elapsed());
                n += clients;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    latencies
}

/// The HTTP ceiling: a plain hyper service on the same runtime that reads each body and
/// answers 201 with a `Location`, nothing else. Returns its base URL.
async fn echo_service() -> String {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let answer = hyper::Response::builder()
                        .status(hyper::StatusCode::CREATED)
                        .header("location", format!("ServiceRequest/{}", body.len()))
                        .body(Full::new(Bytes::new()))
                        .expect("response");
                    Ok::<_, hyper::Error>(answer)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
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
