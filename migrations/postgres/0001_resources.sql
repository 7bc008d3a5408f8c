CREATE TABLE resource_versions (
    seq           BIGSERIAL PRIMARY KEY,
    resource_type TEXT      NOT NULL,
    id            TEXT      NOT NULL,
    version       BIGINT    NOT NULL,
    method        TEXT      NOT NULL,
    last_updated  BIGINT    NOT NULL,
    content       TEXT,
    UNIQUE (resource_type, id, version)
);

CREATE INDEX resource_versions_type_seq ON resource_versions (resource_type, seq);
CREATE INDEX resource_versions_instance_seq ON resource_versions (resource_type, id, seq);
CREATE INDEX resource_versions_last_updated ON resource_versions (last_updated);

CREATE TABLE resources (
    resource_type TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    deleted       BIGINT NOT NULL,
    last_updated  BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
