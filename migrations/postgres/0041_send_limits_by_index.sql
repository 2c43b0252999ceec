-- The send limits' functions read and write a batch's few keys, among a count per number ever
-- sent a code and the events of every key's window: always through their indexes. PL/pgSQL
-- keeps a statement's generic plan from its first calls, and on a new database those calls
-- meet tables of a page or two, for which a sequential scan is the cheaper plan: the plan was
-- kept while the tables grew, until autovacuum's first analyze (a minute or more), and every
-- batch read every count whole (docs/performance.md, "Figure 2's two modes"). The setting is
-- the functions' own: a `set_config(..., true)` of another setting made inside them (their
-- `synchronous_commit`) still holds for the rest of the transaction.
ALTER FUNCTION sms_notify_acquire(int[], text[], bigint[], timestamptz[], timestamptz[])
    SET enable_seqscan = off;
ALTER FUNCTION sms_notify_acquire_in_order(int[], text[], bigint[], timestamptz[], timestamptz[])
    SET enable_seqscan = off;
