-- Issue 16: a guest that survives a reinstall.
--
-- SHA-256 (hex) of the guest's recovery sign-in key: HKDF output of the secret
-- its 12-word phrase encodes, derived on the device (the phrase never leaves it).
-- NULL when the guest never asked for a phrase, after an upgrade (an account
-- recovers by email) and for full accounts. Unique: sign-in finds the guest by it.
ALTER TABLE users ADD COLUMN recovery_key_hash TEXT;
CREATE UNIQUE INDEX users_recovery_key_hash ON users (recovery_key_hash)
    WHERE recovery_key_hash IS NOT NULL;

-- Why a user id went, so it never comes back as a stranger's new guest: the
-- stale-guest cleanup ('cleanup': the guest's own device may bring it back,
-- proving itself with the device key kept here), or a deletion by its owner
-- ('deleted') or an admin ('removed'), which are final. Merged guests are in
-- `merges`. Only digests are kept, never a key.
CREATE TABLE gone_users (
    id                 TEXT PRIMARY KEY NOT NULL,
    reason             TEXT NOT NULL,
    device_key_hash    TEXT,
    recovery_key_hash  TEXT,
    gone_at            BIGINT NOT NULL
);
