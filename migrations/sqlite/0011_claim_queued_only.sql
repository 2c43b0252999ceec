-- The claim's order index holds queued messages only, in the claim's whole order, as in
-- migrations/postgres (0011).
--
-- The claim asked for due queued rows OR lapsed leases in one WHERE; SQLite answered it by
-- reading every due row through `messages_next_due` and `messages_in_flight` and sorting them
-- all, so a claim cost as much as the backlog was long (9 ms for 36,000 queued messages, the
-- write lock held throughout). The claim now reads due rows through this index and lapsed
-- leases through `messages_in_flight`, each part stopping at its LIMIT.
DROP INDEX messages_claim_order;
CREATE INDEX messages_claim_order
    ON messages (priority DESC, created_at, id)
    WHERE status = 'queued';
