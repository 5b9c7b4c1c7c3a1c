//! The `better-auth` dialect against a real, stock Better Auth server (npm
//! `better-auth` with the `anonymous` and `bearer` plugins; tests/peers/better-auth),
//! started per test on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// Only the peer helper: these tests need no device store or keyring.

use std::time::Duration;

use guestpass_core::backend::{Backend, BackendError, Dialect, Remote};
use guestpass_proto::{ErrorCode, UpgradeRequest};
use guestpass_testkit::better_auth::BetterAuthPeer;
use secrecy::{ExposeSecret, SecretString};

fn backend(peer: &BetterAuthPeer) -> Backend {
    Backend::new(&peer.base_url, Dialect::BetterAuth).expect("backend")
}

fn upgrade_req(email: &str, password: &str) -> UpgradeRequest {
    UpgradeRequest {
        email: email.to_owned(),
        password: password.to_owned(),
        name: None,
        next_token_hash: None,
    }
}

async fn guest(b: &Backend) -> (Remote, SecretString) {
    // Better Auth mints its own id; the local one is not sent.
    let (r, _) = b.register("local-guest-id", None).await.expect("register");
    let token = r.token.clone().expect("a token for the new guest");
    (r, token)
}

fn refusal(e: BackendError) -> ErrorCode {
    match e {
        BackendError::Refused(api) => {
            assert_eq!(
                api.message,
                api.code.default_message(),
                "our wording, not Better Auth's"
            );
            api.code
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn register_mints_an_anonymous_remote_user_and_its_session_resolves() {
    let peer = BetterAuthPeer::start();
    let b = backend(&peer);
    let (r, token) = guest(&b).await;
    assert!(r.user.is_anonymous);
    assert!(!r.user.id.is_empty());
    assert!(!r.user.email_verified);
    assert_eq!(
        r.user.email, None,
        "the placeholder email is nobody's address"
    );
    assert_eq!(r.user.name.as_deref(), Some("Anonymous"));
    assert!(!token.expose_secret().is_empty());

    let s = b
        .get_session(&token)
        .await
        .expect("get-session")
        .expect("a live session");
    assert_eq!(s, r.user);

    // Each registration is its own remote user.
    let (other, _) = guest(&b).await;
    assert_ne!(other.user.id, r.user.id);

    // An unknown token is no session (Better Auth answers 200 `null`, not 401).
    let none = b
        .get_session(&SecretString::from("not-a-token".to_owned()))
        .await
        .expect("get-session");
    assert_eq!(none, None);
}

#[tokio::test]
async fn upgrade_links_to_a_new_remote_user_and_retires_the_guest() {
    let peer = BetterAuthPeer::start();
    let b = backend(&peer);
    let (anon, anon_token) = guest(&b).await;

    let mut req = upgrade_req("Ada@Example.com", "correct horse battery");
    req.name = Some("Ada".into());
    let up = b.upgrade(&anon_token, &req).await.expect("upgrade");
    assert_ne!(
        up.user.id, anon.user.id,
        "Better Auth's linking makes a new user"
    );
    assert!(!up.user.is_anonymous);
    assert!(!up.user.email_verified);
    assert_eq!(
        up.user.email.as_deref(),
        Some("ada@example.com"),
        "Better Auth lower-cases emails"
    );
    assert_eq!(up.user.name.as_deref(), Some("Ada"));
    let new_token = up.token.clone().expect("a token for the new user");
    assert_ne!(new_token.expose_secret(), anon_token.expose_secret());

    let s = b
        .get_session(&new_token)
        .await
        .expect("get-session")
        .expect("the new session");
    assert_eq!(s, up.user);

    // The anonymous user is deleted with its sessions: its token now answers `null`.
    assert_eq!(b.get_session(&anon_token).await.expect("get-session"), None);

    // The same upgrade delivered again with the dead guest token (its first answer was
    // lost): it lands once — the account made the first time, with a fresh token.
    let redelivered = b
        .upgrade(&anon_token, &req)
        .await
        .expect("redelivered upgrade");
    assert_eq!(redelivered.user.id, up.user.id);
    let again_token = redelivered.token.expect("a token");
    let s = b
        .get_session(&again_token)
        .await
        .expect("get-session")
        .expect("session");
    assert_eq!(s.id, up.user.id);
    // With another email (or a wrong password) the dead guest token is just a session that
    // ended, and no second, unlinked account is made.
    let again = b
        .upgrade(
            &anon_token,
            &upgrade_req("other@example.com", "correct horse battery"),
        )
        .await;
    assert!(
        matches!(again, Err(BackendError::Unauthorized)),
        "{again:?}"
    );
    let wrong = b
        .upgrade(
            &anon_token,
            &upgrade_req("ada@example.com", "not the password"),
        )
        .await;
    assert!(
        matches!(wrong, Err(BackendError::Unauthorized)),
        "{wrong:?}"
    );
    let (_, probe) = guest(&b).await;
    let other = b
        .upgrade(
            &probe,
            &upgrade_req("other@example.com", "correct horse battery"),
        )
        .await;
    assert!(
        other.is_ok(),
        "other@example.com must still be free: {other:?}"
    );
    // And a full account cannot upgrade.
    let full = b
        .upgrade(
            &new_token,
            &upgrade_req("third@example.com", "correct horse battery"),
        )
        .await;
    assert_eq!(
        refusal(full.expect_err("not anonymous")),
        ErrorCode::UserNotAnonymous
    );
}

#[tokio::test]
async fn upgrade_without_a_name_works() {
    let peer = BetterAuthPeer::start();
    let b = backend(&peer);
    let (_, token) = guest(&b).await;
    let up = b
        .upgrade(
            &token,
            &upgrade_req("noname@example.com", "correct horse battery"),
        )
        .await
        .expect("upgrade");
    assert_eq!(up.user.email.as_deref(), Some("noname@example.com"));
    assert_eq!(
        up.user.name, None,
        "we send an empty name rather than invent one"
    );
    assert!(up.token.is_some());
}

#[tokio::test]
async fn refusals_map_to_our_codes_and_leave_the_guest_intact() {
    let peer = BetterAuthPeer::start();
    let b = backend(&peer);

    // Someone already holds the email.
    let (_, first) = guest(&b).await;
    b.upgrade(
        &first,
        &upgrade_req("taken@example.com", "correct horse battery"),
    )
    .await
    .expect("first upgrade");

    let (anon, token) = guest(&b).await;
    let secret_pw = "a-very-secret-pw-1";
    let taken = b
        .upgrade(&token, &upgrade_req("taken@example.com", secret_pw))
        .await
        .expect_err("taken");
    let shown = format!("{taken} {taken:?}");
    assert!(
        !shown.contains(secret_pw) && !shown.contains(token.expose_secret()),
        "no secrets in errors: {shown}"
    );
    assert_eq!(refusal(taken), ErrorCode::EmailAlreadyInUse);
    // Case does not help: Better Auth compares lower-cased.
    let taken = b
        .upgrade(&token, &upgrade_req("TAKEN@example.com", secret_pw))
        .await
        .expect_err("taken");
    assert_eq!(refusal(taken), ErrorCode::EmailAlreadyInUse);

    let bad = b
        .upgrade(&token, &upgrade_req("not-an-email", secret_pw))
        .await
        .expect_err("bad email");
    assert_eq!(refusal(bad), ErrorCode::InvalidEmail);
    let empty = b
        .upgrade(&token, &upgrade_req("", secret_pw))
        .await
        .expect_err("empty email");
    assert_eq!(refusal(empty), ErrorCode::InvalidEmail);

    let short = b
        .upgrade(&token, &upgrade_req("fresh@example.com", "short"))
        .await
        .expect_err("short");
    assert_eq!(refusal(short), ErrorCode::PasswordTooShort);
    let empty_pw = b
        .upgrade(&token, &upgrade_req("fresh@example.com", ""))
        .await
        .expect_err("empty password");
    assert_eq!(refusal(empty_pw), ErrorCode::PasswordTooShort);
    let long = b
        .upgrade(&token, &upgrade_req("fresh@example.com", &"x".repeat(129)))
        .await
        .expect_err("long");
    assert_eq!(refusal(long), ErrorCode::PasswordTooLong);

    // After all that the guest is still the same anonymous user, and can still upgrade.
    let still = b
        .get_session(&token)
        .await
        .expect("get-session")
        .expect("guest session");
    assert_eq!(still.id, anon.user.id);
    assert!(still.is_anonymous);
    let up = b
        .upgrade(
            &token,
            &upgrade_req("fresh@example.com", "correct horse battery"),
        )
        .await
        .expect("upgrade");
    assert_eq!(up.user.email.as_deref(), Some("fresh@example.com"));
}

#[tokio::test]
async fn a_server_that_went_away_is_unreachable() {
    let mut peer = BetterAuthPeer::start();
    let b = backend(&peer);
    let (_, token) = guest(&b).await;
    peer.kill();

    let e = b
        .register("local-guest-id", None)
        .await
        .expect_err("register");
    assert!(matches!(e, BackendError::Unreachable(_)), "{e:?}");
    assert!(e.is_transient());
    let e = b.get_session(&token).await.expect_err("get-session");
    assert!(matches!(e, BackendError::Unreachable(_)), "{e:?}");
    let e = b
        .upgrade(
            &token,
            &upgrade_req("late@example.com", "correct horse battery"),
        )
        .await
        .expect_err("upgrade");
    assert!(matches!(e, BackendError::Unreachable(_)), "{e:?}");
    assert!(!format!("{e:?}").contains(token.expose_secret()));
}

#[tokio::test]
async fn its_rate_limiter_becomes_rate_limited_with_the_delay() {
    // Better Auth's own limiter, switched on by the peer for this test only.
    let peer = BetterAuthPeer::start_with(&[("PEER_ANON_RATE_LIMIT", "1")]);
    let b = backend(&peer);
    guest(&b).await;
    match b.register("local-guest-id", None).await {
        Err(BackendError::RateLimited {
            retry_after: Some(d),
        }) => {
            assert!(d > Duration::ZERO && d <= Duration::from_secs(60), "{d:?}");
        }
        other => panic!("expected RateLimited with a delay, got {other:?}"),
    }
}
