//! Compaction between real devices (DESIGN.md §3a): a note edited many times is
//! replaced on the server by one snapshot that a new device pulls whole, and an
//! offline edit made on a device that never saw the snapshot still merges —
//! on both devices and on a third that knows only what the server holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, Guestpass, SyncState};
use guestpass_tests::{count, Device, RefServer};

async fn sync(g: &Guestpass) {
    let s = g.sync_now().await;
    assert_eq!(s.state, SyncState::UpToDate, "{s:?}");
    assert_eq!((s.pending_changes, s.refused_changes), (0, 0), "{s:?}");
}

/// The changes the server keeps for one note (its log).
async fn server_log_len(server: &RefServer, note_id: &str) -> i64 {
    let url = format!(
        "sqlite://{}?mode=ro",
        server.dir.path().join("server.db").display()
    );
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM record_changes WHERE record_id = ?")
        .bind(note_id)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

async fn body(g: &Guestpass, id: &str) -> String {
    let notes = g.list_notes().await.unwrap();
    notes
        .into_iter()
        .find(|n| n.id == id)
        .map(|n| n.body)
        .unwrap_or_else(|| panic!("note {id} missing"))
}

#[tokio::test]
async fn a_long_history_becomes_one_snapshot_and_offline_edits_still_merge() {
    let server = RefServer::start().await;
    // Three devices of one guest: A, and B and C copied from it before any note.
    let a_dev = Device::new(&server.url(), Dialect::Guestpass);
    let a = a_dev.launch().await;
    let user = a.ensure_session().await.unwrap().user.id;
    sync(&a).await;
    a.store().close().await;
    drop(a);
    let b_dev = a_dev.twin(&user).await;
    let c_dev = a_dev.twin(&user).await;
    let (a, b) = (a_dev.launch().await, b_dev.launch().await);
    for g in [&a, &b] {
        assert_eq!(g.ensure_session().await.unwrap().user.id, user);
    }

    let n = a.create_note("base").await.unwrap();
    let mut text = String::from("base");
    for i in 1..=40 {
        text.push_str(&format!(" a{i}"));
        a.update_note(&n.id, &text).await.unwrap();
    }
    sync(&a).await;
    let log = server_log_len(&server, &n.id).await;
    assert_eq!(log, 1, "41 changes replaced by one snapshot");
    sync(&b).await;
    assert_eq!(body(&b, &n.id).await, text, "B got the note whole");
    assert_eq!(
        count(&b, "SELECT COUNT(*) FROM record_outbox").await,
        0,
        "B queued nothing"
    );

    // B edits offline; meanwhile A edits 40 more times and compacts again, so B's
    // edit builds on a snapshot the server no longer has.
    b.update_note(&n.id, &format!("B: {text}")).await.unwrap();
    for i in 41..=80 {
        text.push_str(&format!(" a{i}"));
        a.update_note(&n.id, &text).await.unwrap();
    }
    sync(&a).await;
    assert_eq!(server_log_len(&server, &n.id).await, 1, "compacted again");
    sync(&b).await;
    sync(&a).await;
    let merged = format!("B: {text}");
    assert_eq!(body(&a, &n.id).await, merged);
    assert_eq!(body(&b, &n.id).await, merged);

    // C knows only what the server holds: a snapshot and what came after it.
    let c = c_dev.launch().await;
    assert_eq!(c.ensure_session().await.unwrap().user.id, user);
    sync(&c).await;
    assert_eq!(body(&c, &n.id).await, merged);
    assert!(server_log_len(&server, &n.id).await <= 3);
    for d in [&a_dev, &b_dev, &c_dev] {
        d.forget_keyring_fast(&user).await;
    }
}
