//! Service configuration: one TOML file plus environment overrides.
//!
//! Owns: the typed configuration tree (`Config` and its sections), defaults, loading
//! from a file, and `SPBRIDGE_<SECTION>__<KEY>` environment overrides.
//! Must not: open sockets, files other than the config file itself, or databases;
//! other modules receive their section and do their own I/O.
//!
//! Environment overrides: `SPBRIDGE_HTTP__LISTEN=0.0.0.0:8080` sets `http.listen`;
//! nested keys are joined by `__`, values are parsed as TOML scalars (integer,
//! float, boolean) and fall back to a string. `spbridge.example.toml` documents
//! every key.

mod env;

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use env::apply_env_overrides;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration tree.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub broker: BrokerConfig,
    pub intake: IntakeConfig,
    pub routing: RoutingConfig,
    pub tasks: TasksConfig,
    pub notify: NotifyConfig,
    pub telemetry: TelemetryConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
}

/// `[http]`: the listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Socket address to listen on.
    pub listen: String,
    /// Base URL used in `Location`, `fullUrl` and paging links; empty = `http://<listen>`.
    pub base_url: String,
    /// Largest accepted request body in bytes; larger → 413.
    pub max_body_bytes: usize,
    /// Requests processed at once; more → 429.
    pub max_in_flight: usize,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// A connection must finish its TLS handshake, and each HTTP/1 request its headers
    /// (also the wait for the next request on a kept-alive connection), within this many
    /// milliseconds; otherwise it is closed (slow clients, slowloris).
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds; otherwise 408.
    pub body_read_timeout_ms: u64,
    /// Open connections at most; further connections are closed at once (and counted).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            base_url: String::new(),
            max_body_bytes: 1024 * 1024,
            max_in_flight: 512,
            shutdown_grace_secs: 10,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 10_000,
        }
    }
}

/// `[store]`: the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (embedded default) or `postgres://user@host/db`.
    pub url: String,
    /// PostgreSQL only: schema to create and use (empty = the server's default search_path).
    pub postgres_schema: String,
    /// Pool size (SQLite writes are serialised by the database anyway).
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://spbridge.db".into(),
            postgres_schema: String::new(),
            max_connections: 8,
        }
    }
}

/// `[broker]`: RabbitMQ and the outbox relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// AMQP URI; `amqps://` for TLS (the server name checked is the URI's host).
    pub url: String,
    /// `amqps://` only: PEM bundle of the CA(s) that sign the broker's certificate, trusted
    /// besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// `amqps://` only: client certificate chain (PEM) for mutual TLS to the broker.
    pub client_cert: Option<PathBuf>,
    /// `amqps://` only: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Prefix of every exchange and queue name (`<prefix>.referrals`, `<prefix>.provider.<id>`).
    pub prefix: String,
    /// Run the outbox relay in this process.
    pub relay_enabled: bool,
    /// Outbox rows claimed and published per batch (confirms are awaited per batch).
    pub batch_size: u32,
    /// Poll interval when no new rows are signalled, milliseconds.
    pub poll_interval_ms: u64,
    /// How long a claimed row stays leased to this instance, seconds.
    pub lease_secs: u64,
    /// First retry delay after a nack/return, milliseconds (doubles per attempt).
    pub retry_base_ms: u64,
    /// Largest retry delay, milliseconds.
    pub retry_max_ms: u64,
    /// `/readyz` is unready while the oldest unsent outbox row is older than this, milliseconds.
    pub ready_max_outbox_lag_ms: u64,
    /// First reconnect delay, milliseconds (doubles per failure).
    pub reconnect_base_ms: u64,
    /// Largest reconnect delay, milliseconds.
    pub reconnect_max_ms: u64,
    /// Most messages a provider queue may hold (RabbitMQ `x-max-length`, overflow
    /// `reject-publish`): a provider that stops reading cannot fill the broker; the referrals
    /// wait in the outbox (readiness shows the lag) and flow again as it reads. Unset: no
    /// limit. RabbitMQ refuses to change a declared queue's arguments: set it before the
    /// queues exist, or delete and let spbridge re-declare them.
    pub provider_queue_max_length: Option<u32>,
}

impl BrokerConfig {
    /// The TLS files of the broker connection.
    pub fn tls_files(&self) -> crate::broker::BrokerTlsFiles {
        crate::broker::BrokerTlsFiles {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            prefix: "spbridge".into(),
            relay_enabled: true,
            batch_size: 256,
            poll_interval_ms: 200,
            lease_secs: 30,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            ready_max_outbox_lag_ms: 60_000,
            reconnect_base_ms: 250,
            reconnect_max_ms: 30_000,
            provider_queue_max_length: None,
        }
    }
}

/// `[intake]`: FHIR REST behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntakeConfig {
    /// Profile a POSTed ServiceRequest is validated against.
    pub referral_profile: String,
    /// Default `_count` of searches.
    pub default_page_size: u32,
    /// Largest `_count` honoured.
    pub max_page_size: u32,
    /// `MessageHeader.source.endpoint` of messages spbridge sends.
    pub source_endpoint: String,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            referral_profile:
                "https://fhir.spbridge.org/StructureDefinition/SPBridge-SocialPrescribingReferral"
                    .into(),
            default_page_size: 20,
            max_page_size: 200,
            source_endpoint: "https://spbridge.example/fhir".into(),
        }
    }
}

/// `[tasks]`: provider updates to referral Tasks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// Consume `<prefix>.task-updates` in this process.
    pub consumer_enabled: bool,
    /// Unacknowledged task-update messages held at once (AMQP prefetch).
    pub prefetch: u16,
    /// Profile an updated Task must conform to.
    pub task_profile: String,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            consumer_enabled: true,
            prefetch: 32,
            task_profile:
                "https://fhir.spbridge.org/StructureDefinition/SPBridge-ProviderTaskUpdate".into(),
        }
    }
}

/// `[notify]`: telling referrers about Task changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Deliver rest-hook notifications in this process.
    pub enabled: bool,
    /// Failed deliveries before a Subscription is set to `error`.
    pub max_attempts: u32,
    /// First retry delay, milliseconds (doubles per failure).
    pub retry_base_ms: u64,
    /// Largest retry delay, milliseconds.
    pub retry_max_ms: u64,
    /// How long to wait for an endpoint's answer, milliseconds.
    pub timeout_ms: u64,
    /// Poll interval when nothing is signalled, milliseconds.
    pub poll_interval_ms: u64,
    /// Notifications delivered at once (at most one per Subscription).
    pub batch_size: u32,
    /// ODS codes of requesters that get an AMQP queue `<prefix>.requester.<ODS>`
    /// receiving their Tasks' changes.
    pub requester_queues: Vec<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            max_attempts: 8,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            timeout_ms: 10_000,
            poll_interval_ms: 500,
            batch_size: 64,
            requester_queues: Vec::new(),
        }
    }
}

/// `[routing]`: which provider gets a referral.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Provider that receives referrals no other route matches (the link-worker hub).
    pub triage_provider: String,
    /// Folder of FHIR Organization / HealthcareService JSON files (the provider directory).
    pub directory: Option<PathBuf>,
    /// Known providers; each gets a queue.
    pub providers: Vec<ProviderConfig>,
    /// Rules tried in order when the referral names no known performer.
    pub rules: Vec<RuleConfig>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            triage_provider: "triage".into(),
            directory: None,
            providers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// `[[routing.providers]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Provider id: `[a-z0-9-]`, used in queue names and routing keys.
    pub id: String,
    pub name: String,
    /// ODS organisation codes that identify this provider as a `performer`.
    pub ods_codes: Vec<String>,
    /// HealthcareService identifiers (`system|value`) that identify this provider.
    pub service_identifiers: Vec<String>,
}

/// `[[routing.rules]]`: all non-empty conditions must match.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    pub provider: String,
    /// `system|code` (or bare `code`) matched against category, code and reasonCode.
    pub codes: Vec<String>,
    /// Postcode districts (outward codes such as `LS6`) of the patient's address.
    pub postcode_districts: Vec<String>,
}

/// `[tls]`: HTTPS on the listener (rustls; TLS 1.2 and 1.3; ALPN h2 and http/1.1).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve HTTPS. `false` = plain HTTP, for local development only (warned at start-up).
    pub enabled: bool,
    /// PEM file: the server certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM file: the server private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// PEM bundle of CAs whose client certificates are accepted; set = mutual TLS required.
    pub client_ca: Option<PathBuf>,
}

/// `[auth]`: SMART Backend Services tokens and bearer verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require bearer tokens. `false` = anyone may call, for local development only (warned).
    pub enabled: bool,
    /// `iss` of the access tokens spbridge issues; empty = the base URL.
    pub issuer: String,
    /// `aud` an access token must carry; empty = the base URL.
    pub audience: String,
    /// Lifetime of issued access tokens, seconds.
    pub token_lifetime_secs: u64,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`, seconds.
    pub leeway_secs: u64,
    /// Largest `exp` of a client assertion, seconds ahead of now.
    pub max_assertion_lifetime_secs: u64,
    /// spbridge's own token-signing keys; exactly one active when clients are registered.
    pub signing_keys: Vec<SigningKeyConfig>,
    /// Registered clients (SMART Backend Services).
    pub clients: Vec<AuthClientConfig>,
    /// An external authorisation server whose tokens are trusted too.
    pub external: Option<ExternalIssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            issuer: String::new(),
            audience: String::new(),
            token_lifetime_secs: 300,
            leeway_secs: 30,
            max_assertion_lifetime_secs: 300,
            signing_keys: Vec::new(),
            clients: Vec::new(),
            external: None,
        }
    }
}

/// `[[auth.signing_keys]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// Key id published in the JWKS and put in the token header.
    pub kid: String,
    /// `ES256`, `ES384`, `RS256` or `RS384`.
    pub alg: String,
    /// PEM file with the private key.
    pub key: PathBuf,
    /// Signs new tokens; the others only verify tokens issued before a rotation.
    pub active: bool,
}

/// `[[auth.clients]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthClientConfig {
    pub client_id: String,
    /// ODS code of the organisation the client acts for.
    pub organisation: String,
    /// `requester`, `provider` or `auditor`.
    pub role: String,
    /// For providers: the provider id (queue name) the client acts as.
    pub provider_id: Option<String>,
    /// SMART v2 system scopes the client may be granted.
    pub scopes: Vec<String>,
    /// The client's public keys as a JWK Set (JSON text).
    pub jwks: Option<String>,
    /// Or: a file with the JWK Set.
    pub jwks_file: Option<PathBuf>,
}

/// `[auth.external]`: trust access tokens of another authorisation server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalIssuerConfig {
    /// Its `iss`.
    pub issuer: String,
    /// Where its JWK Set is fetched (cached; fetched again on an unknown `kid`).
    pub jwks_url: String,
    /// `aud` its tokens carry for spbridge; empty = `auth.audience`.
    pub audience: String,
    /// Least time between two fetches of the JWK Set, seconds (0 = fetch on every unknown `kid`).
    pub min_refresh_secs: u64,
}

impl Default for ExternalIssuerConfig {
    fn default() -> Self {
        ExternalIssuerConfig {
            issuer: String::new(),
            jwks_url: String::new(),
            audience: String::new(),
            min_refresh_secs: 60,
        }
    }
}

impl Config {
    /// Read a TOML file, apply environment overrides, check it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_with_env(&text, std::env::vars())
    }

    /// Parse TOML text, apply the given `SPBRIDGE_…` overrides, check it.
    pub fn from_toml_with_env(
        text: &str,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text)?;
        apply_env_overrides(&mut table, vars)?;
        let config: Config = toml::Value::Table(table).try_into()?;
        config.check()?;
        Ok(config)
    }

    /// Consistency checks that serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let valid_id = |id: &str| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        for p in &self.routing.providers {
            if !valid_id(&p.id) {
                return Err(ConfigError::Invalid(format!(
                    "routing.providers id {:?} must be 1-64 characters of [a-z0-9-]",
                    p.id
                )));
            }
        }
        if !valid_id(&self.routing.triage_provider) {
            return Err(ConfigError::Invalid(
                "routing.triage_provider must be 1-64 characters of [a-z0-9-]".into(),
            ));
        }
        if !self
            .broker
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.broker.prefix.is_empty()
            || self.broker.prefix.len() > 100
        {
            return Err(ConfigError::Invalid(
                "broker.prefix must be 1-100 characters of [A-Za-z0-9-_.]".into(),
            ));
        }
        for ods in &self.notify.requester_queues {
            if ods.is_empty() || ods.len() > 16 || !ods.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ConfigError::Invalid(format!(
                    "notify.requester_queues entry {ods:?} must be an ODS code (1-16 letters and digits)"
                )));
            }
        }
        if self.tasks.prefetch == 0 {
            return Err(ConfigError::Invalid(
                "tasks.prefetch must be positive".into(),
            ));
        }
        if self.http.max_body_bytes == 0 || self.http.max_in_flight == 0 {
            return Err(ConfigError::Invalid(
                "http.max_body_bytes and http.max_in_flight must be positive".into(),
            ));
        }
        self.check_security()?;
        Ok(())
    }

    fn check_security(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.tls.enabled && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return invalid("tls.enabled needs tls.cert and tls.key".into());
        }
        for c in &self.auth.clients {
            if c.client_id.is_empty() || c.organisation.is_empty() {
                return invalid("auth.clients need client_id and organisation".into());
            }
            if !["requester", "provider", "auditor"].contains(&c.role.as_str()) {
                return invalid(format!(
                    "auth.clients {:?}: role must be requester, provider or auditor",
                    c.client_id
                ));
            }
            if c.role == "provider" && c.provider_id.as_deref().unwrap_or("").is_empty() {
                return invalid(format!(
                    "auth.clients {:?}: a provider needs provider_id",
                    c.client_id
                ));
            }
            if c.jwks.is_some() == c.jwks_file.is_some() {
                return invalid(format!(
                    "auth.clients {:?}: set exactly one of jwks and jwks_file",
                    c.client_id
                ));
            }
        }
        if let Some(external) = &self.auth.external {
            if external.issuer.is_empty() || external.jwks_url.is_empty() {
                return invalid("auth.external needs issuer and jwks_url".into());
            }
        }
        let active = self.auth.signing_keys.iter().filter(|k| k.active).count();
        if !self.auth.signing_keys.is_empty() && active != 1 {
            return invalid("auth.signing_keys: exactly one key must be active".into());
        }
        if self.auth.enabled && !self.auth.clients.is_empty() && self.auth.signing_keys.is_empty() {
            return invalid("auth.clients are registered but auth.signing_keys is empty".into());
        }
        if self.auth.enabled && self.auth.clients.is_empty() && self.auth.external.is_none() {
            return invalid("auth.enabled needs auth.clients or auth.external".into());
        }
        if self.auth.token_lifetime_secs == 0 || self.auth.max_assertion_lifetime_secs == 0 {
            return invalid("auth lifetimes must be positive".into());
        }
        Ok(())
    }

    /// Every provider id that needs a queue: configured providers plus the triage provider.
    pub fn provider_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .routing
            .providers
            .iter()
            .map(|p| p.id.clone())
            .collect();
        ids.push(self.routing.triage_provider.clone());
        ids.sort();
        ids.dedup();
        ids
    }
}

/// `[telemetry]`: logs. Trace export is configured by the standard `OTEL_*` variables
/// (see `crate::telemetry`), metrics are always served at `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` (human-readable, the default) or `json` (one JSON object per line).
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../spbridge.example.toml");
        let config = Config::from_toml_with_env(text, std::iter::empty()).unwrap();
        assert!(!config.routing.providers.is_empty());
    }

    #[test]
    fn env_overrides_nested_keys() {
        let vars = vec![
            (
                "SPBRIDGE_HTTP__LISTEN".to_string(),
                "0.0.0.0:9000".to_string(),
            ),
            (
                "SPBRIDGE_HTTP__MAX_BODY_BYTES".to_string(),
                "42".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let config = Config::from_toml_with_env("", vars.into_iter()).unwrap();
        assert_eq!(config.http.listen, "0.0.0.0:9000");
        assert_eq!(config.http.max_body_bytes, 42);
    }

    #[test]
    fn telemetry_log_format() {
        let config =
            Config::from_toml_with_env("[telemetry]\nlog_format = \"json\"", std::iter::empty())
                .unwrap();
        assert_eq!(config.telemetry.log_format, LogFormat::Json);
        let vars = vec![(
            "SPBRIDGE_TELEMETRY__LOG_FORMAT".to_string(),
            "text".to_string(),
        )];
        let config = Config::from_toml_with_env("", vars.into_iter()).unwrap();
        assert_eq!(config.telemetry.log_format, LogFormat::Text);
        assert!(Config::from_toml_with_env(
            "[telemetry]\nlog_format = \"xml\"",
            std::iter::empty()
        )
        .is_err());
    }

    #[test]
    fn unknown_key_is_an_error() {
        assert!(Config::from_toml_with_env("[http]\nlisten_on = 1", std::iter::empty()).is_err());
    }
}
