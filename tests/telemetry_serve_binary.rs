//! The real binary with telemetry configured the production way: `OTEL_*` variables turn on
//! OTLP/HTTP export, `SPBRIDGE_TELEMETRY__LOG_FORMAT=json` gives JSON logs. The batch
//! processor's schedule is set far beyond the test, so the spans can only reach the receiver
//! through the flush on shutdown: after SIGTERM the request's server span and the relay's
//! publish span (drained on shutdown) are there, in the caller's trace.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/intake.rs"]
mod common;
#[path = "support/otlp.rs"]
mod otlp;

use common::{fixture, test_config, Db};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLER_TRACE: &str = "6e0c63257de34c92bf9efcd03927272e";

fn http_post(addr: &str, path: &str, body: &str, traceparent: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\n\
         traceparent: {traceparent}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_spans_on_shutdown() {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", receiver.local_addr().unwrap());
    let collector = otlp::Collector::default();
    collector.serve(receiver);

    let (config, _schema, dir) = test_config(Db::Sqlite, &common::amqp_url());
    let dir = dir.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let toml = format!(
        "[http]\nlisten = \"{addr}\"\n[store]\nurl = \"{}\"\n[broker]\nprefix = \"{}\"\n\
         [routing]\ntriage_provider = \"8wy01\"\ndirectory = \"{}/providers\"\n",
        config.store.url,
        config.broker.prefix,
        common::FIXTURES
    );
    let path = dir.path().join("spbridge.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_spbridge"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("SPBRIDGE_TELEMETRY__LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "spbridge-binary-test")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "3600000")
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&addr), "{first}");

    let mut sr = fixture("referral/servicerequest.json");
    sr["identifier"][0]["value"] = json!("BINARY-TRACE-1");
    let traceparent = format!("00-{CALLER_TRACE}-a3ce929d0e0e4736-01");
    let answer = http_post(&addr, "/ServiceRequest", &sr.to_string(), &traceparent);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // Nothing is exported before shutdown (the batch schedule is an hour).
    assert!(collector.spans().is_empty());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");

    let spans = collector.spans();
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.trace_id() == CALLER_TRACE)
        .collect();
    assert!(
        ours.iter()
            .any(|s| s.span.name == "POST /ServiceRequest" && s.service == "spbridge-binary-test"),
        "server span flushed on shutdown: {ours:#?}"
    );
    assert!(
        ours.iter()
            .any(|s| s.attr("messaging.system").as_deref() == Some("rabbitmq")),
        "publish span flushed on shutdown"
    );
    for s in &spans {
        assert_eq!(capture::patient_data_in(&format!("{:?}", s.span)), None);
    }

    let text = logs.join().unwrap();
    let json_lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(json_lines
        .iter()
        .any(|l| l["span"]["trace_id"] == CALLER_TRACE && l["fields"]["message"] == "request"));
    assert_eq!(capture::patient_data_in(&text), None);

    // Clean up the run's broker objects (the referral was published before exit).
    let (mut harness_config, schema, tmp) = test_config(Db::Sqlite, &common::amqp_url());
    harness_config.broker.prefix = config.broker.prefix.clone();
    let h = common::Harness::start_config(Db::Sqlite, harness_config, schema, tmp).await;
    h.take(
        &h.queue("8kx42"),
        1,
        Duration::from_secs(10),
        Duration::from_millis(300),
    )
    .await;
    h.finish().await;
}
