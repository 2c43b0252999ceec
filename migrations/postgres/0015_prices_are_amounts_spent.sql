-- A stored price is the amount spent, positive whatever the provider's sign: the usage report
-- adds prices up across providers. Twilio reports its charges negative (`-0.00790`) and its
-- adapter now turns them round; the prices stored before change sign here. No other provider
-- stored a negative price.
UPDATE messages SET price_amount = substr(price_amount, 2) WHERE price_amount LIKE '-%';
UPDATE message_events SET price_amount = substr(price_amount, 2) WHERE price_amount LIKE '-%';
