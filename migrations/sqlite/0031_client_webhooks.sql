-- Signed webhooks to client services (issue 20): the same tables as migrations/postgres.
--
-- Events are written by triggers, in the transaction of the change they report, so that none
-- is lost and none describes a change that did not commit. An event is recorded only for an
-- API key with an endpoint (enabled or not: a replay may want it later) receiving its type;
-- its deliveries go to those enabled. A later migration that rebuilds `messages`,
-- `verifications` or `fraud_decisions` must create these triggers again (the conformance
-- tests of the events fail until it does).

CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY NOT NULL,
    -- The API key's name, never the key.
    api_key TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT,
    -- The event types received, space-separated between spaces: ' message.sent '.
    events TEXT NOT NULL,
    -- 'whsec_' and base64: the service signs with it, so it is kept as given.
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until INTEGER,
    enabled INTEGER NOT NULL,
    disabled_reason TEXT,
    failing_since INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX webhook_endpoints_by_api_key ON webhook_endpoints (api_key, created_at);

CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    api_key TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence > 0),
    created_at INTEGER NOT NULL,
    -- The object's fields that may change after the event, as they were.
    status TEXT,
    error_code TEXT,
    error_message TEXT,
    price_amount TEXT,
    price_currency TEXT,
    detail TEXT,
    -- The event's rendered `data`, kept once, so that every delivery sends the same bytes.
    data TEXT,
    UNIQUE (object_id, sequence)
);

CREATE INDEX webhook_events_by_api_key ON webhook_events (api_key, created_at);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempt_count INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    next_attempt_at INTEGER NOT NULL,
    locked_until INTEGER,
    claim_token TEXT,
    last_http_status INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    finished_at INTEGER
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

CREATE TRIGGER messages_webhook_events AFTER UPDATE OF status ON messages
FOR EACH ROW
WHEN OLD.status IS NOT NEW.status AND NEW.status IN ('sent', 'delivered', 'undelivered', 'failed')
    AND EXISTS (SELECT 1 FROM webhook_endpoints WHERE api_key = NEW.api_key AND events LIKE '% ' || 'message.' || NEW.status || ' %')
BEGIN
    INSERT INTO webhook_events (id, type, object_id, api_key, sequence, created_at, status,
        error_code, error_message, price_amount, price_currency)
    VALUES (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
        'message.' || NEW.status, NEW.id, NEW.api_key,
        COALESCE((SELECT max(sequence) FROM webhook_events WHERE object_id = NEW.id), 0) + 1,
        NEW.updated_at, NEW.status, NEW.error_code, NEW.error_message, NEW.price_amount, NEW.price_currency);
    INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_at, created_at)
    SELECT (SELECT id FROM webhook_events WHERE object_id = NEW.id ORDER BY sequence DESC LIMIT 1),
        id, 'pending', NEW.updated_at, NEW.updated_at
    FROM webhook_endpoints
    WHERE api_key = NEW.api_key AND enabled AND events LIKE '% ' || 'message.' || NEW.status || ' %';
END;

CREATE TRIGGER verifications_webhook_events AFTER UPDATE OF status ON verifications
FOR EACH ROW
WHEN OLD.status IS NOT NEW.status AND NEW.status IN ('approved', 'canceled', 'expired', 'max_attempts_reached')
    AND EXISTS (SELECT 1 FROM webhook_endpoints WHERE api_key = NEW.api_key AND events LIKE '% ' || 'verification.' || NEW.status || ' %')
BEGIN
    INSERT INTO webhook_events (id, type, object_id, api_key, sequence, created_at, status,
        error_code, error_message, price_amount, price_currency)
    VALUES (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
        'verification.' || NEW.status, NEW.id, NEW.api_key,
        COALESCE((SELECT max(sequence) FROM webhook_events WHERE object_id = NEW.id), 0) + 1,
        NEW.updated_at, NEW.status, NULL, NULL, NULL, NULL);
    INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_at, created_at)
    SELECT (SELECT id FROM webhook_events WHERE object_id = NEW.id ORDER BY sequence DESC LIMIT 1),
        id, 'pending', NEW.updated_at, NEW.updated_at
    FROM webhook_endpoints
    WHERE api_key = NEW.api_key AND enabled AND events LIKE '% ' || 'verification.' || NEW.status || ' %';
END;

CREATE TRIGGER fraud_decisions_webhook_events AFTER INSERT ON fraud_decisions
FOR EACH ROW
WHEN NEW.action = 'block'
    AND EXISTS (SELECT 1 FROM webhook_endpoints WHERE api_key = NEW.api_key AND events LIKE '% ' || 'verification.blocked' || ' %')
BEGIN
    INSERT INTO webhook_events (id, type, object_id, api_key, sequence, created_at, status,
        error_code, error_message, price_amount, price_currency)
    VALUES (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
        'verification.blocked', NEW.id, NEW.api_key,
        COALESCE((SELECT max(sequence) FROM webhook_events WHERE object_id = NEW.id), 0) + 1,
        NEW.at, 'blocked', NULL, NULL, NULL, NULL);
    INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_at, created_at)
    SELECT (SELECT id FROM webhook_events WHERE object_id = NEW.id ORDER BY sequence DESC LIMIT 1),
        id, 'pending', NEW.at, NEW.at
    FROM webhook_endpoints
    WHERE api_key = NEW.api_key AND enabled AND events LIKE '% ' || 'verification.blocked' || ' %';
END;
