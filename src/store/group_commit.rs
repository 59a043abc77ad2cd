//! Group commit: concurrent `Store::commit` calls share one database transaction.
//!
//! Owns: the store's writer task (the one place `WriteUnit`s are written), gathering the
//! units queued while the previous batch was being written into the next batch, keeping
//! the units of one batch disjoint (no shared idempotency key or resource; a unit that
//! touches what an earlier queued unit touches waits for the next batch, so queued order
//! is kept), and falling back to one transaction per unit when a batch fails, so one bad
//! unit never fails its neighbours.
//! Must not: change what a unit means. Every unit still commits all-or-nothing, and its
//! outcome (Committed / Duplicate / VersionConflict / error) is what it would have been
//! had it been committed alone at its place in the queue. A caller is answered only after
//! the transaction holding its unit has committed.
//!
//! Why: a referral writes about ten rows. One transaction per referral costs ten round
//! trips and a commit each; a batch of N referrals costs about ten multi-row statements
//! and one commit in all (see `batch_write`).

use super::outbox::{ClaimReply, OutboxClaim};
use super::prepared::Prepared;
use super::sqlite_writer::SqliteWriter;
use super::{CommitOutcome, Store, StoreError, WriteUnit};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// How the writer has batched so far (this process): transactions written and units in
/// them. `units / batches` is the mean batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    pub batches: u64,
    pub units: u64,
}

/// Shared counters behind `Store::writer_stats`.
#[derive(Debug, Default)]
pub(super) struct WriterCounters {
    batches: AtomicU64,
    units: AtomicU64,
}

impl WriterCounters {
    pub(super) fn snapshot(&self) -> WriterStats {
        WriterStats {
            batches: self.batches.load(Ordering::Relaxed),
            units: self.units.load(Ordering::Relaxed),
        }
    }

    fn record(&self, units: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.units.fetch_add(units as u64, Ordering::Relaxed);
        crate::telemetry::metrics::commit_batch(units);
    }
}

/// Most units in one transaction.
const MAX_BATCH: usize = 128;
/// Units that may wait for the writer before `commit` callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

/// A unit waiting for the writer, with the way back to its caller.
pub(super) struct CommitRequest {
    pub unit: WriteUnit,
    /// The unit's rows, rendered by the caller (`None`: the writer renders them).
    pub prepared: Option<Prepared>,
    pub reply: oneshot::Sender<Result<CommitOutcome, StoreError>>,
}

/// A relay's claim queued for the writer, with where to answer it.
pub(super) type QueuedClaim = (OutboxClaim, ClaimReply);

/// PostgreSQL: the pool the writer connects for itself, on its own runtime.
pub(super) type WriterPool = (sqlx::any::AnyPoolOptions, sqlx::any::AnyConnectOptions);

/// Start the writer task for `writer` (a store handle without a queue of its own) and
/// return its queues: units to commit, and relay claims to run inside the next batch's
/// transaction. The task ends when every unit sender is dropped.
/// `own_connection`: SQLite's writer connection, on which batches are written without sqlx.
/// `own_pool`: PostgreSQL's writer pool, connected on the writer's runtime.
///
/// The writer gets a thread and a runtime of its own on both backends. SQLite: with its own
/// connection it writes each batch there synchronously (`sqlite_writer`), which would stall
/// a runtime that also runs request tasks. PostgreSQL: a batch is a few round trips inside
/// a transaction; on the shared runtime each answer woke the writer into a run queue behind
/// the request tasks, and its connections' sockets were polled by that runtime's busy
/// workers, so the server sat "idle in transaction" waiting for the next statement (2 of 3
/// samples of `pg_stat_activity` in a saturated run). Its connections are therefore made
/// on its own runtime too; if that fails, it uses the shared pool.
pub(super) fn spawn_writer(
    writer: Store,
    own_connection: Option<SqliteWriter>,
    own_pool: Option<WriterPool>,
) -> (mpsc::Sender<CommitRequest>, mpsc::Sender<QueuedClaim>) {
    let (queue, requests) = mpsc::channel(QUEUE_DEPTH);
    let (claim_queue, claims) = mpsc::channel(64);
    let work = async move {
        let mut writer = writer;
        let mut connected = None;
        if let Some((options, connect)) = own_pool {
            match options.connect_with(connect).await {
                Ok(pool) => {
                    writer.pool = pool.clone();
                    connected = Some(pool);
                }
                Err(err) => tracing::warn!(
                    error = %err,
                    "the store writer cannot connect a pool of its own; it shares the service's"
                ),
            }
        }
        run_writer(writer, own_connection, requests, claims).await;
        if let Some(pool) = connected {
            pool.close().await;
        }
    };
    let thread = std::thread::Builder::new()
        .name("spbridge-store-writer".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(work),
                Err(err) => {
                    tracing::error!(error = %err, "cannot start the store writer's runtime")
                }
            }
        });
    if let Err(err) = thread {
        tracing::error!(error = %err, "cannot start the store writer's thread");
    }
    (queue, claim_queue)
}

/// Batches the writer may have in flight at once. SQLite: one (the database has one write
/// lock). PostgreSQL: more, because there a batch's time is mostly waiting for the server
/// (a write phase of ≈ 9 ms per batch of 16 with the machine 18 % idle), and concurrent
/// transactions are safe there: several spbridge instances on one database already write
/// concurrently. Batches in flight together never share a key or a resource (`busy`), so
/// each unit's outcome is still the one it would have had alone at its place in the queue.
/// A lane beyond the first opens only when enough units wait, or they have been held back
/// long enough (`PARALLEL_BATCH_MIN`, `GATHER_WAIT`).
pub(super) fn lanes(writer: &Store) -> usize {
    match writer.backend {
        super::Backend::Sqlite => 1,
        super::Backend::Postgres => 3,
    }
}

/// Units that must be waiting before a batch starts beside one already in flight, unless
/// the writer has held them back for `GATHER_WAIT`.
///
/// Every transaction has a fixed cost (on PostgreSQL: `BEGIN`, the lookups, the commit
/// record and its WAL flush, the round trips), paid once whatever the batch holds. With
/// three lanes opened at once, 32 clients kept three batches of ≈ 5 referrals going
/// (4,197 transactions for 20,000 referrals). Holding units back while a batch is in
/// flight, until 8 wait or they have been held back 3 ms, makes fewer, larger transactions
/// when the writer is saturated and costs a unit at most `GATHER_WAIT` otherwise: less
/// machine time per referral in every pair measured, a few per cent more referrals/s
/// (BENCHMARKS.md, session 14). PostgreSQL's `commit_delay` is the same idea. With nothing
/// in flight, a unit starts at once.
const PARALLEL_BATCH_MIN: usize = 8;
/// The longest a unit waits for a lane beyond the first (see `PARALLEL_BATCH_MIN`).
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(3);

/// Whether the writer may start a batch now (lanes permitting), with `in_flight` batches
/// being written and `waiting` units queued, held back for `waited` so far. The clock starts
/// when the writer first holds a unit back beside a batch in flight, and restarts when a
/// batch starts: a unit left waiting then (it clashes with a batch in flight) may wait
/// `GATHER_WAIT` once more.
fn may_start_beside(in_flight: usize, waiting: usize, waited: std::time::Duration) -> bool {
    in_flight == 0 || waiting >= PARALLEL_BATCH_MIN || waited >= GATHER_WAIT
}

async fn run_writer(
    writer: Store,
    own_connection: Option<SqliteWriter>,
    mut requests: mpsc::Receiver<CommitRequest>,
    mut relay_claims: mpsc::Receiver<QueuedClaim>,
) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let lanes = lanes(&writer);
    let own_connection = own_connection.map(std::sync::Mutex::new);
    let mut waiting: VecDeque<CommitRequest> = VecDeque::new();
    let mut claims_waiting: Vec<QueuedClaim> = Vec::new();
    let (mut requests_open, mut claims_open) = (true, true);
    // Batches being written, each answering with its number when done; what each claims.
    let mut in_flight = FuturesUnordered::new();
    let mut busy: Vec<(u64, HashSet<String>)> = Vec::new();
    let mut next_batch: u64 = 0;
    // Set when what is waiting cannot start until a batch in flight is done.
    let mut stalled = false;
    // Since when units have been waiting with a batch in flight (`may_start_beside`).
    let mut gathering_since: Option<std::time::Instant> = None;
    loop {
        let full = in_flight.len() >= lanes;
        if !full {
            while waiting.len() < MAX_BATCH * 2 {
                match requests.try_recv() {
                    Ok(request) => waiting.push_back(request),
                    Err(_) => break,
                }
            }
            while let Ok(claim) = relay_claims.try_recv() {
                claims_waiting.push(claim);
            }
        }
        let nothing_to_start = waiting.is_empty() && claims_waiting.is_empty();
        if nothing_to_start || in_flight.is_empty() {
            gathering_since = None;
        }
        let since = *gathering_since.get_or_insert_with(std::time::Instant::now);
        let gathering = !may_start_beside(in_flight.len(), waiting.len(), since.elapsed());
        if full || nothing_to_start || stalled || gathering {
            if !requests_open && nothing_to_start && in_flight.is_empty() {
                return;
            }
            // While every lane is busy only a finished batch is awaited: new units wait in
            // the channel (as they did with one batch at a time) instead of waking the
            // writer one by one. While gathering for a second lane, units are taken as they
            // come, to count them.
            tokio::select! {
                done = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(done) = done {
                        busy.retain(|(id, _)| *id != done);
                    }
                    stalled = false;
                }
                request = requests.recv(), if requests_open && !full => match request {
                    Some(request) => {
                        waiting.push_back(request);
                        stalled = false;
                    }
                    None => requests_open = false,
                },
                _ = tokio::time::sleep_until((since + GATHER_WAIT).into()), if gathering && !full && !stalled => {}
                claim = relay_claims.recv(), if claims_open && !full => match claim {
                    Some(claim) => {
                        claims_waiting.push(claim);
                        stalled = false;
                    }
                    None => claims_open = false,
                },
            }
            continue;
        }
        let claims_now = std::mem::take(&mut claims_waiting);
        let held: HashSet<String> = busy.iter().flat_map(|(_, c)| c.iter().cloned()).collect();
        let mut batch = take_disjoint(&mut waiting, held);
        if batch.requests.is_empty() && claims_now.is_empty() {
            stalled = true;
            continue;
        }
        gathering_since = None;
        let id = next_batch;
        next_batch += 1;
        busy.push((id, std::mem::take(&mut batch.claims)));
        let writer = &writer;
        let own_connection = own_connection.as_ref();
        in_flight.push(async move {
            let units = batch.requests.len();
            let started = std::time::Instant::now();
            if units == 0 && own_connection.is_none() {
                // Relay claims alone on PostgreSQL: each in a transaction of its own.
                claim_each(writer, None, claims_now).await;
            } else if units == 0 {
                // Relay claims alone: one transaction on the writer's own connection.
                write_and_answer(writer, own_connection, batch, claims_now).await;
            } else {
                writer.writer_counters.record(units);
                write_and_answer(writer, own_connection, batch, claims_now).await;
                tracing::debug!(
                    units,
                    micros = started.elapsed().as_micros() as u64,
                    "store batch written"
                );
            }
            id
        });
    }
}

/// What a unit claims: its idempotency keys and the resources it writes.
fn claims(unit: &WriteUnit) -> Vec<String> {
    let mut out: Vec<String> = unit
        .idempotency
        .iter()
        .map(|c| format!("key\u{1f}{}", c.key))
        .collect();
    out.extend(
        unit.writes
            .iter()
            .map(|w| format!("res\u{1f}{}\u{1f}{}", w.resource_type, w.id)),
    );
    out
}

/// The next transaction's units, and whether it is one unit that names one thing twice
/// (a batch of its own, written by `commit_one`, which applies its writes in order).
struct Batch {
    requests: Vec<CommitRequest>,
    alone: bool,
    /// What its units claim (`claims`), held until the batch is written.
    claims: HashSet<String>,
}

/// Take, in queue order, the units that claim nothing a unit ahead of them (taken or left
/// waiting) or a batch still in flight (`held`) claims, up to `MAX_BATCH`; the rest stay
/// queued in order. A unit that names one thing twice is written in a batch of its own.
fn take_disjoint(waiting: &mut VecDeque<CommitRequest>, held: HashSet<String>) -> Batch {
    let mut seen = held;
    let mut batch = Vec::new();
    let mut batch_claims = HashSet::new();
    let mut closed = false;
    let mut left = VecDeque::new();
    for request in waiting.drain(..) {
        let mut own: HashSet<String> = HashSet::new();
        let mut repeats = false;
        for claim in claims(&request.unit) {
            repeats |= !own.insert(claim);
        }
        let blocked = own.iter().any(|c| seen.contains(c));
        let taken =
            !(blocked || closed || batch.len() >= MAX_BATCH || (repeats && !batch.is_empty()));
        if taken {
            batch_claims.extend(own.iter().cloned());
        }
        seen.extend(own);
        if !taken {
            left.push_back(request);
            continue;
        }
        closed = repeats;
        batch.push(request);
    }
    *waiting = left;
    Batch {
        requests: batch,
        alone: closed,
        claims: batch_claims,
    }
}

/// Write a batch (and the relay claims, in the same transaction) and answer its callers;
/// on failure, write each unit, and run each claim, on its own.
async fn write_and_answer(
    writer: &Store,
    own_connection: Option<&std::sync::Mutex<SqliteWriter>>,
    batch: Batch,
    claims: Vec<QueuedClaim>,
) {
    if batch.alone {
        commit_each(writer, batch.requests).await;
        return claim_each(writer, own_connection, claims).await;
    }
    let mut batch = batch.requests;
    let prepared: Vec<Option<Prepared>> = batch.iter_mut().map(|r| r.prepared.take()).collect();
    let units: Vec<&WriteUnit> = batch.iter().map(|r| &r.unit).collect();
    let claimed: Vec<&OutboxClaim> = claims.iter().map(|(c, _)| c).collect();
    let written = match own_connection {
        Some(conn) => SqliteWriter::write_batch(conn, writer, &units, prepared, &claimed).await,
        None => writer.write_batch(&units, prepared, &claimed).await,
    };
    match written {
        Ok((outcomes, leased)) => {
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
            for ((_, reply), rows) in claims.into_iter().zip(leased) {
                let _ = reply.send(Ok(rows));
            }
        }
        Err(err) => {
            tracing::warn!(units = batch.len(), error = %err, "batch commit failed; committing its units one by one");
            commit_each(writer, batch).await;
            claim_each(writer, own_connection, claims).await;
        }
    }
}

/// Run each relay claim in a transaction of its own and answer it (on SQLite, on the
/// writer's own connection).
async fn claim_each(
    writer: &Store,
    own_connection: Option<&std::sync::Mutex<SqliteWriter>>,
    claims: Vec<QueuedClaim>,
) {
    for (claim, reply) in claims {
        let claimed = match own_connection {
            Some(conn) => SqliteWriter::write_batch(conn, writer, &[], Vec::new(), &[&claim])
                .await
                .and_then(|(_, leased)| {
                    leased
                        .into_iter()
                        .next()
                        .ok_or_else(|| StoreError::Corrupt("claim left unanswered".into()))
                }),
            None => writer.claim_in_own_transaction(&claim).await,
        };
        let _ = reply.send(claimed);
    }
}

/// Write each unit in a transaction of its own and answer its caller.
async fn commit_each(writer: &Store, requests: Vec<CommitRequest>) {
    for request in requests {
        let outcome = writer.commit_one(request.unit).await;
        let _ = request.reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IdempotencyClaim, ResourceWrite};
    use serde_json::json;

    fn unit(keys: &[&str], resources: &[&str]) -> CommitRequest {
        let (reply, _) = oneshot::channel();
        CommitRequest {
            unit: WriteUnit {
                writes: resources
                    .iter()
                    .map(|id| ResourceWrite {
                        resource_type: "Task".into(),
                        id: id.to_string(),
                        resource: json!({}),
                        if_match: None,
                    })
                    .collect(),
                idempotency: keys
                    .iter()
                    .map(|k| IdempotencyClaim {
                        key: k.to_string(),
                        refs: json!({}),
                    })
                    .collect(),
                ..Default::default()
            },
            prepared: None,
            reply,
        }
    }

    fn ids(batch: &[CommitRequest]) -> Vec<String> {
        batch
            .iter()
            .map(|r| {
                r.unit
                    .writes
                    .first()
                    .map(|w| w.id.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The ids of the next batch, with nothing in flight.
    fn next(waiting: &mut VecDeque<CommitRequest>) -> Vec<String> {
        ids(&take_disjoint(waiting, HashSet::new()).requests)
    }

    #[test]
    fn a_second_batch_starts_beside_one_in_flight_when_enough_units_wait_or_one_waited_long() {
        let now = std::time::Duration::ZERO;
        let short = GATHER_WAIT / 2;
        assert!(
            may_start_beside(0, 1, now),
            "nothing in flight: one unit starts at once"
        );
        assert!(!may_start_beside(1, 1, now));
        assert!(!may_start_beside(1, PARALLEL_BATCH_MIN - 1, short));
        assert!(may_start_beside(1, PARALLEL_BATCH_MIN, now));
        assert!(may_start_beside(2, PARALLEL_BATCH_MIN + 5, now));
        assert!(
            may_start_beside(1, 1, GATHER_WAIT),
            "no unit waits longer than GATHER_WAIT"
        );
        assert!(!may_start_beside(2, 1, short));
    }

    #[test]
    fn units_sharing_a_key_or_resource_wait_for_the_next_batch_in_order() {
        let mut waiting: VecDeque<CommitRequest> = [
            unit(&["k1"], &["a"]),
            unit(&["k2"], &["b"]),
            unit(&["k1"], &["c"]), // same key as a
            unit(&["k3"], &["b"]), // same resource as b
            unit(&["k4"], &["c"]), // same resource as the waiting c: keeps its place behind it
            unit(&["k5"], &["e"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(next(&mut waiting), ["a", "b", "e"]);
        assert_eq!(next(&mut waiting), ["c", "b"]);
        assert_eq!(next(&mut waiting), ["c"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn units_sharing_a_key_or_resource_with_a_batch_in_flight_wait_for_it_in_order() {
        let mut waiting: VecDeque<CommitRequest> = [
            unit(&["k1"], &["a"]), // same key as the batch in flight
            unit(&["k2"], &["b"]),
            unit(&["k3"], &["x"]), // same resource as the batch in flight
            unit(&["k4"], &["a"]), // behind the waiting a
        ]
        .into_iter()
        .collect();
        let held: HashSet<String> = claims(&unit(&["k1"], &["x"]).unit).into_iter().collect();
        let first = take_disjoint(&mut waiting, held);
        assert_eq!(ids(&first.requests), ["b"]);
        // What the batch holds while in flight: exactly what its units claim.
        let b: HashSet<String> = claims(&unit(&["k2"], &["b"]).unit).into_iter().collect();
        assert_eq!(first.claims, b);
        assert_eq!(next(&mut waiting), ["a", "x"]);
        assert_eq!(next(&mut waiting), ["a"]);
    }

    #[test]
    fn a_unit_naming_one_resource_twice_goes_alone_but_is_never_stuck() {
        let mut waiting: VecDeque<CommitRequest> =
            [unit(&["k1"], &["a", "a"]), unit(&["k2"], &["b"])]
                .into_iter()
                .collect();
        let first = take_disjoint(&mut waiting, HashSet::new());
        assert!(first.alone);
        assert_eq!(ids(&first.requests), ["a"]);
        let second = take_disjoint(&mut waiting, HashSet::new());
        assert!(!second.alone);
        assert_eq!(ids(&second.requests), ["b"]);
    }
}
