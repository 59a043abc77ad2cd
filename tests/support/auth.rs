//! Test kit for the security layer: throwaway PKI (rcgen) for TLS and mTLS, client and
//! signing keys for SMART Backend Services, client assertions, an HTTPS client, and a
//! one-call token fetch. Reusable by any end-to-end test:
//!
//! ```ignore
//! let kit = AuthKit::new();                  // keys + PKI in a temp dir
//! kit.apply(&mut config, Transport::Tls);    // [auth] + [tls] fragments
//! let running = start(config, validator).await?;
//! let http = kit.client(Transport::Tls);
//! let token = kit.token(&http, &running.base_url, &kit.requester, None).await;
//! let answer = send(&http, Method::GET, &url, Some(&token), None).await;
//! ```
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use spbridge::config::{AuthClientConfig, Config, SigningKeyConfig};
use std::path::PathBuf;
use std::sync::Arc;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Plain HTTP or HTTPS (optionally with client certificates required).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
    MutualTls,
}

/// A certificate authority and what it signed.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate (PEM chain = leaf, PEM key).
    pub fn leaf(&self, names: &[&str], client: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// One registered client of the test configuration.
pub struct TestClient {
    pub client_id: String,
    pub kid: String,
    pub alg: Algorithm,
    pub key_pem: String,
    pub key_path: PathBuf,
    pub config: AuthClientConfig,
}

impl TestClient {
    fn new(
        dir: &std::path::Path,
        client_id: &str,
        organisation: &str,
        role: &str,
        provider_id: Option<&str>,
        scopes: &[&str],
        alg: Algorithm,
    ) -> TestClient {
        let kid = format!("{client_id}-key-1");
        let key_pem = match alg {
            Algorithm::ES256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .unwrap()
                .serialize_pem(),
            Algorithm::ES384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
                .unwrap()
                .serialize_pem(),
            _ => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap()
                .serialize_pem(),
        };
        let jwk = public_jwk(&key_pem, alg, &kid);
        let key_path = dir.join(format!("{client_id}.key.pem"));
        std::fs::write(&key_path, &key_pem).unwrap();
        TestClient {
            client_id: client_id.into(),
            kid,
            alg,
            key_pem,
            key_path,
            config: AuthClientConfig {
                client_id: client_id.into(),
                organisation: organisation.into(),
                role: role.into(),
                provider_id: provider_id.map(str::to_string),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                jwks: Some(json!({"keys": [jwk]}).to_string()),
                jwks_file: None,
            },
        }
    }

    pub fn encoding_key(&self) -> EncodingKey {
        encoding_key(&self.key_pem, self.alg)
    }

    /// Claims of a good client assertion for `token_url`, to be changed by a test.
    pub fn assertion_claims(&self, token_url: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": self.client_id, "sub": self.client_id, "aud": token_url,
            "exp": now + 240, "iat": now, "jti": uuid::Uuid::new_v4().to_string()
        })
    }

    /// A signed client assertion with these claims (header: this client's alg and kid).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// A good client assertion.
    pub fn assertion(&self, token_url: &str) -> String {
        self.sign(&self.assertion_claims(token_url))
    }
}

pub fn encoding_key(pem: &str, alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    }
}

/// The public JWK (with kid and alg) of a PEM private key.
pub fn public_jwk(pem: &str, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(pem, alg), alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

/// Keys, clients and PKI for one test, in a temp dir.
pub struct AuthKit {
    pub dir: tempfile::TempDir,
    /// spbridge's own signing key (ES256, kid `spbridge-test-1`).
    pub signing_key_pem: String,
    pub signing_kid: String,
    /// GP practice A81001, requester: ServiceRequest.c/.rs, Task.rs/.u (to cancel), Subscription.c/.rs and read
    /// access to the resources a referral carries (Patient, Organization, Practitioner…).
    pub requester: TestClient,
    /// VCS provider 8KX42 (provider id `8kx42`): ServiceRequest.rs, Task.rs/.u.
    pub provider: TestClient,
    /// Auditor: AuditEvent.rs.
    pub auditor: TestClient,
    /// A requester registered with RS384 keys and only `system/Task.rs`.
    pub narrow: TestClient,
    pub server_ca: TestCa,
    pub client_ca: TestCa,
    pub other_ca: TestCa,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub server_ca_path: PathBuf,
    pub client_ca_path: PathBuf,
}

impl AuthKit {
    pub fn new() -> AuthKit {
        let dir = tempfile::tempdir().unwrap();
        let signing_key_pem = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        std::fs::write(dir.path().join("signing.pem"), &signing_key_pem).unwrap();
        let requester = TestClient::new(
            dir.path(),
            "gp-a81001",
            "A81001",
            "requester",
            None,
            &[
                "system/ServiceRequest.c",
                "system/ServiceRequest.rs",
                "system/Task.rs",
                "system/Subscription.c",
                "system/Subscription.rs",
                // To cancel its own referrals' Tasks.
                "system/Task.u",
                "system/Patient.rs",
                "system/Organization.rs",
                "system/Practitioner.rs",
                "system/PractitionerRole.rs",
                "system/HealthcareService.rs",
            ],
            Algorithm::ES256,
        );
        let provider = TestClient::new(
            dir.path(),
            "vcs-8kx42",
            "8KX42",
            "provider",
            Some("8kx42"),
            &[
                "system/ServiceRequest.rs",
                "system/Task.rs",
                "system/Task.u",
            ],
            Algorithm::ES384,
        );
        let auditor = TestClient::new(
            dir.path(),
            "auditor-1",
            "X26",
            "auditor",
            None,
            &["system/AuditEvent.rs"],
            Algorithm::ES256,
        );
        let narrow = TestClient::new(
            dir.path(),
            "gp-narrow",
            "B82002",
            "requester",
            None,
            &["system/Task.rs"],
            Algorithm::RS384,
        );
        let server_ca = TestCa::new("spbridge test server CA");
        let client_ca = TestCa::new("spbridge test client CA");
        let other_ca = TestCa::new("some other CA");
        let (cert, key) = server_ca.leaf(&["localhost", "127.0.0.1"], false);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let server_cert = write("server.crt", &cert);
        let server_key = write("server.key", &key);
        let server_ca_path = write("server-ca.crt", &server_ca.cert_pem);
        let client_ca_path = write("client-ca.crt", &client_ca.cert_pem);
        AuthKit {
            signing_key_pem,
            signing_kid: "spbridge-test-1".into(),
            requester,
            provider,
            auditor,
            narrow,
            server_ca,
            client_ca,
            other_ca,
            server_cert,
            server_key,
            server_ca_path,
            client_ca_path,
            dir,
        }
    }

    /// Turn on `[auth]` (all four clients, one signing key) and `[tls]` as asked.
    pub fn apply(&self, config: &mut Config, transport: Transport) {
        config.auth.enabled = true;
        config.auth.signing_keys = vec![SigningKeyConfig {
            kid: self.signing_kid.clone(),
            alg: "ES256".into(),
            key: self.dir.path().join("signing.pem"),
            active: true,
        }];
        config.auth.clients = vec![
            self.requester.config.clone(),
            self.provider.config.clone(),
            self.auditor.config.clone(),
            self.narrow.config.clone(),
        ];
        config.tls.enabled = transport != Transport::Plain;
        config.tls.cert = Some(self.server_cert.clone());
        config.tls.key = Some(self.server_key.clone());
        config.tls.client_ca =
            (transport == Transport::MutualTls).then(|| self.client_ca_path.clone());
    }

    /// rustls client configuration trusting the test server CA, with an optional client
    /// certificate (PEM chain, PEM key) and ALPN protocols.
    pub fn rustls_client(
        &self,
        client_cert: Option<(&str, &str)>,
        alpn: &[&[u8]],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.server_ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client_cert {
            Some((chain, key)) => {
                let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// An HTTP client for the transport (HTTP/2 preferred over TLS; mTLS with a client
    /// certificate from the test client CA).
    pub fn client(&self, transport: Transport) -> HttpsClient {
        let cert = (transport == Transport::MutualTls)
            .then(|| self.client_ca.leaf(&["gp-a81001.test"], true));
        // hyper-rustls sets ALPN (h2, http/1.1) itself.
        let tls = self.rustls_client(cert.as_ref().map(|(c, k)| (c.as_str(), k.as_str())), &[]);
        https_client(tls, true)
    }

    /// Fetch an access token for `client` from the running service at `base`.
    pub async fn token(
        &self,
        http: &HttpsClient,
        base: &str,
        client: &TestClient,
        scope: Option<&str>,
    ) -> String {
        let answer = token_request(
            http,
            base,
            &client.assertion(&format!("{base}/oauth2/token")),
            scope,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "token: {}", answer.body);
        answer.body["access_token"].as_str().unwrap().to_string()
    }
}

impl Default for AuthKit {
    fn default() -> Self {
        AuthKit::new()
    }
}

/// An HTTP(S) client from a rustls configuration; `h2` = offer HTTP/2 too.
pub fn https_client(tls: rustls::ClientConfig, h2: bool) -> HttpsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if h2 {
        builder.enable_all_versions().build()
    } else {
        builder.enable_http1().build()
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// What came back.
pub struct Reply {
    pub status: StatusCode,
    pub version: hyper::Version,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Send a request, optionally with a bearer token and a FHIR JSON body.
pub async fn send(
    http: &HttpsClient,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(b) => {
            builder = builder.header("content-type", "application/fhir+json");
            Full::new(Bytes::from(b.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    send_raw(http, builder.body(body).unwrap()).await
}

pub async fn send_raw(http: &HttpsClient, request: Request<Full<Bytes>>) -> Reply {
    let response = http.request(request).await.expect("request sent");
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    Reply {
        status,
        version,
        headers,
        body,
    }
}

/// `POST /oauth2/token` with a client assertion.
pub async fn token_request(
    http: &HttpsClient,
    base: &str,
    assertion: &str,
    scope: Option<&str>,
) -> Reply {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_assertion", assertion);
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let request = Request::post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(form.finish())))
        .unwrap();
    send_raw(http, request).await
}

/// `SPBRIDGE_TEST_SECURITY` = `tls` | `mtls` | `auth` (tokens over plain HTTP): lets a whole
/// end-to-end suite run with the security layer on; unset = off.
pub fn transport_from_env() -> Option<Transport> {
    match std::env::var("SPBRIDGE_TEST_SECURITY").ok()?.as_str() {
        "tls" => Some(Transport::Tls),
        "mtls" => Some(Transport::MutualTls),
        "auth" => Some(Transport::Plain),
        _ => None,
    }
}

/// The security layer for a Harness-style end-to-end test:
///
/// ```ignore
/// let kit = AuthKit::new();
/// kit.apply(&mut config, transport);          // before service::start
/// let running = start(config, validator).await?;
/// let secure = Secure::connect(kit, transport, &running.base_url).await;
/// secure.authorize(&mut request);             // Bearer <requester token> unless set
/// let response = secure.http.request(request).await?;
/// ```
pub struct Secure {
    pub kit: AuthKit,
    /// Speaks HTTP and HTTPS (with a client certificate under mTLS).
    pub http: HttpsClient,
    /// Requester (gp-a81001), provider (vcs-8kx42) and auditor (auditor-1) tokens.
    pub requester: String,
    pub provider: String,
    pub auditor: String,
}

impl Secure {
    pub async fn connect(kit: AuthKit, transport: Transport, base: &str) -> Secure {
        let http = kit.client(transport);
        let requester = kit.token(&http, base, &kit.requester, None).await;
        let provider = kit.token(&http, base, &kit.provider, None).await;
        let auditor = kit.token(&http, base, &kit.auditor, None).await;
        Secure {
            kit,
            http,
            requester,
            provider,
            auditor,
        }
    }

    /// Add `Authorization: Bearer <requester token>` unless the request has one.
    pub fn authorize(&self, request: &mut Request<Full<Bytes>>) {
        self.authorize_as(request, &self.requester.clone());
    }

    pub fn authorize_as(&self, request: &mut Request<Full<Bytes>>, token: &str) {
        if !request.headers().contains_key("authorization") {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
    }
}
