//! Signing keys and JWK Sets: spbridge's own token-signing keys (rotation by `kid`) and
//! signature checks against a JWK Set with an algorithm allow-list tied to the key type.
//!
//! Owns: loading PEM private keys, publishing their public halves as a JWK Set,
//! signing, and `verify_jws` — the one place a JWT signature is checked.
//! Must not: decide what claims mean (tokens.rs and verify.rs do) or do I/O beyond
//! reading the configured key files at start-up.

use super::AuthError;
use crate::config::SigningKeyConfig;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// Algorithms spbridge accepts at all (SMART Backend Services: RS384/ES384 required,
/// RS256/ES256 common). Never `none`, never HMAC.
pub const ACCEPTED_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Parse a configured algorithm name.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        _ => None,
    }
}

/// One of spbridge's own keys.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// Public half, with `kid`, `alg` and `use` set.
    pub jwk: Jwk,
}

impl SigningKey {
    /// From a PEM private key (PKCS#8, or PKCS#1 for RSA, SEC1 for EC).
    pub fn from_pem(kid: &str, alg: Algorithm, pem: &[u8]) -> Result<SigningKey, AuthError> {
        let bad = |reason: String| AuthError::Key {
            kid: kid.to_string(),
            reason,
        };
        let encoding = match alg {
            Algorithm::RS256 | Algorithm::RS384 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            other => return Err(bad(format!("algorithm {other:?} is not accepted"))),
        }
        .map_err(|e| bad(e.to_string()))?;
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).map_err(|e| bad(e.to_string()))?;
        jwk.common.key_id = Some(kid.to_string());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        // Signing once proves the key matches the algorithm (e.g. a P-384 key for ES256 fails).
        jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({}), &encoding)
            .map_err(|e| bad(e.to_string()))?;
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
        })
    }

    /// A key whose algorithm is found from the PEM itself (P-256 → ES256, P-384 → ES384,
    /// RSA → RS384) and whose `kid` is its RFC 7638 thumbprint unless one is given.
    pub fn detect(pem: &[u8], kid: Option<&str>) -> Result<SigningKey, AuthError> {
        let mut last = None;
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::RS384] {
            match SigningKey::from_pem(kid.unwrap_or("probe"), alg, pem) {
                Ok(key) if kid.is_some() => return Ok(key),
                Ok(key) => {
                    let thumbprint = key
                        .jwk
                        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                        .map_err(|e| AuthError::Internal(e.to_string()))?;
                    return SigningKey::from_pem(&thumbprint, alg, pem);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| AuthError::Config("unreadable key".into())))
    }

    /// Sign claims with this key (its `alg` and `kid` in the header).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Internal(format!("signing failed: {e}")))
    }
}

/// spbridge's signing keys: one active (signs new tokens), the rest verify older tokens.
pub struct SigningKeys {
    keys: Vec<SigningKey>,
    active: usize,
    set: Arc<JwkSet>,
}

impl SigningKeys {
    /// Load every configured key file.
    pub fn load(configs: &[SigningKeyConfig]) -> Result<SigningKeys, AuthError> {
        let mut keys = Vec::new();
        let mut active = 0;
        for (i, config) in configs.iter().enumerate() {
            let alg = parse_algorithm(&config.alg).ok_or_else(|| AuthError::Key {
                kid: config.kid.clone(),
                reason: format!(
                    "alg {:?} is not one of ES256, ES384, RS256, RS384",
                    config.alg
                ),
            })?;
            let pem = std::fs::read(&config.key).map_err(|e| AuthError::Key {
                kid: config.kid.clone(),
                reason: format!("{}: {e}", config.key.display()),
            })?;
            keys.push(SigningKey::from_pem(&config.kid, alg, &pem)?);
            if config.active {
                active = i;
            }
        }
        SigningKeys::new(keys, active)
    }

    pub fn new(keys: Vec<SigningKey>, active: usize) -> Result<SigningKeys, AuthError> {
        if active >= keys.len() {
            return Err(AuthError::Config("no active signing key".into()));
        }
        let set = Arc::new(JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        });
        Ok(SigningKeys { keys, active, set })
    }

    /// Sign claims with the active key (its `kid` in the header).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        self.keys[self.active].sign(claims)
    }

    /// The public keys, as published at `/.well-known/jwks.json`.
    pub fn jwk_set(&self) -> Arc<JwkSet> {
        self.set.clone()
    }
}

/// Algorithms a JWK may verify: tied to its key type and curve, and to its own `alg`
/// when it names one.
pub fn allowed_algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::RS384],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => vec![],
        },
        _ => vec![],
    };
    match jwk.common.key_algorithm {
        Some(named) => by_type
            .into_iter()
            .filter(|alg| key_algorithm(*alg) == Some(named))
            .collect(),
        None => by_type,
    }
}

fn key_algorithm(alg: Algorithm) -> Option<KeyAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::RS384 => KeyAlgorithm::RS384,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::ES384 => KeyAlgorithm::ES384,
        _ => return None,
    })
}

/// Why a JWT was refused. The texts are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    #[error("token is malformed")]
    Malformed,
    #[error("token has no kid header")]
    MissingKid,
    #[error("token key id is unknown")]
    UnknownKid,
    #[error("token algorithm is not allowed for its key")]
    AlgorithmNotAllowed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token audience is wrong")]
    WrongAudience,
    #[error("token issuer is wrong")]
    WrongIssuer,
    #[error("token subject is wrong")]
    WrongSubject,
    #[error("token lacks a required claim")]
    MissingClaim,
}

/// The `kid` of a token's header, if the header parses.
pub fn header_of(token: &str) -> Result<Header, JwtRejection> {
    jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Malformed)
}

/// Check a JWT's signature against `keys` (by `kid`, algorithm tied to the key type) and
/// its claims against `validation` (whose `algorithms` is overwritten here).
pub fn verify_jws<T: DeserializeOwned>(
    token: &str,
    keys: &JwkSet,
    mut validation: Validation,
) -> Result<T, JwtRejection> {
    let header = header_of(token)?;
    if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
        return Err(JwtRejection::AlgorithmNotAllowed);
    }
    let kid = header.kid.as_deref().ok_or(JwtRejection::MissingKid)?;
    let jwk = keys.find(kid).ok_or(JwtRejection::UnknownKid)?;
    if !allowed_algorithms(jwk).contains(&header.alg) {
        return Err(JwtRejection::AlgorithmNotAllowed);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtRejection::UnknownKid)?;
    validation.algorithms = vec![header.alg];
    jsonwebtoken::decode::<T>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| rejection(e.kind()))
}

fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> JwtRejection {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => JwtRejection::BadSignature,
        K::ExpiredSignature => JwtRejection::Expired,
        K::ImmatureSignature => JwtRejection::NotYetValid,
        K::InvalidAudience => JwtRejection::WrongAudience,
        K::InvalidIssuer => JwtRejection::WrongIssuer,
        K::InvalidSubject => JwtRejection::WrongSubject,
        K::MissingRequiredClaim(_) => JwtRejection::MissingClaim,
        K::InvalidAlgorithm => JwtRejection::AlgorithmNotAllowed,
        _ => JwtRejection::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;

    fn key(alg: &'static rcgen::SignatureAlgorithm) -> String {
        rcgen::KeyPair::generate_for(alg).unwrap().serialize_pem()
    }

    #[test]
    fn algorithm_follows_the_key_type() {
        let p256 =
            SigningKey::detect(key(&rcgen::PKCS_ECDSA_P256_SHA256).as_bytes(), None).unwrap();
        let p384 =
            SigningKey::detect(key(&rcgen::PKCS_ECDSA_P384_SHA384).as_bytes(), None).unwrap();
        assert_eq!(p256.alg, Algorithm::ES256);
        assert_eq!(p384.alg, Algorithm::ES384);
        assert_eq!(allowed_algorithms(&p256.jwk), vec![Algorithm::ES256]);
        assert_eq!(allowed_algorithms(&p384.jwk), vec![Algorithm::ES384]);
        assert!(SigningKey::from_pem("k", Algorithm::ES256, b"not a key").is_err());
        assert!(SigningKey::from_pem("k", Algorithm::HS256, b"secret").is_err());
    }

    #[test]
    fn verify_refuses_hmac_and_unknown_kids() {
        let pem = key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let signing = SigningKey::from_pem("k1", Algorithm::ES256, pem.as_bytes()).unwrap();
        let set = JwkSet {
            keys: vec![signing.jwk.clone()],
        };
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"exp": now + 60});
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        let good = signing.sign(&claims).unwrap();
        assert!(verify_jws::<serde_json::Value>(&good, &set, validation.clone()).is_ok());
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let public = serde_json::to_string(&signing.jwk).unwrap();
        let hs = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(public.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verify_jws::<serde_json::Value>(&hs, &set, validation.clone()),
            Err(JwtRejection::AlgorithmNotAllowed)
        );
        let other = SigningKey::from_pem("k2", Algorithm::ES256, pem.as_bytes()).unwrap();
        assert_eq!(
            verify_jws::<serde_json::Value>(&other.sign(&claims).unwrap(), &set, validation),
            Err(JwtRejection::UnknownKid)
        );
    }
}
