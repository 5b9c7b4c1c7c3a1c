//! Two server instances on one PostgreSQL database: they share the anonymous
//! rate limit, and running the cleanup on both at once deletes (and audits)
//! every stale guest exactly once. Needs GUESTPASS_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use common::*;
use guestpass_server::{Clock, ManualClock};
use serde_json::json;

async fn pair(tweak: fn(&mut guestpass_server::Config)) -> Option<(TestServer, TestServer)> {
    let backend = Backend::postgres()?;
    let db = Arc::new(TestDb::new(&backend).await);
    let clock = ManualClock::new(t0());
    // No secret configured: both instances must agree on the one stored in the database.
    let a = TestServer::start_on(db.clone(), clock.clone(), |c| {
        c.secret = None;
        tweak(c)
    })
    .await;
    let b = TestServer::start_on(db, clock, |c| {
        c.secret = None;
        tweak(c)
    })
    .await;
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_rate_limit() {
    let Some((a, b)) = pair(|_| {}).await else {
        return report_skip("two_instances_share_the_rate_limit");
    };
    // Alternate instances: the 31st request overall is refused, whichever serves it.
    for i in 1..=30 {
        let s = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            s.post("/sign-in/anonymous", None, json!({})).await.0,
            200,
            "request {i}"
        );
    }
    assert_error(
        &a.post("/sign-in/anonymous", None, json!({})).await,
        429,
        "RATE_LIMITED",
    );
    assert_error(
        &b.post("/sign-in/anonymous", None, json!({})).await,
        429,
        "RATE_LIMITED",
    );

    // Concurrent bursts on both in a fresh window: exactly 30 get through.
    a.clock.advance(Duration::seconds(60));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (http, url) = if i % 2 == 0 {
            (a.http.clone(), a.url("/sign-in/anonymous"))
        } else {
            (b.http.clone(), b.url("/sign-in/anonymous"))
        };
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (30, 20));
    let db = a.db.clone();
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cleanup_deletes_each_guest_once() {
    let Some((a, b)) = pair(|c| {
        c.rate_limit.anonymous_per_minute = 0;
        c.auth_methods.anonymous =
            serde_json::from_value(json!({"enabled": true, "maxAge": 3600})).unwrap();
    })
    .await
    else {
        return report_skip("concurrent_cleanup_deletes_each_guest_once");
    };
    let (kept, kept_token) = a.guest().await;
    let (full, _) = b.full_user("kept@example.com").await;
    let db = a.handle.database();
    let now = a.clock.now_ms();
    let mut stale = HashSet::new();
    for _ in 0..2_500 {
        let id = guestpass_proto::new_user_id();
        let user = guestpass_server::db::UserRow::new_guest(id.clone(), now);
        let (session, _) = guestpass_server::auth::mint_session(&id, now);
        db.create_guest(&user, &session, &[]).await.unwrap();
        stale.insert(id);
    }
    a.clock.advance(Duration::minutes(90));
    assert_eq!(
        b.get("/get-session", Some(&kept_token)).await.1["user"]["id"],
        kept
    );
    a.clock.advance(Duration::minutes(40));

    let (ra, rb) = tokio::join!(a.handle.run_cleanup(), b.handle.run_cleanup());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.guests_deleted + rb.guests_deleted,
        2_500,
        "{ra:?} {rb:?}"
    );

    let mut conn = sqlx::PgConnection::connect_with(
        &a.db
            .url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .unwrap(),
    )
    .await
    .unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, actor FROM audit_log WHERE event = 'user.deleted'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2_500, "one audit row per deleted guest");
    assert!(rows.iter().all(|(_, actor)| actor == "system"));
    let audited: HashSet<String> = rows.into_iter().map(|(u, _)| u).collect();
    assert_eq!(audited, stale);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM users ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut want = vec![kept, full];
    want.sort();
    assert_eq!(left, want);
    drop(conn);
    let db = a.db.clone();
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
    db.drop_db().await;
}

use sqlx::Connection;
