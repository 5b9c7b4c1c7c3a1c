//! The storage the sign-in throttle (`sign_in_throttle.rs`) needs beside the
//! counting of [`Database::hit_rate_window`](crate::db::Database::hit_rate_window):
//! giving a hit back, forgetting a bucket, and an audit row of its own. A
//! supertrait of [`Database`](crate::db::Database), implemented here for both
//! stores with the same SQL.

use async_trait::async_trait;

use crate::db::{AuditRow, DbResult};
use crate::store::{PostgresStore, SqliteStore};

#[async_trait]
pub trait ThrottleStore {
    /// Takes back one hit counted in `(bucket, window_start)` (a sign-in that
    /// turned out not to be a failure). Never below zero.
    async fn refund_rate_hit(&self, bucket: &str, window_start: i64) -> DbResult<()>;

    /// Forgets every window of `bucket`.
    async fn clear_rate_bucket(&self, bucket: &str) -> DbResult<()>;

    /// Writes one audit row that goes with no other change (a failed sign-in).
    async fn write_audit(&self, audit: &AuditRow) -> DbResult<()>;
}

macro_rules! throttle_store {
    ($store:ty) => {
        #[async_trait]
        impl ThrottleStore for $store {
            async fn refund_rate_hit(&self, bucket: &str, window_start: i64) -> DbResult<()> {
                sqlx::query(
                    "UPDATE rate_limits SET hits = hits - 1 \
                     WHERE bucket = $1 AND window_start = $2 AND hits > 0",
                )
                .bind(bucket)
                .bind(window_start)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn clear_rate_bucket(&self, bucket: &str) -> DbResult<()> {
                sqlx::query("DELETE FROM rate_limits WHERE bucket = $1")
                    .bind(bucket)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn write_audit(&self, audit: &AuditRow) -> DbResult<()> {
                Self::insert_audit(&self.pool, audit).await?;
                Ok(())
            }
        }
    };
}

throttle_store!(SqliteStore);
throttle_store!(PostgresStore);
