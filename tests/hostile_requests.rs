//! A catalogue of hostile requests over raw sockets: huge bodies, deep nesting, very long
//! strings, invalid UTF-8, duplicate JSON keys, numbers out of range, slow clients
//! (slowloris, a stalled body) and thousands of concurrent connections. Each gets a clean
//! 4xx with an OperationOutcome or a closed connection, memory stays bounded, and the service
//! keeps serving everyone else throughout.

#[path = "support/intake.rs"]
mod common;

use common::{test_config, validator, Db};
use serde_json::{json, Value};
use spbridge::service::{start, Running};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough that a test fails instead of hanging; never a performance claim.
const PATIENCE: Duration = Duration::from_secs(20);

async fn service(
    tweak: impl FnOnce(&mut spbridge::config::Config),
) -> (Running, tempfile::TempDir) {
    let (mut config, _schema, dir) = test_config(Db::Sqlite, common::DEAD_AMQP_URL);
    config.http.max_body_bytes = 256 * 1024;
    config.http.header_read_timeout_ms = 1_000;
    config.http.body_read_timeout_ms = 1_000;
    tweak(&mut config);
    let running = start(config, validator()).await.expect("service starts");
    (running, dir.expect("sqlite dir"))
}

/// Send raw bytes, read the whole answer (the request asks the server to close).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Value) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .ok();
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked or not, the JSON is the part between the first '{' and the last '}'.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b > a => serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, json)
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: spbridge\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn assert_outcome(status: u16, body: &Value, expected: u16, says: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let text = body.to_string();
    assert!(text.contains(says), "the outcome says '{says}': {text}");
}

/// The service still answers an ordinary request.
async fn still_serving(addr: SocketAddr) {
    let (status, body) = exchange(
        addr,
        b"GET /metadata HTTP/1.1\r\nHost: spbridge\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["resourceType"], "CapabilityStatement");
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_a_clean_400_family_outcome() {
    let (running, _dir) = service(|_| {}).await;
    let addr = running.local_addr;
    let json_type = "application/fhir+json";

    // Bigger than max_body_bytes, declared.
    let huge = vec![b' '; 300 * 1024];
    let (status, body) = exchange(addr, &post("/ServiceRequest", json_type, &huge)).await;
    assert_outcome(status, &body, 413, "exceeds the limit");

    // Bigger than max_body_bytes, chunked without a length.
    let mut chunked = b"POST /ServiceRequest HTTP/1.1\r\nHost: spbridge\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b' '; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = exchange(addr, &chunked).await;
    assert_outcome(status, &body, 413, "exceeds the limit");

    // Nesting deeper than any FHIR resource.
    let deep = format!(
        "{{\"resourceType\":\"ServiceRequest\",\"extension\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let (status, body) = exchange(addr, &post("/ServiceRequest", json_type, deep.as_bytes())).await;
    assert_outcome(status, &body, 400, "recursion");

    // Invalid UTF-8 inside a string.
    let bad_utf8 = b"{\"resourceType\":\"ServiceRequest\",\"status\":\"\xff\xfe\"}";
    let (status, body) = exchange(addr, &post("/ServiceRequest", json_type, bad_utf8)).await;
    assert_outcome(status, &body, 400, "not valid FHIR JSON");

    // A property twice in one object.
    let duplicate = br#"{"resourceType":"ServiceRequest","status":"active","status":"revoked"}"#;
    let (status, body) = exchange(addr, &post("/ServiceRequest", json_type, duplicate)).await;
    assert_outcome(status, &body, 400, "appears more than once");

    // A number no decimal can hold.
    let out_of_range = br#"{"resourceType":"ServiceRequest","priority":1e999}"#;
    let (status, body) = exchange(addr, &post("/ServiceRequest", json_type, out_of_range)).await;
    assert_outcome(status, &body, 400, "out of range");

    // A 200 000-character string where an id belongs (within the size limit).
    let long = json!({"resourceType": "ServiceRequest", "id": "x".repeat(200_000),
                      "status": "active", "intent": "order",
                      "subject": {"reference": "Patient/p"}});
    let (status, body) = exchange(
        addr,
        &post("/ServiceRequest", json_type, long.to_string().as_bytes()),
    )
    .await;
    assert!((400..500).contains(&status), "{status}: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");

    // Not JSON at all, and not a FHIR media type.
    let (status, body) = exchange(addr, &post("/ServiceRequest", json_type, b"<xml/>")).await;
    assert_outcome(status, &body, 400, "not valid FHIR JSON");
    let (status, body) = exchange(addr, &post("/ServiceRequest", "text/plain", b"hello")).await;
    assert_outcome(status, &body, 415, "FHIR JSON");

    // Percent-encoded garbage in the path and query.
    let (status, body) = exchange(
        addr,
        b"GET /Task/%FF%FE%00?_id=%FF HTTP/1.1\r\nHost: spbridge\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!((400..500).contains(&status), "{status}: {body}");

    // A request line that is not HTTP: hyper answers 400 and closes.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"\x16\x03\x01garbage\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer)).await;
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"));

    still_serving(addr).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_are_served() {
    let (running, _dir) = service(|_| {}).await;
    let addr = running.local_addr;

    // Slowloris: headers trickle in, one every 300 ms, and never end.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metadata HTTP/1.1\r\nHost: spbridge\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return (i, slow);
            }
        }
        (100, slow)
    });
    // Others are served meanwhile.
    still_serving(addr).await;
    let (sent, mut slow) = tokio::time::timeout(PATIENCE, trickle)
        .await
        .expect("the slow client is cut off")
        .unwrap();
    assert!(
        sent < 100,
        "the server never closed the slowloris connection"
    );
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest).await;

    // A body that stalls after 10 of its 100 bytes: 408 with an OperationOutcome.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"POST /ServiceRequest HTTP/1.1\r\nHost: spbridge\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"resource")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut answer))
        .await
        .expect("the stalled body is answered")
        .ok();
    let (status, body) = parse_answer(&answer);
    assert_outcome(status, &body, 408, "did not arrive");

    // A kept-alive connection that goes quiet is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /metadata HTTP/1.1\r\nHost: spbridge\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 64];
    let n = idle.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, idle.read_to_end(&mut rest))
        .await
        .expect("an idle kept-alive connection is closed")
        .ok();

    still_serving(addr).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connections_leave_memory_bounded_and_service_up() {
    let (running, _dir) = service(|_| {}).await;
    let addr = running.local_addr;
    still_serving(addr).await;
    let before = resident_kib();

    // 3 000 connections: idle, half-sent headers, or a half-sent body.
    let mut sockets = Vec::new();
    for i in 0..3_000 {
        let Ok(mut socket) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = match i % 3 {
            0 => Ok(()),
            1 => socket.write_all(b"GET /metadata HTTP/1.1\r\nHost: x\r\n").await,
            _ => {
                socket
                    .write_all(b"POST /ServiceRequest HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n{")
                    .await
            }
        };
        sockets.push((i % 3, socket));
    }
    // Everyone else is still served while they hang on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        still_serving(addr).await;
    }
    let during = resident_kib();

    // Every one of them is closed by the server (header timeout or body timeout).
    let closing = sockets.into_iter().map(|(kind, mut socket)| async move {
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut sink))
            .await
            .is_ok();
        (kind, closed)
    });
    let results = futures_util::future::join_all(closing).await;
    let open_by_kind: Vec<usize> = (0..3)
        .map(|k| results.iter().filter(|(kind, c)| *kind == k && !c).count())
        .collect();
    eprintln!("still open after {PATIENCE:?} (idle, half headers, half body): {open_by_kind:?}");
    let closed = results.iter().filter(|(_, c)| *c).count();
    assert_eq!(
        closed, 3_000,
        "every hostile connection was closed by the server"
    );
    still_serving(addr).await;
    let growth_mib = during.saturating_sub(before) / 1024;
    eprintln!("resident memory: {before} KiB before, {during} KiB with 3000 connections open");
    // Generous: ~25 KiB a connection on both ends of the socket in this one process.
    assert!(
        growth_mib < 256,
        "memory grew by {growth_mib} MiB for 3000 connections"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let (running, _dir) = service(|c| {
        c.http.max_connections = 50;
        c.http.header_read_timeout_ms = 60_000;
    })
    .await;
    let addr = running.local_addr;
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /metadata HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(socket);
    }
    // The listener has taken all 50 before the next ones arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut sink = Vec::new();
        let n = tokio::time::timeout(PATIENCE, extra.read_to_end(&mut sink))
            .await
            .expect("a connection over the limit is closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing is served over the limit");
    }
    // Their owners finish the requests (and close); the slots come back.
    for mut socket in held {
        socket
            .write_all(b"Connection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut answer)).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serving(addr).await;
    running.shutdown().await;
}
