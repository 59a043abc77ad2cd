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
