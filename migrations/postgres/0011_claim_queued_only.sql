-- The claim's order index holds queued messages only, in the claim's whole order.
--
-- Holding `sending` rows too, it had to be walked past every send in flight, and the planner
-- took it as a bitmap filter instead (ANDed with the due and lapsed indexes): a bitmap scan
-- reads every entry, dead ones included, and never marks one dead, so each claim read every
-- message claimed or sent since the last vacuum (8,198 entries for 11 queued rows, measured
-- during figure 2). The claim now asks for due queued rows in this index's order and for
-- lapsed leases through `messages_in_flight`, each part an index scan that stops at its LIMIT.
DROP INDEX messages_claim_order;
CREATE INDEX messages_claim_order
    ON messages (priority DESC, created_at, id)
    WHERE status = 'queued';
