-- Daily spend caps in money (issue 18, item 6): each UTC day's estimated spend per scope
-- (`total`, `api_key:<key>`, `country:<CC>`), reserved at admission by a conditional increment
-- so that instances together never pass a cap. Amounts in units of 10^-8 of the budget's
-- currency (as `domain::Amount`); the day as `YYYY-MM-DD`, alike on both stores.
CREATE TABLE budget_spend (
    day text NOT NULL,
    scope text NOT NULL,
    spent int8 NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (day, scope)
);
