//! The SQLite writer's own connection: a batch written straight through SQLite's C API,
//! on the group-commit writer's thread.
//!
//! Owns: the writer's SQLite connection (rusqlite, over the same bundled SQLite that sqlx
//! links) and writing a batch on it. The steps, decisions and rows are `batch_write`'s
//! (`settle`, `BatchRows`, the `*_ROWS` statements); here each row is one step of a
//! cached prepared statement, and the relay claims queued with the batch run in the same
//! transaction (`outbox::mark_sent_and_lease_on`).
//! Must not: be used off the writer's thread (each call blocks its thread for the whole
//! transaction; that thread runs nothing else), or begin a transaction without the
//! process's writer turn (`Store::sqlite_writers`), which it shares with the sqlx write
//! connection that other writes still use (a unit written alone after a failed batch, the
//! notifier's updates, the relay's reschedules and lease releases).
//!
//! Why: through sqlx every query and every row it returns is a message between the writer
//! and sqlx's SQLite worker thread, and each message can be a context switch on a 2-core
//! machine that also runs the HTTP side and RabbitMQ. A batch of referrals cost the writer
//! about two switches per referral that way, and every bind was copied from sqlx's `Any`
//! arguments into SQLite's. Here a batch is plain function calls on one thread.

use super::batch_write::{
    key_claims, log_phases, settle, BatchOutcome, BatchRows, ResourceKey, KEY_ROWS,
};
use super::outbox::{mark_sent_and_lease_on, OutboxClaim};
use super::prepared::Prepared;
use super::resources::WriteUnit;
use super::rows::Bind;
use super::{now_millis, Store, StoreError};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// The writer's connection to the database file.
pub(super) struct SqliteWriter {
    conn: Connection,
}

/// Prepared statements kept per connection: the batch's dozen texts, with room to spare.
const STATEMENT_CACHE: usize = 32;

impl SqliteWriter {
    /// Open `path` (which the pool has already created and migrated) with the settings of
    /// the sqlx write connection (`connect`): WAL, `synchronous=FULL`, foreign keys,
    /// a 16 MiB page cache, statement journals in memory, the checkpoint backstop.
    pub(super) fn open(path: &Path) -> Result<SqliteWriter, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(&format!(
            "PRAGMA temp_store=MEMORY; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
             PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint={};",
            super::checkpoint::WRITER_AUTOCHECKPOINT_PAGES
        ))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Config(format!(
                "SQLite database is in journal mode {mode}, not WAL"
            )));
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteWriter { conn })
    }

    /// Write `units` and run `relay_claims` in one transaction, as `Store::write_batch`
    /// does through sqlx, once this process's writer turn is taken: one outcome per unit,
    /// in order; `Err` when the transaction itself failed (nothing was written).
    pub(super) async fn write_batch(
        writer: &std::sync::Mutex<SqliteWriter>,
        store: &Store,
        units: &[&WriteUnit],
        prepared: Vec<Option<Prepared>>,
        relay_claims: &[&OutboxClaim],
    ) -> Result<BatchOutcome, StoreError> {
        let turn_started = std::time::Instant::now();
        let _turn = store.sqlite_writers.clone().lock_owned().await;
        // A panic inside a batch rolled its transaction back as it unwound (rusqlite's
        // `Transaction` rolls back on drop), so the connection is fit to use again.
        let mut writer = writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writer.write_in_turn(store, turn_started, units, prepared, relay_claims)
    }

    fn write_in_turn(
        &mut self,
        store: &Store,
        turn_started: std::time::Instant,
        units: &[&WriteUnit],
        prepared: Vec<Option<Prepared>>,
        relay_claims: &[&OutboxClaim],
    ) -> Result<BatchOutcome, StoreError> {
        let now = now_millis();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let writing_started = std::time::Instant::now();

        // 1. The current version of every resource written.
        let mut current: HashMap<ResourceKey, i64> = HashMap::new();
        {
            let mut version = tx.prepare_cached(
                "SELECT version_id FROM resources WHERE resource_type = ?1 AND id = ?2",
            )?;
            for w in units.iter().flat_map(|u| u.writes.iter()) {
                let found: Option<i64> = version
                    .query_row((&w.resource_type, &w.id), |row| row.get(0))
                    .optional()?;
                if let Some(v) = found {
                    current.insert((w.resource_type.clone(), w.id.clone()), v);
                }
            }
        }
        // 2. A claim on every idempotency key: an insert that changed a row took the key.
        let mut claimed: HashSet<String> = HashSet::new();
        {
            let mut claim = tx.prepare_cached(&KEY_ROWS.one_row())?;
            for row in key_claims(units, now) {
                if claim.execute(rusqlite::params_from_iter(&row))? == 1 {
                    if let Some(Bind::Text(key)) = row.into_iter().next() {
                        claimed.insert(key);
                    }
                }
            }
        }
        let mut settled = settle(units, &current, &claimed);
        {
            let mut give_back = tx.prepare_cached("DELETE FROM idempotency_keys WHERE key = ?1")?;
            for key in &settled.give_back {
                give_back.execute([key])?;
            }
        }
        if !settled.duplicates.is_empty() {
            let mut refs_of =
                tx.prepare_cached("SELECT refs FROM idempotency_keys WHERE key = ?1")?;
            let mut refs: HashMap<String, Value> = HashMap::new();
            for (_, key) in &settled.duplicates {
                let text: Option<String> = refs_of.query_row([key], |row| row.get(0)).optional()?;
                if let Some(text) = text {
                    let value = serde_json::from_str(&text)
                        .map_err(|_| StoreError::Corrupt("idempotency key".into()))?;
                    refs.insert(key.clone(), value);
                }
            }
            settled.answer_duplicates(&refs);
        }

        // 3. The writes of every unit still in play: the replaced versions' search rows
        // go first, then one statement step per row.
        let mut rows = BatchRows::of(units, prepared, &current, &settled, now);
        let committed = std::mem::take(&mut rows.committed);
        let wrote_outbox = !rows.outbox.is_empty();
        let wrote_notifications = !rows.notifications.is_empty();
        {
            let mut forget =
                tx.prepare_cached("DELETE FROM search_index WHERE resource_type = ?1 AND id = ?2")?;
            for (resource_type, id) in &rows.replaced {
                forget.execute((resource_type, id))?;
            }
        }
        for (sql, table_rows) in rows.inserts() {
            if table_rows.is_empty() {
                continue;
            }
            let mut insert = tx.prepare_cached(&sql.one_row())?;
            for row in &table_rows {
                insert.execute(rusqlite::params_from_iter(row))?;
            }
        }
        // 4. The relays' claims.
        let mut leased = Vec::with_capacity(relay_claims.len());
        for relay_claim in relay_claims {
            leased.push(mark_sent_and_lease_on(&tx, relay_claim, now_millis())?);
        }
        let commit_started = std::time::Instant::now();
        tx.commit()?;
        store.count_sqlite_commit();
        log_phases(units.len(), turn_started, writing_started, commit_started);
        store.signal_written(wrote_outbox, wrote_notifications);
        Ok((settled.answers(committed), leased))
    }
}
