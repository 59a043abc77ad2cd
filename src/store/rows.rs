//! Multi-row statements: many rows in one round trip.
//!
//! Owns: `Bind` (a value to bind without borrowing, through sqlx or rusqlite), and, for
//! PostgreSQL's batch writer (`batch_write`), running one statement template over many rows
//! and sending several such statements as one (`StatementBatch`). SQLite's writer binds
//! rows one by one on its own connection (`sqlite_writer`) and uses only `Bind` from here.
//! Also `placeholder_list`, the `$n` list of an `IN (…)` that sqlx statements on either
//! backend use (`outbox`).
//! Must not: know any table; callers give the statement head and row shape.

use super::StoreError;
use sqlx::any::AnyRow;
use sqlx::AssertSqlSafe;

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(super) enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

impl Bind {
    /// Bind a copy (the same binds serve more than one query).
    pub(super) fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        self.clone().bind_owned(query)
    }

    /// Bind by moving the value in (a batch's binds are used once; their texts include
    /// whole resources and message bodies).
    fn bind_owned(self, query: AnyQuery<'_>) -> AnyQuery<'_> {
        match self {
            Bind::Text(s) => query.bind(s),
            Bind::OptText(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
        }
    }
}

/// The same values bound through SQLite's C API (the SQLite writer's own connection); texts
/// are borrowed, SQLite copies them as it binds.
impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Bind::Text(s) | Bind::OptText(Some(s)) => ValueRef::Text(s.as_bytes()),
            Bind::OptText(None) => ValueRef::Null,
            Bind::Int(i) => ValueRef::Integer(*i),
        }))
    }
}

/// Inserts of at most this many rows stay prepared (their texts come again: one Task
/// update). Statements that read (`SELECT`, `UPDATE`/`DELETE … WHERE`) are never kept:
/// PostgreSQL may settle on a generic plan for a kept statement, and one made while a
/// table was small can keep a sequential scan as the table grows (measured with the
/// batch's version lookups and key claims kept: 3–6 ms per call instead of 0.06; until an
/// ANALYZE, which this machine's disabled autovacuum never ran, it stays).
const KEEP_PREPARED_ROWS: usize = 4;

/// Combined writes (`run_writes`) of at most this many binds stay prepared: a group commit
/// of up to ≈ 25 referrals.
const KEEP_PREPARED_BINDS: usize = 2_000;

/// One statement with its binds, and whether to keep it prepared.
struct Statement {
    sql: String,
    binds: Vec<Bind>,
    keep: bool,
    /// It only inserts rows it is given (`cannot_scan` of its head).
    inserts_only: bool,
}

/// Most binds in one statement (PostgreSQL's limit is 65,535).
const MAX_BINDS: usize = 30_000;

/// `n` rows in as few statements as `max_rows` allows, of about equal size.
fn even_chunks(n: usize, max_rows: usize) -> Vec<usize> {
    let max_rows = max_rows.max(1);
    let count = n.div_ceil(max_rows);
    (0..count)
        .map(|i| n / count + usize::from(i < n % count))
        .collect()
}

/// `$first, $first+1, …`: `count` placeholders for an `IN (…)` list whose binds follow
/// `first - 1` others.
pub(super) fn placeholder_list(first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 5);
    for n in first..first + count {
        if n > first {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&n.to_string());
    }
    out
}

/// Placeholders renumbered for PostgreSQL: `?n` (the `*_ROWS` shapes and heads, written so
/// SQLite's writer can bind the same texts) and `$n` (statements already built here) both
/// become `$(n + by)`. E.g. `(?1, ?2, 0, ?3)` after 3 earlier binds is `($4, $5, 0, $6)`.
/// Only for the statements built here: their texts have no `?` or `$` outside placeholders.
fn renumber_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' && c != '$' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => {
                out.push('$');
                out.push_str(&(n + by).to_string());
            }
            Err(_) => out.push(c),
        }
    }
    out
}

/// The statements `{head} {row}, {row}, … {tail}` for every row, as few as the bind limit
/// allows and of about equal size (each row has the same number of binds, `shape`
/// placeholders `?1..?k`), with their binds. `lead` are binds of placeholders in `head`
/// (written `?1..?j` there), bound first in every statement.
fn chunk_statements(
    (head, lead): (&str, &[Bind]),
    shape: &str,
    tail: &str,
    rows: Vec<Vec<Bind>>,
) -> Vec<Statement> {
    let width = rows.first().map_or(1, Vec::len).max(1);
    let sizes = even_chunks(rows.len(), MAX_BINDS.saturating_sub(lead.len()) / width);
    let mut statements = Vec::new();
    let mut rows = rows.into_iter();
    for size in sizes {
        let chunk: Vec<Vec<Bind>> = rows.by_ref().take(size).collect();
        let mut sql = String::with_capacity(head.len() + tail.len() + size * (shape.len() + 8));
        sql.push_str(&renumber_placeholders(head, 0));
        let mut offset = lead.len();
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            } else {
                sql.push(' ');
            }
            sql.push_str(&renumber_placeholders(shape, offset));
            offset += row.len();
        }
        sql.push(' ');
        sql.push_str(tail);
        let binds = lead
            .iter()
            .cloned()
            .chain(chunk.into_iter().flatten())
            .collect();
        let inserts_only = cannot_scan(head);
        let keep = size <= KEEP_PREPARED_ROWS && inserts_only;
        statements.push(Statement {
            sql,
            binds,
            keep,
            inserts_only,
        });
    }
    statements
}

/// Run `{head} {row}, {row}, … {tail}` for every row (see `chunk_statements`), returning
/// any rows the statements return.
pub(super) async fn run_rows(
    conn: &mut sqlx::AnyConnection,
    head: (&str, &[Bind]),
    shape: &str,
    tail: &str,
    rows: &[Vec<Bind>],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut statements = StatementBatch::new();
    statements.push_rows(head, shape, tail, rows.to_vec());
    run_statements(statements.statements(), conn).await
}

/// Several statements sent to PostgreSQL together: as one statement of `WITH` clauses
/// where they can be (`run_writes`, `run_union`), since PostgreSQL cannot take several
/// statements with binds in one query and each statement is a round trip.
#[derive(Default)]
pub(super) struct StatementBatch {
    pushes: Vec<Push>,
}

/// One `push_rows`, cut into statements when the batch runs.
struct Push {
    head: String,
    lead: Vec<Bind>,
    shape: String,
    tail: String,
    rows: Vec<Vec<Bind>>,
}

impl StatementBatch {
    pub(super) fn new() -> StatementBatch {
        StatementBatch::default()
    }

    /// Add `{head} {row}, … {tail}` for every row (nothing when there are no rows); the rows'
    /// binds are moved in, not copied.
    pub(super) fn push_rows(
        &mut self,
        (head, lead): (&str, &[Bind]),
        shape: &str,
        tail: &str,
        rows: Vec<Vec<Bind>>,
    ) {
        if rows.is_empty() {
            return;
        }
        self.pushes.push(Push {
            head: head.to_string(),
            lead: lead.to_vec(),
            shape: shape.to_string(),
            tail: tail.to_string(),
            rows,
        });
    }

    /// The statements to run: each push in even chunks.
    fn statements(self) -> Vec<Statement> {
        self.pushes
            .into_iter()
            .flat_map(|p| {
                let head = (p.head.as_str(), p.lead.as_slice());
                chunk_statements(head, &p.shape, &p.tail, p.rows)
            })
            .collect()
    }

    /// Run statements that return no rows (inserts, updates, deletes without `RETURNING`)
    /// as ONE statement, each a data-modifying `WITH` clause: each statement was a round
    /// trip (two for a text not prepared before), about a millisecond each on a busy
    /// machine, and a batch of referrals wrote seven of them. The clauses run on one
    /// snapshot, so they must not depend on one another's rows (a batch's inserts do not; a
    /// delete of rows the same batch inserts again must be run on its own first).
    pub(super) async fn run_writes(self, conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        let statements = self.statements();
        if !combinable(&statements) {
            run_statements(statements, conn).await?;
            return Ok(());
        }
        let keep = keep_combined(&statements);
        let mut sql = with_clauses(&statements);
        sql.push_str(" SELECT 1");
        with_binds(sql, keep, statements)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Run statements whose rows all have the same columns, returning their rows (in no
    /// particular order), as ONE statement, `WITH w0 AS (…), w1 AS (…) SELECT * FROM w0
    /// UNION ALL SELECT * FROM w1 …`, one round trip instead of one per statement (SELECTs,
    /// and inserts with `RETURNING`; the clauses run on one snapshot, so none may read
    /// another's writes). Kept prepared as `keep_combined` says (key claims alone, not
    /// version lookups).
    pub(super) async fn run_union(
        self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let statements = self.statements();
        if !combinable(&statements) {
            return run_statements(statements, conn).await;
        }
        let keep = keep_combined(&statements);
        let mut sql = with_clauses(&statements);
        let selects: Vec<String> = (0..statements.len())
            .map(|i| format!("SELECT * FROM w{i}"))
            .collect();
        sql.push(' ');
        sql.push_str(&selects.join(" UNION ALL "));
        Ok(with_binds(sql, keep, statements)
            .fetch_all(&mut *conn)
            .await?)
    }
}

/// Whether to keep a combined statement prepared: when it only inserts, while it is small.
/// A group commit's inserts have one of a few dozen shapes (the texts differ only in how
/// many rows each clause has), so kept prepared they are parsed and planned once per
/// connection instead of at every batch: PostgreSQL settles on a generic plan, which for
/// inserts is the plan a fresh one would be. Never for statements that read (see
/// `KEEP_PREPARED_ROWS`). Large inserts are rare and would hold a large plan in the
/// connection's cache.
fn keep_combined(statements: &[Statement]) -> bool {
    statements.iter().all(|s| s.inserts_only)
        && statements.iter().map(|s| s.binds.len()).sum::<usize>() <= KEEP_PREPARED_BINDS
}

/// Whether a statement with this head only inserts rows it is given (`INSERT … VALUES`,
/// with or without `ON CONFLICT`): no plan of it can scan a table.
fn cannot_scan(sql: &str) -> bool {
    sql.trim_start().starts_with("INSERT") && !sql.contains("SELECT")
}

/// Whether `statements` can go as one statement of `WITH` clauses: more than one of them,
/// within the bind limit.
fn combinable(statements: &[Statement]) -> bool {
    let binds: usize = statements.iter().map(|s| s.binds.len()).sum();
    statements.len() >= 2 && binds <= MAX_BINDS
}

/// `WITH w0 AS (…), w1 AS (…)`, one clause per statement, placeholders renumbered so that
/// the statements' binds follow one another.
fn with_clauses(statements: &[Statement]) -> String {
    let mut sql = String::from("WITH ");
    let mut offset = 0;
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("w{i} AS ("));
        sql.push_str(&renumber_placeholders(&statement.sql, offset));
        sql.push(')');
        offset += statement.binds.len();
    }
    sql
}

/// `sql` with every statement's binds, in order.
fn with_binds(sql: String, keep: bool, statements: Vec<Statement>) -> AnyQuery<'static> {
    let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(keep);
    for bind in statements.into_iter().flat_map(|s| s.binds) {
        query = bind.bind_owned(query);
    }
    query
}

/// Run `statements` one by one; the rows they return, in order.
async fn run_statements(
    statements: Vec<Statement>,
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<AnyRow>, StoreError> {
    let mut returned = Vec::new();
    for statement in statements {
        let mut query = sqlx::query(AssertSqlSafe(statement.sql)).persistent(statement.keep);
        for bind in statement.binds {
            query = bind.bind_owned(query);
        }
        returned.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(returned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pushes: &[usize]) -> StatementBatch {
        let mut batch = StatementBatch::new();
        for &n in pushes {
            let rows = (0..n as i64)
                .map(|i| vec![Bind::Int(i), Bind::Int(i)])
                .collect();
            batch.push_rows(("INSERT INTO t (a, b) VALUES", &[]), "(?1, ?2)", "", rows);
        }
        batch
    }

    /// (rows, kept prepared) of each statement.
    fn shape(statements: Vec<Statement>) -> Vec<(usize, bool)> {
        statements
            .into_iter()
            .map(|s| (s.binds.len() / 2, s.keep))
            .collect()
    }

    #[test]
    fn each_push_is_cut_in_even_chunks_and_small_ones_stay_prepared() {
        assert_eq!(
            shape(batch(&[3, 0, 13]).statements()),
            vec![(3, true), (13, false)]
        );
        // Past the bind limit, even chunks.
        let rows = MAX_BINDS / 2 + 10;
        let cut = shape(batch(&[rows, 1]).statements());
        assert_eq!(cut.len(), 3);
        assert_eq!(cut.iter().map(|(n, _)| n).sum::<usize>(), rows + 1);
        assert!(cut[0].0.abs_diff(cut[1].0) <= 1);
    }

    #[test]
    fn combined_statements_bind_one_after_another() {
        let statements = batch(&[1, 2]).statements();
        assert_eq!(
            with_clauses(&statements),
            "WITH w0 AS (INSERT INTO t (a, b) VALUES ($1, $2) ), \
             w1 AS (INSERT INTO t (a, b) VALUES ($3, $4), ($5, $6) )"
        );
        assert!(combinable(&statements));
        assert!(!combinable(&batch(&[2]).statements()));
    }

    #[test]
    fn inserts_stay_prepared_while_small_and_reads_never() {
        assert!(keep_combined(&batch(&[3, 40]).statements()));
        let too_big = KEEP_PREPARED_BINDS / 2 + 1;
        assert!(!keep_combined(&batch(&[1, too_big]).statements()));
        let mut reads = StatementBatch::new();
        reads.push_rows(
            ("SELECT a FROM t WHERE a IN (", &[]),
            "?1",
            ")",
            vec![vec![Bind::Int(1)]],
        );
        reads.push_rows(
            ("INSERT INTO t (a, b) VALUES", &[]),
            "(?1, ?2)",
            "",
            vec![vec![Bind::Int(1), Bind::Int(2)]],
        );
        let statements = reads.statements();
        assert!(!keep_combined(&statements));
        // Even on its own, a small read is not kept; a small insert is.
        assert_eq!(
            statements.iter().map(|s| s.keep).collect::<Vec<_>>(),
            vec![false, true]
        );
    }

    #[test]
    fn placeholders_shift_for_a_combined_statement() {
        assert_eq!(
            renumber_placeholders("INSERT INTO t VALUES ($1, $2), ($3, 0)", 10),
            "INSERT INTO t VALUES ($11, $12), ($13, 0)"
        );
        assert_eq!(renumber_placeholders("SELECT 1", 5), "SELECT 1");
    }

    #[test]
    fn chunks_are_few_and_even() {
        for n in 0..300 {
            for max in [1, 7, 64, 1000] {
                let sizes = even_chunks(n, max);
                assert_eq!(sizes.iter().sum::<usize>(), n);
                assert_eq!(sizes.len(), n.div_ceil(max));
                assert!(sizes.iter().all(|s| *s >= 1 && *s <= max));
            }
        }
        assert_eq!(even_chunks(10, 4), vec![4, 3, 3]);
    }

    #[test]
    fn in_lists_number_their_placeholders_after_the_others() {
        assert_eq!(placeholder_list(3, 3), "$3, $4, $5");
        assert_eq!(placeholder_list(1, 1), "$1");
        assert_eq!(placeholder_list(1, 0), "");
    }

    #[test]
    fn placeholders_are_renumbered_per_row() {
        assert_eq!(
            renumber_placeholders("(?1, ?2, 0, ?3)", 0),
            "($1, $2, 0, $3)"
        );
        assert_eq!(
            renumber_placeholders("(?1, ?2, 0, ?3)", 3),
            "($4, $5, 0, $6)"
        );
        assert_eq!(renumber_placeholders("(?1, ?10)", 10), "($11, $20)");
    }
}
