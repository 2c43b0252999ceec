-- The fraud guard wired into verifications (issue 18); as migrations/postgres. Times are
-- integer microseconds (UTC).

-- The guard's decision when the verification was started, as JSON `{action, reasons}`.
ALTER TABLE verifications ADD COLUMN risk TEXT;

CREATE TABLE fraud_policy_modes (
    policy TEXT PRIMARY KEY,
    mode TEXT NOT NULL CHECK (mode IN ('off', 'monitor', 'enforce')),
    updated_at INTEGER NOT NULL
);
