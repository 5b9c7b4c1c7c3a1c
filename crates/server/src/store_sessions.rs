//! The session lookup behind get-session and every authenticated request: one
//! indexed query joining the session to its user. SQLite reads on the calling
//! thread (`readers.rs`); PostgreSQL reads on its own connections (`pg_readers.rs`)
//! and, when busy, lets lookups made at the same moment share one query
//! (`coalesce.rs`).

use crate::db::{DbResult, SessionRow, UserRow};
use crate::store::{PostgresStore, SqliteStore};

/// Session lookups on PostgreSQL that run alone at once while the server is quiet;
/// busy, they go together, one batch at a time (`coalesce.rs`).
pub(crate) const PG_LOOKUPS_ALONE: usize = 2;

/// Most lookups in one query.
pub(crate) const PG_LOOKUP_BATCH: usize = 64;

/// One query, not two: every get-session and every authenticated request runs it.
const SESSION_BY_TOKEN: &str = "SELECT u.id, u.email, u.name, u.image, u.email_verified, \
     u.is_anonymous, u.password_hash, u.metadata, u.created_at, u.updated_at, u.last_active_at, \
     s.id AS session_id, s.token_hash AS session_token_hash, \
     s.expires_at AS session_expires_at, s.created_at AS session_created_at, \
     s.updated_at AS session_updated_at \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.token_hash = $1 AND s.expires_at > $2";

/// [`SESSION_BY_TOKEN`] for many token hashes at once (PostgreSQL).
const SESSIONS_BY_TOKENS: &str = "SELECT u.id, u.email, u.name, u.image, u.email_verified, \
     u.is_anonymous, u.password_hash, u.metadata, u.created_at, u.updated_at, u.last_active_at, \
     s.id AS session_id, s.token_hash AS session_token_hash, \
     s.expires_at AS session_expires_at, s.created_at AS session_created_at, \
     s.updated_at AS session_updated_at \
     FROM sessions s JOIN users u ON u.id = s.user_id \
     WHERE s.token_hash = ANY($1) AND s.expires_at > $2";

impl SqliteStore {
    /// Each lookup runs on a reader thread of its own (`readers.rs`): none shared.
    pub(crate) fn lookups_now(&self) -> (usize, u64) {
        (0, 0)
    }

    /// On a reader connection, on this thread (`readers.rs`), not through the pool.
    pub(crate) async fn find_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> DbResult<Option<SessionWithUser>> {
        use rusqlite::OptionalExtension;
        self.readers.read(|conn| {
            conn.prepare_cached(SESSION_BY_TOKEN)?
                .query_row((token_hash, now), |r| {
                    Ok(SessionWithUser {
                        user: UserRow {
                            id: r.get(0)?,
                            email: r.get(1)?,
                            name: r.get(2)?,
                            image: r.get(3)?,
                            email_verified: r.get(4)?,
                            is_anonymous: r.get(5)?,
                            password_hash: r.get(6)?,
                            metadata: r.get(7)?,
                            created_at: r.get(8)?,
                            updated_at: r.get(9)?,
                            last_active_at: r.get(10)?,
                        },
                        session_id: r.get(11)?,
                        session_token_hash: r.get(12)?,
                        session_expires_at: r.get(13)?,
                        session_created_at: r.get(14)?,
                        session_updated_at: r.get(15)?,
                    })
                })
                .optional()
        })
    }
}

impl PostgresStore {
    pub(crate) fn lookups_now(&self) -> (usize, u64) {
        (self.lookups.waiting(), self.lookups.shared())
    }

    /// On a reader connection (`pg_readers.rs`), not through the pool; with the
    /// lookups made at the same moment, in one query (`coalesce.rs`).
    pub(crate) async fn find_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> DbResult<Option<SessionWithUser>> {
        let key = (token_hash.to_owned(), now);
        self.lookups
            .read(key, |keys| self.find_sessions(keys))
            .await
    }

    /// One answer per (token hash, now): the live session with that hash, if any.
    async fn find_sessions(
        &self,
        keys: Vec<(String, i64)>,
    ) -> DbResult<Vec<Option<SessionWithUser>>> {
        // Alone, the one-key query: PostgreSQL plans it once per connection, while
        // an array parameter gets a fresh plan per execution (its generic plan is
        // costed as worse), which cost more than the lookup itself.
        if let [(hash, now)] = keys.as_slice() {
            let row = self
                .readers
                .read(async |conn| {
                    sqlx::query_as(SESSION_BY_TOKEN)
                        .bind(hash)
                        .bind(now)
                        .fetch_optional(conn)
                        .await
                })
                .await?;
            return Ok(vec![row]);
        }
        // The earliest `now` finds a superset; each key then applies its own.
        let earliest = keys.iter().map(|k| k.1).min().unwrap_or(i64::MAX);
        let hashes: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let rows: Vec<SessionWithUser> = self
            .readers
            .read(async |conn| {
                sqlx::query_as(SESSIONS_BY_TOKENS)
                    .bind(&hashes)
                    .bind(earliest)
                    .fetch_all(conn)
                    .await
            })
            .await?;
        Ok(keys
            .iter()
            .map(|(hash, now)| {
                rows.iter()
                    .find(|r| r.session_token_hash == *hash && r.session_expires_at > *now)
                    .cloned()
            })
            .collect())
    }
}

/// A session joined with its user: user columns as `UserRow` reads them, the
/// session's under `session_` names.
#[derive(Clone, sqlx::FromRow)]
pub(crate) struct SessionWithUser {
    #[sqlx(flatten)]
    user: UserRow,
    session_id: String,
    session_token_hash: String,
    session_expires_at: i64,
    session_created_at: i64,
    session_updated_at: i64,
}

impl SessionWithUser {
    pub(crate) fn split(self) -> (UserRow, SessionRow) {
        let session = SessionRow {
            id: self.session_id,
            user_id: self.user.id.clone(),
            token_hash: self.session_token_hash,
            expires_at: self.session_expires_at,
            created_at: self.session_created_at,
            updated_at: self.session_updated_at,
        };
        (self.user, session)
    }
}
