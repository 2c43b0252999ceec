-- OpenTelemetry traces (issue 25, item 1). A message keeps the W3C `traceparent` of the
-- request that queued it, so that its sends, on whatever instance claims them, continue that
-- trace; an attempt keeps its send span's, which a status callback or a client webhook
-- delivery links to. Both are NULL without a trace exporter.
ALTER TABLE messages ADD COLUMN traceparent text;
ALTER TABLE message_attempts ADD COLUMN traceparent text;
