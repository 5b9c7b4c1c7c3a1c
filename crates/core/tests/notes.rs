//! The app's own data: notes and preferences, owned by the user id, kept across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Device;
use guestpass_proto::ErrorCode;
use serde_json::json;

#[tokio::test]
async fn notes_survive_restart_and_belong_to_the_guest() {
    let device = Device::new();
    let app = device.launch().await;
    let s = app.ensure_session().await.unwrap();
    let a = app.create_note("first").await.unwrap();
    let b = app.create_note("second\nwith two lines").await.unwrap();
    assert_eq!(a.user_id, s.user.id);
    let edited = app.update_note(&a.id, "first, edited").await.unwrap();
    assert_eq!(edited.body, "first, edited");
    app.store().close().await;

    let app = device.launch().await;
    assert_eq!(app.ensure_session().await.unwrap().user.id, s.user.id);
    let notes = app.list_notes().await.unwrap();
    let bodies: Vec<&str> = notes.iter().map(|n| n.body.as_str()).collect();
    assert_eq!(bodies, ["second\nwith two lines", "first, edited"]);
    app.delete_note(&b.id).await.unwrap();
    assert_eq!(app.list_notes().await.unwrap().len(), 1);
    device.forget_keyring(&s.user.id);
}

#[tokio::test]
async fn bad_note_input_is_a_typed_error_and_changes_nothing() {
    let device = Device::new();
    let app = device.launch().await;
    assert_eq!(
        app.create_note("before sign-in").await.unwrap_err().code(),
        ErrorCode::NoSession
    );
    let s = app.ensure_session().await.unwrap();
    let kept = app.create_note("kept").await.unwrap();
    for bad in ["", "   \n", &"x".repeat(guestpass_core::NOTE_MAX_CHARS + 1)] {
        assert_eq!(
            app.create_note(bad).await.unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            app.update_note(&kept.id, bad).await.unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
    }
    assert_eq!(
        app.update_note("note_nope", "x").await.unwrap_err().code(),
        ErrorCode::NoteNotFound
    );
    assert_eq!(
        app.delete_note("'; DROP TABLE notes; --")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NoteNotFound
    );
    let notes = app.list_notes().await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].body, "kept");
    device.forget_keyring(&s.user.id);
}

#[tokio::test]
async fn preferences_live_in_metadata_and_survive_restart() {
    let device = Device::new();
    let app = device.launch().await;
    let s = app.ensure_session().await.unwrap();
    let u = app.set_preference("theme", json!("dark")).await.unwrap();
    assert_eq!(u.metadata["preferences"]["theme"], "dark");
    app.set_preference("fontSize", json!(14)).await.unwrap();
    assert_eq!(
        app.set_preference("bad key!", json!(1))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidRequest
    );
    app.store().close().await;

    let app = device.launch().await;
    let again = app.ensure_session().await.unwrap();
    assert_eq!(
        again.user.metadata,
        json!({"preferences": {"theme": "dark", "fontSize": 14}})
    );
    assert_eq!(again.user.id, s.user.id);
    device.forget_keyring(&s.user.id);
}
