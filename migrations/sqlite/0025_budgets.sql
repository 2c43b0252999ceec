-- Daily spend caps in money (issue 18, item 6); as migrations/postgres.
CREATE TABLE budget_spend (
    day TEXT NOT NULL,
    scope TEXT NOT NULL,
    spent INTEGER NOT NULL CHECK (spent >= 0),
    PRIMARY KEY (day, scope)
);
