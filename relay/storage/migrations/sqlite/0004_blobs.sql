-- e2e-recall relay, SQLite schema version 4: attachments.
-- A blob is an encrypted file, opaque to the relay: its bytes live in the blob store
-- (a directory by default), never in this database.  blobs holds one row per upload
-- while its bytes exist: who uploaded it, its declared length and digest, when it was
-- complete, and the message it was bound to by a send.  The row goes, in the same
-- transaction, when the message is recalled, expires or completes, or when an
-- unbound upload expires. The file is unlinked after that commit.
-- message_files is the content-free record of which blobs a message carried (kept as
-- long as the message's tombstone, so a device asking for a recalled file hears 410),
-- blob_downloads which device has received the last byte of which blob, and
-- deliveries.downloaded_at when a device had every blob of its message.

CREATE TABLE blobs (
    blob_id      BLOB PRIMARY KEY,
    user_id      BLOB NOT NULL,
    size         INTEGER NOT NULL,
    digest       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    completed_at INTEGER,
    message_id   BLOB
) WITHOUT ROWID;
CREATE INDEX blobs_by_user ON blobs (user_id);
CREATE INDEX blobs_by_message ON blobs (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX blobs_unbound ON blobs (created_at) WHERE message_id IS NULL;

CREATE TABLE message_files (
    blob_id    BLOB PRIMARY KEY,
    message_id BLOB NOT NULL,
    position   INTEGER NOT NULL,
    size       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX message_files_by_message ON message_files (message_id);

CREATE TABLE blob_downloads (
    blob_id       BLOB NOT NULL,
    device_id     BLOB NOT NULL,
    downloaded_at INTEGER NOT NULL,
    PRIMARY KEY (blob_id, device_id)
) WITHOUT ROWID;

ALTER TABLE deliveries ADD COLUMN downloaded_at INTEGER;
