//! AMQPS: spbridge, its task-update consumer and the provider inbox reach RabbitMQ over TLS,
//! trusting the broker's certificate through a configured CA bundle, and refuse a broker
//! whose certificate another CA signed. With mutual TLS the broker also checks spbridge's
//! client certificate.
//!
//! The broker side is the real RabbitMQ behind a TLS terminator started by the test (rustls,
//! with a throwaway CA), so no broker configuration on the machine is needed: what spbridge
//! speaks on the wire is real AMQP over TLS 1.3, and what RabbitMQ receives is real AMQP.

#[path = "support/intake.rs"]
mod common;
#[path = "support/inbox.rs"]
mod provider_inbox;

use common::auth_kit::TestCa;
use common::{fixture, test_config, wait_for, Db, Harness};
use hyper::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use spbridge::broker::BrokerTlsFiles;
use spbridge::inbox::InboxSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A TLS terminator in front of the machine's RabbitMQ.
struct AmqpsProxy {
    addr: SocketAddr,
    /// Connections whose TLS handshake completed.
    handshakes: Arc<AtomicUsize>,
    /// Connections whose TLS handshake failed.
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl AmqpsProxy {
    /// Serve TLS with a certificate for 127.0.0.1 and localhost signed by `ca`; with
    /// `client_ca`, require a client certificate signed by it.
    async fn start(ca: &TestCa, client_ca: Option<&TestCa>) -> AmqpsProxy {
        let (chain, key) = ca.leaf(&["localhost", "127.0.0.1"], false);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(client_ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(client_ca.cert_pem.as_bytes()).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let broker = broker_addr();
        let (ok, bad) = (handshakes.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (ok, bad) = (ok.clone(), bad.clone());
                let broker = broker.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        bad.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    ok.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(broker).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        AmqpsProxy {
            addr,
            handshakes,
            refused,
            task,
        }
    }

    fn url(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.addr.port())
    }
}

impl Drop for AmqpsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// host:port of the plain broker the terminator forwards to.
fn broker_addr() -> String {
    let url = common::amqp_url();
    let rest = url.split("://").nth(1).unwrap_or("127.0.0.1:5672");
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    host_port
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_string()
}

/// Write PEM text to a file in `dir`.
fn write(dir: &tempfile::TempDir, name: &str, pem: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referral_and_task_updates_travel_over_amqps_with_a_ca_bundle() {
    let broker_ca = TestCa::new("spbridge test broker CA");
    let proxy = AmqpsProxy::start(&broker_ca, None).await;
    let pem_dir = tempfile::tempdir().unwrap();
    let ca_file = write(&pem_dir, "broker-ca.pem", &broker_ca.cert_pem);

    let (mut config, schema, dir) = test_config(Db::Sqlite, &proxy.url());
    config.broker.ca_file = Some(ca_file.clone());
    let h = Harness::start_config(Db::Sqlite, config, schema, dir).await;
    let queue = h.queue("8kx42");
    wait_for(
        "the relay never declared the topology over amqps",
        WAIT,
        async || h.depth(&queue).await.is_some(),
    )
    .await;

    let mut bundle = fixture("referral-transaction-bundle.json");
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = json!("amqps-1");
    let answer = h.post("/", &bundle, &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // The provider's inbox, over amqps with the same CA: receive, then accept.
    let settings = InboxSettings {
        amqp_url: proxy.url(),
        tls: BrokerTlsFiles {
            ca_file: Some(ca_file),
            ..Default::default()
        },
        prefix: h.prefix.clone(),
        provider_id: "8kx42".into(),
    };
    let task_id = provider_inbox::receive_and_accept(&settings, WAIT).await;
    wait_for("the accepted update never applied", WAIT, async || {
        h.get(&format!("/Task/{task_id}")).await.body["status"] == "accepted"
    })
    .await;

    // Relay, task-update consumer and inbox all came through the TLS terminator.
    assert!(proxy.handshakes.load(Ordering::SeqCst) >= 3);
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused() {
    let broker_ca = TestCa::new("spbridge test broker CA");
    let other_ca = TestCa::new("somebody else's CA");
    let proxy = AmqpsProxy::start(&broker_ca, None).await;
    let pem_dir = tempfile::tempdir().unwrap();
    let wrong = BrokerTlsFiles {
        ca_file: Some(write(&pem_dir, "other-ca.pem", &other_ca.cert_pem)),
        ..Default::default()
    };
    let Err(err) = spbridge::broker::connect(&proxy.url(), &wrong).await else {
        panic!("a broker signed by another CA is refused");
    };
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "the error says why: {err}"
    );
    // No CA bundle at all: the system roots do not know the private CA either.
    assert!(
        spbridge::broker::connect(&proxy.url(), &BrokerTlsFiles::default())
            .await
            .is_err()
    );
    assert_eq!(proxy.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_the_broker_needs_the_client_certificate() {
    let broker_ca = TestCa::new("spbridge test broker CA");
    let client_ca = TestCa::new("spbridge test client CA");
    let proxy = AmqpsProxy::start(&broker_ca, Some(&client_ca)).await;
    let pem_dir = tempfile::tempdir().unwrap();
    let ca_file = write(&pem_dir, "broker-ca.pem", &broker_ca.cert_pem);
    let (cert, key) = client_ca.leaf(&["spbridge"], true);
    let with_cert = BrokerTlsFiles {
        ca_file: Some(ca_file.clone()),
        client_cert: Some(write(&pem_dir, "client.pem", &cert)),
        client_key: Some(write(&pem_dir, "client-key.pem", &key)),
    };
    let connection = spbridge::broker::connect(&proxy.url(), &with_cert)
        .await
        .expect("the client certificate is accepted");
    assert!(connection.status().connected());
    let _ = connection.close(200, "done".into()).await;

    let without_cert = BrokerTlsFiles {
        ca_file: Some(ca_file),
        ..Default::default()
    };
    assert!(spbridge::broker::connect(&proxy.url(), &without_cert)
        .await
        .is_err());
    wait_for(
        "the terminator saw the refused handshake",
        WAIT,
        async || proxy.refused.load(Ordering::SeqCst) >= 1,
    )
    .await;
}

#[tokio::test]
async fn a_wrong_broker_tls_file_stops_start_up_with_its_path() {
    let pem_dir = tempfile::tempdir().unwrap();
    let not_pem = write(&pem_dir, "not-a-ca.pem", "hello");
    let (mut config, _schema, _dir) = test_config(Db::Sqlite, "amqps://127.0.0.1:5671/%2f");
    config.broker.ca_file = Some(not_pem.clone());
    let err = spbridge::service::start(config.clone(), common::validator())
        .await
        .err()
        .expect("start-up refuses a CA file with no certificate");
    assert!(err.to_string().contains("not-a-ca.pem"), "{err}");

    config.broker.ca_file = Some(pem_dir.path().join("missing.pem"));
    let err = spbridge::service::start(config.clone(), common::validator())
        .await
        .err()
        .expect("start-up refuses a missing CA file");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    config.broker.ca_file = None;
    config.broker.client_cert = Some(not_pem);
    let err = spbridge::service::start(config, common::validator())
        .await
        .err()
        .expect("a client certificate without its key is refused");
    assert!(err.to_string().contains("together"), "{err}");
}
