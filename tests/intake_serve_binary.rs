//! The real binary: `spbridge serve` reads its TOML file (with an environment
//! override), answers over HTTP, and on SIGTERM stops accepting, flushes the
//! outbox to RabbitMQ and exits 0.

#[path = "support/intake.rs"]
mod common;

use common::{fixture, test_config, Db};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn http_post(addr: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_cleanly_on_sigterm_after_flushing() {
    let (config, _schema, dir) = test_config(Db::Sqlite, &common::amqp_url());
    let dir = dir.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let toml = format!(
        "[http]\nlisten = \"127.0.0.1:1\"\n[store]\nurl = \"{}\"\n[broker]\nprefix = \"{}\"\n\
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
        .env("SPBRIDGE_HTTP__LISTEN", &addr) // the override wins over the file
        .env("RUST_LOG", "warn")
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
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&addr), "{first}");

    let sr = fixture("referral/servicerequest.json").to_string();
    let answer = http_post(&addr, "/ServiceRequest", &sr);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

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
        assert!(started.elapsed() < Duration::from_secs(20), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(TcpStream::connect(&addr).is_err(), "listener closed");

    // The referral made it to the provider queue before the process ended.
    let (mut harness_config, schema, tmp) = test_config(Db::Sqlite, &common::amqp_url());
    harness_config.broker.prefix = config.broker.prefix.clone();
    harness_config.broker.relay_enabled = true;
    let h = common::Harness::start_config(Db::Sqlite, harness_config, schema, tmp).await;
    h.take(
        &h.queue("8kx42"),
        1,
        Duration::from_secs(10),
        Duration::from_millis(500),
    )
    .await;
    h.finish().await;
}
