-- Telegram webhook mode answers an update in the webhook's HTTP response (Telegram runs the method the
-- response names once it has the response, and delivers the update again when it does not): such a reply is
-- stored already counted as sent, in the same transaction as its turn, and never sent by the outbox; a
-- redelivery of its update is answered with it again. 'response' for those; NULL for replies sent through
-- the API (or not yet sent).
ALTER TABLE platform_updates ADD COLUMN sent_in TEXT;
