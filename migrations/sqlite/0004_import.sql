-- Bulk import progress: how far `fhir-notary import` got in each source file, written in
-- the same transaction as the resources it loaded, so an interrupted import resumes exactly
-- where it stopped (nothing loaded twice, nothing skipped). `position` counts the records
-- (Bundle entries or NDJSON lines) done; `finished` is 1 once the whole file is.
CREATE TABLE import_progress (
    source     TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    finished   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
