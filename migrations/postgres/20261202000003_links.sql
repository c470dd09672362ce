-- Customer service, part two: which shop customer a chat is (so "my order" can be answered with the
-- customer's own orders and nobody else's), the one-time codes that link one, and which sent message
-- belongs to which handoff (an operator answers a relayed message by replying to it).

-- A chat linked to a shop customer: by the shop's system (POST /v1/support/messages with customer_id) or by
-- a code an operator issued (`/link CUSTOMER` → the customer sends `/link CODE`).
CREATE TABLE support_links (
    platform     TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    customer     TEXT NOT NULL,             -- the shop's customer id (customers.external_id)
    linked_by    TEXT NOT NULL,             -- "shop" or "code"
    linked_at    TEXT NOT NULL,
    PRIMARY KEY (platform, chat_id)
);

-- One-time link codes: valid until `expires_at`, used at most once.
CREATE TABLE support_link_codes (
    code         TEXT PRIMARY KEY,
    customer     TEXT NOT NULL,
    issued_by    TEXT NOT NULL,             -- the operator's id
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    used_by      TEXT                       -- platform:chat that redeemed it
);

-- What was sent for a handoff (its notice, relayed messages) and the platform's id of the sent message.
ALTER TABLE outbox ADD COLUMN handoff_id BIGINT;
ALTER TABLE outbox ADD COLUMN message_id TEXT;
CREATE INDEX outbox_message ON outbox (platform, chat_id, message_id) WHERE message_id IS NOT NULL;
