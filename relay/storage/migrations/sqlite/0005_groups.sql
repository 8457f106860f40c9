-- e2e-recall relay, SQLite schema version 5: groups.
-- A group is a chain of signed membership changes: the relay stores each change's exact
-- bytes (group_changes, one row per seq) so every client can verify the chain itself.
-- groups holds the head the chain reached (seq and the digest of that change) and the
-- group's conversation id, by which a send to the group finds it.  group_members has a
-- row per user who is a member (left_seq NULL) or was one (left_seq: the change that
-- removed them, or that they left by, and they may still read the chain up to it).  All
-- three change in the one transaction that accepts a change, with its group events.

CREATE TABLE groups (
    group_id        BLOB PRIMARY KEY,
    conversation_id BLOB NOT NULL UNIQUE,
    seq             INTEGER NOT NULL,
    head            BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_changes (
    group_id    BLOB NOT NULL REFERENCES groups (group_id),
    seq         INTEGER NOT NULL,
    change      BLOB NOT NULL,
    digest      BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;

CREATE TABLE group_members (
    group_id   BLOB NOT NULL REFERENCES groups (group_id),
    user_id    BLOB NOT NULL,
    admin      INTEGER NOT NULL,
    joined_seq INTEGER NOT NULL,
    left_seq   INTEGER,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_by_user ON group_members (user_id);
