//! Account care on a device (issue 13), the real core against the real reference
//! server and its mail: a password reset asked for on the device and finished through
//! the mailed link, the same offline (a typed error, nothing kept), a password change,
//! deleting a guest or an account (refused with a wrong password, nothing deleted),
//! and the export that only a full account may make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, GuestSummary, Guestpass, SignInOutcome};
use guestpass_proto::ErrorCode;
use guestpass_tests::{count, Device, RefServer, SmtpSink};
use secrecy::SecretString;
use serde_json::json;

const PASSWORD: &str = "another-password";

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// The token of the next mailed link to `route` (verification mails are skipped).
async fn next_link(smtp: &mut SmtpSink, route: &str) -> String {
    loop {
        let mail = smtp.next().await;
        let body = guestpass_testkit::decode_qp(&mail.data);
        for word in body.split_whitespace().filter(|w| w.contains("?token=")) {
            let url = url::Url::parse(word).unwrap();
            if url.path().ends_with(route) {
                return url
                    .query_pairs()
                    .find(|(k, _)| k == "token")
                    .unwrap()
                    .1
                    .into_owned();
            }
        }
    }
}

async fn mailing_server() -> (RefServer, SmtpSink) {
    let smtp = SmtpSink::start().await;
    let mut server = RefServer::reserve().await;
    server.smtp_url = Some(smtp.url());
    server.up().await;
    (server, smtp)
}

/// A device signed in to a new account `email` (made on the server), holding `notes`.
async fn signed_in_device(server: &RefServer, email: &str, notes: &[&str]) -> (Device, Guestpass) {
    server.full_account(email).await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    match app.sign_in_email(email, PASSWORD).await.unwrap() {
        SignInOutcome::SignedIn(_) => {}
        other => panic!("expected a plain sign-in, got {other:?}"),
    }
    for n in notes {
        app.create_note(n).await.unwrap();
    }
    app.set_preference("theme", json!("dark")).await.unwrap();
    (device, app)
}

async fn sign_in_status(server: &RefServer, email: &str, password: &str) -> u16 {
    server
        .post(
            "/sign-in/email",
            None,
            json!({"email": email, "password": password}),
        )
        .await
        .0
}

#[tokio::test]
async fn a_forgotten_password_is_reset_through_the_mailed_link_and_signs_in_on_the_device() {
    let (server, mut smtp) = mailing_server().await;
    let email = "rita@example.com";
    server.full_account(email).await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap().user.id;

    app.request_password_reset(email).await.unwrap();
    // An unknown address answers the same.
    app.request_password_reset("nobody@example.com")
        .await
        .unwrap();
    let e = app
        .request_password_reset("not an email")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEmail);

    let token = next_link(&mut smtp, "/reset-password").await;
    let new = "a-brand-new-password";
    let (s, body) = server
        .post(
            "/reset-password",
            None,
            json!({"token": token, "newPassword": new}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(sign_in_status(&server, email, PASSWORD).await, 401);

    let e = app.sign_in_email(email, PASSWORD).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEmailOrPassword);
    let s = match app.sign_in_email(email, new).await.unwrap() {
        SignInOutcome::SignedIn(s) => *s,
        other => panic!("expected a plain sign-in, got {other:?}"),
    };
    assert_eq!(s.user.email.as_deref(), Some(email));
    assert_ne!(s.user.id, guest);
    // The reset asked for nothing to be kept on the device.
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn a_reset_needs_the_server_and_keeps_nothing_when_it_does_not_answer() {
    let server = RefServer::reserve().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    let e = app
        .request_password_reset("offline-reset@example.com")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnreachable);
    assert!(e.to_string().contains("needs the server"), "{e}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 0);
    drop(app);
    let bytes = device.db_bytes();
    assert!(!bytes
        .windows(b"offline-reset".len())
        .any(|w| w == b"offline-reset"));
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_and_keeps_this_one() {
    let server = RefServer::start().await;
    let email = "chas@example.com";
    let (_device, app) = signed_in_device(&server, email, &["kept"]).await;
    let (_, other) = server
        .post(
            "/sign-in/email",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let other = other["token"].as_str().unwrap().to_owned();

    let e = app
        .change_password(pw("wrong-password-1"), pw("the-next-password"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidPassword);
    let e = app
        .change_password(pw(PASSWORD), pw("short"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PasswordTooShort);
    assert_eq!(sign_in_status(&server, email, PASSWORD).await, 200);

    app.change_password(pw(PASSWORD), pw("the-next-password"))
        .await
        .unwrap();
    assert_eq!(sign_in_status(&server, email, PASSWORD).await, 401);
    assert_eq!(
        sign_in_status(&server, email, "the-next-password").await,
        200
    );
    let (_, s) = server.get("/get-session", Some(&other)).await;
    assert!(s.is_null(), "the other session ended: {s}");
    // This device's session goes on.
    let status = app.sync_now().await;
    assert_eq!(
        status.state,
        guestpass_core::SyncState::UpToDate,
        "{status:?}"
    );
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_guest_deletes_itself_and_everything_and_a_fresh_guest_starts() {
    let server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let old = app.ensure_session().await.unwrap().user.id;
    app.create_note("one").await.unwrap();
    app.create_note("two").await.unwrap();
    app.set_preference("theme", json!("dark")).await.unwrap();
    app.sync_now().await;
    assert!(server.admin_user(&old).await.is_some(), "registered");
    assert!(device.keyring(&old, "remote-session").is_some());
    assert_eq!(
        app.deletion_summary().await.unwrap(),
        GuestSummary {
            notes: 2,
            preferences: 1
        }
    );

    let fresh = app.delete_account(None).await.unwrap();
    assert!(fresh.user.is_anonymous);
    assert_ne!(fresh.user.id, old);
    assert!(app.list_notes().await.unwrap().is_empty());
    assert_eq!(
        app.deletion_summary().await.unwrap(),
        GuestSummary::default()
    );
    assert!(
        server.admin_user(&old).await.is_none(),
        "gone on the server"
    );
    for slot in ["session", "remote-session", "device-key"] {
        assert!(device.keyring(&old, slot).is_none(), "{slot} erased");
    }
    let q = format!("SELECT COUNT(*) FROM users WHERE id = '{old}'");
    assert_eq!(count(&app, &q).await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 0);
    let audit = app.audit_log().await.unwrap();
    assert!(audit
        .iter()
        .any(|e| e.event == "user.deleted" && e.user_id == old));
    // The fresh guest is a real one: it syncs and survives a relaunch.
    app.sync_now().await;
    drop(app);
    let again = device.launch().await;
    assert_eq!(again.ensure_session().await.unwrap().user.id, fresh.user.id);
}

#[tokio::test]
async fn an_unregistered_guest_is_deleted_offline_but_a_registered_one_is_not() {
    let mut server = RefServer::reserve().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let never = app.ensure_session().await.unwrap().user.id;
    app.create_note("offline only").await.unwrap();
    let fresh = app.delete_account(None).await.unwrap();
    assert_ne!(fresh.user.id, never);
    assert!(app.list_notes().await.unwrap().is_empty());

    server.up().await;
    app.create_note("registered").await.unwrap();
    app.sync_now().await;
    assert!(device.keyring(&fresh.user.id, "remote-session").is_some());
    server.down().await;
    let e = app.delete_account(None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnreachable);
    assert_eq!(app.list_notes().await.unwrap().len(), 1, "nothing deleted");
    assert_eq!(
        app.get_session().await.unwrap().unwrap().user.id,
        fresh.user.id
    );
}

#[tokio::test]
async fn an_account_is_deleted_only_with_its_password() {
    let mut server = RefServer::start().await;
    let email = "dora@example.com";
    let (device, app) = signed_in_device(&server, email, &["a", "b", "c"]).await;
    let me = app.get_session().await.unwrap().unwrap().user.id;
    app.sync_now().await;

    for wrong in [None, Some(pw("wrong-password-1"))] {
        let e = app.delete_account(wrong).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidPassword, "{e}");
    }
    assert_eq!(app.list_notes().await.unwrap().len(), 3, "nothing deleted");
    assert!(server.admin_user(&me).await.is_some());
    assert_eq!(sign_in_status(&server, email, PASSWORD).await, 200);

    server.down().await;
    let e = app.delete_account(Some(pw(PASSWORD))).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnreachable);
    assert_eq!(app.list_notes().await.unwrap().len(), 3, "nothing deleted");
    server.up().await;

    assert_eq!(app.deletion_summary().await.unwrap().notes, 3);
    let fresh = app.delete_account(Some(pw(PASSWORD))).await.unwrap();
    assert!(fresh.user.is_anonymous);
    assert_ne!(fresh.user.id, me);
    assert!(app.list_notes().await.unwrap().is_empty());
    assert!(server.admin_user(&me).await.is_none());
    assert_eq!(sign_in_status(&server, email, PASSWORD).await, 401);
    assert!(device.keyring(&me, "remote-session").is_none());
    assert!(device.keyring(&me, "session").is_none());
}

#[tokio::test]
async fn export_is_for_accounts_only_and_holds_every_note_and_preference() {
    let server = RefServer::start().await;
    let guest_device = Device::new(&server.url(), Dialect::Guestpass);
    let guest = guest_device.launch().await;
    guest.ensure_session().await.unwrap();
    guest.create_note("a guest's note").await.unwrap();
    let e = guest.export_data().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AnonymousNotAllowed);
    let e = guest.require_full_account().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AnonymousNotAllowed);
    let e = guest.resend_verification().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::AnonymousNotAllowed);

    let notes = ["first", "second", "third with \"quotes\""];
    let (device, app) = signed_in_device(&server, "exa@example.com", &notes).await;
    let me = app.require_full_account().await.unwrap();
    let out = app.export_data().await.unwrap();
    assert_eq!(out["user"]["id"], me.id.as_str());
    assert_eq!(out["user"]["email"], "exa@example.com");
    let bodies: Vec<&str> = out["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"].as_str().unwrap())
        .collect();
    for n in notes {
        assert!(bodies.contains(&n), "{n} in {bodies:?}");
    }
    assert_eq!(out["preferences"], json!({"theme": "dark"}));
    assert!(!out["audit"].as_array().unwrap().is_empty());
    // No secret of the device is in it.
    let text = out.to_string();
    for slot in ["session", "remote-session"] {
        if let Some(secret) = device.keyring(&me.id, slot) {
            assert!(!text.contains(&secret), "{slot} leaked");
        }
    }
    assert!(!text.contains(PASSWORD));
}
