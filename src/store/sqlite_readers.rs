//! Reads by key on SQLite without sqlx's worker thread.
//!
//! Owns: a few read-only connections to the database file (rusqlite, over the same bundled
//! SQLite that sqlx links) and the two reads that look resources up by key, `read` and
//! `read_many`, run inline on the caller's thread.
//! Must not: run anything whose cost grows with the data (searches, history pages, counts go
//! through sqlx), or wait. When every connection is in use, or SQLite answers busy, it
//! gives back `None` and the caller reads through sqlx as before, so a read never blocks a
//! runtime thread behind a lock.
//!
//! Why: accepting a referral reads its Patient and requester. Through sqlx that one query
//! is messages to and from sqlx's SQLite worker thread: a connection from the pool, the
//! statement, each row, each a possible context switch on a 2-core machine that also runs
//! the HTTP side, the writer and RabbitMQ. A key lookup here is a few B-tree steps (tens of
//! microseconds), cheaper than the hand-offs it replaces. WAL readers do not wait for the
//! writer; they see the last commit, as sqlx's connections do. Each read's statement is
//! reset when its rows are dropped, so no reader keeps a snapshot open (an open snapshot
//! would hold back the checkpointer). A read whose pages are not cached (after a start)
//! holds its runtime thread for the disk read; `MAX_KEYS` bounds how much one read can ask.

use super::resources::{stored_resource, SELECT_CURRENT};
use super::{StoreError, StoredResource};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Most keys read inline in one call; longer lists go through sqlx.
const MAX_KEYS: usize = 16;

/// Read-only connections, each used by one caller at a time.
pub(super) struct SqliteReaders {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl SqliteReaders {
    /// Open `count` read-only connections to `path` (already created, migrated and in WAL
    /// mode). A busy database is not waited for (`busy_timeout` 0): the caller falls back.
    pub(super) fn open(path: &Path, count: usize) -> Result<SqliteReaders, StoreError> {
        let mut connections = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )?;
            conn.busy_timeout(std::time::Duration::ZERO)?;
            conn.execute_batch("PRAGMA query_only=ON; PRAGMA cache_size=-4096;")?;
            conn.set_prepared_statement_cache_capacity(MAX_KEYS);
            connections.push(Mutex::new(conn));
        }
        Ok(SqliteReaders {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// The current versions of the resources named by `keys` (those that exist, in no
    /// particular order), or `None` when this cannot answer without waiting.
    pub(super) fn read_many(
        &self,
        keys: &[(&str, &str)],
    ) -> Option<Result<Vec<StoredResource>, StoreError>> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return None;
        }
        let conn = self.free_connection()?;
        let mut sql = format!("{SELECT_CURRENT} WHERE ");
        for i in 0..keys.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str("(r.resource_type = ? AND r.id = ?)");
        }
        let run = || -> Result<Vec<Row>, rusqlite::Error> {
            let mut statement = conn.prepare_cached(&sql)?;
            let binds = keys.iter().flat_map(|(rtype, id)| [*rtype, *id]);
            let mut rows = statement.query(rusqlite::params_from_iter(binds))?;
            let mut found = Vec::with_capacity(keys.len());
            while let Some(row) = rows.next()? {
                found.push(Row {
                    resource_type: row.get(0)?,
                    id: row.get(1)?,
                    version_id: row.get(2)?,
                    last_updated: row.get(3)?,
                    content: row.get(4)?,
                });
            }
            Ok(found)
        };
        match run() {
            Ok(rows) => Some(
                rows.into_iter()
                    .map(|r| {
                        stored_resource(
                            r.resource_type,
                            r.id,
                            r.version_id,
                            r.last_updated,
                            &r.content,
                        )
                    })
                    .collect(),
            ),
            Err(err) if is_busy(&err) => None,
            Err(err) => Some(Err(err.into())),
        }
    }

    /// A connection no one else is using, trying each once from a rotating start.
    fn free_connection(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        let count = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count).find_map(|i| self.connections[(start + i) % count].try_lock().ok())
    }
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// A row of `SELECT_CURRENT`, its content not parsed yet.
struct Row {
    resource_type: String,
    id: String,
    version_id: i64,
    last_updated: i64,
    content: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_in_use_is_left_to_sqlx() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("readers.db");
        let setup = Connection::open(&path).expect("open");
        setup
            .execute_batch(
                "PRAGMA journal_mode=WAL; \
                 CREATE TABLE resources (resource_type TEXT, id TEXT, version_id INTEGER, \
                 last_updated INTEGER); \
                 CREATE TABLE resource_history (resource_type TEXT, id TEXT, \
                 version_id INTEGER, content TEXT); \
                 INSERT INTO resources VALUES ('Patient', 'p1', 1, 5), ('Patient', 'bad', 1, 5); \
                 INSERT INTO resource_history VALUES ('Patient', 'p1', 1, '{\"id\":\"p1\"}'), \
                 ('Patient', 'bad', 1, 'not json');",
            )
            .expect("schema");
        let readers = SqliteReaders::open(&path, 1).expect("readers");

        let found = readers
            .read_many(&[("Patient", "p1"), ("Patient", "missing")])
            .expect("answered")
            .expect("read");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].version_id, 1);
        assert_eq!(found[0].resource["id"], "p1");

        // Content that is not JSON is an error, not a missing resource.
        let corrupt = readers.read_many(&[("Patient", "bad")]).expect("answered");
        assert!(matches!(corrupt, Err(StoreError::Corrupt(_))));

        // Its one connection held: the caller is told to read elsewhere, not made to wait.
        let held = readers.connections[0].lock().expect("lock");
        assert!(readers.read_many(&[("Patient", "p1")]).is_none());
        drop(held);
        // Too many keys for one inline read.
        let many: Vec<(&str, &str)> = (0..=MAX_KEYS).map(|_| ("Patient", "p1")).collect();
        assert!(readers.read_many(&many).is_none());
        assert!(readers.read_many(&[("Patient", "p1")]).is_some());

        // A database another connection holds exclusively answers busy at once: opening
        // readers on it fails instead of waiting (busy timeout 0). (SQLite grants that lock
        // only while no other connection has the database open, so the readers go first.)
        drop(readers);
        setup
            .execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
            .expect("exclusive");
        let refused = SqliteReaders::open(&path, 1);
        assert!(matches!(
            refused,
            Err(StoreError::Sqlite(ref err)) if is_busy(err)
        ));
        setup.execute_batch("COMMIT;").expect("commit");
    }
}
