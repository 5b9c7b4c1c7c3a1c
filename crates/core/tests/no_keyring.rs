//! The headless box without a Secret Service: a typed error, no guest half-made, and no
//! token written anywhere else. Its own test binary, because it points the process's
//! D-Bus session address at nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{count, Device};
use guestpass_proto::ErrorCode;

#[tokio::test]
async fn without_a_keyring_the_guest_is_refused_with_a_clear_error() {
    // SAFETY of the environment change: this binary has one test, so no other thread reads it.
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        "unix:path=/nonexistent/guestpass-no-bus",
    );
    let device = Device::new();
    let app = device.launch().await;
    assert!(app.get_session().await.unwrap().is_none());
    let err = app.sign_in_anonymous().await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyringUnavailable);
    assert!(err.to_string().contains("Secret Service"), "{err}");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM users").await,
        0,
        "nothing half-made"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM audit_log").await, 0);
    let files: Vec<String> = std::fs::read_dir(device.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("guestpass.db") && n != "guestpass.lock")
        .collect();
    assert!(files.is_empty(), "no token file written: {files:?}");
}
