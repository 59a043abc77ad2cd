//! Load generator: many GP systems posting referrals to a running spbridge at once.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080 \
//!     --rate 500 --duration 1800 --concurrency 256 [--token T] [--pid PID] [--report-every 60] \
//!     [--warmup 5]
//! ```
//!
//! Open loop: requests are scheduled at `--rate` per second whatever the service does, and
//! each latency is measured from its scheduled time (so a stalled service shows as latency,
//! not as a politely slower client — no coordinated omission). `--rate 0` is closed loop:
//! `--concurrency` clients back to back. At most `--concurrency` requests are outstanding;
//! a request that cannot start on time because of that limit counts as late, and its
//! latency still runs from its scheduled time.
//!
//! Every `--report-every` seconds and at the end it prints: requests sent, answered 201,
//! errors by kind, achieved rate, latency p50/p90/p99/max; with `--pid`, the service's
//! resident memory and open file descriptors (from /proc); from `/readyz`, the outbox
//! backlog and its oldest row's age. That makes it the soak tool too: a long run shows
//! whether anything grows without bound. With `--warmup S`, a last line gives the latencies
//! of the requests scheduled after the first S seconds as well (the whole run's line still
//! counts every request): a service started on an empty database is slower for its first
//! second or so. Each referral has a unique placer identifier, so
//! none is refused as a duplicate.

/// The allocator `spbridge` itself uses, so the figures match the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// spbridge's base URL (http only; put a TLS terminator's plain side here for HTTPS).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Referrals per second (open loop); 0 = closed loop as fast as `--concurrency` allows.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How long to run, seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Most requests outstanding at once (and clients in closed loop).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Bearer token to send (`spbridge token` prints one).
    #[arg(long)]
    token: Option<String>,
    /// Process id of the service, to report its memory and file descriptors.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds between interim reports.
    #[arg(long, default_value_t = 60)]
    report_every: u64,
    /// Seconds at the start whose requests are left out of the "after warm-up" line.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Provider ODS code the referrals are addressed to (must be configured in spbridge).
    #[arg(long, default_value = "8KX42")]
    provider_ods: String,
}

/// What one interval (or the whole run) saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    created: u64,
    refused: u64,
    failed: u64,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.latencies_us.extend_from_slice(&other.latencies_us);
        self.created += other.created;
        self.refused += other.refused;
        self.failed += other.failed;
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn referral(template: &Value, n: u64, run: &str, ods: &str) -> Bytes {
    let mut sr = template.clone();
    sr["identifier"][0]["value"] = json!(format!("LOAD-{run}-{n:09}"));
    sr["performer"] = json!([{"identifier": {
        "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}}]);
    Bytes::from(sr.to_string())
}

fn proc_status(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss_kib, fds))
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn readyz(client: &HttpClient, url: &str) -> String {
    let Ok(request) = hyper::Request::get(format!("{url}/readyz")).body(Full::new(Bytes::new()))
    else {
        return "readyz: bad url".into();
    };
    match client.request(request).await {
        Ok(response) => {
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            let value: Value = body
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            format!(
                "outbox pending {} oldest {} ms",
                value["outbox"]["pending"], value["outbox"]["oldestAgeMs"]
            )
        }
        Err(e) => format!("readyz failed: {e}"),
    }
}

async fn report(
    label: &str,
    tally: &mut Tally,
    elapsed: Duration,
    args: &Args,
    client: &HttpClient,
) {
    tally.latencies_us.sort_unstable();
    let answered = tally.created + tally.refused;
    let mut line = format!(
        "{label}: {} sent, {} created, {} refused, {} failed, {:.0}/s; latency ms p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
        answered + tally.failed,
        tally.created,
        tally.refused,
        tally.failed,
        tally.created as f64 / elapsed.as_secs_f64().max(1e-9),
        percentile(&tally.latencies_us, 0.50),
        percentile(&tally.latencies_us, 0.90),
        percentile(&tally.latencies_us, 0.99),
        percentile(&tally.latencies_us, 1.0),
    );
    if let Some((rss, fds)) = args.pid.and_then(proc_status) {
        line.push_str(&format!("; service RSS {} MiB, {fds} fds", rss / 1024));
    }
    line.push_str(&format!("; {}", readyz(client, &args.url).await));
    println!("{line}");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let template: Value =
        serde_json::from_str(include_str!("../fixtures/referral/servicerequest.json"))
            .expect("fixture referral is JSON");
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build_http();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let interval = Arc::new(Mutex::new(Tally::default()));
    let late = Arc::new(AtomicU64::new(0));
    let steady = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let warmed = started + Duration::from_secs(args.warmup);
    let end = started + Duration::from_secs(args.duration);
    if let Some((rss, fds)) = args.pid.and_then(proc_status) {
        println!("start: service RSS {} MiB, {fds} fds", rss / 1024);
    }
    println!(
        "load: {} for {} s, rate {}, concurrency {}",
        args.url,
        args.duration,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "closed loop".into()
        },
        args.concurrency
    );
    let mut total = Tally::default();
    let mut next_report = started + Duration::from_secs(args.report_every);
    let mut last_report = started;
    let mut n: u64 = 0;
    let mut inflight = Vec::new();
    loop {
        let scheduled = if args.rate > 0.0 {
            started + Duration::from_secs_f64(n as f64 / args.rate)
        } else {
            Instant::now()
        };
        if scheduled >= end {
            break;
        }
        // Only when the request is due later: tokio's timer rounds a deadline up to its next
        // millisecond, so sleeping until "now" capped the closed loop at ≈ 1,000 requests/s.
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                late.fetch_add(1, Ordering::Relaxed);
                permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open")
            }
        };
        let body = referral(&template, n, &run, &args.provider_ods);
        let mut request = hyper::Request::post(format!("{}/ServiceRequest", args.url))
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=minimal");
        if let Some(token) = &args.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let Ok(request) = request.body(Full::new(body)) else {
            eprintln!("bad --url");
            return;
        };
        let poster = client.clone();
        let tallies = interval.clone();
        let steady_tally = (scheduled >= warmed).then(|| steady.clone());
        inflight.push(tokio::spawn(async move {
            let _permit = permit;
            let outcome = poster.request(request).await;
            let status = match outcome {
                Ok(response) => {
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    Some(status)
                }
                Err(_) => None,
            };
            let latency = scheduled.elapsed().as_micros() as u64;
            let count = |tally: &mut Tally| match status {
                Some(s) if s == hyper::StatusCode::CREATED => {
                    tally.created += 1;
                    tally.latencies_us.push(latency);
                }
                Some(_) => tally.refused += 1,
                None => tally.failed += 1,
            };
            count(&mut tallies.lock().unwrap_or_else(|e| e.into_inner()));
            if let Some(steady) = steady_tally {
                count(&mut steady.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }));
        n += 1;
        if inflight.len() > 4 * args.concurrency {
            inflight.retain(|t| !t.is_finished());
        }
        if Instant::now() >= next_report {
            let mut tally =
                std::mem::take(&mut *interval.lock().unwrap_or_else(|e| e.into_inner()));
            total.merge(&tally);
            report(
                &format!("t={:>5}s", started.elapsed().as_secs()),
                &mut tally,
                last_report.elapsed(),
                &args,
                &client,
            )
            .await;
            last_report = Instant::now();
            next_report += Duration::from_secs(args.report_every);
        }
    }
    for task in inflight {
        let _ = task.await;
    }
    let tally = std::mem::take(&mut *interval.lock().unwrap_or_else(|e| e.into_inner()));
    total.merge(&tally);
    let elapsed = started.elapsed();
    report("total", &mut total, elapsed, &args, &client).await;
    if args.warmup > 0 {
        let mut steady = std::mem::take(&mut *steady.lock().unwrap_or_else(|e| e.into_inner()));
        let label = format!("after the first {} s", args.warmup);
        report(
            &label,
            &mut steady,
            elapsed.saturating_sub(Duration::from_secs(args.warmup)),
            &args,
            &client,
        )
        .await;
    }
    println!(
        "scheduled {n}; started late for want of a free slot (--concurrency): {}",
        late.load(Ordering::Relaxed)
    );
}
