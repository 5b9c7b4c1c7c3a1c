-- Record sync (DESIGN.md §3a): per user, an append-only log of opaque changes.
-- The server orders, stores, counts and re-owns them; it never reads `change`.

-- One row per user that has records: the next position of its log and its usage.
-- A push takes this row's lock first (UPDATE … RETURNING), so one user's pushes
-- commit in the order their positions were handed out and a pull by `seq > cursor`
-- never skips a change that commits late.
CREATE TABLE record_heads (
    user_id         TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    next_seq        INTEGER NOT NULL DEFAULT 1,
    -- Distinct (collection, record_id) in the log, tombstones included (the quota).
    records         INTEGER NOT NULL DEFAULT 0,
    -- Sum of the change sizes in the log (the byte quota).
    bytes           INTEGER NOT NULL DEFAULT 0,
    -- Changes up to this position were pruned (tombstone horizon): an older
    -- cursor gets CURSOR_EXPIRED.
    pruned_through  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE record_changes (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    collection      TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    change          BLOB NOT NULL,
    deleted         BOOLEAN NOT NULL,
    schema_version  INTEGER NOT NULL,
    -- Hex SHA-256 of (collection, record_id, deleted, schema_version, change):
    -- a replayed push adds nothing.
    hash            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq),
    UNIQUE (user_id, hash)
);
CREATE INDEX record_changes_record ON record_changes (user_id, collection, record_id);

-- Merge tombstones: a guest folded into an account. A retried merge with the same
-- guest token answers the same 200 from here. No foreign key to the guest (it is gone).
CREATE TABLE merges (
    guest_id          TEXT PRIMARY KEY NOT NULL,
    account_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the guest's session token the merge was made with.
    guest_token_hash  TEXT NOT NULL UNIQUE,
    records           INTEGER NOT NULL,
    merged_at         INTEGER NOT NULL
);
CREATE INDEX merges_account ON merges (account_id);
