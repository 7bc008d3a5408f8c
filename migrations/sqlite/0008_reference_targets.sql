-- No index on the targets of references alone. It served only `_revinclude` wildcards
-- (`*`, `Type:*`), which now name their source types and parameters and use the value
-- index (resource_type, param, target_id, target_type) like every other reference lookup.
-- It cost every reference row of every write one more B-tree insert, at a random place:
-- on SQLite, about a sixth of storing an AuditEvent.
DROP INDEX IF EXISTS search_reference_target;
