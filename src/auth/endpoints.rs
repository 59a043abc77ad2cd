//! The HTTP faces of the authorisation server: `POST /oauth2/token`,
//! `/.well-known/jwks.json`, `/.well-known/smart-configuration` and the `security` part
//! of the CapabilityStatement.
//!
//! Owns: reading the token request's form fields, rendering RFC 6749 JSON answers
//! (`{"error": "invalid_client", ...}`, 400/401, `Cache-Control: no-store`) and the two
//! discovery documents.
//! Must not: check assertions itself (tokens.rs does) or log assertions or tokens.

use super::keys::ACCEPTED_ALGORITHMS;
use super::tokens::{IssuedToken, OAuthError, TokenRequest};
use super::AuthService;
use crate::http::{ApiRequest, ApiResponse};
use hyper::header::{CACHE_CONTROL, PRAGMA};
use hyper::StatusCode;
use serde_json::{json, Value};

const JSON: &str = "application/json";

/// The form fields of a token request (the listener hands `x-www-form-urlencoded`
/// bodies of `/oauth2/token` over as a JSON object of strings).
pub fn token_request(request: &ApiRequest) -> Result<TokenRequest, OAuthError> {
    let form = request
        .header("content-type")
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    let Some(Value::Object(fields)) = request.body.as_ref().filter(|_| form) else {
        return Err(OAuthError::InvalidRequest(
            "the token request must be an application/x-www-form-urlencoded form".into(),
        ));
    };
    let field = |name: &str| -> Result<Option<String>, OAuthError> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(OAuthError::InvalidRequest(format!(
                "{name} must be sent once"
            ))),
        }
    };
    Ok(TokenRequest {
        grant_type: field("grant_type")?,
        client_assertion_type: field("client_assertion_type")?,
        client_assertion: field("client_assertion")?,
        scope: field("scope")?,
    })
}

fn no_store(response: ApiResponse) -> ApiResponse {
    let mut response = response
        .with_header(CACHE_CONTROL, "no-store")
        .with_header(PRAGMA, "no-cache");
    response.content_type = Some(JSON);
    response
}

/// `200` with the access token.
pub fn token_answer(token: &IssuedToken) -> ApiResponse {
    no_store(ApiResponse::json(
        StatusCode::OK,
        json!({
            "access_token": token.access_token,
            "token_type": "bearer",
            "expires_in": token.expires_in,
            "scope": token.scope,
        }),
    ))
}

/// RFC 6749 §5.2 error answer.
pub fn oauth_error(error: &OAuthError) -> ApiResponse {
    let status = match error {
        OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
        OAuthError::Server(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    no_store(ApiResponse::json(
        status,
        json!({"error": error.code(), "error_description": error.description()}),
    ))
}

/// `/.well-known/jwks.json`.
pub fn jwks(auth: &AuthService) -> ApiResponse {
    let keys = match &auth.keys {
        Some(keys) => serde_json::to_value(&*keys.jwk_set()).unwrap_or(json!({"keys": []})),
        None => json!({"keys": []}),
    };
    let mut response =
        ApiResponse::json(StatusCode::OK, keys).with_header(CACHE_CONTROL, "public, max-age=300");
    response.content_type = Some("application/jwk-set+json");
    response
}

/// Add `rest[].security` (SMART-on-FHIR service, OAuth token URI) to the
/// CapabilityStatement intake answers at `/metadata`.
pub fn advertise_security(capability: &mut Value, auth: &AuthService) {
    if capability.get("resourceType").and_then(Value::as_str) != Some("CapabilityStatement") {
        return;
    }
    let security = json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": auth.token_url}]
        }],
        "cors": false,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR"
        }]}],
        "description": "SMART Backend Services: POST a signed client assertion to the token \
            endpoint, then send `Authorization: Bearer <access token>`; SMART v2 system scopes."
    });
    if let Some(rest) = capability.get_mut("rest").and_then(Value::as_array_mut) {
        for entry in rest {
            if let Value::Object(map) = entry {
                map.insert("security".into(), security.clone());
            }
        }
    }
}

/// `/.well-known/smart-configuration` (SMART App Launch 2.x, backend services subset).
pub fn smart_configuration(auth: &AuthService) -> ApiResponse {
    let algs: Vec<String> = ACCEPTED_ALGORITHMS
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let mut response = ApiResponse::json(
        StatusCode::OK,
        json!({
            "issuer": auth.issuer_id,
            "jwks_uri": format!("{}/.well-known/jwks.json", auth.base_url),
            "token_endpoint": auth.token_url,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "scopes_supported": auth.scopes_supported,
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        }),
    );
    response.content_type = Some(JSON);
    response
}
