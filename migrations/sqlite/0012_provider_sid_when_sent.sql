-- Only sent messages have a provider's id: the unique index held an entry for every queued
-- and claimed version of every message as well (NULLs never conflict), a write per row
-- version that no lookup reads. A lookup by id (`provider_sid = $1`) implies NOT NULL, so it
-- still uses this index.
DROP INDEX messages_provider_sid;
CREATE UNIQUE INDEX messages_provider_sid ON messages (provider_sid)
    WHERE provider_sid IS NOT NULL;
