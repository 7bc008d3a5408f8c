CREATE TABLE resource_versions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    method        TEXT    NOT NULL,
    last_updated  INTEGER NOT NULL,
    content       TEXT,
    UNIQUE (resource_type, id, version)
);

CREATE INDEX resource_versions_type_seq ON resource_versions (resource_type, seq);
CREATE INDEX resource_versions_instance_seq ON resource_versions (resource_type, id, seq);
CREATE INDEX resource_versions_last_updated ON resource_versions (last_updated);

CREATE TABLE resources (
    resource_type TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    deleted       INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    PRIMARY KEY (resource_type, id)
) WITHOUT ROWID;
