-- The fraud guard wired into verifications (issue 18).

-- The guard's decision when the verification was started, as JSON `{action, reasons}`; NULL
-- for verifications started before. Text rather than jsonb: it is only ever read back whole,
-- and every query that reads a verification's row (`SELECT *`, `RETURNING v.*`) reads it as
-- text alike on both stores.
ALTER TABLE verifications ADD COLUMN risk text;

-- Policy modes an admin set at run time (`PUT /v1/fraud/policies`); they win over the
-- configuration (`FRAUD_MODE`, `FRAUD_POLICY_*`) on every instance, within the guard's cache.
CREATE TABLE fraud_policy_modes (
    policy text PRIMARY KEY,
    mode text NOT NULL CHECK (mode IN ('off', 'monitor', 'enforce')),
    updated_at timestamptz NOT NULL
);
