CREATE TABLE ledger_entries (
    entry_seq     BIGSERIAL PRIMARY KEY,
    version_seq   BIGINT NOT NULL UNIQUE,
    resource_type TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    operation     TEXT   NOT NULL,
    content_hash  TEXT   NOT NULL,
    actor         TEXT   NOT NULL,
    recorded_at   TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    block_height  BIGINT
);

CREATE INDEX ledger_entries_unsealed ON ledger_entries (entry_seq) WHERE block_height IS NULL;
CREATE INDEX ledger_entries_block ON ledger_entries (block_height, entry_seq) WHERE block_height IS NOT NULL;

CREATE TABLE ledger_blocks (
    height      BIGINT PRIMARY KEY,
    header      TEXT   NOT NULL,
    block_hash  TEXT   NOT NULL UNIQUE,
    signature   TEXT   NOT NULL,
    leaves      TEXT   NOT NULL
);
