-- e2e-recall relay, SQLite schema version 2.
-- users.stored_bytes is the ciphertext each user has waiting (the sizes of their live
-- messages).  It changes in the same transaction as every insert and purge, so the
-- quota check that guards an insert is one row read inside that insert's transaction.
-- challenges_by_expiry lets expired challenges be deleted by range, and the cap on
-- outstanding challenges count what remains.

ALTER TABLE users ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;

UPDATE users SET stored_bytes = (
    SELECT coalesce(sum(size), 0) FROM messages
    WHERE messages.sender = users.user_id AND messages.state = 'live'
);

CREATE INDEX challenges_by_expiry ON challenges (expires_at);
