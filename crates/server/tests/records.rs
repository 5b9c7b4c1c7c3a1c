//! Record sync (DESIGN.md §3a) over real HTTP, on SQLite and PostgreSQL: round
//! trip and paging, idempotent replays, ordering under concurrent pushes,
//! restores from a backup (reset), isolation between users, and the tombstone
//! horizon. Quotas, limits and bad input are in `records_limits.rs`, live events
//! and deletion in `records_live.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::sync::*;
use common::*;
use guestpass_proto::routes;
use serde_json::{json, Value};

both_backends!(
    round_trip_and_paging,
    a_replayed_push_changes_nothing,
    concurrent_pushes_are_pulled_exactly_once,
    a_new_epoch_resets_every_cursor,
    another_users_records_are_unreachable,
    an_old_cursor_expires_after_the_tombstone_horizon,
);

async fn round_trip_and_paging(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let pushed: Vec<Value> = (0..7)
        .map(|i| note(&format!("note_{i}"), &format!("text {i}")))
        .chain([change("notes", "note_0", b"", true)])
        .chain([change("prefs", "theme", &[0, 159, 255], false)])
        .collect();
    assert_eq!(push_ok(&s, &token, pushed.clone()).await, (9, 0));

    // Pages of 4 in push order, each cursor leading to the next page.
    let (status, first) = pull(&s, &token, None, Some(4)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["changes"].as_array().unwrap().len(), 4);
    assert_eq!(first["more"], true);
    assert_eq!(first["reset"], false);
    let (_, second) = pull(&s, &token, first["cursor"].as_str(), Some(4)).await;
    assert_eq!(second["more"], true);
    let (_, third) = pull(&s, &token, second["cursor"].as_str(), Some(4)).await;
    assert_eq!(third["more"], false);
    let mut all = Vec::new();
    for page in [&first, &second, &third] {
        all.extend(page["changes"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(all, pushed, "every change back, in order, byte for byte");
    assert_eq!(all[7]["deleted"], true);

    // Caught up: nothing more, and the cursor stays put.
    let cursor = third["cursor"].as_str().unwrap();
    let (_, idle) = pull(&s, &token, Some(cursor), None).await;
    assert_eq!(idle["changes"], json!([]));
    assert_eq!(idle["cursor"], cursor);
    assert_eq!(idle["more"], false);

    // A later push shows after that cursor only.
    push_ok(&s, &token, vec![note("note_9", "later")]).await;
    let (later, _, reset) = pull_all(&s, &token, Some(cursor)).await;
    assert_eq!(later, vec![note("note_9", "later")]);
    assert!(!reset);

    // A new device (no cursor) gets everything; an empty push is a no-op.
    assert_eq!(pull_all(&s, &token, None).await.0.len(), 10);
    assert_eq!(push_ok(&s, &token, vec![]).await, (0, 0));
    s.stop().await;
}

async fn a_replayed_push_changes_nothing(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let batch = vec![note("a", "one"), note("b", "two"), note("a", "one")];
    // The repeat inside the push is a duplicate of its first occurrence.
    assert_eq!(push_ok(&s, &token, batch.clone()).await, (2, 1));
    let (before, cursor, _) = pull_all(&s, &token, None).await;
    // The answer was lost, the device pushes again: nothing added.
    assert_eq!(push_ok(&s, &token, batch.clone()).await, (0, 3));
    // A change differing only in its tombstone flag or schema version is new.
    let mut v2 = note("a", "one");
    v2["schemaVersion"] = json!(2);
    assert_eq!(
        push_ok(
            &s,
            &token,
            vec![note("a", "one"), v2, change("notes", "a", b"one", true)]
        )
        .await,
        (2, 1)
    );
    let (after, _, _) = pull_all(&s, &token, None).await;
    assert_eq!(after.len(), before.len() + 2);
    assert_eq!(&after[..2], &before[..]);
    let (newer, _, _) = pull_all(&s, &token, Some(&cursor)).await;
    assert_eq!(newer.len(), 2);
    s.stop().await;
}

/// Many pushes for one user at once while a device pulls in a loop: every
/// acknowledged change reaches the puller exactly once (`common::sync`).
async fn concurrent_pushes_are_pulled_exactly_once(backend: Backend) {
    let s = Arc::new(TestServer::start(&backend).await);
    let (_, token) = s.guest().await;
    pushes_are_pulled_exactly_once(std::slice::from_ref(&s), &token).await;
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

/// `admin new-epoch` (the step after restoring a backup): every cursor handed
/// out before is answered from the start with `reset`, and the device's
/// re-push of what it holds adds only what the server lacks.
async fn a_new_epoch_resets_every_cursor(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    push_ok(&s, &token, vec![note("a", "1"), note("b", "2")]).await;
    let (_, cursor, _) = pull_all(&s, &token, None).await;

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guestpass-server"))
        .args(["--database", &s.db.url, "admin", "new-epoch"])
        .env_remove("GUESTPASS_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("new record epoch"),
        "{stdout} {stderr}"
    );

    let (status, body) = pull(&s, &token, Some(&cursor), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reset"], true);
    assert_eq!(
        body["changes"].as_array().unwrap().len(),
        2,
        "from the start"
    );
    let fresh = body["cursor"].as_str().unwrap();
    assert_ne!(
        fresh.split('.').next(),
        cursor.split('.').next(),
        "new epoch"
    );
    // The new cursor is a normal one.
    let (_, next) = pull(&s, &token, Some(fresh), None).await;
    assert_eq!(
        (next["reset"].clone(), next["changes"].clone()),
        (json!(false), json!([]))
    );
    assert_eq!(
        push_ok(&s, &token, vec![note("a", "1"), note("b", "2")]).await,
        (0, 2)
    );
    s.stop().await;
}

/// A real restore: the SQLite file is backed up (`VACUUM INTO`), more is pushed,
/// the server is stopped and the backup put back. The device's cursor is now
/// beyond the user's head: the pull says reset, and the device pushes back
/// what the server lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_sqlite_backup_gets_back_what_it_lost() {
    use sqlx::Connection;
    let s = TestServer::start(&Backend::Sqlite).await;
    let (_, token) = s.guest().await;
    let early = vec![note("a", "1"), note("b", "2")];
    let late = vec![note("c", "3"), change("notes", "a", b"", true)];
    push_ok(&s, &token, early.clone()).await;
    let path = s.db.url.trim_start_matches("sqlite://").to_string();
    let backup = format!("{path}.backup");
    let mut conn = sqlx::SqliteConnection::connect(&s.db.url).await.unwrap();
    sqlx::query(&format!("VACUUM INTO '{backup}'"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    push_ok(&s, &token, late.clone()).await;
    let (held, cursor, _) = pull_all(&s, &token, None).await;
    assert_eq!(held.len(), 4);

    let (db, clock) = (s.db.clone(), s.clock.clone());
    s.handle.shutdown().await.unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    std::fs::rename(&backup, &path).unwrap();
    let s = TestServer::start_on(db, clock, |_| {}).await;

    let (status, body) = pull(&s, &token, Some(&cursor), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reset"], true, "{body}");
    assert_eq!(
        body["changes"],
        json!(early),
        "what the backup holds, from the start"
    );
    let all: Vec<Value> = early.iter().chain(&late).cloned().collect();
    assert_eq!(push_ok(&s, &token, all).await, (2, 2));
    let (back, _, _) = pull_all(&s, &token, Some(body["cursor"].as_str().unwrap())).await;
    assert_eq!(back, late, "the lost changes are back");
    s.stop().await;
}

async fn another_users_records_are_unreachable(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, alice) = s.guest().await;
    let (_, bob) = s.full_user("bob@example.com").await;
    push_ok(&s, &alice, vec![note("shared-id", "alice's secret")]).await;
    let (_, alice_cursor, _) = pull_all(&s, &alice, None).await;
    // Bob sees nothing, not even with Alice's cursor; his identical change is his own.
    assert_eq!(pull_all(&s, &bob, None).await.0, Vec::<Value>::new());
    let (status, body) = pull(&s, &bob, Some(&alice_cursor), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["changes"].clone(), body["reset"].clone()),
        (json!([]), json!(true))
    );
    assert_eq!(
        push_ok(&s, &bob, vec![note("shared-id", "alice's secret")]).await,
        (1, 0)
    );
    push_ok(&s, &bob, vec![note("shared-id", "bob's")]).await;
    let (mine, _, _) = pull_all(&s, &alice, None).await;
    assert_eq!(mine, vec![note("shared-id", "alice's secret")]);
    // No token, or a signed-out one: 401.
    let anon = s
        .http
        .get(s.url("/sync/pull"))
        .header(routes::SYNC_PROTOCOL_HEADER, "1");
    assert_error(
        &into_json(anon.send().await.unwrap()).await,
        401,
        "UNAUTHORIZED",
    );
    s.post("/sign-out", Some(&alice), json!({})).await;
    assert_error(&pull(&s, &alice, None, None).await, 401, "UNAUTHORIZED");
    assert_error(
        &push(&s, &alice, vec![note("x", "y")]).await,
        401,
        "UNAUTHORIZED",
    );
    s.stop().await;
}

async fn an_old_cursor_expires_after_the_tombstone_horizon(backend: Backend) {
    // A day's horizon: sessions last 7 days, so the guest is still signed in after it.
    let s = TestServer::start_with(&backend, |c| {
        c.records.guest_max_records = 3;
        c.records.tombstone_retention_days = 1;
    })
    .await;
    let (_, token) = s.guest().await;
    // a: created then deleted; b: deleted then created again; c: alive.
    push_ok(
        &s,
        &token,
        vec![note("a", "1"), change("notes", "b", b"", true)],
    )
    .await;
    let (_, early, _) = pull_all(&s, &token, None).await;
    push_ok(
        &s,
        &token,
        vec![
            change("notes", "a", b"", true),
            note("b", "2"),
            note("c", "3"),
        ],
    )
    .await;
    let (_, latest, _) = pull_all(&s, &token, None).await;
    assert_eq!(
        s.handle.prune_records().await.unwrap(),
        0,
        "tombstones are young"
    );

    s.clock.advance(Duration::days(2));
    // A tombstone newer than the horizon stays.
    push_ok(&s, &token, vec![change("notes", "c", b"", true)]).await;
    assert_eq!(s.handle.prune_records().await.unwrap(), 2, "a's whole log");
    assert_eq!(s.handle.prune_records().await.unwrap(), 0);

    assert_error(
        &pull(&s, &token, Some(&early), None).await,
        410,
        "CURSOR_EXPIRED",
    );
    // A cursor past the pruned tombstone, and a device starting over, are fine.
    let (after, _, _) = pull_all(&s, &token, Some(&latest)).await;
    assert_eq!(after, vec![change("notes", "c", b"", true)]);
    let (fresh, _, _) = pull_all(&s, &token, None).await;
    let ids: Vec<_> = keys(&fresh).into_iter().map(|k| k.1).collect();
    assert_eq!(ids, ["b", "b", "c", "c"]);
    // The pruned record no longer counts against the quota (b, c + one new).
    assert_eq!(push_ok(&s, &token, vec![note("d", "4")]).await, (1, 0));
    assert_error(
        &push(&s, &token, vec![note("e", "5")]).await,
        413,
        "QUOTA_EXCEEDED",
    );
    s.stop().await;
}
