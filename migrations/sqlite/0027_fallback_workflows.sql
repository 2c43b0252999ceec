-- Fallback workflows, as in migrations/postgres (0027). Times are microseconds since the
-- epoch, as in every other table here.
CREATE TABLE verification_workflows (
    verification_id TEXT PRIMARY KEY,
    channels TEXT NOT NULL,
    fallback_after_seconds INTEGER NOT NULL CHECK (fallback_after_seconds > 0),
    step INTEGER NOT NULL CHECK (step >= 0),
    step_message_id TEXT,
    next_step_at INTEGER,
    claimed_until INTEGER,
    stopped_reason TEXT,
    request TEXT NOT NULL
);

CREATE INDEX verification_workflows_next_step
    ON verification_workflows (next_step_at)
    WHERE next_step_at IS NOT NULL;

ALTER TABLE verification_codes ADD COLUMN message_id TEXT;
ALTER TABLE verification_codes ADD COLUMN approved_at INTEGER;
CREATE INDEX verification_codes_by_message ON verification_codes (message_id)
    WHERE message_id IS NOT NULL;
