-- Calls and WhatsApp's approved templates (issue 19): a message or verification may go by
-- `voice`; a message keeps the language its text is in (a call speaks it in that language) and
-- the provider's approved template that carries it instead of a free text (Twilio's Content SID,
-- its variables in `body`, emptied with the body once the message leaves the queue).
ALTER TABLE messages DROP CONSTRAINT messages_channel_check;
ALTER TABLE messages ADD CONSTRAINT messages_channel_check
    CHECK (channel IN ('sms', 'whatsapp', 'voice'));
ALTER TABLE verifications DROP CONSTRAINT verifications_channel_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_channel_check
    CHECK (channel IN ('sms', 'whatsapp', 'voice'));
ALTER TABLE messages ADD COLUMN locale text;
ALTER TABLE messages ADD COLUMN content_sid text;
