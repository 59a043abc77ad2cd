//! The same storage suite against SQLite and PostgreSQL: versions and history,
//! If-Match conflicts, idempotency keys (nothing written on a duplicate),
//! searches, and outbox leases.

#[path = "support/intake.rs"]
mod common;

use common::{drop_schema, test_config, Db};
use serde_json::json;
use spbridge::store::{
    CommitOutcome, IdempotencyClaim, NewOutboxMessage, ResourceWrite, SearchQuery, Store,
    StoreError, TimeBound, WriteUnit,
};

async fn open(db: Db) -> (Store, Option<String>, Option<tempfile::TempDir>) {
    let (config, schema, dir) = test_config(db, common::DEAD_AMQP_URL);
    (Store::connect(&config.store).await.unwrap(), schema, dir)
}

fn write(rtype: &str, id: &str, body: serde_json::Value) -> ResourceWrite {
    ResourceWrite {
        resource_type: rtype.into(),
        id: id.into(),
        resource: body,
        if_match: None,
    }
}

fn message(id: &str) -> NewOutboxMessage {
    NewOutboxMessage {
        id: id.into(),
        destination: "referrals".into(),
        routing_key: "provider.x".into(),
        message_type: "servicerequest-request".into(),
        content_type: "application/fhir+json".into(),
        profile: None,
        body: "{}".into(),
        correlation_id: Some("c".into()),
        traceparent: None,
        tracestate: None,
    }
}

async fn suite(db: Db) {
    let (store, schema, _dir) = open(db).await;

    // Versions and history.
    let unit = |status: &str| WriteUnit {
        writes: vec![write(
            "Task",
            "t1",
            json!({"resourceType": "Task", "status": status,
            "basedOn": [{"reference": "ServiceRequest/s1"}]}),
        )],
        ..Default::default()
    };
    let CommitOutcome::Committed(v1) = store.commit(unit("requested")).await.unwrap() else {
        panic!()
    };
    assert_eq!(v1[0].version_id, 1);
    assert_eq!(v1[0].resource["meta"]["versionId"], "1");
    let CommitOutcome::Committed(v2) = store.commit(unit("received")).await.unwrap() else {
        panic!()
    };
    assert_eq!(v2[0].version_id, 2);
    let history = store.history("Task", "t1").await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.version_id).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(
        store
            .read_version("Task", "t1", 1)
            .await
            .unwrap()
            .unwrap()
            .resource["status"],
        "requested"
    );
    assert_eq!(
        store.read("Task", "t1").await.unwrap().unwrap().resource["status"],
        "received"
    );

    // If-Match on a stale version.
    let mut stale = unit("accepted");
    stale.writes[0].if_match = Some(1);
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::VersionConflict(_))
    ));

    // Searches follow the current version only.
    let q = |param: &str, value: &str| SearchQuery {
        params: vec![(param.into(), vec![value.into()])],
        count: 10,
        ..Default::default()
    };
    assert_eq!(
        store
            .search("Task", &q("status", "received"))
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        store
            .search("Task", &q("status", "requested"))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        store
            .search("Task", &q("based-on", "ServiceRequest/s1"))
            .await
            .unwrap()
            .total,
        1
    );
    let mut future = q("status", "received");
    future.last_updated = vec![TimeBound::Gt(v2[0].last_updated)];
    assert_eq!(store.search("Task", &future).await.unwrap().total, 0);

    // Idempotency: the second claimant writes nothing and gets the first refs.
    let claimed = |id: &str, out: &str| WriteUnit {
        writes: vec![write(
            "ServiceRequest",
            id,
            json!({"resourceType": "ServiceRequest"}),
        )],
        idempotency: vec![IdempotencyClaim {
            key: "k1".into(),
            refs: json!({"serviceRequest": id}),
        }],
        outbox: vec![message(out)],
        ..Default::default()
    };
    assert!(matches!(
        store.commit(claimed("s1", "m1")).await.unwrap(),
        CommitOutcome::Committed(_)
    ));
    match store.commit(claimed("s2", "m2")).await.unwrap() {
        CommitOutcome::Duplicate { refs, .. } => assert_eq!(refs["serviceRequest"], "s1"),
        other => panic!("{other:?}"),
    }
    assert!(store.read("ServiceRequest", "s2").await.unwrap().is_none());
    assert_eq!(store.outbox_stats().await.unwrap().pending, 1);

    // Outbox leases: two owners never hold the same row.
    store
        .commit(WriteUnit {
            outbox: vec![message("m3"), message("m4")],
            ..Default::default()
        })
        .await
        .unwrap();
    let a = store.claim_outbox("a", 2, 30_000).await.unwrap();
    let b = store.claim_outbox("b", 10, 30_000).await.unwrap();
    assert_eq!(
        a.iter().map(|r| r.message.id.as_str()).collect::<Vec<_>>(),
        vec!["m1", "m3"]
    );
    assert_eq!(
        b.iter().map(|r| r.message.id.as_str()).collect::<Vec<_>>(),
        vec!["m4"]
    );
    assert!(store
        .claim_outbox("c", 10, 30_000)
        .await
        .unwrap()
        .is_empty());
    // Only the lease holder can mark a row sent.
    assert_eq!(
        store.mark_outbox_sent(&["m4".into()], "a").await.unwrap(),
        0
    );
    assert_eq!(
        store
            .mark_outbox_sent(&["m1".into(), "m3".into()], "a")
            .await
            .unwrap(),
        2
    );
    // A rescheduled row waits for its delay; a released one is available at once.
    store
        .reschedule_outbox("m4", "b", 60_000, "nacked")
        .await
        .unwrap();
    assert!(store
        .claim_outbox("c", 10, 30_000)
        .await
        .unwrap()
        .is_empty());
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!(stats.pending, 1);
    store.close().await;
    if let Some(schema) = schema {
        drop_schema(&schema).await;
    }
}

#[tokio::test]
async fn store_suite_sqlite() {
    suite(Db::Sqlite).await;
}

#[tokio::test]
async fn store_suite_postgres() {
    suite(Db::Postgres).await;
}

/// PostgreSQL over TLS, configured in the store URL as libpq does (`sslmode`, `sslrootcert`):
/// with the server's CA the store connects and its connections are encrypted (checked in
/// `pg_stat_ssl`); with another CA it refuses to connect. Needs a server with `ssl = on` and
/// its certificate's CA in `SPBRIDGE_TEST_POSTGRES_CA` (default: Debian's snakeoil
/// certificate, which Debian's PostgreSQL serves); says so and returns when the server has
/// TLS off.
#[tokio::test]
async fn postgres_over_tls_verifies_the_server_certificate() {
    use sqlx::Connection;
    let plain = common::postgres_url();
    let mut admin = sqlx::PgConnection::connect(&plain).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if ssl != "on" {
        eprintln!("skipped: the test PostgreSQL server has ssl = off");
        return;
    }
    let ca = std::env::var("SPBRIDGE_TEST_POSTGRES_CA")
        .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".into());
    // The snakeoil certificate names `localhost`: verify the name too.
    let base = plain.replace("127.0.0.1", "localhost");
    let sep = if base.contains('?') { '&' } else { '?' };
    let app = format!(
        "spbt-tls-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (mut config, schema, _dir) = test_config(Db::Postgres, common::DEAD_AMQP_URL);
    config.store.url =
        format!("{base}{sep}sslmode=verify-full&sslrootcert={ca}&application_name={app}");
    let store = Store::connect(&config.store)
        .await
        .expect("TLS store connects");
    store.ping().await.unwrap();
    let encrypted: Vec<bool> = sqlx::query_scalar(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = $1",
    )
    .bind(&app)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!encrypted.is_empty(), "the store's connections are listed");
    assert!(
        encrypted.iter().all(|s| *s),
        "every store connection is TLS"
    );
    store.close().await;

    // A CA that did not sign the server's certificate: no connection.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(
        &other_ca,
        common::auth_kit::TestCa::new("not the server's CA").cert_pem,
    )
    .unwrap();
    config.store.url = format!(
        "{base}{sep}sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    );
    assert!(Store::connect(&config.store).await.is_err());
    if let Some(schema) = schema {
        drop_schema(&schema).await;
    }
}
