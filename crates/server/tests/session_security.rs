//! Session security after OWASP ASVS V3, what `api.rs` does not already cover:
//! token entropy, a revoked or expired token refused on *every* route (api.rs
//! checks get-session only), a guest unable to act on another user, admin routes
//! closed to every user token and near-miss key, and CORS closed by default.
//!
//! Constant-time comparison is a property of the code, not of an answer: the
//! admin key is compared as a SHA-256 digest with `subtle::ConstantTimeEq`
//! (`crypto::matches_digest`); session and verification tokens are never compared
//! at all, only their SHA-256 looked up in an index, so timing can reveal at most
//! a prefix of a hash, not of a token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use base64::Engine;
use chrono::Duration;
use common::{assert_error, into_json, Backend, TestServer, ADMIN_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_backends!(
    a_signed_out_token_opens_no_route,
    a_deleted_guests_token_opens_no_route,
    an_expired_token_opens_no_route,
    a_guest_cannot_act_on_another_user,
    admin_routes_refuse_every_user_token_and_near_miss_key,
);

/// Every route a session token could open, with a body that would be valid.
fn authed_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/anonymous/upgrade",
            Some(json!({"email": "late@example.com", "password": "password123"})),
        ),
        (
            Method::POST,
            "/anonymous/upgrade-social",
            Some(json!({"provider": "google", "idToken": "x.y.z"})),
        ),
        (Method::POST, "/delete-anonymous-user", Some(json!({}))),
        (Method::GET, "/admin/list-users", None),
        (Method::GET, "/admin/audit-log", None),
        (
            Method::POST,
            "/admin/remove-user",
            Some(json!({"userId": "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV"})),
        ),
    ]
}

/// The token is dead: get-session answers null and every other route 401.
async fn assert_token_dead(s: &TestServer, token: &str) {
    assert_eq!(
        s.get("/get-session", Some(token)).await,
        (StatusCode::OK, Value::Null)
    );
    for (method, path, body) in authed_routes() {
        let got = into_json(s.call(method.clone(), path, Some(token), body).await).await;
        // upgrade-social names an unconfigured provider: the session is checked first.
        assert_error(&got, 401, "UNAUTHORIZED");
    }
    // Presenting it does not count as holding a guest session either.
    let (status, body) = s.post("/sign-in/anonymous", Some(token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["token"], token);
}

async fn a_signed_out_token_opens_no_route(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, guest) = s.guest().await;
    let (full_id, full) = s.full_user("out@example.com").await;
    // A second session of the same account survives the first one's sign-out.
    let (_, second) = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "out@example.com", "password": "password123"}),
        )
        .await;
    let second = second["token"].as_str().unwrap().to_string();
    for token in [&guest, &full] {
        assert_eq!(s.post("/sign-out", Some(token), json!({})).await.0, 200);
        assert_token_dead(&s, token).await;
    }
    let (_, me) = s.get("/get-session", Some(&second)).await;
    assert_eq!(me["user"]["id"], full_id);
    s.stop().await;
}

async fn a_deleted_guests_token_opens_no_route(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    assert_eq!(
        s.post("/delete-anonymous-user", Some(&token), json!({}))
            .await
            .0,
        200
    );
    assert_token_dead(&s, &token).await;

    // A guest removed by the admin is as gone.
    let (id, token) = s.guest().await;
    assert_eq!(
        s.admin_post("/admin/remove-user", json!({"userId": id}))
            .await
            .0,
        200
    );
    assert_token_dead(&s, &token).await;
    s.stop().await;
}

async fn an_expired_token_opens_no_route(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, guest) = s.guest().await;
    let (_, full) = s.full_user("old@example.com").await;
    // Unused for a week and a second: past the 7-day expiry, no slide happened.
    s.clock
        .advance(Duration::days(guestpass_proto::SESSION_TTL_DAYS) + Duration::seconds(1));
    for token in [&guest, &full] {
        assert_token_dead(&s, token).await;
    }
    s.stop().await;
}

async fn a_guest_cannot_act_on_another_user(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (victim_id, victim) = s.guest().await;
    let (_, attacker) = s.guest().await;

    // No route takes a target user from the body: naming one is refused, not obeyed.
    for (path, body) in [
        (
            "/anonymous/upgrade",
            json!({"email": "evil@example.com", "password": "password123", "userId": victim_id}),
        ),
        (
            "/anonymous/upgrade",
            json!({"email": "evil@example.com", "password": "password123", "id": victim_id}),
        ),
        (
            "/anonymous/upgrade-social",
            json!({"provider": "google", "idToken": "x.y.z", "userId": victim_id}),
        ),
    ] {
        let got = s.post(path, Some(&attacker), body).await;
        assert_error(&got, 400, "INVALID_REQUEST");
    }
    // Taking the victim's id as one's own: refused, with a token and without.
    let got = s
        .post(
            "/sign-in/anonymous",
            Some(&attacker),
            json!({"id": victim_id}),
        )
        .await;
    assert_error(
        &got,
        400,
        "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY",
    );
    let got = s
        .post("/sign-in/anonymous", None, json!({"id": victim_id}))
        .await;
    assert_error(&got, 409, "USER_ID_TAKEN");
    // Deleting "the victim" deletes the caller, whatever the body says.
    let res = s
        .call(
            Method::POST,
            "/delete-anonymous-user",
            Some(&attacker),
            Some(json!({"userId": victim_id})),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        s.get("/get-session", Some(&attacker)).await,
        (StatusCode::OK, Value::Null)
    );
    // The admin API does not open for a user.
    let got = s
        .post(
            "/admin/remove-user",
            Some(&attacker),
            json!({"userId": victim_id}),
        )
        .await;
    assert_error(&got, 401, "UNAUTHORIZED");

    // The victim is untouched: same guest, same session, nothing in its audit
    // trail but its own creation.
    let (_, me) = s.get("/get-session", Some(&victim)).await;
    assert_eq!(me["user"]["id"], victim_id);
    assert_eq!(me["user"]["isAnonymous"], true);
    assert_eq!(me["user"]["email"], Value::Null);
    let events: Vec<String> = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["userId"] == victim_id)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["user.created", "session.created"]);
    s.stop().await;
}

async fn admin_routes_refuse_every_user_token_and_near_miss_key(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, guest) = s.guest().await;
    let (_, full) = s.full_user("admin-wannabe@example.com").await;
    let mut last_flipped = ADMIN_KEY.to_string();
    last_flipped.pop();
    last_flipped.push('X');
    let near_misses = [
        format!("{ADMIN_KEY}x"),
        ADMIN_KEY[..ADMIN_KEY.len() - 1].to_string(),
        ADMIN_KEY.to_uppercase(),
        last_flipped,
        guestpass_server::crypto::sha256_hex(ADMIN_KEY),
        String::new(),
    ];
    let paths = [
        "/admin/list-users",
        "/admin/audit-log",
        "/admin/remove-user",
    ];
    // Past 10 wrong keys a minute an address gets 429 (admin_throttle.rs); here
    // every key must meet the comparison itself, so each pair of tries gets a
    // minute of its own.
    let next_minute = || s.clock.advance(Duration::minutes(1));
    for path in paths {
        let post = path.ends_with("remove-user");
        let call = |bearer: Option<String>, api_key: Option<String>| {
            let mut req = if post {
                s.http.post(s.url(path)).json(&json!({"userId": id}))
            } else {
                s.http.get(s.url(path))
            };
            if let Some(b) = bearer {
                req = req.header("authorization", format!("Bearer {b}"));
            }
            if let Some(k) = api_key {
                req = req.header("x-api-key", k);
            }
            req
        };
        for token in [&guest, &full] {
            next_minute();
            let got = into_json(call(Some(token.clone()), None).send().await.unwrap()).await;
            assert_error(&got, 401, "UNAUTHORIZED");
            let got = into_json(call(None, Some(token.clone())).send().await.unwrap()).await;
            assert_error(&got, 401, "UNAUTHORIZED");
        }
        for key in &near_misses {
            next_minute();
            for (bearer, api_key) in [(Some(key.clone()), None), (None, Some(key.clone()))] {
                let got = into_json(call(bearer, api_key).send().await.unwrap()).await;
                assert_error(&got, 401, "UNAUTHORIZED");
            }
        }
    }
    // Nobody was removed by any of it.
    let (_, me) = s.get("/get-session", Some(&guest)).await;
    assert_eq!(me["user"]["id"], id);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_carry_at_least_128_random_bits_and_never_repeat() {
    let s =
        TestServer::start_with(&Backend::Sqlite, |c| c.rate_limit.anonymous_per_minute = 0).await;
    const N: usize = 300;
    let mut tokens = Vec::with_capacity(N + 1);
    for _ in 0..N {
        tokens.push(s.guest().await.1);
    }
    let (_, full) = s.full_user("entropy@example.com").await;
    let (_, signed_in) = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "entropy@example.com", "password": "password123"}),
        )
        .await;
    tokens.push(full);
    tokens.push(signed_in["token"].as_str().unwrap().to_string());

    let decoded: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .unwrap_or_else(|e| panic!("token {t:?} is not base64url: {e}"))
        })
        .collect();
    for bytes in &decoded {
        assert!(bytes.len() * 8 >= 128, "only {} bits", bytes.len() * 8);
    }
    let distinct: HashSet<&Vec<u8>> = decoded.iter().collect();
    assert_eq!(distinct.len(), decoded.len(), "a token repeated");
    // Random, not merely long: every bit position is 1 in some tokens and 0 in
    // others, and about half the time (a counter, a timestamp or a constant
    // prefix would pin some bits). With 300 samples a fair bit lands outside
    // 25 %..75 % with probability ~1e-18.
    let bits = decoded[0].len() * 8;
    for bit in 0..bits {
        let ones = decoded
            .iter()
            .filter(|b| b[bit / 8] & (1 << (bit % 8)) != 0)
            .count();
        let share = ones as f64 / decoded.len() as f64;
        assert!(
            (0.25..=0.75).contains(&share),
            "bit {bit} is 1 in {ones} of {} tokens",
            decoded.len()
        );
    }
    s.stop().await;
}

/// A browser preflight from `origin` for a POST with a bearer token.
async fn preflight(s: &TestServer, origin: &str) -> reqwest::Response {
    s.http
        .request(Method::OPTIONS, s.url("/sign-in/anonymous"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_closed_by_default() {
    let s = TestServer::start(&Backend::Sqlite).await;
    let res = preflight(&s, "https://evil.example").await;
    assert!(
        res.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        res.headers()
    );
    // A plain cross-origin request is answered (the browser then hides it) but
    // carries no grant either.
    let res = s
        .http
        .get(s.url("/get-session"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_opens_only_for_trusted_origins() {
    let s = TestServer::start_with(&Backend::Sqlite, |c| {
        c.trusted_origins = vec!["https://app.example".into()];
    })
    .await;
    let res = preflight(&s, "https://app.example").await;
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("authorization") && !allowed.contains("x-api-key"));
    assert!(h.get("access-control-allow-credentials").is_none());

    for other in [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://app.example",
        "null",
    ] {
        let res = preflight(&s, other).await;
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{other}: {:?}",
            res.headers()
        );
    }
    // The real call from the trusted origin gets the grant and sees the token header.
    let res = s
        .http
        .post(s.url("/sign-in/anonymous"))
        .header("origin", "https://app.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("set-auth-token"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_trusted_origin_stops_the_start() {
    for bad in [
        "app.example",
        "https://app.example/path",
        "https://user@app.example",
        "*",
        "ftp://app.example",
    ] {
        let db = common::TestDb::new(&Backend::Sqlite).await;
        let mut config = common::base_config(&db.url);
        config.trusted_origins = vec![bad.into()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = match guestpass_server::launch_with_listener(config, listener).await {
            Ok(_) => panic!("{bad:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("trustedOrigins"), "{bad}: {err}");
    }
}
