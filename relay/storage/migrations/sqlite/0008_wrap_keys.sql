-- e2e-recall relay, SQLite schema version 8: wrapping-key rotation.
-- A device's current certificate stays in devices.certificate. When it rotates, the one it
-- replaces moves here and is kept while its key still accepts wraps (usable_until, protocol
-- section 5.1), then removed.  Each delivery records the key id its wrap was made to
-- (NULL for wraps stored before this version), so the device knows which private key opens
-- it and the relay can say which of its old keys still have wraps pending.

ALTER TABLE deliveries ADD COLUMN key_id BLOB;

CREATE TABLE wrap_keys (
    device_id     BLOB NOT NULL REFERENCES devices (device_id),
    key_id        BLOB NOT NULL,
    certificate   BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    usable_until  INTEGER NOT NULL,
    superseded_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, key_id)
) WITHOUT ROWID;
CREATE INDEX wrap_keys_by_end ON wrap_keys (usable_until);
