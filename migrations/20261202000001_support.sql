-- Customer service: the shop's knowledge base and the handoffs to a person.

-- One answer of the knowledge base in one language; the same id may exist in zh and en (translations).
-- `digest` is of the entry's content: an import re-indexes only entries whose digest changed.
CREATE TABLE kb_entries (
    id          TEXT NOT NULL,
    lang        TEXT NOT NULL,              -- zh | en
    questions   TEXT NOT NULL,              -- JSON array of phrasings
    answer      TEXT NOT NULL,
    tags        TEXT NOT NULL,              -- JSON array
    source      TEXT NOT NULL,              -- the file it came from
    digest      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,              -- RFC 3339, UTC
    PRIMARY KEY (id, lang)
);

-- A conversation handed to a person. While `released_at` is NULL the bot answers nothing in that chat.
CREATE TABLE handoffs (
    id              INTEGER PRIMARY KEY,
    platform        TEXT NOT NULL,
    chat_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    lang            TEXT NOT NULL,
    reason          TEXT NOT NULL,          -- low_confidence | asked_for_person | negative | failed_twice
    question        TEXT NOT NULL,          -- the message that handed over
    last_messages   TEXT NOT NULL,          -- JSON array of the conversation's last messages
    opened_at       TEXT NOT NULL,
    released_at     TEXT,
    released_by     TEXT                    -- an operator's id, or "timeout"
);
CREATE INDEX handoffs_open ON handoffs (platform, chat_id) WHERE released_at IS NULL;
