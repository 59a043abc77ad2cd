//! Debug events right after database statements reach the log. tracing-subscriber's
//! per-layer filters read a thread-local left by the last `enabled()` call on the thread, and
//! sqlx makes such calls around every statement; an event whose callsite was cached as
//! always-enabled then read sqlx's answer instead of its own and was dropped
//! (tokio-rs/tracing#2519). On PostgreSQL, where the group-commit writer shares its thread
//! with sqlx, the writer's `store batch phases` line never appeared though it ran. spbridge's
//! filters are asked every time (`telemetry::fresh_filter`).

#[path = "support/capture.rs"]
mod capture;
#[path = "support/intake.rs"]
mod common;

use common::{drop_schema, test_config, Db};
use serde_json::json;
use spbridge::config::{LogFormat, TelemetryConfig};
use spbridge::store::{IdempotencyClaim, ResourceWrite, Store, WriteUnit};

fn unit(n: usize) -> WriteUnit {
    WriteUnit {
        writes: vec![ResourceWrite {
            resource_type: "ServiceRequest".into(),
            id: format!("log-{n}"),
            resource: json!({"resourceType": "ServiceRequest", "status": "active"}),
            if_match: None,
        }],
        idempotency: vec![IdempotencyClaim {
            key: format!("log-key-{n}"),
            refs: json!({}),
        }],
        ..Default::default()
    }
}

#[test]
fn store_debug_lines_follow_statements_on_both_backends() {
    std::env::set_var("RUST_LOG", "warn,spbridge::store=debug");
    let logs = capture::Capture::default();
    let config = TelemetryConfig {
        log_format: LogFormat::Text,
    };
    let telemetry =
        spbridge::telemetry::init_with_writer(&config, "warn", logs.make_writer()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for db in [Db::Postgres, Db::Sqlite] {
        let before = logs.text().matches("store batch phases").count();
        rt.block_on(async {
            let (config, schema, _dir) = test_config(db, common::DEAD_AMQP_URL);
            let store = Store::connect(&config.store).await.unwrap();
            // Several rounds of concurrent commits: each round is group-committed in
            // batches, each batch logging its phases right after its statements.
            for round in 0..5 {
                let commits = (0..8).map(|i| {
                    let store = store.clone();
                    async move { store.commit(unit(round * 8 + i)).await }
                });
                for outcome in futures_util::future::join_all(commits).await {
                    outcome.unwrap();
                }
            }
            let batches = store.writer_stats().batches;
            store.close().await;
            if let Some(schema) = schema {
                drop_schema(&schema).await;
            }
            let logged = logs.text().matches("store batch phases").count() - before;
            assert_eq!(
                logged as u64, batches,
                "{db:?}: every batch the writer wrote logs its phases"
            );
        });
    }
    telemetry.shutdown();
}
