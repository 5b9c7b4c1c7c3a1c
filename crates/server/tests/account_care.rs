//! Account care (issue 13), on SQLite and PostgreSQL, with a real SMTP listener:
//! forgot password (round trip, single use, expiry, the same answer for unknown
//! addresses, limits). Verification is in `account_verify.rs`; change password,
//! delete and export in `account_delete.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::care::*;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    password_reset_round_trip_ends_every_session_and_proves_the_mailbox,
    reset_links_work_once_expire_and_unknown_addresses_get_the_same_answer,
    reset_requests_are_limited_per_client_address,
);

async fn request_reset(s: &TestServer, email: &str) -> (u16, Option<String>, Vec<u8>) {
    let res = s
        .call(
            Method::POST,
            "/request-password-reset",
            None,
            Some(json!({ "email": email })),
        )
        .await;
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, ct, res.bytes().await.unwrap().to_vec())
}

/// Asks for a reset of `email` and returns the link of the email that arrives.
async fn reset_link(s: &TestServer, smtp: &mut SmtpSink, email: &str) -> String {
    let (status, _, body) = request_reset(s, email).await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &br#"{"success":true}"#[..])
    );
    let mail = smtp.next().await;
    assert_eq!(mail.to, [email]);
    assert!(
        mail.data.contains("Subject: Reset your Guestpass password"),
        "{}",
        mail.data
    );
    find_link_to(&mail.data, "/reset-password")
}

async fn password_reset_round_trip_ends_every_session_and_proves_the_mailbox(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let email = "forgetful@example.com";
    let (id, first, _) = account(&s, &mut smtp, email).await;
    let second = sign_in(&s, email, "password123").await;
    assert!(!email_verified(&s, &first).await);

    // Any spelling of the address; the link opens the server's page.
    let (status, _, body) = request_reset(&s, "  Forgetful@Example.COM ").await;
    assert_eq!(
        (status, body.as_slice()),
        (200, &br#"{"success":true}"#[..])
    );
    let mail = smtp.next().await;
    assert_eq!(mail.to, [email]);
    let link = find_link_to(&mail.data, "/reset-password");
    assert!(
        link.starts_with(&format!("{}/api/auth/reset-password?token=", s.base)),
        "{link}"
    );
    let token = token_in(&link);
    let (status, headers, html) = browser_get(&s, &link).await;
    assert_eq!(status, 200, "{html}");
    assert_page(&headers, &html);
    for part in [
        "<form method=\"post\" action=\"reset-password\">",
        &format!("<input type=\"hidden\" name=\"token\" value=\"{token}\">"),
        "<label for=\"new-password\">New password</label>",
        "<input id=\"new-password\" name=\"newPassword\" type=\"password\" autocomplete=\"new-password\"",
        "<label for=\"confirm-password\">",
        "<button type=\"submit\">Set new password</button>",
    ] {
        assert!(html.contains(part), "{part} missing from {html}");
    }
    // Opening it (as a browser or as JSON) changes nothing.
    assert_eq!(
        s.get(&format!("/reset-password?token={token}"), None)
            .await
            .1,
        json!({"valid": true})
    );
    assert!(alive(&s, &first).await && alive(&s, &second).await);

    // The page's form refuses two different passwords and a short one, keeping the link.
    let (status, _, html) = browser_post(
        &s,
        "/reset-password",
        &[
            ("token", &token),
            ("newPassword", "brand-new-pass"),
            ("confirmPassword", "brand-new-pas"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        html.contains("role=\"alert\">The two passwords are not the same."),
        "{html}"
    );
    assert!(
        html.contains(&format!("value=\"{token}\"")),
        "the form again: {html}"
    );
    let short = json!({"token": token, "newPassword": "short"});
    assert_error(
        &s.post("/reset-password", None, short).await,
        422,
        "PASSWORD_TOO_SHORT",
    );
    assert!(alive(&s, &first).await);

    // The new password is set from the page; the answer is a page.
    let (status, headers, html) = browser_post(
        &s,
        "/reset-password",
        &[
            ("token", &token),
            ("newPassword", "brand-new-pass"),
            ("confirmPassword", "brand-new-pass"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert_page(&headers, &html);
    assert!(html.contains("<h1>Password changed</h1>"), "{html}");

    // Every session is dead; the old password fails, the new one signs in.
    for token in [&first, &second] {
        assert!(!alive(&s, token).await);
        let (status, body) = s
            .post("/send-verification-email", Some(token), json!({}))
            .await;
        assert_error(&(status, body), 401, "UNAUTHORIZED");
    }
    let old = json!({"email": email, "password": "password123"});
    assert_error(
        &s.post("/sign-in/email", None, old).await,
        401,
        "INVALID_EMAIL_OR_PASSWORD",
    );
    let third = sign_in(&s, email, "brand-new-pass").await;
    // The link proved the mailbox (issue 14): the address is verified now.
    assert!(email_verified(&s, &third).await);

    let rows = without_session_ids(audits_of(&s, &id).await);
    let mut expected = upgraded_rows();
    expected.extend([
        ("session.created".into(), json!({"method": "email"})),
        ("user.updated".into(), json!({"change": "password"})),
        ("user.updated".into(), json!({"emailVerified": true})),
        // The old password's try (issue 14): keyed by the email's hash, no password.
        (
            "user.sign_in_failed".into(),
            json!({"reason": "wrongPassword", "emailHash": rows[6].1["emailHash"]}),
        ),
        ("session.created".into(), json!({"method": "email"})),
    ]);
    assert!(rows[6].1["emailHash"].is_string(), "{rows:?}");
    assert_eq!(rows, expected);
    s.stop().await;
}

async fn reset_links_work_once_expire_and_unknown_addresses_get_the_same_answer(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let email = "known@example.com";
    let (id, _, _) = account(&s, &mut smtp, email).await;

    // Registered or not, and a guest-free address: byte for byte the same answer.
    let unknown = request_reset(&s, "nobody@example.com").await;
    let known = request_reset(&s, email).await;
    assert_eq!(unknown, known);
    assert_eq!(known.1.as_deref(), Some("application/json"));
    // Only the registered address got an email (the next one is to it too).
    let mail = smtp.next().await;
    assert_eq!(mail.to, [email]);
    let first = find_link_to(&mail.data, "/reset-password");
    assert_error(
        &s.post(
            "/request-password-reset",
            None,
            json!({"email": "not-an-email"}),
        )
        .await,
        422,
        "INVALID_EMAIL",
    );
    // Better Auth's client sends redirectTo: accepted, not followed.
    let body = json!({"email": "nobody@example.com", "redirectTo": "https://evil.example/"});
    assert_eq!(s.post("/request-password-reset", None, body).await.0, 200);

    // Expired after an hour: neither the page nor the post take it.
    s.clock.advance(Duration::minutes(61));
    let (status, _, html) = browser_get(&s, &first).await;
    assert_eq!(status, 400);
    assert!(html.contains("<h1>This link does not work</h1>"), "{html}");
    let late = json!({"token": token_in(&first), "newPassword": "late-password"});
    assert_error(
        &s.post("/reset-password", None, late).await,
        400,
        "INVALID_TOKEN",
    );

    // Two new links: the first used works once, and spends the other.
    let a = reset_link(&s, &mut smtp, email).await;
    let b = reset_link(&s, &mut smtp, email).await;
    let use_a = json!({"token": token_in(&a), "newPassword": "first-new-password"});
    let (status, body) = s.post("/reset-password", None, use_a.clone()).await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    assert_error(
        &s.post("/reset-password", None, use_a).await,
        400,
        "INVALID_TOKEN",
    );
    let use_b = json!({"token": token_in(&b), "newPassword": "second-new-password"});
    assert_error(
        &s.post("/reset-password", None, use_b).await,
        400,
        "INVALID_TOKEN",
    );
    let (status, _, html) = browser_post(
        &s,
        "/reset-password",
        &[
            ("token", &token_in(&b)),
            ("newPassword", "second-new-password"),
            ("confirmPassword", "second-new-password"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("This link does not work"), "{html}");
    for token in ["", "made-up", &"x".repeat(300)] {
        let body = json!({"token": token, "newPassword": "whatever-password"});
        assert_error(
            &s.post("/reset-password", None, body).await,
            400,
            "INVALID_TOKEN",
        );
    }
    sign_in(&s, email, "first-new-password").await;

    // At most three emails an hour per account; the fourth request answers the
    // same and sends nothing (an email sent now would be expired below).
    let c = reset_link(&s, &mut smtp, email).await;
    assert_eq!(request_reset(&s, email).await, known);
    s.clock.advance(Duration::minutes(61));
    let d = reset_link(&s, &mut smtp, email).await;
    assert_eq!(
        s.get(&format!("/reset-password?token={}", token_in(&d)), None)
            .await
            .1,
        json!({"valid": true})
    );
    assert_error(
        &s.get(&format!("/reset-password?token={}", token_in(&c)), None)
            .await,
        400,
        "INVALID_TOKEN",
    );

    let changes: Vec<(String, Value)> = audits_of(&s, &id)
        .await
        .into_iter()
        .filter(|(e, _)| e == "user.updated")
        .collect();
    assert_eq!(
        changes,
        [
            (
                "user.updated".to_string(),
                json!({"upgrade": "email", "isAnonymous": false})
            ),
            ("user.updated".to_string(), json!({"change": "password"})),
            ("user.updated".to_string(), json!({"emailVerified": true})),
        ]
    );
    s.stop().await;
}

async fn reset_requests_are_limited_per_client_address(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start_with(&backend, &idp, |c| {
        c.rate_limit.password_reset_per_minute = 2
    })
    .await;
    account(&s, &mut smtp, "limited@example.com").await;
    assert_eq!(request_reset(&s, "limited@example.com").await.0, 200);
    assert_eq!(request_reset(&s, "nobody@example.com").await.0, 200);
    // The third in the minute, registered or not: 429 with the seconds left.
    for email in ["limited@example.com", "nobody@example.com"] {
        let res = s
            .call(
                Method::POST,
                "/request-password-reset",
                None,
                Some(json!({"email": email})),
            )
            .await;
        assert_eq!(res.headers()["retry-after"], "55");
        assert_error(&into_json(res).await, 429, "RATE_LIMITED");
    }
    s.clock.advance(Duration::seconds(55));
    assert_eq!(request_reset(&s, "nobody@example.com").await.0, 200);
    s.stop().await;
}
