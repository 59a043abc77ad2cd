//! Durable storage: one `Store` API over SQLite (embedded default, WAL) and PostgreSQL.
//!
//! Owns: the connection pool, migrations, versioned FHIR resources with history,
//! search indexes, idempotency keys, outbox rows and queued notifications (claim with leases, mark sent,
//! reschedule). Every `commit` is atomic; concurrent commits share one database
//! transaction (group commit: `prepared` renders a unit on the caller's task,
//! `group_commit` batches units for the one writer task, `batch_write` writes a batch;
//! on SQLite, `sqlite_writer` writes it on the writer's own connection).
//! Must not: decide routing, status rules or what a message means — callers hand
//! in finished resources and outbox rows.
//!
//! Both backends run the same SQL (sqlx `Any` driver with `$n` placeholders); the
//! dialect differences are `BEGIN IMMEDIATE` (after an in-process writer turn) on
//! SQLite, and on PostgreSQL `FOR UPDATE SKIP LOCKED` when claiming outbox rows and the
//! batch writer's multi-row statements sent as one (`rows`). On an SQLite file the
//! group-commit writer's batches bypass sqlx: `sqlite_writer` runs the same statements
//! through rusqlite on the writer's own connection; reads by key bypass it too, on
//! read-only connections used inline (`sqlite_readers`).

mod audit;
mod batch_write;
mod checkpoint;
mod connect;
mod group_commit;
mod notifications;
mod outbox;
mod prepared;
mod reconnect;
mod replay;
mod resources;
mod rows;
mod search_index;
mod sqlite_readers;
mod sqlite_writer;

use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Notify;

pub use audit::AUDIT_EVENT;
pub use group_commit::WriterStats;
pub use notifications::{NewNotification, PendingNotification};
pub use outbox::{NewOutboxMessage, OutboxRow, OutboxStats};
pub use resources::{CommitOutcome, IdempotencyClaim, OutboxFromStored, ResourceWrite, WriteUnit};
pub use search_index::{
    extract as search_index_values, index_terms as search_index_terms, supported_params,
    SearchQuery, SearchResult, TimeBound,
};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// OpenTelemetry `db.system` value.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// Storage failures. Never carries resource content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite writer's own connection (`sqlite_writer`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported store url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("stored content of {0} is not valid JSON")]
    Corrupt(String),
    #[error("version conflict on {0}")]
    VersionConflict(String),
    #[error("the store's writer has stopped")]
    WriterStopped,
}

/// One version of a stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// Unix epoch milliseconds.
    pub last_updated: i64,
    /// The resource with `id`, `meta.versionId` and `meta.lastUpdated` set.
    pub resource: Value,
}

impl StoredResource {
    /// `Type/id`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: sqlx::AnyPool,
    /// Write transactions: on SQLite one connection of its own (writers take turns);
    /// on PostgreSQL the same pool.
    write_pool: sqlx::AnyPool,
    /// SQLite: the background WAL checkpointer's connection (`checkpoint`).
    checkpoint_pool: Option<sqlx::AnyPool>,
    /// SQLite: read-only connections for reads by key, used inline (`sqlite_readers`).
    sqlite_readers: Option<Arc<sqlite_readers::SqliteReaders>>,
    backend: Backend,
    /// Queue of the writer task that group-commits `WriteUnit`s (`None` on the
    /// writer's own handle, which commits directly).
    writer: Option<tokio::sync::mpsc::Sender<group_commit::CommitRequest>>,
    /// SQLite: the writer's queue of relay claims, run inside its next batch.
    claims: Option<tokio::sync::mpsc::Sender<group_commit::QueuedClaim>>,
    writer_counters: Arc<group_commit::WriterCounters>,
    /// SQLite: this process's writers take turns here before `BEGIN IMMEDIATE`.
    sqlite_writers: Arc<tokio::sync::Mutex<()>>,
    /// SQLite: write transactions committed by this process (`checkpoint` watches it).
    sqlite_commits: Arc<std::sync::atomic::AtomicU64>,
    outbox_signal: Arc<Notify>,
    notification_signal: Arc<Notify>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Signalled after every commit that wrote outbox rows (same process only).
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.outbox_signal.clone()
    }

    /// Signalled after every commit that queued notifications (same process only).
    pub fn notification_signal(&self) -> Arc<Notify> {
        self.notification_signal.clone()
    }

    /// How commits have been batched so far in this process.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer_counters.snapshot()
    }

    /// Cheap liveness check of the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.on_live_connection(|| sqlx::query("SELECT 1").execute(&self.pool))
            .await?;
        Ok(())
    }

    /// Close the pool (waits for checked-out connections).
    pub async fn close(&self) {
        self.pool.close().await;
        self.write_pool.close().await;
        if let Some(pool) = &self.checkpoint_pool {
            pool.close().await;
        }
    }
}

/// A new server-assigned id (resources, outbox messages, notifications): a UUIDv7
/// (RFC 9562). Its leading bits are the time, so rows written together are neighbours in
/// every index keyed by id and a commit dirties a few pages at the right edge of each
/// B-tree instead of one random page per row (random v4 ids did that). Its random bits come
/// from a thread-local ChaCha generator seeded by the OS (uuid's `fast-rng`), not from a
/// `getrandom` system call per id: that was ≈ 7 system calls per referral.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// FHIR `instant` text for epoch milliseconds.
pub fn instant_text(millis: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
