-- Every text column compares bytewise (COLLATE "C"), as SQLite's BINARY does:
--  * both backends order and match text the same way (`_sort` on strings, ids, codes);
--  * B-tree inserts and lookups on the index tables compare with memcmp instead of the
--    locale's strcoll, which was the largest single cost of every write (each AuditEvent
--    adds some twenty index rows);
--  * prefix matches (`LIKE 'abc%'`, string search) can use the B-tree indexes directly.
-- One ALTER TABLE per table, so each table's indexes are rebuilt once.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.table_name,
               string_agg(format('ALTER COLUMN %I TYPE TEXT COLLATE "C"', c.column_name), ', ')
                   AS changes
        FROM information_schema.columns c
        JOIN information_schema.tables tb
          ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
        WHERE c.table_schema = current_schema()
          AND tb.table_type = 'BASE TABLE'
          AND c.data_type = 'text'
          AND c.table_name NOT LIKE '\_sqlx%'
        GROUP BY c.table_name
    LOOP
        EXECUTE format('ALTER TABLE %I %s', t.table_name, t.changes);
    END LOOP;
END
$$;
