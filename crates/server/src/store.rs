//! The two implementations of [`Database`]: SQLite (embedded default: one file,
//! WAL, busy timeout, foreign keys) and PostgreSQL (any number of instances).
//!
//! The schemas differ only in column types (see `migrations/server/*`): times are
//! integer milliseconds, booleans are booleans, JSON is text. So every query is
//! written once, in the dialect both accept (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`), and `sql_store!` stamps out the two `impl`s. The one real
//! difference is the cleanup (PostgreSQL locks its batch `FOR UPDATE SKIP LOCKED`,
//! where SQLite's single writer needs nothing, and may delete a guest's rows by set:
//! `store_cleanup.rs`).
//!
//! Opening a database (pools, pragmas, migrations) is `store_connect.rs`; the
//! session lookup, on both databases, is `store_sessions.rs`.
//!
//! SQLite note: every write transaction starts with its write, never with a read,
//! so it takes the write lock up front and the busy timeout applies instead of
//! failing with SQLITE_BUSY on a stale read snapshot. The batch of anonymous
//! sign-ins says so outright (`BEGIN IMMEDIATE`).
//!
//! Durability: SQLite runs `synchronous = FULL`, so a commit is on disk (the WAL
//! is fsynced) before it returns and before any answer goes out. That costs one
//! fsync per transaction, which the sign-in writer (`writer.rs`) shares among a
//! whole batch. The writer's own connection alone commits with `NORMAL` and
//! fsyncs the WAL itself after releasing the write lock, before answering
//! (`wal_sync.rs`), so the next batch runs while this one reaches the disk.
//! `NORMAL` with nothing after it would lose the last commits on power loss,
//! after their clients were told they succeeded.
//!
//! Pools do not ping every connection before handing it out (sqlx's default): on
//! SQLite a ping is a round trip to the connection's thread for nothing (a file
//! does not hang up), on PostgreSQL a network round trip per query. PostgreSQL
//! pings only a connection that sat idle (a restarted database cut it); one that
//! dies in use fails that query (503) and is dropped when it goes back to the
//! pool (sqlx tests every connection on release).

use std::sync::atomic::AtomicI64;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{Sqlite, SqlitePool};

use crate::coalesce::Coalescer;
use crate::db::*;
use crate::pg_readers::PgReaders;
use crate::readers::Readers;

/// The sign-in writer's connection; holding its lock pauses the writer between
/// two batches (the WAL's restart, `wal_checkpoint.rs`).
pub(crate) type WriterSlot = tokio::sync::Mutex<Option<PoolConnection<Sqlite>>>;

// `pub(crate)` for the batch of anonymous sign-ins in `store_guests.rs`.
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// The sign-in writer's own connection, kept between batches (see
    /// `store_guests.rs`); `None` until first used or after a failed batch.
    pub(crate) writer: std::sync::Arc<WriterSlot>,
    /// Makes the writer's commits durable after its write lock is released
    /// (the writer's connection runs `synchronous = NORMAL`, see `wal_sync.rs`).
    pub(crate) wal_sync: std::sync::Arc<crate::wal_sync::WalSync>,
    /// The session lookup's own connections (see `readers.rs`).
    pub(crate) readers: Readers,
    /// Record pushes take turns here (FIFO) instead of racing for SQLite's one
    /// write lock: a loser of that race sleeps in SQLite's busy handler (up to
    /// 100 ms a nap), which made the p99 of concurrent pushes ~1 s.
    pub(crate) record_writes: tokio::sync::Mutex<()>,
    /// How long an unverified email holds its address (`store_claims.rs`).
    pub(crate) claim_lapse_ms: AtomicI64,
}

pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// The session lookup's own connections (see `pg_readers.rs`).
    pub(crate) readers: PgReaders,
    /// Lookups made at once share one query (`coalesce.rs`): (token hash, now).
    pub(crate) lookups: Coalescer<(String, i64), Option<SessionWithUser>>,
    /// How long an unverified email holds its address (`store_claims.rs`).
    pub(crate) claim_lapse_ms: AtomicI64,
    /// How the stale-guest cleanup deletes a guest's rows in other tables, worked
    /// out at its first batch (`store_cleanup.rs`).
    pub(crate) cleanup_children: tokio::sync::OnceCell<crate::store_cleanup::Children>,
}

pub(crate) static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/server/postgres");
pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/server/sqlite");

pub use crate::store_connect::{connect, StoreOptions};
use crate::store_sessions::SessionWithUser;

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, image, email_verified, is_anonymous, password_hash, \
                            metadata, created_at, updated_at, last_active_at";

macro_rules! sql_store {
    ($store:ty, $kind:literal, $migrations:ident) => {
        impl $store {
            pub(crate) async fn insert_audit<'c, E>(exec: E, a: &AuditRow) -> Result<(), sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = <$store as StoreDb>::Db>,
            {
                sqlx::query(
                    "INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&a.id)
                .bind(&a.event)
                .bind(&a.user_id)
                .bind(&a.actor)
                .bind(a.created_at)
                .bind(&a.ip_hash)
                .bind(&a.detail)
                .execute(exec)
                .await?;
                Ok(())
            }

            pub(crate) async fn insert_user<'c, E>(exec: E, u: &UserRow) -> Result<(), sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = <$store as StoreDb>::Db>,
            {
                sqlx::query(
                    "INSERT INTO users (id, email, name, image, email_verified, is_anonymous, \
                     password_hash, metadata, created_at, updated_at, last_active_at, email_claimed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&u.id)
                .bind(&u.email)
                .bind(&u.name)
                .bind(&u.image)
                .bind(u.email_verified)
                .bind(u.is_anonymous)
                .bind(&u.password_hash)
                .bind(&u.metadata)
                .bind(u.created_at)
                .bind(u.updated_at)
                .bind(u.last_active_at)
                // An unverified address is a claim from now (`store_claims.rs`).
                .bind((u.email.is_some() && !u.email_verified).then_some(u.created_at))
                .execute(exec)
                .await?;
                Ok(())
            }

            /// The upgrade's session step (issue 14): the caller's session keeps
            /// its id under the new token hash, and every other session of the user
            /// ends, in the caller's transaction. `None`: that session is gone.
            pub(crate) async fn rotate_and_revoke(
                tx: &mut <<$store as StoreDb>::Db as sqlx::Database>::Connection,
                user_id: &str,
                rotation: &Rotation,
                now: i64,
            ) -> Result<Option<(SessionRow, u64)>, sqlx::Error> {
                let session: Option<SessionRow> = sqlx::query_as(
                    "UPDATE sessions SET token_hash = $3, updated_at = $4 \
                     WHERE id = $1 AND user_id = $2 AND expires_at > $4 \
                     RETURNING id, user_id, token_hash, expires_at, created_at, updated_at",
                )
                .bind(&rotation.session_id)
                .bind(user_id)
                .bind(&rotation.token_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(session) = session else { return Ok(None) };
                let revoked = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                    .bind(user_id)
                    .bind(&rotation.session_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                Ok(Some((session, revoked)))
            }

            pub(crate) async fn insert_session<'c, E>(exec: E, s: &SessionRow) -> Result<(), sqlx::Error>
            where
                E: sqlx::Executor<'c, Database = <$store as StoreDb>::Db>,
            {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&s.id)
                .bind(&s.user_id)
                .bind(&s.token_hash)
                .bind(s.expires_at)
                .bind(s.created_at)
                .bind(s.updated_at)
                .execute(exec)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl Database for $store {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn records(&self) -> &dyn crate::store_records::RecordStore {
                self
            }

            fn lookup_stats(&self) -> (usize, u64) {
                self.lookups_now()
            }

            fn wal_restarts(&self) -> u64 {
                self.wal_restarts_now()
            }

            async fn ping(&self) -> DbResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn schema_is_current(&self) -> DbResult<bool> {
                let applied: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(applied == $migrations.iter().map(|m| m.version).max())
            }

            async fn secret_or_init(&self, candidate: &str, now: i64) -> DbResult<String> {
                sqlx::query(
                    "INSERT INTO server_secrets (name, value, created_at) VALUES ('secret', $1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(candidate)
                .bind(now)
                .execute(&self.pool)
                .await?;
                let value: String =
                    sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'secret'")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(value)
            }

            async fn create_guest(
                &self,
                u: &UserRow,
                s: &SessionRow,
                audits: &[AuditRow],
            ) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_user(&mut *tx, u).await?;
                Self::insert_session(&mut *tx, s).await?;
                for a in audits {
                    Self::insert_audit(&mut *tx, a).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn create_guests(
                &self,
                batch: &[NewGuest],
                written: crate::writer::Written,
            ) -> DbResult<Vec<GuestOutcome>> {
                self.write_guests(batch, written).await
            }

            async fn create_session(&self, s: &SessionRow, audit: &AuditRow) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::insert_session(&mut *tx, s).await?;
                sqlx::query("UPDATE users SET last_active_at = $2 WHERE id = $1")
                    .bind(&s.user_id)
                    .bind(s.created_at)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn resume_guest(
                &self,
                device_key_hash: &str,
                s: &SessionRow,
                audit: &AuditRow,
            ) -> DbResult<Option<UserRow>> {
                let mut tx = self.pool.begin().await?;
                // A write first: it takes SQLite's write lock (and PostgreSQL's row
                // lock) up front, so an upgrade cannot slip in between the check
                // and the new session.
                let stored: Option<Option<String>> = sqlx::query_scalar(
                    "UPDATE users SET last_active_at = $2 WHERE id = $1 AND is_anonymous \
                     RETURNING device_key_hash",
                )
                .bind(&s.user_id)
                .bind(s.created_at)
                .fetch_optional(&mut *tx)
                .await?;
                let matches = stored
                    .flatten()
                    .is_some_and(|h| crate::crypto::hex_digests_match(&h, device_key_hash));
                if !matches {
                    tx.rollback().await?;
                    return Ok(None);
                }
                Self::insert_session(&mut *tx, s).await?;
                Self::insert_audit(&mut *tx, audit).await?;
                let user: UserRow =
                    sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                        .bind(&s.user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(Some(user))
            }

            async fn session_by_token(
                &self,
                token_hash: &str,
                now: i64,
            ) -> DbResult<Option<(UserRow, SessionRow)>> {
                Ok(self
                    .find_session(token_hash, now)
                    .await?
                    .map(SessionWithUser::split))
            }

            async fn slide_session(&self, session_id: &str, expires_at: i64, now: i64) -> DbResult<()> {
                let mut tx = self.pool.begin().await?;
                let user_id: Option<String> = sqlx::query_scalar(
                    "UPDATE sessions SET expires_at = $2, updated_at = $3 WHERE id = $1 RETURNING user_id",
                )
                .bind(session_id)
                .bind(expires_at)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(user_id) = user_id {
                    sqlx::query("UPDATE users SET last_active_at = $2 WHERE id = $1 AND last_active_at < $2")
                        .bind(&user_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn touch_user(&self, user_id: &str, now: i64) -> DbResult<()> {
                sqlx::query("UPDATE users SET last_active_at = $2 WHERE id = $1 AND last_active_at < $2")
                    .bind(user_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn upgrade_with_email(&self, up: &EmailUpgrade) -> DbResult<Upgraded> {
                let mut tx = self.pool.begin().await?;
                // A lapsed claim on the address gives way (dropped with the
                // transaction if the upgrade does not happen).
                Self::release_lapsed_claim(&mut *tx, &up.email, up.now, self.claim_cutoff(up.now))
                    .await?;
                // The guard `is_anonymous = TRUE` makes concurrent upgrades of one guest
                // safe: the second one matches no row.
                let user: Option<UserRow> = sqlx::query_as(&format!(
                    "UPDATE users SET email = $2, name = COALESCE($3, name), password_hash = $4, \
                     is_anonymous = FALSE, email_verified = FALSE, email_claimed_at = $5, \
                     recovery_key_hash = NULL, \
                     updated_at = $5, last_active_at = $5 \
                     WHERE id = $1 AND is_anonymous = TRUE RETURNING {USER_COLUMNS}"
                ))
                .bind(&up.user_id)
                .bind(&up.email)
                .bind(&up.name)
                .bind(&up.password_hash)
                .bind(up.now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(user) = user else { return Ok(Upgraded::NotAGuest) };
                let Some((session, revoked)) =
                    Self::rotate_and_revoke(&mut tx, &up.user_id, &up.rotation, up.now).await?
                else {
                    return Ok(Upgraded::SessionGone);
                };
                sqlx::query(
                    "INSERT INTO verification_tokens (token_hash, user_id, email, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&up.verification_token_hash)
                .bind(&up.user_id)
                .bind(&up.email)
                .bind(up.verification_expires_at)
                .bind(up.now)
                .execute(&mut *tx)
                .await?;
                Self::insert_audit(&mut *tx, &up.audit).await?;
                tx.commit().await?;
                Ok(Upgraded::Done { user, session, revoked })
            }

            async fn upgrade_with_social(&self, link: &SocialLink) -> DbResult<Upgraded> {
                let mut tx = self.pool.begin().await?;
                // The identity goes in before the email: a provider identity already
                // linked elsewhere is the conflict to report (PROVIDER_ACCOUNT_IN_USE),
                // even though a real provider gives it the same, equally taken, email.
                let guest: Option<String> = sqlx::query_scalar(
                    "UPDATE users SET updated_at = $2 WHERE id = $1 AND is_anonymous = TRUE RETURNING id",
                )
                .bind(&link.user_id)
                .bind(link.now)
                .fetch_optional(&mut *tx)
                .await?;
                if guest.is_none() {
                    return Ok(Upgraded::NotAGuest);
                }
                if let Some(email) = &link.email {
                    Self::release_lapsed_claim(&mut *tx, email, link.now, self.claim_cutoff(link.now))
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO accounts (id, user_id, provider, provider_account_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(format!("acc_{}", ulid::Ulid::new()))
                .bind(&link.user_id)
                .bind(&link.provider)
                .bind(&link.provider_account_id)
                .bind(link.now)
                .execute(&mut *tx)
                .await?;
                let user: UserRow = sqlx::query_as(&format!(
                    "UPDATE users SET email = COALESCE($2, email), name = COALESCE($3, name), \
                     is_anonymous = FALSE, email_verified = ($2 IS NOT NULL), updated_at = $4, \
                     recovery_key_hash = NULL, \
                     last_active_at = $4 WHERE id = $1 RETURNING {USER_COLUMNS}"
                ))
                .bind(&link.user_id)
                .bind(&link.email)
                .bind(&link.name)
                .bind(link.now)
                .fetch_one(&mut *tx)
                .await?;
                let Some((session, revoked)) =
                    Self::rotate_and_revoke(&mut tx, &link.user_id, &link.rotation, link.now).await?
                else {
                    return Ok(Upgraded::SessionGone);
                };
                Self::insert_audit(&mut *tx, &link.audit).await?;
                tx.commit().await?;
                Ok(Upgraded::Done { user, session, revoked })
            }

            async fn user_by_email(&self, email: &str) -> DbResult<Option<UserRow>> {
                Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn user_by_id(&self, id: &str) -> DbResult<Option<UserRow>> {
                Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn consume_verification(&self, token_hash: &str, now: i64) -> DbResult<Option<String>> {
                let mut tx = self.pool.begin().await?;
                let row: Option<(String, String)> = sqlx::query_as(
                    "UPDATE verification_tokens SET used_at = $2 \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                     RETURNING user_id, email",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((user_id, email)) = row else { return Ok(None) };
                let done = sqlx::query(
                    "UPDATE users SET email_verified = TRUE, updated_at = $3 WHERE id = $1 AND email = $2",
                )
                .bind(&user_id)
                .bind(&email)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    // The account's email changed since the link was sent.
                    return Ok(None);
                }
                // A resent link (or the first one) must not verify, and audit, again.
                sqlx::query(
                    "UPDATE verification_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(&user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let audit = AuditRow::new(
                    guestpass_proto::AuditEventKind::UserUpdated,
                    &user_id,
                    &user_id,
                    now,
                    None,
                )
                .with_detail(serde_json::json!({ "emailVerified": true }));
                Self::insert_audit(&mut *tx, &audit).await?;
                tx.commit().await?;
                Ok(Some(user_id))
            }

            async fn delete_session(&self, token_hash: &str) -> DbResult<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_user(
                &self,
                user_id: &str,
                only_anonymous: bool,
                audit: &AuditRow,
            ) -> DbResult<bool> {
                let mut tx = self.pool.begin().await?;
                // A deleted id never comes back as somebody's new guest: its
                // tombstone says why it went (issue 16). The owner deleting itself
                // is 'deleted'; anyone else (an admin) 'removed'.
                let reason = if audit.actor == user_id { "deleted" } else { "removed" };
                sqlx::query(
                    "INSERT INTO gone_users (id, reason, gone_at) \
                     SELECT id, $2, $3 FROM users \
                     WHERE id = $1 AND (is_anonymous = TRUE OR $4 = FALSE) \
                     ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, \
                     device_key_hash = NULL, recovery_key_hash = NULL, gone_at = excluded.gone_at",
                )
                .bind(user_id)
                .bind(reason)
                .bind(audit.created_at)
                .bind(only_anonymous)
                .execute(&mut *tx)
                .await?;
                // Sessions, linked accounts and verification tokens go with the
                // user (ON DELETE CASCADE).
                let done = sqlx::query(
                    "DELETE FROM users WHERE id = $1 AND (is_anonymous = TRUE OR $2 = FALSE)",
                )
                .bind(user_id)
                .bind(only_anonymous)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::insert_audit(&mut *tx, audit).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_users(&self, f: &UserFilter) -> DbResult<Vec<UserRow>> {
                let (after_t, after_id) = f.after.clone().unzip();
                let (before_t, before_id) = f.before.clone().unzip();
                // Paging back walks upwards from the cursor, then flips to newest first.
                let backwards = f.before.is_some() && f.after.is_none();
                let order = if backwards { "ASC" } else { "DESC" };
                let mut rows: Vec<UserRow> = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users \
                     WHERE ($1 IS NULL OR is_anonymous = $1) \
                     AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3)) \
                     AND ($4 IS NULL OR created_at > $4 OR (created_at = $4 AND id > $5)) \
                     ORDER BY created_at {order}, id {order} LIMIT $6"
                ))
                .bind(f.is_anonymous)
                .bind(after_t)
                .bind(after_id)
                .bind(before_t)
                .bind(before_id)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                if backwards {
                    rows.reverse();
                }
                Ok(rows)
            }

            async fn audit_log(&self, f: &AuditFilter) -> DbResult<Vec<AuditRow>> {
                let backwards = f.before.is_some() && f.after.is_none();
                let order = if backwards { "ASC" } else { "DESC" };
                let mut rows: Vec<AuditRow> = sqlx::query_as(&format!(
                    "SELECT id, event, user_id, actor, created_at, ip_hash, detail FROM audit_log \
                     WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR event = $2) \
                     AND ($3 IS NULL OR id < $3) AND ($4 IS NULL OR id > $4) \
                     ORDER BY id {order} LIMIT $5"
                ))
                .bind(&f.user_id)
                .bind(&f.event)
                .bind(&f.after)
                .bind(&f.before)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?;
                if backwards {
                    rows.reverse();
                }
                Ok(rows)
            }

            async fn hit_rate_window(&self, bucket: &str, window_start: i64) -> DbResult<i64> {
                // One statement, atomic on both databases: concurrent instances
                // each see their own increment.
                let hits: i64 = sqlx::query_scalar(
                    "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
                     ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1 \
                     RETURNING hits",
                )
                .bind(bucket)
                .bind(window_start)
                .fetch_one(&self.pool)
                .await?;
                Ok(hits)
            }

            async fn delete_stale_guests(&self, stale: Stale) -> DbResult<StaleBatch> {
                // The batch starts with a read, so SQLite takes the write lock up
                // front (the busy timeout then applies, instead of SQLITE_BUSY when
                // the read snapshot goes stale before the DELETE).
                let begin = if $kind == "sqlite" { "BEGIN IMMEDIATE" } else { "BEGIN" };
                let mut tx = self.pool.begin_with(begin).await?;
                let detail = serde_json::json!({ "reason": "inactive" });
                let audits = |ids: &[String]| -> Vec<AuditRow> {
                    ids.iter()
                        .map(|id| {
                            AuditRow::new(
                                guestpass_proto::AuditEventKind::UserDeleted,
                                id,
                                "system",
                                stale.now,
                                None,
                            )
                            .with_detail(detail.clone())
                        })
                        .collect()
                };
                let batch = self.delete_stale_batch(&mut tx, stale, audits).await?;
                tx.commit().await?;
                Ok(batch)
            }

            async fn count_stale_guests(&self, cutoff: i64) -> DbResult<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE is_anonymous = TRUE AND last_active_at < $1",
                )
                .bind(cutoff)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn prune(&self, now: i64, rate_windows_before: i64) -> DbResult<u64> {
                let mut removed = 0;
                removed += sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                for table in ["verification_tokens", "password_reset_tokens"] {
                    removed += sqlx::query(&format!(
                        "DELETE FROM {table} WHERE used_at IS NOT NULL OR expires_at <= $1"
                    ))
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                }
                removed += sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
                    .bind(rate_windows_before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(removed)
            }
        }
    };
}

/// Names the sqlx database type of each store for the helper signatures.
pub(crate) trait StoreDb {
    type Db: sqlx::Database;
}
impl StoreDb for SqliteStore {
    type Db = sqlx::Sqlite;
}
impl StoreDb for PostgresStore {
    type Db = sqlx::Postgres;
}

sql_store!(SqliteStore, "sqlite", SQLITE_MIGRATIONS);
sql_store!(PostgresStore, "postgres", PG_MIGRATIONS);
