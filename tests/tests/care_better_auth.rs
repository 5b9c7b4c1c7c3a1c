//! Account care on a device against a stock Better Auth server (the `better-auth`
//! dialect), where Better Auth has the route: a reset asked for on the device and set
//! with the mailed token (the peer writes its mails to stderr), a password change
//! (Better Auth replaces this device's session: the new token is kept), a guest
//! deleted through the anonymous plugin, and an account deleted only with its password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, Guestpass, SignInOutcome};
use guestpass_proto::ErrorCode;
use guestpass_testkit::better_auth::BetterAuthPeer;
use guestpass_tests::Device;
use secrecy::SecretString;
use serde_json::{json, Value};

const PASSWORD: &str = "securePassword123";

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn post(
    peer: &BetterAuthPeer,
    route: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let url = format!("{}/api/auth{route}", peer.base_url);
    guestpass_tests::post_json(&reqwest::Client::new(), &url, token, body).await
}

async fn sign_in_status(peer: &BetterAuthPeer, email: &str, password: &str) -> u16 {
    post(
        peer,
        "/sign-in/email",
        None,
        json!({"email": email, "password": password}),
    )
    .await
    .0
}

/// A device signed in to a new Better Auth account `email`.
async fn signed_in(peer: &BetterAuthPeer, email: &str) -> (Device, Guestpass) {
    let (s, body) = post(
        peer,
        "/sign-up/email",
        None,
        json!({"email": email, "password": PASSWORD, "name": ""}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let device = Device::new(&peer.base_url, Dialect::BetterAuth);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    match app.sign_in_email(email, PASSWORD).await.unwrap() {
        SignInOutcome::SignedIn(_) => {}
        other => panic!("{other:?}"),
    }
    (device, app)
}

/// The token of the last reset mail the peer wrote for `email`.
async fn mailed_token(peer: &mut BetterAuthPeer, email: &str) -> String {
    for _ in 0..100 {
        let found = peer
            .stderr()
            .lines()
            .filter_map(|l| l.strip_prefix("better-auth peer: mail "))
            .filter_map(|j| serde_json::from_str::<Value>(j).ok())
            .rfind(|m| m["kind"] == "reset-password" && m["email"] == email)
            .and_then(|m| m["token"].as_str().map(str::to_owned));
        if let Some(t) = found {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no reset mail for {email}: {}", peer.stderr());
}

#[tokio::test]
async fn better_auth_reset_change_and_delete() {
    let mut peer = BetterAuthPeer::start();
    let email = "ba-care@example.com";
    let (device, app) = signed_in(&peer, email).await;
    let me = app.require_full_account().await.unwrap().id;

    // Reset: asked on the device, set with the mailed token, signed in with it.
    app.request_password_reset(email).await.unwrap();
    let token = mailed_token(&mut peer, email).await;
    let (s, body) = post(
        &peer,
        "/reset-password",
        None,
        json!({"token": token, "newPassword": "reset-password-123"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(sign_in_status(&peer, email, PASSWORD).await, 401);
    // Signing in with the new password resumes the same account.
    let back = app
        .sign_in_email(email, "reset-password-123")
        .await
        .unwrap();
    assert!(matches!(back, SignInOutcome::SignedIn(_)), "{back:?}");
    assert_eq!(app.require_full_account().await.unwrap().id, me);

    // Change: wrong current password refused; right one works and this device's
    // (replaced) session goes on.
    let e = app
        .change_password(pw("not-the-password"), pw("changed-password-1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidPassword);
    app.change_password(pw("reset-password-123"), pw("changed-password-1"))
        .await
        .unwrap();
    assert_eq!(
        sign_in_status(&peer, email, "changed-password-1").await,
        200
    );
    let remote = device.keyring(&me, "remote-session").unwrap();
    let resp = reqwest::Client::new()
        .get(format!("{}/api/auth/get-session", peer.base_url))
        .bearer_auth(&remote)
        .send()
        .await
        .unwrap();
    let session: Value = resp.json().await.unwrap();
    assert_eq!(
        session["user"]["email"], email,
        "this device is still signed in"
    );

    // Delete: the wrong password changes nothing; the right one deletes it.
    app.create_note("kept until deleted").await.unwrap();
    let e = app
        .delete_account(Some(pw("not-the-password")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidPassword);
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    let fresh = app
        .delete_account(Some(pw("changed-password-1")))
        .await
        .unwrap();
    assert!(fresh.user.is_anonymous);
    assert!(app.list_notes().await.unwrap().is_empty());
    assert_eq!(
        sign_in_status(&peer, email, "changed-password-1").await,
        401
    );

    // A guest (registered with Better Auth) deletes itself too.
    app.create_note("a guest's note").await.unwrap();
    app.sync_now().await;
    let guest_token = device.keyring(&fresh.user.id, "remote-session").unwrap();
    let again = app.delete_account(None).await.unwrap();
    assert_ne!(again.user.id, fresh.user.id);
    let resp = reqwest::Client::new()
        .get(format!("{}/api/auth/get-session", peer.base_url))
        .bearer_auth(&guest_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        Value::Null,
        "guest gone"
    );
    device.forget_keyring(&again.user.id);
}
