//! On PostgreSQL, session lookups made while one is running share the next query
//! (`coalesce.rs`), and each still gets its own answer: its own user, or `null`
//! for a signed-out token, even when the same token is asked twice in one batch.
//! Needs GUESTPASS_TEST_POSTGRES_URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

/// Polls `what` until it holds (a deadline, not a sleep, bounds the wait).
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

fn get_session(s: &TestServer, token: &str) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (http, url, token) = (s.http.clone(), s.url("/get-session"), token.to_owned());
    tokio::spawn(async move {
        let res = http.get(url).bearer_auth(token).send().await.unwrap();
        into_json(res).await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_made_at_once_share_a_query_and_each_gets_its_own_session() {
    let Some(backend) = Backend::postgres() else {
        return report_skip("lookups_made_at_once_share_a_query_and_each_gets_its_own_session");
    };
    let s = TestServer::start_with(&backend, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.rate_limit.anonymous_per_minute = 1000;
    })
    .await;
    let mut guests = Vec::new();
    for _ in 0..12 {
        guests.push(s.guest().await);
    }
    // Every third guest signs out: its token must answer null, in a batch too.
    let signed_out = |i: usize| i % 3 == 2;
    for (i, (_, token)) in guests.iter().enumerate() {
        if signed_out(i) {
            assert_eq!(s.post("/sign-out", Some(token), json!({})).await.0, 200);
        }
    }
    let shared_before = s.metric("guestpass_session_lookups_shared_total").await;

    // Hold every lookup in PostgreSQL: the first ones run (two alone, then a batch
    // of one) and wait on the lock; the rest queue behind the running batch.
    let mut admin = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut admin).await.unwrap();
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut admin)
        .await
        .unwrap();
    let first: Vec<_> = guests[..3]
        .iter()
        .map(|(_, t)| get_session(&s, t))
        .collect();
    let url = s.db.url.clone();
    until("three lookups held by the lock", || {
        let url = url.clone();
        async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%s.token_hash =%'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            n == 3
        }
    })
    .await;
    // The other nine guests, and the first guest's token a second time.
    let mut rest: Vec<(usize, _)> = (3..12)
        .map(|i| (i, get_session(&s, &guests[i].1)))
        .collect();
    rest.push((0, get_session(&s, &guests[0].1)));
    until("ten lookups waiting to share a query", || async {
        s.metric("guestpass_session_lookups_waiting").await == 10.0
    })
    .await;
    sqlx::query("COMMIT").execute(&mut admin).await.unwrap();

    let answers = first
        .into_iter()
        .enumerate()
        .chain(rest)
        .collect::<Vec<_>>();
    for (i, answer) in answers {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 200, "{body}");
        if signed_out(i) {
            assert_eq!(body, Value::Null, "guest {i} signed out");
        } else {
            assert_eq!(body["user"]["id"], guests[i].0.as_str(), "guest {i}");
        }
    }
    let shared = s.metric("guestpass_session_lookups_shared_total").await - shared_before;
    assert_eq!(shared, 10.0, "the ten waiting lookups went in one query");
    assert_eq!(s.metric("guestpass_session_lookups_waiting").await, 0.0);
}
