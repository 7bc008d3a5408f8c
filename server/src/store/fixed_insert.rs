//! SQLite bulk inserts as prepared statements of a few fixed row counts.
//!
//! A multi-row `INSERT` whose values are inlined, or whose row count changes from one batch
//! to the next, is a new statement every time: SQLite tokenizes, parses and plans all of it
//! while holding the write lock (for the AuditEvent trail's batches, about a sixth of the
//! writer's time). Here rows go in chunks of [`SIZES`] rows instead, each size one
//! `INSERT … VALUES (?, …), …` text that sqlx prepares once per connection and keeps in
//! its statement cache; only the values are bound on each use.

use serde_json::Value;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// Row counts of the statements, largest first; every count is a sum of them, so `n` rows
/// take at most `n / 512 + 9` statements. Each statement is a hand-over to the
/// connection's thread and a run of its own: for the AuditEvent trail (13 index rows per
/// event) 512 rows took ~8 % less writer time than 128, and 1,024 or 2,048 no less than
/// 512 (`trail_write`). The largest binds 5,120 values (ten columns), well within SQLite's
/// 32,766.
const SIZES: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// What a statement does when one of its rows breaks a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// Undo the rows it inserted before (SQLite's default, `ABORT`). To be able to, SQLite
    /// keeps a statement journal: a copy of each page the statement changes, taken before
    /// its first change.
    UndoStatement,
    /// Stop and leave them (`INSERT OR FAIL`): no statement journal. For tables without
    /// unique constraints, written in transactions that every error rolls back whole (so
    /// a half-done statement is never committed).
    Stop,
}

/// A query of [`FixedInsert`]'s statements, borrowing its values for `'q`.
pub(crate) type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// The statements inserting into one table's columns.
#[derive(Debug)]
pub(crate) struct FixedInsert {
    texts: [String; SIZES.len()],
}

impl FixedInsert {
    /// Statements inserting `columns` of `table`, returning `returning` when not empty.
    pub(crate) fn new(
        table: &str,
        columns: &[String],
        returning: &str,
        on_error: OnError,
    ) -> FixedInsert {
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        let verb = match on_error {
            OnError::UndoStatement => "INSERT",
            OnError::Stop => "INSERT OR FAIL",
        };
        let texts = SIZES.map(|n| {
            let mut sql = format!("{verb} INTO {table} ({}) VALUES ", columns.join(", "));
            sql.push_str(&vec![row.as_str(); n].join(", "));
            if !returning.is_empty() {
                sql.push_str(" RETURNING ");
                sql.push_str(returning);
            }
            sql
        });
        FixedInsert { texts }
    }

    /// `rows` in chunks, each with the statement of its length, in order.
    pub(crate) fn chunks<'r, T>(
        &'r self,
        rows: &'r [T],
    ) -> impl Iterator<Item = (&'r str, &'r [T])> + 'r {
        let mut rest = rows;
        std::iter::from_fn(move || {
            let i = SIZES.iter().position(|&size| size <= rest.len())?;
            let (chunk, tail) = rest.split_at(SIZES[i]);
            rest = tail;
            Some((self.texts[i].as_str(), chunk))
        })
    }

    /// Inserts `rows` on `conn`, one statement per chunk, `bind` binding one row's values in
    /// column order.
    pub(crate) async fn execute<'q, T>(
        &'q self,
        conn: &mut sqlx::AnyConnection,
        rows: &'q [T],
        bind: impl Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
    ) -> Result<(), sqlx::Error> {
        for (sql, chunk) in self.chunks(rows) {
            let query = chunk.iter().fold(sqlx::query(sql), &bind);
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// Binds a JSON scalar: a string as text, an integer as an integer, any other number as a
/// double, anything else as NULL.
pub(crate) fn bind_json<'q>(query: AnyQuery<'q>, value: &'q Value) -> AnyQuery<'q> {
    match value {
        Value::String(s) => query.bind(s.as_str()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => query.bind(i),
            None => query.bind(n.as_f64().unwrap_or(f64::NAN)),
        },
        _ => query.bind(None::<String>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_in_order_with_matching_statements() {
        let insert = FixedInsert::new(
            "t",
            &["a".to_owned(), "b".to_owned()],
            "",
            OnError::UndoStatement,
        );
        for n in [
            0usize, 1, 2, 3, 7, 127, 128, 129, 300, 511, 512, 513, 1000, 5000,
        ] {
            let rows: Vec<usize> = (0..n).collect();
            let mut seen = Vec::new();
            let mut statements = 0;
            for (sql, chunk) in insert.chunks(&rows) {
                assert_eq!(sql.matches("(?, ?)").count(), chunk.len(), "{sql}");
                seen.extend_from_slice(chunk);
                statements += 1;
            }
            assert_eq!(seen, rows);
            assert!(statements <= n / 512 + 9, "{n} rows took {statements}");
        }
    }

    #[test]
    fn statements_name_the_table_columns_and_returning() {
        let insert = FixedInsert::new("v", &["x".to_owned()], "seq, id", OnError::UndoStatement);
        let rows = [(); 3];
        let texts: Vec<&str> = insert.chunks(&rows).map(|(sql, _)| sql).collect();
        assert_eq!(
            texts,
            [
                "INSERT INTO v (x) VALUES (?), (?) RETURNING seq, id",
                "INSERT INTO v (x) VALUES (?) RETURNING seq, id",
            ]
        );
        let insert = FixedInsert::new("s", &["x".to_owned()], "", OnError::Stop);
        let texts: Vec<&str> = insert.chunks(&rows[..1]).map(|(sql, _)| sql).collect();
        assert_eq!(texts, ["INSERT OR FAIL INTO s (x) VALUES (?)"]);
    }
}
