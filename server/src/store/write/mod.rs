//! Write transactions: each resource write appends a version and moves the resource's
//! current-version pointer, inside one database transaction that the caller commits.
//!
//! Concurrency: a writer first locks the `resources` row it supersedes (`FOR UPDATE` on
//! PostgreSQL; SQLite has a single writer), so two writers of one resource serialize and the
//! second sees the first's version. A resource created by PUT claims its `resources` row with
//! `INSERT … ON CONFLICT DO NOTHING`; a writer that loses that race waits for the winner and
//! continues as an update. The `(resource_type, id, version)` unique key backs all of this.
//!
//! Notarization: every version gets its ledger entry (content hash, actor, time, request
//! id) in the same transaction, so a write is acknowledged only with its entry and a failed
//! write leaves none. Entries are plain inserts: no lock beyond the row being written; the
//! sealer orders them into blocks afterwards.

use sea_query::{Expr, LockType, OnConflict, Query};
use sea_query_binder::SqlxBinder;
use serde_json::{Map, Value};
use sqlx::{Any, Row, Transaction};
use time::OffsetDateTime;

mod bulk;

pub(crate) use bulk::PreparedResource;
pub use bulk::{NewResource, PreparedCreates};

use super::schema::{
    ImportProgress as P, LedgerEntries as E, ResourceVersions as V, Resources as R,
};
use super::{micros, query_builder, Backend, StoreError, StoreResult, VersionRecord, WriteMethod};

/// PostgreSQL: the version, its ledger entry and the current-version pointer in one
/// statement (the same rows the sea-query statements of the SQLite path write), so a write
/// costs one round trip however many tables it touches.
macro_rules! pg_append {
    ($pointer:literal) => {
        concat!(
            "WITH v AS (",
            "INSERT INTO resource_versions (resource_type, id, version, method, last_updated, content) ",
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq), ",
            "e AS (INSERT INTO ledger_entries (version_seq, resource_type, id, version, operation, ",
            "content_hash, actor, recorded_at, request_id) ",
            "SELECT seq, $1, $2, $3, $7, $8, $9, $10, $11 FROM v) ",
            $pointer
        )
    };
}
const PG_APPEND_NEW: &str = pg_append!(
    "INSERT INTO resources (resource_type, id, version, deleted, last_updated, seq) \
     SELECT $1, $2, $3, $12, $5, seq FROM v RETURNING seq"
);
const PG_APPEND_NEXT: &str = pg_append!(
    "UPDATE resources SET version = $3, deleted = $12, last_updated = $5, seq = v.seq FROM v \
     WHERE resources.resource_type = $1 AND resources.id = $2 RETURNING v.seq AS seq"
);

/// The columns a version row is inserted with, in value order.
const VERSION_COLUMNS: [V; 6] = [
    V::ResourceType,
    V::Id,
    V::Version,
    V::Method,
    V::LastUpdated,
    V::Content,
];

/// The columns a ledger entry is inserted with, in value order.
const ENTRY_COLUMNS: [E; 9] = [
    E::VersionSeq,
    E::ResourceType,
    E::Id,
    E::Version,
    E::Operation,
    E::ContentHash,
    E::Actor,
    E::RecordedAt,
    E::RequestId,
];

/// The columns a `resources` pointer row is inserted with, in value order.
const POINTER_COLUMNS: [R; 6] = [
    R::ResourceType,
    R::Id,
    R::Version,
    R::Deleted,
    R::LastUpdated,
    R::Seq,
];

/// How a new version becomes current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pointer {
    /// A new resource: insert its `resources` row.
    Insert,
    /// An existing (or claimed) resource: move its `resources` row. Carries the superseded
    /// version's `last_updated`, which the new one must not precede.
    Update(Option<i64>),
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    /// A delete version was written.
    Deleted(VersionRecord),
    /// The resource was already deleted; nothing was written.
    AlreadyDeleted,
    /// The resource never existed; nothing was written.
    NotFound,
}

/// The current version of a resource, as locked by a writer.
#[derive(Debug, Clone, Copy)]
struct Head {
    version: i64,
    deleted: bool,
    last_updated: i64,
}

/// Who writes and in which request: recorded in every ledger entry of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteContext {
    /// The authenticated actor, or [`WriteContext::ANONYMOUS`].
    pub actor: String,
    /// The request id (`X-Request-Id`) of the request that writes.
    pub request_id: String,
}

impl WriteContext {
    /// The actor recorded for writes made without an authenticated identity.
    pub const ANONYMOUS: &'static str = "anonymous";
}

/// One open write transaction. Dropping it without [`WriteTx::commit`] rolls back.
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    backend: Backend,
    context: WriteContext,
}

impl WriteTx {
    pub(super) fn new(
        tx: Transaction<'static, Any>,
        backend: Backend,
        context: WriteContext,
    ) -> Self {
        WriteTx {
            tx,
            backend,
            context,
        }
    }

    /// Creates a resource with a new server-assigned id (version 1). Any `id` in the body is
    /// replaced, as the FHIR create interaction requires.
    #[tracing::instrument(name = "db.write", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn create(
        &mut self,
        resource_type: &str,
        resource: Value,
    ) -> StoreResult<VersionRecord> {
        let id = uuid::Uuid::new_v4().to_string();
        self.create_as(resource_type, &id, resource).await
    }

    /// Creates a resource with an id the caller assigned beforehand (a transaction Bundle
    /// assigns the ids of its new resources before writing any, so that references between
    /// its entries can be rewritten). The id must be new: one already taken fails with
    /// [`StoreError::Conflict`].
    pub async fn create_as(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
    ) -> StoreResult<VersionRecord> {
        let (record, stamped) = self
            .append(
                resource_type,
                id,
                1,
                WriteMethod::Create,
                Some(resource),
                Pointer::Insert,
            )
            .await?;
        self.index(resource_type, id, stamped.as_ref(), false)
            .await?;
        Ok(record)
    }

    /// Writes a new version of `resource_type/id` with the given content, creating the
    /// resource when it does not exist (or continuing its version sequence after a delete).
    /// With `if_match`, fails with [`StoreError::VersionMismatch`] unless that is the current
    /// version. Returns the version and whether the resource was created.
    #[tracing::instrument(name = "db.write", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn update(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> StoreResult<(VersionRecord, bool)> {
        self.put(resource_type, id, resource, if_match, WriteMethod::Update)
            .await
    }

    /// Writes the result of a PATCH as the next version of an existing resource (see
    /// [`WriteTx::current`], which locks the version the patch applies to).
    pub async fn patch(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
    ) -> StoreResult<VersionRecord> {
        let (record, _) = self
            .put(resource_type, id, resource, if_match, WriteMethod::Patch)
            .await?;
        Ok(record)
    }

    /// The current version of `resource_type/id`, read inside this transaction with its
    /// row locked until commit, so that what a caller derives from it (a patch) is written
    /// on top of exactly this version.
    pub async fn current(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<VersionRecord>> {
        if self.lock_current(resource_type, id).await?.is_none() {
            return Ok(None);
        }
        let (sql, values) = super::select_versions()
            .inner_join(
                R::Table,
                Expr::col((R::Table, R::Seq)).equals((V::Table, V::Seq)),
            )
            .and_where(Expr::col((R::Table, R::ResourceType)).eq(resource_type))
            .and_where(Expr::col((R::Table, R::Id)).eq(id))
            .build_any_sqlx(query_builder(self.backend));
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.as_ref().map(super::version_from_row).transpose()
    }

    /// The ids of the current resources that match `request`'s criteria (its paging, sort
    /// and includes are ignored), at most `limit` of them, as this transaction sees them:
    /// its own uncommitted writes included. Conditional interactions decide with this.
    pub async fn find(
        &mut self,
        request: &fhir::search::SearchRequest,
        base_url: Option<&str>,
        limit: u64,
    ) -> StoreResult<Vec<String>> {
        super::search::matching_ids(&mut self.tx, self.backend, request, base_url, limit).await
    }

    /// Records that `fhir-notary import` has loaded `position` records of `source`
    /// (`finished` once it all is), in this transaction: the progress commits exactly with
    /// the resources it counts.
    pub async fn set_import_position(
        &mut self,
        source: &str,
        position: i64,
        finished: bool,
    ) -> StoreResult<()> {
        let now = super::micros(OffsetDateTime::now_utc());
        let (sql, values) = Query::insert()
            .into_table(P::Table)
            .columns([P::Source, P::Position, P::Finished, P::UpdatedAt])
            .values_panic([
                source.into(),
                position.into(),
                i64::from(finished).into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::column(P::Source)
                    .update_columns([P::Position, P::Finished, P::UpdatedAt])
                    .to_owned(),
            )
            .build_any_sqlx(query_builder(self.backend));
        sqlx::query_with(&sql, values)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Serializes this transaction with every other one that takes the same `key` until
    /// either commits: conditional creates and updates take their condition's key before
    /// searching, so two racing ones cannot both find nothing and both create. PostgreSQL
    /// takes a transaction-scoped advisory lock; SQLite's single writer already serializes.
    pub async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            // FNV-1a: a collision only serializes two unrelated conditions, harmlessly.
            let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(i64::from_ne_bytes(hash.to_ne_bytes()))
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    async fn put(
        &mut self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<i64>,
        method: WriteMethod,
    ) -> StoreResult<(VersionRecord, bool)> {
        let head = self.lock_or_claim(resource_type, id).await?;
        check_precondition(head, if_match)?;
        let version = head.map_or(1, |h| h.version + 1);
        let (record, stamped) = self
            .append(
                resource_type,
                id,
                version,
                method,
                Some(resource),
                Pointer::Update(head.map(|h| h.last_updated)),
            )
            .await?;
        let had_rows = head.is_some_and(|h| !h.deleted);
        self.index(resource_type, id, stamped.as_ref(), had_rows)
            .await?;
        Ok((record, head.is_none_or(|h| h.deleted)))
    }

    /// Deletes a resource by writing a delete version. Deleting what does not exist or is
    /// already deleted writes nothing.
    #[tracing::instrument(name = "db.write", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        if_match: Option<i64>,
    ) -> StoreResult<DeleteOutcome> {
        let head = self.lock_current(resource_type, id).await?;
        check_precondition(head, if_match)?;
        let Some(head) = head else {
            return Ok(DeleteOutcome::NotFound);
        };
        if head.deleted {
            return Ok(DeleteOutcome::AlreadyDeleted);
        }
        let (record, _) = self
            .append(
                resource_type,
                id,
                head.version + 1,
                WriteMethod::Delete,
                None,
                Pointer::Update(Some(head.last_updated)),
            )
            .await?;
        self.index(resource_type, id, None, true).await?;
        Ok(DeleteOutcome::Deleted(record))
    }

    /// Replaces the search index rows of `resource_type/id` with those of `current` (none for
    /// a deletion). `had_rows` says whether rows of an earlier version may exist.
    #[tracing::instrument(name = "db.index", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    async fn index(
        &mut self,
        resource_type: &str,
        id: &str,
        current: Option<&Value>,
        had_rows: bool,
    ) -> StoreResult<()> {
        let rows = current.map(|resource| {
            super::index::IndexRows::extract(fhir::search::r4_search(), resource_type, id, resource)
        });
        super::index::replace(
            &mut self.tx,
            self.backend,
            resource_type,
            id,
            rows,
            had_rows,
        )
        .await
    }

    /// Commits every write of this transaction.
    #[tracing::instrument(name = "db.commit", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await.map_err(StoreError::from_sqlx)
    }

    /// Locks the resource's current-version row, if it exists.
    async fn lock_current(&mut self, resource_type: &str, id: &str) -> StoreResult<Option<Head>> {
        let (sql, values) = Query::select()
            .columns([R::Version, R::Deleted, R::LastUpdated])
            .from(R::Table)
            .and_where(Expr::col(R::ResourceType).eq(resource_type))
            .and_where(Expr::col(R::Id).eq(id))
            .lock(LockType::Update)
            .build_any_sqlx(query_builder(self.backend));
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.map(|row| {
            Ok(Head {
                version: row.try_get("version")?,
                deleted: row.try_get::<i64, _>("deleted")? != 0,
                last_updated: row.try_get("last_updated")?,
            })
        })
        .transpose()
    }

    /// Locks the current-version row, or claims it with a placeholder when the resource does
    /// not exist yet (the placeholder is overwritten by [`WriteTx::point_to`] before commit).
    async fn lock_or_claim(&mut self, resource_type: &str, id: &str) -> StoreResult<Option<Head>> {
        if let Some(head) = self.lock_current(resource_type, id).await? {
            return Ok(Some(head));
        }
        let (sql, values) = resources_row(resource_type, id, 0, true, 0, 0)
            .on_conflict(
                OnConflict::columns([R::ResourceType, R::Id])
                    .do_nothing()
                    .to_owned(),
            )
            .build_any_sqlx(query_builder(self.backend));
        let claimed = sqlx::query_with(&sql, values)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?
            .rows_affected()
            == 1;
        if claimed {
            return Ok(None);
        }
        // Another writer created it meanwhile and has committed: continue as an update.
        self.lock_current(resource_type, id)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("{resource_type}/{id} vanished during a write"))
            })
            .map(Some)
    }

    /// Moves the current-version pointer to `record`.
    async fn point_to(&mut self, record: &VersionRecord) -> StoreResult<()> {
        let (sql, values) = Query::update()
            .table(R::Table)
            .values([
                (R::Version, record.version.into()),
                (R::Deleted, i64::from(record.is_delete()).into()),
                (R::LastUpdated, micros(record.last_updated).into()),
                (R::Seq, record.seq.into()),
            ])
            .and_where(Expr::col(R::ResourceType).eq(record.resource_type.as_str()))
            .and_where(Expr::col(R::Id).eq(record.id.as_str()))
            .build_any_sqlx(query_builder(self.backend));
        sqlx::query_with(&sql, values)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Appends a version row; the server-owned `id` and `meta` are set on the content here,
    /// so what is stored is exactly what is served.
    async fn append(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        method: WriteMethod,
        resource: Option<Value>,
        pointer: Pointer,
    ) -> StoreResult<(VersionRecord, Option<Value>)> {
        let previous_last_updated = match pointer {
            Pointer::Insert => None,
            Pointer::Update(previous) => previous,
        };
        let last_updated = next_last_updated(previous_last_updated)?;
        let stamped = resource
            .map(|r| stamp(r, resource_type, id, version, last_updated))
            .transpose()?;
        let content_hash = match &stamped {
            Some(value) => ledger::canonical::content_hash(value).map_err(|e| {
                StoreError::Corrupt(format!("cannot hash {resource_type}/{id}: {e}"))
            })?,
            None => ledger::canonical::tombstone_hash(resource_type, id, version),
        };
        let content = stamped
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let operation = super::ledger::operation_name(method);
        let content_hash = hex::encode(content_hash);
        let recorded_at = fhir::primitives::format_instant(last_updated);
        let seq: i64 = if self.backend == Backend::Postgres {
            // One round trip for the version and its entry: the entry's cost on the write
            // path is then an index insert, not another network exchange.
            let statement = match pointer {
                Pointer::Insert => PG_APPEND_NEW,
                Pointer::Update(_) => PG_APPEND_NEXT,
            };
            sqlx::query(statement)
                .bind(resource_type)
                .bind(id)
                .bind(version)
                .bind(method.as_str())
                .bind(micros(last_updated))
                .bind(content.clone())
                .bind(operation)
                .bind(content_hash)
                .bind(self.context.actor.as_str())
                .bind(recorded_at)
                .bind(self.context.request_id.as_str())
                .bind(i64::from(method == WriteMethod::Delete))
                .fetch_one(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .try_get("seq")?
        } else {
            let (sql, values) = Query::insert()
                .into_table(V::Table)
                .columns(VERSION_COLUMNS)
                .values_panic([
                    resource_type.into(),
                    id.into(),
                    version.into(),
                    method.as_str().into(),
                    micros(last_updated).into(),
                    content.clone().into(),
                ])
                .returning_col(V::Seq)
                .build_any_sqlx(query_builder(self.backend));
            let seq: i64 = sqlx::query_with(&sql, values)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .try_get("seq")?;
            let (sql, values) = Query::insert()
                .into_table(E::Table)
                .columns(ENTRY_COLUMNS)
                .values_panic([
                    seq.into(),
                    resource_type.into(),
                    id.into(),
                    version.into(),
                    operation.into(),
                    content_hash.into(),
                    self.context.actor.as_str().into(),
                    recorded_at.into(),
                    self.context.request_id.as_str().into(),
                ])
                .build_any_sqlx(query_builder(self.backend));
            sqlx::query_with(&sql, values)
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            seq
        };
        let record = VersionRecord {
            seq,
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version,
            method,
            last_updated,
            content,
        };
        if self.backend != Backend::Postgres {
            match pointer {
                Pointer::Insert => {
                    let (sql, values) = resources_row(
                        resource_type,
                        id,
                        version,
                        record.is_delete(),
                        micros(last_updated),
                        seq,
                    )
                    .build_any_sqlx(query_builder(self.backend));
                    sqlx::query_with(&sql, values)
                        .execute(&mut *self.tx)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Pointer::Update(_) => self.point_to(&record).await?,
            }
        }
        Ok((record, stamped))
    }
}

/// `INSERT INTO resources …` for one current-version pointer.
fn resources_row(
    resource_type: &str,
    id: &str,
    version: i64,
    deleted: bool,
    last_updated: i64,
    seq: i64,
) -> sea_query::InsertStatement {
    Query::insert()
        .into_table(R::Table)
        .columns(POINTER_COLUMNS)
        .values_panic([
            resource_type.into(),
            id.into(),
            version.into(),
            i64::from(deleted).into(),
            last_updated.into(),
            seq.into(),
        ])
        .to_owned()
}

fn check_precondition(head: Option<Head>, if_match: Option<i64>) -> StoreResult<()> {
    match (if_match, head) {
        (Some(expected), Some(h)) if h.version == expected => Ok(()),
        (Some(expected), current) => Err(StoreError::VersionMismatch {
            expected,
            current: current.map(|h| h.version),
        }),
        (None, _) => Ok(()),
    }
}

/// Now, at the millisecond precision `meta.lastUpdated` is served with, and never earlier
/// than the previous version's (clocks of several servers may disagree slightly).
fn next_last_updated(previous_micros: Option<i64>) -> StoreResult<OffsetDateTime> {
    let now = OffsetDateTime::now_utc();
    let now_ms = micros(now) / 1_000 * 1_000;
    super::from_micros(previous_micros.map_or(now_ms, |p| p.max(now_ms)))
}

/// Sets `id` and `meta.versionId`/`meta.lastUpdated`, with the conventional leading order
/// `resourceType`, `id`, `meta` and the client's elements after them in their order.
fn stamp(
    resource: Value,
    resource_type: &str,
    id: &str,
    version: i64,
    last_updated: OffsetDateTime,
) -> StoreResult<Value> {
    let Value::Object(mut body) = resource else {
        return Err(StoreError::Corrupt(
            "a resource must be a JSON object".into(),
        ));
    };
    let mut meta = Map::new();
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert(
        "lastUpdated".into(),
        Value::String(fhir::primitives::format_instant(last_updated)),
    );
    if let Some(Value::Object(client_meta)) = body.shift_remove("meta") {
        for (k, v) in client_meta {
            if k != "versionId" && k != "lastUpdated" {
                meta.insert(k, v);
            }
        }
    }
    body.shift_remove("resourceType");
    body.shift_remove("id");
    let mut out = Map::with_capacity(body.len() + 3);
    out.insert(
        "resourceType".into(),
        Value::String(resource_type.to_owned()),
    );
    out.insert("id".into(), Value::String(id.to_owned()));
    out.insert("meta".into(), Value::Object(meta));
    out.extend(body);
    Ok(Value::Object(out))
}
