-- What the message list, the usage reports and the dispatcher's logs need.
--
-- `country` is the destination's ISO 3166 code, worked out by the phone-number library when
-- the message is queued, so that grouping by country is plain SQL. Rows queued before this
-- migration keep NULL (reported as an unknown country).
-- `request_id` is the X-Request-Id of the API request that queued the message, so that the
-- dispatcher of any instance logs it with the send.

ALTER TABLE messages ADD COLUMN country text;
ALTER TABLE messages ADD COLUMN request_id text;

-- A client's message list, newest first, paged by (created_at, id).
CREATE INDEX messages_by_api_key ON messages (api_key, created_at DESC, id DESC);

-- The metrics' counts of messages by status and channel read only this index.
CREATE INDEX messages_by_status_channel ON messages (status, channel);
