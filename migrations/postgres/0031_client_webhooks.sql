-- Signed webhooks to client services (issue 20): the endpoints clients register, the outbox of
-- events, and the durable queue of their deliveries.
--
-- Events are written by triggers, in the transaction of the change they report, so that none
-- is lost and none describes a change that did not commit, whichever statement (batched or
-- not) made the change. An event is recorded only for an API key with an endpoint (enabled or
-- not: a replay may want it later) receiving its type; its deliveries go to those enabled.

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    -- The API key's name, never the key.
    api_key text NOT NULL,
    url text NOT NULL,
    description text,
    -- The event types received, space-separated between spaces: ' message.sent '.
    events text NOT NULL,
    -- 'whsec_' and base64: the service signs with it, so it is kept as given.
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until timestamptz,
    enabled boolean NOT NULL,
    disabled_reason text,
    failing_since timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX webhook_endpoints_by_api_key ON webhook_endpoints (api_key, created_at);

CREATE TABLE webhook_events (
    id uuid PRIMARY KEY,
    type text NOT NULL,
    object_id uuid NOT NULL,
    api_key text NOT NULL,
    sequence bigint NOT NULL CHECK (sequence > 0),
    created_at timestamptz NOT NULL,
    -- The object's fields that may change after the event, as they were.
    status text,
    error_code text,
    error_message text,
    price_amount text,
    price_currency text,
    detail text,
    -- The event's rendered `data`, kept once, so that every delivery sends the same bytes.
    data text,
    UNIQUE (object_id, sequence)
);

CREATE INDEX webhook_events_by_api_key ON webhook_events (api_key, created_at);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempt_count integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    next_attempt_at timestamptz NOT NULL,
    locked_until timestamptz,
    claim_token uuid,
    last_http_status integer,
    last_error text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

-- Records one event and its deliveries when an endpoint of `p_api_key` receives `p_type`.
-- The object's row is locked by the change that calls it, so its sequence numbers are taken
-- one at a time (and the unique constraint would refuse a repeat).
CREATE FUNCTION webhook_record_event(
    p_type text, p_object uuid, p_api_key text, p_at timestamptz, p_status text,
    p_error_code text, p_error_message text, p_price_amount text, p_price_currency text,
    p_detail text
) RETURNS uuid AS $$
DECLARE
    event_id uuid := gen_random_uuid();
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE api_key = p_api_key AND events LIKE '% ' || p_type || ' %'
    ) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events (id, type, object_id, api_key, sequence, created_at, status,
        error_code, error_message, price_amount, price_currency, detail)
    VALUES (event_id, p_type, p_object, p_api_key,
        COALESCE((SELECT max(sequence) FROM webhook_events WHERE object_id = p_object), 0) + 1,
        p_at, p_status, p_error_code, p_error_message, p_price_amount, p_price_currency,
        p_detail);
    INSERT INTO webhook_deliveries (event_id, endpoint_id, status, next_attempt_at, created_at)
    SELECT event_id, id, 'pending', p_at, p_at FROM webhook_endpoints
    WHERE api_key = p_api_key AND enabled AND events LIKE '% ' || p_type || ' %';
    RETURN event_id;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION webhook_message_event() RETURNS trigger AS $$
BEGIN
    PERFORM webhook_record_event('message.' || NEW.status, NEW.id, NEW.api_key,
        NEW.updated_at, NEW.status, NEW.error_code, NEW.error_message, NEW.price_amount,
        NEW.price_currency, NULL);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER messages_webhook_events AFTER UPDATE OF status ON messages
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
        AND NEW.status IN ('sent', 'delivered', 'undelivered', 'failed'))
    EXECUTE FUNCTION webhook_message_event();

CREATE FUNCTION webhook_verification_event() RETURNS trigger AS $$
BEGIN
    PERFORM webhook_record_event('verification.' || NEW.status, NEW.id, NEW.api_key,
        NEW.updated_at, NEW.status, NULL, NULL, NULL, NULL, NULL);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER verifications_webhook_events AFTER UPDATE OF status ON verifications
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
        AND NEW.status IN ('approved', 'canceled', 'expired', 'max_attempts_reached'))
    EXECUTE FUNCTION webhook_verification_event();

CREATE FUNCTION webhook_blocked_event() RETURNS trigger AS $$
BEGIN
    PERFORM webhook_record_event('verification.blocked', NEW.id, NEW.api_key, NEW.at,
        'blocked', NULL, NULL, NULL, NULL, NULL);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER fraud_decisions_webhook_events AFTER INSERT ON fraud_decisions
    FOR EACH ROW
    WHEN (NEW.action = 'block')
    EXECUTE FUNCTION webhook_blocked_event();
