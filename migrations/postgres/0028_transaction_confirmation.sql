-- Transaction confirmation (PSD2 dynamic linking, issue 19 item 6): the payment a
-- verification's codes confirm. Their texts name it and their hashes bind it; the amount is
-- kept as the client wrote it (compared as a number by the service), all three or none.
ALTER TABLE verifications
    ADD COLUMN amount text,
    ADD COLUMN currency text,
    ADD COLUMN payee text,
    ADD CONSTRAINT verifications_transaction_whole
        CHECK ((amount IS NULL) = (currency IS NULL) AND (amount IS NULL) = (payee IS NULL));
