//! The write side of search: every current version's search parameter values, extracted
//! by the `fhir` crate and stored in the `search_*` tables in the same transaction as the
//! version, so a search never sees a resource its index does not describe.
//!
//! Composite values are stored as their components, each in its own type's table under the
//! parameter `code$i`, tied together by `grp` (1, 2, … per composite value; 0 for plain
//! values).

use fhir::search::{DateRange, IndexValue, SearchRegistry};
use sea_query::{Alias, Expr, Query, SimpleExpr};
use sea_query_binder::SqlxBinder;
use serde_json::Value;
use sqlx::{Any, Transaction};

use super::schema::SearchIndex as S;
use super::{micros, query_builder, Backend, StoreError, StoreResult};

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
#[derive(Debug, Default)]
pub(crate) struct IndexRows {
    rows: [Vec<Vec<SimpleExpr>>; 7],
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
        let mut rows = IndexRows::default();
        let mut group = 0i64;
        for param in registry.params_for(resource_type) {
            let values = match fhir::search::extract_param(param, resource) {
                Ok(values) => values,
                Err(e) => {
                    tracing::warn!(resource_type, id, param = %param.code, error = %e, "search parameter not indexed");
                    continue;
                }
            };
            for value in values {
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
        let key = |extra: Vec<SimpleExpr>| {
            let mut row: Vec<SimpleExpr> =
                vec![resource_type.into(), id.into(), param.into(), grp.into()];
            row.extend(extra);
            row
        };
        let (table, row) = match value {
            IndexValue::String(s) => (0, key(vec![s.normalized.into(), s.exact.into()])),
            IndexValue::Token(t) => (1, key(vec![t.system.into(), t.code.into(), t.text.into()])),
            IndexValue::Reference(r) => {
                if r.contained {
                    return;
                }
                let (ident_system, ident_value) = r.identifier.unwrap_or((None, None));
                (
                    2,
                    key(vec![
                        r.target_type.into(),
                        r.id.into(),
                        r.version.into(),
                        r.url.into(),
                        ident_system.into(),
                        ident_value.into(),
                    ]),
                )
            }
            IndexValue::Date(range) => {
                let (lo, hi) = date_bounds(range);
                (3, key(vec![lo.into(), hi.into()]))
            }
            IndexValue::Number(n) => (4, key(vec![n.value.into(), n.text.into()])),
            IndexValue::Quantity(q) => (
                5,
                key(vec![
                    q.value.value.into(),
                    q.comparator.into(),
                    q.system.into(),
                    q.code.into(),
                    q.unit.into(),
                ]),
            ),
            IndexValue::Uri(u) => (6, key(vec![u.into()])),
            // Composites of composites do not occur in R4.
            IndexValue::Composite(_) => return,
        };
        self.rows[table].push(row);
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// `[lo, hi)` in microseconds, open ends as the extreme integers.
pub(crate) fn date_bounds(range: DateRange) -> (i64, i64) {
    (
        range.start.map_or(i64::MIN, micros),
        range.end.map_or(i64::MAX, micros),
    )
}

fn columns(table: usize) -> &'static [S] {
    const KEY: [S; 4] = [S::ResourceType, S::Id, S::Param, S::Grp];
    match table {
        0 => &[KEY[0], KEY[1], KEY[2], KEY[3], S::Normalized, S::Exact],
        1 => &[KEY[0], KEY[1], KEY[2], KEY[3], S::System, S::Code, S::Text],
        2 => &[
            KEY[0],
            KEY[1],
            KEY[2],
            KEY[3],
            S::TargetType,
            S::TargetId,
            S::TargetVersion,
            S::Url,
            S::IdentSystem,
            S::IdentValue,
        ],
        3 => &[KEY[0], KEY[1], KEY[2], KEY[3], S::Lo, S::Hi],
        4 => &[KEY[0], KEY[1], KEY[2], KEY[3], S::Value, S::Text],
        5 => &[
            KEY[0],
            KEY[1],
            KEY[2],
            KEY[3],
            S::Value,
            S::Comparator,
            S::System,
            S::Code,
            S::Unit,
        ],
        _ => &[KEY[0], KEY[1], KEY[2], KEY[3], S::Uri],
    }
}

/// Removes every index row of `resource_type/id`.
pub(crate) async fn clear(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    resource_type: &str,
    id: &str,
) -> StoreResult<()> {
    if backend == Backend::Postgres {
        // One round trip for the seven tables.
        let deletes: Vec<String> = TABLES
            .iter()
            .enumerate()
            .map(|(i, t)| format!("d{i} AS (DELETE FROM {t} WHERE resource_type = $1 AND id = $2)"))
            .collect();
        sqlx::query(&format!("WITH {} SELECT 1", deletes.join(", ")))
            .bind(resource_type)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        return Ok(());
    }
    for table in TABLES {
        let (sql, values) = Query::delete()
            .from_table(Alias::new(table))
            .and_where(Expr::col(S::ResourceType).eq(resource_type))
            .and_where(Expr::col(S::Id).eq(id))
            .build_any_sqlx(query_builder(backend));
        sqlx::query_with(&sql, values)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}

/// Inserts the rows.
pub(crate) async fn insert(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    rows: IndexRows,
) -> StoreResult<()> {
    for (table, table_rows) in rows.rows.into_iter().enumerate() {
        for chunk in table_rows.chunks(CHUNK) {
            let mut insert = Query::insert();
            insert
                .into_table(Alias::new(TABLES[table]))
                .columns(columns(table).iter().copied());
            for row in chunk {
                insert.values_panic(row.iter().cloned());
            }
            let (sql, values) = insert.build_any_sqlx(query_builder(backend));
            sqlx::query_with(&sql, values)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
    }
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

        let mut tx = self.write.begin().await.map_err(StoreError::from_sqlx)?;
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
            clear(&mut tx, self.backend, &resource_type, &id).await?;
            let index_rows =
                IndexRows::extract(fhir::search::r4_search(), &resource_type, &id, &resource);
            batch.rows += index_rows.len() as u64;
            insert(&mut tx, self.backend, index_rows).await?;
            batch.resources += 1;
            batch.last = Some((resource_type, id));
        }
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(batch)
    }
}
