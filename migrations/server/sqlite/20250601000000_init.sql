-- Guestpass reference server, SQLite schema.
-- Times are integer milliseconds since the Unix epoch (UTC) so that the same
-- queries compare and sort identically on SQLite and PostgreSQL.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    -- Lower-cased, so the unique index is case-insensitive.
    email           TEXT UNIQUE,
    name            TEXT,
    image           TEXT,
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    is_anonymous    BOOLEAN NOT NULL,
    password_hash   TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- Last session activity; the cleanup of stale guests reads this.
    last_active_at  INTEGER NOT NULL
);
CREATE INDEX users_listing ON users (created_at DESC, id DESC);
CREATE INDEX users_stale_guests ON users (is_anonymous, last_active_at);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SHA-256 of the bearer token; the token itself is never stored.
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Linked social identities (upgrade-social).
CREATE TABLE accounts (
    id                   TEXT PRIMARY KEY NOT NULL,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider             TEXT NOT NULL,
    provider_account_id  TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    UNIQUE (provider, provider_account_id)
);
CREATE INDEX accounts_user ON accounts (user_id);

CREATE TABLE verification_tokens (
    -- SHA-256 of the token sent by email.
    token_hash  TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX verification_tokens_user ON verification_tokens (user_id);

-- No foreign key: audit rows outlive the users they describe.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY NOT NULL,
    event       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    ip_hash     TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_user ON audit_log (user_id, id);

-- Fixed-window counters for the anonymous sign-in rate limit, shared by every
-- instance on the database. `bucket` is a keyed hash of the client address.
CREATE TABLE rate_limits (
    bucket        TEXT NOT NULL,
    window_start  INTEGER NOT NULL,
    hits          INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

-- A generated server secret when none is configured (one row).
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
