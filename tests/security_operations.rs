//! The security layer as operated: two instances sharing one PostgreSQL store (the jti
//! replay cache holds across them), signing-key rotation by `kid`, an external
//! authorisation server's JWK Set (fetched, cached, fetched again on an unknown `kid`),
//! the `spbridge token` command, and no patient data in the logs.

#[path = "support/intake.rs"]
mod common;

use common::auth_kit;

use auth_kit::{send, token_request, AuthKit, Transport};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use spbridge::config::{ExternalIssuerConfig, SigningKeyConfig};
use spbridge::service::start;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_replay_cache_and_the_signing_key() {
    let kit = AuthKit::new();
    let (mut config, schema, _dir) = common::test_config(common::Db::Postgres, &common::amqp_url());
    config.broker.relay_enabled = false;
    config.http.base_url = "https://spbridge.test".into();
    kit.apply(&mut config, Transport::Tls);
    let one = start(config.clone(), common::validator())
        .await
        .expect("one");
    let two = start(config, common::validator()).await.expect("two");
    let http = kit.client(Transport::Tls);
    let at = |r: &spbridge::service::Running| format!("https://{}", r.local_addr);

    let assertion = kit
        .requester
        .assertion("https://spbridge.test/oauth2/token");
    let first = token_request(&http, &at(&one), &assertion, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let replay = token_request(&http, &at(&two), &assertion, None).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    assert_eq!(replay.body["error"], "invalid_client");

    let token = first.body["access_token"].as_str().unwrap();
    let reply = send(
        &http,
        Method::GET,
        &format!("{}/Task", at(&two)),
        Some(token),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    one.shutdown().await;
    two.shutdown().await;
    if let Some(schema) = schema {
        common::drop_schema(&schema).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_signing_keys_keep_verifying_until_removed() {
    let kit = AuthKit::new();
    let (mut config, _schema, _dir) = common::test_config(common::Db::Sqlite, &common::amqp_url());
    config.broker.relay_enabled = false;
    kit.apply(&mut config, Transport::Plain);
    let old_pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let old_path = kit.dir.path().join("old-signing.pem");
    std::fs::write(&old_path, &old_pem).unwrap();
    config.auth.signing_keys.insert(
        0,
        SigningKeyConfig {
            kid: "retired-1".into(),
            alg: "ES256".into(),
            key: old_path,
            active: false,
        },
    );
    let running = start(config, common::validator()).await.expect("starts");
    let base = running.base_url.clone();
    let http = kit.client(Transport::Plain);

    let jwks = send(
        &http,
        Method::GET,
        &format!("{base}/.well-known/jwks.json"),
        None,
        None,
    )
    .await
    .body;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, vec!["retired-1", kit.signing_kid.as_str()]);

    let fresh = kit.token(&http, &base, &kit.requester, None).await;
    let header = jsonwebtoken::decode_header(&fresh).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kit.signing_kid.as_str()));

    // A token signed before the rotation (old key, its kid) is still good.
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": base, "sub": "gp-a81001", "aud": base, "exp": now + 120,
        "iat": now, "nbf": now, "jti": "old-1", "scope": "system/Task.rs"});
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("retired-1".into());
    let old_token = jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(old_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let reply = send(
        &http,
        Method::GET,
        &format!("{base}/Task"),
        Some(&old_token),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Signed by the old key but claiming the new kid: refused.
    h.kid = Some(kit.signing_kid.clone());
    let mixed = jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(old_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let reply = send(
        &http,
        Method::GET,
        &format!("{base}/Task"),
        Some(&mixed),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    running.shutdown().await;
}

/// A tiny authorisation server that only publishes a JWK Set, counting fetches.
async fn jwks_server(set: Arc<Mutex<Value>>, fetches: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let set = set.clone();
            let fetches = fetches.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = set.lock().unwrap().to_string();
                    async move {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                            body,
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/jwks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_issuer_tokens_with_jwks_refresh_on_unknown_kid() {
    let kit = AuthKit::new();
    let idp_key = |_: ()| {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    };
    let key1 = idp_key(());
    let key2 = idp_key(());
    let set = Arc::new(Mutex::new(
        json!({"keys": [auth_kit::public_jwk(&key1, Algorithm::ES256, "idp-1")]}),
    ));
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(set.clone(), fetches.clone()).await;
    let (mut config, _schema, _dir) = common::test_config(common::Db::Sqlite, &common::amqp_url());
    config.broker.relay_enabled = false;
    kit.apply(&mut config, Transport::Plain);
    config.auth.external = Some(ExternalIssuerConfig {
        issuer: "https://idp.test".into(),
        jwks_url: url,
        audience: "https://spbridge.test/fhir".into(),
        min_refresh_secs: 0,
    });
    let running = start(config, common::validator()).await.expect("starts");
    let base = running.base_url.clone();
    let http = kit.client(Transport::Plain);
    let idp_token = |pem: &str, kid: &str, claims: Value| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(
            &h,
            &claims,
            &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |client: &str, scope: &str| {
        json!({"iss": "https://idp.test", "sub": client, "aud": "https://spbridge.test/fhir",
            "exp": now + 120, "iat": now, "scope": scope})
    };
    let get = |token: String| {
        let http = http.clone();
        let url = format!("{base}/Task");
        async move { send(&http, Method::GET, &url, Some(&token), None).await }
    };

    let ok = get(idp_token(
        &key1,
        "idp-1",
        claims("vcs-8kx42", "system/Task.rs"),
    ))
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    let again = get(idp_token(
        &key1,
        "idp-1",
        claims("vcs-8kx42", "system/Task.rs"),
    ))
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached");

    // The IdP rotates: a token with the new kid makes spbridge fetch the set again.
    set.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(auth_kit::public_jwk(&key2, Algorithm::ES256, "idp-2"));
    let rotated = get(idp_token(
        &key2,
        "idp-2",
        claims("vcs-8kx42", "system/Task.rs"),
    ))
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Unknown kid after a refresh, unregistered client, scope beyond the registration,
    // wrong audience: all refused.
    let unknown = get(idp_token(
        &key2,
        "idp-9",
        claims("vcs-8kx42", "system/Task.rs"),
    ))
    .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let stranger = get(idp_token(
        &key1,
        "idp-1",
        claims("stranger", "system/Task.rs"),
    ))
    .await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    let greedy = get(idp_token(
        &key1,
        "idp-1",
        claims("auditor-1", "system/Task.rs"),
    ))
    .await;
    assert_eq!(greedy.status, StatusCode::FORBIDDEN, "{}", greedy.body);
    let mut wrong_aud = claims("vcs-8kx42", "system/Task.rs");
    wrong_aud["aud"] = json!(base);
    let wrong = get(idp_token(&key1, "idp-1", wrong_aud)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    running.shutdown().await;
}

/// Run `spbridge token <args>` off the runtime's worker threads.
async fn token_command(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_spbridge"))
            .arg("token")
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_command_fetches_a_usable_token() {
    let kit = AuthKit::new();
    let (mut config, _schema, _dir) = common::test_config(common::Db::Sqlite, &common::amqp_url());
    config.broker.relay_enabled = false;
    kit.apply(&mut config, Transport::Tls);
    // Register the provider by the key's thumbprint kid, as `--jwks` prints it.
    let jwks = std::process::Command::new(env!("CARGO_BIN_EXE_spbridge"))
        .args(["token", "--jwks", "--key"])
        .arg(&kit.provider.key_path)
        .output()
        .unwrap();
    assert!(jwks.status.success());
    let printed: Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert!(printed["keys"][0].get("d").is_none(), "public part only");
    config.auth.clients[1].jwks = Some(printed.to_string());
    let running = start(config, common::validator()).await.expect("starts");
    let base = running.base_url.clone();
    let output = token_command(&[
        "--client",
        "vcs-8kx42",
        "--url",
        &base,
        "--scope",
        "system/Task.rs",
        "--key",
        kit.provider.key_path.to_str().unwrap(),
        "--ca",
        kit.server_ca_path.to_str().unwrap(),
    ])
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let http = kit.client(Transport::Tls);
    let reply = send(
        &http,
        Method::GET,
        &format!("{base}/Task"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // A wrong key: the command fails with the OAuth error on stderr.
    let output = token_command(&[
        "--client",
        "vcs-8kx42",
        "--url",
        &base,
        "--key",
        kit.requester.key_path.to_str().unwrap(),
        "--ca",
        kit.server_ca_path.to_str().unwrap(),
    ])
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid_client"));
    running.shutdown().await;
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_patient_identifiers_in_logs_or_audit() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();
    let kit = AuthKit::new();
    let (mut config, _schema, _dir) = common::test_config(common::Db::Sqlite, &common::amqp_url());
    config.broker.relay_enabled = false;
    kit.apply(&mut config, Transport::Tls);
    let running = start(config, common::validator()).await.expect("starts");
    let base = running.base_url.clone();
    let http = kit.client(Transport::Tls);
    let token = kit.token(&http, &base, &kit.requester, None).await;
    let bundle = common::fixture("referral-transaction-bundle.json");
    let reply = send(
        &http,
        Method::POST,
        &format!("{base}/"),
        Some(&token),
        Some(&bundle),
    )
    .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    // A failing request carrying patient data too (an invalid NHS number in the query).
    let patient = common::fixture("referral/patient.json");
    let nhs = patient["identifier"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = send(
        &http,
        Method::GET,
        &format!("{base}/ServiceRequest?patient.identifier={nhs}"),
        Some("not-a-token"),
        None,
    )
    .await;
    let auditor = kit.token(&http, &base, &kit.auditor, None).await;
    let audit = send(
        &http,
        Method::GET,
        &format!("{base}/AuditEvent?_count=500"),
        Some(&auditor),
        None,
    )
    .await
    .body
    .to_string();
    running.shutdown().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request"), "logs were captured");
    let family = patient["name"][0]["family"].as_str().unwrap();
    let line = patient["address"][0]["line"][0].as_str().unwrap();
    let postcode = patient["address"][0]["postalCode"].as_str().unwrap();
    for (what, value) in [
        ("NHS number", nhs.as_str()),
        ("family name", family),
        ("address line", line),
        ("postcode", postcode),
    ] {
        assert!(!logs.contains(value), "{what} in the logs");
        assert!(!audit.contains(value), "{what} in the audit trail");
    }
    assert!(!logs.contains(&token), "access token in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_connections_use_tls_when_asked() {
    use sqlx::Connection as _;
    let kit = AuthKit::new();
    let (mut config, schema, _dir) = common::test_config(common::Db::Postgres, &common::amqp_url());
    config.broker.relay_enabled = false;
    let app = format!(
        "spbridge-tls-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    config.store.url = format!(
        "{}?sslmode=require&application_name={app}",
        config.store.url
    );
    kit.apply(&mut config, Transport::Tls);
    let running = start(config, common::validator())
        .await
        .expect("starts over TLS");
    let http = kit.client(Transport::Tls);
    let token = kit
        .token(&http, &running.base_url, &kit.requester, None)
        .await;
    let reply = send(
        &http,
        Method::GET,
        &format!("{}/Task", running.base_url),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut observer = sqlx::PgConnection::connect(&common::postgres_url())
        .await
        .unwrap();
    let (tls, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
    )
    .bind(&app)
    .fetch_one(&mut observer)
    .await
    .unwrap();
    assert!(tls >= 1, "the store's connections are encrypted");
    assert_eq!(plain, 0, "no cleartext store connection");
    running.shutdown().await;
    if let Some(schema) = schema {
        common::drop_schema(&schema).await;
    }
}
