-- Transaction confirmation (PSD2 dynamic linking, issue 19 item 6); as migrations/postgres.
-- SQLite adds no constraint to an existing table: the service writes all three or none.
ALTER TABLE verifications ADD COLUMN amount TEXT;
ALTER TABLE verifications ADD COLUMN currency TEXT;
ALTER TABLE verifications ADD COLUMN payee TEXT;
