//! Account care (issue 13), on SQLite and PostgreSQL: change password (this
//! session kept, the others ended), delete my account (a guest as it is, a
//! password account with its password, a social-only account with a fresh
//! sign-in; its records go too), the full-account gate and the export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::care::*;
use common::sync::{note, push_ok};
use common::*;
use guestpass_server::Clock;
use serde_json::{json, Value};

both_backends!(
    change_password_keeps_this_session_and_ends_the_others,
    delete_user_needs_the_right_password_and_takes_the_records,
    a_social_only_account_deletes_itself_only_after_a_fresh_sign_in,
    a_guest_deletes_itself_and_its_records,
    export_is_for_full_accounts_only,
);

/// The changes the server still holds for `user_id` (straight from the store).
async fn records_of(s: &TestServer, user_id: &str) -> usize {
    let page = s
        .handle
        .database()
        .records()
        .pull(user_id, 0, 1000)
        .await
        .unwrap();
    page.changes.len()
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn change(current: &str, new: &str) -> Value {
    json!({"currentPassword": current, "newPassword": new})
}

async fn change_password_keeps_this_session_and_ends_the_others(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let email = "changer@example.com";
    let (id, this, _) = account(&s, &mut smtp, email).await;
    let others = [
        sign_in(&s, email, "password123").await,
        sign_in(&s, email, "password123").await,
    ];

    // Refusals leave everything as it was.
    let wrong = s
        .post(
            "/change-password",
            Some(&this),
            change("password124", "next-password"),
        )
        .await;
    assert_error(&wrong, 401, "INVALID_PASSWORD");
    let short = s
        .post(
            "/change-password",
            Some(&this),
            change("password123", "short"),
        )
        .await;
    assert_error(&short, 422, "PASSWORD_TOO_SHORT");
    let (_, guest) = s.guest().await;
    let gated = s
        .post(
            "/change-password",
            Some(&guest),
            change("password123", "next-password"),
        )
        .await;
    assert_error(&gated, 403, "ANONYMOUS_NOT_ALLOWED");
    assert_error(
        &s.post("/change-password", None, change("a", "b")).await,
        401,
        "UNAUTHORIZED",
    );
    let (social, social_token) = social_account(&s, &idp, "no-password", "n-1").await;
    let none = s
        .post(
            "/change-password",
            Some(&social_token),
            change("anything1", "next-password"),
        )
        .await;
    assert_error(&none, 400, "INVALID_REQUEST");
    assert!(alive(&s, &this).await && alive(&s, &others[0]).await && alive(&s, &others[1]).await);

    let (status, body) = s
        .post(
            "/change-password",
            Some(&this),
            change("password123", "next-password"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token"], Value::Null, "the caller's token goes on");
    assert_eq!(body["user"]["id"], id);
    assert_eq!(body["revokedSessions"], 2);
    let (_, me) = s.get("/get-session", Some(&this)).await;
    assert_eq!(body["session"]["id"], me["session"]["id"]);
    assert!(alive(&s, &this).await);
    for other in &others {
        assert!(!alive(&s, other).await);
    }
    let old = json!({"email": email, "password": "password123"});
    assert_error(
        &s.post("/sign-in/email", None, old).await,
        401,
        "INVALID_EMAIL_OR_PASSWORD",
    );
    let kept = sign_in(&s, email, "next-password").await;

    // revokeOtherSessions: false keeps them.
    let mut body = change("next-password", "third-password");
    body["revokeOtherSessions"] = json!(false);
    let (status, answer) = s.post("/change-password", Some(&this), body).await;
    assert_eq!(
        (status.as_u16(), &answer["revokedSessions"]),
        (200, &json!(0))
    );
    assert!(alive(&s, &kept).await);

    let rows = without_session_ids(audits_of(&s, &id).await);
    let mut expected = upgraded_rows();
    let failed = json!({"reason": "wrongPassword", "emailHash": rows[5].1["emailHash"]});
    expected.extend([
        ("session.created".into(), json!({"method": "email"})),
        ("session.created".into(), json!({"method": "email"})),
        // The wrong current password, counted and audited like a sign-in's
        // (issue 14's throttle), without the password.
        ("user.sign_in_failed".into(), failed.clone()),
        ("user.updated".into(), json!({"change": "password"})),
        // The old password's try (issue 14), audited without the password.
        ("user.sign_in_failed".into(), failed),
        ("session.created".into(), json!({"method": "email"})),
        ("user.updated".into(), json!({"change": "password"})),
    ]);
    assert!(rows[5].1["emailHash"].is_string(), "{rows:?}");
    assert_eq!(rows, expected);
    assert!(audits_of(&s, &social)
        .await
        .iter()
        .all(|(e, _)| e != "user.updated"));
    s.stop().await;
}

async fn delete_user_needs_the_right_password_and_takes_the_records(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let email = "leaver@example.com";
    let (id, token, _) = account(&s, &mut smtp, email).await;
    let other = sign_in(&s, email, "password123").await;
    push_ok(
        &s,
        &token,
        vec![note("n1", "my note"), note("n2", "another")],
    )
    .await;
    // Someone else's records stay.
    let (bystander, bystander_token) = s.guest().await;
    push_ok(&s, &bystander_token, vec![note("n1", "not yours")]).await;

    for body in [
        json!({"password": "password124"}),
        json!({}),
        json!({"password": ""}),
    ] {
        let refused = s.post("/delete-user", Some(&token), body).await;
        assert_error(&refused, 401, "INVALID_PASSWORD");
    }
    let refused = s.post("/delete-user", Some(&token), json!({})).await;
    assert_eq!(
        refused.1["message"],
        "Enter your password to delete your account"
    );
    assert!(alive(&s, &token).await && alive(&s, &other).await);
    assert_eq!(records_of(&s, &id).await, 2, "nothing deleted");
    assert!(audits_of(&s, &id)
        .await
        .iter()
        .all(|(e, _)| e != "user.deleted"));

    let (status, body) = s
        .post(
            "/delete-user",
            Some(&token),
            json!({"password": "password123"}),
        )
        .await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    assert!(!alive(&s, &token).await && !alive(&s, &other).await);
    assert_eq!(records_of(&s, &id).await, 0, "its records went with it");
    assert_eq!(records_of(&s, &bystander).await, 1);
    let gone = json!({"email": email, "password": "password123"});
    assert_error(
        &s.post("/sign-in/email", None, gone).await,
        401,
        "INVALID_EMAIL_OR_PASSWORD",
    );
    let (_, listed) = s.admin_get("/admin/list-users").await;
    assert!(listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"] != id));
    // The address is free again.
    s.full_user(email).await;

    let rows = audits_of(&s, &id).await;
    assert_eq!(
        rows.last().unwrap(),
        &("user.deleted".to_string(), json!({"reason": "self"}))
    );
    let deleted = s
        .audit_events()
        .await
        .into_iter()
        .find(|e| e["userId"] == id && e["event"] == "user.deleted")
        .unwrap();
    assert_eq!(deleted["actor"], id);
    s.stop().await;
}

async fn a_social_only_account_deletes_itself_only_after_a_fresh_sign_in(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, _smtp) = start(&backend, &idp).await;
    let (id, stale) = social_account(&s, &idp, "social-leaver", "n-1").await;
    push_ok(&s, &stale, vec![note("n1", "social note")]).await;

    // Ten minutes after signing in, the session is no longer proof enough; a
    // password proves nothing; a day's use that slides the session does not
    // make it fresh either.
    s.clock.advance(Duration::minutes(9));
    assert!(alive(&s, &stale).await);
    s.clock.advance(Duration::minutes(1));
    for body in [json!({}), json!({"password": "password123"})] {
        let refused = s.post("/delete-user", Some(&stale), body).await;
        assert_error(&refused, 403, "SESSION_NOT_FRESH");
    }
    s.clock.advance(Duration::days(1));
    let (_, slid) = s.get("/get-session", Some(&stale)).await;
    assert_eq!(time(&slid["session"]["updatedAt"]), s.clock.now());
    let refused = s.post("/delete-user", Some(&stale), json!({})).await;
    assert_error(&refused, 403, "SESSION_NOT_FRESH");
    assert!(alive(&s, &stale).await);
    assert_eq!(records_of(&s, &id).await, 1);

    // A new sign-in with the provider: that session may.
    let (again, fresh) = social_account(&s, &idp, "social-leaver", "n-2").await;
    assert_eq!(again, id);
    s.clock.advance(Duration::minutes(9));
    let (status, body) = s.post("/delete-user", Some(&fresh), json!({})).await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    assert!(!alive(&s, &fresh).await && !alive(&s, &stale).await);
    assert_eq!(records_of(&s, &id).await, 0);
    // The identity link went too: the same provider identity makes a new account.
    let (new_id, _) = social_account(&s, &idp, "social-leaver", "n-3").await;
    assert_ne!(new_id, id);

    let rows = without_session_ids(audits_of(&s, &id).await);
    assert_eq!(
        rows,
        [
            (
                "user.created".to_string(),
                json!({"isAnonymous": false, "method": "social", "provider": "google"})
            ),
            ("session.created".to_string(), json!({"method": "social"})),
            ("session.created".to_string(), json!({"method": "social"})),
            ("user.deleted".to_string(), json!({"reason": "self"})),
        ]
    );
    s.stop().await;
}

async fn a_guest_deletes_itself_and_its_records(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, _smtp) = start(&backend, &idp).await;
    let (id, token) = s.guest().await;
    push_ok(
        &s,
        &token,
        vec![note("n1", "guest note"), note("n2", "guest note 2")],
    )
    .await;
    assert_eq!(records_of(&s, &id).await, 2);

    // No body at all (and no password: a guest has none).
    let res = s
        .http
        .post(s.url("/delete-user"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        into_json(res).await,
        (reqwest::StatusCode::OK, json!({"success": true}))
    );
    assert!(!alive(&s, &token).await);
    assert_eq!(records_of(&s, &id).await, 0);
    assert_error(
        &s.post("/delete-user", Some(&token), json!({})).await,
        401,
        "UNAUTHORIZED",
    );

    // An empty JSON body does too.
    let (other, other_token) = s.guest().await;
    assert_eq!(
        s.post("/delete-user", Some(&other_token), json!({}))
            .await
            .0,
        200
    );

    for user in [&id, &other] {
        let rows = without_session_ids(audits_of(&s, user).await);
        assert_eq!(
            rows,
            [
                ("user.created".to_string(), json!({"isAnonymous": true})),
                (
                    "session.created".to_string(),
                    json!({"method": "anonymous"})
                ),
                ("user.deleted".to_string(), json!({"reason": "self"})),
            ]
        );
    }
    s.stop().await;
}

async fn export_is_for_full_accounts_only(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let (_, guest) = s.guest().await;
    assert_error(
        &s.get("/export", Some(&guest)).await,
        403,
        "ANONYMOUS_NOT_ALLOWED",
    );
    assert_error(&s.get("/export", None).await, 401, "UNAUTHORIZED");

    let (id, token, _) = account(&s, &mut smtp, "exporter@example.com").await;
    push_ok(&s, &token, vec![note("n1", "abc"), note("n2", "defg")]).await;
    push_ok(
        &s,
        &token,
        vec![
            note("n1", "abcd"),
            common::sync::change("prefs", "theme", b"dark", false),
        ],
    )
    .await;
    let (status, body) = s.get("/export", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], id);
    assert_eq!(body["user"]["email"], "exporter@example.com");
    assert_eq!(
        body["credentials"],
        json!({"password": true, "providers": []})
    );
    assert_eq!(body["sessions"], 1);
    assert_eq!(
        body["records"],
        json!({"records": 3, "changes": 4, "bytes": 15, "collections": [
            {"collection": "notes", "records": 2, "changes": 3, "bytes": 11},
            {"collection": "prefs", "records": 1, "changes": 1, "bytes": 4},
        ]})
    );
    assert!(body["exportedAt"]
        .as_str()
        .unwrap()
        .starts_with("2030-01-01T12:00:05"));

    let (_, social) = social_account(&s, &idp, "exporting", "n-1").await;
    let (_, body) = s.get("/export", Some(&social)).await;
    assert_eq!(body["credentials"]["password"], false);
    assert_eq!(body["credentials"]["providers"][0]["provider"], "google");
    assert_eq!(body["records"]["records"], 0);
    s.stop().await;
}
