-- PostgreSQL's send limits' functions keep to their indexes (migrations/postgres/0041); SQLite
-- has no such functions. This migration only keeps both stores at one schema number, which
-- `sms-notify --version` and `check` name.
SELECT 1;
