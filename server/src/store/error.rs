//! The storage layer's error type. Conflicts the HTTP layer must answer deliberately
//! (version preconditions, concurrent writers) have their own variants; everything else is
//! a database fault that is logged and never shown to a client.

/// Errors of the storage API.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An `If-Match` precondition named a version that is not the current one.
    #[error("version {expected} was required but the current version is {current:?}")]
    VersionMismatch {
        /// The version the client said it was updating.
        expected: i64,
        /// The current version, if the resource exists.
        current: Option<i64>,
    },
    /// Another writer changed the same data at the same moment; retrying may succeed.
    #[error("concurrent write conflict: {0}")]
    Conflict(String),
    /// Stored data does not have the shape this server writes.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database could not be reached or failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The configured database could not be opened.
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    /// Maps unique-constraint and serialization failures to [`StoreError::Conflict`], so the
    /// HTTP layer answers them as 409 rather than as server faults.
    pub(crate) fn from_sqlx(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // 23505 unique_violation, 40001 serialization_failure, 40P01 deadlock (PostgreSQL);
            // 2067/1555 UNIQUE / PRIMARY KEY constraint, 5/517 busy (SQLite extended codes).
            if matches!(
                code.as_str(),
                "23505" | "40001" | "40P01" | "2067" | "1555" | "5" | "517"
            ) || db.is_unique_violation()
            {
                return StoreError::Conflict(db.message().to_owned());
            }
        }
        StoreError::Database(err)
    }
}

/// Results of the storage API.
pub type StoreResult<T> = Result<T, StoreError>;
