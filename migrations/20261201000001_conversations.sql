-- What `dongcha serve` keeps: conversations (per platform and chat) and their turns, the chat platforms'
-- update offsets and which updates were answered, and the operators' audit trail. Everything a restart
-- needs to go on where it stopped.

-- One row per question answered (or refused) in a conversation. `reset_at` in `conversations` hides the
-- turns before it from follow-ups without deleting them (the audit keeps them).
CREATE TABLE conversations (
    platform    TEXT NOT NULL,              -- telegram | http | web | discord
    chat_id     TEXT NOT NULL,              -- the platform's chat (or the HTTP conversation id)
    lang        TEXT NOT NULL DEFAULT '',   -- zh | en, of the last message
    reset_at    BIGINT NOT NULL DEFAULT 0,  -- turns with seq <= this are forgotten
    PRIMARY KEY (platform, chat_id)
);

CREATE TABLE conversation_turns (
    platform    TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    seq         BIGINT NOT NULL,            -- 1, 2, ... per conversation
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,              -- operator | customer
    question    TEXT NOT NULL,
    tool        TEXT NOT NULL,              -- the call made ("none", "refused", "busy", ...)
    args        TEXT NOT NULL,              -- JSON object
    reply       TEXT NOT NULL,
    created_at  TEXT NOT NULL,              -- RFC 3339, UTC
    PRIMARY KEY (platform, chat_id, seq)
);

-- Updates a platform delivered and dongcha answered, written in the same transaction as their turn: a
-- redelivered update (after a crash or restart) is recognised and never answered twice. `sent_at` is set
-- once the reply reached the platform; a reply stored but not sent (the process died in between) is sent
-- at the next start.
CREATE TABLE platform_updates (
    platform    TEXT NOT NULL,
    update_id   BIGINT NOT NULL,
    chat_id     TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    reply       TEXT NOT NULL DEFAULT '',
    sent_at     TEXT,
    PRIMARY KEY (platform, update_id)
);

-- The offset confirmed to the platform (every update below it is answered).
CREATE TABLE platform_offsets (
    platform    TEXT PRIMARY KEY,
    next_offset BIGINT NOT NULL
);

-- Every operator question: who, where, when, which tool with which arguments, how long it took.
CREATE TABLE audit_log (
    at          TEXT NOT NULL,              -- RFC 3339, UTC
    platform    TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    question    TEXT NOT NULL,
    tool        TEXT NOT NULL,
    args        TEXT NOT NULL,
    latency_ms  DOUBLE PRECISION NOT NULL,
    outcome     TEXT NOT NULL               -- answered | error | timeout | busy | refused | limited
);
CREATE INDEX audit_by_time ON audit_log (at);
