//! The storage API, in FHIR's terms (read a version, write a version, walk history), over
//! SQLite and PostgreSQL alike. SQL is built with sea-query for the backend chosen at start
//! and run through sqlx's `Any` driver, so both backends share every line of this module.
//!
//! Writes go through a [`WriteTx`]: one database transaction that may carry many resource
//! writes (a transaction Bundle) and is the place where everything that must commit with a
//! version (its ledger entry, its search index rows) is written.
//!
//! SQLite allows one writer at a time, so it gets a pool of exactly one writer connection
//! (writers queue in the pool instead of failing with `SQLITE_BUSY`) beside a pool of
//! readers; PostgreSQL uses one pool and row locks.

mod error;
mod fixed_insert;
mod index;
pub mod ledger;
mod migrate;
mod schema;
pub mod search;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sea_query::{
    Alias, Expr, Iden, Order, PostgresQueryBuilder, Query, QueryBuilder, SqliteQueryBuilder,
};
use sea_query_binder::SqlxBinder;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use time::OffsetDateTime;

pub use error::{StoreError, StoreResult};
pub(crate) use index::IndexRows;
pub use index::ReindexBatch;
pub(crate) use write::PreparedResource;
pub use write::{DeleteOutcome, NewResource, PreparedCreates, WriteContext, WriteTx};

use schema::{ResourceVersions as V, Resources as R};

/// Which database engine backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The OpenTelemetry `db.system.name` of this backend.
    pub fn system_name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// The interaction that produced a version, as recorded in history (`Bundle.entry.request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    /// Created by POST (server-assigned id).
    Create,
    /// Created or replaced by PUT.
    Update,
    /// Changed by PATCH.
    Patch,
    /// Deleted.
    Delete,
}

impl WriteMethod {
    /// The stored form, which is also the HTTP verb.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Create => "POST",
            WriteMethod::Update => "PUT",
            WriteMethod::Patch => "PATCH",
            WriteMethod::Delete => "DELETE",
        }
    }

    fn parse(raw: &str) -> StoreResult<Self> {
        Ok(match raw {
            "POST" => WriteMethod::Create,
            "PUT" => WriteMethod::Update,
            "PATCH" => WriteMethod::Patch,
            "DELETE" => WriteMethod::Delete,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown write method '{other}'"
                )))
            }
        })
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// Global write order of this version.
    pub seq: i64,
    /// The resource type.
    pub resource_type: String,
    /// The logical id.
    pub id: String,
    /// The version number, from 1.
    pub version: i64,
    /// What produced this version.
    pub method: WriteMethod,
    /// `meta.lastUpdated`.
    pub last_updated: OffsetDateTime,
    /// The JSON text served for this version; `None` for a delete.
    pub content: Option<String>,
}

impl VersionRecord {
    /// Whether this version is a deletion.
    pub fn is_delete(&self) -> bool {
        self.method == WriteMethod::Delete
    }
}

/// Which versions a history request covers.
#[derive(Debug, Clone, Copy)]
pub enum HistoryScope<'a> {
    /// All resources, or those of these types when any are named.
    System(&'a [&'a str]),
    /// All resources of one type.
    Type(&'a str),
    /// One resource.
    Instance(&'a str, &'a str),
}

/// A history request, validated.
#[derive(Debug, Clone)]
pub struct HistoryQuery<'a> {
    /// What to list.
    pub scope: HistoryScope<'a>,
    /// `_since`: only versions last updated at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// `_at`: only versions that were current at some point in `[start, end)`.
    pub at: Option<(OffsetDateTime, OffsetDateTime)>,
    /// The newest `seq` the paging covers; versions written after the first page are left
    /// out so that paging neither skips nor repeats entries. `None` on the first page.
    pub snapshot: Option<i64>,
    /// Entries to skip.
    pub offset: u64,
    /// Page size.
    pub count: u64,
    /// Only versions of resources whose current version is in this Patient's compartment
    /// (the caller's patient context); deleted resources are left out with it.
    pub compartment: Option<&'a str>,
    /// This server's base URL: absolute references under it count as local.
    pub base_url: Option<&'a str>,
}

/// One page of history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The versions on this page.
    pub versions: Vec<VersionRecord>,
    /// The snapshot to pass when asking for further pages.
    pub snapshot: i64,
    /// Whether a further page exists.
    pub has_more: bool,
    /// Number of versions in the whole history, where counting is cheap (instance level).
    pub total: Option<u64>,
}

/// How much of one connection pool is in use.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    /// `main` on PostgreSQL; `read` or `write` on SQLite.
    pub name: &'static str,
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: usize,
}

/// The storage API: a handle on the database, cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    options: AnyConnectOptions,
}

/// What a pool's connections are for: on SQLite the one write connection is tuned apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoolRole {
    /// Reads, or everything (PostgreSQL).
    Any,
    /// SQLite's single writer.
    SqliteWriter,
}

/// Pragmas of SQLite's one write connection. Measured on batches of AuditEvents (the
/// busiest writer; `trail_write` example), together about a fifth of the write time:
///  * a 64 MiB page cache instead of 2 MiB: each batch touches the right edge of some
///    twenty B-trees, which a small cache reads back from the file every time;
///  * statement journals in memory: a multi-row insert keeps one, which otherwise spills
///    to a temporary file;
///  * a checkpoint every 32,000 WAL pages (125 MiB) instead of 1,000: the commit that
///    crosses the mark runs the checkpoint, and pages written again and again (the ends
///    of the indexes, the reference-index pages of the Patients being read) are copied
///    into the database once per checkpoint, not once per four megabytes. At 8,000 pages
///    a transaction of 2,048 read events crossed the mark nearly every time; 32,000 gave
///    sustained audited reads 6–11 % more (`docs/benchmarks.md`).
const SQLITE_WRITER_PRAGMAS: &str = "PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY; \
     PRAGMA wal_autocheckpoint = 32000;";

/// The pool settings of `backend`, `max` connections at most.
fn pool_options(backend: Backend, max: u32, role: PoolRole) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        // sqlx pings a pooled connection before handing it out: a round trip that finds a
        // PostgreSQL connection the server or the network has dropped. A SQLite
        // connection lives in this process and cannot be dropped that way, and the
        // round trip to its thread was a fifth of the server's CPU per unaudited read.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the writer; FULL makes every
                    // acknowledged commit durable; the busy timeout covers other
                    // processes (`fhir-notary import`) holding the write lock.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    if role == PoolRole::SqliteWriter {
                        conn.execute(SQLITE_WRITER_PRAGMAS).await?;
                    }
                }
                Ok(())
            })
        })
}

/// The SQLite file inside the data directory.
pub const SQLITE_FILE: &str = "fhir-notary.db";

impl Store {
    /// Opens the database named by `database_url`, or the embedded SQLite file in `data_dir`
    /// when there is none. Does not migrate; see [`Store::migrate`].
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &Path,
        pool_size: u32,
    ) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let url = match database_url {
            Some(url) => url.to_owned(),
            None => {
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    StoreError::Config(format!(
                        "cannot create data directory {}: {e}",
                        data_dir.display()
                    ))
                })?;
                format!("sqlite://{}?mode=rwc", data_dir.join(SQLITE_FILE).display())
            }
        };
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Config(
                "the database URL must start with postgres://, postgresql:// or sqlite:".into(),
            ));
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("invalid database URL: {e}")))?;
        let (read, write) = match backend {
            Backend::Postgres => {
                let p = pool_options(backend, pool_size, PoolRole::Any)
                    .connect_with(options.clone())
                    .await?;
                (p.clone(), p)
            }
            Backend::Sqlite => {
                let write = pool_options(backend, 1, PoolRole::SqliteWriter)
                    .connect_with(options.clone())
                    .await?;
                let read = pool_options(backend, pool_size, PoolRole::Any)
                    .connect_with(options.clone())
                    .await?;
                (read, write)
            }
        };
        Ok(Store {
            backend,
            read,
            write,
            options,
        })
    }

    /// The same database through connections of its own (at most `max`) on PostgreSQL,
    /// for background writers that outlive the HTTP workers (the AuditEvent trail, the
    /// sealer). A PostgreSQL connection belongs to the runtime that opened it, and each
    /// HTTP worker's runtime stops with the server, before the last AuditEvents are
    /// stored: a commit on a connection a worker opened would fail, or worse, be applied
    /// and reported as failed. SQLite connections run on threads of their own, and its
    /// single writer is shared.
    pub fn with_own_pool(&self, max: u32) -> Store {
        match self.backend {
            Backend::Sqlite => self.clone(),
            Backend::Postgres => {
                let pool = pool_options(self.backend, max, PoolRole::Any)
                    .min_connections(0)
                    .connect_lazy_with(self.options.clone());
                Store {
                    backend: self.backend,
                    read: pool.clone(),
                    write: pool,
                    options: self.options.clone(),
                }
            }
        }
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> StoreResult<()> {
        migrate::migrator(self.backend)
            .await?
            .run(&self.write)
            .await?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Open and idle connections of each connection pool, for metrics.
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        let usage = |name, pool: &AnyPool| PoolUsage {
            name,
            size: pool.size(),
            idle: pool.num_idle(),
        };
        match self.backend {
            Backend::Postgres => vec![usage("main", &self.write)],
            Backend::Sqlite => vec![usage("read", &self.read), usage("write", &self.write)],
        }
    }

    /// Closes the pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    fn builder(&self) -> &'static dyn QueryBuilder {
        query_builder(self.backend)
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads first and then writes fails with "database is
    /// locked" when another process (`fhir-notary reindex`, `import`) wrote meanwhile,
    /// instead of waiting its turn.
    async fn begin_raw(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        };
        tx.map_err(StoreError::from_sqlx)
    }

    /// Starts a write transaction on behalf of `context`.
    #[tracing::instrument(name = "db.begin", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn begin(&self, context: WriteContext) -> StoreResult<WriteTx> {
        let tx = self.begin_raw().await?;
        Ok(WriteTx::new(tx, self.backend, context))
    }

    /// Refreshes the query planner's statistics (`ANALYZE`). After a bulk load the planner
    /// would otherwise plan searches for the empty tables it last saw: measured on the
    /// Synthea set, 4 searches/s before and 190/s after.
    pub async fn analyze(&self) -> StoreResult<()> {
        sqlx::query("ANALYZE").execute(&self.write).await?;
        Ok(())
    }

    /// How far `fhir-notary import` got in `source`: (records done, whether finished).
    pub async fn import_position(&self, source: &str) -> StoreResult<Option<(i64, bool)>> {
        use schema::ImportProgress as P;
        let (sql, values) = Query::select()
            .columns([P::Position, P::Finished])
            .from(P::Table)
            .and_where(Expr::col(P::Source).eq(source))
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| {
            Ok((
                row.try_get::<i64, _>("position")?,
                row.try_get::<i64, _>("finished")? != 0,
            ))
        })
        .transpose()
    }

    /// The current version of a resource (a delete if it was deleted), or `None` if it never
    /// existed.
    #[tracing::instrument(name = "db.read", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn read_current(
        &self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<VersionRecord>> {
        let (sql, values) = select_versions()
            .inner_join(
                R::Table,
                Expr::col((R::Table, R::Seq)).equals((V::Table, V::Seq)),
            )
            .and_where(Expr::col((R::Table, R::ResourceType)).eq(resource_type))
            .and_where(Expr::col((R::Table, R::Id)).eq(id))
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// One version of a resource, or `None` if that version does not exist.
    #[tracing::instrument(name = "db.read", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<VersionRecord>> {
        let (sql, values) = select_versions()
            .and_where(Expr::col((V::Table, V::ResourceType)).eq(resource_type))
            .and_where(Expr::col((V::Table, V::Id)).eq(id))
            .and_where(Expr::col((V::Table, V::Version)).eq(version))
            .build_any_sqlx(self.builder());
        let row = sqlx::query_with(&sql, values)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(version_from_row).transpose()
    }

    /// One page of history, newest first.
    #[tracing::instrument(name = "db.history", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system_name()))]
    pub async fn history(&self, query: &HistoryQuery<'_>) -> StoreResult<HistoryPage> {
        // The first page needs no snapshot of its own: its newest entry is the snapshot
        // later pages are bound by. Only a first page that starts at an offset must fix it.
        let snapshot = match (query.snapshot, query.offset) {
            (Some(s), _) => Some(s),
            (None, 0) => None,
            (None, _) => {
                let (sql, values) = Query::select()
                    .expr_as(Expr::col(V::Seq).max(), Alias::new("max_seq"))
                    .from(V::Table)
                    .build_any_sqlx(self.builder());
                let row = sqlx::query_with(&sql, values).fetch_one(&self.read).await?;
                Some(row.try_get::<Option<i64>, _>("max_seq")?.unwrap_or(0))
            }
        };

        let mut select = select_versions();
        if let Some(snapshot) = snapshot {
            select.and_where(Expr::col((V::Table, V::Seq)).lte(snapshot));
        }
        match query.scope {
            HistoryScope::System([]) => {}
            HistoryScope::System(types) => {
                select
                    .and_where(Expr::col((V::Table, V::ResourceType)).is_in(types.iter().copied()));
            }
            HistoryScope::Type(t) => {
                select.and_where(Expr::col((V::Table, V::ResourceType)).eq(t));
            }
            HistoryScope::Instance(t, id) => {
                select
                    .and_where(Expr::col((V::Table, V::ResourceType)).eq(t))
                    .and_where(Expr::col((V::Table, V::Id)).eq(id));
            }
        }
        if let Some(patient) = query.compartment {
            let table = Alias::new(V::Table.to_string());
            // `and_where`, as the rest of this query: sea-query refuses to mix it with
            // `cond_where`.
            select.and_where(search::in_compartment(&table, query.base_url, patient).into());
        }
        if let Some(since) = query.since {
            select.and_where(Expr::col((V::Table, V::LastUpdated)).gte(micros(since)));
        }
        if let Some((start, end)) = query.at {
            // A version was current during [start, end) if it was written before `end` and
            // not superseded at or before `start`. Deletions were never "current".
            let next = Alias::new("next_version");
            select
                .and_where(Expr::col((V::Table, V::LastUpdated)).lt(micros(end)))
                .and_where(Expr::col((V::Table, V::Method)).ne(WriteMethod::Delete.as_str()))
                .and_where(
                    Expr::exists(
                        Query::select()
                            .expr(Expr::val(1))
                            .from_as(V::Table, next.clone())
                            .and_where(
                                Expr::col((next.clone(), V::ResourceType))
                                    .equals((V::Table, V::ResourceType)),
                            )
                            .and_where(Expr::col((next.clone(), V::Id)).equals((V::Table, V::Id)))
                            .and_where(
                                Expr::col((next.clone(), V::Version)).eq(Expr::col((
                                    V::Table,
                                    V::Version,
                                ))
                                .add(1)),
                            )
                            .and_where(Expr::col((next.clone(), V::LastUpdated)).lte(micros(start)))
                            .take(),
                    )
                    .not(),
                );
        }

        let counting = select.clone();
        select
            .order_by((V::Table, V::Seq), Order::Desc)
            .limit(query.count + 1)
            .offset(bindable(query.offset));
        let (sql, values) = select.build_any_sqlx(self.builder());
        let rows = sqlx::query_with(&sql, values).fetch_all(&self.read).await?;
        let mut versions = rows
            .iter()
            .map(version_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let has_more = versions.len() as u64 > query.count;
        versions.truncate(query.count as usize);
        let snapshot = snapshot.or(versions.first().map(|v| v.seq)).unwrap_or(0);

        // Instance history reports its total; a first page that holds everything counts it
        // without another query.
        let total = match query.scope {
            HistoryScope::Instance(..) if query.offset == 0 && !has_more => {
                Some(versions.len() as u64)
            }
            HistoryScope::Instance(..) => {
                let mut count = counting;
                count.clear_selects();
                count.and_where(Expr::col((V::Table, V::Seq)).lte(snapshot));
                count.expr_as(Expr::col((V::Table, V::Seq)).count(), Alias::new("n"));
                let (sql, values) = count.build_any_sqlx(self.builder());
                let row = sqlx::query_with(&sql, values).fetch_one(&self.read).await?;
                Some(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
            }
            _ => None,
        };
        Ok(HistoryPage {
            versions,
            snapshot,
            has_more,
            total,
        })
    }
}

/// A row count as SQL can take it: sqlx's `Any` binding holds integers as `i64` (and its
/// sea-query binder panics beyond), while clients may send any `u64`. Nothing lies beyond
/// `i64::MAX` rows anyway.
pub(crate) fn bindable(n: u64) -> u64 {
    n.min(i64::MAX as u64)
}

pub(crate) fn query_builder(backend: Backend) -> &'static dyn QueryBuilder {
    match backend {
        Backend::Sqlite => &SqliteQueryBuilder,
        Backend::Postgres => &PostgresQueryBuilder,
    }
}

/// `SELECT <every version column> FROM resource_versions`.
pub(crate) fn select_versions() -> sea_query::SelectStatement {
    Query::select()
        .columns([
            (V::Table, V::Seq),
            (V::Table, V::ResourceType),
            (V::Table, V::Id),
            (V::Table, V::Version),
            (V::Table, V::Method),
            (V::Table, V::LastUpdated),
            (V::Table, V::Content),
        ])
        .from(V::Table)
        .take()
}

pub(crate) fn version_from_row(row: &AnyRow) -> StoreResult<VersionRecord> {
    Ok(VersionRecord {
        seq: row.try_get("seq")?,
        resource_type: row.try_get("resource_type")?,
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        method: WriteMethod::parse(&row.try_get::<String, _>("method")?)?,
        last_updated: from_micros(row.try_get("last_updated")?)?,
        content: row.try_get("content")?,
    })
}

/// Microseconds since the Unix epoch: how instants are stored, on both backends.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(us: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| StoreError::Corrupt(format!("stored instant {us} out of range: {e}")))
}
