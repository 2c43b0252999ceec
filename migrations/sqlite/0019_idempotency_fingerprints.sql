-- The digest of the request that took a message's idempotency key, so that the key reused
-- with a different request is refused instead of answered with the first message. Rows stored
-- before have none (NULL) and are treated as matching any request, as they were answered.
ALTER TABLE messages ADD COLUMN idempotency_fingerprint TEXT;
