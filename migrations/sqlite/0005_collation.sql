-- PostgreSQL's step 5 makes every text column compare bytewise (COLLATE "C"). SQLite's
-- default collation, BINARY, already does: nothing to change here.
SELECT 1;
