//! The guest on its device: first launch, relaunch, renewal, secrets, races.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::{contains, count, Device};
use guestpass_proto::{parse_user_id, ErrorCode};

#[tokio::test]
async fn first_launch_creates_one_guest_with_the_spec_properties() {
    let device = Device::new();
    let app = device.launch().await;
    assert!(
        app.get_session().await.unwrap().is_none(),
        "a new device has no session"
    );

    let before = Utc::now();
    let created = app.sign_in_anonymous().await.unwrap();
    let u = &created.user;
    assert_eq!(
        parse_user_id(&u.id).as_deref(),
        Ok(u.id.as_str()),
        "id is usr_ + ULID"
    );
    assert_eq!((u.email.as_deref(), u.name.as_deref()), (None, None));
    assert!(!u.email_verified);
    assert!(u.is_anonymous);
    assert!(u.created_at >= before - chrono::Duration::seconds(1) && u.created_at <= Utc::now());
    let s = &created.session;
    assert!(s.id.starts_with("ses_") && s.id.len() == 30);
    assert_eq!(s.user_id, u.id);
    let ttl = s.expires_at - s.created_at;
    assert_eq!(ttl, chrono::Duration::days(7));

    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
    let events: Vec<String> = app
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["user.created", "session.created"]);

    let again = app.sign_in_anonymous().await.unwrap_err();
    assert_eq!(
        again.code(),
        ErrorCode::AnonymousUsersCannotSignInAgainAnonymously
    );
    device.forget_keyring(&u.id);
}

#[tokio::test]
async fn relaunch_resumes_the_same_guest_and_session() {
    let device = Device::new();
    let first = device.launch().await.ensure_session().await.unwrap();

    let app = device.launch().await;
    let resumed = app.get_session().await.unwrap().expect("session resumed");
    assert_eq!(resumed.user.id, first.user.id);
    assert_eq!(resumed.session.id, first.session.id);
    assert_eq!(app.ensure_session().await.unwrap().user.id, first.user.id);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(
        app.audit_log().await.unwrap().len(),
        2,
        "resuming writes no audit event"
    );
    device.forget_keyring(&first.user.id);
}

#[tokio::test]
async fn token_lives_in_the_keyring_and_nowhere_in_the_database() {
    let device = Device::new();
    let app = device.launch().await;
    let s = app.ensure_session().await.unwrap();
    app.create_note("a note so the WAL has content")
        .await
        .unwrap();

    let token = device
        .keyring_token(&s.user.id)
        .expect("token in the keyring");
    assert!(token.len() >= 32, "at least 128 bits");
    let bytes = device.db_bytes();
    assert!(!bytes.is_empty());
    assert!(
        !contains(&bytes, token.as_bytes()),
        "the token must not be in SQLite"
    );
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert_ne!(stored, token);
    device.forget_keyring(&s.user.id);
}

#[tokio::test]
async fn expired_session_is_renewed_for_the_same_guest() {
    let device = Device::new();
    let app = device.launch().await;
    let first = app.ensure_session().await.unwrap();
    app.create_note("kept across renewal").await.unwrap();
    sqlx::query("UPDATE sessions SET expires_at = '2020-01-01T00:00:00.000Z', updated_at = '2019-12-25T00:00:00.000Z'")
        .execute(app.store().pool())
        .await
        .unwrap();
    app.store().close().await;

    let app = device.launch().await;
    let renewed = app.get_session().await.unwrap().expect("renewed");
    assert_eq!(renewed.user.id, first.user.id);
    assert_ne!(renewed.session.id, first.session.id);
    assert!(renewed.session.expires_at > Utc::now() + chrono::Duration::days(6));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    let events: Vec<String> = app
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        events,
        ["user.created", "session.created", "session.created"]
    );
    device.forget_keyring(&first.user.id);
}

#[tokio::test]
async fn a_token_lost_from_the_keyring_gets_a_fresh_session_for_the_same_guest() {
    let device = Device::new();
    let first = device.launch().await.ensure_session().await.unwrap();
    device.forget_keyring(&first.user.id);

    let app = device.launch().await;
    let s = app.get_session().await.unwrap().expect("renewed");
    assert_eq!(s.user.id, first.user.id);
    assert_ne!(s.session.id, first.session.id);
    assert!(device.keyring_token(&s.user.id).is_some());
    device.forget_keyring(&first.user.id);
}

#[tokio::test]
async fn session_slides_after_a_day_of_use() {
    let device = Device::new();
    let app = device.launch().await;
    let first = app.ensure_session().await.unwrap();
    sqlx::query("UPDATE sessions SET expires_at = ?, updated_at = ?")
        .bind(guestpass_proto::format_time(
            &(Utc::now() + chrono::Duration::days(2)),
        ))
        .bind(guestpass_proto::format_time(
            &(Utc::now() - chrono::Duration::days(5)),
        ))
        .execute(app.store().pool())
        .await
        .unwrap();
    let s = app.get_session().await.unwrap().unwrap();
    assert_eq!(s.session.id, first.session.id);
    assert!(s.session.expires_at > Utc::now() + chrono::Duration::days(6));
    device.forget_keyring(&first.user.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_at_once_make_one_guest() {
    let device = Device::new();
    let (a, b) = tokio::join!(device.launch(), device.launch());
    let (ra, rb) = tokio::join!(a.ensure_session(), b.ensure_session());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.user.id, rb.user.id);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM device_account").await, 1);
    let (na, nb) = tokio::join!(a.create_note("from A"), b.create_note("from B"));
    na.unwrap();
    nb.unwrap();
    assert_eq!(b.list_notes().await.unwrap().len(), 2);
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(a.store().pool())
        .await
        .unwrap();
    assert_eq!(ok, "ok");
    device.forget_keyring(&ra.user.id);
}

#[tokio::test]
async fn a_corrupt_database_is_reported_and_left_as_it_was() {
    let device = Device::new();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(device.db_path(), &garbage).unwrap();
    let err = guestpass_core::Guestpass::open(device.config())
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), ErrorCode::DatabaseCorrupt);
    assert!(err.to_string().contains("left as it is"), "{err}");
    assert_eq!(std::fs::read(device.db_path()).unwrap(), garbage);

    // A valid header over damaged pages is caught by SQLite itself.
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend(&garbage);
    std::fs::write(device.db_path(), &fake).unwrap();
    let err = guestpass_core::Guestpass::open(device.config())
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), ErrorCode::DatabaseCorrupt, "{err}");
    assert_eq!(std::fs::read(device.db_path()).unwrap(), fake);
}
