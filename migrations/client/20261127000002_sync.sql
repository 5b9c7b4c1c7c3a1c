-- Sync with a backend. Tokens and the password of a queued upgrade wait in the OS
-- keyring, never here.

-- Who this device's user is on the backend. The local id never changes; on Better Auth
-- the remote id changes at upgrade and is re-mapped here.
CREATE TABLE remote_account (
    user_id        TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    backend_url    TEXT NOT NULL,
    dialect        TEXT NOT NULL,
    remote_user_id TEXT NOT NULL,
    synced_at      TEXT NOT NULL
);

-- Durable pending work. One upgrade per user at a time; a refused one stays (with the
-- server's reason) until the person retries or dismisses it.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('upgrade')),
    payload    TEXT NOT NULL CHECK (json_valid(payload)),  -- {email, name}: no secrets
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'refused')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,                                       -- {code, message}
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX outbox_one_upgrade ON outbox(user_id, kind);
