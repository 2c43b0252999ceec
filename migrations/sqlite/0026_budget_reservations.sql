-- Issue 18, the guard's remainder; as migrations/postgres.
CREATE TABLE budget_reservations (
    message_id TEXT NOT NULL,
    day TEXT NOT NULL,
    scope TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (message_id, scope)
);

ALTER TABLE fraud_decisions ADD COLUMN user_id TEXT;
ALTER TABLE fraud_decisions ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0;

DROP TABLE country_send_volume;
