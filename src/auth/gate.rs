//! The bearer-token gate: a `Routes` wrapper in front of the FHIR routes.
//!
//! Owns: answering the authorisation-server paths (token endpoint, discovery documents),
//! letting public paths through, verifying the bearer token of everything else (401 with
//! `WWW-Authenticate` and an OperationOutcome), checking the SMART scope of the
//! interaction (403 `forbidden`), setting `ApiRequest.principal`, serving the audit
//! trail to auditors, and recording every non-public request's outcome as an AuditEvent.
//! Must not: filter by tenant (intake/workflow do, from the principal) or log tokens.

use super::audit::{self, AuditRecord};
use super::endpoints;
use super::keys::JwtRejection;
use super::scopes::{is_public, required, scope_text};
use super::{AuthService, Interaction, Role};
use crate::http::{ApiRequest, ApiResponse, Routes};
use crate::outcome::IssueType;
use hyper::header::{LOCATION, WWW_AUTHENTICATE};
use hyper::{Method, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Realm named in `WWW-Authenticate`.
const REALM: &str = "spbridge";

/// Requires a valid bearer token in front of `inner`.
pub struct AuthGate {
    auth: Arc<AuthService>,
    inner: Arc<dyn Routes>,
}

impl AuthGate {
    pub fn new(auth: Arc<AuthService>, inner: Arc<dyn Routes>) -> AuthGate {
        AuthGate { auth, inner }
    }

    async fn gate(&self, mut request: ApiRequest) -> ApiResponse {
        let method = request.method.clone();
        let path = request.path.clone();
        match (&method, path.as_str()) {
            (&Method::POST, "/oauth2/token") => return self.token(&request).await,
            (&Method::GET, "/.well-known/jwks.json") => return endpoints::jwks(&self.auth),
            (&Method::GET, "/.well-known/smart-configuration") => {
                return endpoints::smart_configuration(&self.auth)
            }
            (&Method::GET, "/openapi.json") => {
                return crate::intake::openapi_response(&request.base_url, true)
            }
            (&Method::GET, "/metadata") => {
                let mut answer = self.inner.handle(request).await;
                if let Some(body) = answer.body.as_mut() {
                    endpoints::advertise_security(body, &self.auth);
                }
                return answer;
            }
            _ if is_public(&method, &path) => return self.inner.handle(request).await,
            _ => {}
        }
        let interaction = required(&method, &path);
        let mut record = AuditRecord {
            principal: None,
            claimed_client: None,
            method: method.to_string(),
            path: path.clone(),
            created: None,
            interaction: interaction.clone(),
            status: 0,
            reason: None,
            correlation_id: request.correlation_id.clone(),
            request_id: request.request_id.clone(),
        };
        let principal = match bearer(&request) {
            Err(missing) => {
                let answer = unauthorized(missing, None);
                return self.audited(record, answer, Some(missing.into())).await;
            }
            Ok(token) => match self.auth.verifier.verify(token).await {
                Ok(principal) => principal,
                Err(rejection) => {
                    let answer = unauthorized("invalid bearer token", Some(&rejection));
                    return self
                        .audited(record, answer, Some(rejection.to_string()))
                        .await;
                }
            },
        };
        record.principal = Some(principal.clone());
        if let Some((resource_type, wanted)) = &interaction {
            if !principal.allows(resource_type, *wanted) {
                let scope = scope_text(resource_type, *wanted);
                let answer = forbidden(&format!("this interaction needs the scope {scope}"))
                    .with_header(
                        WWW_AUTHENTICATE,
                        &format!(
                        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
                    ),
                    );
                return self
                    .audited(record, answer, Some(format!("missing scope {scope}")))
                    .await;
            }
            if resource_type == "AuditEvent" {
                let answer = if principal.role != Role::Auditor {
                    forbidden("only auditors may read the audit trail")
                } else if matches!(wanted, Interaction::Read | Interaction::Search) {
                    audit::serve(&self.auth.store, &request).await
                } else {
                    ApiResponse::error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        IssueType::NotSupported,
                        "the audit trail is read-only",
                    )
                };
                return self.audited(record, answer, None).await;
            }
        }
        request.principal = Some(Arc::new(principal));
        let answer = self.inner.handle(request).await;
        self.audited(record, answer, None).await
    }

    async fn token(&self, request: &ApiRequest) -> ApiResponse {
        let mut record = AuditRecord {
            principal: None,
            claimed_client: None,
            method: "POST".into(),
            path: request.path.clone(),
            created: None,
            interaction: None,
            status: 0,
            reason: None,
            correlation_id: request.correlation_id.clone(),
            request_id: request.request_id.clone(),
        };
        let Some(issuer) = &self.auth.issuer else {
            let error = super::tokens::OAuthError::InvalidClient {
                client: None,
                reason: "this server issues no tokens; use the configured authorisation server"
                    .into(),
            };
            return self
                .audited(record, endpoints::oauth_error(&error), None)
                .await;
        };
        let result = match endpoints::token_request(request) {
            Ok(form) => issuer.issue(&form).await,
            Err(err) => Err(err),
        };
        crate::telemetry::metrics::token_request(match &result {
            Ok(_) => "issued",
            Err(error) => error.code(),
        });
        match result {
            Ok(token) => {
                if let Some(client) = issuer.clients.get(&token.client_id) {
                    let scopes = token.scope.split(' ').map(str::to_string).collect();
                    record.principal = Some(client.principal(scopes));
                }
                self.audited(record, endpoints::token_answer(&token), None)
                    .await
            }
            Err(error) => {
                if let super::tokens::OAuthError::InvalidClient { client, .. } = &error {
                    record.claimed_client = client.clone();
                }
                let reason = format!("{}: {}", error.code(), error.description());
                self.audited(record, endpoints::oauth_error(&error), Some(reason))
                    .await
            }
        }
    }

    /// Record the outcome, then answer. A failed audit write is logged, not hidden.
    async fn audited(
        &self,
        mut record: AuditRecord,
        answer: ApiResponse,
        reason: Option<String>,
    ) -> ApiResponse {
        record.status = answer.status.as_u16();
        record.reason = reason;
        record.created = answer
            .headers
            .iter()
            .find(|(name, _)| name == LOCATION)
            .and_then(|(_, v)| v.to_str().ok())
            .and_then(location_reference);
        if let Err(err) = audit::record(&self.auth.store, &record).await {
            tracing::error!(error = %err, correlation_id = %record.correlation_id,
                "audit event could not be written");
        }
        answer
    }
}

impl Routes for AuthGate {
    fn handle(
        &self,
        request: ApiRequest,
    ) -> Pin<Box<dyn Future<Output = ApiResponse> + Send + '_>> {
        Box::pin(self.gate(request))
    }
}

/// `Type/id` of a `Location` (`<base>/Type/id/_history/n`).
fn location_reference(location: &str) -> Option<String> {
    let path = location.split("/_history/").next()?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let rtype = parts.next()?;
    Some(format!("{rtype}/{id}"))
}

/// The bearer token, or why there is none.
fn bearer(request: &ApiRequest) -> Result<&str, &'static str> {
    let Some(value) = request.headers.get("authorization") else {
        return Err("a bearer token is required");
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not text")?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or("the Authorization header must be 'Bearer <token>'")?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err("the Authorization header must be 'Bearer <token>'");
    }
    Ok(token.trim())
}

fn unauthorized(message: &str, rejection: Option<&JwtRejection>) -> ApiResponse {
    let (diagnostics, header) = match rejection {
        Some(r) => (
            format!("{message}: {r}"),
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{r}\""),
        ),
        None => (message.to_string(), format!("Bearer realm=\"{REALM}\"")),
    };
    let code = match rejection {
        Some(JwtRejection::Expired) => IssueType::Expired,
        _ => IssueType::Login,
    };
    ApiResponse::error(StatusCode::UNAUTHORIZED, code, diagnostics)
        .with_header(WWW_AUTHENTICATE, &header)
}

fn forbidden(message: &str) -> ApiResponse {
    ApiResponse::error(StatusCode::FORBIDDEN, IssueType::Forbidden, message)
}
