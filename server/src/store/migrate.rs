//! The schema migrations of `migrations/`, embedded in the binary so a single file deploys,
//! and applied through sqlx's migrator (which records them in `_sqlx_migrations`).

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::Backend;

/// One migration step: version, description, SQL for SQLite, SQL for PostgreSQL.
type Step = (i64, &'static str, &'static str, &'static str);

const STEPS: &[Step] = &[
    (
        1,
        "resources",
        include_str!("../../../migrations/sqlite/0001_resources.sql"),
        include_str!("../../../migrations/postgres/0001_resources.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../../migrations/sqlite/0002_ledger.sql"),
        include_str!("../../../migrations/postgres/0002_ledger.sql"),
    ),
    (
        3,
        "search",
        include_str!("../../../migrations/sqlite/0003_search.sql"),
        include_str!("../../../migrations/postgres/0003_search.sql"),
    ),
    (
        4,
        "import",
        include_str!("../../../migrations/sqlite/0004_import.sql"),
        include_str!("../../../migrations/postgres/0004_import.sql"),
    ),
    (
        5,
        "collation",
        include_str!("../../../migrations/sqlite/0005_collation.sql"),
        include_str!("../../../migrations/postgres/0005_collation.sql"),
    ),
    (
        6,
        "resource params",
        include_str!("../../../migrations/sqlite/0006_resource_params.sql"),
        include_str!("../../../migrations/postgres/0006_resource_params.sql"),
    ),
    (
        7,
        "version indexes",
        include_str!("../../../migrations/sqlite/0007_version_indexes.sql"),
        include_str!("../../../migrations/postgres/0007_version_indexes.sql"),
    ),
    (
        8,
        "reference targets",
        include_str!("../../../migrations/sqlite/0008_reference_targets.sql"),
        include_str!("../../../migrations/postgres/0008_reference_targets.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(Backend);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(STEPS
                .iter()
                .map(|&(version, description, sqlite, postgres)| {
                    let sql = match self.0 {
                        Backend::Sqlite => sqlite,
                        Backend::Postgres => postgres,
                    };
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator for a backend.
pub(super) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(backend)).await
}
