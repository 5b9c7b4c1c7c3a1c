//! The storage contract. Handlers speak to a `dyn Database`; `store.rs` implements
//! it once for SQLite and once for PostgreSQL. Each method that changes users or
//! sessions writes its audit rows in the same transaction.

use std::sync::Arc;

use async_trait::async_trait;
use guestpass_proto::{AuditEvent, AuditEventKind, Session, User};

use crate::clock::from_ms;

/// Two outcomes callers branch on: a uniqueness conflict (which one), or the
/// database could not do the work (down, locked, broken) — answered with 503.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("conflict on {0:?}")]
    Conflict(Conflict),
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    UserId,
    Email,
    ProviderAccount,
    SessionToken,
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        if let Some(db) = err.as_database_error() {
            if db.is_unique_violation() {
                // PostgreSQL names the constraint; SQLite names the column in the message.
                let what = format!("{} {}", db.constraint().unwrap_or(""), db.message());
                let conflict = if what.contains("email") {
                    Conflict::Email
                } else if what.contains("provider") {
                    Conflict::ProviderAccount
                } else if what.contains("token") {
                    Conflict::SessionToken
                } else {
                    Conflict::UserId
                };
                return Self::Conflict(conflict);
            }
        }
        Self::Unavailable(err.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Unavailable(format!("migration failed: {err}"))
    }
}

pub type DbResult<T> = Result<T, DbError>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub email_verified: bool,
    pub is_anonymous: bool,
    pub password_hash: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_active_at: i64,
}

impl UserRow {
    pub fn to_wire(&self) -> User {
        User {
            id: self.id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            image: self.image.clone(),
            email_verified: self.email_verified,
            is_anonymous: self.is_anonymous,
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
            metadata: serde_json::from_str(&self.metadata)
                .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
        }
    }

    pub fn new_guest(id: String, now: i64) -> Self {
        Self {
            id,
            email: None,
            name: None,
            image: None,
            email_verified: false,
            is_anonymous: true,
            password_hash: None,
            metadata: "{}".into(),
            created_at: now,
            updated_at: now,
            last_active_at: now,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub token_hash: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SessionRow {
    pub fn to_wire(&self) -> Session {
        Session {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            expires_at: from_ms(self.expires_at),
            created_at: from_ms(self.created_at),
            updated_at: from_ms(self.updated_at),
        }
    }
}

/// Which guests a batch of the stale-guest cleanup takes: inactive since before
/// `cutoff`, at or after `from` (where the batch before stopped: on PostgreSQL the
/// guests deleted by earlier batches stay in the index until vacuum, and a scan
/// from the start steps over all of them, a cost that grew with every batch), at
/// most `limit`; `now` stamps their tombstones and audit rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale {
    pub from: i64,
    pub cutoff: i64,
    pub limit: i64,
    pub now: i64,
}

/// What a batch deleted: the guests' ids and the latest `last_active_at` among
/// them (the next batch's `from`; `None` when it deleted nobody).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleBatch {
    pub ids: Vec<String>,
    pub reached: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub event: String,
    pub user_id: String,
    pub actor: String,
    pub created_at: i64,
    pub ip_hash: Option<String>,
    pub detail: String,
}

impl AuditRow {
    pub fn new(
        event: AuditEventKind,
        user_id: &str,
        actor: &str,
        now: i64,
        ip_hash: Option<String>,
    ) -> Self {
        Self {
            id: next_audit_id(),
            event: event.as_str().to_string(),
            user_id: user_id.to_string(),
            actor: actor.to_string(),
            created_at: now,
            ip_hash,
            detail: "{}".into(),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail.to_string();
        self
    }

    pub fn to_wire(&self) -> Option<AuditEvent> {
        Some(AuditEvent {
            id: self.id.clone(),
            event: AuditEventKind::parse(&self.event)?,
            user_id: self.user_id.clone(),
            actor: self.actor.clone(),
            created_at: from_ms(self.created_at),
            ip_hash: self.ip_hash.clone(),
            detail: serde_json::from_str(&self.detail).unwrap_or(serde_json::Value::Null),
        })
    }
}

/// Audit ids are ULIDs from one monotonic generator per process, so events written
/// in the same millisecond by one instance still list in the order they happened.
fn next_audit_id() -> String {
    static GEN: std::sync::OnceLock<std::sync::Mutex<ulid::Generator>> = std::sync::OnceLock::new();
    let gen = GEN.get_or_init(|| std::sync::Mutex::new(ulid::Generator::new()));
    let id = match gen.lock().ok().and_then(|mut g| g.generate().ok()) {
        Some(id) => id,
        // Poisoned lock or a (2^80 per ms) overflow: a plain ULID is still unique.
        None => ulid::Ulid::new(),
    };
    format!("aud_{id}")
}

/// One anonymous sign-in handed to [`Database::create_guests`] (through the writer).
#[derive(Debug, Clone)]
pub struct NewGuest {
    pub user: UserRow,
    pub session: SessionRow,
    pub audits: Vec<AuditRow>,
    /// SHA-256 (hex) of the device key the guest registered with, stored with the
    /// user so the same device can sign in again if this answer is lost.
    pub device_key_hash: Option<String>,
    /// The hit to count against the anonymous sign-in limit first; `None` when
    /// the limit is off.
    pub rate: Option<RateHit>,
}

/// One request against a fixed rate-limit window (see `ratelimit.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHit {
    pub bucket: String,
    pub window_start: i64,
    /// The window's length (its kind's, see `ratelimit::Kind`).
    pub window_ms: i64,
    /// Hits allowed in the window; the hit is counted even when it is refused.
    pub limit: i64,
}

/// What became of one [`NewGuest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestOutcome {
    /// User, session and audit rows are committed.
    Created,
    /// Over the limit: the hit (number `hits` in its window) is counted, nothing else written.
    Limited { hits: i64 },
    /// The requested user id exists (or came earlier in the same batch).
    UserIdTaken,
}

/// The session an upgrade keeps: the caller's, under a new token (the old one
/// dies with the upgrade, and so do the user's other sessions).
#[derive(Debug, Clone)]
pub struct Rotation {
    pub session_id: String,
    /// SHA-256 (hex) of the session's next token.
    pub token_hash: String,
}

/// What an upgrade did. (Returned once per upgrade, never stored: its size is no
/// concern, hence the allow.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Upgraded {
    /// Committed: the user, its session under the new token, and how many other
    /// sessions of the user were revoked.
    Done {
        user: UserRow,
        session: SessionRow,
        revoked: u64,
    },
    /// The user is no longer a guest (lost a race with another upgrade).
    NotAGuest,
    /// The caller's session ended meanwhile (signed out, expired, revoked).
    SessionGone,
}

/// The in-place upgrade of a guest to an email/password account.
#[derive(Debug, Clone)]
pub struct EmailUpgrade {
    pub user_id: String,
    pub rotation: Rotation,
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
    pub now: i64,
    pub verification_token_hash: String,
    pub verification_expires_at: i64,
    pub audit: AuditRow,
}

/// The in-place upgrade of a guest with a verified social identity.
#[derive(Debug, Clone)]
pub struct SocialLink {
    pub user_id: String,
    pub rotation: Rotation,
    pub provider: String,
    /// The ID token's `sub`.
    pub provider_account_id: String,
    /// Only an email the provider says it verified.
    pub email: Option<String>,
    pub name: Option<String>,
    pub now: i64,
    pub audit: AuditRow,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub is_anonymous: Option<bool>,
    /// Keyset cursor: strictly older than this `(created_at, id)`.
    pub after: Option<(i64, String)>,
    /// Keyset cursor: strictly newer than this `(created_at, id)` (paging back).
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<String>,
    pub event: Option<String>,
    /// Keyset cursor on the (time-ordered) audit id, newest first.
    pub after: Option<String>,
    pub before: Option<String>,
    pub limit: i64,
}

#[async_trait]
pub trait Database:
    crate::db_accounts::AccountStore
    + crate::db_care::CareStore
    + crate::db_throttle::ThrottleStore
    + crate::db_claims::ClaimStore
    + crate::db_recovery::RecoveryStore
    + crate::store_id_tokens::IdTokenStore
    + Send
    + Sync
    + 'static
{
    /// "sqlite" or "postgres", for logs.
    fn kind(&self) -> &'static str;

    /// Session lookups waiting to share a query now, and lookups so far that
    /// shared one (`coalesce.rs`; PostgreSQL only, zeros on SQLite).
    fn lookup_stats(&self) -> (usize, u64) {
        (0, 0)
    }

    /// Times the SQLite WAL was written from its start again with the sign-in
    /// writer paused (`wal_checkpoint.rs`); 0 on PostgreSQL.
    fn wal_restarts(&self) -> u64;

    /// Record sync storage (`store_records.rs`), on the same database.
    fn records(&self) -> &dyn crate::store_records::RecordStore;

    /// A cheap round trip.
    async fn ping(&self) -> DbResult<()>;

    /// Whether the newest migration applied is this build's newest (`/readyz`): not
    /// when a newer server has migrated the database past what this one knows.
    async fn schema_is_current(&self) -> DbResult<bool>;

    /// The generated server secret, created by the first instance that asks.
    async fn secret_or_init(&self, candidate: &str, now: i64) -> DbResult<String>;

    /// Guest + first session + `user.created` + `session.created`, atomically.
    async fn create_guest(
        &self,
        user: &UserRow,
        session: &SessionRow,
        audits: &[AuditRow],
    ) -> DbResult<()>;

    /// Many anonymous sign-ins in ONE transaction (group commit), each counted
    /// against its rate limit, then created unless limited or its id is taken;
    /// one outcome per item, in order. `Err`: nothing was committed. Returns once
    /// the batch is durable; `written` is dropped as soon as the next batch may be
    /// written (SQLite: this one's write lock is released; PostgreSQL: at once).
    async fn create_guests(
        &self,
        batch: &[NewGuest],
        written: crate::writer::Written,
    ) -> DbResult<Vec<GuestOutcome>>;

    /// A new session for an existing user (sign-in) with its audit row.
    async fn create_session(&self, session: &SessionRow, audit: &AuditRow) -> DbResult<()>;

    /// Idempotent registration: in one transaction, if `session.user_id` is still
    /// a guest registered with the device key whose SHA-256 (hex) is
    /// `device_key_hash`, adds `session` and its audit row and returns the user;
    /// otherwise writes nothing and returns `None`.
    async fn resume_guest(
        &self,
        device_key_hash: &str,
        session: &SessionRow,
        audit: &AuditRow,
    ) -> DbResult<Option<UserRow>>;

    /// The live session for a token digest and its user; `None` if unknown or expired.
    async fn session_by_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> DbResult<Option<(UserRow, SessionRow)>>;

    /// Extends a session and records activity on its user.
    async fn slide_session(&self, session_id: &str, expires_at: i64, now: i64) -> DbResult<()>;

    /// Records activity on a user without touching sessions.
    async fn touch_user(&self, user_id: &str, now: i64) -> DbResult<()>;

    /// The in-place upgrade to an email account, in one transaction with the
    /// rotation of the caller's session token and the revocation of the user's
    /// other sessions.
    async fn upgrade_with_email(&self, up: &EmailUpgrade) -> DbResult<Upgraded>;

    /// Links a social identity to a guest in place; the session as for
    /// [`Database::upgrade_with_email`].
    async fn upgrade_with_social(&self, link: &SocialLink) -> DbResult<Upgraded>;

    async fn user_by_email(&self, email: &str) -> DbResult<Option<UserRow>>;

    async fn user_by_id(&self, id: &str) -> DbResult<Option<UserRow>>;

    /// Marks the email verified if the token is unused, unexpired and still matches
    /// the user's email (the user's other outstanding links are spent with it).
    /// Returns the user id; a token works once.
    async fn consume_verification(&self, token_hash: &str, now: i64) -> DbResult<Option<String>>;

    async fn delete_session(&self, token_hash: &str) -> DbResult<bool>;

    /// Deletes a user with sessions and data and writes `audit`. With
    /// `only_anonymous` a full account is left alone. False when nothing matched.
    async fn delete_user(
        &self,
        user_id: &str,
        only_anonymous: bool,
        audit: &AuditRow,
    ) -> DbResult<bool>;

    async fn list_users(&self, filter: &UserFilter) -> DbResult<Vec<UserRow>>;

    async fn audit_log(&self, filter: &AuditFilter) -> DbResult<Vec<AuditRow>>;

    /// Adds one hit to `(bucket, window_start)` and returns the hits in that window.
    async fn hit_rate_window(&self, bucket: &str, window_start: i64) -> DbResult<i64>;

    /// Deletes up to `stale.limit` stale guests, oldest first, in one transaction,
    /// auditing each as `user.deleted` by `system`. Safe to run from several
    /// instances at once: a guest is deleted (and audited) by exactly one of them.
    async fn delete_stale_guests(&self, stale: Stale) -> DbResult<StaleBatch>;

    /// How many guests `delete_stale_guests` would delete (dry run).
    async fn count_stale_guests(&self, cutoff: i64) -> DbResult<i64>;

    /// Housekeeping: expired sessions, used or expired verification and
    /// password-reset tokens, old rate-limit windows. Returns rows removed.
    async fn prune(&self, now: i64, rate_windows_before: i64) -> DbResult<u64>;
}

pub type Db = Arc<dyn Database>;
