-- Issue 18, the guard's remainder. What each message reserved of the daily budgets, so that a
-- message that ends without the provider taking it (failed for good, expired unsent) gives its
-- reservation back, and spend is not over-counted. A row lives while its message is in the
-- queue: settling deletes it, giving the amount back only when the message went unsent.
CREATE TABLE budget_reservations (
    message_id uuid NOT NULL,
    day text NOT NULL,
    scope text NOT NULL,
    amount int8 NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (message_id, scope)
);

-- Who asked for the code a decision was about: the calling service's `user_id`, and whether
-- it vouched for the user (`trusted`).
ALTER TABLE fraud_decisions ADD COLUMN user_id text;
ALTER TABLE fraud_decisions ADD COLUMN trusted boolean NOT NULL DEFAULT false;

-- The calling-code pumping alarm's own hourly volume: the `country_surge` policy counts codes in
-- `fraud_code_counts`, and nothing writes or reads this any more.
DROP TABLE country_send_volume;
