//! Test harness: a real spbridge on a real socket, a real RabbitMQ, and a SQLite
//! file or a fresh PostgreSQL schema per test. Every test run uses its own
//! exchange/queue prefix and deletes what it declared.
#![allow(dead_code)]

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, ExchangeDeleteOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use spbridge::config::{Config, ProviderConfig, RuleConfig};
use spbridge::definitions::{Definitions, DefinitionsConfig};
use spbridge::service::{start, Running};
use spbridge::validation::Validator;
use sqlx::Connection as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[path = "auth.rs"]
pub mod auth_kit;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// The real validator (R4 + UK Core + spbridge profiles, invariants on), loaded once per
/// test binary.
pub fn validator() -> Arc<Validator> {
    static V: std::sync::OnceLock<Arc<Validator>> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let packages = std::env::var_os("SPBRIDGE_FHIR_PACKAGES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../shared/fhir-packages"
                ))
            });
        let config = DefinitionsConfig::standard(
            packages,
            Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/profiles"
            ))),
        );
        let defs = Definitions::load(&config).expect("FHIR definitions");
        defs.precompile_standard_profiles()
            .expect("profiles compile");
        defs.validator.clone()
    })
    .clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn amqp_url() -> String {
    std::env::var("SPBRIDGE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn postgres_url() -> String {
    std::env::var("SPBRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// An AMQP URL nothing listens on (the broker is "down").
pub const DEAD_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// Read a fixture (read-only, from the shared fixtures folder).
pub fn fixture(path: &str) -> Value {
    let full = PathBuf::from(FIXTURES).join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()));
    serde_json::from_str(&text).unwrap()
}

/// Poll `done` every 50 ms until it holds; fails the test with `what` once `wait` has passed.
pub async fn wait_for(what: &str, wait: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + wait;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Harness {
    pub running: Option<Running>,
    pub config: Config,
    pub prefix: String,
    pub db: Db,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
    client: auth_kit::HttpsClient,
    /// The security layer, when `SPBRIDGE_TEST_SECURITY` turns it on.
    pub secure: Option<auth_kit::Secure>,
    pub amqp: Connection,
    pub channel: lapin::Channel,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The test configuration: providers from the fixture directory, a rule for
/// Manchester, the link-worker hub as triage, a unique broker prefix.
pub fn test_config(
    db: Db,
    broker_url: &str,
) -> (Config, Option<String>, Option<tempfile::TempDir>) {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".into();
    config.http.max_body_bytes = 256 * 1024;
    config.broker.url = broker_url.into();
    config.broker.prefix = format!("spbt-{tag}");
    config.broker.poll_interval_ms = 50;
    config.broker.reconnect_base_ms = 100;
    config.broker.reconnect_max_ms = 500;
    config.routing.triage_provider = "8wy01".into();
    config.routing.directory = Some(PathBuf::from(FIXTURES).join("providers"));
    config.routing.providers = vec![ProviderConfig {
        id: "8kx42".into(),
        name: "North Leeds Community Connectors CIC".into(),
        ods_codes: vec!["8KX42".into()],
        service_identifiers: vec![],
    }];
    config.routing.rules = vec![RuleConfig {
        provider: "8lt19".into(),
        codes: vec![
            "http://snomed.info/sct|160932005".into(),
            "http://snomed.info/sct|73438004".into(),
        ],
        postcode_districts: vec!["M13".into(), "M14".into(), "M15".into(), "M16".into()],
    }];
    let (schema, dir) = match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            config.store.url = format!("sqlite://{}", dir.path().join("spbridge.db").display());
            (None, Some(dir))
        }
        Db::Postgres => {
            let schema = format!("spbt_{tag}");
            config.store.url = postgres_url();
            config.store.postgres_schema = schema.clone();
            (Some(schema), None)
        }
    };
    (config, schema, dir)
}

impl Harness {
    pub async fn start(db: Db) -> Harness {
        Harness::start_with_broker(db, &amqp_url()).await
    }

    pub async fn start_with_broker(db: Db, broker_url: &str) -> Harness {
        let (config, schema, dir) = test_config(db, broker_url);
        Harness::start_config(db, config, schema, dir).await
    }

    pub async fn start_config(
        db: Db,
        mut config: Config,
        schema: Option<String>,
        dir: Option<tempfile::TempDir>,
    ) -> Harness {
        let security = auth_kit::transport_from_env().map(|transport| {
            let kit = auth_kit::AuthKit::new();
            kit.apply(&mut config, transport);
            (kit, transport)
        });
        let running = start(config.clone(), validator())
            .await
            .expect("service starts");
        let secure = match security {
            Some((kit, transport)) => {
                Some(auth_kit::Secure::connect(kit, transport, &running.base_url).await)
            }
            None => None,
        };
        let amqp = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("rabbitmq");
        let channel = amqp.create_channel().await.unwrap();
        let client = match &secure {
            Some(secure) => secure.http.clone(),
            None => auth_kit::https_client(
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
                true,
            ),
        };
        Harness {
            secure,
            prefix: config.broker.prefix.clone(),
            running: Some(running),
            config,
            db,
            schema,
            _dir: dir,
            client,
            amqp,
            channel,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn base(&self) -> String {
        self.running().base_url.clone()
    }

    pub fn queue(&self, provider: &str) -> String {
        format!("{}.provider.{provider}", self.prefix)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base()));
        let mut has_ct = false;
        for (k, v) in headers {
            has_ct |= k.eq_ignore_ascii_case("content-type");
            builder = builder.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                if !has_ct {
                    builder = builder.header("content-type", "application/fhir+json");
                }
                Bytes::from(serde_json::to_vec(b).unwrap())
            }
            None => Bytes::new(),
        };
        self.send(builder.body(Full::new(bytes)).unwrap()).await
    }

    pub async fn send(&self, mut request: Request<Full<Bytes>>) -> Answer {
        if let Some(secure) = &self.secure {
            secure.authorize(&mut request);
        }
        let response = self.client.request(request).await.expect("http request");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json answer")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.request(Method::POST, path, Some(body), headers).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, None, &[]).await
    }

    /// Consume exactly `expected` messages from a queue (waiting up to `wait`),
    /// then make sure no further message arrives within `settle`.
    pub async fn take(
        &self,
        queue: &str,
        expected: usize,
        wait: Duration,
        settle: Duration,
    ) -> Vec<(BasicProperties, Value)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        // The queue exists once the relay has declared the topology. Probe on
        // throw-away connections: a 404 closes the channel it happened on.
        while self.depth(queue).await.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue {queue} never declared"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let channel = self.amqp.create_channel().await.unwrap();
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        while got.len() < expected {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    delivery.ack(BasicAckOptions::default()).await.unwrap();
                    got.push((
                        delivery.properties.clone(),
                        serde_json::from_slice(&delivery.data).unwrap(),
                    ));
                }
                _ => panic!(
                    "queue {queue}: expected {expected} messages, got {}",
                    got.len()
                ),
            }
        }
        if let Ok(Some(Ok(extra))) = tokio::time::timeout(settle, consumer.next()).await {
            panic!(
                "queue {queue}: unexpected extra message {:?}",
                extra.properties.message_id()
            );
        }
        let _ = channel.close(200, "done".into()).await;
        got
    }

    /// Messages waiting in a queue right now (None if the queue does not exist).
    /// Uses its own connection, so a missing queue cannot disturb the harness's.
    pub async fn depth(&self, queue: &str) -> Option<u32> {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .ok()?;
        let channel = connection.create_channel().await.ok()?;
        let opts = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let r = channel
            .queue_declare(queue.into(), opts, FieldTable::default())
            .await
            .ok()
            .map(|q| q.message_count());
        let _ = connection.close(200, "done".into()).await;
        r
    }

    pub async fn basic_get(&self, queue: &str) -> Option<Value> {
        let m = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .ok()??;
        serde_json::from_slice(&m.delivery.data).ok()
    }

    /// Stop the service, delete this run's queues and exchanges and its schema.
    pub async fn finish(mut self) {
        let topology = self.running().topology().clone();
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        delete_topology(topology.queues(), topology.exchanges()).await;
        if let Some(schema) = &self.schema {
            drop_schema(schema).await;
        }
    }
}

/// Delete a topology's queues and exchanges.
async fn delete_topology(queues: Vec<String>, exchanges: Vec<String>) {
    let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await
    else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for q in queues {
            let _ = channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for e in exchanges {
            let _ = channel
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "bye".into()).await;
}

impl Drop for Harness {
    /// A test that panicked before `finish` still removes its queues and schema.
    fn drop(&mut self) {
        let Some(running) = self.running.as_ref() else {
            return;
        };
        let topology = running.topology().clone();
        let schema = self.schema.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                delete_topology(topology.queues(), topology.exchanges()).await;
                if let Some(schema) = schema {
                    drop_schema(&schema).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

pub async fn drop_schema(schema: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// The resource of the first Bundle entry of a type.
pub fn entry_of<'a>(bundle: &'a Value, resource_type: &str) -> Option<&'a Value> {
    bundle["entry"]
        .as_array()?
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == resource_type)
}

/// Header text of an AMQP message.
pub fn amqp_header(props: &BasicProperties, name: &str) -> Option<String> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        other => Some(format!("{other:?}")),
    }
}
