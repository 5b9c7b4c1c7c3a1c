//! Password guessing on `sign-in/email` (issue 14, item 1), on SQLite and
//! PostgreSQL: a guessing run is throttled per email and per address and every
//! failure is audited; the 429 is the same for a registered and an unknown
//! email; the owner still gets in by a password reset; a flood of sign-ins with
//! a full hash queue is answered 503 BUSY at once (so are an upgrade and a
//! password change) while a bystander is served;
//! a stolen session guessing through change-password and delete-user spends the
//! same budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::care::*;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

both_backends!(
    a_guessing_run_hits_429_and_every_failure_is_audited,
    the_429_is_the_same_for_a_registered_and_an_unknown_email,
    the_address_budget_spans_emails,
    the_owner_gets_in_by_a_reset_while_throttled,
    a_flood_gets_busy_at_once_while_a_bystander_is_served,
    change_password_and_delete_user_share_the_sign_in_budget,
);

/// A sign-in: (status, Retry-After, body).
async fn sign_in_as(s: &TestServer, email: &str, password: &str) -> (u16, Option<String>, Value) {
    let res = s
        .call(
            Method::POST,
            "/sign-in/email",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let (status, body) = into_json(res).await;
    (status.as_u16(), retry, body)
}

async fn failures(s: &TestServer) -> Vec<Value> {
    s.audit_events()
        .await
        .into_iter()
        .filter(|e| e["event"] == "user.sign_in_failed")
        .collect()
}

async fn a_guessing_run_hits_429_and_every_failure_is_audited(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.sign_in_failures_per_email = 3;
    })
    .await;
    let email = "victim@example.com";
    let (id, _) = s.full_user(email).await;
    for guess in ["guess-one", "guess-two", "guess-three"] {
        let (status, _, body) = sign_in_as(&s, email, guess).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("INVALID_EMAIL_OR_PASSWORD"))
        );
    }
    // The fourth guess is refused without being checked: t0 is 5 s into its
    // 15-minute window.
    let (status, retry, body) = sign_in_as(&s, " Victim@Example.com ", "guess-four").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("RATE_LIMITED")));
    assert_eq!(retry.as_deref(), Some("895"));
    // So is the right password: otherwise the throttle would tell a right guess.
    assert_eq!(sign_in_as(&s, email, "password123").await.0, 429);

    let failed = failures(&s).await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    for event in &failed {
        assert_eq!(event["userId"], id.as_str());
        assert_eq!(event["actor"], "unauthenticated");
        assert_eq!(event["detail"]["reason"], "wrongPassword");
        assert!(event["ipHash"].as_str().is_some_and(|h| h.len() >= 32));
        assert!(event["detail"]["emailHash"].as_str().is_some());
    }
    let log = serde_json::to_string(&failed).unwrap();
    for clear in ["guess-one", "guess-four", "victim@", "127.0.0.1"] {
        assert!(!log.contains(clear), "{clear} in {log}");
    }

    // The window ends: the owner signs in, and a success is not a failure.
    s.clock.advance(Duration::minutes(15));
    assert_eq!(sign_in_as(&s, email, "password123").await.0, 200);
    assert_eq!(failures(&s).await.len(), 3);
    s.stop().await;
}

async fn the_429_is_the_same_for_a_registered_and_an_unknown_email(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.sign_in_failures_per_email = 2;
    })
    .await;
    s.full_user("real@example.com").await;
    let mut answers = Vec::new();
    for email in ["real@example.com", "ghost@example.com"] {
        let mut run = Vec::new();
        for _ in 0..4 {
            let mut answer = sign_in_as(&s, email, "wrong-password").await;
            // Every request has an id of its own; the rest must not differ.
            let id = answer.2.as_object_mut().unwrap().remove("requestId");
            assert!(id.is_some_and(|id| id.is_string()), "{answer:?}");
            run.push(answer);
        }
        answers.push(run);
    }
    assert_eq!(answers[0], answers[1], "the two runs differ");
    let statuses: Vec<u16> = answers[0].iter().map(|a| a.0).collect();
    assert_eq!(statuses, [401, 401, 429, 429]);
    assert_eq!(answers[0][2].1.as_deref(), Some("895"));

    // The unknown email's failures are audited under its keyed hash, never the address.
    let failed = failures(&s).await;
    assert_eq!(failed.len(), 4, "{failed:?}");
    let ghost: Vec<&Value> = failed
        .iter()
        .filter(|e| e["detail"]["reason"] == "unknownEmail")
        .collect();
    assert_eq!(ghost.len(), 2);
    let subject = ghost[0]["userId"].as_str().unwrap();
    assert!(subject.starts_with("email:"), "{subject}");
    assert_eq!(ghost[1]["userId"], subject);
    assert!(!serde_json::to_string(&failed).unwrap().contains("ghost"));
    s.stop().await;
}

async fn the_address_budget_spans_emails(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.sign_in_failures_per_address = 3;
    })
    .await;
    for i in 0..3 {
        let (status, _, _) = sign_in_as(&s, &format!("spray{i}@example.com"), "wrong").await;
        assert_eq!(status, 401, "{i}");
    }
    let (status, retry, body) = sign_in_as(&s, "spray9@example.com", "wrong").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("RATE_LIMITED")));
    assert!(retry.is_some());
    s.stop().await;
}

async fn the_owner_gets_in_by_a_reset_while_throttled(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start_with(&backend, &idp, |c| {
        c.rate_limit.sign_in_failures_per_email = 2;
    })
    .await;
    let email = "owner@example.com";
    account(&s, &mut smtp, email).await;
    for _ in 0..3 {
        sign_in_as(&s, email, "attacker-guess").await;
    }
    assert_eq!(sign_in_as(&s, email, "password123").await.0, 429);

    // Forgot password: never throttled by the sign-in failures.
    let (status, body) = s
        .post("/request-password-reset", None, json!({ "email": email }))
        .await;
    assert_eq!(status, 200, "{body}");
    let mail = smtp.next().await;
    let token = token_in(&find_link_to(&mail.data, "/reset-password"));
    let (status, body) = s
        .post(
            "/reset-password",
            None,
            json!({"token": token, "newPassword": "a-brand-new-password"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The reset proved the mailbox and cleared the email's count: the owner is in.
    let (status, _, body) = sign_in_as(&s, email, "a-brand-new-password").await;
    assert_eq!(status, 200, "{body}");
    // The attacker gets a fresh count against a password they never saw, no more.
    assert_eq!(sign_in_as(&s, email, "password123").await.0, 401);
    s.stop().await;
}

/// A valid argon2id hash whose check takes about a hundred times a normal one
/// (t = 200), so the one sign-in the queue admits is certainly still hashing
/// while the test looks.
const SLOW_HASH: &str =
    "$argon2id$v=19$m=19456,t=200,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn set_password_hash(s: &TestServer, email: &str, hash: &str) {
    let sql = "UPDATE users SET password_hash = $1 WHERE email = $2";
    if s.db.pg_name().is_some() {
        let mut conn = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        sqlx::query(sql)
            .bind(hash)
            .bind(email)
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&s.db.url).await.unwrap();
        sqlx::query(sql)
            .bind(hash)
            .bind(email)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn a_flood_gets_busy_at_once_while_a_bystander_is_served(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.password_hash_queue = 1).await;
    let email = "flooded@example.com";
    s.full_user(email).await;
    let (_, account) = s.full_user("hasher@example.com").await;
    set_password_hash(&s, email, SLOW_HASH).await;
    let (_, bystander) = s.guest().await;

    let flood: Vec<_> = (0..12)
        .map(|i| {
            let req = s
                .http
                .post(s.url("/sign-in/email"))
                .json(&json!({"email": email, "password": format!("flood-{i}")}));
            tokio::spawn(async move {
                let res = req.send().await.unwrap();
                let retry = res.headers().get("retry-after").cloned();
                let (status, body) = into_json(res).await;
                (status.as_u16(), retry, body)
            })
        })
        .collect();
    let mut pending = flood;
    let mut busy = 0;
    // Eleven answers come back while one sign-in holds the only slot: each a
    // BUSY with Retry-After, none of them waited for the hash.
    while busy < 11 {
        let (done, _, rest) = futures_util::future::select_all(pending).await;
        pending = rest;
        let (status, retry, body) = done.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("BUSY")),
            "{body}"
        );
        assert_eq!(retry.unwrap(), "1");
        busy += 1;
    }
    assert_eq!(pending.len(), 1);
    // The bystander is answered while the admitted sign-in is still hashing.
    let (status, session) = s.get("/get-session", Some(&bystander)).await;
    assert_eq!(status, 200, "{session}");
    assert!(session["user"]["isAnonymous"].as_bool().unwrap());
    // The other routes that hash take a slot too: an upgrade and a password
    // change are BUSY at once while the only slot is held.
    let (status, body) = s
        .post(
            "/anonymous/upgrade",
            Some(&bystander),
            json!({"email": "bystander@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (503, Some("BUSY")),
        "{body}"
    );
    let (status, body) = s
        .post(
            "/change-password",
            Some(&account),
            json!({"currentPassword": "password123", "newPassword": "password456"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (503, Some("BUSY")),
        "{body}"
    );
    assert!(
        !pending[0].is_finished(),
        "the admitted sign-in finished before the bystander's calls"
    );
    let (status, _, body) = pending.pop().unwrap().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("INVALID_EMAIL_OR_PASSWORD"))
    );
    // The slot is free again.
    set_password_hash(&s, email, "not-a-hash").await;
    assert_eq!(sign_in_as(&s, email, "flood-x").await.0, 401);
    s.stop().await;
}

/// A stolen session cannot guess the password through the routes that ask for it
/// again: their wrong answers count against the account's sign-in budget, are
/// audited like a sign-in's, and past the limit even the right password is 429.
async fn change_password_and_delete_user_share_the_sign_in_budget(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.sign_in_failures_per_email = 3;
    })
    .await;
    let email = "stolen@example.com";
    let (id, token) = s.full_user(email).await;
    let change =
        |current: &str| json!({"currentPassword": current, "newPassword": "a-new-password-1"});
    for guess in ["guess-one", "guess-two"] {
        let (status, body) = s
            .post("/change-password", Some(&token), change(guess))
            .await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (401, Some("INVALID_PASSWORD"))
        );
    }
    let (status, body) = s
        .post(
            "/delete-user",
            Some(&token),
            json!({"password": "guess-three"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (401, Some("INVALID_PASSWORD"))
    );
    // Over the budget: the right password is refused unchecked on every route.
    let (status, body) = s
        .post("/change-password", Some(&token), change("password123"))
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (429, Some("RATE_LIMITED"))
    );
    let (status, _) = s
        .post(
            "/delete-user",
            Some(&token),
            json!({"password": "password123"}),
        )
        .await;
    assert_eq!(status.as_u16(), 429);
    assert_eq!(sign_in_as(&s, email, "password123").await.0, 429);
    let failed = failures(&s).await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        failed.iter().all(|e| e["userId"] == id.as_str()),
        "{failed:?}"
    );
    let (_, users) = s.admin_get("/admin/list-users?limit=100").await;
    assert!(
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == id.as_str()),
        "nothing was deleted: {users}"
    );

    // The window ends: the owner changes the password, and that is no failure.
    s.clock.advance(Duration::minutes(15));
    let (status, body) = s
        .post("/change-password", Some(&token), change("password123"))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(failures(&s).await.len(), 3);
    s.stop().await;
}
