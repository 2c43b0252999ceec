-- PostgreSQL's dispatcher finish becomes a function with a generic plan
-- (migrations/postgres/0042); SQLite has no plan cache to steer. This migration only keeps both
-- stores at one schema number, which `sms-notify --version` and `check` name.
SELECT 1;
