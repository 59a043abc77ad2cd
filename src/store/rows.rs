//! Multi-row statements: many rows in one round trip.
//!
//! Owns: `Bind` (a value to bind without borrowing), and running one statement
//! template over many rows in chunks whose sizes are powers of two, so that a handful of
//! statement texts serve every batch size and the drivers' prepared-statement caches stay
//! warm.
//! Must not: know any table; callers give the statement head and row shape.

use super::StoreError;
use sqlx::any::AnyRow;
use sqlx::AssertSqlSafe;

/// Largest number of rows in one statement.
const MAX_ROWS: usize = 64;

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

/// PostgreSQL: statements of at most this many rows stay prepared.
const KEEP_PREPARED_ROWS: usize = 4;

/// One statement with its binds, and whether to keep it prepared.
struct Statement {
    sql: String,
    binds: Vec<Bind>,
    keep: bool,
}

/// PostgreSQL: most binds in one statement (its limit is 65,535).
const PG_MAX_BINDS: usize = 30_000;

/// SQLite: most binds in one statement of a multi-statement query (its limit,
/// `SQLITE_MAX_VARIABLE_NUMBER`, is 32,766 in the bundled build).
const SQLITE_MAX_BINDS: usize = 30_000;

/// `n` rows in as few statements as `max_rows` allows, of about equal size (`Cut::AtBindLimit`).
fn even_chunks(n: usize, max_rows: usize) -> Vec<usize> {
    let max_rows = max_rows.max(1);
    let count = n.div_ceil(max_rows);
    (0..count)
        .map(|i| n / count + usize::from(i < n % count))
        .collect()
}

/// SQLite: chunk sizes for `n` rows: powers of two, largest first, each ≤ `MAX_ROWS`.
fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while n > 0 {
        let size = if n >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        sizes.push(size);
        n -= size;
    }
    sizes
}

/// A row's placeholder tuple: `shape` uses `?1`, `?2`, … for the row's own binds, each
/// once and in order, e.g. `(?1, ?2, 0, ?3)`. PostgreSQL: renumbered to `$n` after
/// `offset` earlier binds. SQLite: plain `?` — SQLite resolves every *named* parameter
/// (`$n`, `?n`) by a linear scan when the driver binds it, which made a 64-row statement
/// quadratic to bind.
fn row_placeholders(shape: &str, offset: usize, numbered: bool) -> String {
    let mut out = String::with_capacity(shape.len() + 8);
    let mut chars = shape.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let n: usize = digits.parse().unwrap_or(1);
        if numbered {
            out.push('$');
            out.push_str(&(offset + n).to_string());
        } else {
            out.push('?');
        }
    }
    out
}

/// How a push's rows are cut into statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// SQLite, a statement run on its own: powers of two up to `MAX_ROWS` rows, each kept
    /// prepared (a handful of texts serve every batch size).
    PowersOfTwo,
    /// As few statements as `max_binds` allows, of about equal size. PostgreSQL (which cannot
    /// take several statements with binds in one query, so fewer, larger statements are what
    /// save round trips); and SQLite inside a multi-statement query, which is never kept
    /// prepared anyway and where each statement's result is one more message from sqlx's
    /// SQLite worker thread, often a wake-up of the thread waiting for it.
    AtBindLimit(usize),
}

/// The statements `{head} {row}, {row}, … {tail}` for every row, cut as `cut` says (each
/// row has the same number of binds, `shape` placeholders `?1..?k`), with their binds.
/// `lead` are binds of placeholders in `head` (written `?1..?j` there), bound first in every
/// statement.
fn chunk_statements(
    numbered: bool,
    cut: Cut,
    (head, lead): (&str, &[Bind]),
    shape: &str,
    tail: &str,
    rows: Vec<Vec<Bind>>,
) -> Vec<Statement> {
    let width = rows.first().map_or(1, Vec::len).max(1);
    let sizes = match cut {
        Cut::PowersOfTwo => chunk_sizes(rows.len()),
        Cut::AtBindLimit(max_binds) => {
            even_chunks(rows.len(), max_binds.saturating_sub(lead.len()) / width)
        }
    };
    let mut statements = Vec::new();
    let mut rows = rows.into_iter();
    for size in sizes {
        let chunk: Vec<Vec<Bind>> = rows.by_ref().take(size).collect();
        let mut sql = String::with_capacity(head.len() + tail.len() + size * (shape.len() + 8));
        sql.push_str(&row_placeholders(head, 0, numbered));
        let mut offset = lead.len();
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            } else {
                sql.push(' ');
            }
            sql.push_str(&row_placeholders(shape, offset, numbered));
            offset += row.len();
        }
        sql.push(' ');
        sql.push_str(tail);
        let binds = lead
            .iter()
            .cloned()
            .chain(chunk.into_iter().flatten())
            .collect();
        // Kept prepared when its text will come again: SQLite's power-of-two chunks, and
        // PostgreSQL statements of a few rows (a relay's handful of ids, one Task update).
        let keep = match cut {
            Cut::PowersOfTwo => true,
            Cut::AtBindLimit(_) => numbered && size <= KEEP_PREPARED_ROWS,
        };
        statements.push(Statement { sql, binds, keep });
    }
    statements
}

fn is_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
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
    let mut statements = StatementBatch::new(conn);
    statements.push_rows(head, shape, tail, rows.to_vec());
    statements.run(conn).await
}

/// Several statements sent to the database together.
///
/// On SQLite they go as ONE multi-statement query: the connection lives on sqlx's worker
/// thread, and every query is a hand-off to that thread and back, which on a busy 2-core
/// machine cost more than the SQL itself (a batch of referrals took about 25 of them).
/// The texts differ from batch to batch, so they are not kept in the prepared-statement
/// cache. On PostgreSQL (which cannot take several statements with binds in one query) they
/// run one after the other.
pub(super) struct StatementBatch {
    numbered: bool,
    pushes: Vec<Push>,
}

/// One `push_rows`, cut into statements when the batch runs (how depends on the rest).
struct Push {
    head: String,
    lead: Vec<Bind>,
    shape: String,
    tail: String,
    rows: Vec<Vec<Bind>>,
}

impl StatementBatch {
    pub(super) fn new(conn: &sqlx::AnyConnection) -> StatementBatch {
        StatementBatch {
            numbered: !is_sqlite(conn),
            pushes: Vec::new(),
        }
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

    /// The statements to run. PostgreSQL: each push in even chunks. SQLite: a lone push
    /// whose rows make one power-of-two chunk is one statement, kept prepared; anything else
    /// goes as one multi-statement query, never kept prepared, so each push is one statement
    /// there: a batch of 13 referrals wrote its rows in about 17 statements before (in
    /// power-of-two chunks), in 5 now.
    fn statements(self) -> Vec<Statement> {
        let numbered = self.numbered;
        let lone_prepared = self.pushes.len() == 1
            && self
                .pushes
                .first()
                .is_some_and(|p| chunk_sizes(p.rows.len()).len() == 1);
        let cut = if numbered {
            Cut::AtBindLimit(PG_MAX_BINDS)
        } else if lone_prepared {
            Cut::PowersOfTwo
        } else {
            Cut::AtBindLimit(SQLITE_MAX_BINDS)
        };
        self.pushes
            .into_iter()
            .flat_map(|p| {
                let head = (p.head.as_str(), p.lead.as_slice());
                chunk_statements(numbered, cut, head, &p.shape, &p.tail, p.rows)
            })
            .collect()
    }

    /// Run statements that return no rows (inserts, updates, deletes without `RETURNING`).
    /// On PostgreSQL they go as ONE statement, each a data-modifying `WITH` clause: each
    /// statement was a round trip (two for a text not prepared before), about a millisecond
    /// each on a busy machine, and a batch of referrals wrote seven of them. The clauses run
    /// on one snapshot, so they must not depend on one another's rows (a batch's inserts do
    /// not; a delete of rows the same batch inserts again must be run on its own first).
    pub(super) async fn run_writes(self, conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        let numbered = self.numbered;
        let statements = self.statements();
        if !combinable(numbered, &statements) {
            run_statements(numbered, statements, conn).await?;
            return Ok(());
        }
        let mut sql = with_clauses(&statements);
        sql.push_str(" SELECT 1");
        with_binds(sql, false, statements)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Run statements whose rows all have the same columns, returning their rows (in no
    /// particular order). PostgreSQL: as ONE statement, `WITH w0 AS (…), w1 AS (…) SELECT *
    /// FROM w0 UNION ALL SELECT * FROM w1 …`, one round trip instead of one per statement
    /// (SELECTs, and inserts with `RETURNING`; the clauses run on one snapshot, so none may
    /// read another's writes). Kept prepared when every statement would be on its own.
    /// SQLite: as `run`.
    pub(super) async fn run_union(
        self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let numbered = self.numbered;
        let statements = self.statements();
        if !combinable(numbered, &statements) {
            return run_statements(numbered, statements, conn).await;
        }
        let keep = statements.iter().all(|s| s.keep);
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

    /// Run every statement in order; the rows they return, in order.
    pub(super) async fn run(
        self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let numbered = self.numbered;
        run_statements(numbered, self.statements(), conn).await
    }
}

/// Whether `statements` can go as one statement of `WITH` clauses: PostgreSQL, more than
/// one of them, within the bind limit.
fn combinable(numbered: bool, statements: &[Statement]) -> bool {
    let binds: usize = statements.iter().map(|s| s.binds.len()).sum();
    numbered && statements.len() >= 2 && binds <= PG_MAX_BINDS
}

/// PostgreSQL: `WITH w0 AS (…), w1 AS (…)`, one clause per statement, placeholders
/// renumbered so that the statements' binds follow one another.
fn with_clauses(statements: &[Statement]) -> String {
    let mut sql = String::from("WITH ");
    let mut offset = 0;
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("w{i} AS ("));
        sql.push_str(&shift_placeholders(&statement.sql, offset));
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

/// Run `statements` in order (PostgreSQL: one by one; SQLite: as one query); the rows
/// they return, in order.
async fn run_statements(
    numbered: bool,
    statements: Vec<Statement>,
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<AnyRow>, StoreError> {
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    if numbered {
        let mut returned = Vec::new();
        for statement in statements {
            let mut query = sqlx::query(AssertSqlSafe(statement.sql)).persistent(statement.keep);
            for bind in statement.binds {
                query = bind.bind_owned(query);
            }
            returned.extend(query.fetch_all(&mut *conn).await?);
        }
        return Ok(returned);
    }
    // One statement: kept prepared as it says; several: a text of this batch only.
    let keep = statements.len() == 1 && statements.iter().all(|s| s.keep);
    let sql: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
    let mut query = sqlx::query(AssertSqlSafe(sql.join(";\n"))).persistent(keep);
    for bind in statements.into_iter().flat_map(|s| s.binds) {
        query = bind.bind_owned(query);
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// `$n` placeholders of a PostgreSQL statement renumbered as `$(n + by)`. Only for the
/// statements built here: their texts have no `$` outside placeholders.
fn shift_placeholders(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_and_cover_every_row() {
        for n in 0..300 {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_ROWS));
        }
        assert_eq!(chunk_sizes(13), vec![8, 4, 1]);
        assert_eq!(chunk_sizes(130), vec![64, 64, 2]);
    }

    fn batch(numbered: bool, pushes: &[usize]) -> StatementBatch {
        let mut batch = StatementBatch {
            numbered,
            pushes: Vec::new(),
        };
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
    fn sqlite_cuts_a_lone_push_in_prepared_powers_of_two_only_when_it_makes_one_statement() {
        assert_eq!(shape(batch(false, &[8]).statements()), vec![(8, true)]);
        // 13 rows would be 8 + 4 + 1, a multi-statement query anyway: one statement.
        assert_eq!(shape(batch(false, &[13]).statements()), vec![(13, false)]);
        // Several pushes: one statement each, none kept prepared.
        assert_eq!(
            shape(batch(false, &[26, 0, 190, 13]).statements()),
            vec![(26, false), (190, false), (13, false)]
        );
        // Past the bind limit, even chunks.
        let rows = SQLITE_MAX_BINDS / 2 + 10;
        let cut = shape(batch(false, &[rows, 1]).statements());
        assert_eq!(cut.len(), 3);
        assert_eq!(cut.iter().map(|(n, _)| n).sum::<usize>(), rows + 1);
    }

    #[test]
    fn postgres_cuts_each_push_in_even_chunks() {
        assert_eq!(
            shape(batch(true, &[3, 13]).statements()),
            vec![(3, true), (13, false)]
        );
    }

    #[test]
    fn combined_statements_bind_one_after_another() {
        let statements = batch(true, &[1, 2]).statements();
        assert_eq!(
            with_clauses(&statements),
            "WITH w0 AS (INSERT INTO t (a, b) VALUES ($1, $2) ), \
             w1 AS (INSERT INTO t (a, b) VALUES ($3, $4), ($5, $6) )"
        );
    }

    #[test]
    fn placeholders_shift_for_a_combined_statement() {
        assert_eq!(
            shift_placeholders("INSERT INTO t VALUES ($1, $2), ($3, 0)", 10),
            "INSERT INTO t VALUES ($11, $12), ($13, 0)"
        );
        assert_eq!(shift_placeholders("SELECT 1", 5), "SELECT 1");
    }

    #[test]
    fn postgres_chunks_are_few_and_even() {
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
    fn placeholders_are_renumbered_per_row() {
        assert_eq!(
            row_placeholders("(?1, ?2, 0, ?3)", 0, true),
            "($1, $2, 0, $3)"
        );
        assert_eq!(
            row_placeholders("(?1, ?2, 0, ?3)", 3, true),
            "($4, $5, 0, $6)"
        );
        assert_eq!(row_placeholders("(?1, ?10)", 10, true), "($11, $20)");
        assert_eq!(
            row_placeholders("(?1, ?2, 0, ?3)", 3, false),
            "(?, ?, 0, ?)"
        );
    }
}
