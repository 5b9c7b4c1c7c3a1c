//! Record sync in bulk between two real devices: more notes than one pull page, one
//! push and one multi-row statement hold (the device folds a page in a few
//! statements, so a page split wrongly would drop or repeat notes), then hundreds
//! of edits and deletes crossing in both directions. A device's own changes coming
//! back in its pull are known as its own and not folded in again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use guestpass_core::{Guestpass, SyncState};
use guestpass_tests::{count, twin_devices, RefServer};

async fn sync(g: &Guestpass) {
    let s = g.sync_now().await;
    assert_eq!(s.state, SyncState::UpToDate, "{s:?}");
    assert_eq!((s.pending_changes, s.refused_changes), (0, 0), "{s:?}");
}

/// What a device lists: id → (body, createdAt).
async fn shown(g: &Guestpass) -> BTreeMap<String, (String, String)> {
    g.list_notes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.id, (n.body, n.created_at)))
        .collect()
}

/// Fails naming the first few notes the two lists differ on (not 1,200 of them).
fn assert_same(
    b: &BTreeMap<String, (String, String)>,
    a: &BTreeMap<String, (String, String)>,
    what: &str,
) {
    let differ: Vec<_> = a
        .keys()
        .chain(b.keys())
        .filter(|id| a.get(*id) != b.get(*id))
        .take(5)
        .map(|id| (id, a.get(id), b.get(id)))
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: A lists {}, B {}; first differences (A, B): {differ:?}",
        a.len(),
        b.len()
    );
}

/// 1,200 notes: two pull pages (1,000 each) and three push batches (500 each), and
/// a page's writes split into statements of 500 rows.
const NOTES: usize = 1200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_notes_and_hundreds_of_edits_and_deletes_arrive_whole() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    let mut ids = Vec::new();
    for i in 0..NOTES {
        ids.push(a.create_note(&format!("note {i}")).await.unwrap().id);
    }
    let written = "SELECT MAX(updated_at) FROM records";
    let before: Option<String> = sqlx::query_scalar(written)
        .fetch_one(a.store().pool())
        .await
        .unwrap();
    sync(&a).await;
    // A's own 1,200 changes came back in its pull and were known as its own: no
    // record was loaded and written again, and nothing is left waiting for them.
    let after: Option<String> = sqlx::query_scalar(written)
        .fetch_one(a.store().pool())
        .await
        .unwrap();
    assert_eq!(after, before, "A's pull rewrote records it already held");
    assert_eq!(count(&a, "SELECT COUNT(*) FROM record_echo").await, 0);
    sync(&b).await;
    let on_a = shown(&a).await;
    assert_eq!(on_a.len(), NOTES);
    assert_same(&shown(&b).await, &on_a, "B lists every note as A wrote it");

    // A edits 600 and deletes 500; meanwhile B, offline, edits one A deletes (the
    // edit wins) and deletes one A edits (the edit wins again: it was concurrent).
    for id in &ids[..600] {
        a.update_note(id, &format!("{id}: edited on A"))
            .await
            .unwrap();
    }
    for id in &ids[600..1100] {
        a.delete_note(id).await.unwrap();
    }
    b.update_note(&ids[700], "kept by B").await.unwrap();
    b.delete_note(&ids[5]).await.unwrap();
    sync(&a).await;
    sync(&b).await;
    sync(&a).await;

    let on_a = shown(&a).await;
    assert_eq!(on_a.len(), 600 + 1 + 100, "edited, revived by B, untouched");
    assert_eq!(on_a[&ids[0]].0, format!("{}: edited on A", ids[0]));
    assert_eq!(on_a[&ids[5]].0, format!("{}: edited on A", ids[5]));
    assert_eq!(on_a[&ids[700]].0, "kept by B");
    assert_eq!(on_a[&ids[1150]].0, "note 1150");
    assert!(!on_a.contains_key(&ids[600]));
    assert_same(&shown(&b).await, &on_a, "both devices list the same notes");
    // The view and the records agree on B: every live record is listed, once.
    assert_eq!(
        count(
            &b,
            "SELECT COUNT(*) FROM records WHERE collection = 'notes' AND deleted = 0"
        )
        .await,
        i64::try_from(on_a.len()).unwrap()
    );
    for d in [&a_dev, &b_dev] {
        d.forget_keyring_fast(&user).await;
    }
}

#[tokio::test]
async fn a_device_that_lost_its_records_takes_its_own_changes_back() {
    let server = RefServer::start().await;
    let (a_dev, a, b_dev, b, user) = twin_devices(&server).await;
    // Every pulled change makes a snapshot due, so the pass ends with a push after
    // its pull: A's own snapshot is still awaited as an echo when the pass ends.
    a.store().set_compact_after(1);
    let n = a.create_note("kept through a lost database").await.unwrap();
    sync(&a).await;
    assert!(count(&a, "SELECT COUNT(*) FROM record_echo").await > 0);
    // A's records and view are lost (the sync state with them); the server has all.
    for table in ["records", "record_outbox", "record_sync", "notes"] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(a.store().pool())
            .await
            .unwrap();
    }
    sync(&a).await;
    let on_a = shown(&a).await;
    assert_eq!(on_a[&n.id].0, "kept through a lost database");
    sync(&b).await;
    assert_same(&shown(&b).await, &on_a, "B lists what A lists");
    for d in [&a_dev, &b_dev] {
        d.forget_keyring_fast(&user).await;
    }
}
