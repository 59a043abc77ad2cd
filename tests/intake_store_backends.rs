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
use sqlx::Connection;

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
    // References: by `Type/id`, by bare id (looked for as each target type), ServiceRequest
    // `patient` through its `subject`, and a logical reference by identifier.
    let CommitOutcome::Committed(_) = store
        .commit(WriteUnit {
            writes: vec![write(
                "ServiceRequest",
                "sr-refs",
                json!({"resourceType": "ServiceRequest", "status": "active",
                    "subject": {"reference": "Patient/p9"},
                    "requester": {"reference": "https://gp.example/fhir/PractitionerRole/r9"},
                    "performer": [{"identifier": {"system": "https://ods", "value": "X9"}}]}),
            )],
            ..Default::default()
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    for (param, value, expected) in [
        ("patient", "p9", 1),
        ("patient", "Patient/p9", 1),
        ("patient", "p8", 0),
        ("subject", "p9", 1),
        ("subject", "Group/p9", 0),
        ("requester", "r9", 1),
        ("requester", "PractitionerRole/r9", 1),
        ("performer", "X9", 1),
        ("performer", "https://ods|X9", 1),
    ] {
        let found = store
            .search("ServiceRequest", &q(param, value))
            .await
            .unwrap();
        assert_eq!(found.total, expected, "ServiceRequest?{param}={value}");
    }
    let mut many = store
        .read_many(&[
            ("ServiceRequest".into(), "sr-refs".into()),
            ("Task".into(), "t1".into()),
            ("Patient".into(), "absent".into()),
        ])
        .await
        .unwrap();
    many.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        many.iter().map(|r| r.reference()).collect::<Vec<_>>(),
        vec!["ServiceRequest/sr-refs", "Task/t1"]
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

    // The relay's call: mark what the broker confirmed sent and lease the next rows, at once;
    // a leased row comes back whole (every column, optional ones included, and its body).
    let mut m6 = message("m6");
    m6.profile = Some("https://example.org/profile".into());
    m6.correlation_id = None;
    m6.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    m6.tracestate = Some("vendor=\"quoted\", other=1".into());
    m6.body = "{\"resourceType\":\"Bundle\"}".into();
    store
        .commit(WriteUnit {
            outbox: vec![message("m5"), m6.clone(), message("m7")],
            ..Default::default()
        })
        .await
        .unwrap();
    let first = store
        .mark_sent_and_claim(&[], "d", 1, 30_000)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].message, message("m5"));
    assert_eq!(first[0].attempts, 0);
    let next = store
        .mark_sent_and_claim(&["m5".into()], "d", 5, 30_000)
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|r| &r.message).collect::<Vec<_>>(),
        vec![&m6, &message("m7")]
    );
    // m5 is sent; m4 (rescheduled), m6 and m7 (leased) are still pending.
    assert_eq!(store.outbox_stats().await.unwrap().pending, 3);
    store.close().await;
    if let Some(schema) = schema {
        drop_schema(&schema).await;
    }
}

/// Concurrent commits share transactions (group commit) and each still gets the outcome
/// it would have had alone: one winner per idempotency key (the loser gets the winner's
/// refs and writes nothing, its other keys free again), `If-Match` conflicts refused
/// without their keys, and a unit that fails in the database (an outbox id already
/// used) fails alone while its batch-mates commit.
async fn group_commit_suite(db: Db) {
    let (store, schema, _dir) = open(db).await;
    let referral = |n: usize, key: String, extra_key: Option<String>, outbox_id: String| {
        let mut idempotency = vec![IdempotencyClaim {
            key,
            refs: json!({"serviceRequest": format!("ServiceRequest/s{n}")}),
        }];
        idempotency.extend(extra_key.map(|key| IdempotencyClaim {
            key,
            refs: json!({"serviceRequest": format!("ServiceRequest/s{n}")}),
        }));
        WriteUnit {
            writes: vec![
                write(
                    "ServiceRequest",
                    &format!("s{n}"),
                    json!({"resourceType": "ServiceRequest", "status": "active",
                           "identifier": [{"system": "urn:test", "value": format!("v{n}")}]}),
                ),
                write(
                    "Task",
                    &format!("t{n}"),
                    json!({"resourceType": "Task", "status": "requested",
                           "basedOn": [{"reference": format!("ServiceRequest/s{n}")}]}),
                ),
            ],
            idempotency,
            outbox: vec![message(&outbox_id)],
            ..Default::default()
        }
    };
    // 300 referrals at once: 0..200 with fresh keys; 200..300 reuse the keys of 0..100
    // (each also claims a fresh second key, which must be given back).
    let before = store.writer_stats();
    let commits = (0..300).map(|n| {
        let store = store.clone();
        let (key, extra) = if n < 200 {
            (format!("key-{n}"), None)
        } else {
            (format!("key-{}", n - 200), Some(format!("extra-{n}")))
        };
        let unit = referral(n, key, extra, format!("out-{n}"));
        async move { store.commit(unit).await }
    });
    let outcomes = futures_util::future::join_all(commits).await;
    let after = store.writer_stats();
    assert!(
        after.batches - before.batches < 100,
        "300 concurrent commits were written in {} transactions: not grouped",
        after.batches - before.batches
    );
    for (n, outcome) in outcomes.iter().enumerate() {
        match (n < 200, outcome) {
            (true, Ok(CommitOutcome::Committed(stored))) => {
                assert_eq!(stored.len(), 2);
                assert_eq!(stored[0].id, format!("s{n}"));
                assert_eq!(stored[1].version_id, 1);
                assert_eq!(stored[1].resource["meta"]["versionId"], "1");
            }
            (false, Ok(CommitOutcome::Duplicate { key, refs })) => {
                assert_eq!(key, &format!("key-{}", n - 200));
                assert_eq!(
                    refs["serviceRequest"],
                    format!("ServiceRequest/s{}", n - 200)
                );
            }
            (_, other) => panic!("referral {n}: {other:?}"),
        }
    }
    for n in [0, 150, 199] {
        assert!(store
            .read("Task", &format!("t{n}"))
            .await
            .unwrap()
            .is_some());
    }
    for n in [200, 250, 299] {
        assert!(store
            .read("ServiceRequest", &format!("s{n}"))
            .await
            .unwrap()
            .is_none());
        // The duplicate's second key was given back: claiming it now succeeds.
        let again = referral(n, format!("extra-{n}"), None, format!("again-{n}"));
        assert!(matches!(
            store.commit(again).await.unwrap(),
            CommitOutcome::Committed(_)
        ));
    }
    assert_eq!(store.outbox_stats().await.unwrap().pending, 203);
    let search = |param: &str, value: &str| SearchQuery {
        params: vec![(param.into(), vec![value.into()])],
        count: 10,
        ..Default::default()
    };
    assert_eq!(
        store
            .search("Task", &search("based-on", "ServiceRequest/s42"))
            .await
            .unwrap()
            .total,
        1
    );

    // Updates at once: even Tasks with the right If-Match, odd ones with a stale one; plus
    // a unit whose outbox id is already taken (a database error) among them.
    let updates = (0..40).map(|n| {
        let store = store.clone();
        let mut unit = WriteUnit {
            writes: vec![write(
                "Task",
                &format!("t{n}"),
                json!({"resourceType": "Task", "status": "accepted",
                       "basedOn": [{"reference": format!("ServiceRequest/s{n}")}]}),
            )],
            idempotency: vec![IdempotencyClaim {
                key: format!("update-{n}"),
                refs: json!({}),
            }],
            outbox: vec![message(&format!("update-out-{n}"))],
            ..Default::default()
        };
        unit.writes[0].if_match = Some(if n % 2 == 0 { 1 } else { 7 });
        if n == 10 {
            unit.outbox = vec![message("out-3")];
        }
        async move { store.commit(unit).await }
    });
    let outcomes = futures_util::future::join_all(updates).await;
    for (n, outcome) in outcomes.iter().enumerate() {
        let task = store.read("Task", &format!("t{n}")).await.unwrap().unwrap();
        match (n, outcome) {
            (10, Err(StoreError::Database(_))) => assert_eq!(task.version_id, 1),
            (n, Ok(CommitOutcome::Committed(stored))) if n % 2 == 0 && n != 10 => {
                assert_eq!(stored[0].version_id, 2);
                assert_eq!(task.version_id, 2);
                assert_eq!(task.resource["status"], "accepted");
            }
            (n, Err(StoreError::VersionConflict(_))) if n % 2 == 1 => {
                assert_eq!(task.version_id, 1);
                assert!(store
                    .idempotency_refs(&format!("update-{n}"))
                    .await
                    .unwrap()
                    .is_none());
            }
            (n, other) => panic!("update {n}: {other:?}"),
        }
    }
    // The search index follows the new versions and nothing else.
    assert_eq!(
        store
            .search("Task", &search("status", "accepted"))
            .await
            .unwrap()
            .total,
        19
    );
    assert_eq!(store.history("Task", "t4").await.unwrap().len(), 2);
    assert_eq!(store.outbox_stats().await.unwrap().pending, 203 + 19);
    store.close().await;
    if let Some(schema) = schema {
        drop_schema(&schema).await;
    }
}

#[tokio::test]
async fn group_commit_sqlite() {
    group_commit_suite(Db::Sqlite).await;
}

#[tokio::test]
async fn group_commit_postgres() {
    group_commit_suite(Db::Postgres).await;
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

/// SQLite: the write-ahead log is copied into the database file beside the writer, soon
/// after writes (`store::checkpoint`). The writer's own automatic checkpoint waits for
/// 16,384 pages (64 MiB), so without the background checkpoints the database file would
/// not grow at all here: every page written would still be in the log.
#[tokio::test]
async fn sqlite_log_is_checkpointed_beside_the_writer() {
    let (store, _schema, dir) = open(Db::Sqlite).await;
    let dir = dir.expect("an SQLite store has a directory");
    let database = dir.path().join("spbridge.db");
    let size = || std::fs::metadata(&database).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let filler = "x".repeat(2_000);
    let units = (0..400).map(|n| {
        let store = store.clone();
        let unit = WriteUnit {
            writes: vec![write(
                "Task",
                &format!("ck{n}"),
                json!({"resourceType": "Task", "status": "requested", "note": [{"text": filler}]}),
            )],
            ..Default::default()
        };
        async move { store.commit(unit).await }
    });
    for outcome in futures_util::future::join_all(units).await {
        assert!(matches!(outcome.unwrap(), CommitOutcome::Committed(_)));
    }
    // 400 Tasks of about 2 kB, each in the current table and in history: well over 1 MB.
    let mut grew = 0;
    for _ in 0..100 {
        grew = size().saturating_sub(before);
        if grew > 1_000_000 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        grew > 1_000_000,
        "the database file grew {grew} bytes; the log was not checkpointed"
    );
    store.close().await;
}

/// An in-memory SQLite database would lose every accepted referral when the process stops:
/// refused at start-up with a message that names the setting, for every way of asking.
#[tokio::test]
async fn sqlite_in_memory_is_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://?mode=memory",
    ] {
        let (mut config, _, _dir) = test_config(Db::Sqlite, common::DEAD_AMQP_URL);
        config.store.url = url.into();
        match Store::connect(&config.store).await {
            Err(StoreError::Config(message)) => {
                assert!(message.contains("store.url"), "{url}: {message}")
            }
            other => panic!("{url}: expected a configuration error, got {other:?}"),
        }
    }
}

/// A PostgreSQL connection whose search path is `schema` (created first when `create`).
async fn connect_in_schema(schema: &str, create: bool) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&common::postgres_url())
        .await
        .unwrap();
    if create {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET search_path TO \"{schema}\""
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// A database written before content was stored once (migrations up to "outbox bodies",
/// content in both `resources` and `resource_history`) is upgraded at start-up: every
/// current version reads back as it was, a current version missing from the history is
/// copied there first, and `resources` holds no content afterwards, so a new write stores
/// its content in the history alone.
async fn upgrade_suite(db: Db) {
    let (config, schema, dir) = test_config(db, common::DEAD_AMQP_URL);
    let (folder, before) = match db {
        Db::Sqlite => ("migrations/sqlite", 6),
        Db::Postgres => ("migrations/postgres", 5),
    };
    // The migrations as they were: a copy of the folder without the later files.
    let old = tempfile::tempdir().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names.iter().take(before) {
        std::fs::copy(format!("{folder}/{name}"), old.path().join(name)).unwrap();
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
    let old_rows = [
        // Patient p1 at version 2, both versions in the history.
        "INSERT INTO resources (resource_type, id, version_id, last_updated, content) \
         VALUES ('Patient', 'p1', 2, 20, '{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"female\"}')",
        "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content) \
         VALUES ('Patient', 'p1', 1, 10, '{\"resourceType\":\"Patient\",\"id\":\"p1\"}')",
        "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content) \
         VALUES ('Patient', 'p1', 2, 20, '{\"resourceType\":\"Patient\",\"id\":\"p1\",\"gender\":\"female\"}')",
        // Organization o1 with no history row at all.
        "INSERT INTO resources (resource_type, id, version_id, last_updated, content) \
         VALUES ('Organization', 'o1', 1, 30, '{\"resourceType\":\"Organization\",\"id\":\"o1\",\"name\":\"Hub\"}')",
    ];
    match db {
        Db::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = config
                .store
                .url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap();
            let pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
                .await
                .unwrap();
            migrator.run(&pool).await.unwrap();
            for sql in old_rows {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Db::Postgres => {
            let schema = schema.clone().unwrap();
            let mut conn = connect_in_schema(&schema, true).await;
            migrator.run(&mut conn).await.unwrap();
            for sql in old_rows {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    let store = Store::connect(&config.store).await.unwrap();
    let p1 = store.read("Patient", "p1").await.unwrap().unwrap();
    assert_eq!((p1.version_id, p1.last_updated), (2, 20));
    assert_eq!(p1.resource["gender"], "female");
    let history = store.history("Patient", "p1").await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.version_id).collect::<Vec<_>>(),
        vec![2, 1]
    );
    let o1 = store.read("Organization", "o1").await.unwrap().unwrap();
    assert_eq!(o1.resource["name"], "Hub");
    let o1_v1 = store.read_version("Organization", "o1", 1).await.unwrap();
    assert_eq!(o1_v1.unwrap().resource["name"], "Hub");

    // A write after the upgrade: read back, current and in the history.
    let unit = WriteUnit {
        writes: vec![ResourceWrite {
            if_match: Some(1),
            ..write("Organization", "o1", json!({"name": "Hub 2"}))
        }],
        ..Default::default()
    };
    assert!(matches!(
        store.commit(unit).await.unwrap(),
        CommitOutcome::Committed(_)
    ));
    let o1 = store.read("Organization", "o1").await.unwrap().unwrap();
    assert_eq!((o1.version_id, &o1.resource["name"]), (2, &json!("Hub 2")));
    let found = store
        .read_many(&[
            ("Organization".into(), "o1".into()),
            ("Patient".into(), "p1".into()),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    store.close().await;

    // No content column is left in `resources`.
    let columns = "SELECT COUNT(*) FROM resources WHERE content IS NULL";
    let content_gone = match db {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&config.store.url).await.unwrap();
            let gone = sqlx::query(columns).fetch_one(&pool).await.is_err();
            pool.close().await;
            gone
        }
        Db::Postgres => {
            let mut conn = connect_in_schema(&schema.clone().unwrap(), false).await;
            sqlx::query(columns).fetch_one(&mut conn).await.is_err()
        }
    };
    assert!(content_gone, "resources still has a content column");
    if let Some(schema) = schema {
        drop_schema(&schema).await;
    }
    drop(dir);
}

#[tokio::test]
async fn older_sqlite_database_is_upgraded_to_content_stored_once() {
    upgrade_suite(Db::Sqlite).await;
}

#[tokio::test]
async fn older_postgres_database_is_upgraded_to_content_stored_once() {
    upgrade_suite(Db::Postgres).await;
}

/// PostgreSQL: the relay's claims leave no trail of sent rows for the next claim to read.
/// A sent row's entry stays in the unsent partial index until VACUUM; claims find due rows
/// by walking that index, which marks such entries dead as it passes. (With the bitmap scan
/// the planner chose on a table without statistics, every claim read every row ever sent,
/// and nothing marked them: a later scan of the index read all 3,000 rows' pages again.)
#[tokio::test]
async fn claims_leave_sent_rows_behind_them_postgres() {
    let (store, schema, _dir) = open(Db::Postgres).await;
    let schema = schema.unwrap();
    let rows = 3_000;
    let unit = WriteUnit {
        outbox: (0..rows).map(|i| message(&format!("sent-{i}"))).collect(),
        ..Default::default()
    };
    store.commit(unit).await.unwrap();
    let mut sent = Vec::new();
    loop {
        let claimed = store
            .mark_sent_and_claim(&sent, "relay", 500, 30_000)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        sent = claimed.into_iter().map(|row| row.message.id).collect();
    }
    // Then claims find nothing, and walk past every sent row's entry. The check scans the
    // index as a bitmap scan, which visits what is still live and marks nothing itself; it
    // is retried a few times because a transaction of another test running meanwhile keeps
    // rows from being dead to everyone, so a claim cannot mark them yet.
    let mut conn = connect_in_schema(&schema, false).await;
    for off in ["SET enable_indexscan = off", "SET enable_seqscan = off"] {
        sqlx::query(off).execute(&mut conn).await.unwrap();
    }
    let mut read = 0;
    for _ in 0..20 {
        assert!(store
            .claim_outbox("relay", 500, 30_000)
            .await
            .unwrap()
            .is_empty());
        let plan: (serde_json::Value,) = sqlx::query_as(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT seq FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        let node = &plan.0[0]["Plan"];
        read = node["Shared Hit Blocks"].as_i64().unwrap_or(0)
            + node["Shared Read Blocks"].as_i64().unwrap_or(0);
        if read < 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        read < 50,
        "a scan of the unsent rows read {read} pages after every row was sent: the claims \
         left the sent rows' index entries live"
    );
    store.close().await;
    drop_schema(&schema).await;
}

/// A message body large enough to be compressed (a referral's message Bundle is ≈ 4 kB) is
/// compressed with lz4 on a server that has it, and stays pglz on one without; either way
/// it reads back whole.
#[tokio::test]
async fn outbox_bodies_are_lz4_compressed_postgres() {
    let (store, schema, _dir) = open(Db::Postgres).await;
    let schema = schema.unwrap();
    let entries: Vec<String> = (0..60)
        .map(|i| format!("{{\"fullUrl\":\"urn:uuid:{i:08}\",\"resource\":{{\"resourceType\":\"Task\",\"status\":\"requested\"}}}}"))
        .collect();
    let body = format!(
        "{{\"resourceType\":\"Bundle\",\"entry\":[{}]}}",
        entries.join(",")
    );
    assert!(body.len() > 4_000);
    let mut row = message("large");
    row.body = body.clone();
    store
        .commit(WriteUnit {
            outbox: vec![row],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut conn = connect_in_schema(&schema, false).await;
    let lz4_available = sqlx::query("SET default_toast_compression = lz4")
        .execute(&mut conn)
        .await
        .is_ok();
    let (method, stored): (Option<String>, String) = sqlx::query_as(
        "SELECT pg_column_compression(body)::text, body FROM outbox_bodies WHERE id = 'large'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored, body);
    let expected = if lz4_available { "lz4" } else { "pglz" };
    assert_eq!(method.as_deref(), Some(expected));
    store.close().await;
    drop_schema(&schema).await;
}

/// PostgreSQL ends every session of the store (as a server restart does) while the
/// connections sit in the store's pools, just used: the next write, reads, search and
/// readiness check all succeed, each on a fresh connection, instead of failing on a dead
/// one. (Connections idle for less than a second are not pinged before use; a statement
/// that meets a dead one runs again on another.)
#[tokio::test]
async fn dead_pooled_connections_are_replaced_without_failing_a_request_postgres() {
    let (mut config, schema, _dir) = test_config(Db::Postgres, common::DEAD_AMQP_URL);
    let schema = schema.unwrap();
    let application = schema.clone();
    let separator = if config.store.url.contains('?') {
        '&'
    } else {
        '?'
    };
    config.store.url = format!(
        "{}{separator}application_name={application}",
        config.store.url
    );
    let store = Store::connect(&config.store).await.unwrap();
    let task = |id: &str| WriteUnit {
        writes: vec![write(
            "Task",
            id,
            json!({"resourceType": "Task", "status": "requested", "intent": "order"}),
        )],
        outbox: vec![message(&format!("m-{id}"))],
        ..Default::default()
    };
    // Use every pool: the writer's, and the readers'.
    for id in ["t1", "t2"] {
        assert!(matches!(
            store.commit(task(id)).await.unwrap(),
            CommitOutcome::Committed(_)
        ));
        assert!(store.read("Task", id).await.unwrap().is_some());
    }
    let mut admin = sqlx::PgConnection::connect(&common::postgres_url())
        .await
        .unwrap();
    let ended: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE application_name = $1",
    )
    .bind(&application)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        ended.len() >= 2 && ended.iter().all(|(done,)| *done),
        "expected the store's sessions (writer and readers) to be ended: {ended:?}"
    );

    assert!(matches!(
        store.commit(task("t3")).await.unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert!(store.read("Task", "t1").await.unwrap().is_some());
    assert_eq!(store.history("Task", "t3").await.unwrap().len(), 1);
    let found = store
        .search(
            "Task",
            &SearchQuery {
                count: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.total, 3);
    assert_eq!(store.outbox_stats().await.unwrap().pending, 3);
    store.ping().await.unwrap();
    let live: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&application)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(live.0 >= 1, "the store reconnected");
    store.close().await;
    drop_schema(&schema).await;
}
