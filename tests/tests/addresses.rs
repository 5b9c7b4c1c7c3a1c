//! The device checks addresses and names with the server's own normaliser
//! (issue 14, item 7): offline it refuses what the server refuses, with the same
//! code and words, and queues the spelling the server stores, so the IDN pair is
//! one account end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, SyncState, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use guestpass_tests::{count, Device, RefServer};
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::test]
async fn offline_the_device_refuses_hidden_characters_and_queues_the_ascii_domain() {
    let mut server = RefServer::reserve().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();

    // Offline, so these answers are the device's own: the server's codes and words.
    let refused = [
        (
            "ja\u{0}ne@example.com",
            None,
            ErrorCode::InvalidEmail,
            "Invalid email",
        ),
        (
            "jane@exa\u{200B}mple.com",
            None,
            ErrorCode::InvalidEmail,
            "Invalid email",
        ),
        (
            "\u{202E}jane@example.com",
            None,
            ErrorCode::InvalidEmail,
            "Invalid email",
        ),
        (
            "jane@example.com",
            Some("Jane\u{0}"),
            ErrorCode::InvalidName,
            "Invalid name",
        ),
        (
            "jane@example.com",
            Some("\u{202E}Jane"),
            ErrorCode::InvalidName,
            "Invalid name",
        ),
    ];
    for (email, name, code, message) in refused {
        let err = app
            .upgrade(email, pw("securePassword123"), name)
            .await
            .unwrap_err();
        assert_eq!(
            (err.code(), err.to_string()),
            (code, message.to_owned()),
            "{email:?} {name:?}"
        );
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 0);
    assert!(device.keyring(&guest.user.id, "pending-password").is_none());

    let out = app
        .upgrade("Jane@Bücher.example", pw("securePassword123"), Some("Jane"))
        .await
        .unwrap();
    assert_eq!(
        out,
        UpgradeOutcome::Queued {
            email: "jane@xn--bcher-kva.example".into()
        }
    );

    // The server comes up: the queued upgrade is delivered, and the account is
    // the one both spellings name.
    server.up().await;
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    let me = app.get_session().await.unwrap().unwrap();
    assert!(!me.user.is_anonymous);
    assert_eq!(me.user.email.as_deref(), Some("jane@xn--bcher-kva.example"));
    let remote = server.admin_user(&guest.user.id).await.unwrap();
    assert_eq!(remote["email"], "jane@xn--bcher-kva.example");
    device.forget_keyring(&guest.user.id);
}
