//! One referral, one trace: the HTTP server span continues the GP system's W3C trace,
//! validation and the store commit are its children, and the relay's publish span — started
//! later, from the traceparent stored in the outbox row — is its child too; the AMQP message
//! the provider receives carries the publish span's context, from which a consumer's process
//! span and its notification client span continue (the helpers the Task loop uses). Spans are
//! exported over real
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
use spbridge::telemetry::{propagation, spans, Telemetry};
use std::sync::OnceLock;
use std::time::Duration;

const CALLER_SPAN: &str = "00f067aa0ba902b7";
const WAIT: Duration = Duration::from_secs(20);
const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;
const SPAN_KIND_PRODUCER: i32 = 4;
const SPAN_KIND_CONSUMER: i32 = 5;

/// Telemetry is process-wide: one exporter, one receiver and one log capture for every test
/// of this binary (each test follows its own trace ids).
struct Shared {
    telemetry: Telemetry,
    collector: otlp::Collector,
    logs: capture::Capture,
    _receiver_runtime: tokio::runtime::Runtime,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let collector = otlp::Collector::default();
        runtime.block_on(async { collector.serve(listener) });
        Shared {
            telemetry,
            collector,
            logs,
            _receiver_runtime: runtime,
        }
    })
}

fn message_id(props: &lapin::BasicProperties) -> String {
    props
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// Flush until the publish span of `message_id` has arrived (it ends at the broker's confirm).
fn spans_with_publish(message_id: &str) -> Vec<Received> {
    let shared = shared();
    for _ in 0..200 {
        shared.telemetry.flush();
        let spans = shared.collector.spans();
        if spans.iter().any(|s| {
            s.span.kind == SPAN_KIND_PRODUCER
                && s.attr("messaging.message.id").as_deref() == Some(message_id)
        }) {
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
fn one_trace_from_request_to_publish_sqlite() {
    one_trace(Db::Sqlite, "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn one_trace_from_request_to_publish_postgres() {
    one_trace(Db::Postgres, "5cf92f3577b34da6a3ce929d0e0e4737");
}

/// What a provider-side consumer does with a delivered message: a process span continuing
/// the message's trace, and inside it a notification request whose headers carry the trace.
fn consume_and_notify(queue: &str, props: &lapin::BasicProperties) -> hyper::HeaderMap {
    let id = message_id(props);
    let process = spans::amqp_process(queue, Some(&id), props.headers().as_ref());
    let mut headers = hyper::HeaderMap::new();
    process.in_scope(|| {
        let client = spans::http_client("POST", "127.0.0.1", 9);
        assert!(propagation::inject_http(&mut headers, &client));
        spans::record_http_status(&client, 200);
    });
    spans::record_process_outcome(&process, "applied");
    headers
}

fn one_trace(db: Db, caller_trace: &'static str) {
    let shared = shared();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let identifier = format!("TRACE-{caller_trace}");
    let traceparent = format!("00-{caller_trace}-{CALLER_SPAN}-01");
    let (h, with_parent, without_parent) = rt.block_on(async {
        let h = Harness::start(db).await;
        let bundle = fixture("referral-transaction-bundle.json");
        let answer = h.post("/", &bundle, &[("traceparent", &traceparent)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let mut sr = fixture("referral/servicerequest.json");
        sr["identifier"][0]["value"] = json!(identifier);
        let answer = h.post("/ServiceRequest", &sr, &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let mut got = h
            .take(&h.queue("8kx42"), 2, WAIT, Duration::from_millis(500))
            .await;
        // Tell the two messages apart by the trace they carry.
        got.sort_by_key(|(props, _)| {
            !amqp_header(props, "traceparent")
                .unwrap_or_default()
                .contains(caller_trace)
        });
        let second = got.pop().unwrap().0;
        let first = got.pop().unwrap().0;
        (h, first, second)
    });

    // The referral sent with the caller's traceparent.
    let id = message_id(&with_parent);
    let notification_headers = consume_and_notify(&h.queue("8kx42"), &with_parent);
    let spans = spans_with_publish(&id);
    let ours: Vec<Received> = spans
        .iter()
        .filter(|s| s.trace_id() == caller_trace)
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
    let db_system = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgresql",
    };
    assert_eq!(commit.attr("db.system").as_deref(), Some(db_system));
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
        Some(format!("00-{caller_trace}-{}-01", publish.span_id())),
        "the provider's message continues the publish span"
    );

    // The provider side continues it: process span under publish, notification under process,
    // and the notification request carries the client span's context.
    let process = only(&ours, "process", |s| s.span.kind == SPAN_KIND_CONSUMER);
    assert_eq!(process.parent_span_id(), publish.span_id());
    assert_eq!(
        process.attr("messaging.destination.name"),
        Some(h.queue("8kx42"))
    );
    assert_eq!(process.attr("outcome").as_deref(), Some("applied"));
    let notify = only(&ours, "notification", |s| {
        s.span.kind == SPAN_KIND_CLIENT && s.attr("http.request.method").is_some()
    });
    assert_eq!(notify.parent_span_id(), process.span_id());
    assert_eq!(notify.attr("server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        notification_headers["traceparent"].to_str().unwrap(),
        format!("00-{caller_trace}-{}-01", notify.span_id())
    );

    // The referral sent without a traceparent: the server span starts the trace and the
    // publish span still joins it.
    let id = message_id(&without_parent);
    let spans = spans_with_publish(&id);
    let publish = only(&spans, "second publish", |s| {
        s.span.kind == SPAN_KIND_PRODUCER
            && s.attr("messaging.message.id").as_deref() == Some(id.as_str())
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
    let text = shared.logs.text();
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert!(text.contains(caller_trace), "logs carry trace_id");
    assert_eq!(capture::patient_data_in(&text), None);

    rt.block_on(h.finish());
}
