//! An older app opening the data a newer app migrated (issue 15: "the app's local
//! database refuses, with a clear message and nothing changed, to be opened by an
//! older app than the one that last migrated it").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Device;
use guestpass_proto::ErrorCode;
use sqlx::Connection;

/// The database file and its WAL, byte for byte (the shared-memory index is rebuilt
/// by any reader and holds no data).
fn data_bytes(device: &Device) -> Vec<u8> {
    let mut all = std::fs::read(device.db_path()).unwrap();
    let mut wal = device.db_path().into_os_string();
    wal.push("-wal");
    all.extend(std::fs::read(wal).unwrap_or_default());
    all
}

async fn run_on_file(device: &Device, sql: &str) {
    let url = format!("sqlite://{}", device.db_path().display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(sql).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_database_from_a_newer_app_is_refused_by_name_and_left_as_it_was() {
    let device = Device::new();
    let app = device.launch().await;
    let me = app.ensure_session().await.unwrap().user.id;
    app.create_note("written by the newer app").await.unwrap();
    app.store().close().await;
    drop(app);

    // What a newer release leaves behind: a migration this build has never seen.
    run_on_file(
        &device,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer app', 1, X'00', 0)",
    )
    .await;
    let before = data_bytes(&device);

    let err = match guestpass_core::Guestpass::open(device.config()).await {
        Ok(_) => panic!("the older app opened the newer database"),
        Err(e) => e,
    };
    assert_eq!(err.code(), ErrorCode::DatabaseTooNew, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("newer version of Guestpass") && message.contains("Nothing was changed"),
        "{message}"
    );
    assert_eq!(
        data_bytes(&device),
        before,
        "not a byte of the data changed"
    );

    // The newer app (here: the same build once the row is gone) still has everything.
    run_on_file(
        &device,
        "DELETE FROM _sqlx_migrations WHERE version = 99990101000000",
    )
    .await;
    let app = device.launch().await;
    assert_eq!(app.ensure_session().await.unwrap().user.id, me);
    let notes = app.list_notes().await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, "written by the newer app");
    device.forget_keyring(&me);
}
