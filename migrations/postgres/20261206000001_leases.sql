-- More than one `dongcha serve` on one store. A lease says which process does what only one may do at a
-- time (long-poll a platform, send a platform's outbox, run the digest scheduler) until `expires_ms`
-- (milliseconds since the epoch, the database's clock); its holder renews it well before then, and
-- another process takes it over once it has expired. Each process also holds `instance:ID` while it
-- runs: a reply stored by an instance that is gone and never marked sent is sent by the process holding
-- its platform's outbox lease.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,              -- the holding process's instance id
    expires_ms  BIGINT NOT NULL
);

-- Which process stored an update's reply (and so sends it); NULL for replies stored before this.
ALTER TABLE platform_updates ADD COLUMN instance TEXT;
CREATE INDEX platform_updates_unsent ON platform_updates (platform, update_id)
    WHERE sent_at IS NULL AND reply <> '';
