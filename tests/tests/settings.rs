//! The settings screen's core (issue 15) against real servers: the check names what
//! answers at an address (the reference server with its version and providers, a
//! stock Better Auth, nothing, something else), and a guest pointed at another
//! server moves there with its notes while a full account is told to sign in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::backend::{probe, NOTHING_ANSWERS};
use guestpass_core::vault::Slot;
use guestpass_core::{Dialect, SyncState, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use guestpass_testkit::better_auth::BetterAuthPeer;
use guestpass_tests::{Device, RefServer};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn the_check_names_the_reference_server_its_version_and_providers() {
    let mut server = RefServer::reserve().await;
    server
        .up_with_social(&[("acme", "acme-client", "https://idp.example")])
        .await;
    let reached = probe(&server.url()).await.unwrap();
    assert_eq!(reached.dialect, Dialect::Guestpass);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(reached.version.as_deref(), Some(version));
    assert_eq!(
        reached.message,
        format!("Reached Guestpass server {version}.")
    );
    assert_eq!(reached.providers.len(), 1);
    assert_eq!(reached.providers[0].name, "acme");
    assert_eq!(reached.providers[0].client_id, "acme-client");
    assert_eq!(reached.providers[0].issuer, "https://idp.example");
}

#[tokio::test]
async fn the_check_names_a_better_auth_server() {
    let peer = BetterAuthPeer::start();
    let reached = probe(&peer.base_url).await.unwrap();
    assert_eq!(reached.dialect, Dialect::BetterAuth);
    assert_eq!(reached.message, "Reached a Better Auth server.");
    assert!(reached.providers.is_empty());
}

#[tokio::test]
async fn the_check_says_when_nothing_or_something_else_answers() {
    // A port nobody listens on: bound, then let go.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = probe(&format!("http://{closed}")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnreachable);
    assert_eq!(e.message, NOTHING_ANSWERS);

    // Some other web server: it answers every request 404.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = other.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = other.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
                    .await;
            });
        }
    });
    let e = probe(&format!("http://{addr}")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendError);
    assert!(
        e.message
            .contains("neither a Guestpass nor a Better Auth server"),
        "{}",
        e.message
    );
}

/// The server's log of `token`'s user's changes: `(collection, id)` per change.
async fn log(server: &RefServer, token: &str) -> Vec<(String, String)> {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/auth/sync/pull?limit=500", server.url()))
        .bearer_auth(token)
        .header(
            guestpass_proto::routes::SYNC_PROTOCOL_HEADER,
            guestpass_proto::SYNC_PROTOCOL_VERSION.to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["collection"].as_str().unwrap().to_owned(),
                c["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The records the server holds for `token`'s user.
async fn held(server: &RefServer, token: &str) -> Vec<(String, String)> {
    let mut got = log(server, token).await;
    got.sort();
    got.dedup();
    got
}

#[tokio::test]
async fn a_guest_pointed_at_another_server_moves_there_with_its_notes() {
    let first = RefServer::start().await;
    let second = RefServer::start().await;
    let mut device = Device::new(&first.url(), Dialect::Guestpass);
    let me = {
        let app = device.launch().await;
        let me = app.ensure_session().await.unwrap();
        app.create_note("written before the move").await.unwrap();
        app.create_note("and a second one").await.unwrap();
        app.set_preference("theme", serde_json::json!("dark"))
            .await
            .unwrap();
        assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
        me
    };
    let old_token = device.keyring(&me.user.id, "remote-session").unwrap();
    assert_eq!(held(&first, &old_token).await.len(), 3);
    assert!(second.admin_user(&me.user.id).await.is_none());

    // The settings screen saved the second server; the app reopens the core.
    device.backend = Some((second.url(), Dialect::Guestpass));
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert_eq!(status.pending_changes, 0, "everything was pushed");
    let there = second
        .admin_user(&me.user.id)
        .await
        .expect("the guest registered on the new server");
    assert_eq!(there["isAnonymous"], true);
    let token = app
        .vault()
        .get(&me.user.id, Slot::Remote)
        .await
        .unwrap()
        .expect("a session on the new server");
    assert_ne!(
        token.expose_secret(),
        old_token,
        "not the old server's token"
    );
    let moved = held(&second, token.expose_secret()).await;
    assert_eq!(moved.len(), 3, "two notes and a preference: {moved:?}");
    let notes = app.list_notes().await.unwrap();
    assert_eq!(notes.len(), 2, "nothing lost on the device");
    // A second pass sends nothing again.
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(held(&second, token.expose_secret()).await.len(), 3);
    device.forget_keyring(&me.user.id);
}

#[tokio::test]
async fn a_full_account_pointed_at_another_server_is_asked_to_sign_in() {
    let first = RefServer::start().await;
    let second = RefServer::start().await;
    let mut device = Device::new(&first.url(), Dialect::Guestpass);
    let me = {
        let app = device.launch().await;
        let me = app.ensure_session().await.unwrap();
        assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
        let outcome = app
            .upgrade(
                "moved@example.com",
                SecretString::from("correct horse battery".to_owned()),
                None,
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, UpgradeOutcome::Upgraded(_)),
            "{outcome:?}"
        );
        app.create_note("an account's note").await.unwrap();
        me
    };
    device.backend = Some((second.url(), Dialect::Guestpass));
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::NeedsAttention, "{status:?}");
    let reason = status.reason.expect("a reason");
    assert!(
        reason.message.contains(&format!("kept on {}", first.url())),
        "{}",
        reason.message
    );
    assert!(
        second.admin_user(&me.user.id).await.is_none(),
        "nothing was registered"
    );
    assert_eq!(
        app.list_notes().await.unwrap().len(),
        1,
        "the note stays here"
    );
    device.forget_keyring(&me.user.id);
}

/// The same server under another address (here a relay on another port, as a proxy
/// or a host name for an IP would be) still knows the device's session: nothing
/// moves, nothing is pushed again, and an account is not asked to sign in.
#[tokio::test]
async fn the_same_server_under_another_address_is_no_move() {
    let server = RefServer::start().await;
    let mut device = Device::new(&server.url(), Dialect::Guestpass);
    let me = {
        let app = device.launch().await;
        let me = app.ensure_session().await.unwrap();
        app.create_note("one note").await.unwrap();
        assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
        let outcome = app
            .upgrade(
                "same@example.com",
                SecretString::from("correct horse battery".to_owned()),
                None,
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, UpgradeOutcome::Upgraded(_)),
            "{outcome:?}"
        );
        me
    };
    let token = device.keyring(&me.user.id, "remote-session").unwrap();
    let relay = guestpass_tests::crash_relay::Relay::start(server.addr).await;
    device.backend = Some((relay.url(), Dialect::Guestpass));
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert!(!status.sign_in_required);
    assert_eq!(
        device.keyring(&me.user.id, "remote-session").unwrap(),
        token,
        "the same session goes on"
    );
    let url: String = sqlx::query_scalar("SELECT backend_url FROM remote_account")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert_eq!(url, relay.url(), "the new address is remembered");
    assert_eq!(log(&server, &token).await.len(), 1, "nothing pushed again");
    device.forget_keyring(&me.user.id);
}
