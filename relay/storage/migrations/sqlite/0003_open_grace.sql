-- e2e-recall relay, SQLite schema version 3.
-- messages.all_opened_at is when the last recipient device was given its key.  The
-- ciphertext and wraps are kept for open_grace after that, so a device whose answer to
-- "open" was lost (a dropped connection, a relay killed mid-reply) can ask again, and
-- the retention job deletes them afterwards.  The partial index finds those messages.

ALTER TABLE messages ADD COLUMN all_opened_at INTEGER;

CREATE INDEX messages_all_opened ON messages (all_opened_at)
    WHERE state = 'live' AND all_opened_at IS NOT NULL;
