//! PostgreSQL connections that died in the pool: telling them apart, and running again on
//! another connection.
//!
//! Owns: `is_dead_connection` (which errors say "this connection is gone, nothing ran"),
//! `Store::on_live_connection` (a read or a `BEGIN` run again while the pool hands out
//! dead connections) and when a pooled connection is pinged before use.
//! Must not: run anything again that may have changed the database. Only reads, and the
//! `BEGIN` that opens a write transaction, come through here; a transaction that fails
//! after its `BEGIN` is the caller's failure (the group-commit writer then writes its
//! units one by one, each protected by its idempotency key or expected version).
//!
//! Why: when PostgreSQL restarts, every connection idle in the pool is closed by the
//! server, and the pool does not know until one is used. sqlx's `test_before_acquire`
//! pings each connection before handing it out: one more round trip for every
//! transaction and every read (≈ 5 % of intake throughput). Here a connection is pinged
//! only when it has sat idle for `PING_WHEN_IDLE_FOR` (the common case after a restart
//! at night); one that dies within that window fails its first statement, is closed
//! when it goes back to the pool (sqlx tests every released connection), and the read or
//! `BEGIN` runs again on the next connection.

use super::{Backend, Store, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::Connection;
use std::future::Future;
use std::time::Duration;

/// A pooled PostgreSQL connection idle at least this long is pinged before it is used.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// PostgreSQL pool options: a connection idle for `PING_WHEN_IDLE_FOR` or more is pinged
/// before it is handed out (one that fails is closed and the pool tries another).
pub(super) fn ping_when_idle(options: AnyPoolOptions) -> AnyPoolOptions {
    options.before_acquire(|conn, meta| {
        Box::pin(async move {
            if meta.idle_for >= PING_WHEN_IDLE_FOR {
                conn.ping().await?;
            }
            Ok(true)
        })
    })
}

/// Whether `err` says the connection itself is gone (so the statement did not run): the
/// socket failed, the server ended the session (SQLSTATE class 08 "connection exception",
/// or 57P01–57P03: shut down by the administrator, crash, cannot connect now).
pub(super) fn is_dead_connection(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

impl Store {
    /// How many times a read or `BEGIN` may meet a dead connection before the error is
    /// returned: every connection the pool can hold may have died, and each failed attempt
    /// closes one, so one more attempt than that always reaches a fresh connection (or a
    /// connection error from a server that is really down).
    fn attempts_on_dead_connections(&self) -> u32 {
        match self.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => self.pool.options().get_max_connections() + 1,
        }
    }

    /// Run `attempt` (a read, or acquiring a connection and sending `BEGIN`), again on
    /// another connection while it fails because its connection had died.
    pub(super) async fn on_live_connection<T, F, Fut>(
        &self,
        mut attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let attempts = self.attempts_on_dead_connections();
        let mut tried = 1;
        loop {
            match attempt().await {
                Err(err) if tried < attempts && is_dead_connection(&err) => {
                    tracing::info!(
                        error = %err,
                        attempt = tried,
                        "a pooled database connection had closed; trying another"
                    );
                    tried += 1;
                }
                done => return done.map_err(StoreError::from),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_failures_are_dead_connections_and_pool_or_row_errors_are_not() {
        let io = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "broken pipe",
        ));
        assert!(is_dead_connection(&io));
        assert!(is_dead_connection(&sqlx::Error::Protocol(
            "unexpected end of stream".into()
        )));
        assert!(!is_dead_connection(&sqlx::Error::PoolTimedOut));
        assert!(!is_dead_connection(&sqlx::Error::RowNotFound));
        assert!(!is_dead_connection(&sqlx::Error::ColumnNotFound(
            "x".into()
        )));
    }

    /// Every use of the read pool in the store's sources is inside an
    /// `on_live_connection(|| …)` closure, so no read (and no `BEGIN`) skips the retry: a
    /// new `.fetch_all(&self.pool)` written outside one fails here. The closure builds a
    /// future and awaits nothing, so between the closure's opening and the use there is
    /// no `.await`.
    #[test]
    fn every_read_of_the_pool_runs_through_on_live_connection() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/store");
        let mut uses = 0;
        let mut outside = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.map(|e| e.path()).unwrap_or_default();
            // This file holds the mechanism (and these patterns, in this test).
            if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("reconnect.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            for pattern in ["&self.pool)", "self.pool.begin()"] {
                for (at, _) in source.match_indices(pattern) {
                    uses += 1;
                    let before = &source[..at];
                    let wrapped = before
                        .rfind("on_live_connection(")
                        .is_some_and(|opened| !before[opened..].contains(".await"));
                    if !wrapped {
                        let line = before.lines().count();
                        outside.push(format!("{}:{line}", path.display()));
                    }
                }
            }
        }
        assert!(uses >= 10, "the store's reads were not found ({uses})");
        assert!(
            outside.is_empty(),
            "pool used outside on_live_connection: {outside:?}"
        );
    }
}
