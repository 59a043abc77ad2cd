//! One referral, one trace: the HTTP server span continues the GP system's W3C trace,
//! validation and the store commit are its children, and the relay's publish span — started
//! later, from the traceparent stored in the outbox row — is its child too; the AMQP message
//! the provider receives carries the publish span's context. Spans are exported over real
//! OTLP/HTTP (protobuf) to a receiver in this test and decoded with opentelemetry-proto.
//! None of them carries the patient's NHS number, name or address.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/intake.rs"]
mod common;
#[path = "support/otlp.rs"]
mod otlp;

use common::{amqp_header, fixture, Db, Harness};
use hyper::StatusCode;
use otlp::Received;
use serde_json::json;
use spbridge::config::{LogFormat, TelemetryConfig};
use std::time::Duration;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(20);
const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_PRODUCER: i32 = 4;

fn message_id(props: &lapin::BasicProperties) -> String {
    props
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Flush until the publish span of `message_id` has arrived (it ends at the broker's confirm).
fn spans_with_publish(
    telemetry: &spbridge::telemetry::Telemetry,
    collector: &otlp::Collector,
    message_id: &str,
) -> Vec<Received> {
    for _ in 0..200 {
        telemetry.flush();
        let spans = collector.spans();
        if spans
            .iter()
            .any(|s| s.attr("messaging.message.id").as_deref() == Some(message_id))
        {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no publish span for message {message_id} reached the collector");
}

fn only<'a>(spans: &'a [Received], what: &str, f: impl Fn(&Received) -> bool) -> &'a Received {
    let found: Vec<&Received> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} span: {found:#?}");
    found[0]
}

#[test]
fn one_trace_from_request_to_publish() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    std::env::set_var("OTEL_SERVICE_NAME", "spbridge-trace-test");
    std::env::set_var("OTEL_TRACES_SAMPLER", "parentbased_always_on");
    std::env::remove_var("OTEL_SDK_DISABLED");
    std::env::remove_var("OTEL_TRACES_EXPORTER");
    let logs = capture::Capture::default();
    let config = TelemetryConfig {
        log_format: LogFormat::Json,
    };
    let telemetry =
        spbridge::telemetry::init_with_writer(&config, "info", logs.make_writer()).unwrap();
    assert!(telemetry.exporting());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let collector = otlp::Collector::default();
    rt.block_on(async { collector.serve(listener) });

    let traceparent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let (h, with_parent, without_parent) = rt.block_on(async {
        let h = Harness::start(Db::Sqlite).await;
        let bundle = fixture("referral-transaction-bundle.json");
        let answer = h.post("/", &bundle, &[("traceparent", &traceparent)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let mut sr = fixture("referral/servicerequest.json");
        sr["identifier"][0]["value"] = json!("TRACE-0002");
        let answer = h.post("/ServiceRequest", &sr, &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let mut got = h
            .take(&h.queue("8kx42"), 2, WAIT, Duration::from_millis(500))
            .await;
        // Tell the two messages apart by the trace they carry.
        got.sort_by_key(|(props, _)| {
            !amqp_header(props, "traceparent")
                .unwrap_or_default()
                .contains(CALLER_TRACE)
        });
        let second = got.pop().unwrap().0;
        let first = got.pop().unwrap().0;
        (h, first, second)
    });

    // The referral sent with the caller's traceparent.
    let id = message_id(&with_parent);
    let spans = spans_with_publish(&telemetry, &collector, &id);
    let ours: Vec<Received> = spans
        .iter()
        .filter(|s| s.trace_id() == CALLER_TRACE)
        .cloned()
        .collect();
    let server = only(&ours, "HTTP server", |s| s.span.kind == SPAN_KIND_SERVER);
    assert_eq!(server.span.name, "POST /");
    assert_eq!(server.parent_span_id(), CALLER_SPAN, "continues the caller");
    assert_eq!(server.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(server.attr("http.route").as_deref(), Some("/"));
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.attr("url.scheme").as_deref(), Some("http"));
    assert_eq!(server.service, "spbridge-trace-test");

    let validations: Vec<&Received> = ours
        .iter()
        .filter(|s| s.span.name.starts_with("validate "))
        .collect();
    assert!(validations.len() >= 2, "one per resource: {validations:#?}");
    assert!(validations
        .iter()
        .all(|s| s.parent_span_id() == server.span_id()));
    let sr_validation = only(&ours, "ServiceRequest validation", |s| {
        s.span.name == "validate ServiceRequest"
    });
    assert_eq!(
        sr_validation.attr("validation.errors").as_deref(),
        Some("0")
    );
    assert!(sr_validation
        .attr("fhir.profile")
        .is_some_and(|p| p.starts_with("https://")));
    assert!(sr_validation.attr("validation.warnings").is_some());

    let commit = only(&ours, "store commit", |s| s.span.name == "store commit");
    assert_eq!(commit.parent_span_id(), server.span_id());
    assert_eq!(commit.attr("db.system").as_deref(), Some("sqlite"));
    assert_eq!(commit.attr("db.operation").as_deref(), Some("commit"));

    let publish = only(&ours, "publish", |s| s.span.kind == SPAN_KIND_PRODUCER);
    assert_eq!(publish.parent_span_id(), server.span_id());
    assert_eq!(publish.span.name, format!("publish {}.referrals", h.prefix));
    assert_eq!(
        publish.attr("messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        publish.attr("messaging.operation").as_deref(),
        Some("publish")
    );
    assert_eq!(
        publish.attr("messaging.destination.name"),
        Some(format!("{}.referrals", h.prefix))
    );
    assert_eq!(publish.attr("messaging.message.id"), Some(id.clone()));
    assert_eq!(
        amqp_header(&with_parent, "traceparent"),
        Some(format!("00-{CALLER_TRACE}-{}-01", publish.span_id())),
        "the provider's message continues the publish span"
    );

    // The referral sent without a traceparent: the server span starts the trace and the
    // publish span still joins it.
    let id = message_id(&without_parent);
    let spans = spans_with_publish(&telemetry, &collector, &id);
    let publish = only(&spans, "second publish", |s| {
        s.attr("messaging.message.id").as_deref() == Some(id.as_str())
    });
    let server = only(&spans, "second server", |s| {
        s.span.kind == SPAN_KIND_SERVER && s.span.span_id == publish.span.parent_span_id
    });
    assert_eq!(
        server.attr("http.route").as_deref(),
        Some("/ServiceRequest")
    );
    assert_eq!(server.trace_id(), publish.trace_id());
    assert!(server.span.parent_span_id.is_empty(), "a new trace");
    let header = amqp_header(&without_parent, "traceparent").unwrap();
    assert!(header.contains(&publish.trace_id()));

    // No patient data in any span name, attribute or event.
    for s in &spans {
        let text = format!("{:?}", s.span);
        assert_eq!(
            capture::patient_data_in(&text),
            None,
            "span {} leaks patient data",
            s.span.name
        );
    }
    // JSON logs carry the trace id of the request they belong to, and no patient data.
    let text = logs.text();
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert!(text.contains(CALLER_TRACE), "logs carry trace_id");
    assert_eq!(capture::patient_data_in(&text), None);

    rt.block_on(h.finish());
    telemetry.shutdown();
}
