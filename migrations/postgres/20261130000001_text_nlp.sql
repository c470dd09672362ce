-- What `dongcha enrich` derived from each review's and social post's text: sentiment, purchase intent,
-- entities. Recomputed when the text changes (text_hash) or a model changes (model_version).
CREATE TABLE review_nlp (
    review_id      BIGINT PRIMARY KEY REFERENCES reviews (id),
    text_hash      BIGINT NOT NULL,           -- xxh3 of text_raw when it was labelled
    model_version  TEXT NOT NULL,             -- sentiment head + intent set versions (name the encoder)
    sentiment      TEXT NOT NULL,             -- negative | neutral | positive
    p_positive     DOUBLE PRECISION NOT NULL, -- the sentiment head's P(positive)
    intent         TEXT NOT NULL,             -- buy | abandon | wait
    intent_margin  DOUBLE PRECISION NOT NULL, -- lead of the chosen intent over the next (small = unsure)
    brands         TEXT NOT NULL,             -- JSON array of brand names
    models         TEXT NOT NULL,             -- JSON array of product model names
    prices         TEXT NOT NULL,             -- JSON array of amounts mentioned
    labelled_at    TEXT NOT NULL              -- RFC 3339, UTC
);

CREATE TABLE post_nlp (
    post_id        BIGINT PRIMARY KEY REFERENCES social_posts (id),
    text_hash      BIGINT NOT NULL,
    model_version  TEXT NOT NULL,
    sentiment      TEXT NOT NULL,
    p_positive     DOUBLE PRECISION NOT NULL,
    intent         TEXT NOT NULL,
    intent_margin  DOUBLE PRECISION NOT NULL,
    brands         TEXT NOT NULL,
    models         TEXT NOT NULL,
    prices         TEXT NOT NULL,
    labelled_at    TEXT NOT NULL
);
