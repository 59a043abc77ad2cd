//! Bearer-token verification: access token → `Principal`.
//!
//! Owns: choosing the key set by issuer (spbridge's own keys, or the external
//! authorisation server's cached JWK Set), the claim checks (`iss`, `aud`, `exp`/`nbf`
//! with a small leeway, `sub`), and mapping the token to a registered client and its
//! granted scopes.
//! Must not: answer HTTP (gate.rs does) or log tokens.

use super::clients::ClientRegistry;
use super::external::ExternalJwks;
use super::keys::{verify_jws, JwtRejection, SigningKeys};
use super::Principal;
use jsonwebtoken::Validation;
use serde::Deserialize;
use std::sync::Arc;

/// An external issuer spbridge trusts.
pub struct TrustedIssuer {
    pub issuer: String,
    pub audience: String,
    pub jwks: ExternalJwks,
}

/// Verifies access tokens.
pub struct AccessVerifier {
    pub clients: Arc<ClientRegistry>,
    /// spbridge's own keys and issuer (absent when only an external issuer is trusted).
    pub own: Option<(Arc<SigningKeys>, String)>,
    pub audience: String,
    pub external: Option<TrustedIssuer>,
    pub leeway_secs: u64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct Issuer {
    iss: Option<String>,
}

impl AccessVerifier {
    /// The principal a bearer token stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, JwtRejection> {
        let header = super::keys::header_of(token)?;
        let named: Issuer = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| JwtRejection::Malformed)?;
        let iss = named.iss.ok_or(JwtRejection::MissingClaim)?;
        let (keys, audience) = match (&self.own, &self.external) {
            (Some((keys, issuer)), _) if *issuer == iss => (keys.jwk_set(), self.audience.as_str()),
            (_, Some(external)) if external.issuer == iss => {
                let kid = header.kid.as_deref().ok_or(JwtRejection::MissingKid)?;
                (
                    external.jwks.keys_for(kid).await,
                    external.audience.as_str(),
                )
            }
            _ => return Err(JwtRejection::WrongIssuer),
        };
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS384);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&iss]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims: Claims = verify_jws(token, &keys, validation)?;
        let client_id = claims.client_id.unwrap_or(claims.sub);
        let client = self
            .clients
            .get(&client_id)
            .ok_or(JwtRejection::WrongSubject)?;
        // Never more than the client is registered for, whoever issued the token.
        let scopes = match claims.scope.as_deref().map(str::trim) {
            Some(scope) if !scope.is_empty() => client.grant(Some(scope)),
            _ => Vec::new(),
        };
        Ok(client.principal(scopes))
    }
}
