-- Messages dongcha sends on its own (not as the reply to an update): handoff notices and relayed customer
-- messages to the operators' chat, an operator's `/reply` to a customer, the note when a handoff ends.
-- Each front end sends its platform's rows and marks them sent, so a restart loses none.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    platform    TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    sent_at     TEXT
);
CREATE INDEX outbox_unsent ON outbox (platform, id) WHERE sent_at IS NULL;
