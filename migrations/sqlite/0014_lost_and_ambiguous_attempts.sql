-- Attempt outcomes for sends whose fate is unknown, as in migrations/postgres (0014). SQLite
-- cannot change a CHECK in place: the table is rebuilt with its rows.
CREATE TABLE message_attempts_0014 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    number INTEGER NOT NULL CHECK (number >= 0),
    started_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'retryable_error', 'permanent_error',
                                             'ambiguous', 'lost', 'adopted')),
    http_status INTEGER,
    error_code TEXT,
    error_message TEXT,
    provider TEXT
);

INSERT INTO message_attempts_0014 (id, message_id, number, started_at, finished_at, outcome,
                                   http_status, error_code, error_message, provider)
SELECT id, message_id, number, started_at, finished_at, outcome, http_status, error_code,
       error_message, provider
FROM message_attempts;

DROP TABLE message_attempts;
ALTER TABLE message_attempts_0014 RENAME TO message_attempts;
CREATE INDEX message_attempts_by_message ON message_attempts (message_id, number);
