//! Accounts on a device against a stock Better Auth server (the `better-auth` dialect):
//! sign in on a fresh device, the merge done by Better Auth's own mechanism (a sign-in
//! holding the anonymous bearer links the account and deletes the anonymous user),
//! sign out and back in under the same local id, and removal when the notes exist
//! only on this computer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, SignInChoice, SignInOutcome};
use guestpass_proto::ErrorCode;
use guestpass_testkit::better_auth::BetterAuthPeer;
use guestpass_tests::{count, Device};
use serde_json::json;

const PASSWORD: &str = "securePassword123";

/// An account made directly on Better Auth; returns its remote id.
async fn account(peer: &BetterAuthPeer, email: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/sign-up/email", peer.base_url))
        .json(&json!({"email": email, "password": PASSWORD, "name": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}

async fn session_of(peer: &BetterAuthPeer, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/api/auth/get-session", peer.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_guest_merges_into_a_better_auth_account_and_comes_back_after_sign_out() {
    let peer = BetterAuthPeer::start();
    let remote = account(&peer, "ba-merge@example.com").await;
    let device = Device::new(&peer.base_url, Dialect::BetterAuth);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap().user.id;
    let note = app
        .create_note("a guest note on Better Auth")
        .await
        .unwrap();
    app.sync_now().await;
    let guest_token = device
        .keyring(&guest, "remote-session")
        .expect("registered");

    let e = app
        .sign_in_email("ba-merge@example.com", "wrong-password-1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEmailOrPassword);

    let outcome = app
        .sign_in_email("ba-merge@example.com", PASSWORD)
        .await
        .unwrap();
    assert!(
        matches!(outcome, SignInOutcome::ChoiceNeeded { .. }),
        "{outcome:?}"
    );
    let s = app.complete_sign_in(SignInChoice::Merge).await.unwrap();
    assert!(!s.user.is_anonymous);
    assert_ne!(s.user.id, remote, "a local id mapped to Better Auth's");
    let mapped: String =
        sqlx::query_scalar("SELECT remote_user_id FROM remote_account WHERE user_id = ?")
            .bind(&s.user.id)
            .fetch_one(app.store().pool())
            .await
            .unwrap();
    assert_eq!(mapped, remote);
    let notes = app.list_notes().await.unwrap();
    assert_eq!((notes.len(), notes[0].id.as_str()), (1, note.id.as_str()));
    assert_eq!(
        session_of(&peer, &guest_token).await,
        serde_json::Value::Null,
        "Better Auth deleted the anonymous user"
    );
    let account_id = s.user.id.clone();

    // Sign out (the data stays, hidden) and back in: the same local id, the note there.
    let fresh = app.sign_out(false, false).await.unwrap();
    assert!(fresh.user.is_anonymous);
    assert!(app.list_notes().await.unwrap().is_empty());
    let back = app
        .sign_in_email("ba-merge@example.com", PASSWORD)
        .await
        .unwrap();
    let SignInOutcome::SignedIn(back) = back else {
        panic!("{back:?}")
    };
    assert_eq!(back.user.id, account_id);
    assert_eq!(app.list_notes().await.unwrap().len(), 1);

    // Better Auth keeps no notes: removing them is a loss the person must accept.
    let e = app.sign_out(true, false).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsyncedChanges);
    assert!(
        e.to_string()
            .contains("1 note is kept only on this computer"),
        "{e}"
    );
    let fresh = app.sign_out(true, true).await.unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 0);
    device.forget_keyring(&fresh.user.id);
    device.forget_keyring(&account_id);
    device.forget_keyring(&guest);
}
