-- Twilio Verify's services (issue 27): the `VA...` resources of the Twilio-compatible API, per
-- Twilio account (`VERIFY_COMPAT_ACCOUNTS`), with the settings a verification started through
-- one uses. In the database so that every instance serves the same services.
CREATE TABLE verify_services (
    id uuid PRIMARY KEY,
    account_sid text NOT NULL,
    friendly_name text NOT NULL,
    code_length integer NOT NULL CHECK (code_length BETWEEN 4 AND 10),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- An account's services, listed oldest first.
CREATE INDEX verify_services_by_account ON verify_services (account_sid, created_at, id);
