-- e2e-recall relay, SQLite schema version 7: disappearing messages.
-- deliveries.expires_at is when the sender's timer ends this device's copy: set at the
-- send for a timer counted from sending, and when the relay releases the device's key
-- for one counted from opening (NULL until then, and for a message without a timer).
-- deliveries.expired_at is when the relay destroyed that copy (by the timer, or by
-- retention), the time the report's sentence names.  The timer job finds what is due
-- with the partial index. A copy it has dealt with has expired_at set, or its expires_at
-- cleared (a copy recalled or deleted first, which the timer leaves as it is).

ALTER TABLE deliveries ADD COLUMN expires_at INTEGER;
ALTER TABLE deliveries ADD COLUMN expired_at INTEGER;

CREATE INDEX deliveries_expiring ON deliveries (expires_at)
    WHERE expires_at IS NOT NULL AND expired_at IS NULL;
