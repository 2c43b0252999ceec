-- PostgreSQL's event triggers ask for an endpoint before calling their PL/pgSQL function
-- (migrations/postgres/0043); SQLite's triggers have no such call. This migration only keeps
-- both stores at one schema number, which `sms-notify --version` and `check` name.
SELECT 1;
