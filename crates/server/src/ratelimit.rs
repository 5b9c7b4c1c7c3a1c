//! Rate limits counted in the database so every instance on one database
//! shares the count. Each [`Kind`] has its own buckets and window length:
//!
//! | kind | key | window | what counts |
//! | --- | --- | --- | --- |
//! | [`ANONYMOUS`] | client address | 1 min | anonymous sign-ins (below) |
//! | [`PASSWORD_RESET`] | client address | 1 min | `request-password-reset` calls |
//! | [`UPGRADE`] | client address | 1 h | `anonymous/upgrade` calls |
//! | [`SIGN_IN_EMAIL`] | normalised email | 15 min | failed email sign-ins (`sign_in_throttle.rs`) |
//! | [`SIGN_IN_ADDRESS`] | client address | 15 min | failed email sign-ins, any email |
//! | [`RECOVERY`] | client address | 1 min | `sign-in/recovery` attempts |
//! | [`RECOVERY_ALL`] | everyone (one bucket) | 1 min | `sign-in/recovery` attempts |
//!
//! The per-user limits of account care (reset emails and verification resends
//! per hour) are counted from the links themselves, in `store_care.rs`.
//!
//! A client address is keyed as [`address_key`] says: an IPv4 address by
//! itself, an IPv6 address by its /64 (one subscriber's prefix: a client that
//! holds a /64 could otherwise take a fresh bucket per request), an
//! IPv4-mapped IPv6 address as the IPv4 one.
//!
//! Each key (as a keyed hash, never the address or email) has a fixed window
//! of its kind's length, `window_start = now - now % window`, and a hit counter
//! row `(bucket, window_start)`. Per key:
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
//! boundary; that is the documented price of one row per key per window.
//! Old windows are pruned by the cleanup task (after twice the longest window).
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

const MINUTE_MS: i64 = 60_000;

/// One kind of limit: its buckets never share a count with another kind's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The bucket prefix (part of the stored key; changing it resets counts).
    name: &'static str,
    pub window_ms: i64,
}

pub const ANONYMOUS: Kind = Kind {
    name: "anon",
    window_ms: MINUTE_MS,
};
pub const PASSWORD_RESET: Kind = Kind {
    name: "reset",
    window_ms: MINUTE_MS,
};
pub const UPGRADE: Kind = Kind {
    name: "upgrade",
    window_ms: 60 * MINUTE_MS,
};
pub const SIGN_IN_EMAIL: Kind = Kind {
    name: "signin-email",
    window_ms: 15 * MINUTE_MS,
};
pub const SIGN_IN_ADDRESS: Kind = Kind {
    name: "signin-addr",
    window_ms: 15 * MINUTE_MS,
};
pub const RECOVERY: Kind = Kind {
    name: "recovery",
    window_ms: MINUTE_MS,
};
pub const RECOVERY_ALL: Kind = Kind {
    name: "recovery-all",
    window_ms: MINUTE_MS,
};
pub const ADMIN_KEY: Kind = Kind {
    name: "admin-key",
    window_ms: MINUTE_MS,
};

/// The longest window of any kind: older rows are pruned.
const LONGEST_WINDOW_MS: i64 = 60 * MINUTE_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after_secs: u64 },
}

/// What a client address counts as: IPv4 by address (an IPv4-mapped IPv6
/// address as its IPv4 address), IPv6 by its /64.
pub fn address_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
        None => "unknown".into(),
    }
}

/// The window an anonymous sign-in from `ip` at `now_ms` counts against;
/// `None` when the limit is off (0).
pub fn anonymous_hit(
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_minute: u32,
    now_ms: i64,
) -> Option<RateHit> {
    hit(
        ANONYMOUS,
        secret,
        &address_key(ip),
        limit_per_minute,
        now_ms,
    )
}

/// The window a request of `kind` keyed by `who` (an [`address_key`], or a
/// normalised email) counts against; `None` when the limit is off (0).
pub fn hit(kind: Kind, secret: &[u8], who: &str, limit: u32, now_ms: i64) -> Option<RateHit> {
    if limit == 0 {
        return None;
    }
    Some(RateHit {
        bucket: bucket(kind, secret, who),
        window_start: now_ms - now_ms.rem_euclid(kind.window_ms),
        window_ms: kind.window_ms,
        limit: i64::from(limit),
    })
}

/// The stored key of `who`'s bucket of `kind`.
pub fn bucket(kind: Kind, secret: &[u8], who: &str) -> String {
    format!("{}:{}", kind.name, keyed_hash(secret, who))
}

/// Allowed while the hit's number is within the limit; otherwise limited until
/// the window ends.
pub fn decide(hit: &RateHit, hits: i64, now_ms: i64) -> Decision {
    if hits <= hit.limit {
        return Decision::Allowed;
    }
    let left_ms = hit.window_start + hit.window_ms - now_ms;
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
    let hit = hit(
        PASSWORD_RESET,
        secret,
        &address_key(ip),
        limit_per_minute,
        now_ms,
    );
    count(db, hit, now_ms).await
}

/// Counts one `POST /anonymous/upgrade` from `ip` and decides. Every call
/// counts (accepted, 409 or refused), so probing addresses through the 409,
/// or mailing verification links to strangers, is as limited as the rest.
pub async fn check_upgrade(
    db: &dyn Database,
    secret: &[u8],
    ip: Option<IpAddr>,
    limit_per_hour: u32,
    now_ms: i64,
) -> DbResult<Decision> {
    let hit = hit(UPGRADE, secret, &address_key(ip), limit_per_hour, now_ms);
    count(db, hit, now_ms).await
}

/// Counts one `POST /sign-in/recovery` from `ip`, on its address's bucket and
/// on the one bucket of everyone, and decides (limited if either is past its
/// limit). Never keyed by any part of the key or phrase: a guesser who varies
/// them learns nothing from the limit, and the owner is never locked out by
/// someone else's guesses for longer than a minute.
pub async fn check_recovery(
    db: &dyn Database,
    secret: &[u8],
    ip: Option<IpAddr>,
    per_address: u32,
    everyone: u32,
    now_ms: i64,
) -> DbResult<Decision> {
    let mine = hit(RECOVERY, secret, &address_key(ip), per_address, now_ms);
    match count(db, mine, now_ms).await? {
        Decision::Allowed => {}
        limited => return Ok(limited),
    }
    count(
        db,
        hit(RECOVERY_ALL, secret, "all", everyone, now_ms),
        now_ms,
    )
    .await
}

/// Counts `hit` (if the limit is on) and decides.
pub async fn count(db: &dyn Database, hit: Option<RateHit>, now_ms: i64) -> DbResult<Decision> {
    let Some(hit) = hit else {
        return Ok(Decision::Allowed);
    };
    let hits = db.hit_rate_window(&hit.bucket, hit.window_start).await?;
    Ok(decide(&hit, hits, now_ms))
}

/// Windows that started before this have ended (every kind's) and are no
/// longer read.
pub fn prune_before(now_ms: i64) -> i64 {
    now_ms - 2 * LONGEST_WINDOW_MS
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
    let Some(hit) = hit(ADMIN_KEY, secret, &address_key(ip), limit, now_ms) else {
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
            Some(hit) => db.refund_rate_hit(&hit.bucket, hit.window_start).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_by_its_64_ipv4_by_address_mapped_as_ipv4() {
        let key = |s: &str| address_key(s.parse().ok());
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(address_key(None), "unknown");
    }

    #[test]
    fn each_kind_has_its_window() {
        let now = 3 * 60 * MINUTE_MS + 7 * MINUTE_MS + 5_000;
        let email = hit(SIGN_IN_EMAIL, b"k", "a@b.example", 10, now).unwrap();
        assert_eq!(email.window_start, 3 * 60 * MINUTE_MS);
        assert_eq!(
            decide(&email, 11, now),
            Decision::Limited {
                retry_after_secs: 8 * 60 - 5
            }
        );
        assert_eq!(decide(&email, 10, now), Decision::Allowed);
        let anon = anonymous_hit(b"k", None, 1, now);
        assert_eq!(anon.map(|h| h.window_start), Some(now - 5_000));
        assert!(hit(UPGRADE, b"k", "x", 0, now).is_none(), "0 turns it off");
        assert_ne!(
            bucket(SIGN_IN_EMAIL, b"k", "x"),
            bucket(SIGN_IN_ADDRESS, b"k", "x")
        );
        assert!(prune_before(now) < email.window_start);
    }
}
