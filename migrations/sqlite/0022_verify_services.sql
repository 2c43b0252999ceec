-- Twilio Verify's services (issue 27); the same table as migrations/postgres. Times are integer
-- microseconds (UTC), ids hyphenated UUID text.
CREATE TABLE verify_services (
    id TEXT PRIMARY KEY,
    account_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    code_length INTEGER NOT NULL CHECK (code_length BETWEEN 4 AND 10),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX verify_services_by_account ON verify_services (account_sid, created_at, id);
