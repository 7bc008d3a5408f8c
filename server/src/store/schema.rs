//! Table and column names for sea-query, matching `migrations/*/0001_resources.sql`.

use sea_query::Iden;

/// `resource_versions`: every version of every resource.
#[derive(Debug, Clone, Copy, Iden)]
pub enum ResourceVersions {
    Table,
    Seq,
    ResourceType,
    Id,
    Version,
    Method,
    LastUpdated,
    Content,
}

/// `resources`: the current version of each logical resource.
#[derive(Debug, Clone, Copy, Iden)]
pub enum Resources {
    Table,
    ResourceType,
    Id,
    Version,
    Deleted,
    LastUpdated,
    Seq,
}

/// `ledger_entries`: one notarization entry per version.
#[derive(Debug, Clone, Copy, Iden)]
pub enum LedgerEntries {
    Table,
    EntrySeq,
    VersionSeq,
    ResourceType,
    Id,
    Version,
    Operation,
    ContentHash,
    Actor,
    RecordedAt,
    RequestId,
    BlockHeight,
}

/// `ledger_blocks`: sealed, signed blocks.
#[derive(Debug, Clone, Copy, Iden)]
pub enum LedgerBlocks {
    Table,
    Height,
    Header,
    BlockHash,
    Signature,
    Leaves,
}

/// `search_*` tables: index rows of current versions (see `migrations/*/0003_search.sql`).
#[derive(Debug, Clone, Copy, Iden)]
pub enum SearchIndex {
    ResourceType,
    Id,
    Param,
    Grp,
    Normalized,
    Exact,
    System,
    Code,
    Text,
    TargetType,
    TargetId,
    TargetVersion,
    Url,
    IdentSystem,
    IdentValue,
    Lo,
    Hi,
    Value,
    Comparator,
    Unit,
    Uri,
}

/// `import_progress`: how far `fhir-notary import` got in each source.
#[derive(Debug, Clone, Copy, Iden)]
pub enum ImportProgress {
    Table,
    Source,
    Position,
    Finished,
    UpdatedAt,
}
