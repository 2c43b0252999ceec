-- Fallback workflows (issue 19 item 3): a verification may go out on a list of channels in
-- turn, the next one when the current step fails, is not delivered, or is not approved in time.
--
-- A workflow is a row of its own, written before its verification (so that no verification is
-- ever stored without the rest of its workflow); one whose verification was never stored is
-- never claimed, since a claim joins its verification. No foreign key, for that reason.
CREATE TABLE verification_workflows (
    verification_id uuid PRIMARY KEY,
    -- The channels in order, comma-separated (`whatsapp,sms,voice`).
    channels text NOT NULL,
    fallback_after_seconds bigint NOT NULL CHECK (fallback_after_seconds > 0),
    -- The index in `channels` of the step sent last; a step is taken only from the step it
    -- expects, so that it never runs twice.
    step bigint NOT NULL CHECK (step >= 0),
    -- That step's message: its final failure makes the next step due at once.
    step_message_id uuid,
    -- When the next step is due without news; NULL once no step is left or steps stopped.
    next_step_at timestamptz,
    -- A worker's claim of the next step: no other worker takes it before then.
    claimed_until timestamptz,
    -- Why steps stopped before the last one (a limit refused it, ...).
    stopped_reason text,
    -- What the starting request said that every step repeats (locale, code length, app hash,
    -- brand, the client's signals for the fraud guard), as JSON.
    request text NOT NULL
);

-- Workers look for due steps among the workflows that still have one.
CREATE INDEX verification_workflows_next_step
    ON verification_workflows (next_step_at)
    WHERE next_step_at IS NOT NULL;

-- Each code knows the message that carried it, and whether it is the one that approved: a
-- verification's attempts are its code messages with this beside them.
ALTER TABLE verification_codes ADD COLUMN message_id uuid;
ALTER TABLE verification_codes ADD COLUMN approved_at timestamptz;
CREATE INDEX verification_codes_by_message ON verification_codes (message_id)
    WHERE message_id IS NOT NULL;
