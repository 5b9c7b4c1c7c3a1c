-- Accounts on a device (DESIGN.md §2a).

-- A merge in flight: written before the server is asked to fold the guest into the
-- account; the local transaction that re-owns the guest's records marks it
-- 'committed', and it is deleted once the guest's keyring items are erased. On start
-- a row here means "finish the merge" (the server answers a retry from its merge
-- tombstone). Tokens wait in the keyring, never here.
CREATE TABLE merge_intent (
    slot        INTEGER PRIMARY KEY CHECK (slot = 1),
    guest_id    TEXT NOT NULL,
    -- The account's local id (the server's id on the reference server).
    account_id  TEXT NOT NULL,
    -- The account as the server described it: {id, email, name, emailVerified}.
    account     TEXT NOT NULL CHECK (json_valid(account)),
    state       TEXT NOT NULL DEFAULT 'started' CHECK (state IN ('started', 'committed')),
    started_at  TEXT NOT NULL
);

-- A sign-out the server has not heard of yet (it happened offline). The token to
-- revoke waits in the keyring (the user's `pending-revocation` item), never here.
-- No foreign key: the account's rows may be removed from this computer meanwhile.
CREATE TABLE pending_revocations (
    user_id     TEXT PRIMARY KEY,
    backend_url TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
