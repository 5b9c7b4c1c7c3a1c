//! Notes and preferences as records, on the device alone: every change writes its
//! record and exactly one outbox row in the same transaction as the view the app reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{count, Device};
use serde_json::json;

#[tokio::test]
async fn each_note_change_is_one_record_write_and_one_outbox_row() {
    let device = Device::new();
    let app = device.launch().await;
    let s = app.ensure_session().await.unwrap();
    let n = app.create_note("first draft").await.unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM record_outbox").await, 1);
    assert_eq!(
        app.sync_status().pending_changes,
        1,
        "the pill counts it at once"
    );
    app.update_note(&n.id, "first draft, longer").await.unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) FROM record_outbox").await, 2);
    assert_eq!(app.sync_status().pending_changes, 2);
    let (coll, rid, uid, deleted): (String, String, String, bool) = sqlx::query_as(
        "SELECT collection, id, user_id, deleted FROM record_outbox ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(app.store().pool())
    .await
    .unwrap();
    assert_eq!(
        (coll.as_str(), rid.as_str(), uid.as_str(), deleted),
        ("notes", n.id.as_str(), s.user.id.as_str(), false)
    );
    // A refused edit (bad input, unknown note) writes nothing.
    assert!(app.update_note(&n.id, " ").await.is_err());
    assert!(app.update_note("note_nope", "x").await.is_err());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM record_outbox").await, 2);

    app.delete_note(&n.id).await.unwrap();
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM record_outbox WHERE deleted = 1").await,
        1
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM records WHERE deleted = 1").await,
        1
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM notes").await, 0);
    // A deleted note cannot be edited or deleted again.
    assert!(app.update_note(&n.id, "back?").await.is_err());
    assert!(app.delete_note(&n.id).await.is_err());
    assert_eq!(count(&app, "SELECT COUNT(*) FROM record_outbox").await, 3);
    device.forget_keyring(&s.user.id);
}

#[tokio::test]
async fn a_preference_is_a_record_with_a_clock() {
    let device = Device::new();
    let app = device.launch().await;
    let s = app.ensure_session().await.unwrap();
    app.set_preference("theme", json!("dark")).await.unwrap();
    app.set_preference("theme", json!("light")).await.unwrap();
    let changes: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT change FROM record_outbox WHERE collection = 'prefs' AND id = 'theme' ORDER BY seq",
    )
    .fetch_all(app.store().pool())
    .await
    .unwrap();
    assert_eq!(changes.len(), 2);
    let first: serde_json::Value = serde_json::from_slice(&changes[0]).unwrap();
    let second: serde_json::Value = serde_json::from_slice(&changes[1]).unwrap();
    assert_eq!(second["value"], "light");
    let stamp = |v: &serde_json::Value| {
        (
            v["hlc"]["wall"].as_u64().unwrap(),
            v["hlc"]["counter"].as_u64().unwrap(),
        )
    };
    assert!(stamp(&second) > stamp(&first), "{first} then {second}");
    // The view the app reads is unchanged in shape.
    let again = app.get_session().await.unwrap().unwrap();
    assert_eq!(
        again.user.metadata,
        json!({"preferences": {"theme": "light"}})
    );
    device.forget_keyring(&s.user.id);
}

#[tokio::test]
async fn every_opening_writes_under_a_new_actor() {
    // A data folder copied elsewhere must not write under the first machine's actor.
    let device = Device::new();
    let app = device.launch().await;
    let s = app.ensure_session().await.unwrap();
    app.set_preference("a", json!(1)).await.unwrap();
    app.store().close().await;
    let app = device.launch().await;
    app.ensure_session().await.unwrap();
    app.set_preference("a", json!(2)).await.unwrap();
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT json_extract(CAST(change AS TEXT), '$.hlc.actor') FROM record_outbox ORDER BY seq",
    )
    .fetch_all(app.store().pool())
    .await
    .unwrap();
    assert_eq!(actors.len(), 2);
    assert_ne!(actors[0], actors[1]);
    device.forget_keyring(&s.user.id);
}
