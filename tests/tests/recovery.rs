//! Guest recovery (issue 16), the real core against the real reference server and
//! the real keyring: a phrase shown on one device restores the same guest with its
//! notes on another; typing mistakes are named; a new phrase revokes the old, and so
//! does an upgrade; a guest the server's cleanup deleted comes back from its device
//! with every note; a keyring wiped under the app costs no note and no second guest.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, Guestpass, SignInChoice, SignInOutcome, SyncState};
use guestpass_proto::ErrorCode;
use guestpass_tests::{count, note_bodies, Device, RefServer};

fn signed_in(outcome: SignInOutcome) -> guestpass_proto::SessionResponse {
    match outcome {
        SignInOutcome::SignedIn(s) => *s,
        other => panic!("expected a sign-in without a question, got {other:?}"),
    }
}

fn code(e: guestpass_core::Error) -> (ErrorCode, String) {
    let api = e.to_api();
    (api.code, api.message)
}

/// Upgrades the guest online with `email`; the account's user id.
async fn upgraded(app: &Guestpass, email: &str) -> String {
    let password = secrecy::SecretString::from("securePassword123".to_owned());
    match app.upgrade(email, password, None).await.unwrap() {
        guestpass_core::UpgradeOutcome::Upgraded(s) => s.user.id,
        other => panic!("expected an upgrade online, got {other:?}"),
    }
}

/// A guest on the server with two synced notes, and its phrase.
async fn guest_with_notes(app: &Guestpass) -> (String, String) {
    let id = app.ensure_session().await.unwrap().user.id;
    app.create_note("first thought").await.unwrap();
    app.create_note("second thought").await.unwrap();
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    let phrase = app.recovery_phrase().await.unwrap();
    assert_eq!(phrase.words.len(), 12);
    assert!(phrase.qr_svg.contains("<svg"));
    (id, phrase.words.join(" "))
}

#[tokio::test]
async fn a_phrase_restores_the_same_guest_and_its_notes_on_a_fresh_install() {
    let server = RefServer::start().await;
    let a_dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = a_dev.launch().await;
    let (id, phrase) = guest_with_notes(&a).await;
    // Shown again, it is the same phrase (kept in the keyring, not made anew).
    assert_eq!(a.recovery_phrase().await.unwrap().words.join(" "), phrase);

    // A fresh install: no guest yet, nothing to ask about.
    let b_dev = Device::new(&server.url(), Dialect::Guestpass);
    let b = b_dev.launch().await;
    let s = signed_in(b.restore_guest(&phrase.to_uppercase()).await.unwrap());
    assert_eq!(
        (s.user.id.as_str(), s.user.is_anonymous),
        (id.as_str(), true)
    );
    assert_eq!(b.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(note_bodies(&b).await, ["first thought", "second thought"]);
    assert_eq!(count(&b, "SELECT COUNT(*) FROM users").await, 1);
    // The restored device keeps the phrase and a device key of its own.
    assert_eq!(b.recovery_phrase().await.unwrap().words.join(" "), phrase);
    assert_ne!(
        b_dev.keyring(&id, "device-key"),
        a_dev.keyring(&id, "device-key")
    );

    // Both devices go on syncing the one guest.
    a.create_note("from the old phone").await.unwrap();
    assert_eq!(a.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(b.sync_now().await.state, SyncState::UpToDate);
    assert!(note_bodies(&b)
        .await
        .contains(&"from the old phone".to_owned()));

    // The phrase is in no file of either device (database, WAL, shared memory).
    for dev in [&a_dev, &b_dev] {
        let bytes = String::from_utf8_lossy(&dev.db_bytes()).to_lowercase();
        assert!(!bytes.contains(&phrase), "the phrase reached SQLite");
    }

    // The restored guest upgrades as usual; the old device is told to sign in,
    // and signing in there is the same user, with every note, and no question.
    assert_eq!(upgraded(&b, "came-back@example.com").await, id);
    let mut status = a.sync_now().await;
    if status.state != SyncState::NeedsAttention {
        // The first pass finds the session gone; the next one says what to do.
        status = a.sync_now().await;
    }
    let reason = status.reason.expect("a reason");
    assert_eq!(reason.code, ErrorCode::UserIdTaken, "{}", reason.message);
    assert!(
        reason.message.contains("Sign in to that account"),
        "{}",
        reason.message
    );
    let s = signed_in(
        a.sign_in_email("came-back@example.com", "securePassword123")
            .await
            .unwrap(),
    );
    assert_eq!(
        (s.user.id.as_str(), s.user.is_anonymous),
        (id.as_str(), false)
    );
    assert_eq!(a.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(note_bodies(&a).await.len(), 3);
    a_dev.forget_keyring(&id);
    b_dev.forget_keyring(&id);
}

#[tokio::test]
async fn mistakes_are_named_and_old_or_revoked_phrases_say_so() {
    let server = RefServer::start().await;
    let dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = dev.launch().await;
    let (id, phrase) = guest_with_notes(&a).await;
    let other = Device::new(&server.url(), Dialect::Guestpass);
    let b = other.launch().await;
    let b_guest = b.ensure_session().await.unwrap().user.id;

    // One word off the list: named before any request.
    let mut words: Vec<&str> = phrase.split(' ').collect();
    words[6] = "notaword";
    let (c, message) = code(b.restore_guest(&words.join(" ")).await.unwrap_err());
    assert_eq!(c, ErrorCode::InvalidRecoveryPhrase);
    assert!(
        message.starts_with("Word 7 is not on the list"),
        "{message}"
    );
    assert!(
        !message.contains("notaword"),
        "a mistyped word is still a secret"
    );
    let (c, message) = code(b.restore_guest("only three words").await.unwrap_err());
    assert_eq!(c, ErrorCode::InvalidRecoveryPhrase);
    assert_eq!(message, "A recovery phrase has 12 words; this has 3.");

    // A new phrase: the old one stops working at once.
    let fresh = a.new_recovery_phrase().await.unwrap().words.join(" ");
    assert_ne!(fresh, phrase);
    let (c, message) = code(b.restore_guest(&phrase).await.unwrap_err());
    assert_eq!(c, ErrorCode::InvalidRecoveryPhrase);
    assert!(message.starts_with("No guest has this phrase"), "{message}");
    assert_eq!(
        b.ensure_session().await.unwrap().user.id,
        b_guest,
        "nothing changed on B"
    );

    // The upgrade revokes it: the account recovers by email.
    assert_eq!(upgraded(&a, "recovered@example.com").await, id);
    assert_eq!(dev.keyring(&id, "recovery-phrase"), None);
    let (c, _) = code(b.restore_guest(&fresh).await.unwrap_err());
    assert_eq!(c, ErrorCode::InvalidRecoveryPhrase);
    let (c, message) = code(a.recovery_phrase().await.unwrap_err());
    assert_eq!(c, ErrorCode::UserNotAnonymous);
    assert!(
        message.starts_with("Accounts recover by email"),
        "{message}"
    );
    dev.forget_keyring(&id);
    other.forget_keyring(&b_guest);
}

#[tokio::test]
async fn restoring_over_a_guest_with_notes_asks_and_brings_them_along() {
    let server = RefServer::start().await;
    let a_dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = a_dev.launch().await;
    let (id, phrase) = guest_with_notes(&a).await;

    let b_dev = Device::new(&server.url(), Dialect::Guestpass);
    let b = b_dev.launch().await;
    let here = b.ensure_session().await.unwrap().user.id;
    b.create_note("typed before restoring").await.unwrap();
    assert_eq!(b.sync_now().await.state, SyncState::UpToDate);

    let asked = b.restore_guest(&phrase).await.unwrap();
    let SignInOutcome::ChoiceNeeded { account, guest } = asked else {
        panic!("expected the question, got {asked:?}");
    };
    assert_eq!(
        (account.id.as_str(), account.is_anonymous),
        (id.as_str(), true)
    );
    assert_eq!(guest.notes, 1);
    let s = b.complete_sign_in(SignInChoice::Merge).await.unwrap();
    assert_eq!(s.user.id, id);
    assert_eq!(b.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(
        note_bodies(&b).await,
        ["first thought", "second thought", "typed before restoring"]
    );
    assert_eq!(count(&b, "SELECT COUNT(*) FROM users").await, 1);
    // The note brought along reached the server as the restored guest's.
    assert_eq!(a.sync_now().await.state, SyncState::UpToDate);
    assert!(note_bodies(&a)
        .await
        .contains(&"typed before restoring".to_owned()));
    // The guest that was on B is gone from the server for good.
    assert!(server.admin_user(&here).await.is_none());
    a_dev.forget_keyring(&id);
    b_dev.forget_keyring(&id);
    b_dev.forget_keyring(&here);
}

#[tokio::test]
async fn a_guest_the_cleanup_deleted_comes_back_from_its_device_with_every_note() {
    let mut server = RefServer::reserve().await;
    let mut config = server.config();
    config.auth_methods.anonymous =
        serde_json::from_value(serde_json::json!({"enabled": true, "maxAge": 3600})).unwrap();
    let clock = guestpass_server::ManualClock::new(chrono::Utc::now());
    server.up_with_clock(config.clone(), clock.clone()).await;
    let dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = dev.launch().await;
    let (id, phrase) = guest_with_notes(&a).await;

    // The device is away longer than maxAge; the server's cleanup deletes the guest.
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(server.run_cleanup().await, 1);
    assert!(server.admin_user(&id).await.is_none());
    // Before its device is back, its phrase finds nothing.
    let other = Device::new(&server.url(), Dialect::Guestpass);
    let b = other.launch().await;
    let (c, _) = code(b.restore_guest(&phrase).await.unwrap_err());
    assert_eq!(c, ErrorCode::InvalidRecoveryPhrase);

    // The device comes back: the first pass finds the session gone, the next
    // registers the same id again and sends every record.
    let status = a.sync_now().await;
    let status = if status.state == SyncState::UpToDate {
        status
    } else {
        assert_eq!(status.reason.unwrap().code, ErrorCode::Unauthorized);
        a.sync_now().await
    };
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    let notice = status
        .notice
        .expect("the app says the server had forgotten it");
    assert!(
        notice.starts_with("The server had forgotten this guest"),
        "{notice}"
    );
    assert!(server.admin_user(&id).await.is_some());
    assert_eq!(a.dismiss_notice().notice, None);

    // Every note is on the server again: the phrase now restores it, with them.
    let s = signed_in(b.restore_guest(&phrase).await.unwrap());
    assert_eq!(s.user.id, id);
    assert_eq!(b.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(note_bodies(&b).await, ["first thought", "second thought"]);
    dev.forget_keyring(&id);
    other.forget_keyring(&id);
}

#[tokio::test]
async fn a_wiped_keyring_keeps_the_notes_and_the_phrase_brings_sync_back() {
    let server = RefServer::start().await;
    let dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = dev.launch().await;
    let (id, phrase) = guest_with_notes(&a).await;
    drop(a);

    // The keyring is reset under the app (every item of this user gone).
    dev.forget_keyring(&id);
    let a = dev.launch().await;
    assert_eq!(
        a.ensure_session().await.unwrap().user.id,
        id,
        "no second guest"
    );
    assert_eq!(note_bodies(&a).await, ["first thought", "second thought"]);
    let status = a.sync_now().await;
    assert_eq!(status.state, SyncState::NeedsAttention, "{status:?}");
    let reason = status.reason.unwrap();
    assert_eq!(reason.code, ErrorCode::DeviceKeysLost);
    assert!(
        reason.message.contains("recovery phrase"),
        "{}",
        reason.message
    );
    // It keeps working on the device, and still is one guest.
    a.create_note("written while unsynced").await.unwrap();
    assert_eq!(count(&a, "SELECT COUNT(*) FROM users").await, 1);
    assert!(
        dev.keyring(&id, "device-key").is_none(),
        "no key minted over the lost one"
    );

    // The phrase: the same guest again, nothing asked, and sync resumes.
    let s = signed_in(a.restore_guest(&phrase).await.unwrap());
    assert_eq!(s.user.id, id);
    assert_eq!(a.sync_now().await.state, SyncState::UpToDate);
    assert_eq!(
        note_bodies(&a).await,
        ["first thought", "second thought", "written while unsynced"]
    );
    dev.forget_keyring(&id);
}
