//! Opening a store: URL → backend, pool set-up, per-connection settings, migrations.
//!
//! Owns: `Store::connect`, SQLite pragmas (WAL, busy timeout, page cache, statement journals
//! in memory), the PostgreSQL schema (created when configured) and running the embedded
//! migrations.
//! Must not: read or write resources.

use super::{Backend, Store, StoreError};
use crate::config::StoreConfig;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connect, apply per-connection settings and run migrations.
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if config.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if config.url.starts_with("postgres:") || config.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let url = match backend {
            Backend::Sqlite if !config.url.contains('?') => format!("{}?mode=rwc", config.url),
            _ => config.url.clone(),
        };
        // SQLite must be a file: an in-memory database would lose every accepted referral
        // when the process stops (and each connection would see a database of its own).
        let sqlite_file = match backend {
            Backend::Sqlite => {
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?;
                let path = file.get_filename().to_path_buf();
                if url.contains("mode=memory")
                    || path.as_os_str() == ":memory:"
                    || path.to_string_lossy().starts_with("file:")
                {
                    return Err(StoreError::Config(
                        "store.url: SQLite must be a database file (e.g. sqlite://spbridge.db); \
                         an in-memory database would lose accepted referrals"
                            .into(),
                    ));
                }
                Some(path)
            }
            Backend::Postgres => None,
        };
        let schema = config.postgres_schema.clone();
        if !schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StoreError::Config(
                "store.postgres_schema must be [a-z0-9_]".into(),
            ));
        }
        let options = AnyConnectOptions::from_str(&url)?;
        if backend == Backend::Postgres && !schema.is_empty() {
            let mut conn = sqlx::AnyConnection::connect_with(&options).await?;
            conn.execute(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .await?;
            conn.close().await?;
        }
        let max = match backend {
            // One writer at a time anyway; a small pool avoids lock churn.
            Backend::Sqlite => config.max_connections.clamp(1, 4),
            Backend::Postgres => config.max_connections.max(1),
        };
        let pool_of = |max: u32, writes: bool| {
            let schema = schema.clone();
            let options = AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(10))
                // No ping before every use: an SQLite connection is a file handle on a
                // worker thread (a ping was one more thread round trip per query); a
                // PostgreSQL connection is pinged only after sitting idle (`reconnect`).
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    let schema = schema.clone();
                    Box::pin(async move {
                        match backend {
                            Backend::Sqlite => {
                                // Statement journals (a multi-row statement's undo, needed
                                // if it fails half-way) stay in memory instead of spilling to
                                // temporary files past 64 KiB: system time per referral fell
                                // from 0.22–0.23 to 0.17–0.18 ms in intake_bench.
                                conn.execute("PRAGMA temp_store=MEMORY").await?;
                                conn.execute("PRAGMA journal_mode=WAL").await?;
                                conn.execute("PRAGMA busy_timeout=10000").await?;
                                // Every commit is flushed to the disk before it returns
                                // (with NORMAL, a WAL commit could be lost to a power cut or
                                // an OS crash after the referral was acknowledged). Cost in
                                // intake_bench: 3,023–3,145 against 3,179–3,455 referrals/s.
                                conn.execute("PRAGMA synchronous=FULL").await?;
                                conn.execute("PRAGMA foreign_keys=ON").await?;
                                // A larger page cache per connection (16 MiB; default 2 MiB).
                                conn.execute("PRAGMA cache_size=-16384").await?;
                                if writes {
                                    // Checkpoints run beside the writer (`checkpoint`);
                                    // its own automatic one is only the backstop.
                                    conn.execute(AssertSqlSafe(format!(
                                        "PRAGMA wal_autocheckpoint={}",
                                        super::checkpoint::WRITER_AUTOCHECKPOINT_PAGES
                                    )))
                                    .await?;
                                }
                            }
                            Backend::Postgres if !schema.is_empty() => {
                                conn.execute(AssertSqlSafe(format!(
                                    "SET search_path TO \"{schema}\""
                                )))
                                .await?;
                            }
                            Backend::Postgres => {}
                        }
                        Ok(())
                    })
                });
            match backend {
                Backend::Postgres => super::reconnect::ping_when_idle(options),
                Backend::Sqlite => options,
            }
        };
        let pool = pool_of(max, false).connect_with(options.clone()).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        // SQLite's write transactions take turns anyway (`begin_write`): they get a
        // connection of their own, so the writer never queues behind readers for one.
        let write_pool = match backend {
            Backend::Sqlite => pool_of(1, true).connect_with(options.clone()).await?,
            Backend::Postgres => pool.clone(),
        };
        let options_for_writer = options.clone();
        let checkpoint_pool = match backend {
            Backend::Sqlite => Some(pool_of(1, false).connect_with(options).await?),
            Backend::Postgres => None,
        };
        let mut store = Store {
            pool,
            write_pool,
            backend,
            writer: None,
            claims: None,
            checkpoint_pool: checkpoint_pool.clone(),
            sqlite_readers: None,
            writer_counters: Default::default(),
            sqlite_writers: Default::default(),
            sqlite_commits: Default::default(),
            outbox_signal: Arc::new(Notify::new()),
            notification_signal: Arc::new(Notify::new()),
        };
        if let Some(checkpoints) = checkpoint_pool {
            super::checkpoint::spawn_checkpointer(
                checkpoints,
                Arc::downgrade(&store.sqlite_commits),
            );
        }
        // SQLite: the group-commit writer writes its batches on a connection of its own,
        // straight through SQLite's C API (`sqlite_writer`).
        let own_connection = match &sqlite_file {
            Some(path) => Some(super::sqlite_writer::SqliteWriter::open(path)?),
            None => None,
        };
        // SQLite: reads by key run inline on read-only connections (`sqlite_readers`); one
        // per runtime thread that may read at once, and a spare.
        if let Some(path) = &sqlite_file {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let readers =
                super::sqlite_readers::SqliteReaders::open(path, threads.clamp(2, 8) + 1)?;
            store.sqlite_readers = Some(Arc::new(readers));
        }
        // PostgreSQL: the writer connects a pool of its own on its own runtime, one
        // connection per batch it may have in flight and one for a unit written alone.
        let own_pool = (backend == Backend::Postgres).then(|| {
            let lanes = super::group_commit::lanes(&store) as u32;
            (pool_of(lanes + 1, true), options_for_writer)
        });
        let (writer, claims) =
            super::group_commit::spawn_writer(store.clone(), own_connection, own_pool);
        store.writer = Some(writer);
        // Relays claim inside the writer's next batch: on SQLite that saves a write turn,
        // on PostgreSQL a transaction's BEGIN and COMMIT round trips (each claim is still
        // `FOR UPDATE SKIP LOCKED` there, so several instances share the outbox).
        store.claims = Some(claims);
        Ok(store)
    }

    /// Begin a write transaction. On SQLite, writers of this process first take their
    /// turn on an in-process queue (FIFO), then `BEGIN IMMEDIATE`: SQLite admits one writer
    /// at a time, and a writer refused with SQLITE_BUSY sleeps in growing steps (1, 2, 5,
    /// 10 … ms) before it retries, which left the group-commit writer and the outbox relay
    /// sleeping while the lock was free. The busy timeout still covers other processes.
    pub(super) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let turn = self.sqlite_writers.clone().lock_owned().await;
                WriteTx {
                    tx: self.write_pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: Some(turn),
                    commits: Some(self.sqlite_commits.clone()),
                }
            }
            Backend::Postgres => WriteTx {
                tx: self.on_live_connection(|| self.pool.begin()).await?,
                _turn: None,
                commits: None,
            },
        })
    }
}

/// A write transaction; on SQLite it also holds this process's writer turn until it
/// commits, rolls back or is dropped, and counts its commit (what the checkpointer watches).
/// Derefs to the connection for statements.
pub(super) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    commits: Option<Arc<AtomicU64>>,
}

impl Store {
    /// Count a write transaction committed on SQLite outside `WriteTx` (the writer's own
    /// connection), for the checkpointer.
    pub(super) fn count_sqlite_commit(&self) {
        self.sqlite_commits.fetch_add(1, Ordering::Relaxed);
    }
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        if let Some(commits) = &self.commits {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(super) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}
