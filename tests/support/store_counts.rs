//! Counting what a PostgreSQL test schema holds after a load test: stored referrals and
//! Tasks, Task versions, accepted Tasks and unsent outbox rows. Shared by the fault and
//! scale-out tests.
#![allow(dead_code)]

use sqlx::{Connection as _, PgConnection, Row};
use std::time::Duration;

/// A connection to one test schema, for counting rows.
pub struct StoreCounts {
    pg: PgConnection,
}

impl StoreCounts {
    /// Connect to `url` with `schema` as the search path.
    pub async fn connect(url: &str, schema: &str) -> StoreCounts {
        let mut pg = PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET search_path TO \"{schema}\""
        )))
        .execute(&mut pg)
        .await
        .unwrap();
        StoreCounts { pg }
    }

    async fn count(&mut self, sql: &'static str) -> i64 {
        sqlx::query(sql)
            .fetch_one(&mut self.pg)
            .await
            .unwrap()
            .get(0)
    }

    /// Outbox rows not yet published.
    pub async fn outbox_pending(&mut self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .await
    }

    /// Tasks whose current status is `accepted`.
    pub async fn tasks_accepted(&mut self) -> i64 {
        self.count("SELECT COUNT(*) FROM search_index WHERE resource_type = 'Task' AND param = 'status' AND value = 'accepted'")
            .await
    }

    /// Stored ServiceRequests (one per referral).
    pub async fn service_requests(&mut self) -> i64 {
        self.count("SELECT COUNT(*) FROM resources WHERE resource_type = 'ServiceRequest'")
            .await
    }

    /// Stored Tasks.
    pub async fn tasks(&mut self) -> i64 {
        self.count("SELECT COUNT(*) FROM resources WHERE resource_type = 'Task'")
            .await
    }

    /// Task versions recorded in the history table.
    pub async fn task_versions(&mut self) -> i64 {
        self.count("SELECT COUNT(*) FROM resource_history WHERE resource_type = 'Task'")
            .await
    }

    /// The most Tasks based on any one ServiceRequest (0 with no Tasks).
    pub async fn most_tasks_per_referral(&mut self) -> i64 {
        self.count(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT value, COUNT(*) AS n FROM search_index \
             WHERE resource_type = 'Task' AND param = 'based-on' AND value LIKE 'ServiceRequest/%' GROUP BY value) t")
            .await
    }

    /// Wait until the outbox is empty and at least `referrals` Tasks are accepted; fails the
    /// test after `wait`. Returns (outbox pending, Tasks accepted) as last counted.
    pub async fn drained(&mut self, referrals: usize, wait: Duration) -> (i64, i64) {
        self.drained_or(referrals, wait, String::new).await
    }

    /// `drained`, with `diagnose()` (say, the broker's queue depths) added to the failure.
    pub async fn drained_or(
        &mut self,
        referrals: usize,
        wait: Duration,
        diagnose: impl Fn() -> String,
    ) -> (i64, i64) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let pending = self.outbox_pending().await;
            let accepted = self.tasks_accepted().await;
            if pending == 0 && accepted as usize >= referrals {
                return (pending, accepted);
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "not drained: outbox pending {pending}, accepted {accepted} of {referrals}{}",
                    diagnose()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
