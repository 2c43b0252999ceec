-- PostgreSQL's rollups drop their unread surrogate ids (migrations/postgres/0040); SQLite's are
-- the tables' rowids, which cost nothing more. This migration only keeps both stores at one
-- schema number, which `sms-notify --version` and `check` name.
SELECT 1;
