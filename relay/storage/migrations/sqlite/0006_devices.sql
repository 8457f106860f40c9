-- e2e-recall relay, SQLite schema version 6: linking devices.
-- A link slot lets a new device and one of the user's current devices exchange two
-- sealed messages (docs/protocol.md section 17): the relay can read neither.  link_id
-- is derived from the one-time code, and the slot belongs to the user and device that
-- opened it, holds the request and then the answer once each, and is deleted when the
-- answer is fetched or by the retention job once it expires.
-- Revoking a device sets devices.revoked_at (a column since version 1), and the row stays
-- so the id can never be registered again.

CREATE TABLE links (
    link_id    BLOB PRIMARY KEY,
    user_id    BLOB NOT NULL REFERENCES users (user_id),
    device_id  BLOB NOT NULL,
    request    BLOB,
    answer     BLOB,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX links_by_user ON links (user_id);
CREATE INDEX links_by_expiry ON links (expires_at);
