//! Writing a batch of disjoint `WriteUnit`s in one transaction with multi-row statements.
//!
//! Owns: the batch form of a commit. In one transaction, whatever the batch size:
//! read the current versions of every resource written and claim every idempotency key
//! (sent together), refuse units whose `If-Match` no longer holds and treat a unit whose key
//! was already taken as a duplicate (the keys such units claimed are given back), then
//! upsert the resources, append their history, replace their search rows and add the outbox
//! and notification rows — one multi-row statement each, sent together; last, the relay
//! claims queued with the batch (mark sent, lease the next rows) in the same transaction.
//! The decisions and the rows (`settle`, `BatchRows`, the `*_ROWS` statements) serve both
//! backends; `Store::write_batch` runs them on PostgreSQL through sqlx, each "sent together"
//! one statement of `WITH` clauses (`rows::StatementBatch`), and the SQLite writer runs them
//! on its own connection (`sqlite_writer`).
//! Must not: be handed units that share a key or a resource (`group_commit` keeps them
//! apart), or answer callers (it returns one outcome per unit; an `Err` for the whole
//! batch means nothing was written and the caller retries unit by unit).

use super::outbox::{mark_sent_and_lease, OutboxClaim, OutboxRow};
use super::prepared::Prepared;
use super::resources::{CommitOutcome, WriteUnit};
use super::rows::{run_rows, Bind, StatementBatch};
use super::{now_millis, Store, StoreError, StoredResource};
use serde_json::Value;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

pub(super) type ResourceKey = (String, String);

/// One outcome per unit, in order, and per relay claim the rows it leased (with `seq`).
pub(super) type BatchOutcome = (
    Vec<Result<CommitOutcome, StoreError>>,
    Vec<Vec<(i64, OutboxRow)>>,
);

/// A multi-row insert: `{head} {shape}, {shape}, … {tail}` (`shape` is one row's
/// placeholders `?1..?k`); with one row, a plain single-row statement.
pub(super) struct RowsSql {
    pub head: &'static str,
    pub shape: &'static str,
    pub tail: &'static str,
}

impl RowsSql {
    /// The statement for one row.
    pub(super) fn one_row(&self) -> String {
        format!("{} {} {}", self.head, self.shape, self.tail)
    }
}

pub(super) const KEY_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO idempotency_keys (key, refs, created_at) VALUES",
    shape: "(?1, ?2, ?3)",
    tail: "ON CONFLICT (key) DO NOTHING",
};
/// The current version's number and time; its content is in `resource_history` only.
pub(super) const RESOURCE_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO resources (resource_type, id, version_id, last_updated) VALUES",
    shape: "(?1, ?2, ?3, ?4)",
    tail: "ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
           last_updated = excluded.last_updated",
};
pub(super) const HISTORY_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO resource_history (resource_type, id, version_id, last_updated, content) \
           VALUES",
    shape: "(?1, ?2, ?3, ?4, ?5)",
    tail: "",
};
pub(super) const INDEX_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO search_index (resource_type, id, param, value) VALUES",
    shape: "(?1, ?2, ?3, ?4)",
    tail: "",
};
pub(super) const OUTBOX_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO outbox (id, destination, routing_key, message_type, content_type, \
           profile, correlation_id, traceparent, tracestate, created_at, attempts, \
           next_attempt_at) VALUES",
    shape: "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11)",
    tail: "",
};
pub(super) const OUTBOX_BODY_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO outbox_bodies (id, body) VALUES",
    shape: "(?1, ?2)",
    tail: "",
};
pub(super) const NOTIFICATION_ROWS: RowsSql = RowsSql {
    head: "INSERT INTO notifications (id, subscription_id, resource_type, resource_id, \
           version_id, correlation_id, traceparent, tracestate, created_at, attempts, \
           next_attempt_at) VALUES",
    shape: "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10)",
    tail: "",
};

/// Every idempotency key the batch claims, as `KEY_ROWS` rows (key, refs, created at).
pub(super) fn key_claims(units: &[&WriteUnit], now: i64) -> Vec<Vec<Bind>> {
    units
        .iter()
        .flat_map(|u| u.idempotency.iter())
        .map(|c| {
            vec![
                Bind::Text(c.key.clone()),
                Bind::Text(c.refs.to_string()),
                Bind::Int(now),
            ]
        })
        .collect()
}

/// A batch's units settled against what the database holds.
pub(super) struct Settled {
    /// `Some` for the units that write nothing (a version conflict, or a duplicate once
    /// `answer_duplicates` has run); `None` for the units still in play.
    pub outcomes: Vec<Option<Result<CommitOutcome, StoreError>>>,
    /// Keys this transaction claimed for units that write nothing: to delete again.
    pub give_back: Vec<String>,
    /// Units one of whose keys was taken before, with that key (its refs are read next).
    pub duplicates: Vec<(usize, String)>,
}

/// Refuse the units whose `If-Match` no longer holds (`current`: the versions the database
/// holds) and find the duplicates (a key not in `claimed`, the keys this transaction took).
pub(super) fn settle(
    units: &[&WriteUnit],
    current: &HashMap<ResourceKey, i64>,
    claimed: &HashSet<String>,
) -> Settled {
    let mut outcomes: Vec<Option<Result<CommitOutcome, StoreError>>> =
        units.iter().map(|_| None).collect();
    let mut give_back: Vec<String> = Vec::new();
    let keys_given_back = |unit: &WriteUnit, give_back: &mut Vec<String>| {
        give_back.extend(
            unit.idempotency
                .iter()
                .filter(|c| claimed.contains(&c.key))
                .map(|c| c.key.clone()),
        );
    };
    for (i, unit) in units.iter().enumerate() {
        let conflict = unit.writes.iter().find(|w| {
            w.if_match.is_some_and(|expected| {
                current.get(&(w.resource_type.clone(), w.id.clone())) != Some(&expected)
            })
        });
        if let Some(w) = conflict {
            outcomes[i] = Some(Err(StoreError::VersionConflict(format!(
                "{}/{}",
                w.resource_type, w.id
            ))));
            keys_given_back(unit, &mut give_back);
        }
    }
    let mut duplicates: Vec<(usize, String)> = Vec::new();
    for (i, unit) in live(units, &outcomes) {
        if let Some(taken) = unit.idempotency.iter().find(|c| !claimed.contains(&c.key)) {
            duplicates.push((i, taken.key.clone()));
            keys_given_back(unit, &mut give_back);
        }
    }
    Settled {
        outcomes,
        give_back,
        duplicates,
    }
}

impl Settled {
    /// Answer each duplicate with the refs stored under the key it found taken.
    pub(super) fn answer_duplicates(&mut self, refs: &HashMap<String, Value>) {
        for (i, key) in std::mem::take(&mut self.duplicates) {
            let refs = refs.get(&key).cloned().unwrap_or(Value::Null);
            self.outcomes[i] = Some(Ok(CommitOutcome::Duplicate { key, refs }));
        }
    }

    /// One outcome per unit, once `committed` (the units written) has committed.
    pub(super) fn answers(
        self,
        committed: Vec<(usize, Vec<StoredResource>)>,
    ) -> Vec<Result<CommitOutcome, StoreError>> {
        let mut outcomes = self.outcomes;
        for (i, stored) in committed {
            outcomes[i] = Some(Ok(CommitOutcome::Committed(stored)));
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(StoreError::Corrupt("unit left unanswered".into()))))
            .collect()
    }
}

/// Every row the units still in play write, per statement (`*_ROWS`).
#[derive(Default)]
pub(super) struct BatchRows {
    pub resources: Vec<Vec<Bind>>,
    pub history: Vec<Vec<Bind>>,
    /// Resources replaced (version > 1), whose old search rows are deleted first.
    pub replaced: Vec<ResourceKey>,
    pub index: Vec<Vec<Bind>>,
    pub outbox: Vec<Vec<Bind>>,
    pub outbox_bodies: Vec<Vec<Bind>>,
    pub notifications: Vec<Vec<Bind>>,
    /// The units written, with what each stored (their answers once committed).
    pub committed: Vec<(usize, Vec<StoredResource>)>,
}

impl BatchRows {
    /// The rows of every unit `settled` left in play, rendered by its caller with
    /// predicted versions, or again here when one is not the version it gets (`current`).
    pub(super) fn of(
        units: &[&WriteUnit],
        mut prepared: Vec<Option<Prepared>>,
        current: &HashMap<ResourceKey, i64>,
        settled: &Settled,
        now: i64,
    ) -> BatchRows {
        let mut rows = BatchRows::default();
        for (i, unit) in live(units, &settled.outcomes) {
            let version_of = |k: usize| {
                let w = &unit.writes[k];
                current
                    .get(&(w.resource_type.clone(), w.id.clone()))
                    .map_or(1, |v| v + 1)
            };
            let mut rendered = prepared[i]
                .take()
                .unwrap_or_else(|| Prepared::render(unit, now, version_of));
            if !rendered.versions_hold(version_of) {
                rendered = Prepared::render(unit, rendered.now, version_of);
            }
            rows.push_unit(i, unit, rendered, now);
        }
        rows
    }

    fn push_unit(&mut self, i: usize, unit: &WriteUnit, rendered: Prepared, now: i64) {
        let Prepared {
            now: unit_now,
            stored,
            contents,
            indexes,
            outbox,
        } = rendered;
        for ((s, content), index) in stored.iter().zip(contents).zip(indexes) {
            let mut row = vec![
                Bind::Text(s.resource_type.clone()),
                Bind::Text(s.id.clone()),
                Bind::Int(s.version_id),
                Bind::Int(unit_now),
            ];
            self.resources.push(row.clone());
            row.push(Bind::Text(content));
            self.history.push(row);
            if s.version_id > 1 {
                self.replaced.push((s.resource_type.clone(), s.id.clone()));
            }
            for (param, value) in index {
                self.index.push(vec![
                    Bind::Text(s.resource_type.clone()),
                    Bind::Text(s.id.clone()),
                    Bind::Text(param.to_string()),
                    Bind::Text(value),
                ]);
            }
        }
        for m in outbox {
            self.outbox_bodies
                .push(vec![Bind::Text(m.id.clone()), Bind::Text(m.body)]);
            self.outbox.push(vec![
                Bind::Text(m.id),
                Bind::Text(m.destination),
                Bind::Text(m.routing_key),
                Bind::Text(m.message_type),
                Bind::Text(m.content_type),
                Bind::OptText(m.profile),
                Bind::OptText(m.correlation_id),
                Bind::OptText(m.traceparent),
                Bind::OptText(m.tracestate),
                Bind::Int(unit_now),
                Bind::Int(unit_now),
            ]);
        }
        for n in &unit.notifications {
            self.notifications.push(vec![
                Bind::Text(n.id.clone()),
                Bind::Text(n.subscription_id.clone()),
                Bind::Text(n.resource_type.clone()),
                Bind::Text(n.resource_id.clone()),
                Bind::Int(n.version_id),
                Bind::OptText(n.correlation_id.clone()),
                Bind::OptText(n.traceparent.clone()),
                Bind::OptText(n.tracestate.clone()),
                Bind::Int(now),
                Bind::Int(now),
            ]);
        }
        self.committed.push((i, stored));
    }

    /// The inserts after the replaced search rows are gone, in order, each with its rows.
    pub(super) fn inserts(self) -> [(&'static RowsSql, Vec<Vec<Bind>>); 6] {
        [
            (&RESOURCE_ROWS, self.resources),
            (&HISTORY_ROWS, self.history),
            (&INDEX_ROWS, self.index),
            (&OUTBOX_ROWS, self.outbox),
            (&OUTBOX_BODY_ROWS, self.outbox_bodies),
            (&NOTIFICATION_ROWS, self.notifications),
        ]
    }
}

/// Logged per batch at debug level ("store batch phases"): waiting for the write turn,
/// writing, committing.
pub(super) fn log_phases(
    units: usize,
    turn_started: std::time::Instant,
    writing_started: std::time::Instant,
    commit_started: std::time::Instant,
) {
    tracing::debug!(
        units,
        turn_micros = (writing_started - turn_started).as_micros() as u64,
        write_micros = (commit_started - writing_started).as_micros() as u64,
        commit_micros = commit_started.elapsed().as_micros() as u64,
        "store batch phases"
    );
}

impl Store {
    /// One outcome per unit, in order; `Err` when the transaction itself failed.
    /// PostgreSQL only: SQLite's batches are written by `sqlite_writer`.
    pub(super) async fn write_batch(
        &self,
        units: &[&WriteUnit],
        prepared: Vec<Option<Prepared>>,
        relay_claims: &[&OutboxClaim],
    ) -> Result<BatchOutcome, StoreError> {
        let now = now_millis();
        let turn_started = std::time::Instant::now();
        let mut tx = self.begin_write().await?;
        let writing_started = std::time::Instant::now();

        // 1 and 2, sent together: the current version of every resource written, and a
        // claim on every idempotency key. Versions per resource type, so that both databases
        // look ids up in the primary key (a row-value `IN (VALUES …)` made SQLite scan the
        // whole table). The keys of a unit that turns out to conflict or be a duplicate are
        // given back below (units of a batch share no key, so that is as if never claimed).
        let mut lookups = StatementBatch::new();
        for (rtype, ids) in ids_by_type(
            units
                .iter()
                .flat_map(|u| u.writes.iter())
                .map(|w| (&w.resource_type, &w.id)),
        ) {
            lookups.push_rows(
                (
                    "SELECT resource_type, id, version_id FROM resources \
                     WHERE resource_type = ?1 AND id IN (",
                    &[Bind::Text(rtype)],
                ),
                "?1",
                ")",
                ids,
            );
        }
        // Which keys this transaction claimed: `RETURNING` names them (another instance may
        // insert the same key concurrently), each as a row of the versions' shape marked by
        // an empty type, so that both come back from one statement (`run_union`).
        let returning = format!("{} RETURNING ''::text, key, 0::bigint", KEY_ROWS.tail);
        lookups.push_rows(
            (KEY_ROWS.head, &[]),
            KEY_ROWS.shape,
            &returning,
            key_claims(units, now),
        );
        let mut current: HashMap<ResourceKey, i64> = HashMap::new();
        let mut claimed: HashSet<String> = HashSet::new();
        for row in lookups.run_union(&mut tx).await? {
            let resource_type: String = row.try_get(0)?;
            if resource_type.is_empty() {
                claimed.insert(row.try_get(1)?);
            } else {
                current.insert((resource_type, row.try_get(1)?), row.try_get(2)?);
            }
        }
        let mut settled = settle(units, &current, &claimed);
        if !settled.give_back.is_empty() {
            let keys: Vec<Vec<Bind>> = settled
                .give_back
                .iter()
                .map(|key| vec![Bind::Text(key.clone())])
                .collect();
            run_rows(
                &mut tx,
                ("DELETE FROM idempotency_keys WHERE key IN (", &[]),
                "?1",
                ")",
                &keys,
            )
            .await?;
        }
        if !settled.duplicates.is_empty() {
            let wanted: Vec<Vec<Bind>> = settled
                .duplicates
                .iter()
                .map(|(_, key)| vec![Bind::Text(key.clone())])
                .collect();
            let mut refs: HashMap<String, Value> = HashMap::new();
            for row in run_rows(
                &mut tx,
                ("SELECT key, refs FROM idempotency_keys WHERE key IN (", &[]),
                "?1",
                ")",
                &wanted,
            )
            .await?
            {
                let text: String = row.try_get(1)?;
                let value = serde_json::from_str(&text)
                    .map_err(|_| StoreError::Corrupt("idempotency key".into()))?;
                refs.insert(row.try_get(0)?, value);
            }
            settled.answer_duplicates(&refs);
        }

        // 3. The writes of every unit still in play.
        let mut rows = BatchRows::of(units, prepared, &current, &settled, now);
        let committed = std::mem::take(&mut rows.committed);
        let wrote_outbox = !rows.outbox.is_empty();
        let wrote_notifications = !rows.notifications.is_empty();
        // The replaced versions' search rows go first, on their own: the inserts after them
        // may put some of the same rows back and are sent as one statement (see
        // `StatementBatch::run_writes`).
        let mut forget = StatementBatch::new();
        for (rtype, ids) in ids_by_type(rows.replaced.iter().map(|(t, i)| (t, i))) {
            forget.push_rows(
                (
                    "DELETE FROM search_index WHERE resource_type = ?1 AND id IN (",
                    &[Bind::Text(rtype)],
                ),
                "?1",
                ")",
                ids,
            );
        }
        forget.run_writes(&mut tx).await?;
        let mut statements = StatementBatch::new();
        for (sql, table_rows) in rows.inserts() {
            statements.push_rows((sql.head, &[]), sql.shape, sql.tail, table_rows);
        }
        statements.run_writes(&mut tx).await?;
        // 4. The relays' claims: mark what the broker confirmed, lease what is due (this
        // batch's new rows included, so they are published as soon as it commits).
        let mut leased = Vec::with_capacity(relay_claims.len());
        for relay_claim in relay_claims {
            leased.push(mark_sent_and_lease(&mut tx, relay_claim).await?);
        }
        let commit_started = std::time::Instant::now();
        tx.commit().await?;
        log_phases(units.len(), turn_started, writing_started, commit_started);
        self.signal_written(wrote_outbox, wrote_notifications);
        Ok((settled.answers(committed), leased))
    }

    /// Wake the relay and the notifier after a commit that gave them rows.
    pub(super) fn signal_written(&self, wrote_outbox: bool, wrote_notifications: bool) {
        if wrote_outbox {
            self.outbox_signal.notify_one();
        }
        if wrote_notifications {
            self.notification_signal.notify_one();
        }
    }
}

/// Ids grouped by resource type, as one-bind rows for `run_rows`.
fn ids_by_type<'a>(
    pairs: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<(String, Vec<Vec<Bind>>)> {
    let mut grouped: Vec<(String, Vec<Vec<Bind>>)> = Vec::new();
    for (rtype, id) in pairs {
        let row = vec![Bind::Text(id.clone())];
        match grouped.iter_mut().find(|(t, _)| t == rtype) {
            Some((_, ids)) => ids.push(row),
            None => grouped.push((rtype.clone(), vec![row])),
        }
    }
    grouped
}

/// Units that have no outcome yet, with their positions.
fn live<'a>(
    units: &'a [&'a WriteUnit],
    outcomes: &'a [Option<Result<CommitOutcome, StoreError>>],
) -> impl Iterator<Item = (usize, &'a WriteUnit)> + 'a {
    units
        .iter()
        .enumerate()
        .filter(move |(i, _)| outcomes[*i].is_none())
        .map(|(i, u)| (i, *u))
}
