//! Bearer tokens and the token endpoint over a real socket (HTTPS): every refusal answers
//! with the right status, an OperationOutcome (FHIR routes) or RFC 6749 JSON (token
//! endpoint), and `WWW-Authenticate` where it applies.

#[path = "support/intake.rs"]
mod common;

use common::auth_kit;

use auth_kit::{send, token_request, AuthKit, HttpsClient, Transport};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use spbridge::service::{start, Running};

struct Setup {
    kit: AuthKit,
    running: Running,
    http: HttpsClient,
    _dir: Option<tempfile::TempDir>,
}

impl Setup {
    async fn new() -> Setup {
        let kit = AuthKit::new();
        let (mut config, _schema, dir) =
            common::test_config(common::Db::Sqlite, &common::amqp_url());
        config.broker.relay_enabled = false;
        kit.apply(&mut config, Transport::Tls);
        let running = start(config, common::validator()).await.expect("starts");
        let http = kit.client(Transport::Tls);
        Setup {
            kit,
            running,
            http,
            _dir: dir,
        }
    }

    fn base(&self) -> &str {
        &self.running.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn token_url(&self) -> String {
        self.url("/oauth2/token")
    }

    /// Claims of a good access token for the requester, to be spoiled by a test.
    fn access_claims(&self) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": self.base(), "sub": "gp-a81001", "aud": self.base(), "client_id": "gp-a81001",
            "exp": now + 300, "iat": now, "nbf": now, "jti": uuid::Uuid::new_v4().to_string(),
            "scope": "system/ServiceRequest.rs system/Task.rs"
        })
    }

    /// Signed with spbridge's own key.
    fn forge(&self, claims: &Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ec_pem(self.kit.signing_key_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> auth_kit::Reply {
        send(&self.http, Method::GET, &self.url(path), token, None).await
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn assert_unauthorized(reply: &auth_kit::Reply, case: &str, invalid_token: bool) {
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{case}: {}",
        reply.body
    );
    assert_eq!(reply.body["resourceType"], "OperationOutcome", "{case}");
    let code = reply.body["issue"][0]["code"].as_str().unwrap_or("");
    assert!(code == "login" || code == "expired", "{case}: {code}");
    let challenge = reply.header("www-authenticate").unwrap_or("");
    assert!(challenge.starts_with("Bearer "), "{case}: {challenge}");
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        invalid_token,
        "{case}: {challenge}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_that_must_be_refused() {
    let s = Setup::new().await;
    let good = s.kit.token(&s.http, s.base(), &s.kit.requester, None).await;
    let reply = s.get("/Task", Some(&good)).await;
    assert_eq!(reply.status, StatusCode::OK, "good token: {}", reply.body);

    // No token, and an Authorization header of another scheme.
    assert_unauthorized(&s.get("/Task", None).await, "no token", false);
    let basic = hyper::Request::get(s.url("/Task"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_unauthorized(
        &auth_kit::send_raw(&s.http, basic).await,
        "basic auth",
        false,
    );

    let kid = s.kit.signing_kid.clone();
    let mut cases: Vec<(&str, String)> = vec![("malformed", "not.a.jwt".into())];
    cases.push(("garbage", "abc".into()));
    let mut expired = s.access_claims();
    let now = jsonwebtoken::get_current_timestamp();
    expired["exp"] = json!(now - 600);
    expired["iat"] = json!(now - 900);
    expired["nbf"] = json!(now - 900);
    cases.push(("expired", s.forge(&expired, &kid)));
    let mut future = s.access_claims();
    future["nbf"] = json!(now + 600);
    cases.push(("nbf in the future", s.forge(&future, &kid)));
    let mut wrong_aud = s.access_claims();
    wrong_aud["aud"] = json!("https://elsewhere.example/fhir");
    cases.push(("wrong aud", s.forge(&wrong_aud, &kid)));
    let mut wrong_iss = s.access_claims();
    wrong_iss["iss"] = json!("https://evil.example");
    cases.push(("wrong iss", s.forge(&wrong_iss, &kid)));
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&s.access_claims())
    );
    cases.push(("alg none", none));
    // HS256 keyed with the public key (both the JWK JSON and its x coordinate).
    let jwks = send(
        &s.http,
        Method::GET,
        &s.url("/.well-known/jwks.json"),
        None,
        None,
    )
    .await
    .body;
    let public = jwks["keys"][0].to_string();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs,
        &s.access_claims(),
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    cases.push(("HS256 with the public key", hs256));
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("system/*.*");
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    cases.push(("tampered payload", tampered));
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[5] ^= 0x01;
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    cases.push(("flipped signature bit", bad_sig));
    cases.push(("unknown kid", s.forge(&s.access_claims(), "no-such-kid")));
    let mut unknown_client = s.access_claims();
    unknown_client["sub"] = json!("nobody");
    unknown_client["client_id"] = json!("nobody");
    cases.push(("unregistered client", s.forge(&unknown_client, &kid)));
    // A client assertion is no access token (aud = token URL, iss = client).
    cases.push((
        "client assertion as access token",
        s.kit.requester.assertion(&s.token_url()),
    ));
    for (case, token) in &cases {
        let reply = s.get("/Task", Some(token)).await;
        assert_unauthorized(&reply, case, true);
    }
    let expired_reply = s.get("/Task", Some(&cases[2].1)).await;
    assert_eq!(expired_reply.body["issue"][0]["code"], "expired");
    assert!(expired_reply.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("expired"));
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_refusals_are_rfc6749() {
    let s = Setup::new().await;
    let client = &s.kit.requester;
    let token_url = s.token_url();
    let oauth = |reply: &auth_kit::Reply, status: StatusCode, error: &str, case: &str| {
        assert_eq!(reply.status, status, "{case}: {}", reply.body);
        assert_eq!(reply.body["error"], error, "{case}: {}", reply.body);
        assert!(reply.body["error_description"].is_string(), "{case}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{case}");
        assert!(reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json"));
    };

    // Replayed jti: the same assertion twice.
    let assertion = client.assertion(&token_url);
    let first = token_request(&s.http, s.base(), &assertion, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["token_type"], "bearer");
    let again = token_request(&s.http, s.base(), &assertion, None).await;
    oauth(
        &again,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "replayed jti",
    );

    let now = jsonwebtoken::get_current_timestamp();
    let mut far = client.assertion_claims(&token_url);
    far["exp"] = json!(now + 3600);
    let reply = token_request(&s.http, s.base(), &client.sign(&far), None).await;
    oauth(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "exp too far ahead",
    );

    let mut aud = client.assertion_claims(&token_url);
    aud["aud"] = json!("https://elsewhere.example/token");
    let reply = token_request(&s.http, s.base(), &client.sign(&aud), None).await;
    oauth(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "assertion wrong aud",
    );

    let mut sub = client.assertion_claims(&token_url);
    sub["sub"] = json!("someone-else");
    let reply = token_request(&s.http, s.base(), &client.sign(&sub), None).await;
    oauth(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "sub != iss",
    );

    let mut expired = client.assertion_claims(&token_url);
    expired["exp"] = json!(now - 600);
    let reply = token_request(&s.http, s.base(), &client.sign(&expired), None).await;
    oauth(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "expired assertion",
    );

    let mut no_jti = client.assertion_claims(&token_url);
    no_jti.as_object_mut().unwrap().remove("jti");
    let reply = token_request(&s.http, s.base(), &client.sign(&no_jti), None).await;
    oauth(&reply, StatusCode::UNAUTHORIZED, "invalid_client", "no jti");

    // Signed by another client's key while claiming to be this client.
    let mut header = Header::new(s.kit.auditor.alg);
    header.kid = Some(client.kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &client.assertion_claims(&token_url),
        &s.kit.auditor.encoding_key(),
    )
    .unwrap();
    let reply = token_request(&s.http, s.base(), &forged, None).await;
    oauth(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "wrong key",
    );

    let mut unknown = client.assertion_claims(&token_url);
    unknown["iss"] = json!("nobody");
    unknown["sub"] = json!("nobody");
    let reply = token_request(&s.http, s.base(), &client.sign(&unknown), None).await;
    oauth(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "unknown client",
    );

    let reply = token_request(
        &s.http,
        s.base(),
        &client.assertion(&token_url),
        Some("system/AuditEvent.rs"),
    )
    .await;
    oauth(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
        "scope not allowed",
    );

    // Scope intersection: asked for one allowed and one not → only the allowed one.
    let reply = token_request(
        &s.http,
        s.base(),
        &client.assertion(&token_url),
        Some("system/Task.rs system/Task.d"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["scope"], "system/Task.rs");

    // Not a form, wrong grant type.
    let json_body = hyper::Request::post(&token_url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from("{}")))
        .unwrap();
    let reply = auth_kit::send_raw(&s.http, json_body).await;
    oauth(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "json body",
    );
    let form = "grant_type=password&username=a&password=b";
    let request = hyper::Request::post(&token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from(form)))
        .unwrap();
    let reply = auth_kit::send_raw(&s.http, request).await;
    oauth(
        &reply,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        "password grant",
    );

    // An RS384 client works too.
    let narrow = s.kit.token(&s.http, s.base(), &s.kit.narrow, None).await;
    assert_eq!(s.get("/Task", Some(&narrow)).await.status, StatusCode::OK);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_roles_discovery_and_audit() {
    let s = Setup::new().await;
    let requester = s.kit.token(&s.http, s.base(), &s.kit.requester, None).await;
    let narrow = s.kit.token(&s.http, s.base(), &s.kit.narrow, None).await;
    let auditor = s.kit.token(&s.http, s.base(), &s.kit.auditor, None).await;

    // Public paths need no token.
    for path in ["/metadata", "/livez", "/.well-known/smart-configuration"] {
        assert_eq!(s.get(path, None).await.status, StatusCode::OK, "{path}");
    }
    let metadata = s.get("/metadata", None).await.body;
    assert_eq!(
        metadata["rest"][0]["security"]["service"][0]["coding"][0]["code"],
        "SMART-on-FHIR"
    );
    assert_eq!(
        metadata["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
        s.token_url().as_str()
    );
    let smart = s.get("/.well-known/smart-configuration", None).await.body;
    assert_eq!(smart["token_endpoint"], s.token_url().as_str());
    assert!(smart["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES384")));
    let jwks = s.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwks["keys"][0]["kid"], s.kit.signing_kid.as_str());
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");

    // Wrong scope: 403 forbidden with the scope named.
    let referral = common::fixture("referral/servicerequest.json");
    let reply = send(
        &s.http,
        Method::POST,
        &s.url("/ServiceRequest"),
        Some(&narrow),
        Some(&referral),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.body["issue"][0]["code"], "forbidden");
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .contains("insufficient_scope"));
    assert!(reply.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("system/ServiceRequest.c"));
    let reply = s.get("/AuditEvent", Some(&requester)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // The requester may create: the referral is accepted with a token over HTTPS.
    let reply = send(
        &s.http,
        Method::POST,
        &s.url("/ServiceRequest"),
        Some(&requester),
        Some(&referral),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let _ = s.get("/Task", Some("garbage")).await;

    // The auditor sees both successes and failures, with who and outcome; no patient data.
    let reply = s
        .get("/AuditEvent?agent=gp-a81001&_count=100", Some(&auditor))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let events: Vec<&Value> = reply.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let created = events
        .iter()
        .find(|e| e["action"] == "C" && e["outcome"] == "0")
        .expect("the create is audited");
    assert_eq!(created["agent"][1]["who"]["identifier"]["value"], "A81001");
    assert!(created["entity"][0]["what"]["reference"]
        .as_str()
        .unwrap()
        .starts_with("ServiceRequest/"));
    assert!(events.iter().any(|e| e["subtype"][0]["code"] == "token"));
    let failed = s.get("/AuditEvent?outcome=4", Some(&auditor)).await.body;
    let text = failed.to_string();
    assert!(
        text.contains("invalid bearer") || text.contains("token is malformed"),
        "{text}"
    );
    assert!(text.contains("forbidden") || text.contains("missing scope"));
    let all = s
        .get("/AuditEvent?_count=500", Some(&auditor))
        .await
        .body
        .to_string();
    let patient = common::fixture("referral/patient.json");
    let nhs = patient["identifier"][0]["value"].as_str().unwrap();
    let family = patient["name"][0]["family"].as_str().unwrap();
    assert!(!all.contains(nhs), "no NHS number in the audit trail");
    assert!(!all.contains(family), "no patient name in the audit trail");
    let bad = s.get("/AuditEvent?name=x", Some(&auditor)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    s.running.shutdown().await;
}
