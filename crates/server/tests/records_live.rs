//! Record sync, continued: the live "pull now" stream (one instance, and two
//! instances on one PostgreSQL), and records going with their user (admin
//! remove-user, a guest deleting itself, the cleanup of stale guests).
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
