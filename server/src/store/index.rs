//! The write side of search: every current version's search parameter values, extracted
//! by the `fhir` crate and stored in the `search_*` tables in the same transaction as the
//! version, so a search never sees a resource its index does not describe.
//!
//! Composite values are stored as their components, each in its own type's table under the
//! parameter `code$i`, tied together by `grp` (1, 2, … per composite value; 0 for plain
//! values).

use fhir::search::{DateRange, IndexValue, SearchParam, SearchRegistry};
use sea_query::{Alias, Expr, Query, SimpleExpr, SqliteQueryBuilder};
use sea_query_binder::SqlxBinder;
use serde_json::{json, Value};
use sqlx::{Any, Transaction};

use super::fixed_insert::{bind_json, FixedInsert, OnError};
use super::schema::SearchIndex as S;
use super::{micros, Backend, StoreError, StoreResult};

/// The `param` suffix of the token rows `:of-type` searches (`identifier:of-type`).
pub(crate) const OF_TYPE_SUFFIX: &str = ":of-type";

/// The index tables.
pub(crate) const TABLES: [&str; 7] = [
    "search_string",
    "search_token",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
];

/// Rows most statements insert at once (well under SQLite's bound-parameter limit).
const CHUNK: usize = 400;

/// Index rows of one resource, by table.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct IndexRows {
    rows: [Vec<Vec<Value>>; 7],
}

impl IndexRows {
    /// Extracts the rows of `resource`. A parameter whose expression cannot be evaluated
    /// is logged and left out rather than refusing a valid resource.
    pub(crate) fn extract(
        registry: &SearchRegistry,
        resource_type: &str,
        id: &str,
        resource: &Value,
    ) -> Self {
        Self::collect(registry, resource_type, id, |param| {
            fhir::search::extract_param(param, resource).unwrap_or_else(|e| {
                tracing::warn!(resource_type, id, param = %param.code, error = %e, "search parameter not indexed");
                Vec::new()
            })
        })
    }

    /// The rows of `resource_type/id` given each stored parameter's values (`values`),
    /// in the registry's order. A parameter [derived](fhir::search::Derived) from others
    /// gets no rows: searches read its sources' rows.
    pub(crate) fn collect(
        registry: &SearchRegistry,
        resource_type: &str,
        id: &str,
        mut values: impl FnMut(&SearchParam) -> Vec<IndexValue>,
    ) -> Self {
        let mut rows = IndexRows::default();
        let mut group = 0i64;
        for param in registry.params_for(resource_type) {
            if super::search::is_resource_column(&param.code) || param.derived.is_some() {
                continue;
            }
            for value in dedupe(values(param)) {
                if let IndexValue::Composite(components) = value {
                    group += 1;
                    for (i, component) in components.into_iter().enumerate() {
                        rows.push(
                            resource_type,
                            id,
                            &format!("{}${i}", param.code),
                            group,
                            component,
                        );
                    }
                } else {
                    rows.push(resource_type, id, &param.code, 0, value);
                }
            }
        }
        rows
    }

    fn push(&mut self, resource_type: &str, id: &str, param: &str, grp: i64, value: IndexValue) {
        let key = |extra: Vec<Value>| {
            let mut row = vec![json!(resource_type), json!(id), json!(param), json!(grp)];
            row.extend(extra);
            row
        };
        let (table, row) = match value {
            IndexValue::String(s) => (0, key(vec![json!(s.normalized), json!(s.exact)])),
            IndexValue::Token(t) => {
                // `:of-type` rows: one per Identifier.type coding, under `<param>:of-type`,
                // with the type's system and `<type code>|<value>` as the code.
                if let Some(value) = &t.code {
                    for (system, code) in &t.identifier_type {
                        let of_type = format!("{param}{OF_TYPE_SUFFIX}");
                        let row = vec![
                            json!(resource_type),
                            json!(id),
                            json!(of_type),
                            json!(grp),
                            json!(system),
                            json!(format!("{}|{value}", code.as_deref().unwrap_or(""))),
                            Value::Null,
                        ];
                        self.rows[1].push(row);
                    }
                }
                (1, key(vec![json!(t.system), json!(t.code), json!(t.text)]))
            }
            IndexValue::Reference(r) => {
                if r.contained {
                    return;
                }
                let (ident_system, ident_value) = r.identifier.unwrap_or((None, None));
                (
                    2,
                    key(vec![
                        json!(r.target_type),
                        json!(r.id),
                        json!(r.version),
                        json!(r.url),
                        json!(ident_system),
                        json!(ident_value),
                    ]),
                )
            }
            IndexValue::Date(range) => {
                let (lo, hi) = date_bounds(range);
                (3, key(vec![json!(lo), json!(hi)]))
            }
            IndexValue::Number(n) => (4, key(vec![json!(n.value), json!(n.text)])),
            IndexValue::Quantity(q) => (
                5,
                key(vec![
                    json!(q.value.value),
                    json!(q.comparator),
                    json!(q.system),
                    json!(q.code),
                    json!(q.unit),
                ]),
            ),
            IndexValue::Uri(u) => (6, key(vec![json!(u)])),
            // Composites of composites do not occur in R4.
            IndexValue::Composite(_) => return,
        };
        self.rows[table].push(row);
    }

    /// Adds the rows of another resource, so that one statement writes both.
    pub(crate) fn append(&mut self, other: IndexRows) {
        for (mine, theirs) in self.rows.iter_mut().zip(other.rows) {
            mine.extend(theirs);
        }
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// One parameter's values without those that cannot change what a search finds: exact
/// repeats (a code coded twice), and a plain reference beside a versioned one to the same
/// resource (a search without a version matches the versioned row; one with a version
/// needs it). Every row costs an insert and two index entries on each write.
fn dedupe(values: Vec<IndexValue>) -> Vec<IndexValue> {
    if values.len() < 2 {
        return values;
    }
    let same_target = |a: &fhir::search::ReferenceValue, b: &fhir::search::ReferenceValue| {
        a.target_type == b.target_type
            && a.id == b.id
            && a.url == b.url
            && a.identifier == b.identifier
            && a.contained == b.contained
    };
    let mut kept: Vec<IndexValue> = Vec::with_capacity(values.len());
    for value in values {
        if kept.contains(&value) {
            continue;
        }
        if let IndexValue::Reference(r) = &value {
            if r.version.is_none()
                && kept.iter().any(
                    |k| matches!(k, IndexValue::Reference(v) if v.version.is_some() && same_target(v, r)),
                )
            {
                continue;
            }
            if r.version.is_some() {
                kept.retain(
                    |k| !matches!(k, IndexValue::Reference(v) if v.version.is_none() && same_target(v, r)),
                );
            }
        }
        kept.push(value);
    }
    kept
}

/// `[lo, hi)` in microseconds, open ends as the extreme integers.
pub(crate) fn date_bounds(range: DateRange) -> (i64, i64) {
    (
        range.start.map_or(i64::MIN, micros),
        range.end.map_or(i64::MAX, micros),
    )
}

/// Each table's columns, in row order, with their PostgreSQL types.
const COLUMNS: [&[(S, &str)]; 7] = [
    &[(S::Normalized, "text"), (S::Exact, "text")],
    &[(S::System, "text"), (S::Code, "text"), (S::Text, "text")],
    &[
        (S::TargetType, "text"),
        (S::TargetId, "text"),
        (S::TargetVersion, "text"),
        (S::Url, "text"),
        (S::IdentSystem, "text"),
        (S::IdentValue, "text"),
    ],
    &[(S::Lo, "bigint"), (S::Hi, "bigint")],
    &[(S::Value, "double precision"), (S::Text, "text")],
    &[
        (S::Value, "double precision"),
        (S::Comparator, "text"),
        (S::System, "text"),
        (S::Code, "text"),
        (S::Unit, "text"),
    ],
    &[(S::Uri, "text")],
];

/// The key columns every table starts with.
const KEY: [(S, &str); 4] = [
    (S::ResourceType, "text"),
    (S::Id, "text"),
    (S::Param, "text"),
    (S::Grp, "bigint"),
];

fn columns(table: usize) -> impl Iterator<Item = (S, &'static str)> {
    KEY.into_iter().chain(COLUMNS[table].iter().copied())
}

/// A JSON value as a bound SQL value (strings, integers, doubles and nulls only occur).
fn sql_value(value: &Value) -> SimpleExpr {
    match value {
        Value::String(s) => s.as_str().into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        _ => sea_query::Value::String(None).into(),
    }
}

/// Each table's column names, in [`columns`] order.
static COLUMN_NAMES: std::sync::LazyLock<[Vec<String>; 7]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|table| {
        columns(table)
            .map(|(c, _)| sea_query::Iden::to_string(&c))
            .collect()
    })
});

/// `rows` as a JSON array of objects keyed by `names`, serialized straight from the rows:
/// building a map per row first cost more than the rest of a bulk write (the AuditEvent
/// trail writes one such array per table per batch).
fn json_objects(names: &[String], rows: &[Vec<Value>]) -> StoreResult<String> {
    struct Row<'a>(&'a [String], &'a [Value]);
    impl serde::Serialize for Row<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().zip(self.1))
        }
    }
    struct Rows<'a>(&'a [String], &'a [Vec<Value>]);
    impl serde::Serialize for Rows<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.1.iter().map(|row| Row(self.0, row)))
        }
    }
    serde_json::to_string(&Rows(names, rows)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// PostgreSQL: clears (when `$3`) and refills the seven tables of `$1/$2` in one fixed,
/// prepared statement; each table's rows arrive as one JSON array (`$4`…`$10`) expanded by
/// `json_to_recordset`. The data-modifying CTEs share one snapshot, so the deletes never see
/// the rows inserted beside them.
static PG_REPLACE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut ctes = Vec::new();
    for (i, table) in TABLES.iter().enumerate() {
        ctes.push(format!(
            "d{i} AS (DELETE FROM {table} WHERE resource_type = $1 AND id = $2 AND $3)"
        ));
    }
    for (i, table) in TABLES.iter().enumerate() {
        let names: Vec<String> = columns(i)
            .map(|(c, _)| sea_query::Iden::to_string(&c))
            .collect();
        let typed: Vec<String> = columns(i)
            .map(|(c, t)| format!("{} {t}", sea_query::Iden::to_string(&c)))
            .collect();
        ctes.push(format!(
            "i{i} AS (INSERT INTO {table} ({cols}) SELECT {cols} FROM json_to_recordset(${param}::json) AS x({typed}))",
            cols = names.join(", "),
            param = i + 4,
            typed = typed.join(", "),
        ));
    }
    format!("WITH {} SELECT 1", ctes.join(", "))
});

/// Index rows as one backend inserts them, made ready before a bulk creation's
/// transaction begins, so that work does not hold SQLite's write lock or repeat when the
/// write is retried.
#[derive(Debug)]
pub(crate) enum Rendered {
    /// SQLite: the rows themselves, bound into prepared statements of fixed sizes
    /// ([`FixedInsert`]).
    Sqlite(IndexRows),
    /// PostgreSQL: each table's rows as one JSON array, the input of [`PG_REPLACE`].
    Postgres(Vec<String>),
}

/// Each index table's prepared inserts (SQLite). `OR FAIL`: the tables have no unique
/// constraints, every error rolls the write's transaction back, and SQLite then keeps no
/// statement journal, which copied each page a batch's statement touched (for the
/// AuditEvent trail, about one page per event in the reference index) before changing it.
static SQLITE_INSERTS: std::sync::LazyLock<[FixedInsert; 7]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|table| {
        FixedInsert::new(TABLES[table], &COLUMN_NAMES[table], "", OnError::Stop)
    })
});

impl IndexRows {
    /// These rows, rendered for `backend`.
    pub(crate) fn render(self, backend: Backend) -> StoreResult<Rendered> {
        if backend == Backend::Sqlite {
            return Ok(Rendered::Sqlite(self));
        }
        self.rows
            .iter()
            .enumerate()
            .map(|(table, rows)| json_objects(&COLUMN_NAMES[table], rows))
            .collect::<StoreResult<Vec<_>>>()
            .map(Rendered::Postgres)
    }

    /// SQLite `INSERT` statements with the values inlined, quoted and escaped by
    /// sea-query: for the few rows of one resource, one batch of statements run in one
    /// hand-over to the connection's thread costs less than a prepared statement per
    /// table and row count.
    fn inline_sqlite(&self, batch: &mut String) {
        for (table, table_rows) in self.rows.iter().enumerate() {
            for chunk in table_rows.chunks(CHUNK) {
                let mut insert = Query::insert();
                insert
                    .into_table(Alias::new(TABLES[table]))
                    .columns(columns(table).map(|(c, _)| c));
                for row in chunk {
                    insert.values_panic(row.iter().map(sql_value));
                }
                batch.push_str(&insert.to_string(SqliteQueryBuilder));
                batch.push_str(";\n");
            }
        }
    }
}

/// Replaces the index rows of `resource_type/id` with `rows` (clearing first when
/// `had_rows`).
pub(crate) async fn replace(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    resource_type: &str,
    id: &str,
    rows: Option<IndexRows>,
    had_rows: bool,
) -> StoreResult<()> {
    let rows = rows.unwrap_or_default();
    if backend == Backend::Postgres {
        let Rendered::Postgres(tables) = rows.render(backend)? else {
            return Err(StoreError::Corrupt("index rows rendered for SQLite".into()));
        };
        return pg_replace(tx, resource_type, id, &tables, had_rows).await;
    }
    let mut batch = String::new();
    if had_rows {
        for table in TABLES {
            let delete = Query::delete()
                .from_table(Alias::new(table))
                .and_where(Expr::col(S::ResourceType).eq(resource_type))
                .and_where(Expr::col(S::Id).eq(id))
                .to_string(SqliteQueryBuilder);
            batch.push_str(&delete);
            batch.push_str(";\n");
        }
    }
    rows.inline_sqlite(&mut batch);
    if !batch.is_empty() {
        sqlx::raw_sql(&batch)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}

/// Inserts rendered index rows of new resources (none of which has rows yet).
pub(crate) async fn insert_rendered(
    tx: &mut Transaction<'static, Any>,
    rendered: &Rendered,
) -> StoreResult<()> {
    match rendered {
        Rendered::Sqlite(rows) => {
            for (table, table_rows) in rows.rows.iter().enumerate() {
                SQLITE_INSERTS[table]
                    .execute(tx, table_rows, |query, row| {
                        row.iter().fold(query, bind_json)
                    })
                    .await
                    .map_err(StoreError::from_sqlx)?;
            }
            Ok(())
        }
        Rendered::Postgres(tables) => pg_replace(tx, "", "", tables, false).await,
    }
}

/// Runs [`PG_REPLACE`].
async fn pg_replace(
    tx: &mut Transaction<'static, Any>,
    resource_type: &str,
    id: &str,
    tables: &[String],
    had_rows: bool,
) -> StoreResult<()> {
    let mut query = sqlx::query(PG_REPLACE.as_str())
        .bind(resource_type)
        .bind(id)
        .bind(had_rows);
    for table in tables {
        query = query.bind(table.as_str());
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// What one reindex batch did.
#[derive(Debug, Clone, Default)]
pub struct ReindexBatch {
    /// Resources reindexed.
    pub resources: u64,
    /// Index rows written.
    pub rows: u64,
    /// The last (type, id) done: where the next batch starts.
    pub last: Option<(String, String)>,
}

impl super::Store {
    /// Rebuilds the index rows of up to `limit` current resources after `after` (in
    /// (type, id) order, of `only_type` when given), in one short transaction that locks
    /// those resources, so writers proceed between batches and no write is indexed stale.
    pub async fn reindex_batch(
        &self,
        only_type: Option<&str>,
        after: Option<(&str, &str)>,
        limit: u64,
    ) -> StoreResult<ReindexBatch> {
        use super::schema::{ResourceVersions as V, Resources as R};
        use sea_query::{Condition, LockType, Order};
        use sqlx::Row;

        let mut tx = self.begin_raw().await?;
        let mut select = Query::select();
        select
            .columns([(R::Table, R::ResourceType), (R::Table, R::Id)])
            .column((V::Table, V::Content))
            .from(R::Table)
            .inner_join(
                V::Table,
                Expr::col((V::Table, V::Seq)).equals((R::Table, R::Seq)),
            )
            .and_where(Expr::col((R::Table, R::Deleted)).eq(0))
            .order_by((R::Table, R::ResourceType), Order::Asc)
            .order_by((R::Table, R::Id), Order::Asc)
            .limit(limit)
            .lock_with_tables(LockType::Update, [R::Table]);
        if let Some(t) = only_type {
            select.and_where(Expr::col((R::Table, R::ResourceType)).eq(t));
        }
        if let Some((t, id)) = after {
            select.cond_where(
                Condition::any()
                    .add(Expr::col((R::Table, R::ResourceType)).gt(t))
                    .add(
                        Condition::all()
                            .add(Expr::col((R::Table, R::ResourceType)).eq(t))
                            .add(Expr::col((R::Table, R::Id)).gt(id)),
                    ),
            );
        }
        let (sql, values) = select.build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let mut batch = ReindexBatch::default();
        for row in rows {
            let resource_type: String = row.try_get("resource_type")?;
            let id: String = row.try_get("id")?;
            let content: Option<String> = row.try_get("content")?;
            let resource: Value = content
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{resource_type}/{id}: stored JSON does not parse: {e}"
                    ))
                })?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "{resource_type}/{id}: current version has no content"
                    ))
                })?;
            let index_rows =
                IndexRows::extract(fhir::search::r4_search(), &resource_type, &id, &resource);
            batch.rows += index_rows.len() as u64;
            replace(
                &mut tx,
                self.backend,
                &resource_type,
                &id,
                Some(index_rows),
                true,
            )
            .await?;
            batch.resources += 1;
            batch.last = Some((resource_type, id));
        }
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_subsumed_values_are_indexed_once() {
        let registry = fhir::search::r4_search();
        let event = json!({"resourceType": "AuditEvent", "id": "a1",
            "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}},
            "entity": [
                {"what": {"reference": "Patient/p1/_history/2"},
                 "type": {"system": "s", "code": "2"}},
                {"what": {"reference": "Patient/p1"}, "type": {"system": "s", "code": "1"}},
                {"what": {"reference": "Patient/p2"}, "type": {"system": "s", "code": "1"}}]});
        let rows = IndexRows::extract(registry, "AuditEvent", "a1", &event);
        let refs = |param: &str| -> Vec<(Value, Value)> {
            rows.rows[2]
                .iter()
                .filter(|r| r[2] == param)
                .map(|r| (r[5].clone(), r[6].clone()))
                .collect()
        };
        assert_eq!(
            refs("entity"),
            [(json!("p1"), json!("2")), (json!("p2"), Value::Null)]
        );
        // Derived from `entity` (and `agent`): searches read those rows.
        assert!(refs("patient").is_empty());
        let types: Vec<&Value> = rows.rows[1]
            .iter()
            .filter(|r| r[2] == "entity-type")
            .map(|r| &r[5])
            .collect();
        assert_eq!(types, [&json!("2"), &json!("1")]);
    }

    #[test]
    fn json_objects_match_maps_built_per_row() {
        let names = ["a".to_owned(), "b".to_owned()];
        let rows = vec![vec![json!("x\"y"), json!(3)], vec![json!(null), json!(2.5)]];
        let expected = json!([{"a": "x\"y", "b": 3}, {"a": null, "b": 2.5}]);
        let text = json_objects(&names, &rows).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        assert_eq!(json_objects(&names, &[]).unwrap(), "[]");
    }
}
