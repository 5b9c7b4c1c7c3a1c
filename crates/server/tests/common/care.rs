//! Account care helpers (issue 13): a server with a real SMTP listener (and a
//! loopback OpenID provider), requests as a browser makes them, audit rows.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use chrono::Duration;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::{find_link_to, t0, Backend, MockIdp, SmtpSink, TestServer};

pub const CLIENT_ID: &str = "guestpass-app";
pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A server that mails through a real SMTP listener and trusts `google` = `idp`.
pub async fn start(backend: &Backend, idp: &MockIdp) -> (TestServer, SmtpSink) {
    start_with(backend, idp, |_| {}).await
}

pub async fn start_with(
    backend: &Backend,
    idp: &MockIdp,
    tweak: impl FnOnce(&mut guestpass_server::Config),
) -> (TestServer, SmtpSink) {
    let smtp = SmtpSink::start().await;
    let smtp_url = smtp.url();
    let issuer = idp.issuer.clone();
    let s = TestServer::start_with(backend, |c| {
        c.smtp_url = Some(guestpass_server::Secret::new(smtp_url));
        c.social_providers.insert(
            "google".into(),
            guestpass_server::config::SocialProvider {
                client_id: CLIENT_ID.into(),
                issuer,
            },
        );
        tweak(c);
    })
    .await;
    (s, smtp)
}

/// A full account `email` / `password123` (a guest upgraded in place), with
/// its verification email already taken off the listener: (id, token, link).
pub async fn account(s: &TestServer, smtp: &mut SmtpSink, email: &str) -> (String, String, String) {
    let (id, token) = s.full_user(email).await;
    let mail = smtp.next().await;
    assert_eq!(mail.to, [email]);
    (id, token, find_link_to(&mail.data, "/verify-email"))
}

/// Another session of an email account: its token.
pub async fn sign_in(s: &TestServer, email: &str, password: &str) -> String {
    let (status, body) = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// A full account made from a verified ID token (no password): (id, token).
pub async fn social_account(
    s: &TestServer,
    idp: &MockIdp,
    sub: &str,
    _nonce: &str,
) -> (String, String) {
    // Only a nonce the server issued is accepted (issue 14).
    let nonce = &s.nonce().await;
    let claims = json!({
        "iss": idp.issuer, "aud": CLIENT_ID, "sub": sub,
        "exp": (t0() + Duration::days(30)).timestamp(), "iat": t0().timestamp(),
        "nonce": nonce, "email": format!("{sub}@example.com"), "email_verified": true,
    });
    let (status, body) = s
        .post(
            "/sign-in/social",
            None,
            json!({"provider": "google", "idToken": idp.sign(&claims), "nonce": nonce}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["user"]["id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

/// Whether the token still opens a session (get-session answers `null` otherwise).
pub async fn alive(s: &TestServer, token: &str) -> bool {
    let (status, body) = s.get("/get-session", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    !body.is_null()
}

pub async fn email_verified(s: &TestServer, token: &str) -> bool {
    let (_, body) = s.get("/get-session", Some(token)).await;
    body["user"]["emailVerified"].as_bool().unwrap()
}

/// A page as a browser opens it: (status, headers, HTML).
pub async fn browser_get(s: &TestServer, link: &str) -> (u16, HeaderMap, String) {
    let res = s
        .http
        .get(link)
        .header("accept", BROWSER_ACCEPT)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.headers().clone(),
        res.text().await.unwrap(),
    )
}

/// A page's form as a browser submits it.
pub async fn browser_post(
    s: &TestServer,
    route: &str,
    form: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let res = s
        .http
        .post(s.url(route))
        .header("accept", BROWSER_ACCEPT)
        .form(form)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.headers().clone(),
        res.text().await.unwrap(),
    )
}

/// What every page must be: HTML under the strict policy, no script, labelled,
/// light and dark, never cached.
#[track_caller]
pub fn assert_page(headers: &HeaderMap, html: &str) {
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_string();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header("content-security-policy"),
        guestpass_server::pages::content_security_policy()
    );
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("prefers-color-scheme:dark"), "{html}");
    assert!(html.contains("<html lang=\"en\">"), "{html}");
}

/// `(event, detail)` of every audit row of `user_id`, oldest first.
pub async fn audits_of(s: &TestServer, user_id: &str) -> Vec<(String, Value)> {
    s.audit_events()
        .await
        .into_iter()
        .filter(|e| e["userId"] == user_id)
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["detail"].clone(),
            )
        })
        .collect()
}

/// The rows an upgraded guest starts with (`TestServer::full_user`).
pub fn upgraded_rows() -> Vec<(String, Value)> {
    vec![
        ("user.created".into(), json!({"isAnonymous": true})),
        ("session.created".into(), json!({"method": "anonymous"})),
        (
            "user.updated".into(),
            json!({"upgrade": "email", "isAnonymous": false}),
        ),
    ]
}

/// `session.created` details carry a session id; compare the method only.
pub fn without_session_ids(rows: Vec<(String, Value)>) -> Vec<(String, Value)> {
    rows.into_iter()
        .map(|(event, mut detail)| {
            if let Some(obj) = detail.as_object_mut() {
                obj.remove("sessionId");
            }
            (event, detail)
        })
        .collect()
}
