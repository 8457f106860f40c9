-- e2e-recall relay, SQLite schema version 1.
-- Nothing here is readable by the relay: envelope is signed ciphertext,
-- wrap an HPKE ciphertext for one device.  Headers are cleartext metadata.

CREATE TABLE users (
    user_id      BLOB PRIMARY KEY,
    identity_key BLOB NOT NULL,
    handle       TEXT UNIQUE,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE devices (
    device_id   BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users (user_id),
    certificate BLOB NOT NULL,
    signing_key BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    acked_seq   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE challenges (
    challenge  BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE messages (
    message_id      BLOB PRIMARY KEY,
    conversation_id BLOB NOT NULL,
    sender          BLOB NOT NULL,
    sender_device   BLOB NOT NULL,
    header          BLOB NOT NULL,
    envelope        BLOB,
    size            INTEGER NOT NULL,
    sent_at         INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,
    state           TEXT NOT NULL,
    first_opened_at INTEGER,
    recalled_at     INTEGER,
    revocation      BLOB,
    purge_receipt   BLOB
);
CREATE INDEX messages_recalls ON messages (conversation_id, sender, recalled_at)
    WHERE recalled_at IS NOT NULL;
CREATE INDEX messages_live ON messages (received_at) WHERE state = 'live';
CREATE INDEX messages_live_by_sender ON messages (sender) WHERE state = 'live';
CREATE INDEX messages_finished ON messages (received_at) WHERE state <> 'live';

CREATE TABLE deliveries (
    message_id      BLOB NOT NULL REFERENCES messages (message_id),
    device_id       BLOB NOT NULL,
    user_id         BLOB NOT NULL,
    wrap            BLOB,
    own_device      INTEGER NOT NULL,
    state           TEXT NOT NULL,
    fetched_at      INTEGER,
    key_released_at INTEGER,
    recalled_at     INTEGER,
    deleted_at      INTEGER,
    receipt         BLOB,
    PRIMARY KEY (message_id, device_id)
) WITHOUT ROWID;

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  BLOB NOT NULL,
    kind       TEXT NOT NULL,
    message_id BLOB NOT NULL,
    payload    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_by_device ON events (device_id, seq);
CREATE INDEX events_by_message ON events (message_id);
