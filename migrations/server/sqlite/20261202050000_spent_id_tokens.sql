-- Issue 14 item 5: each ID token is accepted once. The SHA-256 of every accepted
-- token is kept until the token itself expires (then the cleanup prunes it), so a
-- replay is refused by every instance on this database.
CREATE TABLE spent_id_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX spent_id_tokens_expiry ON spent_id_tokens (expires_at);
