//! `/metrics` is Prometheus text (checked with a parser and line by line), served by the
//! HTTP layer without touching the FHIR routes, and its counters move as a referral flows:
//! request counts and durations by route template, validation failures by issue code,
//! referrals accepted and routed, outbox backlog, publish-confirm latency, broker state, and
//! the Task-loop metrics other modules record with one call. `/readyz` is unaffected.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/intake.rs"]
mod common;

use bytes::Bytes;
use common::{fixture, Db, Harness};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use spbridge::telemetry::metrics;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// One parsed sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed text exposition (format 0.0.4).
struct Exposition {
    text: String,
    samples: Vec<Sample>,
}

/// A strict parser of the Prometheus text format: `# HELP`/`# TYPE` comments, samples
/// `name{label="value",...} number` with escaped label values (which may contain `{}`), every
/// sample typed, histogram buckets cumulative and ending in `le="+Inf"` equal to `_count`.
/// (prometheus-parse was tried first: its label regex stops at the first `}`, so it cannot
/// read route templates like `/ServiceRequest/{id}`.)
fn parse(text: &str) -> Vec<Sample> {
    let sample_re = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$"#,
    )
    .unwrap();
    let label_re = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        let caps = sample_re
            .captures(line)
            .unwrap_or_else(|| panic!("not Prometheus text: {line}"));
        let name = caps[1].to_string();
        let labels = caps
            .get(2)
            .map(|l| {
                label_re
                    .captures_iter(l.as_str())
                    .map(|c| (c[1].to_string(), c[2].to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let value = match &caps[3] {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name);
        assert!(types.contains_key(family), "sample without # TYPE: {line}");
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    // Histogram buckets: cumulative, +Inf bucket equals _count.
    for count in samples.iter().filter(|s| s.name.ends_with("_count")) {
        let base = count.name.trim_end_matches("_count");
        let bucket_name = format!("{base}_bucket");
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == bucket_name)
            .filter(|s| {
                let mut l = s.labels.clone();
                l.remove("le");
                l == count.labels
            })
            .collect();
        if buckets.is_empty() {
            continue;
        }
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
        let inf = buckets.last().unwrap();
        assert_eq!(inf.labels.get("le").map(String::as_str), Some("+Inf"));
        assert_eq!(inf.value, count.value);
    }
    samples
}

impl Exposition {
    /// The value of the sample with exactly these labels (0 when absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
            .sum()
    }

    /// Observations of a histogram series.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(&format!("{name}_count"), labels)
    }

    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

async fn scrape(h: &Harness) -> Exposition {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: hyper::Uri = format!("{}/metrics", h.base()).parse().unwrap();
    let response = client.get(uri).await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 exposition");
    let samples = parse(&text);
    Exposition { text, samples }
}

/// Scrape until `done` holds (the relay confirms asynchronously).
async fn scrape_until(h: &Harness, done: impl Fn(&Exposition) -> bool) -> Exposition {
    for _ in 0..200 {
        let e = scrape(h).await;
        if done(&e) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "metrics never reached the expected state:\n{}",
        scrape(h).await.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_referral_end_to_end() {
    let h = Harness::start(Db::Sqlite).await;
    let before = scrape_until(&h, |e| e.value(metrics::BROKER_CONNECTED, &[]) == 1.0).await;
    let ready = h.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["status"], "ready");

    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!("METRICS-0001");
    let created = h.post("/ServiceRequest", &sr, &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let sr_id = created.body["id"].as_str().unwrap().to_string();
    let mut bad = sr.clone();
    bad["identifier"][0]["value"] = json!("METRICS-0002");
    bad.as_object_mut().unwrap().remove("subject");
    let refused = h.post("/ServiceRequest", &bad, &[]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let read = h.get(&format!("/ServiceRequest/{sr_id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    h.take(&h.queue("8kx42"), 1, WAIT, Duration::from_millis(200))
        .await;

    // One-call recording functions the Task loop and token endpoint use.
    metrics::task_update("amqp", "applied");
    metrics::task_update("http", "rejected");
    metrics::notification_delivered();
    metrics::notification_failed();
    metrics::token_request("issued");

    let provider = [("provider", "8kx42")];
    let after = scrape_until(&h, |e| {
        e.value(metrics::REFERRALS_ROUTED, &provider)
            > before.value(metrics::REFERRALS_ROUTED, &provider)
            && e.value(metrics::OUTBOX_BACKLOG, &[]) == 0.0
    })
    .await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let post = |status| {
        [
            ("route", "/ServiceRequest"),
            ("method", "POST"),
            ("status", status),
        ]
    };
    assert_eq!(delta(metrics::HTTP_REQUESTS, &post("201")), 1.0);
    assert_eq!(delta(metrics::HTTP_REQUESTS, &post("422")), 1.0);
    let read_labels = [
        ("route", "/ServiceRequest/{id}"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(delta(metrics::HTTP_REQUESTS, &read_labels), 1.0);
    let post_route = [("route", "/ServiceRequest"), ("method", "POST")];
    assert_eq!(
        after.count(metrics::HTTP_DURATION, &post_route)
            - before.count(metrics::HTTP_DURATION, &post_route),
        2.0,
        "duration histogram count"
    );
    assert!(
        !after.text.contains(&sr_id),
        "route templates, never raw paths with ids"
    );
    assert!(
        after.sum(metrics::VALIDATION_FAILURES) > before.sum(metrics::VALIDATION_FAILURES),
        "validation failures counted"
    );
    let codes = after.label_values(metrics::VALIDATION_FAILURES, "code");
    assert!(codes
        .iter()
        .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-')));
    assert_eq!(delta(metrics::REFERRALS_ACCEPTED, &provider), 1.0);
    assert_eq!(delta(metrics::REFERRALS_ROUTED, &provider), 1.0);
    assert_eq!(after.value(metrics::OUTBOX_OLDEST_AGE, &[]), 0.0);
    assert_eq!(after.value(metrics::BROKER_CONNECTED, &[]), 1.0);
    assert!(
        after.count(metrics::PUBLISH_CONFIRM_DURATION, &[])
            > before.count(metrics::PUBLISH_CONFIRM_DURATION, &[])
    );
    let amqp_applied = [("channel", "amqp"), ("outcome", "applied")];
    assert_eq!(delta(metrics::TASK_UPDATES, &amqp_applied), 1.0);
    let http_rejected = [("channel", "http"), ("outcome", "rejected")];
    assert_eq!(delta(metrics::TASK_UPDATES, &http_rejected), 1.0);
    assert_eq!(delta(metrics::NOTIFICATIONS_DELIVERED, &[]), 1.0);
    assert_eq!(delta(metrics::NOTIFICATIONS_FAILED, &[]), 1.0);
    // The pending-notifications gauge belongs to the notifier, which sets it to the real
    // backlog on every poll (a value set here would race with it): none are pending.
    assert!(after.text.contains(metrics::NOTIFICATIONS_PENDING));
    assert_eq!(after.value(metrics::NOTIFICATIONS_PENDING, &[]), 0.0);
    assert_eq!(
        delta(metrics::TOKEN_REQUESTS, &[("outcome", "issued")]),
        1.0
    );
    assert_eq!(capture::patient_data_in(&after.text), None);
    assert!(after
        .text
        .contains("# TYPE spbridge_http_request_duration_seconds histogram"));

    // /metrics is not a FHIR route: only GET, and it does not count itself.
    assert_eq!(
        after.value(
            metrics::HTTP_REQUESTS,
            &[("route", "/metrics"), ("method", "GET"), ("status", "200")]
        ),
        0.0
    );
    let ready = h.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    h.finish().await;
}
