//! Record sync refusals, on SQLite and PostgreSQL: quotas and size limits
//! refuse a push whole (and a smaller one then goes through), a too-old or
//! silent app is told to update, and bad input gets typed 400s, never a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::sync::*;
use common::*;
use guestpass_proto::{routes, RECORD_CHANGE_MAX_BYTES};
use serde_json::{json, Value};

both_backends!(
    quotas_and_size_limits_refuse_the_whole_push,
    old_or_silent_clients_are_told_to_update,
    bad_input_gets_typed_errors,
);

async fn quotas_and_size_limits_refuse_the_whole_push(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.records.guest_max_records = 3;
        c.records.guest_max_bytes = 100;
    })
    .await;
    let (_, guest) = s.guest().await;
    // Four records (one a tombstone: tombstones count) > 3: nothing kept.
    let four = vec![
        note("a", "1"),
        note("b", "2"),
        note("c", "3"),
        change("notes", "d", b"", true),
    ];
    let refused = push(&s, &guest, four.clone()).await;
    assert_error(&refused, 413, "QUOTA_EXCEEDED");
    let message = refused.1["message"].as_str().unwrap();
    assert!(
        message.contains("guest") && message.contains("3 records and 100 bytes"),
        "{message}"
    );
    assert_eq!(pull_all(&s, &guest, None).await.0, Vec::<Value>::new());
    // A smaller push goes through, and more changes to the same records too.
    assert_eq!(push_ok(&s, &guest, four[..3].to_vec()).await, (3, 0));
    assert_eq!(push_ok(&s, &guest, vec![note("a", "1b")]).await, (1, 0));
    assert_error(
        &push(&s, &guest, vec![note("d", "4")]).await,
        413,
        "QUOTA_EXCEEDED",
    );
    // Bytes: 5 used; 96 more would make 101 > 100.
    let big = "x".repeat(96);
    assert_error(
        &push(&s, &guest, vec![note("a", &big)]).await,
        413,
        "QUOTA_EXCEEDED",
    );
    assert_eq!(
        push_ok(&s, &guest, vec![note("a", &big[..95])]).await,
        (1, 0)
    );
    assert_eq!(pull_all(&s, &guest, None).await.0.len(), 5);

    // One change over 256 KiB refuses the push, and names the record.
    let (_, account) = s.full_user("big@example.com").await;
    let max = vec![7u8; RECORD_CHANGE_MAX_BYTES];
    let over = vec![7u8; RECORD_CHANGE_MAX_BYTES + 1];
    let refused = push(
        &s,
        &account,
        vec![note("fine", "ok"), change("notes", "huge", &over, false)],
    )
    .await;
    assert_error(&refused, 413, "RECORD_TOO_LARGE");
    assert!(
        refused.1["message"]
            .as_str()
            .unwrap()
            .contains("notes/huge"),
        "{}",
        refused.1
    );
    assert_eq!(pull_all(&s, &account, None).await.0, Vec::<Value>::new());
    // Exactly the limit, several per push (a body well over the global 64 KiB).
    let at_limit: Vec<Value> = (0..20)
        .map(|i| change("files", &format!("f{i}"), &max, i == 3))
        .collect();
    assert_eq!(push_ok(&s, &account, at_limit).await, (20, 0));
    // A body over the push route's own limit (8 MiB) is refused whole.
    let too_many: Vec<Value> = (0..25)
        .map(|i| change("files", &format!("g{i}"), &max, false))
        .collect();
    assert_error(
        &push(&s, &account, too_many).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    // Pages stay bounded in bytes: 4 MiB cut the 5 MiB of changes in two.
    let (status, page) = pull(&s, &account, None, Some(1000)).await;
    assert_eq!(status, 200);
    let n = page["changes"].as_array().unwrap().len();
    assert!(n == 16 && page["more"] == true, "{n} changes in one page");
    assert_eq!(pull_all(&s, &account, None).await.0.len(), 20);
    s.stop().await;
}

async fn old_or_silent_clients_are_told_to_update(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    for version in [None, Some("0"), Some("abc"), Some("")] {
        for (method, path) in [
            ("POST", "/sync/push"),
            ("GET", "/sync/pull"),
            ("GET", "/sync/events"),
        ] {
            let mut req = s
                .http
                .request(method.parse().unwrap(), s.url(path))
                .bearer_auth(&token);
            if method == "POST" {
                req = req.json(&json!({"changes": [note("a", "b")]}));
            }
            if let Some(v) = version {
                req = req.header(routes::SYNC_PROTOCOL_HEADER, v);
            }
            let got = into_json(req.send().await.unwrap()).await;
            assert_error(&got, 426, "CLIENT_TOO_OLD");
        }
    }
    assert_eq!(
        pull_all(&s, &token, None).await.0,
        Vec::<Value>::new(),
        "nothing was pushed"
    );
    s.stop().await;
}

async fn bad_input_gets_typed_errors(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let bad = |c: &str, id: &str, change: &str| json!({"changes": [{"collection": c, "id": id, "change": change, "schemaVersion": 1}]});
    for body in [
        bad("Notes", "a", "AA=="),
        bad("", "a", "AA=="),
        bad(&"n".repeat(33), "a", "AA=="),
        bad("notes", "", "AA=="),
        bad("notes", "a/b", "AA=="),
        bad("notes", &"i".repeat(129), "AA=="),
        bad("notes", "a", "not base64!"),
        bad("notes", "a", "AA"),
        json!({"changes": [{"collection": "notes", "id": "a", "change": "AA==",
                            "schemaVersion": 2_147_483_648u64}]}),
        json!({"changes": [{"collection": "notes", "id": "a", "change": "AA==",
                            "schemaVersion": 1, "value": "extra"}]}),
        json!({"changes": (0..501).map(|i| note(&format!("n{i}"), "x")).collect::<Vec<_>>()}),
        json!({"changes": "none"}),
        json!({}),
    ] {
        let got = push_raw(&s, &token, body.clone()).await;
        assert_error(&got, 400, "INVALID_REQUEST");
    }
    for (after, limit) in [
        (Some("garbage"), None),
        (Some("."), None),
        (Some("abc."), None),
        (Some(".5"), None),
        (Some("xyz.5"), None),
        (Some("abc.-1"), None),
        (Some("abc.99999999999999999999"), None),
        (None, Some(0)),
        (None, Some(1001)),
    ] {
        assert_error(
            &pull(&s, &token, after, limit).await,
            400,
            "INVALID_REQUEST",
        );
    }
    assert_eq!(pull_all(&s, &token, None).await.0, Vec::<Value>::new());
    s.stop().await;
}
