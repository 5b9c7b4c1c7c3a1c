-- Accounts on a device (DESIGN.md §2a).

-- A merge in flight: written before the server is asked to fold the guest into the
-- account, deleted in the local transaction that re-owns the guest's records. On
-- start a row here means "finish the merge" (the server answers a retry from its
-- merge tombstone). Tokens wait in the keyring, never here.
CREATE TABLE merge_intent (
    slot          INTEGER PRIMARY KEY CHECK (slot = 1),
    guest_id      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    -- The account as the server described it ({id, email, name, emailVerified, …}).
    account       TEXT NOT NULL CHECK (json_valid(account)),
    remote_id     TEXT NOT NULL,
    started_at    TEXT NOT NULL
);

-- Work for the server that outlives a sign-out: revoking the old session when the
-- server did not answer. The token to revoke waits in the keyring under `slot_key`.
CREATE TABLE pending_revocations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    backend_url TEXT NOT NULL,
    dialect     TEXT NOT NULL,
    slot_key    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
