//! Email squatting (issue 14, item 2), on SQLite and PostgreSQL, with a real
//! SMTP listener and a loopback OpenID provider: an unverified address is a
//! claim, not a proof. The squatter upgrades a guest with someone else's
//! address; its verified owner wins it by a password reset mailed to it, or by
//! a verified social login once the claim lapsed (clock moved, no sleeping);
//! a social login during the claim is never linked into the squatter's account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::care::*;
use common::sync::{note, push_ok};
use common::*;
use serde_json::{json, Value};

both_backends!(
    a_reset_mailed_to_the_address_takes_the_account_from_the_squatter,
    a_social_login_during_the_claim_is_refused_until_the_account_is_proved,
    after_lapse_the_verified_owner_gets_an_account_of_its_own,
    a_lapsed_claim_is_free_for_an_email_upgrade_and_renewed_by_its_session,
);

const VICTIM: &str = "victim@example.com";

/// An ID token for `sub` with a provider-verified `email`, valid around the
/// server's current (manual) time.
fn id_token(s: &TestServer, idp: &MockIdp, sub: &str, email: &str, nonce: &str) -> String {
    let now = s.clock_now();
    idp.sign(&json!({
        "iss": idp.issuer, "aud": CLIENT_ID, "sub": sub,
        "exp": (now + Duration::hours(1)).timestamp(), "iat": now.timestamp(),
        "nonce": nonce, "email": email, "email_verified": true, "name": "The Owner"
    }))
}

fn social(token: &str, nonce: &str) -> Value {
    json!({ "provider": "google", "idToken": token, "nonce": nonce })
}

trait Now {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc>;
}
impl Now for TestServer {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use guestpass_server::Clock;
        self.clock.now()
    }
}

/// Moves the clock `days` days on, one at a time, using each session every
/// day as a person would (sessions last 7 days and slide with use).
async fn pass_days(s: &TestServer, tokens: &[&str], days: i64) {
    for _ in 0..days {
        s.clock.advance(Duration::days(1));
        for token in tokens {
            assert!(alive(s, token).await, "a used session goes on");
        }
    }
}

async fn user_count(s: &TestServer) -> usize {
    let (_, users) = s.admin_get("/admin/list-users?limit=200").await;
    users["data"].as_array().unwrap().len()
}

async fn session_user(s: &TestServer, token: &str) -> Value {
    let (status, body) = s.get("/get-session", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["user"].clone()
}

async fn a_reset_mailed_to_the_address_takes_the_account_from_the_squatter(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    // The squatter upgrades with the victim's address (the link goes to the
    // victim's mailbox, unread) and keeps two sessions.
    let (squat_id, squat_token, _unread) = account(&s, &mut smtp, VICTIM).await;
    let squat_second = sign_in(&s, VICTIM, "password123").await;

    // The mailbox's owner asks for a reset and follows the mailed link.
    let (status, body) = s
        .post("/request-password-reset", None, json!({ "email": VICTIM }))
        .await;
    assert_eq!(status, 200, "{body}");
    let mail = smtp.next().await;
    assert_eq!(mail.to, [VICTIM]);
    let link = find_link_to(&mail.data, "/reset-password");
    let (status, body) = s
        .post(
            "/reset-password",
            None,
            json!({ "token": token_in(&link), "newPassword": "owners-own-pass" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Every session of the squatter is dead, its password opens nothing.
    assert!(!alive(&s, &squat_token).await);
    assert!(!alive(&s, &squat_second).await);
    let refused = s
        .post(
            "/sign-in/email",
            None,
            json!({ "email": VICTIM, "password": "password123" }),
        )
        .await;
    assert_error(&refused, 401, "INVALID_EMAIL_OR_PASSWORD");

    // The owner has the account, its address proven.
    let owner = sign_in(&s, VICTIM, "owners-own-pass").await;
    let user = session_user(&s, &owner).await;
    assert_eq!(user["id"], squat_id);
    assert_eq!(user["emailVerified"], true);
    let audits = audits_of(&s, &squat_id).await;
    assert!(
        audits.contains(&("user.updated".into(), json!({ "change": "password" }))),
        "{audits:?}"
    );
    assert!(
        audits.contains(&("user.updated".into(), json!({ "emailVerified": true }))),
        "{audits:?}"
    );

    // Proven for good: a week later it is no claim that lapses.
    s.clock.advance(Duration::days(8));
    let owner_again = sign_in(&s, VICTIM, "owners-own-pass").await;
    assert_eq!(session_user(&s, &owner_again).await["id"], squat_id);
    let n1 = s.nonce().await;
    let (status, body) = s
        .post(
            "/sign-in/social",
            None,
            social(&id_token(&s, &idp, "owner-sub", VICTIM, &n1), &n1),
        )
        .await;
    assert_eq!(status.as_u16(), 409, "{body}");
    s.stop().await;
}

async fn a_social_login_during_the_claim_is_refused_until_the_account_is_proved(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let (claim_id, claim_token, _unread) = account(&s, &mut smtp, VICTIM).await;
    let users_before = user_count(&s).await;

    // Six days and 23 hours on, the claim is live: the verified login of the
    // address is not linked into the account and is told how to get there.
    s.clock.advance(Duration::days(7) - Duration::hours(1));
    let n1 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n1);
    let refused = s.post("/sign-in/social", None, social(&token, &n1)).await;
    assert_error(&refused, 409, "EMAIL_ALREADY_IN_USE");
    let message = refused.1["message"].as_str().unwrap();
    assert!(
        message.contains("sign in to it with its password")
            || message.contains("Sign in to it with its password"),
        "{message}"
    );
    assert!(message.contains("reset"), "{message}");
    assert!(message.contains("link google"), "{message}");
    assert_eq!(user_count(&s).await, users_before);
    // A guest's social upgrade with that identity is refused the same way and
    // stays a guest.
    let (_, guest) = s.guest().await;
    let n2 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n2);
    let refused = s
        .post(
            "/anonymous/upgrade-social",
            Some(&guest),
            social(&token, &n2),
        )
        .await;
    assert_error(&refused, 409, "EMAIL_ALREADY_IN_USE");
    assert!(refused.1["message"].as_str().unwrap().contains("reset"));
    assert_eq!(session_user(&s, &guest).await["isAnonymous"], true);
    // Nothing was linked: the claimed account still has no provider.
    let (_, export) = s.get("/export", Some(&claim_token)).await;
    assert_eq!(export["credentials"]["providers"], json!([]), "{export}");

    // The account is proved by its password; signed in, it links the provider.
    let proved = sign_in(&s, VICTIM, "password123").await;
    let n3 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n3);
    let (status, linked) = s
        .post("/link-social", Some(&proved), social(&token, &n3))
        .await;
    assert_eq!(status, 200, "{linked}");
    assert_eq!(linked["user"]["id"], claim_id);
    // The provider vouches for the very address: now it is proven.
    assert_eq!(linked["user"]["emailVerified"], true);
    let audits = audits_of(&s, &claim_id).await;
    assert!(
        audits.contains(&(
            "user.updated".into(),
            json!({ "change": "link", "provider": "google" })
        )),
        "{audits:?}"
    );
    assert!(
        audits.contains(&(
            "user.updated".into(),
            json!({ "emailVerified": true, "provider": "google" })
        )),
        "{audits:?}"
    );
    // A retry is answered the same, once linked.
    let n4 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n4);
    let (status, again) = s
        .post("/link-social", Some(&proved), social(&token, &n4))
        .await;
    assert_eq!(
        (status.as_u16(), &again["user"]["id"]),
        (200, &json!(claim_id))
    );

    // The social login now signs in to that account.
    let n5 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n5);
    let (status, signed_in) = s.post("/sign-in/social", None, social(&token, &n5)).await;
    assert_eq!(status, 200, "{signed_in}");
    assert_eq!(signed_in["user"]["id"], claim_id);
    // Past the lapse, a proven address stays the account's.
    s.clock.advance(Duration::days(30));
    assert_eq!(
        session_user(&s, &sign_in(&s, VICTIM, "password123").await).await["id"],
        claim_id
    );

    // Someone else cannot take that identity; a guest cannot link at all; a
    // forged token links nothing.
    let (other_id, other) = s.full_user("other@example.com").await;
    let _ = smtp.next().await;
    let n6 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n6);
    let taken = s
        .post("/link-social", Some(&other), social(&token, &n6))
        .await;
    assert_error(&taken, 409, "PROVIDER_ACCOUNT_IN_USE");
    let (_, guest) = s.guest().await;
    let n7 = s.nonce().await;
    let token = id_token(&s, &idp, "guest-sub", "g@example.com", &n7);
    let guest_link = s
        .post("/link-social", Some(&guest), social(&token, &n7))
        .await;
    assert_error(&guest_link, 403, "ANONYMOUS_NOT_ALLOWED");
    let forged = s
        .post("/link-social", Some(&other), social("e30.e30.c2ln", &n7))
        .await;
    assert_error(&forged, 401, "INVALID_ID_TOKEN");
    let nobody = s.post("/link-social", None, social(&token, &n7)).await;
    assert_error(&nobody, 401, "UNAUTHORIZED");
    let (_, export) = s.get("/export", Some(&other)).await;
    assert_eq!(export["credentials"]["providers"], json!([]), "{export}");
    assert!(audits_of(&s, &other_id)
        .await
        .iter()
        .all(|(_, d)| d["change"] != "link"));
    s.stop().await;
}

async fn after_lapse_the_verified_owner_gets_an_account_of_its_own(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let (squat_id, squat_token, _unread) = account(&s, &mut smtp, VICTIM).await;
    push_ok(
        &s,
        &squat_token,
        vec![note("note-1", "the squatter's note")],
    )
    .await;

    // A week and a minute later the claim has lapsed: the owner's verified
    // login gets an account of its own, with the address.
    pass_days(&s, &[&squat_token], 7).await;
    s.clock.advance(Duration::minutes(1));
    let n1 = s.nonce().await;
    let token = id_token(&s, &idp, "owner-sub", VICTIM, &n1);
    let (status, owner) = s.post("/sign-in/social", None, social(&token, &n1)).await;
    assert_eq!(status, 200, "{owner}");
    let owner_id = owner["user"]["id"].as_str().unwrap().to_string();
    assert_ne!(owner_id, squat_id);
    assert_eq!(owner["user"]["email"], VICTIM);
    assert_eq!(owner["user"]["emailVerified"], true);

    // The squatter keeps its id, its data and its session, not the address;
    // its password no longer signs in; the release is audited.
    let squatter = session_user(&s, &squat_token).await;
    assert_eq!(squatter["id"], squat_id);
    assert_eq!(squatter["email"], Value::Null);
    assert_eq!(squatter["isAnonymous"], false);
    let (_, export) = s.get("/export", Some(&squat_token)).await;
    assert_eq!(export["records"]["records"], 1, "{export}");
    let refused = s
        .post(
            "/sign-in/email",
            None,
            json!({ "email": VICTIM, "password": "password123" }),
        )
        .await;
    assert_error(&refused, 401, "INVALID_EMAIL_OR_PASSWORD");
    let lapsed: Vec<Value> = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["userId"] == squat_id && e["detail"]["change"] == "emailClaimLapsed")
        .collect();
    assert_eq!(lapsed.len(), 1, "{lapsed:?}");
    assert_eq!(lapsed[0]["actor"], "system");
    // A reset of the address now reaches the owner's account only.
    let (status, _) = s
        .post("/request-password-reset", None, json!({ "email": VICTIM }))
        .await;
    assert_eq!(status, 200);
    let mail = smtp.next().await;
    let link = find_link_to(&mail.data, "/reset-password");
    let (status, body) = s
        .post(
            "/reset-password",
            None,
            json!({ "token": token_in(&link), "newPassword": "owners-own-pass" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let owner_pw = sign_in(&s, VICTIM, "owners-own-pass").await;
    assert_eq!(session_user(&s, &owner_pw).await["id"], owner_id);
    assert!(
        alive(&s, &squat_token).await,
        "the squatter's session goes on"
    );

    // The lapsed account asks again for its old address: taken, said clearly.
    let again = s
        .post("/send-verification-email", Some(&squat_token), json!({}))
        .await;
    assert_error(&again, 400, "INVALID_REQUEST");
    assert!(
        again.1["message"].as_str().unwrap().contains("email"),
        "{}",
        again.1
    );
    let taken = s
        .post(
            "/send-verification-email",
            Some(&squat_token),
            json!({ "email": VICTIM }),
        )
        .await;
    assert_error(&taken, 409, "EMAIL_ALREADY_IN_USE");
    assert!(taken.1["message"]
        .as_str()
        .unwrap()
        .contains("another address"));
    // It adds an address of its own, verifies it, and signs in with it again.
    let (status, body) = s
        .post(
            "/send-verification-email",
            Some(&squat_token),
            json!({ "email": "Squatter@Example.com" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mail = smtp.next().await;
    assert_eq!(mail.to, ["squatter@example.com"]);
    let link = find_link_to(&mail.data, "/verify-email");
    let (status, body) = s
        .post("/verify-email", None, json!({ "token": token_in(&link) }))
        .await;
    assert_eq!(status, 200, "{body}");
    let back = sign_in(&s, "squatter@example.com", "password123").await;
    let user = session_user(&s, &back).await;
    assert_eq!(
        (&user["id"], &user["emailVerified"]),
        (&json!(squat_id), &json!(true))
    );
    s.stop().await;
}

async fn a_lapsed_claim_is_free_for_an_email_upgrade_and_renewed_by_its_session(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;
    let (squat_id, squat_token, _unread) = account(&s, &mut smtp, VICTIM).await;

    // During the claim another guest's email upgrade is refused (the spec's 409).
    let (_, guest) = s.guest().await;
    let upgrade = json!({ "email": VICTIM, "password": "owners-own-pass" });
    let refused = s
        .post("/anonymous/upgrade", Some(&guest), upgrade.clone())
        .await;
    assert_error(&refused, 409, "EMAIL_ALREADY_IN_USE");

    // Lapsed: the upgrade takes the address (and mails its own link).
    pass_days(&s, &[&squat_token, &guest], 8).await;
    let (status, body) = s.post("/anonymous/upgrade", Some(&guest), upgrade).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], VICTIM);
    assert_ne!(body["user"]["id"], squat_id);
    assert_eq!(smtp.next().await.to, [VICTIM]);
    assert_eq!(session_user(&s, &squat_token).await["email"], Value::Null);

    // Another lapsed claim, whose address nobody took, is renewed from its own
    // session: a new link, and a week more in which the address is held.
    let (renew_id, renew_token, _) = account(&s, &mut smtp, "renew@example.com").await;
    let (_, late_guest) = s.guest().await;
    pass_days(&s, &[&renew_token, &late_guest], 8).await;
    let refused = s
        .post(
            "/sign-in/email",
            None,
            json!({ "email": "renew@example.com", "password": "password123" }),
        )
        .await;
    assert_error(&refused, 401, "INVALID_EMAIL_OR_PASSWORD");
    let (status, body) = s
        .post("/send-verification-email", Some(&renew_token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(smtp.next().await.to, ["renew@example.com"]);
    let renewed = sign_in(&s, "renew@example.com", "password123").await;
    assert_eq!(session_user(&s, &renewed).await["id"], renew_id);
    let refused = s
        .post(
            "/anonymous/upgrade",
            Some(&late_guest),
            json!({ "email": "renew@example.com", "password": "password123" }),
        )
        .await;
    assert_error(&refused, 409, "EMAIL_ALREADY_IN_USE");
    assert!(audits_of(&s, &renew_id).await.contains(&(
        "user.updated".into(),
        json!({ "change": "emailClaimRenewed" })
    )));
    // A resend inside a live claim does not extend it: eight days after the
    // renewal it has lapsed again despite a resend on day six.
    pass_days(&s, &[&renew_token, &late_guest], 6).await;
    let (status, _) = s
        .post("/send-verification-email", Some(&renew_token), json!({}))
        .await;
    assert_eq!(status, 200);
    let _ = smtp.next().await;
    pass_days(&s, &[&renew_token, &late_guest], 2).await;
    let (status, body) = s
        .post(
            "/anonymous/upgrade",
            Some(&late_guest),
            json!({ "email": "renew@example.com", "password": "password123" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.stop().await;
}
