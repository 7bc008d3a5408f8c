//! The ledger's tables: entries written with each version (see [`super::WriteTx`]), blocks
//! sealed from them, and the reads that proofs and the audit need. Hashing, signing and
//! verification are the `ledger` crate's; this module only stores and loads what it makes.

use ledger::block::{BlockHeader, NodeKey};
use ledger::entry::{Entry, Operation};
use ledger::Hash;
use sea_query::{Alias, Condition, Expr, Order, Query, SelectStatement};
use sea_query_binder::SqlxBinder;
use sqlx::any::AnyRow;
use sqlx::Row;
use tracing::Instrument;

use super::schema::{LedgerBlocks as B, LedgerEntries as E, ResourceVersions as V};
use super::{version_from_row, Store, StoreError, StoreResult, VersionRecord, WriteMethod};

/// The stored name of the operation of a write.
pub(crate) fn operation_name(method: WriteMethod) -> &'static str {
    match method {
        WriteMethod::Create => "create",
        WriteMethod::Update => "update",
        WriteMethod::Patch => "patch",
        WriteMethod::Delete => "delete",
    }
}

fn operation(name: &str) -> StoreResult<Operation> {
    Ok(match name {
        "create" => Operation::Create,
        "update" => Operation::Update,
        "patch" => Operation::Patch,
        "delete" => Operation::Delete,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown ledger operation '{other}'"
            )))
        }
    })
}

/// A sealed block as stored.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// The height of the row it is stored at (its header says where it belongs).
    pub stored_height: u64,
    /// The header, exactly as signed.
    pub header: BlockHeader,
    /// The stored block hash.
    pub hash: Hash,
    /// The stored Ed25519 signature over the header.
    pub signature: [u8; 64],
    /// The leaf hashes of the block's entries, in leaf order.
    pub leaves: Vec<Hash>,
}

/// A ledger entry as stored, with where it was sealed.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    /// Order of insertion; within a block, leaf order.
    pub entry_seq: i64,
    /// The `resource_versions.seq` it notarizes.
    pub version_seq: i64,
    /// The entry itself.
    pub entry: Entry,
    /// The block it was sealed into, if sealed.
    pub block_height: Option<u64>,
}

/// A version with the entry that notarizes it, or an entry whose version is gone: one row
/// of the audit's walk.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// The version, if it exists.
    pub version: Option<VersionRecord>,
    /// Its entry, if it exists.
    pub entry: Option<StoredEntry>,
}

fn hash_from_hex(raw: &str, what: &str) -> StoreResult<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(raw, &mut out)
        .map_err(|e| StoreError::Corrupt(format!("{what} is not 32 hex bytes: {e}")))?;
    Ok(out)
}

fn entry_columns(select: &mut SelectStatement) -> &mut SelectStatement {
    select.columns(ENTRY_COLUMNS.map(|c| (E::Table, c)))
}

fn entry_from_row(row: &AnyRow, prefix: &str) -> StoreResult<StoredEntry> {
    let col = |name: &str| format!("{prefix}{name}");
    let height: Option<i64> = row.try_get(col("block_height").as_str())?;
    Ok(StoredEntry {
        entry_seq: row.try_get(col("entry_seq").as_str())?,
        version_seq: row.try_get(col("version_seq").as_str())?,
        entry: Entry {
            resource_type: row.try_get(col("resource_type").as_str())?,
            id: row.try_get(col("id").as_str())?,
            version: row.try_get(col("version").as_str())?,
            operation: operation(&row.try_get::<String, _>(col("operation").as_str())?)?,
            content_hash: hash_from_hex(
                &row.try_get::<String, _>(col("content_hash").as_str())?,
                "content_hash",
            )?,
            actor: row.try_get(col("actor").as_str())?,
            recorded_at: row.try_get(col("recorded_at").as_str())?,
            request_id: row.try_get(col("request_id").as_str())?,
        },
        block_height: height.map(|h| u64::try_from(h).unwrap_or_default()),
    })
}

fn block_from_row(row: &AnyRow) -> StoreResult<StoredBlock> {
    let height: i64 = row.try_get("height")?;
    let header: BlockHeader =
        serde_json::from_str(&row.try_get::<String, _>("header")?).map_err(|e| {
            StoreError::Corrupt(format!("header of block {height} does not parse: {e}"))
        })?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(row.try_get::<String, _>("signature")?, &mut signature).map_err(|e| {
        StoreError::Corrupt(format!(
            "signature of block {height} is not 64 hex bytes: {e}"
        ))
    })?;
    let leaves_hex: String = row.try_get("leaves")?;
    if leaves_hex.len() % 64 != 0 {
        return Err(StoreError::Corrupt(format!(
            "leaves of block {height} are not whole hashes"
        )));
    }
    let leaves = (0..leaves_hex.len() / 64)
        .map(|i| hash_from_hex(&leaves_hex[i * 64..(i + 1) * 64], "a leaf hash"))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(StoredBlock {
        stored_height: u64::try_from(height).unwrap_or_default(),
        header,
        hash: hash_from_hex(&row.try_get::<String, _>("block_hash")?, "block_hash")?,
        signature,
        leaves,
    })
}

fn select_blocks() -> SelectStatement {
    Query::select()
        .columns([B::Height, B::Header, B::BlockHash, B::Signature, B::Leaves])
        .from(B::Table)
        .take()
}

/// How far sealing lags behind writing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerLag {
    /// Height of the newest block; `None` before genesis.
    pub height: Option<u64>,
    /// Entries waiting to be sealed.
    pub pending: u64,
    /// When the oldest waiting entry was recorded.
    pub oldest_pending: Option<time::OffsetDateTime>,
}

impl Store {
    /// The newest sealed block (the genesis block right after the first seal).
    pub async fn ledger_head(&self) -> StoreResult<Option<StoredBlock>> {
        let (sql, values) = select_blocks()
            .order_by(B::Height, Order::Desc)
            .limit(1)
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(block_from_row).transpose()
    }

    /// Blocks with heights in `[from, to]`, ascending, at most `limit` of them.
    pub async fn ledger_blocks(
        &self,
        from: u64,
        to: u64,
        limit: u64,
    ) -> StoreResult<Vec<StoredBlock>> {
        let (sql, values) = select_blocks()
            .and_where(Expr::col(B::Height).gte(i64::try_from(from).unwrap_or(i64::MAX)))
            .and_where(Expr::col(B::Height).lte(i64::try_from(to).unwrap_or(i64::MAX)))
            .order_by(B::Height, Order::Asc)
            .limit(limit)
            .build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values).fetch_all(&self.read).await?;
        rows.iter().map(block_from_row).collect()
    }

    /// Number of entries not sealed yet.
    pub async fn ledger_pending(&self) -> StoreResult<u64> {
        let (sql, values) = Query::select()
            .expr_as(Expr::col(E::EntrySeq).count(), Alias::new("n"))
            .from(E::Table)
            .and_where(Expr::col(E::BlockHeight).is_null())
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values).fetch_one(&self.read).await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// How far sealing lags behind writing: the newest block's height, the number of
    /// waiting entries and when the oldest of them was recorded.
    pub async fn ledger_lag(&self) -> StoreResult<LedgerLag> {
        let (sql, values) = Query::select()
            .expr_as(Expr::col(B::Height).max(), Alias::new("height"))
            .from(B::Table)
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values).fetch_one(&self.read).await?;
        let height = row
            .try_get::<Option<i64>, _>("height")?
            .and_then(|h| u64::try_from(h).ok());
        let (sql, values) = Query::select()
            .column(E::RecordedAt)
            .from(E::Table)
            .and_where(Expr::col(E::BlockHeight).is_null())
            .order_by(E::EntrySeq, Order::Asc)
            .limit(1)
            .build_any_sqlx(self.builder());
        let oldest = sqlx::query_with(&sql, values)
            .fetch_optional(&self.read)
            .await?
            .map(|row| row.try_get::<String, _>("recorded_at"))
            .transpose()?;
        let pending = if oldest.is_some() {
            self.ledger_pending().await?
        } else {
            0
        };
        Ok(LedgerLag {
            height,
            pending,
            oldest_pending: oldest.as_deref().and_then(fhir::primitives::parse_instant),
        })
    }

    /// The entry notarizing one version.
    pub async fn ledger_entry(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredEntry>> {
        // Found through the version's unique key, so the entries table needs no index of
        // its own on (type, id, version) on the write path.
        let (sql, values) = entry_columns(&mut Query::select())
            .from(E::Table)
            .inner_join(
                V::Table,
                Expr::col((V::Table, V::Seq)).equals((E::Table, E::VersionSeq)),
            )
            .and_where(Expr::col((V::Table, V::ResourceType)).eq(resource_type))
            .and_where(Expr::col((V::Table, V::Id)).eq(id))
            .and_where(Expr::col((V::Table, V::Version)).eq(version))
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(|r| entry_from_row(r, "")).transpose()
    }

    /// The entries sealed into a block, in leaf order.
    pub async fn ledger_block_entries(&self, height: u64) -> StoreResult<Vec<StoredEntry>> {
        let (sql, values) = entry_columns(&mut Query::select())
            .from(E::Table)
            .and_where(Expr::col(E::BlockHeight).eq(i64::try_from(height).unwrap_or(i64::MAX)))
            .order_by(E::EntrySeq, Order::Asc)
            .build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values).fetch_all(&self.read).await?;
        rows.iter().map(|r| entry_from_row(r, "")).collect()
    }

    /// Seals up to `max_entries` unsealed entries into the next block, signed with `key`,
    /// creating the genesis block (listing `members`, which must include `key`) first when
    /// the ledger is empty. Returns the new block's header, or `None` when nothing waited.
    ///
    /// The entries are read and the block built and signed before the write transaction
    /// begins, so SQLite's single write lock is held only to store the block and mark its
    /// entries. Callers make sure one sealer runs at a time; inside the transaction the
    /// head must still be the block this one links to, and the block height's primary key
    /// and the `block_height IS NULL` guard make a second sealer fail rather than fork or
    /// double-seal.
    pub async fn seal_block(
        &self,
        key: &NodeKey,
        members: &[[u8; 32]],
        max_entries: u64,
        sealed_at: String,
    ) -> StoreResult<Option<BlockHeader>> {
        let mut sealed = None;
        let prev = match self.ledger_head().await? {
            Some(head) => head.header,
            None => {
                let mut tx = self.begin_raw().await?;
                if self.head_in(&mut tx).await?.is_some() {
                    return Err(StoreError::Conflict(
                        "another sealer created the genesis block".into(),
                    ));
                }
                let (genesis, signature) =
                    ledger::block::genesis(key, members.to_vec(), sealed_at.clone());
                self.insert_block(&mut tx, &genesis, &signature, &[])
                    .await?;
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                sealed = Some(genesis.clone());
                genesis
            }
        };

        let (sql, values) = entry_columns(&mut Query::select())
            .from(E::Table)
            .and_where(Expr::col(E::BlockHeight).is_null())
            .order_by(E::EntrySeq, Order::Asc)
            .limit(max_entries)
            .build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values).fetch_all(&self.read).await?;
        // Only a poll that finds entries is worth a span: the sealer polls every interval.
        if rows.is_empty() {
            return Ok(sealed);
        }
        let span = tracing::info_span!(
            "ledger.seal",
            otel.kind = "internal",
            ledger.entries = rows.len(),
            ledger.height = tracing::field::Empty,
        );
        async {
            let stored = rows
                .iter()
                .map(|r| entry_from_row(r, ""))
                .collect::<StoreResult<Vec<_>>>()?;
            let leaves: Vec<Hash> = stored.iter().map(|s| s.entry.leaf_hash()).collect();
            let (header, signature) = ledger::block::seal_leaves(key, &prev, &leaves, sealed_at);

            let mut tx = self.begin_raw().await?;
            if self.head_in(&mut tx).await?.map(|h| h.hash()) != Some(prev.hash()) {
                return Err(StoreError::Conflict(
                    "another sealer sealed a block meanwhile".into(),
                ));
            }
            self.insert_block(&mut tx, &header, &signature, &leaves)
                .await?;
            let height = i64::try_from(header.height).unwrap_or(i64::MAX);
            let mut marked = 0;
            for chunk in stored.chunks(500) {
                let (sql, values) = Query::update()
                    .table(E::Table)
                    .value(E::BlockHeight, height)
                    .and_where(Expr::col(E::EntrySeq).is_in(chunk.iter().map(|s| s.entry_seq)))
                    .and_where(Expr::col(E::BlockHeight).is_null())
                    .build_any_sqlx(self.builder());
                marked += sqlx::query_with(&sql, values)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .rows_affected();
            }
            if marked != stored.len() as u64 {
                return Err(StoreError::Conflict(
                    "another sealer sealed some of these entries".into(),
                ));
            }
            tx.commit().await.map_err(StoreError::from_sqlx)?;
            tracing::Span::current().record("ledger.height", header.height);
            Ok(Some(header))
        }
        .instrument(span)
        .await
    }

    /// The newest block's header, read inside `tx`.
    async fn head_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> StoreResult<Option<BlockHeader>> {
        let (sql, values) = select_blocks()
            .order_by(B::Height, Order::Desc)
            .limit(1)
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(row
            .as_ref()
            .map(block_from_row)
            .transpose()?
            .map(|b| b.header))
    }

    async fn insert_block(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        header: &BlockHeader,
        signature: &[u8; 64],
        leaves: &[Hash],
    ) -> StoreResult<()> {
        let header_json =
            serde_json::to_string(header).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (sql, values) = Query::insert()
            .into_table(B::Table)
            .columns([B::Height, B::Header, B::BlockHash, B::Signature, B::Leaves])
            .values_panic([
                i64::try_from(header.height).unwrap_or(i64::MAX).into(),
                header_json.into(),
                hex::encode(header.hash()).into(),
                hex::encode(signature).into(),
                leaves.iter().map(hex::encode).collect::<String>().into(),
            ])
            .build_any_sqlx(self.builder());
        sqlx::query_with(&sql, values)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Up to `limit` versions with `seq > after`, in `seq` order, each with its entry (if
    /// any): the audit's walk over every stored version.
    pub async fn audit_versions(&self, after: i64, limit: u64) -> StoreResult<Vec<AuditRow>> {
        let mut select = super::select_versions();
        for column in ENTRY_COLUMNS {
            select.expr_as(
                Expr::col((E::Table, column)),
                Alias::new(format!("e_{}", sea_query::Iden::to_string(&column))),
            );
        }
        let (sql, values) = select
            // The bound on the entries' side too lets PostgreSQL's merge join start both
            // index scans at `after` instead of rescanning the entries from the start.
            .left_join(
                E::Table,
                Condition::all()
                    .add(Expr::col((E::Table, E::VersionSeq)).equals((V::Table, V::Seq)))
                    .add(Expr::col((E::Table, E::VersionSeq)).gt(after)),
            )
            .and_where(Expr::col((V::Table, V::Seq)).gt(after))
            .order_by((V::Table, V::Seq), Order::Asc)
            .limit(limit)
            .build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values).fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                let has_entry = row.try_get::<Option<i64>, _>("e_entry_seq")?.is_some();
                Ok(AuditRow {
                    version: Some(version_from_row(row)?),
                    entry: if has_entry {
                        Some(entry_from_row(row, "e_")?)
                    } else {
                        None
                    },
                })
            })
            .collect()
    }

    /// Entries whose version no longer exists (a history row deleted behind the API's back).
    pub async fn audit_orphan_entries(&self) -> StoreResult<Vec<AuditRow>> {
        let (sql, values) = entry_columns(&mut Query::select())
            .from(E::Table)
            .and_where(
                Expr::exists(
                    Query::select()
                        .expr(Expr::val(1))
                        .from(V::Table)
                        .and_where(Expr::col((V::Table, V::Seq)).equals((E::Table, E::VersionSeq)))
                        .take(),
                )
                .not(),
            )
            .order_by(E::EntrySeq, Order::Asc)
            .build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values).fetch_all(&self.read).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    version: None,
                    entry: Some(entry_from_row(row, "")?),
                })
            })
            .collect()
    }

    /// Number of stored versions (for the audit's progress).
    pub async fn version_count(&self) -> StoreResult<u64> {
        let (sql, values) = Query::select()
            .expr_as(Expr::col(V::Seq).count(), Alias::new("n"))
            .from(V::Table)
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values).fetch_one(&self.read).await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }
}

const ENTRY_COLUMNS: [E; 11] = [
    E::EntrySeq,
    E::VersionSeq,
    E::ResourceType,
    E::Id,
    E::Version,
    E::Operation,
    E::ContentHash,
    E::Actor,
    E::RecordedAt,
    E::RequestId,
    E::BlockHeight,
];

/// The right to seal, held while it lives. On PostgreSQL it is a session advisory lock on a
/// connection of its own, so several server processes on one database elect one sealer and
/// the lock passes to another when the holder dies (its session ends). SQLite is one
/// process's file, whose single writer connection already serializes sealing.
pub struct SealerLock {
    connection: Option<sqlx::AnyConnection>,
}

/// Advisory lock key: "FHIRNOTA" read as a big-endian integer.
const SEALER_LOCK_KEY: i64 = 0x4648_4952_4e4f_5441;

impl Store {
    /// Tries to become the sealer; `None` when another process is.
    pub async fn try_sealer_lock(&self) -> StoreResult<Option<SealerLock>> {
        if self.backend == super::Backend::Sqlite {
            return Ok(Some(SealerLock { connection: None }));
        }
        let mut connection = self.write.acquire().await?.detach();
        let row = sqlx::query(&format!(
            "SELECT pg_try_advisory_lock({SEALER_LOCK_KEY}) AS locked"
        ))
        .fetch_one(&mut connection)
        .await?;
        if row.try_get::<bool, _>("locked")? {
            Ok(Some(SealerLock {
                connection: Some(connection),
            }))
        } else {
            use sqlx::Connection;
            let _ = connection.close().await;
            Ok(None)
        }
    }
}

impl SealerLock {
    /// Whether the lock is still held (its session is alive).
    pub async fn is_held(&mut self) -> bool {
        match &mut self.connection {
            None => true,
            Some(conn) => sqlx::query("SELECT 1").execute(conn).await.is_ok(),
        }
    }
}

impl Store {
    /// The leaf index of a sealed entry in its block: its rank by `entry_seq`.
    pub async fn ledger_leaf_index(&self, height: u64, entry_seq: i64) -> StoreResult<u64> {
        let (sql, values) = Query::select()
            .expr_as(Expr::col(E::EntrySeq).count(), Alias::new("n"))
            .from(E::Table)
            .and_where(Expr::col(E::BlockHeight).eq(i64::try_from(height).unwrap_or(i64::MAX)))
            .and_where(Expr::col(E::EntrySeq).lt(entry_seq))
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values).fetch_one(&self.read).await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }
}
