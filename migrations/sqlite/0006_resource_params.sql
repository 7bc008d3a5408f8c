-- `_id` and `_lastUpdated` are searched and sorted on the `resources` table itself (every
-- resource has exactly one of each), so their index rows are no longer written or read.
DELETE FROM search_token WHERE param = '_id';
DELETE FROM search_date WHERE param = '_lastUpdated';
