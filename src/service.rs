//! Wiring: builds the store, router, intake, HTTP listener and outbox relay from a
//! `Config`, and stops them in order.
//!
//! Owns: start-up order (store + migrations → provider directory → router →
//! workflow → listener (TLS, auth gate) → relay, task-update consumer, notifier) and shutdown
//! order (stop accepting → finish in-flight requests → stop consuming updates → relay drains
//! what is due → notifier finishes its deliveries → close the store).
//! Must not: contain request or publishing logic.

use crate::auth::{AuthError, AuthGate, AuthService};
use crate::broker::{ConsumerHandle, Relay, RelayHandle, TaskUpdateConsumer, Topology};
use crate::config::{BrokerConfig, Config};
use crate::http::{serve, HttpSettings, PlainAcceptor, Routes, TlsAcceptor, TlsError, TlsSettings};
use crate::intake::{Intake, ReferralValidator};
use crate::notify::{Notifier, NotifierHandle};
use crate::routing::{Router, RoutingError};
use crate::store::{Store, StoreError};
use crate::workflow::Workflow;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Routing(#[from] RoutingError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("provider directory {path}: {reason}")]
    Directory { path: String, reason: String },
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
}

/// A running service.
pub struct Running {
    pub local_addr: SocketAddr,
    pub base_url: String,
    pub store: Store,
    pub router: Arc<Router>,
    pub broker_connected: Arc<AtomicBool>,
    stop_http: oneshot::Sender<()>,
    http_task: JoinHandle<()>,
    relay: Option<RelayHandle>,
    consumer: Option<ConsumerHandle>,
    notifier: Option<NotifierHandle>,
    topology: Topology,
}

/// Read every `*.json` file of a folder; Bundles contribute their entries' resources.
pub fn load_directory(path: &Path) -> Result<Vec<Value>, ServiceError> {
    let err = |reason: String| ServiceError::Directory {
        path: path.display().to_string(),
        reason,
    };
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| err(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", file.display())))?;
        if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            for entry in value
                .get("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = entry.get("resource") {
                    out.push(r.clone());
                }
            }
        } else {
            out.push(value);
        }
    }
    Ok(out)
}

/// Start everything described by `config`.
pub async fn start(
    config: Config,
    validator: Arc<dyn ReferralValidator>,
) -> Result<Running, ServiceError> {
    crate::telemetry::metrics::install();
    // A wrong broker TLS file stops start-up here, not every reconnect later.
    config.broker.tls_files().load()?;
    let store = Store::connect(&config.store).await?;
    let directory = match &config.routing.directory {
        Some(dir) => load_directory(dir)?,
        None => Vec::new(),
    };
    let router = Arc::new(Router::new(&config.routing, &directory)?);
    let listener = tokio::net::TcpListener::bind(&config.http.listen)
        .await
        .map_err(|source| ServiceError::Listen {
            addr: config.http.listen.clone(),
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ServiceError::Listen {
            addr: config.http.listen.clone(),
            source,
        })?;
    let tls = tls_acceptor(&config)?;
    let base_url = if config.http.base_url.is_empty() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{local_addr}")
    } else {
        config.http.base_url.trim_end_matches('/').to_string()
    };
    let broker_connected = Arc::new(AtomicBool::new(false));
    let workflow = Arc::new(Workflow::new(
        store.clone(),
        router.clone(),
        validator.clone(),
        config.tasks.clone(),
        config.notify.clone(),
        config.intake.clone(),
    ));
    let intake = Intake::new(
        store.clone(),
        router.clone(),
        validator,
        config.intake.clone(),
        broker_connected.clone(),
        workflow.clone(),
    )
    .with_max_outbox_lag_ms(config.broker.ready_max_outbox_lag_ms);
    let settings = HttpSettings {
        base_url: base_url.clone(),
        max_body_bytes: config.http.max_body_bytes,
        max_in_flight: config.http.max_in_flight,
        shutdown_grace: Duration::from_secs(config.http.shutdown_grace_secs),
        header_read_timeout: Duration::from_millis(config.http.header_read_timeout_ms.max(1)),
        body_read_timeout: Duration::from_millis(config.http.body_read_timeout_ms.max(1)),
        max_connections: config.http.max_connections.max(1),
        metrics_refresh: Some(crate::telemetry::metrics::ServiceGauges::scrape(
            store.clone(),
            broker_connected.clone(),
        )),
    };
    let routes = gate(&config, &base_url, &store, Arc::new(intake))?;
    let (stop_http, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let http_task = match tls {
        Some(tls) => tokio::spawn(serve(listener, tls, routes, settings, stopped)),
        None => tokio::spawn(serve(listener, PlainAcceptor, routes, settings, stopped)),
    };
    let topology = Topology {
        prefix: config.broker.prefix.clone(),
        provider_ids: router.provider_ids(),
        requester_queues: config.notify.requester_queues.clone(),
        provider_queue_max_length: config.broker.provider_queue_max_length,
    };
    let relay = config
        .broker
        .relay_enabled
        .then(|| spawn_relay(&store, &config.broker, &topology, &broker_connected));
    let consumer = config.tasks.consumer_enabled.then(|| {
        TaskUpdateConsumer::new(
            workflow.clone(),
            config.broker.clone(),
            topology.clone(),
            config.tasks.prefetch,
            base_url.clone(),
        )
        .spawn()
    });
    let notifier = config
        .notify
        .enabled
        .then(|| Notifier::new(store.clone(), config.notify.clone()).spawn());
    tracing::info!(addr = %local_addr, store = store.backend().name(), "spbridge listening");
    Ok(Running {
        local_addr,
        base_url,
        store,
        router,
        broker_connected,
        stop_http,
        http_task,
        relay,
        consumer,
        notifier,
        topology,
    })
}

/// The rustls acceptor when `[tls] enabled`; plain HTTP is warned about loudly.
fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, ServiceError> {
    let tls = &config.tls;
    match (tls.enabled, &tls.cert, &tls.key) {
        (true, Some(cert), Some(key)) => Ok(Some(TlsAcceptor::from_settings(&TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: tls.client_ca.clone(),
        })?)),
        (true, _, _) => {
            Err(TlsError::Config("tls.enabled needs tls.cert and tls.key".into()).into())
        }
        (false, _, _) => {
            tracing::warn!(
                "TLS IS OFF: serving plain HTTP. Referrals carry patient data; \
                 this is for local development only ([tls] enabled = true in production)"
            );
            Ok(None)
        }
    }
}

/// The bearer-token gate in front of `inner` when `[auth] enabled`.
fn gate(
    config: &Config,
    base_url: &str,
    store: &Store,
    inner: Arc<dyn Routes>,
) -> Result<Arc<dyn Routes>, ServiceError> {
    if !config.auth.enabled {
        tracing::warn!(
            "AUTHENTICATION IS OFF: every caller may read and write referrals. \
             This is for local development only ([auth] enabled = true in production)"
        );
        return Ok(inner);
    }
    let auth = AuthService::from_config(&config.auth, base_url, store.clone())?;
    Ok(Arc::new(AuthGate::new(Arc::new(auth), inner)))
}

fn spawn_relay(
    store: &Store,
    broker: &BrokerConfig,
    topology: &Topology,
    connected: &Arc<AtomicBool>,
) -> RelayHandle {
    Relay::new(
        store.clone(),
        broker.clone(),
        topology.clone(),
        connected.clone(),
    )
    .spawn()
}

impl Running {
    /// The broker names this instance uses.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Stop the relay (if any) and start a new one with other broker settings.
    pub async fn restart_relay(&mut self, broker: &BrokerConfig) {
        if let Some(old) = self.relay.take() {
            old.shutdown().await;
        }
        self.relay = Some(spawn_relay(
            &self.store,
            broker,
            &self.topology,
            &self.broker_connected,
        ));
    }

    /// Graceful stop: no new connections, in-flight requests finish, the relay
    /// publishes what is due (bounded), the store closes.
    pub async fn shutdown(self) {
        let _ = self.stop_http.send(());
        let _ = self.http_task.await;
        if let Some(consumer) = self.consumer {
            consumer.shutdown().await;
        }
        if let Some(relay) = self.relay {
            relay.shutdown().await;
        }
        if let Some(notifier) = self.notifier {
            notifier.shutdown().await;
        }
        self.store.close().await;
    }
}
