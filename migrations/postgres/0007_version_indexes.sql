-- An instance's versions are found through the unique (resource_type, id, version) key;
-- a second index on (resource_type, id, seq) only cost every write one more B-tree insert.
DROP INDEX IF EXISTS resource_versions_instance_seq;
