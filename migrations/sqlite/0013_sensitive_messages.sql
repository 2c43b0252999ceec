-- A message from a sensitive template carries a secret (a code) as a verification's does: its
-- body is emptied once it leaves the queue for good. Rows stored before keep `false`, and a
-- verification's code message is still recognised by its `verification_id`.
ALTER TABLE messages ADD COLUMN sensitive INTEGER NOT NULL DEFAULT 0 CHECK (sensitive IN (0, 1));
