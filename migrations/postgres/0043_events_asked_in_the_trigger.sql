-- The triggers that record client webhook events ask whether an endpoint of the row's API key
-- receives the event before calling `webhook_record_event`, which asks again. Most changes
-- are for API keys without one (every change, while no endpoint exists), and for those the
-- second PL/pgSQL call and its statement were most of the trigger's cost
-- (docs/performance.md, "The deliverer's looks and the lost message").
CREATE OR REPLACE FUNCTION webhook_message_event() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE api_key = NEW.api_key AND events LIKE '% message.' || NEW.status || ' %'
    ) THEN
        PERFORM webhook_record_event('message.' || NEW.status, NEW.id, NEW.api_key,
            NEW.updated_at, NEW.status, NEW.error_code, NEW.error_message, NEW.price_amount,
            NEW.price_currency, NULL);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION webhook_verification_event() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE api_key = NEW.api_key AND events LIKE '% verification.' || NEW.status || ' %'
    ) THEN
        PERFORM webhook_record_event('verification.' || NEW.status, NEW.id, NEW.api_key,
            NEW.updated_at, NEW.status, NULL, NULL, NULL, NULL, NULL);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
