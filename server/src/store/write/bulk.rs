//! Bulk creation: many new resources (version 1 each) with ids assigned beforehand, as a
//! transaction Bundle, an import chunk or a batch of AuditEvents needs them, written with a
//! few statements per batch instead of several per resource.

use std::collections::HashMap;

use sea_query::Iden;
use serde_json::Value;
use sqlx::Row;
use time::OffsetDateTime;

use crate::store::fixed_insert::{FixedInsert, OnError};
use crate::store::index::{IndexRows, Rendered};

use super::{next_last_updated, stamp, WriteTx, ENTRY_COLUMNS, POINTER_COLUMNS, VERSION_COLUMNS};
use crate::store::{micros, Backend, StoreError, StoreResult, VersionRecord, WriteMethod};

/// PostgreSQL: many new resources (version 1 each), their ledger entries and their
/// current-version pointers in one statement. The rows arrive as one JSON array (see
/// [`pg_input`]) and their contents, which are most of the bytes, side by side in one
/// `bytea` (`$8`) that each row slices by offset: PostgreSQL copies them out instead of
/// unescaping them from JSON strings or lexing them as JSON values.
const PG_CREATE_MANY: &str = "\
WITH input AS (SELECT ord, resource_type, id, content_hash, \
    convert_from(substring($8 FROM start FOR len), 'UTF8') AS content \
    FROM json_to_recordset($1::json) \
    AS x(ord BIGINT, resource_type TEXT, id TEXT, content_hash TEXT, start INT, len INT)), \
v AS (INSERT INTO resource_versions (resource_type, id, version, method, last_updated, content) \
    SELECT resource_type, id, 1, $2, $3, content FROM input ORDER BY ord \
    RETURNING seq, resource_type, id), \
e AS (INSERT INTO ledger_entries (version_seq, resource_type, id, version, operation, \
    content_hash, actor, recorded_at, request_id) \
    SELECT v.seq, v.resource_type, v.id, 1, $4, input.content_hash, $5, $6, $7 \
    FROM v JOIN input ON input.resource_type = v.resource_type AND input.id = v.id \
    ORDER BY v.seq), \
r AS (INSERT INTO resources (resource_type, id, version, deleted, last_updated, seq) \
    SELECT resource_type, id, 1, 0, $3, seq FROM v) \
SELECT seq, resource_type, id FROM v";

/// A resource to create with an id assigned beforehand (see [`WriteTx::create_many`]).
#[derive(Debug, Clone)]
pub struct NewResource {
    /// Its type.
    pub resource_type: String,
    /// Its new id.
    pub id: String,
    /// Its content, validated.
    pub resource: Value,
}

/// New resources ready to be written by [`WriteTx::create_prepared`]: stamped, hashed,
/// serialized and indexed. Preparing is all of a bulk creation's CPU work; done before the
/// transaction begins, it does not hold SQLite's single write lock, and a write that has
/// to be tried again does not repeat it.
#[derive(Debug)]
pub struct PreparedCreates {
    last_updated: OffsetDateTime,
    /// `(type, id, content)` of each resource, in order.
    contents: Vec<(String, String, String)>,
    /// Their content hashes, hex.
    hashes: Vec<String>,
    /// Their index rows, rendered for the backend.
    index: Rendered,
}

/// One new resource made ready to store: its text, content hash and index rows.
#[derive(Debug, PartialEq)]
pub(crate) struct PreparedResource {
    pub(crate) resource_type: String,
    pub(crate) id: String,
    /// The stored JSON, with `id` and `meta` stamped.
    pub(crate) content: String,
    /// Its content hash ([`ledger::canonical::content_hash`]).
    pub(crate) hash: ledger::Hash,
    pub(crate) index: IndexRows,
}

impl PreparedResource {
    /// Stamps `item` in place (id, `meta.versionId` 1, `meta.lastUpdated`) and prepares it.
    pub(crate) fn new(
        item: &mut NewResource,
        last_updated: OffsetDateTime,
    ) -> StoreResult<PreparedResource> {
        let body = std::mem::take(&mut item.resource);
        item.resource = stamp(body, &item.resource_type, &item.id, 1, last_updated)?;
        let stamped = &item.resource;
        let hash = ledger::canonical::content_hash(stamped).map_err(|e| {
            StoreError::Corrupt(format!(
                "cannot hash {}/{}: {e}",
                item.resource_type, item.id
            ))
        })?;
        let content =
            serde_json::to_string(stamped).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(PreparedResource {
            resource_type: item.resource_type.clone(),
            id: item.id.clone(),
            content,
            hash,
            index: IndexRows::extract(
                fhir::search::r4_search(),
                &item.resource_type,
                &item.id,
                stamped,
            ),
        })
    }
}

impl PreparedCreates {
    /// Stamps `items` in place (id, `meta.versionId` 1, `meta.lastUpdated` now) and
    /// prepares them for `backend`.
    pub fn new(backend: Backend, items: &mut [NewResource]) -> StoreResult<PreparedCreates> {
        Self::build(backend, |last_updated| {
            items
                .iter_mut()
                .map(|item| PreparedResource::new(item, last_updated))
                .collect()
        })
    }

    /// New resources `prepare` makes ready, stamped with the `meta.lastUpdated` it is given,
    /// for `backend`.
    pub(crate) fn build(
        backend: Backend,
        prepare: impl FnOnce(OffsetDateTime) -> StoreResult<Vec<PreparedResource>>,
    ) -> StoreResult<PreparedCreates> {
        let last_updated = next_last_updated(None)?;
        let resources = prepare(last_updated)?;
        let mut hashes = Vec::with_capacity(resources.len());
        let mut contents = Vec::with_capacity(resources.len());
        let mut index = IndexRows::default();
        for r in resources {
            hashes.push(hex::encode(r.hash));
            contents.push((r.resource_type, r.id, r.content));
            index.append(r.index);
        }
        Ok(PreparedCreates {
            last_updated,
            contents,
            hashes,
            index: index.render(backend)?,
        })
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.contents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.contents.is_empty()
    }
}

impl WriteTx {
    /// Creates many resources with ids assigned beforehand, as [`WriteTx::create_as`] would
    /// one by one, in the order given: [`PreparedCreates::new`] then
    /// [`WriteTx::create_prepared`].
    pub async fn create_many(
        &mut self,
        items: &mut [NewResource],
    ) -> StoreResult<Vec<VersionRecord>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = PreparedCreates::new(self.backend, items)?;
        let seqs = self.create_prepared(&prepared).await?;
        created(prepared.contents, &seqs, prepared.last_updated)
    }

    /// Writes prepared new resources, returning each one's version sequence number by
    /// `(type, id)`. On PostgreSQL the versions, ledger entries and pointers of all of them
    /// are one statement and their index rows another: a transaction Bundle of 2,000
    /// creates costs two round trips, not 4,000. On SQLite, where every statement is a
    /// hand-over to the connection's thread, the versions are multi-row inserts and the
    /// entries, pointers and index rows one batch of statements.
    pub async fn create_prepared(
        &mut self,
        prepared: &PreparedCreates,
    ) -> StoreResult<HashMap<(String, String), i64>> {
        if prepared.is_empty() {
            return Ok(HashMap::new());
        }
        let PreparedCreates {
            last_updated,
            contents,
            hashes,
            index,
        } = prepared;
        let last_updated = *last_updated;
        let sqlite = matches!(index, Rendered::Sqlite(_));
        if sqlite != (self.backend == Backend::Sqlite) {
            return Err(StoreError::Corrupt(
                "creates prepared for another backend".into(),
            ));
        }
        if self.backend != Backend::Postgres {
            return self
                .create_many_sqlite(last_updated, contents, hashes, index)
                .await;
        }
        let (input, blob) = pg_input(contents, hashes)?;
        let returned = sqlx::query(PG_CREATE_MANY)
            .bind(input)
            .bind(WriteMethod::Create.as_str())
            .bind(micros(last_updated))
            .bind(crate::store::ledger::operation_name(WriteMethod::Create))
            .bind(self.context.actor.as_str())
            .bind(fhir::primitives::format_instant(last_updated))
            .bind(self.context.request_id.as_str())
            .bind(blob)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let mut seqs = HashMap::with_capacity(returned.len());
        for row in &returned {
            let key: (String, String) = (row.try_get("resource_type")?, row.try_get("id")?);
            seqs.insert(key, row.try_get::<i64, _>("seq")?);
        }
        crate::store::index::insert_rendered(&mut self.tx, index).await?;
        Ok(seqs)
    }

    /// [`WriteTx::create_many`] on SQLite: versions, then their entries and pointers, then
    /// their index rows, each through prepared statements of fixed sizes ([`FixedInsert`]).
    async fn create_many_sqlite(
        &mut self,
        last_updated: OffsetDateTime,
        contents: &[(String, String, String)],
        hashes: &[String],
        index: &Rendered,
    ) -> StoreResult<HashMap<(String, String), i64>> {
        let lu = micros(last_updated);
        let method = WriteMethod::Create.as_str();
        let mut seqs = HashMap::with_capacity(contents.len());
        let mut ordered = Vec::with_capacity(contents.len());
        for (sql, chunk) in SQLITE_INSERTS.versions.chunks(contents) {
            let mut query = sqlx::query(sql);
            for (resource_type, id, content) in chunk {
                query = query
                    .bind(resource_type.as_str())
                    .bind(id.as_str())
                    .bind(1i64)
                    .bind(method)
                    .bind(lu)
                    .bind(content.as_str());
            }
            let returned = query
                .fetch_all(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            for row in &returned {
                let key: (String, String) = (row.try_get("resource_type")?, row.try_get("id")?);
                seqs.insert(key, row.try_get::<i64, _>("seq")?);
            }
        }
        // Entries in version order, so entry order follows it.
        for ((resource_type, id, _), hash) in contents.iter().zip(hashes) {
            let seq = *seqs
                .get(&(resource_type.clone(), id.clone()))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("{resource_type}/{id} was not written"))
                })?;
            ordered.push((resource_type.as_str(), id.as_str(), hash.as_str(), seq));
        }
        ordered.sort_by_key(|&(_, _, _, seq)| seq);
        let operation = crate::store::ledger::operation_name(WriteMethod::Create);
        let recorded_at = fhir::primitives::format_instant(last_updated);
        let (actor, request_id) = (
            self.context.actor.as_str(),
            self.context.request_id.as_str(),
        );
        SQLITE_INSERTS
            .entries
            .execute(
                &mut self.tx,
                &ordered,
                |query, &(resource_type, id, hash, seq)| {
                    query
                        .bind(seq)
                        .bind(resource_type)
                        .bind(id)
                        .bind(1i64)
                        .bind(operation)
                        .bind(hash)
                        .bind(actor)
                        .bind(recorded_at.as_str())
                        .bind(request_id)
                },
            )
            .await
            .map_err(StoreError::from_sqlx)?;
        SQLITE_INSERTS
            .pointers
            .execute(
                &mut self.tx,
                &ordered,
                |query, &(resource_type, id, _, seq)| {
                    query
                        .bind(resource_type)
                        .bind(id)
                        .bind(1i64)
                        .bind(0i64)
                        .bind(lu)
                        .bind(seq)
                },
            )
            .await
            .map_err(StoreError::from_sqlx)?;
        crate::store::index::insert_rendered(&mut self.tx, index).await?;
        Ok(seqs)
    }
}

/// SQLite's prepared inserts of versions, ledger entries and pointers.
struct SqliteInserts {
    versions: FixedInsert,
    entries: FixedInsert,
    pointers: FixedInsert,
}

static SQLITE_INSERTS: std::sync::LazyLock<SqliteInserts> = std::sync::LazyLock::new(|| {
    fn names<C: Iden + Copy>(columns: &[C]) -> Vec<String> {
        columns.iter().map(|c| Iden::to_string(c)).collect()
    }
    SqliteInserts {
        versions: FixedInsert::new(
            "resource_versions",
            &names(&VERSION_COLUMNS),
            "seq, resource_type, id",
            OnError::UndoStatement,
        ),
        entries: FixedInsert::new(
            "ledger_entries",
            &names(&ENTRY_COLUMNS),
            "",
            OnError::UndoStatement,
        ),
        pointers: FixedInsert::new(
            "resources",
            &names(&POINTER_COLUMNS),
            "",
            OnError::UndoStatement,
        ),
    }
});

/// The inputs of [`PG_CREATE_MANY`]: a JSON array of `{ord, resource_type, id,
/// content_hash, start, len}` objects and the contents one after the other, each row's
/// at its 1-based byte offset `start`, `len` bytes long.
fn pg_input(
    contents: &[(String, String, String)],
    hashes: &[String],
) -> StoreResult<(String, Vec<u8>)> {
    #[derive(serde::Serialize)]
    struct Input<'a> {
        ord: usize,
        resource_type: &'a str,
        id: &'a str,
        content_hash: &'a str,
        start: usize,
        len: usize,
    }
    let mut blob = Vec::with_capacity(contents.iter().map(|(_, _, c)| c.len()).sum());
    let mut rows = Vec::with_capacity(contents.len());
    for (ord, ((resource_type, id, content), hash)) in contents.iter().zip(hashes).enumerate() {
        rows.push(Input {
            ord,
            resource_type,
            id,
            content_hash: hash,
            start: blob.len() + 1,
            len: content.len(),
        });
        blob.extend_from_slice(content.as_bytes());
    }
    let input = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((input, blob))
}

/// The records of versions [`WriteTx::create_many`] wrote, with the sequence numbers the
/// database assigned them.
fn created(
    contents: Vec<(String, String, String)>,
    seqs: &HashMap<(String, String), i64>,
    last_updated: OffsetDateTime,
) -> StoreResult<Vec<VersionRecord>> {
    contents
        .into_iter()
        .map(|(resource_type, id, content)| {
            let seq = seqs
                .get(&(resource_type.clone(), id.clone()))
                .copied()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("{resource_type}/{id} was not written"))
                })?;
            Ok(VersionRecord {
                seq,
                resource_type,
                id,
                version: 1,
                method: WriteMethod::Create,
                last_updated,
                content: Some(content),
            })
        })
        .collect()
}
