//! Compaction (DESIGN.md §3a) over real HTTP, on SQLite and PostgreSQL: a snapshot
//! pushed with `compacts` replaces the record's log through that cursor, keeps the
//! changes after it (moved behind the snapshot, so nobody meets a change before
//! what it builds on), frees quota, and compacts nothing from another epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::sync::*;
use common::*;
use serde_json::Value;

both_backends!(
    a_snapshot_replaces_the_log_it_holds,
    compaction_frees_quota_for_a_user_at_its_limit,
    a_snapshot_of_another_epoch_compacts_nothing,
);

fn snapshot(id: &str, text: &str, cursor: &str) -> Value {
    let mut c = note(id, text);
    c["compacts"] = Value::String(cursor.to_string());
    c
}

/// `(id, bytes as text)` of pulled changes, in log order.
fn texts(changes: &[Value]) -> Vec<(String, String)> {
    keys(changes)
        .into_iter()
        .map(|(_, id, b)| {
            let bytes =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).unwrap();
            (id, String::from_utf8(bytes).unwrap())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn a_snapshot_replaces_the_log_it_holds(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let edits: Vec<Value> = (1..=5).map(|i| note("a", &format!("a{i}"))).collect();
    push_ok(&s, &token, edits).await;
    push_ok(&s, &token, vec![note("b", "b1")]).await;
    // Device 1 pulls everything; device 2 then pushes an edit built on it.
    let (_, at_c, _) = pull_all(&s, &token, None).await;
    push_ok(&s, &token, vec![note("a", "a6")]).await;
    let (_, after_a6, _) = pull_all(&s, &token, None).await;

    // Device 1 compacts "a" through its cursor.
    let snap = snapshot("a", "a1..a5", &at_c);
    assert_eq!(push_ok(&s, &token, vec![snap.clone()]).await, (1, 0));

    // A new device: b1, the snapshot, then a6 — moved behind the snapshot it builds on.
    let (fresh, _, reset) = pull_all(&s, &token, None).await;
    assert!(!reset);
    assert_eq!(
        texts(&fresh),
        pairs(&[("b", "b1"), ("a", "a1..a5"), ("a", "a6")])
    );
    // A device that stood at the compaction cursor meets the same tail.
    let (from_c, _, _) = pull_all(&s, &token, Some(&at_c)).await;
    assert_eq!(texts(&from_c), pairs(&[("a", "a1..a5"), ("a", "a6")]));
    // One that had a6 already gets it again (harmless to a CRDT), after the snapshot.
    let (from_later, _, reset) = pull_all(&s, &token, Some(&after_a6)).await;
    assert!(!reset, "the head only moved forward");
    assert_eq!(texts(&from_later), pairs(&[("a", "a1..a5"), ("a", "a6")]));

    // A replayed snapshot is a duplicate and changes nothing.
    assert_eq!(push_ok(&s, &token, vec![snap]).await, (0, 1));
    assert_eq!(pull_all(&s, &token, None).await.0, fresh);
    // A garbled cursor is a typed error, and nothing of the push is kept.
    let bad = snapshot("b", "b-snap", "not-a-cursor");
    assert_error(&push(&s, &token, vec![bad]).await, 400, "INVALID_REQUEST");
    assert_eq!(pull_all(&s, &token, None).await.0, fresh);
    s.stop().await;
}

async fn compaction_frees_quota_for_a_user_at_its_limit(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.records.guest_max_bytes = 100).await;
    let (_, token) = s.guest().await;
    // 5 × 18 bytes = 90 of 100: one more edit does not fit.
    let edits: Vec<Value> = (0..5)
        .map(|i| note("a", &format!("edit {i} of the note")))
        .collect();
    push_ok(&s, &token, edits).await;
    let one_more = note("a", "edit 5 of the note");
    assert_error(
        &push(&s, &token, vec![one_more.clone()]).await,
        413,
        "QUOTA_EXCEEDED",
    );
    // A snapshot of 20 bytes replaces the 90: 20 used, and the edit fits again.
    let (_, cursor, _) = pull_all(&s, &token, None).await;
    push_ok(
        &s,
        &token,
        vec![snapshot("a", "the note, compacted", &cursor)],
    )
    .await;
    assert_eq!(push_ok(&s, &token, vec![one_more]).await, (1, 0));
    assert_eq!(pull_all(&s, &token, None).await.0.len(), 2);
    s.stop().await;
}

async fn a_snapshot_of_another_epoch_compacts_nothing(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    push_ok(&s, &token, vec![note("a", "a1"), note("a", "a2")]).await;
    let (_, cursor, _) = pull_all(&s, &token, None).await;
    let seq = cursor.split_once('.').unwrap().1;
    let elsewhere = format!("{}.{seq}", "0".repeat(24));
    push_ok(&s, &token, vec![snapshot("a", "a1+a2", &elsewhere)]).await;
    let (all, _, _) = pull_all(&s, &token, None).await;
    assert_eq!(
        texts(&all),
        pairs(&[("a", "a1"), ("a", "a2"), ("a", "a1+a2")]),
        "kept as a plain change"
    );
    s.stop().await;
}
