-- Search index: one row per value of a search parameter of a resource's current version,
-- written in the same transaction as the version. `grp` ties together the components of one
-- composite value (component i of composite `code` is stored under param `code$i`); it is 0
-- for plain values. Instants are microseconds since the epoch; an open end of a date range
-- is the smallest or largest 64-bit integer.
CREATE TABLE search_string (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    grp           BIGINT NOT NULL,
    normalized    TEXT NOT NULL,
    exact         TEXT NOT NULL
);
CREATE INDEX search_string_value ON search_string (resource_type, param, normalized);
CREATE INDEX search_string_resource ON search_string (resource_type, id);

CREATE TABLE search_token (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    grp           BIGINT NOT NULL,
    system        TEXT,
    code          TEXT,
    text          TEXT
);
CREATE INDEX search_token_value ON search_token (resource_type, param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_type, id);

CREATE TABLE search_reference (
    resource_type  TEXT NOT NULL,
    id             TEXT NOT NULL,
    param          TEXT NOT NULL,
    grp            BIGINT NOT NULL,
    target_type    TEXT,
    target_id      TEXT,
    target_version TEXT,
    url            TEXT,
    ident_system   TEXT,
    ident_value    TEXT
);
CREATE INDEX search_reference_value ON search_reference (resource_type, param, target_id, target_type);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id);
CREATE INDEX search_reference_resource ON search_reference (resource_type, id);

CREATE TABLE search_date (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    grp           BIGINT NOT NULL,
    lo            BIGINT NOT NULL,
    hi            BIGINT NOT NULL
);
CREATE INDEX search_date_value ON search_date (resource_type, param, lo, hi);
CREATE INDEX search_date_resource ON search_date (resource_type, id);

CREATE TABLE search_number (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    grp           BIGINT NOT NULL,
    value         DOUBLE PRECISION NOT NULL,
    text          TEXT NOT NULL
);
CREATE INDEX search_number_value ON search_number (resource_type, param, value);
CREATE INDEX search_number_resource ON search_number (resource_type, id);

CREATE TABLE search_quantity (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    grp           BIGINT NOT NULL,
    value         DOUBLE PRECISION NOT NULL,
    comparator    TEXT,
    system        TEXT,
    code          TEXT,
    unit          TEXT
);
CREATE INDEX search_quantity_value ON search_quantity (resource_type, param, value);
CREATE INDEX search_quantity_resource ON search_quantity (resource_type, id);

CREATE TABLE search_uri (
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    param         TEXT NOT NULL,
    grp           BIGINT NOT NULL,
    uri           TEXT NOT NULL
);
CREATE INDEX search_uri_value ON search_uri (resource_type, param, uri);
CREATE INDEX search_uri_resource ON search_uri (resource_type, id);
