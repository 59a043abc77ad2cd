//! The notification queue: one row per (Subscription, Task version) to deliver,
//! written in the same commit as the Task change it announces.
//!
//! Owns: inserting rows inside a commit, claiming the oldest undelivered row of each
//! (Subscription, resource) pair (head of line per Task, so one Task's notifications arrive
//! in order while different Tasks' are delivered side by side) with a lease, marking delivered, rescheduling with a delay, abandoning a Subscription's
//! rows when it goes to `error`, and the backlog figure.
//! Must not: deliver anything or interpret Subscriptions.

use super::{now_millis, Backend, Store, StoreError};
use sqlx::Row;

/// A notification to queue with a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub id: String,
    pub subscription_id: String,
    pub resource_type: String,
    pub resource_id: String,
    /// The version being announced.
    pub version_id: i64,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// A claimed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNotification {
    pub notification: NewNotification,
    /// Attempts made before this one.
    pub attempts: i64,
    pub created_at: i64,
}

pub(super) async fn insert_notification(
    conn: &mut sqlx::AnyConnection,
    n: &NewNotification,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO notifications (id, subscription_id, resource_type, resource_id, version_id, \
         correlation_id, traceparent, tracestate, created_at, attempts, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $9)",
    )
    .bind(n.id.clone())
    .bind(n.subscription_id.clone())
    .bind(n.resource_type.clone())
    .bind(n.resource_id.clone())
    .bind(n.version_id)
    .bind(n.correlation_id.clone())
    .bind(n.traceparent.clone())
    .bind(n.tracestate.clone())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Lease up to `limit` rows to `owner`: for each (Subscription, resource) only its
    /// oldest pending row, and only when that row is due and not leased elsewhere.
    pub async fn claim_notifications(
        &self,
        owner: &str,
        limit: u32,
        lease_ms: i64,
    ) -> Result<Vec<PendingNotification>, StoreError> {
        let now = now_millis();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE notifications SET lease_owner = $1, lease_until = $2 WHERE seq IN (\
               SELECT n.seq FROM notifications n WHERE n.delivered_at IS NULL AND n.abandoned_at IS NULL AND n.next_attempt_at <= $3 \
               AND (n.lease_until IS NULL OR n.lease_until < $3) \
               AND NOT EXISTS (SELECT 1 FROM notifications p WHERE p.subscription_id = n.subscription_id \
                 AND p.resource_type = n.resource_type AND p.resource_id = n.resource_id \
                 AND p.delivered_at IS NULL AND p.abandoned_at IS NULL AND p.seq < n.seq) \
               ORDER BY n.seq LIMIT {limit}{lock}) \
             RETURNING id, subscription_id, resource_type, resource_id, version_id, correlation_id, \
               traceparent, tracestate, attempts, created_at, seq"
        );
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // The same partial-index walk as the outbox's claim (`pin_claim_plan`).
            super::outbox::pin_claim_plan(&mut tx).await?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner.to_string())
            .bind(now + lease_ms)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get(10)?;
            claimed.push((
                seq,
                PendingNotification {
                    notification: NewNotification {
                        id: row.try_get(0)?,
                        subscription_id: row.try_get(1)?,
                        resource_type: row.try_get(2)?,
                        resource_id: row.try_get(3)?,
                        version_id: row.try_get(4)?,
                        correlation_id: row.try_get(5)?,
                        traceparent: row.try_get(6)?,
                        tracestate: row.try_get(7)?,
                    },
                    attempts: row.try_get(8)?,
                    created_at: row.try_get(9)?,
                },
            ));
        }
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, n)| n).collect())
    }

    /// Delivered: never sent again.
    pub async fn mark_notification_delivered(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET delivered_at = $1, lease_owner = NULL, lease_until = NULL, \
             attempts = attempts + 1 WHERE id = $2 AND lease_owner = $3",
        )
        .bind(now_millis())
        .bind(id.to_string())
        .bind(owner.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Failed attempt: try again after `delay_ms`.
    pub async fn reschedule_notification(
        &self,
        id: &str,
        owner: &str,
        delay_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET lease_owner = NULL, lease_until = NULL, attempts = attempts + 1, \
             next_attempt_at = $1, last_error = $2 WHERE id = $3 AND lease_owner = $4",
        )
        .bind(now_millis() + delay_ms)
        .bind(error.to_string())
        .bind(id.to_string())
        .bind(owner.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stop delivering to a Subscription: its pending rows are kept, marked abandoned.
    pub async fn abandon_notifications(
        &self,
        subscription_id: &str,
        error: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE notifications SET abandoned_at = $1, lease_owner = NULL, lease_until = NULL, \
             last_error = $2 WHERE subscription_id = $3 \
             AND delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .bind(now_millis())
        .bind(error.to_string())
        .bind(subscription_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Rows waiting for delivery.
    pub async fn notifications_pending(&self) -> Result<i64, StoreError> {
        let row = self
            .on_live_connection(|| {
                sqlx::query(
                    "SELECT COUNT(*) FROM notifications \
                     WHERE delivered_at IS NULL AND abandoned_at IS NULL",
                )
                .fetch_one(&self.pool)
            })
            .await?;
        Ok(row.try_get(0)?)
    }
}
