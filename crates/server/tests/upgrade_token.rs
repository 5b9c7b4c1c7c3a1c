//! The token across the upgrade (issue 14, item 3), on SQLite and PostgreSQL: an
//! upgrade (email, social, Better Auth's sign-up in place) keeps the session id,
//! replaces its token in the same transaction and ends the guest's other sessions;
//! a device may name the next token itself (`nextTokenHash`); and a session dies
//! `sessionMaxAgeDays` after it was made however often it is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

both_backends!(
    an_email_upgrade_kills_the_guest_token_and_its_other_sessions,
    a_supplied_next_token_is_the_one_that_works,
    a_malformed_next_token_hash_is_refused_and_changes_nothing,
    a_social_upgrade_rotates_too,
    better_auth_sign_up_in_place_answers_the_new_token,
    a_session_dies_at_its_absolute_lifetime_though_used_daily,
);

const CLIENT_ID: &str = "guestpass-app";
const DEVICE_KEY: &str = "device-key-0123456789-0123456789-0123456789";

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A token as a device makes it: 256 random bits, URL-safe base64 (43 characters).
fn device_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// The token opens nothing: get-session answers null, a bearer route 401.
async fn assert_dead(s: &TestServer, token: &str, why: &str) {
    assert_eq!(
        s.get("/get-session", Some(token)).await,
        (StatusCode::OK, Value::Null),
        "{why}"
    );
    assert_error(
        &s.post(
            "/anonymous/upgrade",
            Some(token),
            json!({"email": "again@example.com", "password": "password123"}),
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
}

/// A guest registered with a device key, and a second session of the same guest
/// (the same key again: a second device restored from a backup of the first).
async fn guest_on_two_devices(s: &TestServer) -> (String, String, String) {
    let id = guestpass_proto::new_user_id();
    let register = json!({ "id": id, "deviceKey": DEVICE_KEY });
    let (status, first) = s.post("/sign-in/anonymous", None, register.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = s.post("/sign-in/anonymous", None, register).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["user"]["id"], id);
    assert_ne!(first["session"]["id"], second["session"]["id"]);
    let token = |b: &Value| b["token"].as_str().unwrap().to_string();
    (id, token(&first), token(&second))
}

async fn an_email_upgrade_kills_the_guest_token_and_its_other_sessions(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, token, second_device) = guest_on_two_devices(&s).await;
    let (_, before) = s.get("/get-session", Some(&token)).await;
    let (_, other_before) = s.get("/get-session", Some(&second_device)).await;
    assert_eq!(other_before["user"]["id"], id, "both devices work before");

    let (status, up, rotated) = s
        .post_with_token(
            "/anonymous/upgrade",
            Some(&token),
            json!({"email": "two@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    let rotated = rotated.expect("a minted token in set-auth-token");
    assert_ne!(rotated, token);
    assert_eq!(rotated.len(), 43, "256 bits, URL-safe base64");
    assert_eq!(up["session"]["id"], before["session"]["id"]);

    assert_dead(&s, &token, "the guest's token died with the upgrade").await;
    assert_dead(&s, &second_device, "the second device's session is revoked").await;
    let (_, me) = s.get("/get-session", Some(&rotated)).await;
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["isAnonymous"], false);
    assert_eq!(
        me["session"]["id"], before["session"]["id"],
        "same session id"
    );
    assert_eq!(me["session"]["createdAt"], before["session"]["createdAt"]);
    // The second device must sign in with the new credentials; its device key
    // no longer brings the (upgraded) user back.
    assert_error(
        &s.post(
            "/sign-in/anonymous",
            None,
            json!({ "id": id, "deviceKey": DEVICE_KEY }),
        )
        .await,
        409,
        "USER_ID_TAKEN",
    );
    let (status, signed) = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "two@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["user"]["id"], id);
    s.stop().await;
}

async fn a_supplied_next_token_is_the_one_that_works(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, token) = s.guest().await;
    let next = device_token();
    let (status, up, header) = s.post_with_token("/anonymous/upgrade",
        Some(&token),
        json!({"email": "mine@example.com", "password": "password123", "nextTokenHash": sha256_hex(&next)}),
    )
    .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(header, None, "the device already knows its token");
    assert!(up.get("token").is_none());
    assert_dead(&s, &token, "the guest's token died").await;
    let (_, me) = s.get("/get-session", Some(&next)).await;
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["email"], "mine@example.com");
    assert_eq!(me["session"]["id"], up["session"]["id"]);
    // A retry of the same upgrade (its answer lost) holding the old token gets
    // 401, so a device must try the token it made first.
    let (status, _, _) = s.post_with_token("/anonymous/upgrade",
        Some(&token),
        json!({"email": "mine@example.com", "password": "password123", "nextTokenHash": sha256_hex(&next)}),
    )
    .await;
    assert_eq!(status, 401);
    // Only the digest is stored, never the token.
    let hashes = stored_session_hashes(&s, &id).await;
    assert_eq!(hashes, vec![sha256_hex(&next)]);
    s.stop().await;
}

/// The token digests of `id`'s sessions, straight from the database.
async fn stored_session_hashes(s: &TestServer, id: &str) -> Vec<String> {
    use sqlx::Connection;
    let sql = "SELECT token_hash FROM sessions WHERE user_id = $1";
    if s.db.url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_all(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(&s.db.url).await.unwrap();
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_all(&mut c)
            .await
            .unwrap()
    }
}

async fn a_malformed_next_token_hash_is_refused_and_changes_nothing(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let good = sha256_hex(&device_token());
    let bad = [
        json!(""),
        json!(good[..63]),
        json!(format!("{good}0")),
        json!(good.to_uppercase()),
        json!(format!("{}z", &good[..63])),
        json!(device_token()),
        json!(sha256_hex(&token)),
        json!(42),
        json!({"hash": good}),
    ];
    for hash in bad {
        let body =
            json!({"email": "bad@example.com", "password": "password123", "nextTokenHash": hash});
        let got = s.post("/anonymous/upgrade", Some(&token), body).await;
        assert_error(&got, 400, "INVALID_REQUEST");
        assert!(!got.1.to_string().contains(&token), "{}", got.1);
    }
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert_eq!(me["user"]["isAnonymous"], true, "still a guest, same token");

    // Another session's digest: refused, never a 500, nothing changed.
    let (_, other) = s.guest().await;
    let body = json!({"email": "bad@example.com", "password": "password123", "nextTokenHash": sha256_hex(&other)});
    assert_error(
        &s.post("/anonymous/upgrade", Some(&token), body).await,
        400,
        "INVALID_REQUEST",
    );
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert_eq!(me["user"]["isAnonymous"], true);
    let (_, them) = s.get("/get-session", Some(&other)).await;
    assert_eq!(them["user"]["isAnonymous"], true);
    assert_error(
        &s.post(
            "/anonymous/upgrade-social",
            Some(&token),
            json!({"provider": "google", "idToken": "x.y.z", "nextTokenHash": "nope"}),
        )
        .await,
        400,
        "INVALID_REQUEST",
    );
    s.stop().await;
}

async fn a_social_upgrade_rotates_too(backend: Backend) {
    let idp = MockIdp::start().await;
    let issuer = idp.issuer.clone();
    let s = TestServer::start_with(&backend, |c| {
        c.social_providers.insert(
            "google".into(),
            guestpass_server::config::SocialProvider {
                client_id: CLIENT_ID.into(),
                issuer,
            },
        );
    })
    .await;
    let claims = |sub: &str, nonce: &str| {
        json!({
            "iss": idp.issuer, "aud": CLIENT_ID, "sub": sub,
            "exp": (t0() + Duration::hours(1)).timestamp(), "iat": t0().timestamp(),
            "nonce": nonce, "email": format!("{sub}@example.com"), "email_verified": true
        })
    };

    // With the device's own next token.
    let (id, token, second_device) = guest_on_two_devices(&s).await;
    let (_, before) = s.get("/get-session", Some(&token)).await;
    let next = device_token();
    let n1 = s.nonce().await;
    let body = json!({
        "provider": "google", "idToken": idp.sign(&claims("sub-a", &n1)), "nonce": n1,
        "nextTokenHash": sha256_hex(&next),
    });
    let (status, up, header) = s
        .post_with_token("/anonymous/upgrade-social", Some(&token), body)
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(header, None);
    assert_dead(&s, &token, "the guest's token died").await;
    assert_dead(&s, &second_device, "the other device's session is revoked").await;
    let (_, me) = s.get("/get-session", Some(&next)).await;
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["isAnonymous"], false);
    assert_eq!(me["session"]["id"], before["session"]["id"]);

    // Without one (a web app): minted here, in set-auth-token.
    let (id, token) = s.guest().await;
    let n2 = s.nonce().await;
    let body = json!({
        "provider": "google", "idToken": idp.sign(&claims("sub-b", &n2)), "nonce": n2,
    });
    let (status, up, header) = s
        .post_with_token("/anonymous/upgrade-social", Some(&token), body)
        .await;
    assert_eq!(status, 200, "{up}");
    let rotated = header.expect("set-auth-token");
    assert_dead(&s, &token, "the guest's token died").await;
    let (_, me) = s.get("/get-session", Some(&rotated)).await;
    assert_eq!(me["user"]["id"], id);
    s.stop().await;
}

async fn better_auth_sign_up_in_place_answers_the_new_token(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, token, second_device) = guest_on_two_devices(&s).await;
    let (status, up, header) = s
        .post_with_token(
            "/sign-up/email",
            Some(&token),
            json!({"email": "web@example.com", "password": "password123", "name": "Web"}),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["user"]["id"], id);
    let rotated = up["token"].as_str().unwrap().to_string();
    assert_eq!(header.as_deref(), Some(rotated.as_str()));
    assert_ne!(rotated, token);
    assert_dead(&s, &token, "the guest's token died").await;
    assert_dead(&s, &second_device, "the other session is revoked").await;
    let (_, me) = s.get("/get-session", Some(&rotated)).await;
    assert_eq!(me["user"]["email"], "web@example.com");
    s.stop().await;
}

async fn a_session_dies_at_its_absolute_lifetime_though_used_daily(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let limit = t0() + Duration::days(90);
    // Used every day: the 7-day expiry slides, but never past created + 90 days.
    for day in 1..90 {
        s.clock.set(t0() + Duration::days(day));
        let (status, me) = s.get("/get-session", Some(&token)).await;
        assert_eq!(status, 200);
        let expires = time(&me["session"]["expiresAt"]);
        assert!(expires <= limit, "day {day}: {expires} is past {limit}");
        assert_eq!(
            expires,
            (t0() + Duration::days(day + 7)).min(limit),
            "day {day}"
        );
    }
    s.clock.set(limit - Duration::seconds(1));
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert!(me.is_object(), "alive until the last second");
    s.clock.set(limit);
    assert_dead(&s, &token, "90 days after it was made, the session is dead").await;

    // The same for a session whose limit is configured lower, although its
    // sliding expiry (stored before) says later.
    let s2 = TestServer::start_with(&backend, |c| c.session_max_age_days = 3).await;
    let (_, token) = s2.guest().await;
    s2.clock.set(t0() + Duration::days(2));
    let (_, me) = s2.get("/get-session", Some(&token)).await;
    assert_eq!(
        time(&me["session"]["expiresAt"]),
        t0() + Duration::days(3),
        "the answer shows the real end"
    );
    s2.clock.set(t0() + Duration::days(3));
    assert_dead(&s2, &token, "past sessionMaxAgeDays").await;
    s2.stop().await;
    s.stop().await;
}
