//! Rate limits per client address and minute, counted in the database so every
//! instance on one database shares the count: anonymous sign-ins (below) and
//! password reset requests ([`check_password_reset`], the same window on a
//! bucket of its own). The per-user limits of account care (reset emails and
//! verification resends per hour) are counted from the links themselves, in
//! `store_care.rs`.
//!
//! Each client address (as a keyed hash, never the address) has a fixed
//! one-minute window, `window_start = now - now % 60 s`, and a hit counter row
//! `(bucket, window_start)`. Per address:
//!
//! ```text
//!             hit, count ≤ limit
//!            ┌──────────────┐
//!            ▼              │
//!   ──────▶ Open ───────────┘
//!            │  ▲
//!  hit, count │  │ the window ends (a new row starts at 1)
//!   > limit   ▼  │
//!           Limited ──── hit ───▶ Limited (429, Retry-After = seconds left)
//! ```
//!
//! The increment is a single `INSERT … ON CONFLICT DO UPDATE … RETURNING`, so
//! concurrent requests on any instance each get a distinct count and at most
//! `limit` pass per window. Rejected hits count too (they are requests). A
//! fixed window lets a client burst up to twice the limit across a window
//! boundary; that is the documented price of one row per address per minute.
//! Old windows are pruned by the cleanup task.
//!
//! A sign-in that goes ahead is counted inside the sign-in writer's batch
//! transaction (`writer.rs`): the batch adds all its hits on a window with one
//! such statement and numbers them in order, so each request gets the same
//! count it would have got alone, and the row is locked only until the batch
//! commits. A sign-in refused before it reaches the writer (bad id, already
//! signed in) is counted on its own with [`check_anonymous`], as before, so every
//! request counts exactly once. If the batch's transaction fails (503), its hits
//! are not counted: the client was not served either.

use std::net::IpAddr;

use crate::crypto::keyed_hash;
use crate::db::{Database, DbResult, RateHit};

pub const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after_secs: u64 },
}

/// The window an anonymous sign-in from `ip` at `now_ms` counts against;
/// `None` when the limit is off (0).
pub fn anonymous_hit(
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_minute: u32,
    now_ms: i64,
) -> Option<RateHit> {
    hit("anon", secret, ip, limit_per_minute, now_ms)
}

/// The window a request of `kind` from `ip` counts against (buckets of
/// different kinds never share a count); `None` when the limit is off (0).
fn hit(
    kind: &str,
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_minute: u32,
    now_ms: i64,
) -> Option<RateHit> {
    if limit_per_minute == 0 {
        return None;
    }
    let who = ip
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    Some(RateHit {
        bucket: format!("{kind}:{}", keyed_hash(secret, &who)),
        window_start: now_ms - now_ms.rem_euclid(WINDOW_MS),
        limit: i64::from(limit_per_minute),
    })
}

/// Allowed while the hit's number is within the limit; otherwise limited until
/// the window ends.
pub fn decide(hit: &RateHit, hits: i64, now_ms: i64) -> Decision {
    if hits <= hit.limit {
        return Decision::Allowed;
    }
    let left_ms = hit.window_start + WINDOW_MS - now_ms;
    let retry_after_secs = u64::try_from((left_ms + 999) / 1000).unwrap_or(1).max(1);
    Decision::Limited { retry_after_secs }
}

/// Counts one hit on its own (one statement) and decides.
pub async fn check_anonymous(
    db: &dyn Database,
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_minute: u32,
    now_ms: i64,
) -> DbResult<Decision> {
    count(
        db,
        anonymous_hit(secret, ip, limit_per_minute, now_ms),
        now_ms,
    )
    .await
}

/// Counts one `POST /request-password-reset` from `ip` and decides. Every
/// request counts, whether or not its address is registered, so the limit
/// tells nothing about the address either.
pub async fn check_password_reset(
    db: &dyn Database,
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_minute: u32,
    now_ms: i64,
) -> DbResult<Decision> {
    let hit = hit("reset", secret, ip, limit_per_minute, now_ms);
    count(db, hit, now_ms).await
}

async fn count(db: &dyn Database, hit: Option<RateHit>, now_ms: i64) -> DbResult<Decision> {
    let Some(hit) = hit else {
        return Ok(Decision::Allowed);
    };
    let hits = db.hit_rate_window(&hit.bucket, hit.window_start).await?;
    Ok(decide(&hit, hits, now_ms))
}

/// Windows that ended before this are no longer read.
pub fn prune_before(now_ms: i64) -> i64 {
    now_ms - 2 * WINDOW_MS
}

/// Wrong admin API keys a client address may send per minute. Past it, every
/// admin request from that address is 429 until the window ends, the right key
/// too: otherwise a guesser would still learn which guess was right.
pub const ADMIN_KEY_FAILURES_PER_MINUTE: u32 = 10;

/// The admin key throttle, on a bucket of its own. The hit is counted before
/// the key is compared, so a burst of concurrent guesses gets at most the limit
/// compared, and given back when the key was right ([`AdminKeyCheck::right_key`]):
/// a right key is never counted.
pub async fn check_admin_key(
    db: &dyn Database,
    secret: &[u8],
    ip: Option<IpAddr>,
    now_ms: i64,
) -> DbResult<AdminKeyCheck> {
    let limit = ADMIN_KEY_FAILURES_PER_MINUTE;
    let Some(hit) = hit("admin-key", secret, ip, limit, now_ms) else {
        return Ok(AdminKeyCheck {
            decision: Decision::Allowed,
            first_refusal: false,
            hit: None,
        });
    };
    let hits = db.hit_rate_window(&hit.bucket, hit.window_start).await?;
    Ok(AdminKeyCheck {
        decision: decide(&hit, hits, now_ms),
        first_refusal: hits == i64::from(limit) + 1,
        hit: Some(hit),
    })
}

/// A counted admin request: refused or not, and its hit to give back if its key
/// turns out right.
pub struct AdminKeyCheck {
    pub decision: Decision,
    /// The address's first refusal in this window (worth one log line).
    pub first_refusal: bool,
    hit: Option<RateHit>,
}

impl AdminKeyCheck {
    pub async fn right_key(self, db: &dyn Database) -> DbResult<()> {
        match self.hit {
            Some(hit) => db.take_back_rate_hit(&hit.bucket, hit.window_start).await,
            None => Ok(()),
        }
    }
}
