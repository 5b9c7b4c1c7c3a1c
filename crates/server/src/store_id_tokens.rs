//! The ID tokens already accepted (issue 14 item 5), on SQLite and PostgreSQL: only
//! each token's SHA-256, kept until the token expires. A supertrait of
//! [`Database`](crate::db::Database), so every instance on one database refuses a
//! token another instance accepted.

use async_trait::async_trait;

use crate::db::DbResult;
use crate::store::{PostgresStore, SqliteStore};

#[async_trait]
pub trait IdTokenStore {
    /// Records the token whose digest is `token_hash` as used until `expires_at`.
    /// `false`: it was used before (a replay). One statement, so two instances
    /// racing with the same token cannot both get `true`.
    async fn spend_id_token(&self, token_hash: &str, expires_at: i64) -> DbResult<bool>;

    /// Forgets the tokens expired by `now` (the cleanup task). Returns rows removed.
    async fn prune_spent_id_tokens(&self, now: i64) -> DbResult<u64>;
}

macro_rules! id_token_store {
    ($store:ty) => {
        #[async_trait]
        impl IdTokenStore for $store {
            async fn spend_id_token(&self, token_hash: &str, expires_at: i64) -> DbResult<bool> {
                let inserted = sqlx::query(
                    "INSERT INTO spent_id_tokens (token_hash, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (token_hash) DO NOTHING",
                )
                .bind(token_hash)
                .bind(expires_at)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(inserted == 1)
            }

            async fn prune_spent_id_tokens(&self, now: i64) -> DbResult<u64> {
                Ok(
                    sqlx::query("DELETE FROM spent_id_tokens WHERE expires_at <= $1")
                        .bind(now)
                        .execute(&self.pool)
                        .await?
                        .rows_affected(),
                )
            }
        }
    };
}

id_token_store!(SqliteStore);
id_token_store!(PostgresStore);
