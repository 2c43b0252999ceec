-- Messages sent through POST /v1/messages with the built-in sensitive template before 0013 were
-- stored unmarked, their codes in clear for good. Mark them, and empty the bodies of those that
-- already left the queue, as finishing them now would; queued ones keep theirs until then.
-- Operators' own sensitive templates are unknown to a migration: their earlier rows stay as
-- they were (README says how to empty them).
UPDATE messages
SET sensitive = true,
    body = CASE WHEN status IN ('queued', 'sending') THEN body ELSE '' END
WHERE template = 'two-factor-auth' AND NOT sensitive;
