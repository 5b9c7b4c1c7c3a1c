-- The device's own store. Tokens and passwords never live here: sessions keep only a
-- SHA-256 hash of their token, which lives in the OS keyring.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,               -- usr_ + ULID, minted on the device, never changes
    email          TEXT,
    name           TEXT,
    image          TEXT,
    email_verified INTEGER NOT NULL DEFAULT 0,
    is_anonymous   INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,                  -- RFC 3339 UTC, milliseconds
    updated_at     TEXT NOT NULL,
    metadata       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object')
);

-- One account per device: the single row makes a second guest impossible even when two
-- app instances race on first launch.
CREATE TABLE device_account (
    slot    INTEGER PRIMARY KEY CHECK (slot = 1),
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE
);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,                   -- ses_ + ULID
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,                      -- hex SHA-256 of the token held in the keyring
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id, created_at);

CREATE TABLE notes (
    id         TEXT PRIMARY KEY,                   -- note_ + ULID
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX notes_user ON notes(user_id, created_at);

-- Written in the same transaction as the change it records. No foreign key: the trail
-- must outlive a deleted user.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    event   TEXT NOT NULL CHECK (event IN ('user.created', 'session.created', 'user.updated', 'user.deleted')),
    user_id TEXT NOT NULL,
    actor   TEXT NOT NULL,
    at      TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}'
);
