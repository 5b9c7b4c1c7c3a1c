-- Record sync on the device (DESIGN.md §3a). Every row keeps its owner's user id:
-- a signed-out account's records stay here, hidden, for its next sign-in.

-- The device's state of each record: for notes an Automerge document (the body as
-- text, merged character by character), for preferences the last-writer-wins value
-- with its hybrid logical clock. `notes` and `users.metadata.preferences` remain the
-- materialised views the app reads.
CREATE TABLE records (
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    collection     TEXT NOT NULL,
    id             TEXT NOT NULL,
    doc            BLOB NOT NULL,
    schema_version INTEGER NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (user_id, collection, id)
);

-- Local changes not yet acknowledged by the server, written in the same transaction
-- as the change itself. A change the server refused for good (too large, over
-- quota) is set aside as 'refused' with the reason, and the rest keeps flowing.
CREATE TABLE record_outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    collection     TEXT NOT NULL,
    id             TEXT NOT NULL,
    change         BLOB NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    schema_version INTEGER NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'refused')),
    last_error     TEXT,                            -- {code, message}
    created_at     TEXT NOT NULL
);
CREATE INDEX record_outbox_user ON record_outbox(user_id, state, seq);

-- Where each user's pull stands, and when the server last held every change.
CREATE TABLE record_sync (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    cursor        TEXT,
    last_saved_at TEXT
);
