-- Account care (issue 13).

-- Password reset links. Only the SHA-256 of the mailed token is kept; a link
-- works once (`used_at`), within an hour, and only while the account still has
-- the address it was mailed to.
CREATE TABLE password_reset_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
-- The per-account limit counts the links of the last hour.
CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id, created_at);

-- Why a verification link was sent: 'signup' (upgrade or sign-up) or 'resend'
-- (`send-verification-email`, limited per user per hour, counted here).
ALTER TABLE verification_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'signup';
CREATE INDEX verification_tokens_resends ON verification_tokens (user_id, created_at)
    WHERE kind = 'resend';
