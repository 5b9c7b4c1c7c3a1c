//! The token across the upgrade (issue 14, item 3), the app's core against the real
//! reference server and the real keyring: the guest's server token dies with the
//! upgrade and the device goes on with the one it made itself; an upgrade whose
//! answer was lost is adopted by the next pass through that pending token, or, when
//! that does not open it, by signing in with the still-kept pending password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, Guestpass, SyncState, UpgradeOutcome};
use guestpass_tests::{Device, RefServer};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "securePassword123";

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// The server's answer to get-session with `token`: the user's id, or `None`.
async fn session_user(server: &RefServer, token: &str) -> Option<String> {
    let (status, body) = server.get("/get-session", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["user"]["id"].as_str().map(str::to_owned)
}

/// A registered guest with a note; returns the app, its user id and its server token.
async fn synced_guest(device: &Device) -> (Guestpass, String, String) {
    let app = device.launch().await;
    let me = app.ensure_session().await.unwrap();
    app.create_note("kept across the upgrade").await.unwrap();
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    let token = device.keyring(&me.user.id, "remote-session").unwrap();
    (app, me.user.id, token)
}

#[tokio::test]
async fn online_the_guest_token_dies_and_the_device_goes_on_with_its_own() {
    let server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let (app, id, guest_token) = synced_guest(&device).await;
    // A second device of the same guest (a restored backup) has a session too.
    let (status, second) = server
        .post(
            "/sign-in/anonymous",
            None,
            serde_json::json!({ "id": id, "deviceKey": device.keyring(&id, "device-key").unwrap() }),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let second_token = second["token"].as_str().unwrap().to_owned();

    let out = app
        .upgrade("online@example.com", pw(PASSWORD), None)
        .await
        .unwrap();
    assert!(matches!(out, UpgradeOutcome::Upgraded(_)), "{out:?}");
    assert_eq!(
        session_user(&server, &guest_token).await,
        None,
        "old token dead"
    );
    assert_eq!(
        session_user(&server, &second_token).await,
        None,
        "the second device's session is revoked"
    );
    let held = device.keyring(&id, "remote-session").unwrap();
    assert_ne!(held, guest_token);
    assert_eq!(
        session_user(&server, &held).await.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(device.keyring(&id, "pending-token"), None);
    assert_eq!(device.keyring(&id, "pending-password"), None);
    // The device keeps working: records sync with the new token.
    app.create_note("after the upgrade").await.unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert_eq!(status.pending_changes, 0);
    assert!(!status.sign_in_required);
    device.forget_keyring(&id);
}

/// The upgrade is queued while the server is away; the device's attempt made its
/// next token (kept in the keyring) before it failed to connect. Returns the app,
/// the user id, the guest's server token and that pending token.
async fn queued_upgrade(
    server: &mut RefServer,
    device: &Device,
    email: &str,
) -> (Guestpass, String, String, String) {
    let (app, id, guest_token) = synced_guest(device).await;
    server.down().await;
    let out = app.upgrade(email, pw(PASSWORD), None).await.unwrap();
    assert!(matches!(out, UpgradeOutcome::Queued { .. }), "{out:?}");
    let pending = device
        .keyring(&id, "pending-token")
        .expect("the next token is made before the upgrade is sent");
    assert_eq!(pending.len(), 43, "256 bits, URL-safe base64");
    assert!(device.keyring(&id, "pending-password").is_some());
    let db = device.db_bytes();
    assert!(
        !db.windows(pending.len()).any(|w| w == pending.as_bytes()),
        "the pending token is not in SQLite"
    );
    server.up().await;
    (app, id, guest_token, pending)
}

/// That attempt reached the server, which upgraded the guest, and its answer was lost.
async fn delivered_without_answer(
    server: &RefServer,
    guest_token: &str,
    email: &str,
    next: Option<&str>,
) {
    let mut body = serde_json::json!({ "email": email, "password": PASSWORD });
    if let Some(next) = next {
        body["nextTokenHash"] = hex::encode(Sha256::digest(next.as_bytes())).into();
    }
    let (status, answer) = server
        .post("/anonymous/upgrade", Some(guest_token), body)
        .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn a_lost_answer_is_adopted_through_the_pending_token() {
    let mut server = RefServer::reserve().await;
    server.up().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let email = "lost@example.com";
    let (app, id, guest_token, pending) = queued_upgrade(&mut server, &device, email).await;
    delivered_without_answer(&server, &guest_token, email, Some(&pending)).await;
    assert_eq!(session_user(&server, &guest_token).await, None);

    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert_eq!(status.pending_upgrade, None);
    let me = app.get_session().await.unwrap().unwrap();
    assert_eq!(me.user.id, id);
    assert!(!me.user.is_anonymous);
    assert_eq!(me.user.email.as_deref(), Some(email));
    assert_eq!(
        device.keyring(&id, "remote-session").as_deref(),
        Some(pending.as_str())
    );
    assert_eq!(device.keyring(&id, "pending-token"), None);
    assert_eq!(device.keyring(&id, "pending-password"), None);
    // No second session was needed: the one the upgrade kept is the only one.
    let (status, signed) = server
        .post(
            "/sign-in/email",
            None,
            serde_json::json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["user"]["id"], id.as_str());
    app.create_note("after").await.unwrap();
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    device.forget_keyring(&id);
}

#[tokio::test]
async fn a_lost_answer_whose_pending_token_does_not_work_is_adopted_by_signing_in() {
    let mut server = RefServer::reserve().await;
    server.up().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let email = "signin@example.com";
    let (app, id, guest_token, pending) = queued_upgrade(&mut server, &device, email).await;
    // The server put another token on the session (a client that named none): the
    // device's pending token opens nothing, and the guest's is dead.
    delivered_without_answer(&server, &guest_token, email, None).await;
    assert_eq!(session_user(&server, &pending).await, None);

    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert!(!status.sign_in_required);
    let me = app.get_session().await.unwrap().unwrap();
    assert!(!me.user.is_anonymous);
    assert_eq!(me.user.email.as_deref(), Some(email));
    let held = device.keyring(&id, "remote-session").unwrap();
    assert_ne!(held, guest_token);
    assert_ne!(held, pending);
    assert_eq!(
        session_user(&server, &held).await.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(device.keyring(&id, "pending-token"), None);
    assert_eq!(
        device.keyring(&id, "pending-password"),
        None,
        "erased once a working token is stored"
    );
    app.create_note("after").await.unwrap();
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    device.forget_keyring(&id);
}

#[tokio::test]
async fn a_queued_upgrade_whose_guest_session_simply_ended_registers_again_and_delivers() {
    let mut server = RefServer::reserve().await;
    server.up().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let email = "ended@example.com";
    let (app, id, guest_token, _) = queued_upgrade(&mut server, &device, email).await;
    // Not delivered; the guest's session ended on the server instead (signed out
    // elsewhere). Signing in with the queued password opens nothing, so the device
    // registers again (device key) and then delivers.
    let (status, _) = server
        .post("/sign-out", Some(&guest_token), serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    app.sync_now().await;
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    let me = app.get_session().await.unwrap().unwrap();
    assert!(!me.user.is_anonymous);
    assert_eq!(me.user.email.as_deref(), Some(email));
    assert_eq!(device.keyring(&id, "pending-token"), None);
    assert_eq!(device.keyring(&id, "pending-password"), None);
    device.forget_keyring(&id);
}
