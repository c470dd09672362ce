-- dongcha's store, PostgreSQL schema: the SQLite schema (../) column for column, with Postgres's types
-- where they differ: 64-bit ids and counts are BIGINT (SQLite's INTEGER is 64-bit; Postgres's is not),
-- dates are DATE, money is integer cents, timestamps are RFC 3339 text as on SQLite. Ids are chosen by the
-- application (content keys, sequential part ids, name hashes), except the service tables' own row ids
-- (handoffs, outbox, digests), which the database numbers (IDENTITY here, SQLite's row key there).
-- Raw text is always kept next to its cleaned form: the original is never lost.

-- One row per `dongcha ingest` of one file (or per demo build).
CREATE TABLE import_batches (
    id            BIGINT PRIMARY KEY,
    source        TEXT NOT NULL,            -- the file as given on the command line, or "demo:..."
    format        TEXT NOT NULL,            -- jsonl | csv | cdnow | demo
    started_at    TEXT NOT NULL,            -- RFC 3339, UTC
    finished_at   TEXT,
    records_read  BIGINT NOT NULL DEFAULT 0,
    accepted      BIGINT NOT NULL DEFAULT 0,
    duplicates    BIGINT NOT NULL DEFAULT 0,
    rejected      BIGINT NOT NULL DEFAULT 0,
    rejects_path  TEXT                      -- the rejects file written beside the summary, if any
);

-- Every record ever stored, by content key: what makes re-imports idempotent.
CREATE TABLE ingested_records (
    key       BIGINT PRIMARY KEY,
    batch_id  BIGINT NOT NULL,
    line_no   BIGINT NOT NULL
);

-- Lines that could not be stored, with why. The bytes themselves are also in the batch's rejects file.
CREATE TABLE rejects (
    batch_id  BIGINT NOT NULL,
    line_no   BIGINT NOT NULL,
    field     TEXT NOT NULL,
    reason    TEXT NOT NULL,
    raw       TEXT NOT NULL,                -- lossy UTF-8 of the line, cut to 4 KiB
    PRIMARY KEY (batch_id, line_no)
);

CREATE TABLE customers (
    id              BIGINT PRIMARY KEY,    -- dongcha's own: integer keys keep the big indexes small
    external_id     TEXT NOT NULL UNIQUE,   -- the shop's customer id (userId, CDNOW id), as given
    first_batch_id  BIGINT NOT NULL
);

CREATE TABLE products (
    id                BIGINT PRIMARY KEY,  -- hash of the cleaned name
    name              TEXT NOT NULL,        -- as first seen
    name_clean        TEXT NOT NULL,
    brand             TEXT,
    model             TEXT,
    category          TEXT,
    list_price_cents  BIGINT
);

-- One row per purchased line: the brief's records and CDNOW's transactions carry one product (or none)
-- each, so a record's purchase is one row. `order_ref` groups the lines of one basket when a source has
-- order ids.
CREATE TABLE orders (
    id            BIGINT PRIMARY KEY,
    customer_id   BIGINT NOT NULL REFERENCES customers (id),
    order_date    DATE NOT NULL,
    product_id    BIGINT REFERENCES products (id),   -- NULL when the source names no product (CDNOW)
    quantity      BIGINT NOT NULL,
    amount_cents  BIGINT,                            -- what was paid for the line; NULL when unknown
    order_ref     TEXT,
    batch_id      BIGINT NOT NULL,
    line_no       BIGINT NOT NULL
);
-- Per-customer history (profiles). Period and product totals scan the table (a million rows take a
-- fraction of a second): more indexes would cost every import more than they save those queries.
CREATE INDEX orders_by_customer ON orders (customer_id, order_date);

CREATE TABLE reviews (
    id           BIGINT PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES customers (id),
    product_id   BIGINT REFERENCES products (id),
    order_id     BIGINT REFERENCES orders (id),
    review_date  DATE,
    rating       DOUBLE PRECISION,          -- 0..5
    text_raw     TEXT NOT NULL,
    text_clean   TEXT NOT NULL,
    lang         TEXT NOT NULL,             -- zh | en
    batch_id     BIGINT NOT NULL,
    line_no      BIGINT NOT NULL
);
CREATE INDEX reviews_by_product ON reviews (product_id, review_date);

CREATE TABLE social_posts (
    id           BIGINT PRIMARY KEY,
    platform     TEXT NOT NULL,             -- lower case: weibo, wechat, douyin, xiaohongshu, twitter, ...
    post_id      TEXT,
    customer_id  BIGINT NOT NULL REFERENCES customers (id),
    product_id   BIGINT REFERENCES products (id),
    posted_on    DATE,
    text_raw     TEXT NOT NULL,
    text_clean   TEXT NOT NULL,
    lang         TEXT NOT NULL,
    batch_id     BIGINT NOT NULL,
    line_no      BIGINT NOT NULL
);
-- A post with an id is the same post wherever it turns up (NULL ids never conflict).
CREATE UNIQUE INDEX social_posts_by_post ON social_posts (platform, post_id);

CREATE TABLE search_events (
    id           BIGINT PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES customers (id),
    searched_on  DATE,
    query_raw    TEXT NOT NULL,
    query_clean  TEXT NOT NULL,
    batch_id     BIGINT NOT NULL,
    line_no      BIGINT NOT NULL
);
