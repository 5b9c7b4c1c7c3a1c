//! The data dir in trouble, with real faults: a tmpfs remounted read-only, and a tmpfs
//! filled to the last byte. The app must say what is wrong with a typed code, refuse
//! a write whole, lose nothing, and work again once the disk does — without a restart.
//! Needs root for the mounts (CI is root); elsewhere each test prints why it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod faults;

use common::count;
use guestpass_core::{Config, Dialect, Guestpass, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use secrecy::SecretString;

fn config(dir: &std::path::Path, service: &str, backend: Option<&str>) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        keyring_service: service.to_owned(),
        backend: backend.map(|url| (url.to_owned(), Dialect::Guestpass)),
        social: Vec::new(),
    }
}

fn service() -> String {
    format!("guestpass-test-{}", guestpass_proto::new_session_id())
}

fn keyring_has(service: &str, user_id: &str, slot: &str) -> bool {
    let entry = keyring::Entry::new(service, &format!("{user_id}:{slot}")).unwrap();
    match entry.get_password() {
        Ok(_) => true,
        Err(keyring::Error::NoEntry) => false,
        Err(e) => panic!("keyring: {e}"),
    }
}

fn forget(service: &str, user_id: &str) {
    for slot in ["session", "pending-password"] {
        let _ = keyring::Entry::new(service, &format!("{user_id}:{slot}"))
            .unwrap()
            .delete_credential();
    }
}

async fn bodies(app: &Guestpass) -> Vec<String> {
    app.list_notes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.body)
        .collect()
}

/// Starts the next write from an empty WAL, so it must take new space on the disk
/// (SQLite otherwise reuses the WAL file's old pages, which a full disk still allows).
async fn empty_the_wal(app: &Guestpass) {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(app.store().pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_read_only_data_dir_is_refused_as_database_read_only_and_nothing_is_lost() {
    let fs = tmpfs_or_skip!("4m");
    let service = service();
    let cfg = config(fs.path(), &service, None);
    let app = Guestpass::open(cfg.clone()).await.unwrap();
    let s = app.ensure_session().await.unwrap();
    for body in ["one", "two", "three"] {
        app.create_note(body).await.unwrap();
    }
    app.store().close().await;
    drop(app);

    fs.remount_read_only();
    let err = Guestpass::open(cfg.clone())
        .await
        .err()
        .expect("a read-only data dir is refused");
    assert_eq!(err.code(), ErrorCode::DatabaseReadOnly, "{err}");
    let message = err.to_string();
    assert!(message.contains("cannot be written"), "{message}");
    assert!(
        message.contains(&fs.path().display().to_string()),
        "says where: {message}"
    );

    // Writable again: the same guest, every note, no restart of anything but the store.
    fs.remount_read_write();
    let app = Guestpass::open(cfg).await.unwrap();
    let again = app.ensure_session().await.unwrap();
    assert_eq!(again.user.id, s.user.id);
    assert_eq!(bodies(&app).await, ["three", "two", "one"]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
    app.store().close().await;
    forget(&service, &s.user.id);
}

#[tokio::test]
async fn a_full_disk_refuses_the_note_whole_and_the_app_goes_on_once_space_returns() {
    let fs = tmpfs_or_skip!("2m");
    let service = service();
    let app = Guestpass::open(config(fs.path(), &service, None))
        .await
        .unwrap();
    let s = app.ensure_session().await.unwrap();
    for i in 0..5 {
        app.create_note(&format!("earlier note {i}")).await.unwrap();
    }
    let before = bodies(&app).await;

    empty_the_wal(&app).await;
    let filler = fs.fill();
    // A note of many pages: it cannot fit in what little SQLite may still have.
    let big = "A long note that does not fit. ".repeat(2_000);
    let err = app.create_note(&big).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DiskFull, "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    // Refused whole, and everything before is still readable while the disk is full.
    assert_eq!(bodies(&app).await, before);
    // A small one too: no half-state left behind by the failed write.
    empty_the_wal(&app).await;
    let err = app.create_note("small").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DiskFull, "{err}");

    // Space returns: the same running app saves the note.
    std::fs::remove_file(filler).unwrap();
    let saved = app.create_note(&big).await.unwrap();
    let mut expected = vec![big.clone()];
    expected.extend(before.iter().cloned());
    assert_eq!(bodies(&app).await, expected);
    app.store().close().await;
    drop(app);

    // And after a restart: every note, once.
    let app = Guestpass::open(config(fs.path(), &service, None))
        .await
        .unwrap();
    assert_eq!(app.ensure_session().await.unwrap().user.id, s.user.id);
    assert_eq!(bodies(&app).await, expected);
    assert_eq!(app.list_notes().await.unwrap()[0].id, saved.id);
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    app.store().close().await;
    forget(&service, &s.user.id);
}

#[tokio::test]
async fn a_full_disk_while_queueing_an_upgrade_leaves_no_password_behind() {
    let fs = tmpfs_or_skip!("2m");
    let service = service();
    // Nothing listens on the discard port: the backend is really unreachable, so the
    // upgrade must be queued on the device.
    let app = Guestpass::open(config(fs.path(), &service, Some("http://127.0.0.1:9")))
        .await
        .unwrap();
    let s = app.ensure_session().await.unwrap();
    app.create_note("kept").await.unwrap();
    let password = || SecretString::from("correct horse battery staple".to_owned());

    empty_the_wal(&app).await;
    let filler = fs.fill();
    let err = app
        .upgrade("guest@example.com", password(), Some("Guest"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::DiskFull, "{err}");
    assert!(
        !keyring_has(&service, &s.user.id, "pending-password"),
        "no password left in the keyring for an upgrade that was not queued"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 0);

    std::fs::remove_file(filler).unwrap();
    let out = app
        .upgrade("guest@example.com", password(), Some("Guest"))
        .await
        .unwrap();
    assert!(matches!(out, UpgradeOutcome::Queued { .. }), "{out:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, 1);
    assert!(keyring_has(&service, &s.user.id, "pending-password"));
    assert_eq!(bodies(&app).await, ["kept"]);
    app.dismiss_upgrade().await.unwrap();
    app.store().close().await;
    forget(&service, &s.user.id);
}
