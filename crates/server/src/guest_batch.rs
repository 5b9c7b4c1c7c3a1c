//! The dialect-free half of [`Database::create_guests`](crate::db::Database::create_guests):
//! which rate-limit windows a batch hits, which items still go ahead, and the rows
//! they write, as one JSON array per table.
//!
//! A whole batch is written with one statement per table (`json_each` on SQLite,
//! `json_array_elements` on PostgreSQL) rather than one per row: the statement
//! text never changes with the batch size (so it stays prepared), and the cost of
//! a round trip to the database is paid per batch, not per guest.
//!
//! Everything that takes a row lock goes in a fixed order (windows by key, users by
//! id), so two batches on two instances can wait on each other but never deadlock.

use std::collections::{BTreeMap, HashSet};

use crate::db::{AuditRow, DbError, DbResult, GuestOutcome, NewGuest};

/// The items of a batch that count against one rate-limit window, in batch order.
pub struct RateGroup<'a> {
    pub bucket: &'a str,
    pub window_start: i64,
    pub items: Vec<usize>,
}

/// Windows hit by the batch, in key order.
pub fn rate_groups(batch: &[NewGuest]) -> Vec<RateGroup<'_>> {
    let mut groups: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, guest) in batch.iter().enumerate() {
        if let Some(hit) = &guest.rate {
            groups
                .entry((hit.bucket.as_str(), hit.window_start))
                .or_default()
                .push(i);
        }
    }
    groups
        .into_iter()
        .map(|((bucket, window_start), items)| RateGroup {
            bucket,
            window_start,
            items,
        })
        .collect()
}

/// After the window's counter went up by `items.len()` to `total`, the k-th item
/// holds hit number `total - n + 1 + k`: the same numbers as `n` separate
/// increments. Items over their limit are marked limited.
pub fn apply_hits(out: &mut [GuestOutcome], batch: &[NewGuest], group: &RateGroup, total: i64) {
    let n = i64::try_from(group.items.len()).unwrap_or(i64::MAX);
    for (k, &i) in group.items.iter().enumerate() {
        let hits = total - n + 1 + i64::try_from(k).unwrap_or(i64::MAX);
        let limit = batch[i].rate.as_ref().map_or(i64::MAX, |r| r.limit);
        if hits > limit {
            out[i] = GuestOutcome::Limited { hits };
        }
    }
}

/// The items still to insert, sorted by user id. The second of two items asking
/// for one id in the same batch is refused here, as it would be a moment later.
pub fn claims(batch: &[NewGuest], out: &mut [GuestOutcome]) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut items = Vec::with_capacity(batch.len());
    for (i, guest) in batch.iter().enumerate() {
        if out[i] != GuestOutcome::Created {
            continue;
        }
        if seen.insert(guest.user.id.as_str()) {
            items.push(i);
        } else {
            out[i] = GuestOutcome::UserIdTaken;
        }
    }
    items.sort_by(|&a, &b| batch[a].user.id.cmp(&batch[b].user.id));
    items
}

/// Marks the claims whose user row was not inserted (the id exists) as taken and
/// returns the ones that were.
pub fn settle(
    out: &mut [GuestOutcome],
    batch: &[NewGuest],
    claims: &[usize],
    inserted: &[String],
) -> Vec<usize> {
    let inserted: HashSet<&str> = inserted.iter().map(String::as_str).collect();
    let mut created = Vec::with_capacity(claims.len());
    for &i in claims {
        if inserted.contains(batch[i].user.id.as_str()) {
            created.push(i);
        } else {
            out[i] = GuestOutcome::UserIdTaken;
        }
    }
    created
}

fn to_json<T: serde::Serialize>(rows: &[T]) -> DbResult<String> {
    serde_json::to_string(rows).map_err(|e| DbError::Unavailable(format!("encoding a batch: {e}")))
}

/// `[bucket, window_start, hits to add]` per window.
pub fn rate_json(groups: &[RateGroup]) -> DbResult<String> {
    let rows: Vec<_> = groups
        .iter()
        .map(|g| (g.bucket, g.window_start, g.items.len()))
        .collect();
    to_json(&rows)
}

/// The user ids of `items`.
pub fn ids_json(batch: &[NewGuest], items: &[usize]) -> DbResult<String> {
    let rows: Vec<&str> = items.iter().map(|&i| batch[i].user.id.as_str()).collect();
    to_json(&rows)
}

/// `[id, email, name, image, email_verified, is_anonymous, password_hash,
/// metadata, created_at, updated_at, last_active_at, device_key_hash]`.
fn user_row(g: &NewGuest) -> impl serde::Serialize + '_ {
    let u = &g.user;
    (
        &u.id,
        &u.email,
        &u.name,
        &u.image,
        u.email_verified,
        u.is_anonymous,
        &u.password_hash,
        &u.metadata,
        u.created_at,
        u.updated_at,
        u.last_active_at,
        &g.device_key_hash,
    )
}

/// `[id, user_id, token_hash, expires_at, created_at, updated_at]`.
fn session_row(g: &NewGuest) -> impl serde::Serialize + '_ {
    let s = &g.session;
    (
        &s.id,
        &s.user_id,
        &s.token_hash,
        s.expires_at,
        s.created_at,
        s.updated_at,
    )
}

/// `[id, event, user_id, actor, created_at, ip_hash, detail]`.
fn audit_row(a: &AuditRow) -> impl serde::Serialize + '_ {
    (
        &a.id,
        &a.event,
        &a.user_id,
        &a.actor,
        a.created_at,
        &a.ip_hash,
        &a.detail,
    )
}

/// A `user_row` per item of `items`.
pub fn users_json(batch: &[NewGuest], items: &[usize]) -> DbResult<String> {
    let rows: Vec<_> = items.iter().map(|&i| user_row(&batch[i])).collect();
    to_json(&rows)
}

/// A `session_row` per item of `items`.
pub fn sessions_json(batch: &[NewGuest], items: &[usize]) -> DbResult<String> {
    let rows: Vec<_> = items.iter().map(|&i| session_row(&batch[i])).collect();
    to_json(&rows)
}

/// An `audit_row` per audit of the items of `items`.
pub fn audits_json(batch: &[NewGuest], items: &[usize]) -> DbResult<String> {
    let rows: Vec<_> = items
        .iter()
        .flat_map(|&i| batch[i].audits.iter())
        .map(audit_row)
        .collect();
    to_json(&rows)
}

/// `[user_row, bucket, window_start, slack]` per item of the batch, in batch
/// order, for PostgreSQL's one-statement batch. The item may go ahead when it has
/// no window or its window's new total is at most `slack`: the k-th of a group of
/// n holds hit `total - n + 1 + k` (see [`apply_hits`]), which is within `limit`
/// exactly when `total <= limit + n - 1 - k`.
pub fn candidates_json(batch: &[NewGuest], groups: &[RateGroup]) -> DbResult<String> {
    let mut slack: Vec<Option<i64>> = vec![None; batch.len()];
    for group in groups {
        let n = i64::try_from(group.items.len()).unwrap_or(i64::MAX);
        for (k, &i) in group.items.iter().enumerate() {
            let limit = batch[i].rate.as_ref().map_or(i64::MAX, |r| r.limit);
            let k = i64::try_from(k).unwrap_or(i64::MAX);
            slack[i] = Some(limit.saturating_add(n - 1 - k));
        }
    }
    let rows: Vec<_> = batch
        .iter()
        .zip(slack)
        .map(|(g, slack)| {
            let rate = g.rate.as_ref();
            (
                user_row(g),
                rate.map(|r| r.bucket.as_str()),
                rate.map(|r| r.window_start),
                slack,
            )
        })
        .collect();
    to_json(&rows)
}

/// `[item, audit_row]` per audit, the item's index in the batch first, for
/// PostgreSQL's one-statement batch (an item may have several audits).
pub fn indexed_audits_json(batch: &[NewGuest]) -> DbResult<String> {
    let rows: Vec<_> = batch
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.audits.iter().map(move |a| (i, audit_row(a))))
        .collect();
    to_json(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{RateHit, SessionRow, UserRow};

    fn guest(id: &str, bucket: Option<&str>, limit: i64) -> NewGuest {
        NewGuest {
            user: UserRow::new_guest(id.into(), 1),
            session: SessionRow {
                id: format!("ses_{id}"),
                user_id: id.into(),
                token_hash: format!("h_{id}"),
                expires_at: 2,
                created_at: 1,
                updated_at: 1,
            },
            audits: Vec::new(),
            device_key_hash: None,
            rate: bucket.map(|b| RateHit {
                bucket: b.into(),
                window_start: 0,
                window_ms: 60_000,
                limit,
            }),
        }
    }

    #[test]
    fn hits_are_numbered_as_if_counted_one_by_one() {
        let batch = [
            guest("usr_a", Some("x"), 3),
            guest("usr_b", Some("y"), 3),
            guest("usr_c", Some("x"), 3),
            guest("usr_d", Some("x"), 3),
        ];
        let mut out = vec![GuestOutcome::Created; batch.len()];
        let groups = rate_groups(&batch);
        assert_eq!(
            groups.iter().map(|g| g.bucket).collect::<Vec<_>>(),
            ["x", "y"]
        );
        // Window x stood at 1 before: the batch's three hits are numbers 2, 3, 4.
        apply_hits(&mut out, &batch, &groups[0], 4);
        apply_hits(&mut out, &batch, &groups[1], 1);
        assert_eq!(
            out,
            [
                GuestOutcome::Created,
                GuestOutcome::Created,
                GuestOutcome::Created,
                GuestOutcome::Limited { hits: 4 },
            ]
        );
    }

    #[test]
    fn a_repeated_id_is_taken_and_claims_go_in_id_order() {
        let batch = [
            guest("usr_b", None, 0),
            guest("usr_a", None, 0),
            guest("usr_b", None, 0),
        ];
        let mut out = vec![GuestOutcome::Created; batch.len()];
        assert_eq!(claims(&batch, &mut out), [1, 0]);
        assert_eq!(out[2], GuestOutcome::UserIdTaken);
        let created = settle(&mut out, &batch, &[1, 0], &["usr_b".to_string()]);
        assert_eq!(created, [0]);
        assert_eq!(out[1], GuestOutcome::UserIdTaken);
    }
}
