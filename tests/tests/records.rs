//! Record sync between devices of one user through the real reference server: two
//! app cores with their own data folders and keyring services (the second a copy
//! of the first's, as if the folder moved to another machine), real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use guestpass_core::{Dialect, Guestpass, SyncState, SyncStatus};
use guestpass_tests::{count, note_bodies, twin_devices, Device, RefServer};
use serde_json::json;

async fn sync(g: &Guestpass) -> SyncStatus {
    let s = g.sync_now().await;
    assert_eq!(s.state, SyncState::UpToDate, "{s:?}");
    s
}

async fn pref(g: &Guestpass, key: &str) -> serde_json::Value {
    g.get_session().await.unwrap().unwrap().user.metadata["preferences"][key].clone()
}

async fn cleanup(devices: &[&Device], user_id: &str) {
    for d in devices {
        d.forget_keyring_fast(user_id).await;
    }
}

#[tokio::test]
async fn notes_and_preferences_made_on_one_device_appear_on_the_other() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    let kept = a.create_note("groceries: milk").await.unwrap();
    let gone = a.create_note("to be deleted").await.unwrap();
    a.update_note(&kept.id, "groceries: milk, eggs")
        .await
        .unwrap();
    a.delete_note(&gone.id).await.unwrap();
    a.set_preference("theme", json!("dark")).await.unwrap();
    assert_eq!(
        a.sync_status().pending_changes,
        5,
        "every local change is counted at once, before any pass"
    );
    let s = sync(&a).await;
    assert_eq!((s.pending_changes, s.refused_changes), (0, 0));
    assert!(s.records_on_server && s.last_saved_at.is_some(), "{s:?}");

    sync(&b).await;
    assert_eq!(note_bodies(&b).await, ["groceries: milk, eggs"]);
    let on_b = &b.list_notes().await.unwrap()[0];
    assert_eq!(
        (on_b.id.as_str(), on_b.created_at.as_str()),
        (kept.id.as_str(), kept.created_at.as_str())
    );
    assert_eq!(pref(&b, "theme").await, "dark");
    // A second pass moves nothing (the pull comes back empty, nothing to push).
    let before = count(&b, "SELECT COUNT(*) FROM records").await;
    sync(&b).await;
    assert_eq!(count(&b, "SELECT COUNT(*) FROM records").await, before);
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn concurrent_offline_edits_of_one_note_keep_both_insertions() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    let n = a.create_note("hello world").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    // Both offline: each edits the same note.
    a.update_note(&n.id, "hello big world").await.unwrap();
    b.update_note(&n.id, "hello world again").await.unwrap();
    assert_eq!(sync(&b).await.pending_changes, 0);
    sync(&a).await;
    sync(&b).await;
    assert_eq!(note_bodies(&a).await, ["hello big world again"]);
    assert_eq!(note_bodies(&b).await, ["hello big world again"]);
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn an_edit_beats_a_concurrent_delete_and_a_later_delete_wins() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    let n = a.create_note("draft").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    a.delete_note(&n.id).await.unwrap();
    b.update_note(&n.id, "draft, still wanted").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    sync(&a).await;
    assert_eq!(
        note_bodies(&a).await,
        ["draft, still wanted"],
        "the edit brought it back"
    );
    assert_eq!(note_bodies(&b).await, ["draft, still wanted"]);
    // A delete made after seeing the edit removes it everywhere.
    a.delete_note(&n.id).await.unwrap();
    sync(&a).await;
    sync(&b).await;
    assert!(note_bodies(&a).await.is_empty() && note_bodies(&b).await.is_empty());
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn the_last_preference_written_wins_whatever_order_devices_sync_in() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    a.set_preference("theme", json!("dark")).await.unwrap();
    a.set_preference("fontSize", json!(12)).await.unwrap();
    // B writes theme later; it syncs first, A's older write arrives after it.
    b.set_preference("theme", json!("light")).await.unwrap();
    sync(&b).await;
    sync(&a).await;
    sync(&b).await;
    for g in [&a, &b] {
        assert_eq!(pref(g, "theme").await, "light");
        assert_eq!(pref(g, "fontSize").await, 12);
    }
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn an_oversized_change_is_set_aside_unsent_and_the_rest_flows() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    // A change over the limit, as an app built on core could write one (a note's
    // own limit keeps its changes under it).
    let big = vec![7u8; guestpass_proto::RECORD_CHANGE_MAX_BYTES + 1];
    sqlx::query(
        "INSERT INTO record_outbox (user_id, collection, id, change, deleted, schema_version, created_at)
         VALUES (?, 'attachments', 'a1', ?, 0, 1, '2026-12-01T00:00:00.000Z')",
    )
    .bind(&user)
    .bind(&big)
    .execute(a.store().pool())
    .await
    .unwrap();
    a.create_note("small and fine").await.unwrap();
    let s = sync(&a).await;
    assert_eq!((s.pending_changes, s.refused_changes), (0, 1), "{s:?}");
    let why: String =
        sqlx::query_scalar("SELECT last_error FROM record_outbox WHERE state = 'refused'")
            .fetch_one(a.store().pool())
            .await
            .unwrap();
    assert!(why.contains("RECORD_TOO_LARGE"), "{why}");
    sync(&b).await;
    assert_eq!(note_bodies(&b).await, ["small and fine"]);
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn over_quota_only_the_refused_changes_are_set_aside() {
    let mut server = RefServer::reserve().await;
    let mut config = server.config();
    config.records.guest_max_records = 3;
    server.up_with(config).await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    let mut notes = Vec::new();
    for i in 0..5 {
        notes.push(a.create_note(&format!("note {i}")).await.unwrap());
    }
    // One batch of five is refused whole (QUOTA_EXCEEDED); one by one, three fit.
    let s = sync(&a).await;
    assert_eq!((s.pending_changes, s.refused_changes), (0, 2), "{s:?}");
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT last_error FROM record_outbox WHERE state = 'refused'")
            .fetch_all(a.store().pool())
            .await
            .unwrap();
    assert!(
        reasons.iter().all(|r| r.contains("QUOTA_EXCEEDED")),
        "{reasons:?}"
    );
    // The queue keeps flowing: an edit of a note the server holds goes through.
    a.update_note(&notes[0].id, "note 0, edited").await.unwrap();
    let s = sync(&a).await;
    assert_eq!((s.pending_changes, s.refused_changes), (0, 2));
    sync(&b).await;
    assert_eq!(
        note_bodies(&b).await,
        ["note 0, edited", "note 1", "note 2"]
    );
    cleanup(&[&a_dev, &b_dev], &user).await;
}

fn copy_server_db(from: &std::path::Path, to: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("server.db{suffix}");
        let _ = std::fs::remove_file(to.join(&name));
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

#[tokio::test]
async fn a_server_restored_from_a_backup_gets_back_what_it_lost() {
    let mut server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    a.create_note("before the backup").await.unwrap();
    sync(&a).await;
    let backup = tempfile::tempdir().unwrap();
    server.down().await;
    copy_server_db(server.dir.path(), backup.path());
    server.up().await;
    a.create_note("after the backup").await.unwrap();
    a.set_preference("theme", json!("dark")).await.unwrap();
    sync(&a).await;
    // The disk dies; the backup comes back. A's cursor is now ahead of the log.
    server.down().await;
    copy_server_db(backup.path(), server.dir.path());
    server.up().await;
    let s = sync(&a).await;
    assert_eq!(s.pending_changes, 0, "{s:?}");
    sync(&b).await;
    assert_eq!(
        note_bodies(&b).await,
        ["after the backup", "before the backup"]
    );
    assert_eq!(pref(&b, "theme").await, "dark");
    assert_eq!(note_bodies(&a).await, note_bodies(&b).await);
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn a_change_shows_on_the_other_online_device_live() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    let b = Arc::new(b);
    let mut status = b.subscribe_sync();
    tokio::spawn(Arc::clone(&b).run_sync());
    // B's first pass, then its events stream is what wakes it (its periodic pass
    // is a minute away).
    while status.borrow_and_update().state != SyncState::UpToDate {
        status.changed().await.unwrap();
    }
    let mut delays = Vec::new();
    for i in 0..5 {
        let body = format!("live note {i}");
        a.create_note(&body).await.unwrap();
        sync(&a).await;
        let pushed = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !note_bodies(&b).await.contains(&body) {
                status.changed().await.unwrap();
            }
        })
        .await
        .expect("B heard of the push within 5 s");
        delays.push(pushed.elapsed());
    }
    let worst = delays.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(2), "{delays:?}");
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn on_better_auth_records_stay_on_the_device_and_the_status_says_so() {
    let peer = guestpass_testkit::better_auth::BetterAuthPeer::start();
    let device = Device::new(&peer.base_url, Dialect::BetterAuth);
    let app = device.launch().await;
    let me = app.ensure_session().await.unwrap();
    app.create_note("only here").await.unwrap();
    app.set_preference("theme", json!("dark")).await.unwrap();
    let s = sync(&app).await;
    assert!(!s.records_on_server, "{s:?}");
    // Nothing was sent: the changes wait, should the backend ever gain the API.
    assert_eq!(s.pending_changes, 2, "{s:?}");
    assert!(s.last_saved_at.is_none());
    assert_eq!(note_bodies(&app).await, ["only here"]);
    device.forget_keyring_fast(&me.user.id).await;
}

/// A server that no longer speaks this app's sync protocol: a proxy in front of the
/// real server that answers the sync routes 426 `CLIENT_TOO_OLD`, as a server whose
/// `SYNC_PROTOCOL_MIN` moved past this build would.
async fn too_old_proxy(upstream: String) -> String {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let (client, upstream) = (client.clone(), upstream.clone());
        async move {
            if req.uri().path().starts_with("/api/auth/sync/") {
                let body =
                    json!({"code": "CLIENT_TOO_OLD", "message": "Update the app to keep syncing."});
                return (StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response();
            }
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let mut forward = client
                .request(parts.method.clone(), format!("{upstream}{}", parts.uri))
                .body(bytes);
            for (k, v) in &parts.headers {
                if k != "host" {
                    forward = forward.header(k, v);
                }
            }
            let resp = forward.send().await.unwrap();
            let mut out = Response::builder().status(resp.status().as_u16());
            for (k, v) in resp.headers() {
                if k != "transfer-encoding" && k != "connection" {
                    out = out.header(k, v);
                }
            }
            out.body(Body::from(resp.bytes().await.unwrap())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_server_that_refuses_this_app_as_too_old_is_named_and_nothing_is_lost() {
    let server = RefServer::start().await;
    let device = Device::new(&too_old_proxy(server.url()).await, Dialect::Guestpass);
    let app = device.launch().await;
    let me = app.ensure_session().await.unwrap();
    app.create_note("waits for an update").await.unwrap();
    let s = app.sync_now().await;
    assert_eq!(s.state, SyncState::NeedsAttention, "{s:?}");
    let reason = s.reason.clone().unwrap();
    assert_eq!(
        reason.code,
        guestpass_proto::ErrorCode::ClientTooOld,
        "{s:?}"
    );
    assert_eq!(reason.message, "Update the app to keep syncing.");
    assert_eq!(s.pending_changes, 1, "the change waits: {s:?}");
    assert!(
        server.admin_user(&me.user.id).await.is_some(),
        "registered through the proxy"
    );
    device.forget_keyring_fast(&me.user.id).await;
}

#[tokio::test]
async fn a_damaged_change_from_another_device_is_skipped_and_the_rest_applies() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    a.create_note("fine").await.unwrap();
    sync(&a).await;
    // A broken peer pushes garbage for a note, a preference and an unknown collection.
    use base64::Engine as _;
    let garbage =
        base64::engine::general_purpose::STANDARD.encode(b"\x85\x6f\x4a\x83 not a change");
    let token = a_dev.keyring(&user, "remote-session").unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/sync/push", server.url()))
        .bearer_auth(&token)
        .header(guestpass_proto::routes::SYNC_PROTOCOL_HEADER, "1")
        .json(&json!({"changes": [
            {"collection": "notes", "id": "note_broken", "change": garbage, "schemaVersion": 1},
            {"collection": "prefs", "id": "theme", "change": garbage, "schemaVersion": 1},
            {"collection": "photos", "id": "p1", "change": garbage, "schemaVersion": 7},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    a.create_note("after the garbage").await.unwrap();
    sync(&a).await;
    sync(&b).await;
    assert_eq!(note_bodies(&b).await, ["after the garbage", "fine"]);
    assert!(pref(&b, "theme").await.is_null());
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn fields_of_a_newer_schema_are_kept_and_written_back() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    // A newer app (schema 2) wrote a preference with a field this build does not know.
    use base64::Engine as _;
    let newer = json!({"value": "dark", "hlc": {"wall": 1, "counter": 0, "actor": "newer"}, "syncAcross": ["desktop"]});
    let change = base64::engine::general_purpose::STANDARD.encode(newer.to_string());
    let token = a_dev.keyring(&user, "remote-session").unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/auth/sync/push", server.url()))
        .bearer_auth(&token)
        .header(guestpass_proto::routes::SYNC_PROTOCOL_HEADER, "1")
        .json(&json!({"changes": [{"collection": "prefs", "id": "theme", "change": change, "schemaVersion": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sync(&b).await;
    assert_eq!(pref(&b, "theme").await, "dark");
    // This build changes the value: the unknown field and the newer version go back up.
    b.set_preference("theme", json!("light")).await.unwrap();
    let (written, version): (Vec<u8>, i64) = sqlx::query_as(
        "SELECT change, schema_version FROM record_outbox WHERE collection = 'prefs' AND id = 'theme'",
    )
    .fetch_one(b.store().pool())
    .await
    .unwrap();
    let written: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert_eq!((written["value"].clone(), version), (json!("light"), 2));
    assert_eq!(written["syncAcross"], json!(["desktop"]));
    sync(&b).await;
    sync(&a).await;
    assert_eq!(pref(&a, "theme").await, "light");
    cleanup(&[&a_dev, &b_dev], &user).await;
}

#[tokio::test]
async fn notes_written_before_records_existed_are_adopted_and_synced() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    // Notes from a build before record sync: view rows without records. The
    // device then updates to this build, whose migration lists them (it is undone
    // and run again on the relaunch, with the old notes in the file).
    let db = a.store().path();
    a.store().close().await;
    drop(a);
    let url = format!("sqlite://{}", db.display());
    let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    for (id, body) in [
        ("note_01OLD0000000000000000000A", "old one"),
        ("note_01OLD0000000000000000000B", "old two"),
    ] {
        sqlx::query("INSERT INTO notes (id, user_id, body, created_at, updated_at) VALUES (?, ?, ?, '2026-11-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z')")
            .bind(id)
            .bind(&user)
            .bind(body)
            .execute(&mut raw)
            .await
            .unwrap();
    }
    for undo in [
        "DROP TABLE notes_unadopted",
        "DROP INDEX records_due",
        "DELETE FROM _sqlx_migrations WHERE version = 20261207000001",
    ] {
        sqlx::query(undo).execute(&mut raw).await.unwrap();
    }
    drop(raw);
    let a = a_dev.launch().await;
    assert_eq!(a.ensure_session().await.unwrap().user.id, user);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM notes_unadopted").await, 2);
    a.update_note("note_01OLD0000000000000000000B", "old two, edited")
        .await
        .unwrap();
    sync(&a).await;
    sync(&b).await;
    assert_eq!(note_bodies(&b).await, ["old one", "old two, edited"]);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM notes_unadopted").await, 0);
    cleanup(&[&a_dev, &b_dev], &user).await;
}
