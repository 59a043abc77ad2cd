//! An external authorisation server's JWK Set, fetched and cached.
//!
//! Owns: fetching the JWK Set over HTTP(S) (ureq on rustls/aws-lc-rs, on a blocking
//! thread), caching it, and fetching again when a token names an unknown `kid` — at most
//! once per `min_refresh` so a stream of bogus kids cannot hammer the server.
//! Must not: verify tokens (verify.rs does).

use jsonwebtoken::jwk::JwkSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_JWKS_BYTES: u64 = 1 << 20;

struct Cached {
    set: Arc<JwkSet>,
    fetched: Option<Instant>,
}

/// The cached key set of one external issuer.
pub struct ExternalJwks {
    url: String,
    min_refresh: Duration,
    agent: ureq::Agent,
    cache: Mutex<Cached>,
}

impl ExternalJwks {
    pub fn new(url: &str, min_refresh: Duration) -> ExternalJwks {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .http_status_as_error(true)
            .user_agent(concat!("spbridge/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        ExternalJwks {
            url: url.to_string(),
            min_refresh,
            agent,
            cache: Mutex::new(Cached {
                set: Arc::new(JwkSet { keys: Vec::new() }),
                fetched: None,
            }),
        }
    }

    /// The key set, fetched again first when it lacks `kid` and the last fetch is old
    /// enough. A failed fetch keeps the old set (and is logged).
    pub async fn keys_for(&self, kid: &str) -> Arc<JwkSet> {
        let mut cache = self.cache.lock().await;
        let stale = cache
            .fetched
            .is_none_or(|at| at.elapsed() >= self.min_refresh);
        if cache.set.find(kid).is_some() || !stale {
            return cache.set.clone();
        }
        match self.fetch().await {
            Ok(set) => {
                cache.set = Arc::new(set);
                tracing::info!(url = %self.url, keys = cache.set.keys.len(), "external JWKS fetched");
            }
            Err(reason) => tracing::warn!(url = %self.url, %reason, "external JWKS fetch failed"),
        }
        cache.fetched = Some(Instant::now());
        cache.set.clone()
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let agent = self.agent.clone();
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut response = agent.get(&url).call().map_err(|e| e.to_string())?;
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_JWKS_BYTES)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            serde_json::from_str::<JwkSet>(&text).map_err(|e| format!("not a JWK Set: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
