//! Rate limit of anonymous sign-ins: N per minute per client address, counted in
//! the database so every instance on one database shares the count.
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

use std::net::IpAddr;

use crate::crypto::keyed_hash;
use crate::db::{Database, DbResult};

pub const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after_secs: u64 },
}

pub async fn check_anonymous(
    db: &dyn Database,
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_minute: u32,
    now_ms: i64,
) -> DbResult<Decision> {
    if limit_per_minute == 0 {
        return Ok(Decision::Allowed);
    }
    let who = ip
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into());
    let bucket = format!("anon:{}", keyed_hash(secret, &who));
    let window_start = now_ms - now_ms.rem_euclid(WINDOW_MS);
    let hits = db.hit_rate_window(&bucket, window_start).await?;
    if hits <= i64::from(limit_per_minute) {
        return Ok(Decision::Allowed);
    }
    let left_ms = window_start + WINDOW_MS - now_ms;
    let retry_after_secs = u64::try_from((left_ms + 999) / 1000).unwrap_or(1).max(1);
    Ok(Decision::Limited { retry_after_secs })
}

/// Windows that ended before this are no longer read.
pub fn prune_before(now_ms: i64) -> i64 {
    now_ms - 2 * WINDOW_MS
}
