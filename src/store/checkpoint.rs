//! SQLite WAL checkpoints, off the writer's path.
//!
//! Owns: the background task that copies the write-ahead log back into the database file
//! (`PRAGMA wal_checkpoint(PASSIVE)`) on a connection of its own, shortly after writes.
//! Must not: write rows, or hold any lock a writer waits for (a passive checkpoint never
//! blocks writers or readers; it copies what no reader still needs).
//!
//! Why: SQLite runs an automatic checkpoint inside the commit that pushes the log past
//! `wal_autocheckpoint` pages. On the one connection that writes every batch, that put a
//! 1,000-page copy and an `fsync` of the database file inside the commit every few batches,
//! while every referral of the batch waited. The writer's connection now checkpoints
//! automatically only as a backstop (`WRITER_AUTOCHECKPOINT_PAGES`, when this task falls
//! behind); this task does the copying on the other core. Durability is unchanged: a commit
//! is in the log when it returns, and the checkpoint only moves it into the main file.

use sqlx::AnyPool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

/// The writer connection's own automatic checkpoint (pages of the log, 4 KiB each):
/// far above what one checkpoint interval writes, so it runs only if this task stalls.
pub(super) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// How long after a write the log is checkpointed, at most. Small and frequent is what
/// kept the tail down: open loop at 1,000 referrals/s gave p99 16 ms at 30 ms, 23–30 ms at
/// 100 ms and 69–80 ms at 1 s (each checkpoint's copy and `fsync` is smaller).
const INTERVAL: Duration = Duration::from_millis(30);

/// Checkpoint on `pool` (one connection) every `INTERVAL` in which a write transaction of
/// this process committed (`commits`: the group-commit writer's batches, and the relay's,
/// notifier's and other writes); ends when the store is dropped (`commits` no longer
/// upgrades) or closed.
pub(super) fn spawn_checkpointer(pool: AnyPool, commits: Weak<AtomicU64>) {
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            tokio::time::sleep(INTERVAL).await;
            let Some(now) = commits.upgrade().map(|c| c.load(Ordering::Relaxed)) else {
                return;
            };
            if now == seen {
                continue;
            }
            seen = now;
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                Ok(_) => {}
                Err(sqlx::Error::PoolClosed) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "WAL checkpoint failed; the writer's backstop will checkpoint")
                }
            }
        }
    });
}
