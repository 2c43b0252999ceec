-- The dashboard's search by number, as migrations/postgres/0039_messages_by_recipient.sql: the
-- number's messages newest first, rather than every message of the search's period.
CREATE INDEX messages_by_recipient ON messages ("to", created_at DESC, id DESC);
