//! Verification a person finishes (issue 13), on SQLite and PostgreSQL, with a
//! real SMTP listener: opening the link (a page, or `{valid}`) changes nothing,
//! the page's button verifies once and spends every other link, resends are
//! limited to three in any hour with the exact `Retry-After`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::care::*;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    verification_page_changes_nothing_and_its_button_verifies,
    resends_are_limited_to_three_an_hour,
);

async fn verification_page_changes_nothing_and_its_button_verifies(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let (id, token, link) = account(&s, &mut smtp, "verify@example.com").await;
    let code = token_in(&link);

    // A mail scanner, a browser, a JSON client: nobody opening the link verifies.
    for _ in 0..2 {
        let (status, headers, html) = browser_get(&s, &link).await;
        assert_eq!(status, 200, "{html}");
        assert_page(&headers, &html);
        assert!(
            html.contains("<form method=\"post\" action=\"verify-email\">"),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                "<input type=\"hidden\" name=\"token\" value=\"{code}\">"
            )),
            "{html}"
        );
        assert!(
            html.contains("<button type=\"submit\">Confirm my email</button>"),
            "{html}"
        );
        assert_eq!(
            s.get(&format!("/verify-email?token={code}"), None).await.1,
            json!({"valid": true})
        );
        assert_eq!(s.http.head(&link).send().await.unwrap().status(), 200);
    }
    assert!(!email_verified(&s, &token).await);

    // The button (a form post) verifies, and answers with a page.
    let (status, headers, html) = browser_post(&s, "/verify-email", &[("token", &code)]).await;
    assert_eq!(status, 200, "{html}");
    assert_page(&headers, &html);
    assert!(html.contains("<h1>Email confirmed</h1>"), "{html}");
    assert!(email_verified(&s, &token).await);

    // Used: the page, the form and JSON all say so; nothing is verified again.
    let (status, _, html) = browser_get(&s, &link).await;
    assert_eq!(status, 400);
    assert!(html.contains("This link does not work"), "{html}");
    let (status, _, _) = browser_post(&s, "/verify-email", &[("token", &code)]).await;
    assert_eq!(status, 400);
    assert_error(
        &s.post("/verify-email", None, json!({"token": code})).await,
        400,
        "INVALID_TOKEN",
    );
    let (status, _, html) = browser_post(&s, "/verify-email", &[("nonsense", "1")]).await;
    assert_eq!(status, 400);
    assert!(html.contains("could not be read"), "{html}");
    assert_error(
        &s.post("/send-verification-email", Some(&token), json!({}))
            .await,
        400,
        "EMAIL_ALREADY_VERIFIED",
    );

    let rows = audits_of(&s, &id).await;
    let verified: Vec<&(String, Value)> = rows
        .iter()
        .filter(|(_, d)| d.get("emailVerified").is_some())
        .collect();
    assert_eq!(
        verified,
        [&("user.updated".to_string(), json!({"emailVerified": true}))]
    );
    s.stop().await;
}

async fn resends_are_limited_to_three_an_hour(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let email = "resend@example.com";
    let (id, token, signup_link) = account(&s, &mut smtp, email).await;

    // Only the signed-in account, for its own address.
    let (guest_id, guest) = s.guest().await;
    assert_error(
        &s.post("/send-verification-email", Some(&guest), json!({}))
            .await,
        403,
        "ANONYMOUS_NOT_ALLOWED",
    );
    assert_error(
        &s.post("/send-verification-email", None, json!({})).await,
        401,
        "UNAUTHORIZED",
    );
    let other = json!({"email": "someone-else@example.com"});
    assert_error(
        &s.post("/send-verification-email", Some(&token), other)
            .await,
        400,
        "INVALID_REQUEST",
    );

    // Three in an hour (Better Auth's body shape works too), a minute apart.
    let mut links = Vec::new();
    for body in [
        json!({}),
        json!({"email": "Resend@Example.com", "callbackURL": "/"}),
        json!({}),
    ] {
        let (status, answer) = s.post("/send-verification-email", Some(&token), body).await;
        assert_eq!((status.as_u16(), answer), (200, json!({"success": true})));
        let mail = smtp.next().await;
        assert_eq!(mail.to, [email]);
        links.push(find_link_to(&mail.data, "/verify-email"));
        s.clock.advance(Duration::minutes(1));
    }
    // The fourth: 429 until the first leaves the hour (57 minutes from now).
    let res = s
        .call(
            Method::POST,
            "/send-verification-email",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(res.headers()["retry-after"], (57 * 60).to_string());
    assert_error(&into_json(res).await, 429, "RATE_LIMITED");
    s.clock
        .advance(Duration::minutes(57) - Duration::seconds(1));
    let res = s
        .call(
            Method::POST,
            "/send-verification-email",
            Some(&token),
            Some(json!({})),
        )
        .await;
    assert_eq!(res.headers()["retry-after"], "1");
    s.clock.advance(Duration::seconds(1));
    let (status, _) = s
        .post("/send-verification-email", Some(&token), json!({}))
        .await;
    assert_eq!(status, 200);
    links.push(find_link_to(&smtp.next().await.data, "/verify-email"));

    // Every link still works until one is used; then none does.
    for link in links.iter().chain([&signup_link]) {
        assert_eq!(
            s.get(&format!("/verify-email?token={}", token_in(link)), None)
                .await
                .1,
            json!({"valid": true})
        );
    }
    let (status, body) = s
        .post("/verify-email", None, json!({"token": token_in(&links[1])}))
        .await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    for link in links.iter().chain([&signup_link]) {
        assert_error(
            &s.post("/verify-email", None, json!({"token": token_in(link)}))
                .await,
            400,
            "INVALID_TOKEN",
        );
    }
    assert!(email_verified(&s, &token).await);
    let rows = audits_of(&s, &id).await;
    assert_eq!(
        rows.iter()
            .filter(|(_, d)| d == &json!({"emailVerified": true}))
            .count(),
        1
    );
    assert!(audits_of(&s, &guest_id)
        .await
        .iter()
        .all(|(e, _)| e != "user.updated"));
    s.stop().await;
}
