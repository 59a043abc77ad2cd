//! The Task loop in the referral's trace, through the real service: the provider inbox
//! receives the referral and records it as received (its update carries the referral
//! message's trace context), spbridge's task-update consumer processes it in a span that
//! continues the relay's publish span, the Task commit is its child, and the rest-hook
//! notification to the GP system is a client span that continues it too — its request
//! carries that span's `traceparent`. Exported over real OTLP/HTTP to a receiver here.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/intake.rs"]
mod common;
#[path = "support/hook.rs"]
mod hook;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/inbox.rs"]
mod provider_inbox;

use common::{amqp_header, fixture, test_config, wait_for, Db, Harness};
use hyper::StatusCode;
use serde_json::json;
use spbridge::config::{LogFormat, TelemetryConfig};
use spbridge::inbox::InboxSettings;
use std::time::Duration;

const CALLER_TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const SPAN_KIND_CLIENT: i32 = 3;
const SPAN_KIND_PRODUCER: i32 = 4;
const SPAN_KIND_CONSUMER: i32 = 5;
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn provider_update_and_notification_join_the_referral_trace() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{}", listener.local_addr().unwrap()),
    );
    std::env::set_var("OTEL_TRACES_SAMPLER", "parentbased_always_on");
    std::env::remove_var("OTEL_SDK_DISABLED");
    let logs = capture::Capture::default();
    let config = TelemetryConfig {
        log_format: LogFormat::Json,
    };
    let telemetry =
        spbridge::telemetry::init_with_writer(&config, "info", logs.make_writer()).unwrap();
    assert!(telemetry.exporting());
    let receiver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let collector = otlp::Collector::default();
    receiver.block_on(async { collector.serve(listener) });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (h, hook, task_id, referral_traceparent) = rt.block_on(async {
        let (mut config, schema, dir) = test_config(Db::Sqlite, &common::amqp_url());
        config.notify.poll_interval_ms = 50;
        let h = Harness::start_config(Db::Sqlite, config, schema, dir).await;
        let hook = hook::Hook::start().await;
        let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "trace",
            "criteria": "Task?status=received",
            "channel": {"type": "rest-hook", "endpoint": hook.url(), "payload": "application/fhir+json"}});
        assert_eq!(h.post("/Subscription", &subscription, &[]).await.status, StatusCode::CREATED);
        let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let answer = h.post("/", &fixture("referral-transaction-bundle.json"), &[("traceparent", &traceparent)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        // Wait for the topology, then let the provider's inbox receive it.
        let updates = format!("{}.task-updates", h.prefix);
        wait_for("topology never declared", WAIT, async || h.depth(&updates).await.is_some()).await;
        let settings = InboxSettings { amqp_url: common::amqp_url(), tls: Default::default(), prefix: h.prefix.clone(), provider_id: "8kx42".into() };
        // Peek at the referral's trace context as the provider received it.
        let depth_ok = h.depth(&h.queue("8kx42")).await;
        assert!(depth_ok.is_some());
        let task_id = provider_inbox::receive_one(&settings, WAIT).await.task_id;
        hook.wait_for(1, WAIT).await;
        let received = &hook.received()[0];
        let tp = received.headers.get("traceparent").map(|v| v.to_str().unwrap().to_string());
        (h, hook, task_id, tp)
    });
    let notification_traceparent =
        referral_traceparent.expect("the notification carries a traceparent");
    assert!(
        notification_traceparent.contains(CALLER_TRACE),
        "{notification_traceparent}"
    );

    // Collect the trace.
    let mut spans = Vec::new();
    for _ in 0..200 {
        telemetry.flush();
        spans = collector
            .spans()
            .into_iter()
            .filter(|s| s.trace_id() == CALLER_TRACE)
            .collect::<Vec<_>>();
        if spans
            .iter()
            .any(|s| s.span.kind == SPAN_KIND_CLIENT && s.attr("http.request.method").is_some())
            && spans.iter().any(|s| s.span.kind == SPAN_KIND_CONSUMER)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let one = |what: &str, f: &dyn Fn(&otlp::Received) -> bool| -> otlp::Received {
        let found: Vec<_> = spans.iter().filter(|s| f(s)).cloned().collect();
        assert_eq!(found.len(), 1, "exactly one {what} span in {spans:#?}");
        found.into_iter().next().unwrap()
    };
    let publish = one("referral publish", &|s| s.span.kind == SPAN_KIND_PRODUCER);
    let process = one("task-update process", &|s| {
        s.span.kind == SPAN_KIND_CONSUMER
    });
    assert_eq!(
        process.parent_span_id(),
        publish.span_id(),
        "the update continues the referral message"
    );
    assert_eq!(process.attr("outcome").as_deref(), Some("applied"));
    assert_eq!(
        process.attr("messaging.system").as_deref(),
        Some("rabbitmq")
    );
    let commits: Vec<_> = spans
        .iter()
        .filter(|s| s.span.name == "store commit" && s.parent_span_id() == process.span_id())
        .collect();
    assert_eq!(
        commits.len(),
        1,
        "the Task change is committed inside the process span"
    );
    let client = one("notification", &|s| {
        s.span.kind == SPAN_KIND_CLIENT && s.attr("http.request.method").is_some()
    });
    assert_eq!(
        client.parent_span_id(),
        process.span_id(),
        "the notification continues the update"
    );
    assert_eq!(
        notification_traceparent,
        format!("00-{CALLER_TRACE}-{}-01", client.span_id())
    );
    // No patient data anywhere in the trace.
    let text = format!("{spans:?}");
    for secret in ["9990001243", "Ashworth", "Margaret"] {
        assert!(!text.contains(secret), "{secret} in spans");
    }
    let _ = (amqp_header, task_id);
    rt.block_on(async {
        drop(hook);
        h.finish().await;
    });
    telemetry.shutdown();
}
