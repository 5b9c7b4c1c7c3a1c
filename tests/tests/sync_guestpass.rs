//! The app's core against the real reference server: register, upgrade in place
//! online and offline, errors, restarts on both sides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, SyncState, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use guestpass_tests::{count, find_link, Device, RefServer, SmtpSink};
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::test]
async fn first_sync_registers_the_guest_under_its_own_id() {
    let server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let me = app.ensure_session().await.unwrap();

    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert!(status.last_synced_at.is_some());
    let remote = server
        .admin_user(&me.user.id)
        .await
        .expect("the server knows the guest");
    assert_eq!(remote["isAnonymous"], true);
    let mapped: String = sqlx::query_scalar("SELECT remote_user_id FROM remote_account")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert_eq!(mapped, me.user.id, "same id on both sides");
    assert!(device.keyring(&me.user.id, "remote-session").is_some());
    let key = device
        .keyring(&me.user.id, "device-key")
        .expect("the device key is in the keyring");
    assert!(key.len() >= 43, "256 bits");
    let bytes = device.db_bytes();
    assert!(
        !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
        "the device key is not in SQLite"
    );

    // A second pass registers nothing new.
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    device.forget_keyring(&me.user.id);
}

/// The server committed the guest but its answer never reached the device (device
/// killed, network cut, server killed after the commit): the device's retry carries
/// the same device key and gets a session for the same guest.
#[tokio::test]
async fn a_registration_whose_answer_was_lost_is_resumed_with_the_device_key() {
    let server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let me = app.ensure_session().await.unwrap();
    // The first attempt: the key is in the keyring before the request goes out, the
    // server commits the guest, and the answer is lost.
    let key = "lost-answer-device-key-0123456789abcdefghijk";
    keyring::Entry::new(&device.service, &format!("{}:device-key", me.user.id))
        .unwrap()
        .set_password(key)
        .unwrap();
    let (status, body) = server
        .post(
            "/sign-in/anonymous",
            None,
            serde_json::json!({ "id": me.user.id, "deviceKey": key }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    let mapped: String = sqlx::query_scalar("SELECT remote_user_id FROM remote_account")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert_eq!(
        mapped, me.user.id,
        "mapped to the guest the server already had"
    );
    assert!(device.keyring(&me.user.id, "remote-session").is_some());
    assert_eq!(
        device.keyring(&me.user.id, "device-key").as_deref(),
        Some(key)
    );

    // Later the device loses its remote session and its mapping (as if that answer
    // was lost too): the next pass gets the same guest back, not NEEDS_ATTENTION.
    let first_token = device.keyring(&me.user.id, "remote-session").unwrap();
    keyring::Entry::new(&device.service, &format!("{}:remote-session", me.user.id))
        .unwrap()
        .delete_credential()
        .unwrap();
    sqlx::query("DELETE FROM remote_account")
        .execute(app.store().pool())
        .await
        .unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    let mapped: String = sqlx::query_scalar("SELECT remote_user_id FROM remote_account")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert_eq!(mapped, me.user.id);
    let second_token = device.keyring(&me.user.id, "remote-session").unwrap();
    assert_ne!(first_token, second_token, "a new session");
    let (code, session) = server.get("/get-session", Some(&second_token)).await;
    assert_eq!(code, 200);
    assert_eq!(session["user"]["id"], me.user.id.as_str());
    assert_eq!(
        server.admin_user(&me.user.id).await.unwrap()["isAnonymous"],
        true
    );
    device.forget_keyring(&me.user.id);
}

#[tokio::test]
async fn online_upgrade_keeps_the_id_the_session_and_every_note() {
    let mut smtp = SmtpSink::start().await;
    let mut server = RefServer::reserve().await;
    server.smtp_url = Some(smtp.url());
    server.up().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    let notes = [
        app.create_note("one").await.unwrap(),
        app.create_note("two").await.unwrap(),
    ];

    let out = app
        .upgrade(
            "Jane@Example.com",
            pw("securePassword123"),
            Some("Jane Doe"),
        )
        .await
        .unwrap();
    let UpgradeOutcome::Upgraded(s) = out else {
        panic!("expected an online upgrade, got {out:?}")
    };
    assert_eq!(s.user.id, guest.user.id);
    assert_eq!(s.session.id, guest.session.id, "same local session");
    assert!(!s.user.is_anonymous);
    assert_eq!(s.user.email.as_deref(), Some("jane@example.com"));
    assert_eq!(s.user.name.as_deref(), Some("Jane Doe"));
    assert!(!s.user.email_verified);
    let kept: Vec<String> = app
        .list_notes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(kept, [notes[1].id.clone(), notes[0].id.clone()]);
    assert!(
        device.keyring(&guest.user.id, "pending-password").is_none(),
        "password erased once delivered"
    );

    let remote = server.admin_user(&guest.user.id).await.unwrap();
    assert_eq!(
        (remote["isAnonymous"].as_bool(), remote["email"].as_str()),
        (Some(false), Some("jane@example.com"))
    );

    // The verification email's link opens a page whose "Confirm my email" posts
    // the token back; that flips emailVerified and the next sync pulls it.
    let mail = smtp.next().await;
    assert_eq!(mail.to, ["jane@example.com"]);
    let link = url::Url::parse(&find_link(&mail.data)).unwrap();
    let token = link.query_pairs().find(|(k, _)| k == "token").unwrap().1;
    let confirmed = reqwest::Client::new()
        .post(link.as_str().split('?').next().unwrap())
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status().as_u16(), 200);
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    let after = app.get_session().await.unwrap().unwrap();
    assert!(after.user.email_verified);

    // Upgrading again is refused with the spec's words.
    let again = app
        .upgrade("other@example.com", pw("securePassword123"), None)
        .await
        .unwrap_err();
    assert_eq!(
        (again.code(), again.to_string()),
        (ErrorCode::UserNotAnonymous, "User is not anonymous".into())
    );
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn the_documented_errors_reach_the_app_with_their_codes_and_the_guest_is_untouched() {
    let server = RefServer::start().await;
    server.full_account("taken@example.com").await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    app.create_note("mine").await.unwrap();

    let cases = [
        (
            "taken@example.com",
            "securePassword123",
            ErrorCode::EmailAlreadyInUse,
            "Email already in use",
        ),
        (
            "not-an-email",
            "securePassword123",
            ErrorCode::InvalidEmail,
            "Invalid email",
        ),
        (
            "fresh@example.com",
            "short",
            ErrorCode::PasswordTooShort,
            "Password too short",
        ),
    ];
    for (email, password, code, message) in cases {
        let err = app.upgrade(email, pw(password), None).await.unwrap_err();
        assert_eq!(
            (err.code(), err.to_string()),
            (code, message.to_owned()),
            "{email}"
        );
    }
    let long = "x".repeat(129);
    assert_eq!(
        app.upgrade("fresh@example.com", pw(&long), None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PasswordTooLong
    );

    let me = app.get_session().await.unwrap().unwrap();
    assert!(me.user.is_anonymous && me.user.email.is_none());
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM outbox").await,
        0,
        "a refused online upgrade leaves no queue"
    );
    assert!(device.keyring(&guest.user.id, "pending-password").is_none());
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn an_offline_upgrade_is_queued_survives_a_restart_and_is_delivered_once_the_server_answers()
{
    let mut server = RefServer::reserve().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    app.create_note("written offline").await.unwrap();

    let out = app
        .upgrade("offline@example.com", pw("securePassword123"), None)
        .await
        .unwrap();
    assert_eq!(
        out,
        UpgradeOutcome::Queued {
            email: "offline@example.com".into()
        }
    );
    let status = app.sync_status();
    assert_eq!(status.state, SyncState::Offline);
    assert_eq!(
        status.pending_upgrade.as_deref(),
        Some("offline@example.com")
    );
    assert_eq!(
        device
            .keyring(&guest.user.id, "pending-password")
            .as_deref(),
        Some("securePassword123")
    );
    let db = device.db_bytes();
    assert!(
        !db.windows(17).any(|w| w == b"securePassword123"),
        "the password never touches SQLite"
    );
    app.store().close().await;
    drop(app);

    // The app restarts, then the server comes up.
    server.up().await;
    let app = device.launch().await;
    assert!(
        app.get_session().await.unwrap().unwrap().user.is_anonymous,
        "not upgraded until delivered"
    );
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::UpToDate, "{status:?}");
    assert_eq!(status.pending_upgrade, None);
    let me = app.get_session().await.unwrap().unwrap();
    assert_eq!(me.user.id, guest.user.id);
    assert!(!me.user.is_anonymous);
    assert_eq!(me.user.email.as_deref(), Some("offline@example.com"));
    assert_eq!(app.list_notes().await.unwrap()[0].body, "written offline");
    assert!(device.keyring(&guest.user.id, "pending-password").is_none());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 0);
    let remote = server.admin_user(&guest.user.id).await.unwrap();
    assert_eq!(remote["email"], "offline@example.com");
    // Delivered exactly once in effect: another pass changes nothing.
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    let events: Vec<String> = app
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| e == "user.updated")
        .collect();
    assert_eq!(events.len(), 1);
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn a_queued_upgrade_refused_later_tells_the_person_and_keeps_the_guest() {
    let mut server = RefServer::reserve().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    app.create_note("precious").await.unwrap();
    assert!(matches!(
        app.upgrade("taken@example.com", pw("securePassword123"), None)
            .await
            .unwrap(),
        UpgradeOutcome::Queued { .. }
    ));

    server.up().await;
    server.full_account("taken@example.com").await;
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::NeedsAttention);
    let refused = status.refused_upgrade.expect("the refusal is shown");
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (ErrorCode::EmailAlreadyInUse, "Email already in use")
    );
    assert!(
        device.keyring(&guest.user.id, "pending-password").is_none(),
        "password erased once abandoned"
    );
    let me = app.get_session().await.unwrap().unwrap();
    assert!(me.user.is_anonymous);
    assert_eq!(app.list_notes().await.unwrap()[0].body, "precious");

    // The person fixes it: a fresh email goes through.
    let out = app
        .upgrade("mine@example.com", pw("securePassword123"), None)
        .await
        .unwrap();
    assert!(
        matches!(out, UpgradeOutcome::Upgraded(ref s) if s.user.id == guest.user.id),
        "{out:?}"
    );
    assert_eq!(app.sync_status().refused_upgrade, None);
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn a_server_restart_mid_sync_ends_offline_then_recovers() {
    let mut server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);

    server.down().await;
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::Offline);
    assert_eq!(status.reason.unwrap().code, ErrorCode::BackendUnreachable);
    app.create_note("while the server was down").await.unwrap();

    server.up().await;
    assert_eq!(app.sync_now().await.state, SyncState::UpToDate);
    let out = app
        .upgrade("back@example.com", pw("securePassword123"), None)
        .await
        .unwrap();
    assert!(matches!(out, UpgradeOutcome::Upgraded(_)));
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn a_rate_limited_registration_waits_offline_and_loses_nothing() {
    let mut server = RefServer::reserve().await;
    let mut config = server.config();
    config.rate_limit.anonymous_per_minute = 1;
    // Held at the start of this minute: on the wall clock the second sign-in
    // could fall into the next window and pass (CI saw it at hh:55:00.4).
    let now = chrono::Utc::now();
    let minute = now - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&now)));
    server
        .up_with_clock(config, guestpass_server::ManualClock::new(minute))
        .await;
    let first = Device::new(&server.url(), Dialect::Guestpass);
    let a = first.launch().await;
    let ga = a.ensure_session().await.unwrap();
    assert_eq!(a.sync_now().await.state, SyncState::UpToDate);

    let second = Device::new(&server.url(), Dialect::Guestpass);
    let b = second.launch().await;
    let gb = b.ensure_session().await.unwrap();
    b.create_note("made while rate limited").await.unwrap();
    let status = b.sync_now().await;
    assert_eq!(status.state, SyncState::Offline, "{status:?}");
    assert_eq!(status.reason.unwrap().code, ErrorCode::RateLimited);
    assert!(server.admin_user(&gb.user.id).await.is_none());
    assert_eq!(b.list_notes().await.unwrap().len(), 1);
    first.forget_keyring(&ga.user.id);
    second.forget_keyring(&gb.user.id);
}

#[tokio::test]
async fn a_backend_answering_garbage_leaves_the_device_offline_and_intact() {
    // A real socket that speaks broken HTTP-ish nonsense.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"user\": 42}").await;
        }
    });
    let device = Device::new(&format!("http://{addr}"), Dialect::Guestpass);
    let app = device.launch().await;
    let guest = app.ensure_session().await.unwrap();
    app.create_note("safe").await.unwrap();
    let status = app.sync_now().await;
    assert_eq!(status.state, SyncState::Offline, "{status:?}");
    let out = app
        .upgrade("g@example.com", pw("securePassword123"), None)
        .await
        .unwrap();
    assert!(
        matches!(out, UpgradeOutcome::Queued { .. }),
        "garbage is not a refusal: {out:?}"
    );
    let me = app.get_session().await.unwrap().unwrap();
    assert!(me.user.is_anonymous);
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    device.forget_keyring(&guest.user.id);
}

/// Waits (up to `limit`) until the published sync status satisfies `want`.
async fn status_until(
    rx: &mut tokio::sync::watch::Receiver<guestpass_core::SyncStatus>,
    what: &str,
    limit: std::time::Duration,
    want: impl FnMut(&guestpass_core::SyncStatus) -> bool,
) -> guestpass_core::SyncStatus {
    let got = match tokio::time::timeout(limit, rx.wait_for(want)).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("sync status never became {what}: {:?}", rx.borrow()))
}

#[tokio::test]
async fn the_background_loop_delivers_work_queued_while_the_server_was_gone_once_it_is_back() {
    let mut server = RefServer::start().await;
    let device = Device::new(&server.url(), Dialect::Guestpass);
    let app = std::sync::Arc::new(device.launch().await);
    let guest = app.ensure_session().await.unwrap();
    let mut status = app.subscribe_sync();
    // The loop the shell runs; nothing below calls sync_now.
    let sync = tokio::spawn(app.clone().run_sync());
    let limit = std::time::Duration::from_secs(30);
    status_until(&mut status, "upToDate", limit, |s| {
        s.state == SyncState::UpToDate
    })
    .await;
    assert!(server.admin_user(&guest.user.id).await.is_some());

    // The server goes away; the person keeps working and asks for an account.
    server.down().await;
    let mut written = Vec::new();
    for body in ["first", "second", "third"] {
        written.push(app.create_note(body).await.unwrap().id);
    }
    let out = app
        .upgrade(
            "resumed@example.com",
            pw("securePassword123"),
            Some("Re Sumed"),
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        UpgradeOutcome::Queued {
            email: "resumed@example.com".into()
        }
    );
    let offline = status_until(&mut status, "offline", limit, |s| {
        s.state == SyncState::Offline
    })
    .await;
    assert_eq!(offline.reason.unwrap().code, ErrorCode::BackendUnreachable);
    assert_eq!(
        offline.pending_upgrade.as_deref(),
        Some("resumed@example.com")
    );
    assert!(device.keyring(&guest.user.id, "pending-password").is_some());

    // Back on the same SQLite file and port: the loop's next retry delivers it.
    server.up().await;
    let done = status_until(&mut status, "upToDate with nothing pending", limit, |s| {
        s.state == SyncState::UpToDate && s.pending_upgrade.is_none()
    })
    .await;
    assert_eq!(done.refused_upgrade, None);
    let me = app.get_session().await.unwrap().unwrap();
    assert_eq!(
        (me.user.id.as_str(), me.session.id.as_str()),
        (guest.user.id.as_str(), guest.session.id.as_str()),
        "same user, same session"
    );
    assert!(!me.user.is_anonymous);
    assert_eq!(me.user.email.as_deref(), Some("resumed@example.com"));
    assert_eq!(me.user.name.as_deref(), Some("Re Sumed"));
    let mut kept: Vec<String> = app
        .list_notes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    kept.reverse();
    assert_eq!(kept, written, "every note, once");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 0);
    assert!(device.keyring(&guest.user.id, "pending-password").is_none());
    let remote = server.admin_user(&guest.user.id).await.unwrap();
    assert_eq!(
        (remote["isAnonymous"].as_bool(), remote["email"].as_str()),
        (Some(false), Some("resumed@example.com"))
    );
    sync.abort();
    device.forget_keyring(&guest.user.id);
}
