-- Scheduled digests. One row per digest and period: a period is never reported twice, whatever the
-- schedule fired (a restart after downtime, two slots on the same data). `status`: "sent" (delivered or
-- queued in the outbox in the same transaction) or "quiet" (nothing crossed a threshold).
CREATE TABLE digests (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    period_from  TEXT NOT NULL,
    period_to    TEXT NOT NULL,
    slot         TEXT NOT NULL,             -- the scheduled run it answers (UTC, RFC 3339)
    status       TEXT NOT NULL,
    text         TEXT NOT NULL,
    output       TEXT NOT NULL,             -- the figures the text quotes (JSON)
    created_at   TEXT NOT NULL,
    UNIQUE (name, period_from, period_to)
);

-- The last scheduled run each digest has handled (sent, quiet, or already reported), so a restart
-- neither repeats a run nor sends one per missed run.
CREATE TABLE digest_marks (
    name         TEXT PRIMARY KEY,
    last_slot    TEXT NOT NULL
);

-- Outbox messages may carry a picture (a digest's chart): the text is then its caption.
ALTER TABLE outbox ADD COLUMN photo BLOB;
