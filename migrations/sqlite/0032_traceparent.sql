-- OpenTelemetry traces (issue 25, item 1), as migrations/postgres/0032. Columns added in
-- place: no table is rebuilt, so the client-webhook triggers of 0031 stand.
ALTER TABLE messages ADD COLUMN traceparent TEXT;
ALTER TABLE message_attempts ADD COLUMN traceparent TEXT;
