//! PostgreSQL connections for the session lookup, kept outside sqlx's pool.
//!
//! sqlx 0.8's pool pings every connection on its way back (a round trip to the
//! server, from a task spawned for it), and that cannot be turned off. So each
//! get-session cost two round trips, the query and the ping. Here a connection goes
//! back by being pushed on a stack. One whose read did not finish (an error, a
//! timeout, or the request went away mid-query) is dropped instead of reused: its
//! protocol state is unknown, and that is what the ping was for. One left idle for a
//! while is pinged before use, because a restarted database has cut it (as the
//! pool does, in `store.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Semaphore;

use crate::db::{DbError, DbResult};

pub struct PgReaders {
    options: PgConnectOptions,
    /// Each with the moment it went back.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// One per connection that may be open at once.
    permits: Semaphore,
    timeout: Duration,
    ping_after: Duration,
}

impl PgReaders {
    /// Up to `max` connections, opened when first needed. A read waits at most
    /// `timeout` for a connection and as long again for its answer (then 503).
    pub fn new(
        options: PgConnectOptions,
        max: usize,
        timeout: Duration,
        ping_after: Duration,
    ) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: Semaphore::new(max),
            timeout,
            ping_after,
        }
    }

    /// Runs `read` on a connection of its own.
    pub async fn read<T>(
        &self,
        read: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> DbResult<T> {
        let _permit = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| DbError::Unavailable("the database is closed".into()))?;
        let mut conn = self.checkout().await?;
        // Dropped with this future if the request goes away: closed, never reused.
        let out = tokio::time::timeout(self.timeout, read(&mut conn))
            .await
            .map_err(|_| timed_out())??;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push((conn, Instant::now()));
        }
        Ok(out)
    }

    async fn checkout(&self) -> DbResult<PgConnection> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        if let Some((mut conn, since)) = idle {
            if since.elapsed() <= self.ping_after {
                return Ok(conn);
            }
            if let Ok(Ok(())) = tokio::time::timeout(self.timeout, conn.ping()).await {
                return Ok(conn);
            }
        }
        Ok(tokio::time::timeout(self.timeout, self.options.connect())
            .await
            .map_err(|_| timed_out())??)
    }
}

fn timed_out() -> DbError {
    DbError::Unavailable("timed out waiting for the database".into())
}
