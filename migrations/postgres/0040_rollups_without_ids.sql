-- The rollups' surrogate ids were never read: rollup rows are only inserted (a change to a
-- folded hour adds its difference as rows of its own) and read grouped. Each row still paid a
-- sequence number and a primary-key entry, and the fold of a week of history inserts about a
-- million of them, nearly all by prefix (docs/performance.md, "The fold's joins and inserts").
-- Dropping a column rewrites no row (the owned sequence and the key's index go with it).
ALTER TABLE usage_rollups DROP COLUMN id;
ALTER TABLE conversion_rollups DROP COLUMN id;
ALTER TABLE conversion_latency_rollups DROP COLUMN id;
ALTER TABLE conversion_cost_rollups DROP COLUMN id;
