//! Idempotent registration: a device whose first anonymous sign-in was committed
//! but never answered asks again with the same id and device key and gets a new
//! session for the same guest; anyone else still gets USER_ID_TAKEN. On SQLite
//! and (with GUESTPASS_TEST_POSTGRES_URL) on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Connection;

both_backends!(
    the_same_device_key_gets_a_new_session_for_the_same_guest,
    another_key_or_no_key_is_refused,
    an_upgraded_guest_is_not_resumed,
);

const KEY: &str = "q2M1wRj0bX3nY8kZ-_4pT6vL9sA7dF5gH1jK3lZ0xCv";

fn register(id: &str, key: Option<&str>) -> Value {
    match key {
        Some(k) => json!({ "id": id, "deviceKey": k }),
        None => json!({ "id": id }),
    }
}

/// The stored digest of `id`'s device key, read straight from the database.
async fn stored_hash(s: &TestServer, id: &str) -> Option<String> {
    const Q: &str = "SELECT device_key_hash FROM users WHERE id = $1";
    if s.db.pg_name().is_some() {
        let mut conn = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        sqlx::query_scalar(Q)
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&s.db.url).await.unwrap();
        sqlx::query_scalar(Q)
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

async fn the_same_device_key_gets_a_new_session_for_the_same_guest(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let id = guestpass_proto::new_user_id();
    let first = s
        .post("/sign-in/anonymous", None, register(&id, Some(KEY)))
        .await;
    assert_eq!(first.0, 200, "{}", first.1);
    // The answer was lost; the device asks again with what it kept.
    let res = s
        .call(
            reqwest::Method::POST,
            "/sign-in/anonymous",
            None,
            Some(register(&id, Some(KEY))),
        )
        .await;
    assert_eq!(res.status(), 200);
    let header = res.headers().get("set-auth-token").cloned();
    let second = into_json(res).await;
    assert_eq!(
        header.unwrap().to_str().unwrap(),
        second.1["token"].as_str().unwrap()
    );
    assert_eq!(first.1["user"]["id"], id);
    assert_eq!(second.1["user"]["id"], id);
    assert_eq!(second.1["user"]["isAnonymous"], true);
    assert_ne!(first.1["session"]["id"], second.1["session"]["id"]);
    assert_ne!(first.1["token"], second.1["token"]);
    // Both sessions work, for the same guest.
    for body in [&first.1, &second.1] {
        let (status, got) = s.get("/get-session", body["token"].as_str()).await;
        assert_eq!(status, 200);
        assert_eq!(got["user"]["id"], id);
    }
    let (status, users) = s.admin_get("/admin/list-users?limit=100").await;
    assert_eq!(status, 200, "{users}");
    let ids: Vec<&Value> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["id"])
        .collect();
    assert_eq!(ids, [&Value::from(id.clone())], "exactly one user");

    let events = s.audit_events().await;
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["userId"] == id)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["user.created", "session.created", "session.created"]
    );

    // Only the digest is stored, never the key.
    let hash = stored_hash(&s, &id).await.unwrap();
    assert_eq!(hash, hex::encode(Sha256::digest(KEY.as_bytes())));
    if let Some(path) = s.db.url.strip_prefix("sqlite://") {
        let dir = std::path::Path::new(path).parent().unwrap();
        let mut scanned = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(
                !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
                "the device key is in the database files"
            );
            scanned += bytes.len();
        }
        assert!(scanned > 0);
    } else {
        let mut conn = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users u WHERE position($1 IN CAST(row_to_json(u) AS TEXT)) > 0",
        )
        .bind(KEY)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(found, 0, "the device key is in the users table");
    }
    s.stop().await;
}

async fn another_key_or_no_key_is_refused(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let id = guestpass_proto::new_user_id();
    let (status, body) = s
        .post("/sign-in/anonymous", None, register(&id, Some(KEY)))
        .await;
    assert_eq!(status, 200, "{body}");
    let wrong = "Zz9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT-uV_wXyZ012";
    let got = s
        .post("/sign-in/anonymous", None, register(&id, Some(wrong)))
        .await;
    assert_error(&got, 409, "USER_ID_TAKEN");
    let got = s
        .post("/sign-in/anonymous", None, register(&id, None))
        .await;
    assert_error(&got, 409, "USER_ID_TAKEN");
    // A guest registered without a key cannot be claimed with one.
    let keyless = guestpass_proto::new_user_id();
    let (status, _) = s
        .post("/sign-in/anonymous", None, register(&keyless, None))
        .await;
    assert_eq!(status, 200);
    let got = s
        .post("/sign-in/anonymous", None, register(&keyless, Some(KEY)))
        .await;
    assert_error(&got, 409, "USER_ID_TAKEN");
    // A key too short to prove anything is bad input, not a conflict.
    let got = s
        .post("/sign-in/anonymous", None, register(&id, Some("short")))
        .await;
    assert_error(&got, 400, "INVALID_REQUEST");
    let sessions = s
        .audit_events()
        .await
        .iter()
        .filter(|e| {
            e["event"] == "session.created" && (e["userId"] == id || e["userId"] == keyless)
        })
        .count();
    assert_eq!(sessions, 2, "no refused attempt created a session");
    s.stop().await;
}

async fn an_upgraded_guest_is_not_resumed(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let id = guestpass_proto::new_user_id();
    let (status, body) = s
        .post("/sign-in/anonymous", None, register(&id, Some(KEY)))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, up) = s
        .post(
            "/anonymous/upgrade",
            body["token"].as_str(),
            json!({"email": "resumed@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    let got = s
        .post("/sign-in/anonymous", None, register(&id, Some(KEY)))
        .await;
    assert_error(&got, 409, "USER_ID_TAKEN");
    s.stop().await;
}
