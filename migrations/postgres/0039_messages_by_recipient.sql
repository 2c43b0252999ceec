-- The dashboard's search by number (issue 21 item 4): an operator looks for a number's
-- messages under every API key. Without an index on "to" the search read every message of its
-- period (a week by default) to find the number's few; with it, each weekly partition reads
-- only the number's rows, newest first, as `messages_by_api_key` does for a key. Each message
-- pays one more index entry when stored and at each change of its status (never a HOT update:
-- `status` is indexed); docs/performance.md ("Dashboard pages on history") has what that costs
-- and what the build takes. It is built on every partition at once, under a lock that holds
-- writes to `messages` until it is done.
CREATE INDEX messages_by_recipient ON messages ("to", created_at DESC, id DESC);
