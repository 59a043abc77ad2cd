//! Who is calling, and what they may do.
//!
//! Owns: the `Principal` a verified bearer token (or an AMQP user) stands for — client id,
//! the organisation it acts for, its role and its SMART v2 system scopes — and the scope
//! checks every endpoint makes; the SMART Backend Services token endpoint and discovery
//! documents, spbridge's signing keys, bearer verification (own keys or an external
//! issuer's JWK Set), the `AuthGate` in front of the FHIR routes, and the audit trail.
//! Must not: read request bodies (other than the token form), touch the store's
//! resources other than AuditEvents, or log tokens or patient data.

pub mod audit;
mod clients;
mod endpoints;
mod external;
mod gate;
pub mod keys;
mod principal;
pub mod scopes;
pub mod tokens;
mod verify;

pub use clients::{ClientRegistry, RegisteredClient};
pub use gate::AuthGate;
pub use keys::{JwtRejection, SigningKey, SigningKeys};
pub use principal::{Interaction, Principal, Role};
pub use tokens::{
    client_assertion, AccessClaims, OAuthError, TokenIssuer, TokenRequest, JWT_BEARER,
};
pub use verify::{AccessVerifier, TrustedIssuer};

use crate::config::AuthConfig;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Why the security layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("signing key {kid:?}: {reason}")]
    Key { kid: String, reason: String },
    #[error("auth configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Internal(String),
}

/// Everything the gate needs, built once at start-up.
pub struct AuthService {
    pub verifier: AccessVerifier,
    /// `None` when only an external authorisation server issues tokens.
    pub issuer: Option<TokenIssuer>,
    pub keys: Option<Arc<SigningKeys>>,
    pub store: Store,
    /// FHIR base URL, no trailing slash.
    pub base_url: String,
    /// `iss` of the tokens spbridge issues.
    pub issuer_id: String,
    pub token_url: String,
    pub scopes_supported: Vec<String>,
}

impl AuthService {
    /// Build from `[auth]`; `base_url` is the service's public base URL.
    pub fn from_config(
        config: &AuthConfig,
        base_url: &str,
        store: Store,
    ) -> Result<AuthService, AuthError> {
        let base_url = base_url.trim_end_matches('/').to_string();
        let or_base = |s: &str| {
            if s.is_empty() {
                base_url.clone()
            } else {
                s.trim_end_matches('/').to_string()
            }
        };
        let issuer_id = or_base(&config.issuer);
        let audience = or_base(&config.audience);
        let token_url = format!("{base_url}/oauth2/token");
        let clients = Arc::new(ClientRegistry::load(&config.clients)?);
        let keys = if config.signing_keys.is_empty() {
            None
        } else {
            Some(Arc::new(SigningKeys::load(&config.signing_keys)?))
        };
        let issuer = match (&keys, clients.is_empty()) {
            (Some(keys), false) => Some(TokenIssuer {
                clients: clients.clone(),
                keys: keys.clone(),
                store: store.clone(),
                issuer: issuer_id.clone(),
                audience: audience.clone(),
                token_url: token_url.clone(),
                lifetime_secs: config.token_lifetime_secs,
                leeway_secs: config.leeway_secs,
                max_assertion_lifetime_secs: config.max_assertion_lifetime_secs,
            }),
            _ => None,
        };
        let external = config.external.as_ref().map(|e| TrustedIssuer {
            issuer: e.issuer.clone(),
            audience: if e.audience.is_empty() {
                audience.clone()
            } else {
                e.audience.clone()
            },
            jwks: external::ExternalJwks::new(&e.jwks_url, Duration::from_secs(e.min_refresh_secs)),
        });
        let mut scopes_supported: Vec<String> = config
            .clients
            .iter()
            .flat_map(|c| c.scopes.iter().cloned())
            .collect();
        scopes_supported.sort();
        scopes_supported.dedup();
        let verifier = AccessVerifier {
            clients,
            own: keys.clone().map(|k| (k, issuer_id.clone())),
            audience,
            external,
            leeway_secs: config.leeway_secs,
        };
        Ok(AuthService {
            verifier,
            issuer,
            keys,
            store,
            base_url,
            issuer_id,
            token_url,
            scopes_supported,
        })
    }
}
