-- Calls and WhatsApp's approved templates, as in migrations/postgres (0023).
--
-- SQLite cannot change a CHECK in place, and rebuilding `messages` and `verifications` would
-- have to name every column (dropping any a later migration adds) with foreign keys off. A
-- CHECK that admits one more value holds for every stored row, so SQLite's documented shortcut
-- for such changes applies instead: the tables' own definitions are edited where SQLite keeps
-- them, every other column untouched. `RESET` makes this connection read them again; the table
-- created and dropped after it moves the schema's version, so that every other connection does.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
SET sql = replace(sql, 'CHECK (channel IN (''sms'', ''whatsapp''))',
                  'CHECK (channel IN (''sms'', ''whatsapp'', ''voice''))')
WHERE type = 'table' AND name IN ('messages', 'verifications');
PRAGMA writable_schema = RESET;
CREATE TABLE schema_version_0023 (unused INTEGER);
DROP TABLE schema_version_0023;

ALTER TABLE messages ADD COLUMN locale TEXT;
ALTER TABLE messages ADD COLUMN content_sid TEXT;
