//! Accounts on a device (DESIGN.md §2a), the real core against the real reference
//! server: sign in on a fresh device, the merge question and its three answers, sign
//! out keeping or removing the data, and signing in again after the session ended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, Guestpass, SignInChoice, SignInOutcome};
use guestpass_proto::ErrorCode;
use guestpass_tests::{count, note_bodies, Device, RefServer};
use serde_json::json;

const PASSWORD: &str = "another-password";

async fn account_id(server: &RefServer, email: &str) -> String {
    let (s, body) = server
        .post(
            "/sign-in/email",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    body["user"]["id"].as_str().unwrap().to_owned()
}

fn signed_in(outcome: SignInOutcome) -> guestpass_proto::SessionResponse {
    match outcome {
        SignInOutcome::SignedIn(s) => *s,
        other => panic!("expected a sign-in without a question, got {other:?}"),
    }
}

async fn guest_with_data(app: &Guestpass) -> String {
    let me = app.ensure_session().await.unwrap();
    app.create_note("guest note one").await.unwrap();
    app.create_note("guest note two").await.unwrap();
    app.set_preference("theme", json!("dark")).await.unwrap();
    app.set_preference("fontSize", json!(14)).await.unwrap();
    me.user.id
}

#[tokio::test]
async fn a_fresh_device_signs_in_without_a_question() {
    let server = RefServer::start().await;
    server.full_account("ada@example.com").await;
    let id = account_id(&server, "ada@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap().user.id;

    let s = signed_in(
        app.sign_in_email("ada@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    assert_eq!(s.user.id, id, "the server's id is the local id");
    assert!(!s.user.is_anonymous);
    assert_eq!(s.user.email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM users WHERE id = '{guest}'")
        )
        .await,
        0,
        "the empty guest is gone"
    );
    assert!(device.keyring(&id, "remote-session").is_some());
    assert!(
        device.keyring(&guest, "session").is_none(),
        "the guest's token is erased"
    );
    // A relaunch resumes the account.
    drop(app);
    let app = device.launch().await;
    assert_eq!(app.ensure_session().await.unwrap().user.id, id);
    device.forget_keyring(&id);
}

#[tokio::test]
async fn wrong_password_and_no_server_are_said_in_words() {
    let mut server = RefServer::start().await;
    server.full_account("bo@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap().user.id;

    let e = app
        .sign_in_email("bo@example.com", "not-the-password")
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidEmailOrPassword);
    assert!(e.to_string().contains("Wrong email or password"), "{e}");
    let e = app.sign_in_email("", "").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);

    server.down().await;
    let e = app
        .sign_in_email("bo@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnreachable);
    assert_eq!(
        app.get_session().await.unwrap().unwrap().user.id,
        guest,
        "still the guest"
    );
    device.forget_keyring(&guest);
}

#[tokio::test]
async fn a_guest_with_data_is_asked_and_cancel_changes_nothing() {
    let server = RefServer::start().await;
    server.full_account("cy@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = guest_with_data(&app).await;

    let outcome = app.sign_in_email("cy@example.com", PASSWORD).await.unwrap();
    let SignInOutcome::ChoiceNeeded {
        account,
        guest: held,
    } = outcome
    else {
        panic!("a guest with data must be asked: {outcome:?}");
    };
    assert_eq!(account.email.as_deref(), Some("cy@example.com"));
    assert_eq!((held.notes, held.preferences), (2, 2));
    // Nothing was touched before the answer.
    assert_eq!(app.get_session().await.unwrap().unwrap().user.id, guest);

    let s = app.complete_sign_in(SignInChoice::Cancel).await.unwrap();
    assert_eq!(s.user.id, guest);
    assert!(s.user.is_anonymous);
    assert_eq!(app.list_notes().await.unwrap().len(), 2);
    let e = app.complete_sign_in(SignInChoice::Merge).await.unwrap_err();
    assert_eq!(
        e.code(),
        ErrorCode::InvalidRequest,
        "nothing waits after an answer"
    );
    device.forget_keyring(&guest);
}

#[tokio::test]
async fn leave_behind_deletes_the_guest_and_signs_in() {
    let server = RefServer::start().await;
    server.full_account("di@example.com").await;
    let id = account_id(&server, "di@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = guest_with_data(&app).await;
    app.sync_now().await;

    let _ = app.sign_in_email("di@example.com", PASSWORD).await.unwrap();
    let s = app
        .complete_sign_in(SignInChoice::LeaveBehind)
        .await
        .unwrap();
    assert_eq!(s.user.id, id);
    assert!(app.list_notes().await.unwrap().is_empty());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 0);
    assert!(
        server.admin_user(&guest).await.is_none(),
        "deleted on the server too"
    );
    device.forget_keyring(&id);
}

/// The guest never reached the server: the merge is local only, and its notes keep
/// their ids and bodies under the account. Preferences join, the account's winning.
#[tokio::test]
async fn merge_of_an_offline_guest_keeps_every_note_and_preference() {
    let server = RefServer::start().await;
    server.full_account("ed@example.com").await;
    let id = account_id(&server, "ed@example.com").await;
    // The account was signed in here before and set a theme; then it signed out.
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    signed_in(app.sign_in_email("ed@example.com", PASSWORD).await.unwrap());
    app.set_preference("theme", json!("light")).await.unwrap();
    app.sign_out(false, false).await.unwrap();
    let guest = guest_with_data(&app).await;
    let before = app.list_notes().await.unwrap();

    let _ = app.sign_in_email("ed@example.com", PASSWORD).await.unwrap();
    let s = app.complete_sign_in(SignInChoice::Merge).await.unwrap();
    assert_eq!(s.user.id, id);
    let after = app.list_notes().await.unwrap();
    assert_eq!(after.len(), 2);
    for (a, b) in before.iter().zip(after.iter()) {
        assert_eq!((&a.id, &a.body), (&b.id, &b.body), "same ids and bodies");
        assert_eq!(b.user_id, id, "now the account's");
    }
    let prefs = &s.user.metadata["preferences"];
    assert_eq!(prefs["fontSize"], 14, "the guest's preference came along");
    assert_eq!(
        prefs["theme"], "light",
        "the account's value wins a key both have"
    );
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM users WHERE id = '{guest}'")
        )
        .await,
        0
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM merge_intent").await, 0);
    // No secret of the sign-in reached the database files.
    let bytes = device.db_bytes();
    let token = device.keyring(&id, "remote-session").unwrap();
    for secret in [PASSWORD, token.as_str()] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    let deleted = count(
        &app,
        &format!("SELECT COUNT(*) FROM audit_log WHERE event = 'user.deleted' AND user_id = '{guest}' AND json_extract(detail, '$.reason') = 'merged'"),
    )
    .await;
    assert_eq!(deleted, 1, "the guest's deletion is audited as a merge");
    device.forget_keyring(&id);
}

#[tokio::test]
async fn sign_out_keeps_the_data_hidden_and_the_next_sign_in_has_it_at_once() {
    let mut server = RefServer::start().await;
    server.full_account("fay@example.com").await;
    let id = account_id(&server, "fay@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    signed_in(
        app.sign_in_email("fay@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    app.create_note("written by the account").await.unwrap();

    let fresh = app.sign_out(false, false).await.unwrap();
    assert!(fresh.user.is_anonymous, "a new guest");
    assert_ne!(fresh.user.id, id);
    assert!(
        app.list_notes().await.unwrap().is_empty(),
        "the account's notes are hidden"
    );
    assert!(
        device.keyring(&id, "remote-session").is_none(),
        "its keyring items are gone"
    );
    assert!(device.keyring(&id, "session").is_none());
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM notes").await,
        1,
        "but still on the device"
    );

    // Offline: the account's data is there without a download.
    server.down().await;
    let e = app
        .sign_in_email("fay@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::BackendUnreachable);
    server.up().await;
    let s = signed_in(
        app.sign_in_email("fay@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    assert_eq!(s.user.id, id);
    let notes = app.list_notes().await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, "written by the account");
    device.forget_keyring(&id);
    device.forget_keyring(&fresh.user.id);
}

#[tokio::test]
async fn a_guest_cannot_sign_out() {
    let server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap().user.id;
    let e = app.sign_out(false, false).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert_eq!(app.get_session().await.unwrap().unwrap().user.id, guest);
    device.forget_keyring(&guest);
}

#[tokio::test]
async fn sign_out_and_remove_asks_when_the_server_lacks_changes_and_erases_the_text() {
    let mut server = RefServer::start().await;
    server.full_account("gil@example.com").await;
    let id = account_id(&server, "gil@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    signed_in(
        app.sign_in_email("gil@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    let secret_text = "remove-me-7f3a9c-only-on-this-computer";
    app.create_note(secret_text).await.unwrap();

    // The server does not answer: nothing can confirm it holds the note.
    server.down().await;
    let e = app.sign_out(true, false).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsyncedChanges);
    assert_eq!(
        app.list_notes().await.unwrap().len(),
        1,
        "nothing lost without the answer"
    );
    assert_eq!(
        app.get_session().await.unwrap().unwrap().user.id,
        id,
        "still signed in"
    );

    // The person accepts the loss: the rows go, and so does every byte of the text.
    let fresh = app.sign_out(true, true).await.unwrap();
    assert!(fresh.user.is_anonymous);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 0);
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) FROM users WHERE id = '{id}'")
        )
        .await,
        0
    );
    let bytes = device.db_bytes();
    assert!(
        !bytes
            .windows(secret_text.len())
            .any(|w| w == secret_text.as_bytes()),
        "the removed text is not in the database files"
    );
    // The revocation waits for the server.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM pending_revocations").await,
        1
    );
    assert!(device.keyring(&id, "pending-revocation").is_some());
    server.up().await;
    app.sync_now().await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM pending_revocations").await,
        0
    );
    assert!(device.keyring(&id, "pending-revocation").is_none());
    device.forget_keyring(&fresh.user.id);
}

#[tokio::test]
async fn an_expired_session_asks_to_sign_in_again_and_resumes_without_a_question() {
    let server = RefServer::start().await;
    server.full_account("hal@example.com").await;
    let id = account_id(&server, "hal@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    signed_in(
        app.sign_in_email("hal@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    app.create_note("kept through the expiry").await.unwrap();
    assert!(!app.sync_now().await.sign_in_required);

    // The server session ends (revoked elsewhere, or expired).
    let token = device.keyring(&id, "remote-session").unwrap();
    let (s, _) = server.post("/sign-out", Some(&token), json!({})).await;
    assert_eq!(s, 200);
    let status = app.sync_now().await;
    assert!(
        status.sign_in_required,
        "the first pass says so: {status:?}"
    );
    assert!(
        app.sync_now().await.sign_in_required,
        "and so does the next"
    );
    assert_eq!(app.list_notes().await.unwrap().len(), 1, "local data waits");

    let s = signed_in(
        app.sign_in_email("hal@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    assert_eq!(s.user.id, id);
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    let status = app.sync_now().await;
    assert!(!status.sign_in_required, "{status:?}");
    device.forget_keyring(&id);
}

/// Everything is on the server: removing the data needs no question, and the next
/// sign-in (here or anywhere) brings the notes back down.
#[tokio::test]
async fn sign_out_and_remove_with_everything_synced_then_the_notes_come_back() {
    let server = RefServer::start().await;
    server.full_account("ivy@example.com").await;
    let id = account_id(&server, "ivy@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    signed_in(
        app.sign_in_email("ivy@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    let text = "synced-then-removed-5b1e0d";
    let note = app.create_note(text).await.unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.pending_changes, 0, "{status:?}");
    assert!(status.last_saved_at.is_some());

    let fresh = app.sign_out(true, false).await.unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM records").await, 0);
    let bytes = device.db_bytes();
    assert!(!bytes.windows(text.len()).any(|w| w == text.as_bytes()));

    signed_in(
        app.sign_in_email("ivy@example.com", PASSWORD)
            .await
            .unwrap(),
    );
    app.sync_now().await;
    let notes = app.list_notes().await.unwrap();
    assert_eq!(notes.len(), 1, "pulled from the server");
    assert_eq!(
        (notes[0].id.as_str(), notes[0].body.as_str()),
        (note.id.as_str(), text)
    );
    device.forget_keyring(&id);
    device.forget_keyring(&fresh.user.id);
}

/// A guest that synced its notes merges: the server re-owns them, and a second device
/// of the account pulls them.
#[tokio::test]
async fn a_merged_guests_notes_reach_the_accounts_other_device() {
    let server = RefServer::start().await;
    server.full_account("jo@example.com").await;
    let id = account_id(&server, "jo@example.com").await;
    let other = Device::new(&server.url(), Dialect::Guestpass);
    let b = other.launch().await;
    b.ensure_session().await.unwrap();
    signed_in(b.sign_in_email("jo@example.com", PASSWORD).await.unwrap());

    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = guest_with_data(&app).await;
    assert_eq!(
        app.sync_now().await.pending_changes,
        0,
        "the guest's notes are backed up"
    );
    let _ = app.sign_in_email("jo@example.com", PASSWORD).await.unwrap();
    app.complete_sign_in(SignInChoice::Merge).await.unwrap();
    assert!(server.admin_user(&guest).await.is_none());
    app.sync_now().await;

    b.sync_now().await;
    assert_eq!(note_bodies(&b).await, ["guest note one", "guest note two"]);
    device.forget_keyring(&id);
    other.forget_keyring(&id);
}
