//! Signing in to and creating full accounts (issue 11), on SQLite and
//! PostgreSQL: `POST /sign-in/social` against a real OpenID provider on
//! loopback (discovery + JWKS over HTTP, RS256), the identity-before-email rule
//! of `upgrade-social`, and Better Auth's `POST /sign-up/email`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use serde_json::{json, Value};

const CLIENT_ID: &str = "guestpass-app";

async fn with_google(backend: &Backend, idp: &MockIdp) -> TestServer {
    let issuer = idp.issuer.clone();
    TestServer::start_with(backend, |c| {
        c.social_providers.insert(
            "google".into(),
            guestpass_server::config::SocialProvider {
                client_id: CLIENT_ID.into(),
                issuer,
            },
        );
    })
    .await
}

fn claims(idp: &MockIdp, sub: &str, email: &str, verified: bool, nonce: &str) -> Value {
    json!({
        "iss": idp.issuer, "aud": CLIENT_ID, "sub": sub,
        "exp": (t0() + Duration::hours(1)).timestamp(), "iat": t0().timestamp(),
        "nonce": nonce, "email": email, "email_verified": verified, "name": "Sam Social"
    })
}

fn social(token: &str, nonce: &str) -> Value {
    json!({ "provider": "google", "idToken": token, "nonce": nonce })
}

async fn social_sign_in_creates_then_signs_in_and_refuses_forgeries(backend: Backend) {
    let idp = MockIdp::start().await;
    let s = with_google(&backend, &idp).await;
    let (_, n1, n2, n3) = (
        s.nonce().await,
        s.nonce().await,
        s.nonce().await,
        s.nonce().await,
    );
    let token = idp.sign(&claims(&idp, "sub-new", "Sam@Example.com", true, &n1));

    // Unlinked: a full account from the verified token, signed in.
    let (status, created, header) = s
        .post_with_token("/sign-in/social", None, social(&token, &n1))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["token"].as_str(), header.as_deref());
    let id = created["user"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("usr_"), "{id}");
    assert_eq!(created["user"]["isAnonymous"], false);
    assert_eq!(created["user"]["email"], "sam@example.com");
    assert_eq!(created["user"]["emailVerified"], true);
    assert_eq!(created["user"]["name"], "Sam Social");
    let (_, me) = s.get("/get-session", header.as_deref()).await;
    assert_eq!(me["user"]["id"], id);

    // Linked: the same identity signs in to the same account, a new session.
    let again = idp.sign(&claims(&idp, "sub-new", "sam@example.com", true, &n2));
    let (status, signed_in, header2) = s
        .post_with_token("/sign-in/social", None, social(&again, &n2))
        .await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["user"]["id"], id);
    assert_ne!(signed_in["session"]["id"], created["session"]["id"]);
    assert_ne!(header2, header);

    let kinds: Vec<(String, Value)> = s
        .audit_events()
        .await
        .iter()
        .filter(|e| e["userId"] == id)
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["detail"]["method"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("user.created".to_string(), json!("social")),
            ("session.created".to_string(), json!("social")),
            ("session.created".to_string(), json!("social")),
        ]
    );

    // Forged, tampered, for someone else, replayed with another nonce, expired.
    let mut tampered = again.clone();
    tampered.insert(tampered.len() - 5, 'A');
    tampered.truncate(tampered.len() - 1);
    let mut other_aud = claims(&idp, "sub-new", "sam@example.com", true, &n3);
    other_aud["aud"] = json!("another-app");
    let mut expired = claims(&idp, "sub-new", "sam@example.com", true, &n3);
    expired["exp"] = json!((t0() - Duration::hours(1)).timestamp());
    for (token, nonce) in [
        ("e30.e30.c2ln".to_string(), &n3),
        (tampered, &n2),
        (idp.sign(&other_aud), &n3),
        (again.clone(), &n3),
        (idp.sign(&expired), &n3),
    ] {
        let got = s.post("/sign-in/social", None, social(&token, nonce)).await;
        assert_error(&got, 401, "INVALID_ID_TOKEN");
    }
    let unknown = s
        .post(
            "/sign-in/social",
            None,
            json!({"provider": "myspace", "idToken": again, "nonce": &n2}),
        )
        .await;
    assert_error(&unknown, 404, "UNKNOWN_PROVIDER");
    let (_, users) = s.admin_get("/admin/list-users?limit=200").await;
    assert_eq!(users["data"].as_array().unwrap().len(), 1, "{users}");
    s.stop().await;
}

async fn social_sign_in_never_links_to_an_existing_email(backend: Backend) {
    let idp = MockIdp::start().await;
    let s = with_google(&backend, &idp).await;
    let n = s.nonce().await;
    let (_, _) = s.full_user("taken@example.com").await;
    let token = idp.sign(&claims(&idp, "sub-x", "taken@example.com", true, &n));
    assert_error(
        &s.post("/sign-in/social", None, social(&token, &n)).await,
        409,
        "EMAIL_ALREADY_IN_USE",
    );
    // An address the provider does not vouch for is not taken over either:
    // the account is made without an email.
    let unverified = idp.sign(&claims(&idp, "sub-y", "taken@example.com", false, &n));
    let (status, body) = s
        .post("/sign-in/social", None, social(&unverified, &n))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], Value::Null);
    assert_eq!(body["user"]["emailVerified"], false);
    assert_eq!(body["user"]["isAnonymous"], false);
    s.stop().await;
}

/// Found against a real provider: the same identity comes with the same
/// (taken) email, and the identity is the conflict to report.
async fn a_linked_identity_is_provider_account_in_use_even_with_its_email(backend: Backend) {
    let idp = MockIdp::start().await;
    let s = with_google(&backend, &idp).await;
    let (_, n1, n2, n3) = (
        s.nonce().await,
        s.nonce().await,
        s.nonce().await,
        s.nonce().await,
    );
    let (first_id, first) = s.guest().await;
    let up = "/anonymous/upgrade-social";
    let token = idp.sign(&claims(&idp, "sub-shared", "same@example.com", true, &n1));
    let (status, body) = s.post(up, Some(&first), social(&token, &n1)).await;
    assert_eq!(status, 200, "{body}");
    let (second_id, second) = s.guest().await;
    let again = idp.sign(&claims(&idp, "sub-shared", "same@example.com", true, &n2));
    assert_error(
        &s.post(up, Some(&second), social(&again, &n2)).await,
        409,
        "PROVIDER_ACCOUNT_IN_USE",
    );
    // Only the email taken (another identity): that is EMAIL_ALREADY_IN_USE.
    let other = idp.sign(&claims(&idp, "sub-other", "same@example.com", true, &n3));
    assert_error(
        &s.post(up, Some(&second), social(&other, &n3)).await,
        409,
        "EMAIL_ALREADY_IN_USE",
    );
    let (_, me) = s.get("/get-session", Some(&second)).await;
    assert_eq!(me["user"]["id"], second_id);
    assert_eq!(me["user"]["isAnonymous"], true, "refusals leave the guest");
    assert_ne!(first_id, second_id);
    s.stop().await;
}

async fn sign_up_email_upgrades_a_guest_in_place_or_creates_an_account(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (guest_id, guest) = s.guest().await;
    let (_, before) = s.get("/get-session", Some(&guest)).await;

    // Holding a guest's bearer: our in-place upgrade, in Better Auth's shape.
    let body = json!({
        "email": "Up@Example.com", "password": "password123", "name": "Up",
        "image": "https://example.com/a.png", "callbackURL": "/", "rememberMe": true
    });
    let (status, up, header) = s
        .post_with_token("/sign-up/email", Some(&guest), body)
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["user"]["id"], guest_id);
    assert_eq!(up["user"]["isAnonymous"], false);
    assert_eq!(up["user"]["email"], "up@example.com");
    // The same session under a new token, in the body and the header (issue 14):
    // the guest's token is dead.
    let rotated = up["token"].as_str().unwrap();
    assert_ne!(rotated, guest.as_str(), "a new token");
    assert_eq!(header.as_deref(), Some(rotated));
    assert_eq!(
        up["session"]["id"], before["session"]["id"],
        "the same session"
    );
    let (_, me) = s.get("/get-session", Some(rotated)).await;
    assert_eq!(me["user"]["isAnonymous"], false);
    assert_eq!(me["session"]["id"], before["session"]["id"]);
    let (_, me) = s.get("/get-session", Some(&guest)).await;
    assert_eq!(me, Value::Null, "the guest's token died with the upgrade");

    // Without one: a new full account, signed in.
    let (status, made, header) = s
        .post_with_token(
            "/sign-up/email",
            None,
            json!({"email": "new@example.com", "password": "password123", "name": "New"}),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let new_id = made["user"]["id"].as_str().unwrap();
    assert_ne!(new_id, guest_id);
    assert_eq!(made["user"]["isAnonymous"], false);
    assert_eq!(made["user"]["emailVerified"], false);
    assert_eq!(made["token"].as_str(), header.as_deref());
    let (_, me) = s.get("/get-session", header.as_deref()).await;
    assert_eq!(me["user"]["id"], new_id);
    let (status, signed_in) = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "new@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["user"]["id"], new_id);
    let events = s.audit_events().await;
    let created = events
        .iter()
        .find(|e| e["userId"] == new_id && e["event"] == "user.created")
        .unwrap();
    assert_eq!(created["detail"]["isAnonymous"], false);

    // The rules of the upgrade hold here too.
    let (_, guest2) = s.guest().await;
    for bearer in [None, Some(guest2.as_str())] {
        let taken = json!({"email": "NEW@example.com", "password": "password123", "name": "x"});
        assert_error(
            &s.post("/sign-up/email", bearer, taken).await,
            409,
            "EMAIL_ALREADY_IN_USE",
        );
        let short = json!({"email": "s@example.com", "password": "short", "name": "x"});
        assert_error(
            &s.post("/sign-up/email", bearer, short).await,
            422,
            "PASSWORD_TOO_SHORT",
        );
        let bad = json!({"email": "not-an-email", "password": "password123", "name": "x"});
        assert_error(
            &s.post("/sign-up/email", bearer, bad).await,
            422,
            "INVALID_EMAIL",
        );
        let unknown = json!({"email": "u@example.com", "password": "password123", "admin": true});
        assert_eq!(s.post("/sign-up/email", bearer, unknown).await.0, 400);
    }
    let (_, still) = s.get("/get-session", Some(&guest2)).await;
    assert_eq!(still["user"]["isAnonymous"], true);
    s.stop().await;
}

both_backends!(
    social_sign_in_creates_then_signs_in_and_refuses_forgeries,
    social_sign_in_never_links_to_an_existing_email,
    a_linked_identity_is_provider_account_in_use_even_with_its_email,
    sign_up_email_upgrades_a_guest_in_place_or_creates_an_account,
);
