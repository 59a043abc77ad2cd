//! The registry of SMART Backend Services clients.
//!
//! Owns: turning `[[auth.clients]]` into `RegisteredClient`s — organisation, role,
//! provider id, the scopes they may be granted and their public keys (JWK Set, inline or
//! from a file) — and scope intersection.
//! Must not: verify tokens or touch the store.

use super::{AuthError, Principal, Role};
use crate::config::AuthClientConfig;
use jsonwebtoken::jwk::JwkSet;
use std::collections::HashMap;

/// A registered client.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    pub organisation: String,
    pub role: Role,
    pub provider_id: Option<String>,
    /// Scopes this client may be granted.
    pub scopes: Vec<String>,
    /// Public keys its client assertions are signed with.
    pub jwks: JwkSet,
}

impl RegisteredClient {
    /// The scopes granted for a request: the requested ones this client may have (all of
    /// them when nothing is requested). Empty = nothing grantable.
    pub fn grant(&self, requested: Option<&str>) -> Vec<String> {
        match requested.map(str::trim).filter(|s| !s.is_empty()) {
            None => self.scopes.clone(),
            Some(requested) => {
                let mut granted: Vec<String> = requested
                    .split_ascii_whitespace()
                    .filter(|s| self.scopes.iter().any(|allowed| allowed == s))
                    .map(str::to_string)
                    .collect();
                granted.dedup();
                granted
            }
        }
    }

    /// The principal this client stands for with `scopes`.
    pub fn principal(&self, scopes: Vec<String>) -> Principal {
        Principal {
            client_id: self.client_id.clone(),
            organisation: self.organisation.clone(),
            role: self.role,
            provider_id: self.provider_id.clone(),
            scopes,
        }
    }
}

/// Every registered client by id.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: HashMap<String, RegisteredClient>,
}

impl ClientRegistry {
    pub fn load(configs: &[AuthClientConfig]) -> Result<ClientRegistry, AuthError> {
        let mut clients = HashMap::new();
        for config in configs {
            let client = load_client(config)?;
            if clients.insert(client.client_id.clone(), client).is_some() {
                return Err(AuthError::Config(format!(
                    "auth.clients: client_id {:?} registered twice",
                    config.client_id
                )));
            }
        }
        Ok(ClientRegistry { clients })
    }

    pub fn get(&self, client_id: &str) -> Option<&RegisteredClient> {
        self.clients.get(client_id)
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

fn load_client(config: &AuthClientConfig) -> Result<RegisteredClient, AuthError> {
    let bad = |reason: String| {
        AuthError::Config(format!("auth.clients {:?}: {reason}", config.client_id))
    };
    let role = match config.role.as_str() {
        "requester" => Role::Requester,
        "provider" => Role::Provider,
        "auditor" => Role::Auditor,
        other => return Err(bad(format!("unknown role {other:?}"))),
    };
    let text = match (&config.jwks, &config.jwks_file) {
        (Some(text), None) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| bad(format!("jwks_file {}: {e}", path.display())))?,
        _ => return Err(bad("set exactly one of jwks and jwks_file".into())),
    };
    let jwks: JwkSet =
        serde_json::from_str(&text).map_err(|e| bad(format!("JWK Set does not parse: {e}")))?;
    if jwks.keys.is_empty() {
        return Err(bad("JWK Set has no keys".into()));
    }
    Ok(RegisteredClient {
        client_id: config.client_id.clone(),
        organisation: config.organisation.clone(),
        role,
        provider_id: config.provider_id.clone().filter(|p| !p.is_empty()),
        scopes: config.scopes.clone(),
        jwks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_is_the_intersection() {
        let client = RegisteredClient {
            client_id: "c".into(),
            organisation: "A81001".into(),
            role: Role::Requester,
            provider_id: None,
            scopes: vec!["system/Task.rs".into(), "system/ServiceRequest.c".into()],
            jwks: JwkSet { keys: vec![] },
        };
        assert_eq!(client.grant(None).len(), 2);
        assert_eq!(
            client.grant(Some("system/Task.rs system/Task.u")),
            vec!["system/Task.rs".to_string()]
        );
        assert!(client.grant(Some("system/*.*")).is_empty());
    }
}
