//! With RabbitMQ unreachable, `/metrics` shows what the on-call engineer needs: the broker
//! gauge at 0 and the accepted referral waiting in the outbox (backlog 1, nothing routed),
//! while `/readyz` says unready. Probes are counted but the exposition stays parseable.

#[path = "support/intake.rs"]
mod common;

use bytes::Bytes;
use common::{fixture, Db, Harness, DEAD_AMQP_URL};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

async fn metrics_text(h: &Harness) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: hyper::Uri = format!("{}/metrics", h.base()).parse().unwrap();
    let response = client.get(uri).await.expect("GET /metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The value of one series, written exactly as exposed (`name` or `name{labels}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_outbox_shows_in_metrics() {
    let h = Harness::start_with_broker(Db::Sqlite, DEAD_AMQP_URL).await;
    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!("DOWN-0001");
    let created = h.post("/ServiceRequest", &sr, &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let ready = h.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);

    let text = metrics_text(&h).await;
    assert_eq!(sample(&text, "spbridge_broker_connected"), Some(0.0));
    assert_eq!(sample(&text, "spbridge_outbox_backlog"), Some(1.0));
    assert!(sample(&text, "spbridge_outbox_oldest_age_seconds").is_some_and(|age| age >= 0.0));
    assert_eq!(
        sample(
            &text,
            "spbridge_referrals_accepted_total{provider=\"8kx42\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "spbridge_referrals_routed_total{provider=\"8kx42\"}"),
        None,
        "nothing routed while the broker is down"
    );
    assert_eq!(
        sample(
            &text,
            "spbridge_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"503\"}"
        ),
        Some(1.0)
    );
    h.finish().await;
}
