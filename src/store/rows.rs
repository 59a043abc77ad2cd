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
    pub(super) fn bind<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        match self {
            Bind::Text(s) => query.bind(s.clone()),
            Bind::OptText(s) => query.bind(s.clone()),
            Bind::Int(i) => query.bind(*i),
        }
    }
}

/// Chunk sizes for `n` rows: powers of two, largest first, each ≤ `MAX_ROWS`.
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

/// A row's placeholder tuple: `shape` uses `?1`, `?2`, … for the row's own binds, e.g.
/// `(?1, ?2, 0, ?2)`; they are renumbered to `$n` after `offset` earlier binds.
fn row_placeholders(shape: &str, offset: usize) -> String {
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
        out.push('$');
        out.push_str(&(offset + n).to_string());
    }
    out
}

/// Run `{head} {row}, {row}, … {tail}` for every row (each row has the same number of
/// binds, `shape` placeholders `?1..?k`), returning any rows the statements return.
pub(super) async fn run_rows(
    conn: &mut sqlx::AnyConnection,
    head: &str,
    shape: &str,
    tail: &str,
    rows: &[Vec<Bind>],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut returned = Vec::new();
    let mut start = 0;
    for size in chunk_sizes(rows.len()) {
        let chunk = &rows[start..start + size];
        start += size;
        let mut sql = String::with_capacity(head.len() + tail.len() + size * (shape.len() + 8));
        sql.push_str(head);
        let mut offset = 0;
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            } else {
                sql.push(' ');
            }
            sql.push_str(&row_placeholders(shape, offset));
            offset += row.len();
        }
        sql.push(' ');
        sql.push_str(tail);
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in chunk.iter().flatten() {
            query = bind.bind(query);
        }
        returned.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(returned)
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

    #[test]
    fn placeholders_are_renumbered_per_row() {
        assert_eq!(row_placeholders("(?1, ?2, 0, ?2)", 0), "($1, $2, 0, $2)");
        assert_eq!(row_placeholders("(?1, ?2, 0, ?2)", 2), "($3, $4, 0, $4)");
        assert_eq!(row_placeholders("(?1, ?10)", 10), "($11, $20)");
    }
}
