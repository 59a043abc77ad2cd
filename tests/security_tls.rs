//! HTTPS on the listener over real sockets: HTTP/1.1 and HTTP/2 through ALPN, plain HTTP
//! to the TLS port fails cleanly, TLS 1.1 is refused, and mutual TLS refuses clients
//! without a certificate or with one from another CA.

#[path = "support/intake.rs"]
mod common;

use common::auth_kit;

use auth_kit::{https_client, send, AuthKit, Transport};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use spbridge::service::{start, Running};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(kit: &AuthKit, transport: Transport) -> (Running, Option<tempfile::TempDir>) {
    let (mut config, _schema, dir) = common::test_config(common::Db::Sqlite, &common::amqp_url());
    config.broker.relay_enabled = false;
    kit.apply(&mut config, transport);
    let running = start(config, common::validator()).await.expect("starts");
    (running, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_http2_and_refuses_the_rest() {
    let kit = AuthKit::new();
    let (running, _dir) = serve(&kit, Transport::Tls).await;
    let base = running.base_url.clone();
    assert!(base.starts_with("https://"), "{base}");
    let url = format!("{base}/metadata");

    let h2 = kit.client(Transport::Tls);
    let reply = send(&h2, Method::GET, &url, None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_2);

    let h1 = https_client(kit.rustls_client(None, &[]), false);
    let reply = send(&h1, Method::GET, &url, None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_11);

    // A token fetched and used over HTTPS.
    let token = kit.token(&h2, &base, &kit.requester, None).await;
    let reply = send(
        &h2,
        Method::GET,
        &format!("{base}/Task"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // TLS 1.2 only is still served.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::pem::PemObject::from_pem_slice(kit.server_ca.cert_pem.as_bytes())
                .unwrap(),
        )
        .unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let reply = send(&https_client(tls12, true), Method::GET, &url, None, None).await;
    assert_eq!(reply.status, StatusCode::OK);

    // Plain HTTP to the TLS port: an error on the client side, no HTTP answer.
    let plain: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let plain_url = url.replacen("https://", "http://", 1);
    let attempt = tokio::time::timeout(
        Duration::from_secs(20),
        plain.get(plain_url.parse().unwrap()),
    )
    .await
    .expect("the server closes the connection instead of hanging");
    assert!(attempt.is_err(), "plain HTTP got an answer: {attempt:?}");

    // A TLS 1.1 ClientHello: answered with an alert (or a close), never a ServerHello.
    let mut tcp = tokio::net::TcpStream::connect(running.local_addr)
        .await
        .unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "TLS 1.1 got a handshake answer: {answer:02x?}"
    );
    if answer.len() >= 7 {
        // protocol_version (70) or handshake_failure (40): a refusal either way.
        assert!(matches!(answer[6], 70 | 40), "alert {}", answer[6]);
    }

    // The listener is unharmed by all of that.
    let reply = send(&h2, Method::GET, &url, None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    running.shutdown().await;
}

/// A minimal ClientHello offering only TLS 1.1 (record and hello version 0x0302, no
/// `supported_versions` extension).
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[0x11; 32]); // random
    hello.push(0); // session id
                   // cipher suites: ECDHE-RSA/ECDSA-AES128-GCM-SHA256 (which rustls has), AES128-SHA
    hello.extend_from_slice(&[0x00, 0x06, 0xc0, 0x2f, 0xc0, 0x2b, 0x00, 0x2f]);
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() {
    let kit = AuthKit::new();
    let (running, _dir) = serve(&kit, Transport::MutualTls).await;
    let url = format!("{}/metadata", running.base_url);

    let good = kit.client(Transport::MutualTls);
    let reply = send(&good, Method::GET, &url, None, None).await;
    assert_eq!(reply.status, StatusCode::OK);

    let refused = |client: auth_kit::HttpsClient| {
        let url = url.clone();
        async move {
            let request = hyper::Request::get(&url)
                .body(Full::new(Bytes::new()))
                .unwrap();
            tokio::time::timeout(Duration::from_secs(20), client.request(request))
                .await
                .expect("refused promptly")
                .is_err()
        }
    };
    let none = https_client(kit.rustls_client(None, &[]), true);
    assert!(refused(none).await, "no client certificate was accepted");
    let (chain, key) = kit.other_ca.leaf(&["intruder.test"], true);
    let other = https_client(kit.rustls_client(Some((&chain, &key)), &[]), true);
    assert!(
        refused(other).await,
        "another CA's certificate was accepted"
    );
    // A server certificate (no clientAuth usage) from the right CA chain is refused too.
    let (chain, key) = kit.server_ca.leaf(&["not-a-client.test"], true);
    let wrong_ca = https_client(kit.rustls_client(Some((&chain, &key)), &[]), true);
    assert!(refused(wrong_ca).await, "server CA's leaf was accepted");

    let reply = send(&good, Method::GET, &url, None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    running.shutdown().await;
}
