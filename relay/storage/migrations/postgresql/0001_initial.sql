-- The relay's schema on PostgreSQL: the SQLite schema at its version 8, column for
-- column, so the two backends keep the same rows.  bytea for every byte string,
-- bigint for times (milliseconds since the epoch), sizes and counters, boolean for
-- flags.  Version 1 here stands for SQLite's versions 1 to 8; later changes get a
-- migration on each side.

CREATE TABLE users (
    user_id      bytea PRIMARY KEY,
    identity_key bytea NOT NULL,
    handle       text UNIQUE,
    created_at   bigint NOT NULL,
    stored_bytes bigint NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    device_id   bytea PRIMARY KEY,
    user_id     bytea NOT NULL REFERENCES users (user_id),
    certificate bytea NOT NULL,
    signing_key bytea NOT NULL,
    created_at  bigint NOT NULL,
    revoked_at  bigint,
    acked_seq   bigint NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_user ON devices (user_id);

CREATE TABLE challenges (
    challenge  bytea PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX challenges_by_expiry ON challenges (expires_at);

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    bytea NOT NULL,
    device_id  bytea NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE messages (
    message_id      bytea PRIMARY KEY,
    conversation_id bytea NOT NULL,
    sender          bytea NOT NULL,
    sender_device   bytea NOT NULL,
    header          bytea NOT NULL,
    envelope        bytea,
    size            bigint NOT NULL,
    sent_at         bigint NOT NULL,
    received_at     bigint NOT NULL,
    state           text NOT NULL,
    first_opened_at bigint,
    recalled_at     bigint,
    revocation      bytea,
    purge_receipt   bytea,
    all_opened_at   bigint
);
CREATE INDEX messages_recalls ON messages (conversation_id, sender, recalled_at)
    WHERE recalled_at IS NOT NULL;
CREATE INDEX messages_live ON messages (received_at) WHERE state = 'live';
CREATE INDEX messages_live_by_sender ON messages (sender) WHERE state = 'live';
CREATE INDEX messages_finished ON messages (received_at) WHERE state <> 'live';
CREATE INDEX messages_all_opened ON messages (all_opened_at)
    WHERE state = 'live' AND all_opened_at IS NOT NULL;

CREATE TABLE deliveries (
    message_id      bytea NOT NULL REFERENCES messages (message_id),
    device_id       bytea NOT NULL,
    user_id         bytea NOT NULL,
    wrap            bytea,
    own_device      boolean NOT NULL,
    state           text NOT NULL,
    fetched_at      bigint,
    key_released_at bigint,
    recalled_at     bigint,
    deleted_at      bigint,
    receipt         bytea,
    downloaded_at   bigint,
    expires_at      bigint,
    expired_at      bigint,
    key_id          bytea,
    PRIMARY KEY (message_id, device_id)
);
CREATE INDEX deliveries_expiring ON deliveries (expires_at)
    WHERE expires_at IS NOT NULL AND expired_at IS NULL;

CREATE TABLE events (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  bytea NOT NULL,
    kind       text NOT NULL,
    message_id bytea NOT NULL,
    payload    bytea NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX events_by_device ON events (device_id, seq);
CREATE INDEX events_by_message ON events (message_id);

CREATE TABLE blobs (
    blob_id      bytea PRIMARY KEY,
    user_id      bytea NOT NULL,
    size         bigint NOT NULL,
    digest       bytea NOT NULL,
    created_at   bigint NOT NULL,
    completed_at bigint,
    message_id   bytea
);
CREATE INDEX blobs_by_user ON blobs (user_id);
CREATE INDEX blobs_by_message ON blobs (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX blobs_unbound ON blobs (created_at) WHERE message_id IS NULL;

CREATE TABLE message_files (
    blob_id    bytea PRIMARY KEY,
    message_id bytea NOT NULL,
    position   bigint NOT NULL,
    size       bigint NOT NULL
);
CREATE INDEX message_files_by_message ON message_files (message_id);

CREATE TABLE blob_downloads (
    blob_id       bytea NOT NULL,
    device_id     bytea NOT NULL,
    downloaded_at bigint NOT NULL,
    PRIMARY KEY (blob_id, device_id)
);

CREATE TABLE groups (
    group_id        bytea PRIMARY KEY,
    conversation_id bytea NOT NULL UNIQUE,
    seq             bigint NOT NULL,
    head            bytea NOT NULL,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);

CREATE TABLE group_changes (
    group_id    bytea NOT NULL REFERENCES groups (group_id),
    seq         bigint NOT NULL,
    change      bytea NOT NULL,
    digest      bytea NOT NULL,
    received_at bigint NOT NULL,
    PRIMARY KEY (group_id, seq)
);

CREATE TABLE group_members (
    group_id   bytea NOT NULL REFERENCES groups (group_id),
    user_id    bytea NOT NULL,
    admin      boolean NOT NULL,
    joined_seq bigint NOT NULL,
    left_seq   bigint,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

CREATE TABLE links (
    link_id    bytea PRIMARY KEY,
    user_id    bytea NOT NULL REFERENCES users (user_id),
    device_id  bytea NOT NULL,
    request    bytea,
    answer     bytea,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX links_by_user ON links (user_id);
CREATE INDEX links_by_expiry ON links (expires_at);

CREATE TABLE wrap_keys (
    device_id     bytea NOT NULL REFERENCES devices (device_id),
    key_id        bytea NOT NULL,
    certificate   bytea NOT NULL,
    created_at    bigint NOT NULL,
    usable_until  bigint NOT NULL,
    superseded_at bigint NOT NULL,
    PRIMARY KEY (device_id, key_id)
);
CREATE INDEX wrap_keys_by_end ON wrap_keys (usable_until);
