//! Deletes guests whose last session activity is older than `maxAge`, with their
//! sessions and data, each audited `user.deleted` by `system`.
//!
//! Work is done in batches of [`BATCH`] guests per transaction so a large backlog
//! never holds a long lock over live requests; between batches the task yields.
//! Several instances may run it at once: each batch is a `DELETE … RETURNING`
//! (on PostgreSQL over rows picked with `FOR UPDATE SKIP LOCKED`), so every guest
//! is deleted and audited by exactly one instance. A batch starts its scan where
//! the one before stopped ([`Stale::from`]); a guest passed over there (another
//! instance held it) waits for the next pass.

use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;

use crate::clock::Clock;
use crate::db::{Db, DbResult, Stale};
use crate::ratelimit;

/// Guests per transaction. A batch holds SQLite's write lock for roughly
/// BATCH × 25 µs (≈ 50 ms at 2,000 on a 2-core machine), which bounds how long a
/// sign-in can wait behind the cleanup; readers (get-session) never wait in WAL
/// mode. Smaller batches cost more commits (500 was ~25 % slower); larger ones
/// gain little. On PostgreSQL a batch binds one array per column, and its cost
/// per guest is flat from 500 to 10,000 (18 µs a guest with the deletion by set,
/// psql at 1 M guests, `store_cleanup.rs`), so 2,000 keeps its row locks short.
pub const BATCH: i64 = 2_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub guests_deleted: usize,
    pub rows_pruned: u64,
}

fn cutoff(clock: &dyn Clock, max_age_secs: u64) -> i64 {
    let max_age = ChronoDuration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX / 1000));
    clock.now_ms().saturating_sub(max_age.num_milliseconds())
}

/// One full pass: stale guests in batches, then housekeeping.
pub async fn run_once(db: &Db, clock: &dyn Clock, max_age_secs: u64) -> DbResult<CleanupReport> {
    let cutoff = cutoff(clock, max_age_secs);
    let mut report = CleanupReport::default();
    let mut from = i64::MIN;
    loop {
        let stale = Stale {
            from,
            cutoff,
            limit: BATCH,
            now: clock.now_ms(),
        };
        let batch = db.delete_stale_guests(stale).await?;
        report.guests_deleted += batch.ids.len();
        match batch.reached {
            Some(reached) if batch.ids.len() >= BATCH as usize => from = reached,
            _ => break,
        }
        tokio::task::yield_now().await;
    }
    report.rows_pruned += prune(db, clock).await?;
    Ok(report)
}

/// Expired sessions, spent verification tokens, old rate-limit windows, the
/// remembered ID tokens that have expired.
pub async fn prune(db: &Db, clock: &dyn Clock) -> DbResult<u64> {
    let now = clock.now_ms();
    let removed = db.prune(now, ratelimit::prune_before(now)).await?;
    Ok(removed + db.prune_spent_id_tokens(now).await?)
}

/// How many guests a pass would delete now.
pub async fn dry_run(db: &Db, clock: &dyn Clock, max_age_secs: u64) -> DbResult<i64> {
    db.count_stale_guests(cutoff(clock, max_age_secs)).await
}

/// The periodic task. A failed pass (database down) is logged and retried at
/// the next tick.
pub fn spawn(
    db: Db,
    clock: Arc<dyn Clock>,
    max_age_secs: Option<u64>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = match max_age_secs {
                Some(max_age) => run_once(&db, clock.as_ref(), max_age).await,
                None => prune(&db, clock.as_ref())
                    .await
                    .map(|rows_pruned| CleanupReport {
                        guests_deleted: 0,
                        rows_pruned,
                    }),
            };
            match outcome {
                Ok(r) if r.guests_deleted > 0 => {
                    tracing::info!(
                        deleted = r.guests_deleted,
                        pruned = r.rows_pruned,
                        "cleanup of stale guests"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cleanup pass failed; retrying at the next interval")
                }
            }
        }
    })
}
