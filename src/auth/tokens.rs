//! The token endpoint's logic (SMART Backend Services, RFC 7523 client assertions).
//!
//! Owns: checking a `client_credentials` request with a `jwt-bearer` client assertion
//! (signature against the client's JWK Set, `iss` = `sub` = client id, `aud` = the token
//! URL, `exp` not too far ahead, `jti` never replayed — the replay cache is in the store,
//! so it holds across instances), scope intersection, and minting the access token.
//! Must not: parse HTTP (token_endpoint.rs does) or log assertions or tokens.

use super::clients::{ClientRegistry, RegisteredClient};
use super::keys::{verify_jws, JwtRejection, SigningKeys};
use crate::store::Store;
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `client_assertion_type` of RFC 7523.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Claims of the access tokens spbridge issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    /// Granted scopes, space separated.
    pub scope: String,
    pub client_id: String,
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    exp: u64,
    jti: Option<String>,
}

/// A client assertion (RFC 7523) for `client_id` at `token_url`, valid for `lifetime_secs`,
/// with a fresh `jti` — what a SMART Backend Services client sends to the token endpoint.
pub fn client_assertion(
    client_id: &str,
    token_url: &str,
    key: &super::keys::SigningKey,
    lifetime_secs: u64,
) -> Result<String, super::AuthError> {
    let now = now_secs();
    key.sign(&serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + lifetime_secs,
        "jti": uuid::Uuid::new_v4().to_string(),
    }))
}

/// A token request's form fields.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub scope: Option<String>,
}

/// What the endpoint answers on success.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub client_id: String,
    pub organisation: String,
}

/// RFC 6749 §5.2 error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    /// Client authentication failed; `client` is the claimed id, when one was named.
    InvalidClient {
        client: Option<String>,
        reason: String,
    },
    InvalidScope(String),
    UnsupportedGrantType,
    /// spbridge's fault (store down, signing failed).
    Server(String),
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::Server(_) => "server_error",
        }
    }

    pub fn description(&self) -> String {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient { reason: d, .. }
            | OAuthError::InvalidScope(d)
            | OAuthError::Server(d) => d.clone(),
            OAuthError::UnsupportedGrantType => "grant_type must be client_credentials".into(),
        }
    }
}

/// Issues access tokens to registered clients.
pub struct TokenIssuer {
    pub clients: Arc<ClientRegistry>,
    pub keys: Arc<SigningKeys>,
    pub store: Store,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// `aud` client assertions must carry.
    pub token_url: String,
    pub lifetime_secs: u64,
    pub leeway_secs: u64,
    pub max_assertion_lifetime_secs: u64,
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

impl TokenIssuer {
    /// Check a token request and mint an access token.
    pub async fn issue(&self, request: &TokenRequest) -> Result<IssuedToken, OAuthError> {
        match request.grant_type.as_deref() {
            Some("client_credentials") => {}
            Some(_) => return Err(OAuthError::UnsupportedGrantType),
            None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        }
        if request.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(OAuthError::InvalidRequest(format!(
                "client_assertion_type must be {JWT_BEARER}"
            )));
        }
        let assertion = request
            .client_assertion
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| OAuthError::InvalidRequest("client_assertion is missing".into()))?;
        let client = self.claimed_client(assertion)?;
        let invalid = |reason: &str| OAuthError::InvalidClient {
            client: Some(client.client_id.clone()),
            reason: reason.to_string(),
        };
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS384);
        validation.leeway = self.leeway_secs;
        validation.set_issuer(&[&client.client_id]);
        validation.sub = Some(client.client_id.clone());
        validation.set_audience(&[&self.token_url]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.validate_nbf = true;
        let claims: AssertionClaims = verify_jws(assertion, &client.jwks, validation)
            .map_err(|r| invalid(&format!("client assertion refused: {r}")))?;
        let now = now_secs();
        if claims.exp > now + self.max_assertion_lifetime_secs + self.leeway_secs {
            return Err(invalid(&format!(
                "client assertion exp is more than {} seconds ahead",
                self.max_assertion_lifetime_secs
            )));
        }
        let jti = claims
            .jti
            .filter(|j| !j.is_empty() && j.len() <= 255)
            .ok_or_else(|| invalid("client assertion needs a jti of 1-255 characters"))?;
        let expires_at = (claims.exp + self.leeway_secs).saturating_mul(1000);
        let fresh = self
            .store
            .claim_jti(&client.client_id, &jti, expires_at as i64)
            .await
            .map_err(|e| OAuthError::Server(format!("replay cache unavailable: {e}")))?;
        if !fresh {
            return Err(invalid("client assertion jti was already used"));
        }
        let granted = client.grant(request.scope.as_deref());
        if granted.is_empty() {
            return Err(OAuthError::InvalidScope(
                "none of the requested scopes is allowed for this client".into(),
            ));
        }
        let scope = granted.join(" ");
        let access = AccessClaims {
            iss: self.issuer.clone(),
            sub: client.client_id.clone(),
            aud: self.audience.clone(),
            exp: now + self.lifetime_secs,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: scope.clone(),
            client_id: client.client_id.clone(),
        };
        let access_token = self
            .keys
            .sign(&access)
            .map_err(|e| OAuthError::Server(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.lifetime_secs,
            scope,
            client_id: client.client_id.clone(),
            organisation: client.organisation.clone(),
        })
    }

    /// The registered client an assertion names (unverified `iss`, checked afterwards).
    fn claimed_client(&self, assertion: &str) -> Result<&RegisteredClient, OAuthError> {
        #[derive(Deserialize)]
        struct Named {
            iss: Option<String>,
        }
        let unknown = |reason: String| OAuthError::InvalidClient {
            client: None,
            reason,
        };
        let named: Named =
            jsonwebtoken::dangerous::insecure_decode_claims(assertion).map_err(|_| {
                unknown(format!(
                    "client assertion refused: {}",
                    JwtRejection::Malformed
                ))
            })?;
        let iss = named
            .iss
            .ok_or_else(|| unknown("client assertion has no iss".into()))?;
        self.clients
            .get(&iss)
            .ok_or_else(|| unknown("client is not registered".into()))
    }
}
