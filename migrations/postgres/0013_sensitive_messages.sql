-- A message from a sensitive template carries a secret (a code) as a verification's does: its
-- body is emptied once it leaves the queue for good. A constant default adds the column
-- without rewriting the table; rows stored before keep `false`, and a verification's code
-- message is still recognised by its `verification_id`.
ALTER TABLE messages ADD COLUMN sensitive boolean NOT NULL DEFAULT false;
