-- Partitions by week are PostgreSQL's (migrations/postgres/0037_partitions.sql); SQLite's
-- retention deletes in batches and needs no change. This migration only keeps both stores at
-- one schema number, which `sms-notify --version` and `check` name.
SELECT 1;
