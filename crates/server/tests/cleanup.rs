//! The stale-guest cleanup over real HTTP and the store, on SQLite and (with
//! GUESTPASS_TEST_POSTGRES_URL) on PostgreSQL: exactly the guests inactive past
//! `maxAge` go, each audited once, across batch boundaries. PostgreSQL's own
//! paths (deletion by set, the cascades) are `cleanup_pg.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

both_backends!(cleanup_deletes_exactly_the_stale_guests);

async fn cleanup_deletes_exactly_the_stale_guests(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.anonymous_per_minute = 0;
        c.auth_methods.anonymous =
            serde_json::from_value(json!({"enabled": true, "maxAge": 3600})).unwrap();
    })
    .await;
    let (stale1, stale1_token) = s.guest().await;
    let (stale2, _) = s.guest().await;
    let (active, active_token) = s.guest().await;
    let (upgraded, _) = s.full_user("stays@example.com").await;
    // Many more stale guests straight into the store, to cross batch boundaries
    // (`cleanup::BATCH`): each batch starts its scan where the one before stopped,
    // so their last activity takes 1,000 values (4 or 5 guests each, ties across
    // every boundary) in an order that is not the order they were created in.
    let db = s.handle.database();
    let now = guestpass_server::Clock::now_ms(&s.clock);
    let bulk_len = 2 * guestpass_server::cleanup::BATCH as usize + 500;
    let guests: Vec<_> = (0..bulk_len)
        .map(|i| {
            let id = guestpass_proto::new_user_id();
            let mut user = guestpass_server::db::UserRow::new_guest(id.clone(), now);
            user.last_active_at = now - (i as i64 * 7_919 % 1_000);
            let (session, _) = guestpass_server::auth::mint_session(&id, now);
            guestpass_server::db::NewGuest {
                user,
                session,
                audits: Vec::new(),
                device_key_hash: None,
                rate: None,
            }
        })
        .collect();
    for batch in guests.chunks(500) {
        let (written, _) = tokio::sync::oneshot::channel();
        db.create_guests(batch, written).await.unwrap();
    }
    let bulk: Vec<String> = guests.into_iter().map(|g| g.user.id).collect();

    s.clock.advance(Duration::minutes(90));
    // Activity within maxAge keeps a guest.
    let (_, me) = s.get("/get-session", Some(&active_token)).await;
    assert_eq!(me["user"]["id"], active);
    s.clock.advance(Duration::minutes(40));
    assert_eq!(
        guestpass_server::cleanup::dry_run(&db, &s.clock, 3600)
            .await
            .unwrap(),
        bulk_len as i64 + 2
    );

    let report = s.handle.run_cleanup().await.unwrap();
    assert_eq!(report.guests_deleted, bulk_len + 2);
    assert_eq!(
        s.handle.run_cleanup().await.unwrap().guests_deleted,
        0,
        "nothing left to delete"
    );

    assert_eq!(
        s.get("/get-session", Some(&stale1_token)).await,
        (StatusCode::OK, Value::Null)
    );
    let (_, list) = s.admin_get("/admin/list-users?limit=200").await;
    let mut left: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    left.sort();
    let mut expected = vec![active.as_str(), upgraded.as_str()];
    expected.sort();
    assert_eq!(left, expected);

    let mut ids: Vec<String> = Vec::new();
    for e in s.audit_events_where("event=user.deleted&").await {
        assert_eq!(e["actor"], "system");
        assert_eq!(e["detail"]["reason"], "inactive", "{e}");
        assert!(e["ipHash"].is_null(), "{e}");
        ids.push(e["userId"].as_str().unwrap().to_string());
    }
    ids.sort();
    let mut want = bulk;
    want.extend([stale1, stale2]);
    want.sort();
    assert_eq!(
        ids, want,
        "each stale guest deleted and audited exactly once"
    );
    s.stop().await;
}
