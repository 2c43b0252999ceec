-- Attempt outcomes for sends whose fate is unknown: `ambiguous` (no answer after the request
-- was written), `lost` (the worker died holding the claim; recorded by the next claim) and
-- `adopted` (the provider's list showed an earlier attempt had been accepted).
ALTER TABLE message_attempts DROP CONSTRAINT message_attempts_outcome_check;
ALTER TABLE message_attempts ADD CONSTRAINT message_attempts_outcome_check
    CHECK (outcome IN ('sent', 'retryable_error', 'permanent_error', 'ambiguous', 'lost',
                       'adopted'));
