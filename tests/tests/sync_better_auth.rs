//! The same app core against a stock Better Auth server (`anonymous` + `bearer`):
//! Better Auth's upgrade makes a new remote user; the device maps it and keeps its
//! own id and every note.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, SyncState, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use guestpass_testkit::better_auth::BetterAuthPeer;
use guestpass_tests::Device;
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn remote_id(app: &guestpass_core::Guestpass) -> String {
    sqlx::query_scalar("SELECT remote_user_id FROM remote_account")
        .fetch_one(app.store().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn register_and_upgrade_keep_the_local_id_and_notes() {
    let peer = BetterAuthPeer::start();
    let device = Device::new(&peer.base_url, Dialect::BetterAuth);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    let note = app.create_note("kept through Better Auth").await.unwrap();

    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    let anonymous_remote = remote_id(&app).await;
    assert_ne!(
        anonymous_remote, guest.user.id,
        "Better Auth mints its own id"
    );

    let out = app
        .upgrade("ada@example.com", pw("securePassword123"), Some("Ada"))
        .await
        .unwrap();
    let UpgradeOutcome::Upgraded(s) = out else {
        panic!("expected upgraded, got {out:?}")
    };
    assert_eq!(s.user.id, guest.user.id, "the local id never changes");
    assert_eq!(s.session.id, guest.session.id);
    assert!(!s.user.is_anonymous);
    assert_eq!(s.user.email.as_deref(), Some("ada@example.com"));
    let linked_remote = remote_id(&app).await;
    assert_ne!(
        linked_remote, anonymous_remote,
        "the new remote user is mapped"
    );
    let notes = app.list_notes().await.unwrap();
    assert_eq!((notes.len(), notes[0].id.as_str()), (1, note.id.as_str()));
    assert_eq!(notes[0].user_id, guest.user.id);

    // The new remote session works for later passes.
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn better_auth_refusals_map_to_our_codes() {
    let peer = BetterAuthPeer::start();
    // Someone already holds the email there.
    let other = Device::new(&peer.base_url, Dialect::BetterAuth);
    let other_app = other.launch().await;
    let o = other_app.ensure_session().await.unwrap();
    assert!(matches!(
        other_app
            .upgrade("taken@example.com", pw("securePassword123"), None)
            .await
            .unwrap(),
        UpgradeOutcome::Upgraded(_)
    ));

    let device = Device::new(&peer.base_url, Dialect::BetterAuth);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    app.create_note("mine").await.unwrap();
    let err = app
        .upgrade("TAKEN@example.com", pw("securePassword123"), None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            ErrorCode::EmailAlreadyInUse,
            "Email already in use".to_owned()
        )
    );
    let me = app.get_session().await.unwrap().unwrap();
    assert!(me.user.is_anonymous);
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    device.forget_keyring(&guest.user.id);
    other.forget_keyring(&o.user.id);
}

#[tokio::test]
async fn offline_upgrade_is_delivered_when_better_auth_comes_up() {
    // Learn a free port, then start nothing there yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let device = Device::new(&format!("http://127.0.0.1:{port}"), Dialect::BetterAuth);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    let out = app
        .upgrade("later@example.com", pw("securePassword123"), None)
        .await
        .unwrap();
    assert!(matches!(out, UpgradeOutcome::Queued { .. }));

    let port_s = port.to_string();
    let _peer = BetterAuthPeer::start_with(&[("PORT", port_s.as_str())]);
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    let me = app.get_session().await.unwrap().unwrap();
    assert_eq!(
        (me.user.id.as_str(), me.user.is_anonymous),
        (guest.user.id.as_str(), false)
    );
    assert_eq!(me.user.email.as_deref(), Some("later@example.com"));
    device.forget_keyring(&guest.user.id);
}
