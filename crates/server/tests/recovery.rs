//! Guest recovery (issue 16): a guest sets a recovery key, another device signs
//! in with it as the same user; rotation and upgrades revoke it; unknown and
//! revoked keys get one answer; the route is limited per address and for
//! everyone, and audited. And the tombstones of deleted ids: a guest the cleanup
//! removed comes back from its own device; one its owner or an admin deleted
//! does not. On SQLite and (with GUESTPASS_TEST_POSTGRES_URL) on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use serde_json::{json, Value};

both_backends!(
    a_recovery_key_opens_the_same_guest_on_another_device,
    rotation_and_upgrade_revoke_the_key_and_misses_answer_alike,
    the_route_is_limited_per_address_and_for_everyone,
    a_guest_the_cleanup_removed_comes_back_from_its_device_only,
    a_deleted_or_removed_guest_stays_gone,
    bad_bodies_get_typed_errors,
);

/// A recovery key as a device sends it: 256 bits, URL-safe base64.
fn key(n: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([n; 32])
}

const DEVICE_A: &str = "a-device-key-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DEVICE_B: &str = "b-device-key-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

async fn set_key(s: &TestServer, token: &str, k: &str) -> (reqwest::StatusCode, Value) {
    s.post(
        "/anonymous/recovery-key",
        Some(token),
        json!({ "recoveryKey": k }),
    )
    .await
}

async fn restore(s: &TestServer, k: &str, device: Option<&str>) -> (reqwest::StatusCode, Value) {
    let body = match device {
        Some(d) => json!({ "recoveryKey": k, "deviceKey": d }),
        None => json!({ "recoveryKey": k }),
    };
    s.post("/sign-in/recovery", None, body).await
}

async fn a_recovery_key_opens_the_same_guest_on_another_device(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, token) = s.guest().await;
    let set = set_key(&s, &token, &key(1)).await;
    assert_eq!(set.0, 200, "{}", set.1);

    let (status, body) = restore(&s, &key(1), Some(DEVICE_B)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], id.as_str());
    assert_eq!(body["user"]["isAnonymous"], true);
    let restored = body["token"].as_str().unwrap();
    assert_ne!(restored, token, "a session of its own");
    // Both devices work: the old session is untouched.
    for t in [token.as_str(), restored] {
        let (status, me) = s.get("/get-session", Some(t)).await;
        assert_eq!(
            (status.as_u16(), me["user"]["id"].as_str()),
            (200, Some(id.as_str()))
        );
    }
    let events = s.audit_events().await;
    let via: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "session.created" && e["detail"]["via"] == "recovery")
        .collect();
    assert_eq!(via.len(), 1, "{events:#?}");
    assert_eq!(via[0]["userId"], id.as_str());
    assert!(events
        .iter()
        .any(|e| e["event"] == "user.updated" && e["detail"]["change"] == "recoveryKey"));
    // Nothing the server keeps or says holds the key.
    let dump = serde_json::to_string(&events).unwrap();
    assert!(!dump.contains(&key(1)));
    s.stop().await;
}

async fn rotation_and_upgrade_revoke_the_key_and_misses_answer_alike(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    assert_eq!(set_key(&s, &token, &key(1)).await.0, 200);
    assert_eq!(set_key(&s, &token, &key(2)).await.0, 200);
    // Everything but the request id.
    let answer = |mut got: (reqwest::StatusCode, Value)| {
        got.1.as_object_mut().unwrap().remove("requestId");
        got
    };
    let rotated = answer(restore(&s, &key(1), None).await);
    let unknown = answer(restore(&s, &key(9), None).await);
    assert_error(&rotated, 401, "INVALID_RECOVERY_PHRASE");
    assert_eq!(
        rotated, unknown,
        "a revoked key and an unknown one answer alike"
    );
    assert_eq!(restore(&s, &key(2), None).await.0, 200);

    // An upgrade revokes it: the account recovers by email.
    let account = s
        .upgrade(
            &token,
            json!({"email": "up@example.com", "password": "password123"}),
        )
        .await;
    assert_error(
        &restore(&s, &key(2), None).await,
        401,
        "INVALID_RECOVERY_PHRASE",
    );
    // And an account cannot set one.
    let refused = set_key(&s, &account, &key(3)).await;
    assert_error(&refused, 403, "USER_NOT_ANONYMOUS");
    s.stop().await;
}

async fn the_route_is_limited_per_address_and_for_everyone(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.recovery_per_minute = 3;
        c.rate_limit.recovery_global_per_minute = 5;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let (id, token) = s.guest().await;
    assert_eq!(set_key(&s, &token, &key(1)).await.0, 200);
    let from = |ip: &'static str, k: String| {
        let s = &s;
        async move {
            let res = s
                .http
                .post(s.url("/sign-in/recovery"))
                .header("x-forwarded-for", ip)
                .json(&json!({ "recoveryKey": k }))
                .send()
                .await
                .unwrap();
            let retry = res.headers().get("retry-after").is_some();
            let (status, body) = into_json(res).await;
            (
                status.as_u16(),
                body["code"].as_str().unwrap_or("").to_owned(),
                retry,
            )
        }
    };
    // Per address (an IPv6 client by its /64): 3 tries, then 429 with Retry-After,
    // the right key too; the key plays no part in the count.
    for n in 0..3u8 {
        let got = from("2001:db8:1:1::1", key(10 + n)).await;
        assert_eq!(got.1, "INVALID_RECOVERY_PHRASE");
    }
    let limited = from("2001:db8:1:1::ffff", key(1)).await;
    assert_eq!(limited, (429, "RATE_LIMITED".into(), true));
    // Another address still gets through, until everyone's budget (5) is spent.
    let ok = from("192.0.2.7", key(1)).await;
    assert_eq!(ok.0, 200, "{ok:?}");
    let _ = from("192.0.2.8", key(20)).await;
    assert_eq!(from("192.0.2.9", key(1)).await.0, 429);
    // The next minute opens again.
    s.clock.advance(Duration::minutes(1));
    let (status, body) = {
        let got = from("192.0.2.9", key(1)).await;
        (got.0, got.1)
    };
    assert_eq!(status, 200, "{body}");
    let _ = id;
    s.stop().await;
}

async fn a_guest_the_cleanup_removed_comes_back_from_its_device_only(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.auth_methods.anonymous =
            serde_json::from_value(json!({"enabled": true, "maxAge": 3600})).unwrap()
    })
    .await;
    let id = guestpass_proto::new_user_id();
    let reg = |device: &'static str| {
        let id = id.clone();
        let s = &s;
        async move {
            s.post(
                "/sign-in/anonymous",
                None,
                json!({ "id": id, "deviceKey": device }),
            )
            .await
        }
    };
    let (status, first) = reg(DEVICE_A).await;
    assert_eq!(status, 200, "{first}");
    assert!(
        first.get("revived").is_none(),
        "a first registration is no revival"
    );
    assert_eq!(
        set_key(&s, first["token"].as_str().unwrap(), &key(4))
            .await
            .0,
        200
    );
    s.clock.advance(Duration::hours(2));
    assert_eq!(s.handle.run_cleanup().await.unwrap().guests_deleted, 1);
    // While it is gone its phrase finds nothing.
    assert_error(
        &restore(&s, &key(4), None).await,
        401,
        "INVALID_RECOVERY_PHRASE",
    );
    // Someone else's device key does not bring it back.
    assert_error(&reg(DEVICE_B).await, 409, "USER_ID_TAKEN");
    // Its own device does, under the same id, and is told so.
    let (status, back) = reg(DEVICE_A).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(
        (back["user"]["id"].as_str(), back["revived"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    // With it, its recovery key works again.
    assert_eq!(restore(&s, &key(4), None).await.0, 200);
    // A second ask is an ordinary resume, not a second revival.
    let (status, again) = reg(DEVICE_A).await;
    assert_eq!(status, 200, "{again}");
    assert!(again.get("revived").is_none());
    let created: Vec<Value> = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["event"] == "user.created" && e["userId"] == id.as_str())
        .collect();
    assert_eq!(created.len(), 2);
    assert_eq!(created[1]["detail"]["revived"], "cleanup");
    s.stop().await;
}

async fn a_deleted_or_removed_guest_stays_gone(backend: Backend) {
    let s = TestServer::start(&backend).await;
    for by_admin in [false, true] {
        let id = guestpass_proto::new_user_id();
        let body = json!({ "id": id, "deviceKey": DEVICE_A });
        let (status, reg) = s.post("/sign-in/anonymous", None, body.clone()).await;
        assert_eq!(status, 200, "{reg}");
        let token = reg["token"].as_str().unwrap();
        assert_eq!(set_key(&s, token, &key(5)).await.0, 200);
        let gone = if by_admin {
            s.admin_post("/admin/remove-user", json!({ "userId": id }))
                .await
        } else {
            s.post("/delete-anonymous-user", Some(token), json!({}))
                .await
        };
        assert_eq!(gone.0, 200, "{}", gone.1);
        let back = s.post("/sign-in/anonymous", None, body).await;
        assert_error(&back, 410, "GUEST_REMOVED");
        assert_error(
            &restore(&s, &key(5), None).await,
            401,
            "INVALID_RECOVERY_PHRASE",
        );
    }
    s.stop().await;
}

async fn bad_bodies_get_typed_errors(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    assert_error(&set_key(&s, &token, "short").await, 400, "INVALID_REQUEST");
    assert_error(
        &s.post(
            "/anonymous/recovery-key",
            None,
            json!({ "recoveryKey": key(1) }),
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &restore(&s, "short", None).await,
        401,
        "INVALID_RECOVERY_PHRASE",
    );
    assert_error(
        &restore(&s, &key(1), Some("x")).await,
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        &s.post("/sign-in/recovery", None, json!({ "phrase": "a b c" }))
            .await,
        400,
        "INVALID_REQUEST",
    );
    s.stop().await;
}
