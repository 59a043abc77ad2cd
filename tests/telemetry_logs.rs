//! Logs never carry patient data: with JSON logs at debug level, posting the fixture
//! referral (transaction Bundle with its Patient), an invalid variant and a single
//! ServiceRequest, and routing them through RabbitMQ, leaves no NHS number, name, address,
//! phone number or date of birth in the captured log output. The request log line carries
//! the caller's trace id even with trace export off.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/intake.rs"]
mod common;

use common::{fixture, Db, Harness};
use hyper::StatusCode;
use serde_json::{json, Value};
use spbridge::config::{LogFormat, TelemetryConfig};
use std::time::Duration;

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[test]
fn logs_carry_no_patient_data() {
    std::env::set_var("RUST_LOG", "debug");
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
    ] {
        std::env::remove_var(var);
    }
    let logs = capture::Capture::default();
    let config = TelemetryConfig {
        log_format: LogFormat::Json,
    };
    let telemetry =
        spbridge::telemetry::init_with_writer(&config, "debug", logs.make_writer()).unwrap();
    assert!(!telemetry.exporting(), "no OTEL_* variables, no exporter");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = Harness::start(Db::Sqlite).await;
        // An invalid NHS number (Modulus 11) in the Patient: refused, and not logged.
        let mut bad = fixture("referral-transaction-bundle.json");
        bad["entry"][1]["resource"]["identifier"][0]["value"] = json!("9990001244");
        let answer = h.post("/", &bad, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.body
        );

        let traceparent = format!("00-{CALLER_TRACE}-b7ad6b7169203331-01");
        let bundle = fixture("referral-transaction-bundle.json");
        let answer = h.post("/", &bundle, &[("traceparent", &traceparent)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

        let mut sr = fixture("referral/servicerequest.json");
        sr["identifier"][0]["value"] = json!("LOGS-0002");
        let answer = h.post("/ServiceRequest", &sr, &[]).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        h.take(
            &h.queue("8kx42"),
            2,
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .await;
        h.finish().await;
    });
    let text = logs.text();
    assert!(text.lines().count() > 10, "debug logs were captured");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let request_line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request" && l["span"]["trace_id"] == CALLER_TRACE)
        .expect("the request log line carries the caller's trace id");
    assert_eq!(request_line["span"]["http.route"], "/");
    for needle in capture::PATIENT_DATA.iter().chain(["9990001244"].iter()) {
        let leak = text.lines().find(|l| l.contains(needle));
        assert!(leak.is_none(), "patient data {needle:?} logged: {leak:?}");
    }
    drop(rt);
    telemetry.shutdown();
}
