//! Record sync, continued: the live "pull now" stream (one instance, and two
//! instances on one PostgreSQL), a late commit on PostgreSQL made to happen on
//! purpose, and records going with their user (admin remove-user, a guest
//! deleting itself, the cleanup of stale guests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::sync::*;
use common::*;
use guestpass_server::config::{AnonymousOptions, AnonymousSetting};
use guestpass_server::ManualClock;
use serde_json::json;
use sqlx::Connection;

both_backends!(
    a_push_wakes_the_users_open_streams,
    deleting_a_user_deletes_its_records,
);

fn pull_event() -> Option<(String, String)> {
    Some(("pull".to_string(), "{}".to_string()))
}

async fn a_push_wakes_the_users_open_streams(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let (_, other) = s.guest().await;
    let mut laptop = Events::open(&s, &token).await;
    let mut phone = Events::open(&s, &token).await;
    // The first event comes at once (pull after every connect): from then on
    // the stream is subscribed.
    assert_eq!(laptop.next().await, pull_event());
    assert_eq!(phone.next().await, pull_event());
    assert_eq!(s.handle.live_subscribers(), 2);

    // A push wakes every stream of its user (another user's goes elsewhere).
    push_ok(&s, &other, vec![note("x", "not yours")]).await;
    push_ok(&s, &token, vec![note("a", "1")]).await;
    assert_eq!(laptop.next().await, pull_event());
    assert_eq!(phone.next().await, pull_event());
    // A replay (nothing added, no event) then a real change: one event.
    push_ok(&s, &token, vec![note("a", "1")]).await;
    push_ok(&s, &token, vec![note("a", "2")]).await;
    assert_eq!(laptop.next().await, pull_event());
    let (changes, _, _) = pull_all(&s, &token, None).await;
    assert_eq!(changes.len(), 2);

    // A device going away is forgotten.
    drop(phone);
    push_ok(&s, &token, vec![note("a", "3")]).await;
    assert_eq!(laptop.next().await, pull_event());
    assert_eq!(s.handle.live_subscribers(), 1);

    // Signed out elsewhere: the stream of that session ends at its next event.
    let (_, first) = s.full_user("two@example.com").await;
    let (status, body) = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "two@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = body["token"].as_str().unwrap().to_string();
    let mut revoked = Events::open(&s, &first).await;
    assert_eq!(revoked.next().await, pull_event());
    s.post("/sign-out", Some(&first), json!({})).await;
    push_ok(&s, &second, vec![note("a", "1")]).await;
    assert_eq!(revoked.next().await, None);

    // Shutdown ends open streams instead of waiting for them forever.
    s.stop().await;
    assert_eq!(laptop.next().await, None);
}

async fn two_instances() -> Option<(TestServer, TestServer)> {
    let backend = Backend::postgres()?;
    let db = Arc::new(TestDb::new(&backend).await);
    let clock = ManualClock::new(t0());
    let a = TestServer::start_on(db.clone(), clock.clone(), |_| {}).await;
    let b = TestServer::start_on(db, clock, |_| {}).await;
    Some((a, b))
}

/// A device connected to instance A hears of a push to instance B (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_on_one_instance_wakes_streams_on_another() {
    let Some((a, b)) = two_instances().await else {
        return report_skip("a_push_on_one_instance_wakes_streams_on_another");
    };
    let (_, token) = a.guest().await;
    let mut on_a = Events::open(&a, &token).await;
    let mut on_b = Events::open(&b, &token).await;
    assert_eq!(on_a.next().await, pull_event());
    assert_eq!(on_b.next().await, pull_event());
    for (i, via) in [&b, &a, &b].into_iter().enumerate() {
        push_ok(via, &token, vec![note(&format!("n{i}"), "text")]).await;
        assert_eq!(on_a.next().await, pull_event(), "push {i}");
        assert_eq!(on_b.next().await, pull_event(), "push {i}");
        // What the event announced is there, on either instance.
        let (changes, _, _) = pull_all(&a, &token, None).await;
        assert_eq!(changes.len(), i + 1);
    }
    let db = b.db.clone();
    b.handle.shutdown().await.unwrap();
    a.stop().await;
    db.drop_db().await;
}

/// Pushes and pulls of one user spread over two instances on one PostgreSQL:
/// still every acknowledged change pulled exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_pushing_at_once_are_pulled_exactly_once() {
    let Some((a, b)) = two_instances().await else {
        return report_skip("two_instances_pushing_at_once_are_pulled_exactly_once");
    };
    let (_, token) = a.guest().await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    pushes_are_pulled_exactly_once(&[a.clone(), b.clone()], &token).await;
    let b = Arc::try_unwrap(b).ok().unwrap();
    let db = b.db.clone();
    b.handle.shutdown().await.unwrap();
    Arc::try_unwrap(a).ok().unwrap().stop().await;
    db.drop_db().await;
}

/// Rows of `user_id` in `record_changes` and `record_heads`, read straight from the database.
async fn rows_of(s: &TestServer, user_id: &str) -> (i64, i64) {
    const Q: &str = "SELECT (SELECT COUNT(*) FROM record_changes WHERE user_id = $1), \
                     (SELECT COUNT(*) FROM record_heads WHERE user_id = $1)";
    if s.db.pg_name().is_some() {
        let mut conn = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        sqlx::query_as(Q)
            .bind(user_id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&s.db.url).await.unwrap();
        sqlx::query_as(Q)
            .bind(user_id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

async fn deleting_a_user_deletes_its_records(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.auth_methods.anonymous = AnonymousSetting::Detailed(AnonymousOptions {
            enabled: true,
            max_age: Some(3600),
        });
    })
    .await;
    let some = || {
        vec![
            note("a", "1"),
            note("b", "2"),
            change("notes", "a", b"", true),
        ]
    };

    // A guest left inactive past maxAge: the cleanup takes its records too.
    let (stale, stale_token) = s.guest().await;
    push_ok(&s, &stale_token, some()).await;
    assert_eq!(rows_of(&s, &stale).await, (3, 1));
    s.clock.advance(Duration::hours(2));
    let report = s.handle.run_cleanup().await.unwrap();
    assert_eq!(report.guests_deleted, 1);
    assert_eq!(rows_of(&s, &stale).await, (0, 0));

    // A guest deleting itself.
    let (guest, guest_token) = s.guest().await;
    push_ok(&s, &guest_token, some()).await;
    let (status, body) = s
        .post("/delete-anonymous-user", Some(&guest_token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows_of(&s, &guest).await, (0, 0));

    // An account removed by the admin; another user's records stay.
    let (full, full_token) = s.full_user("gone@example.com").await;
    let (kept, kept_token) = s.guest().await;
    push_ok(&s, &full_token, some()).await;
    push_ok(&s, &kept_token, some()).await;
    let (status, body) = s
        .admin_post("/admin/remove-user", json!({ "userId": full }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows_of(&s, &full).await, (0, 0));
    assert_eq!(rows_of(&s, &kept).await, (3, 1));
    assert_eq!(pull_all(&s, &kept_token, None).await.0.len(), 3);
    s.stop().await;
}

/// The skip a plain sequence allows, staged on PostgreSQL: transaction A has
/// taken position 2 and not committed; push B arrives. B must wait for A (the
/// head row's lock) instead of committing position 3 first, which a puller
/// would read and then never look below again. Meanwhile pulls are not blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped_on_postgres() {
    let Some(backend) = Backend::postgres() else {
        return report_skip("a_late_commit_is_never_skipped_on_postgres");
    };
    let s = Arc::new(TestServer::start(&backend).await);
    let (user, token) = s.guest().await;
    push_ok(&s, &token, vec![note("first", "1")]).await;
    let (_, cursor, _) = pull_all(&s, &token, None).await;

    // A: exactly what a push does, stopped before its commit.
    let mut a = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut a).await.unwrap();
    let seq: i64 = sqlx::query_scalar(
        "UPDATE record_heads SET next_seq = next_seq + 1 WHERE user_id = $1 RETURNING next_seq - 1",
    )
    .bind(&user)
    .fetch_one(&mut a)
    .await
    .unwrap();
    assert_eq!(seq, 2);
    sqlx::query(
        "INSERT INTO record_changes (user_id, seq, collection, record_id, change, deleted, \
         schema_version, hash, created_at) VALUES ($1, $2, 'notes', 'late', $3, FALSE, 1, 'late', 0)",
    )
    .bind(&user)
    .bind(seq)
    .bind(b"late".to_vec())
    .execute(&mut a)
    .await
    .unwrap();

    // B: a real push, which must now wait for A's lock.
    let b = {
        let (s, token) = (s.clone(), token.clone());
        tokio::spawn(async move { push_ok(&s, &token, vec![note("second", "2")]).await })
    };
    let mut watch = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(s.db.pg_name().unwrap())
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "push B never waited for A"
        );
        // Polling a condition PostgreSQL reports, not sleeping in place of one.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!b.is_finished(), "B went ahead of the open transaction A");

    // A puller meanwhile: not blocked, sees nothing new, keeps its cursor.
    let (status, body) = pull(&s, &token, Some(&cursor), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changes"], json!([]));
    assert_eq!(body["cursor"].as_str(), Some(cursor.as_str()));

    // A commits late; B then goes through after it; the puller gets both, in order.
    sqlx::query("COMMIT").execute(&mut a).await.unwrap();
    assert_eq!(b.await.unwrap(), (1, 0));
    let (after, _, _) = pull_all(&s, &token, Some(&cursor)).await;
    let ids: Vec<_> = keys(&after).into_iter().map(|k| k.1).collect();
    assert_eq!(ids, ["late", "second"]);
    Arc::try_unwrap(s).ok().unwrap().stop().await;
}

/// The database restarts (every connection cut, refused for a while): the
/// instance's LISTEN comes back by itself, wakes its streams once (they may
/// have missed pushes), and events flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_survive_a_database_outage() {
    let Some(backend) = Backend::postgres() else {
        return report_skip("live_events_survive_a_database_outage");
    };
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let mut events = Events::open(&s, &token).await;
    assert_eq!(events.next().await, pull_event());

    let outage = Outage::start(&s).await;
    outage.end().await;
    // The wake-up after the listener is back (the only thing that sends one now).
    assert_eq!(events.next().await, pull_event());
    // A pooled connection cut by the outage may fail its first use (503).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = push(&s, &token, vec![note("after", "outage")]).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
    }
    assert_eq!(events.next().await, pull_event());
    s.stop().await;
}
