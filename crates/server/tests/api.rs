//! Every route and every documented error of DESIGN.md §4, over real HTTP, on
//! SQLite and (with GUESTPASS_TEST_POSTGRES_URL) on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

both_backends!(
    anonymous_sign_in_creates_a_guest,
    client_minted_ids_are_accepted_once,
    a_guest_cannot_sign_in_anonymously_again,
    get_session_slides_once_a_day_and_expires,
    upgrade_is_in_place_and_the_email_link_verifies_once,
    upgrade_errors_match_the_spec,
    concurrent_upgrades_to_one_email_let_one_win,
    email_sign_in_on_another_device,
    sign_out_revokes_the_session,
    a_guest_deletes_itself,
    admin_api_needs_the_key,
    admin_lists_users_newest_first_with_cursor_paging,
    admin_removes_users,
    audit_log_records_every_event_and_pages,
    rate_limit_refuses_the_31st_request_per_minute,
    rate_limit_can_be_turned_off,
    bad_input_gets_json_4xx,
    social_upgrade_verifies_the_id_token_and_links_in_place,
    database_outage_is_503_and_recovers,
);

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn anonymous_sign_in_creates_a_guest(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let res = s
        .call(Method::POST, "/sign-in/anonymous", None, Some(json!({})))
        .await;
    assert_eq!(res.status(), 200);
    let header = res
        .headers()
        .get("set-auth-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (_, body) = into_json(res).await;
    let token = body["token"].as_str().unwrap();
    assert_eq!(header, token);
    assert!(token.len() >= 43, "token has at least 256 bits");
    let user = &body["user"];
    let id = user["id"].as_str().unwrap();
    assert_eq!(guestpass_proto::parse_user_id(id).unwrap(), id);
    assert_eq!(user["email"], Value::Null);
    assert_eq!(user["name"], Value::Null);
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["isAnonymous"], true);
    assert_eq!(user["metadata"], json!({}));
    assert_eq!(time(&user["createdAt"]), t0());
    assert_eq!(
        user["createdAt"].as_str().unwrap(),
        "2030-01-01T12:00:05.000Z"
    );
    let session = &body["session"];
    assert!(session["id"].as_str().unwrap().starts_with("ses_"));
    assert_eq!(session["userId"], id);
    assert_eq!(time(&session["expiresAt"]), t0() + Duration::days(7));

    // No body at all is accepted too.
    let res = s
        .http
        .post(s.url("/sign-in/anonymous"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let (status, got) = s.get("/get-session", Some(token)).await;
    assert_eq!(status, 200);
    assert_eq!(got["user"], body["user"]);
    assert_eq!(got["session"], body["session"]);
    assert_eq!(
        s.get("/get-session", None).await,
        (StatusCode::OK, Value::Null)
    );
    assert_eq!(
        s.get("/get-session", Some("not-a-token")).await,
        (StatusCode::OK, Value::Null)
    );

    let events = s.audit_events().await;
    let mine: Vec<&Value> = events.iter().filter(|e| e["userId"] == id).collect();
    let kinds: Vec<&str> = mine.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user.created", "session.created"]);
    for e in mine {
        assert_eq!(e["actor"], id);
        let ip_hash = e["ipHash"].as_str().unwrap();
        assert!(
            !ip_hash.contains("127.0.0.1") && ip_hash.len() == 32,
            "{ip_hash}"
        );
        assert_eq!(time(&e["createdAt"]), t0());
    }
    s.stop().await;
}

async fn client_minted_ids_are_accepted_once(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let minted = guestpass_proto::new_user_id();
    let (status, body) = s
        .post(
            "/sign-in/anonymous",
            None,
            json!({ "id": minted.to_lowercase() }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], minted, "canonical upper-case form");
    let again = s
        .post("/sign-in/anonymous", None, json!({ "id": minted }))
        .await;
    assert_error(&again, 409, "USER_ID_TAKEN");
    assert_eq!(again.1["message"], "User id already taken");
    for bad in [
        "",
        "usr_",
        "ses_01HXYZABCDEFGHJKMNPQRSTVWX",
        "usr_' OR 1=1 --",
        "usr_01HXYZ'; DROP TABLE users;--",
        "usr_UUUUUUUUUUUUUUUUUUUUUUUUUU",
    ] {
        assert_error(
            &s.post("/sign-in/anonymous", None, json!({ "id": bad }))
                .await,
            400,
            "INVALID_USER_ID",
        );
    }
    assert_error(
        &s.post("/sign-in/anonymous", None, json!({ "id": 42 }))
            .await,
        400,
        "INVALID_REQUEST",
    );
    s.stop().await;
}

async fn a_guest_cannot_sign_in_anonymously_again(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let got = s.post("/sign-in/anonymous", Some(&token), json!({})).await;
    assert_error(
        &got,
        400,
        "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY",
    );
    // A stale or foreign token does not count as holding a guest session.
    let (status, _) = s.post("/sign-in/anonymous", Some("bogus"), json!({})).await;
    assert_eq!(status, 200);
    // After signing out the device may start a new guest.
    s.post("/sign-out", Some(&token), json!({})).await;
    let (status, _) = s.post("/sign-in/anonymous", Some(&token), json!({})).await;
    assert_eq!(status, 200);
    s.stop().await;
}

async fn get_session_slides_once_a_day_and_expires(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    s.clock.advance(Duration::hours(12));
    let (_, body) = s.get("/get-session", Some(&token)).await;
    assert_eq!(
        time(&body["session"]["expiresAt"]),
        t0() + Duration::days(7),
        "no slide within a day"
    );
    s.clock.advance(Duration::hours(13));
    let (_, body) = s.get("/get-session", Some(&token)).await;
    let slid = t0() + Duration::hours(25) + Duration::days(7);
    assert_eq!(time(&body["session"]["expiresAt"]), slid);
    assert_eq!(
        time(&body["session"]["updatedAt"]),
        t0() + Duration::hours(25)
    );
    // Stored, not just answered.
    let (_, body) = s.get("/get-session", Some(&token)).await;
    assert_eq!(time(&body["session"]["expiresAt"]), slid);
    // Unused past its expiry, the session is gone.
    s.clock.set(slid + Duration::seconds(1));
    assert_eq!(
        s.get("/get-session", Some(&token)).await,
        (StatusCode::OK, Value::Null)
    );
    s.stop().await;
}

async fn upgrade_is_in_place_and_the_email_link_verifies_once(backend: Backend) {
    let mut smtp = SmtpSink::start().await;
    let smtp_url = smtp.url();
    let s = TestServer::start_with(&backend, |c| {
        c.smtp_url = Some(guestpass_server::Secret::new(smtp_url))
    })
    .await;
    let (id, token) = s.guest().await;
    let (_, before) = s.get("/get-session", Some(&token)).await;
    s.clock.advance(Duration::minutes(5));

    let res = s
        .call(
            Method::POST,
            "/anonymous/upgrade",
            Some(&token),
            Some(json!({"email": "Jane.Doe@Example.com", "password": "securePassword123", "name": "Jane Doe"})),
        )
        .await;
    let rotated = res.headers()["set-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let (status, body) = into_json(res).await;
    assert_eq!(status, 200, "{body}");
    let guest_token = token;
    let token = rotated;
    let user = &body["user"];
    assert_eq!(user["id"], id, "same user id");
    assert_eq!(user["isAnonymous"], false);
    assert_eq!(user["email"], "jane.doe@example.com");
    assert_eq!(user["name"], "Jane Doe");
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["createdAt"], before["user"]["createdAt"]);
    assert_eq!(time(&user["updatedAt"]), t0() + Duration::minutes(5));
    assert_eq!(
        body["session"]["id"], before["session"]["id"],
        "same session"
    );
    assert_eq!(body["session"]["createdAt"], before["session"]["createdAt"]);
    assert!(body.get("token").is_none());

    // The same session, now for the full account, opened by the rotated token
    // only (issue 14): the guest's token died with the upgrade.
    let (_, now) = s.get("/get-session", Some(&token)).await;
    assert_eq!(now["user"], body["user"]);
    assert_eq!(now["session"]["id"], before["session"]["id"]);
    assert_eq!(
        s.get("/get-session", Some(&guest_token)).await,
        (StatusCode::OK, Value::Null)
    );

    let mail = smtp.next().await;
    assert_eq!(mail.to, ["jane.doe@example.com"]);
    assert!(
        mail.data.contains("Subject: Verify your email"),
        "{}",
        mail.data
    );
    let link = find_link(&mail.data);
    assert!(
        link.starts_with(&format!("{}/api/auth/verify-email?token=", s.base)),
        "{link}"
    );

    // Opening the link changes nothing (a mail scanner may fetch it); the
    // confirm button's POST verifies (issue 13; account_care.rs has the page).
    let res = s.http.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 200, "{link} in {}", mail.data);
    assert_eq!(into_json(res).await.1, json!({"valid": true}));
    let (_, now) = s.get("/get-session", Some(&token)).await;
    assert_eq!(now["user"]["emailVerified"], false);
    let confirm = json!({ "token": token_in(&link) });
    let (status, body) = s.post("/verify-email", None, confirm.clone()).await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    let (_, now) = s.get("/get-session", Some(&token)).await;
    assert_eq!(now["user"]["emailVerified"], true);
    // Works once.
    assert_error(
        &s.post("/verify-email", None, confirm).await,
        400,
        "INVALID_TOKEN",
    );
    assert_error(
        &into_json(s.http.get(&link).send().await.unwrap()).await,
        400,
        "INVALID_TOKEN",
    );
    assert_error(
        &s.get("/verify-email?token=nope", None).await,
        400,
        "INVALID_TOKEN",
    );
    assert_error(&s.get("/verify-email", None).await, 400, "INVALID_TOKEN");

    // A link expires (24 h).
    let (_, token2) = s.guest().await;
    let (status, _) = s
        .post(
            "/anonymous/upgrade",
            Some(&token2),
            json!({"email": "late@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200);
    let late = find_link(&smtp.next().await.data);
    s.clock.advance(Duration::hours(25));
    assert_error(
        &into_json(s.http.get(&late).send().await.unwrap()).await,
        400,
        "INVALID_TOKEN",
    );
    assert_error(
        &s.post("/verify-email", None, json!({ "token": token_in(&late) }))
            .await,
        400,
        "INVALID_TOKEN",
    );

    let events = s.audit_events().await;
    let updates: Vec<&Value> = events
        .iter()
        .filter(|e| e["userId"] == id && e["event"] == "user.updated")
        .collect();
    assert_eq!(updates.len(), 2, "upgrade + verification: {updates:?}");
    assert_eq!(updates[0]["actor"], id);
    assert!(updates[0]["ipHash"].is_string());
    s.stop().await;
}

async fn upgrade_errors_match_the_spec(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let ok = json!({"email": "user@example.com", "password": "securePassword123"});
    assert_error(
        &s.post("/anonymous/upgrade", None, ok.clone()).await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &s.post("/anonymous/upgrade", Some("bogus"), ok.clone())
            .await,
        401,
        "UNAUTHORIZED",
    );

    let (_, token) = s.guest().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": "securePassword123"}),
            422,
            "INVALID_EMAIL",
            "Invalid email",
        ),
        (
            json!({"email": "' OR 1=1 --", "password": "securePassword123"}),
            422,
            "INVALID_EMAIL",
            "Invalid email",
        ),
        (
            json!({"email": "user@example.com", "password": "short"}),
            422,
            "PASSWORD_TOO_SHORT",
            "Password too short",
        ),
        (
            json!({"email": "user@example.com", "password": "x".repeat(129)}),
            422,
            "PASSWORD_TOO_LONG",
            "Password too long",
        ),
    ];
    for (body, status, code, message) in cases {
        let got = s.post("/anonymous/upgrade", Some(&token), body).await;
        assert_error(&got, status, code);
        assert_eq!(got.1["message"], message);
    }
    // Exactly 8 and 128 characters are fine (checked on other guests below).
    let (_, other) = s.full_user("taken@example.com").await;
    let got = s
        .post(
            "/anonymous/upgrade",
            Some(&token),
            json!({"email": "TAKEN@example.com", "password": "x".repeat(128)}),
        )
        .await;
    assert_error(&got, 409, "EMAIL_ALREADY_IN_USE");
    assert_eq!(got.1["message"], "Email already in use");
    // The failed attempts left the guest a guest.
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert_eq!(me["user"]["isAnonymous"], true);
    let (status, _) = s
        .post(
            "/anonymous/upgrade",
            Some(&token),
            json!({"email": "eight@example.com", "password": "12345678"}),
        )
        .await;
    assert_eq!(status, 200);

    let got = s
        .post(
            "/anonymous/upgrade",
            Some(&other),
            json!({"email": "new@example.com", "password": "password123"}),
        )
        .await;
    assert_error(&got, 400, "USER_NOT_ANONYMOUS");
    assert_eq!(got.1["message"], "User is not anonymous");
    s.stop().await;
}

async fn concurrent_upgrades_to_one_email_let_one_win(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, a) = s.guest().await;
    let (_, b) = s.guest().await;
    let body = json!({"email": "race@example.com", "password": "password123"});
    let (ra, rb) = tokio::join!(
        s.post("/anonymous/upgrade", Some(&a), body.clone()),
        s.post("/anonymous/upgrade", Some(&b), body.clone())
    );
    let mut statuses = [ra.0.as_u16(), rb.0.as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra:?} {rb:?}");
    s.stop().await;
}

async fn email_sign_in_on_another_device(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, first) = s.full_user("device@example.com").await;
    let res = s
        .call(
            Method::POST,
            "/sign-in/email",
            None,
            Some(json!({"email": " Device@Example.COM ", "password": "password123"})),
        )
        .await;
    assert_eq!(res.status(), 200);
    let header = res
        .headers()
        .get("set-auth-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (_, body) = into_json(res).await;
    assert_eq!(body["token"], header);
    assert_eq!(body["user"]["id"], id);
    assert_eq!(body["user"]["isAnonymous"], false);
    assert_ne!(header, first);
    let (_, me) = s.get("/get-session", Some(&header)).await;
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["session"]["id"], body["session"]["id"]);

    let wrong = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "device@example.com", "password": "password124"}),
        )
        .await;
    assert_error(&wrong, 401, "INVALID_EMAIL_OR_PASSWORD");
    assert_eq!(wrong.1["message"], "Invalid email or password");
    let unknown = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "nobody@example.com", "password": "password123"}),
        )
        .await;
    assert_error(&unknown, 401, "INVALID_EMAIL_OR_PASSWORD");
    let sqlish = s
        .post(
            "/sign-in/email",
            None,
            json!({"email": "' OR '1'='1", "password": "' OR '1'='1"}),
        )
        .await;
    assert_error(&sqlish, 401, "INVALID_EMAIL_OR_PASSWORD");

    let kinds: Vec<String> = s
        .audit_events()
        .await
        .iter()
        .filter(|e| e["userId"] == id)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "session.created",
            "user.updated",
            "session.created",
            // The wrong password tried against this account (issue 14).
            "user.sign_in_failed"
        ]
    );
    s.stop().await;
}

async fn sign_out_revokes_the_session(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    assert_eq!(
        s.post("/sign-out", Some(&token), json!({})).await,
        (StatusCode::OK, json!({"success": true}))
    );
    assert_eq!(
        s.get("/get-session", Some(&token)).await,
        (StatusCode::OK, Value::Null)
    );
    // Idempotent, and fine without a token.
    assert_eq!(s.post("/sign-out", Some(&token), json!({})).await.0, 200);
    let res = s.http.post(s.url("/sign-out")).send().await.unwrap();
    assert_eq!(
        into_json(res).await,
        (StatusCode::OK, json!({"success": true}))
    );
    s.stop().await;
}

async fn a_guest_deletes_itself(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, token) = s.guest().await;
    assert_error(
        &s.post("/delete-anonymous-user", None, json!({})).await,
        401,
        "UNAUTHORIZED",
    );
    assert_eq!(
        s.post("/delete-anonymous-user", Some(&token), json!({}))
            .await,
        (StatusCode::OK, json!({"success": true}))
    );
    assert_eq!(
        s.get("/get-session", Some(&token)).await,
        (StatusCode::OK, Value::Null)
    );
    assert_error(
        &s.post("/delete-anonymous-user", Some(&token), json!({}))
            .await,
        401,
        "UNAUTHORIZED",
    );
    let (_, list) = s.admin_get("/admin/list-users").await;
    assert!(list["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"] != id));
    let deleted: Vec<Value> = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["event"] == "user.deleted")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["userId"], id);
    assert_eq!(deleted[0]["actor"], id);

    let (_, full) = s.full_user("keep@example.com").await;
    let got = s
        .post("/delete-anonymous-user", Some(&full), json!({}))
        .await;
    assert_error(&got, 403, "USER_NOT_ANONYMOUS");
    assert_eq!(got.1["message"], "User is not anonymous");
    s.stop().await;
}

async fn admin_api_needs_the_key(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (id, token) = s.guest().await;
    for path in ["/admin/list-users", "/admin/audit-log"] {
        assert_error(&s.get(path, None).await, 401, "UNAUTHORIZED");
        assert_error(&s.get(path, Some(&token)).await, 401, "UNAUTHORIZED");
        assert_error(&s.get(path, Some("wrong-key")).await, 401, "UNAUTHORIZED");
        let res = s
            .http
            .get(s.url(path))
            .header("x-api-key", "wrong-key")
            .send()
            .await
            .unwrap();
        assert_error(&into_json(res).await, 401, "UNAUTHORIZED");
        assert_eq!(
            s.get(path, Some(ADMIN_KEY)).await.0,
            200,
            "Bearer <admin key> works"
        );
        assert_eq!(s.admin_get(path).await.0, 200, "x-api-key works");
    }
    assert_error(
        &s.post("/admin/remove-user", Some(&token), json!({"userId": id}))
            .await,
        401,
        "UNAUTHORIZED",
    );
    s.stop().await;

    // Without a configured key the admin API is closed.
    let closed = TestServer::start_with(&backend, |c| c.admin_api_key = None).await;
    assert_error(
        &closed.admin_get("/admin/list-users").await,
        401,
        "UNAUTHORIZED",
    );
    closed.stop().await;
}

async fn admin_lists_users_newest_first_with_cursor_paging(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let mut guests = Vec::new();
    let mut everyone = Vec::new();
    for i in 0..7 {
        s.clock.advance(Duration::seconds(1));
        let (id, _) = if i % 3 == 2 {
            s.full_user(&format!("u{i}@example.com")).await
        } else {
            s.guest().await
        };
        if i % 3 != 2 {
            guests.push(id.clone());
        }
        everyone.push(id);
    }
    everyone.reverse();
    guests.reverse();

    async fn walk(s: &TestServer, query: &str, limit: usize) -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &after {
                Some(a) => format!("/admin/list-users?{query}limit={limit}&after={a}"),
                None => format!("/admin/list-users?{query}limit={limit}"),
            };
            let (status, body) = s.admin_get(&path).await;
            assert_eq!(status, 200, "{body}");
            pages += 1;
            let data = body["data"].as_array().unwrap();
            assert!(data.len() <= limit);
            ids.extend(data.iter().map(|u| u["id"].as_str().unwrap().to_string()));
            match body["listMetadata"]["after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
            assert!(pages < 20);
        }
        (ids, pages)
    }
    let (all, pages) = walk(&s, "", 2).await;
    assert_eq!(all, everyone);
    assert_eq!(pages, 4);
    let (only_guests, pages) = walk(&s, "isAnonymous=true&", 2).await;
    assert_eq!(only_guests, guests);
    assert_eq!(pages, 3);
    let (full, _) = walk(&s, "isAnonymous=false&", 200).await;
    assert_eq!(full.len(), 2);

    // Paging back with `before`.
    let (_, p1) = s.admin_get("/admin/list-users?limit=3").await;
    assert_eq!(p1["listMetadata"]["before"], Value::Null);
    let after = p1["listMetadata"]["after"].as_str().unwrap();
    let (_, p2) = s
        .admin_get(&format!("/admin/list-users?limit=3&after={after}"))
        .await;
    assert_eq!(p2["data"][0]["id"], everyone[3].as_str());
    let before = p2["listMetadata"]["before"].as_str().unwrap();
    let (_, back) = s
        .admin_get(&format!("/admin/list-users?limit=3&before={before}"))
        .await;
    assert_eq!(back["data"], p1["data"]);

    for bad in [
        "limit=201",
        "limit=0",
        "limit=-1",
        "limit=abc",
        "after=garbage",
        "isAnonymous=maybe",
        "sort=name",
    ] {
        assert_error(
            &s.admin_get(&format!("/admin/list-users?{bad}")).await,
            400,
            "INVALID_REQUEST",
        );
    }
    assert_eq!(s.admin_get("/admin/list-users?limit=200").await.0, 200);
    s.stop().await;
}

async fn admin_removes_users(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (guest, guest_token) = s.guest().await;
    let (full, full_token) = s.full_user("gone@example.com").await;
    for (id, token) in [(&guest, &guest_token), (&full, &full_token)] {
        assert_eq!(
            s.admin_post("/admin/remove-user", json!({"userId": id}))
                .await,
            (StatusCode::OK, json!({"success": true}))
        );
        assert_eq!(
            s.get("/get-session", Some(token)).await,
            (StatusCode::OK, Value::Null)
        );
    }
    let got = s
        .admin_post("/admin/remove-user", json!({"userId": guest}))
        .await;
    assert_error(&got, 404, "USER_NOT_FOUND");
    assert_error(
        &s.admin_post(
            "/admin/remove-user",
            json!({"userId": "usr_'; DELETE FROM users;--"}),
        )
        .await,
        400,
        "INVALID_USER_ID",
    );
    assert_error(
        &s.admin_post("/admin/remove-user", json!({})).await,
        400,
        "INVALID_REQUEST",
    );
    // The email is free again.
    let (_, t) = s.guest().await;
    let (status, _) = s
        .post(
            "/anonymous/upgrade",
            Some(&t),
            json!({"email": "gone@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200);
    let deleted: Vec<Value> = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["event"] == "user.deleted")
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|e| e["actor"] == "admin"));
    s.stop().await;
}

async fn audit_log_records_every_event_and_pages(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.auth_methods.anonymous =
            serde_json::from_value(json!({"enabled": true, "maxAge": 3600})).unwrap()
    })
    .await;
    let (a, _) = s.guest().await;
    let (b, _) = s.full_user("audit@example.com").await;
    let (c, _) = s.guest().await;
    s.clock.advance(Duration::hours(2));
    let report = s.handle.run_cleanup().await.unwrap();
    assert_eq!(report.guests_deleted, 2);

    let events = s.audit_events().await;
    let summary: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["userId"].as_str().unwrap().into(),
                e["actor"].as_str().unwrap().into(),
            )
        })
        .collect();
    let ev = |k: &str, u: &str, actor: &str| (k.to_string(), u.to_string(), actor.to_string());
    let expected_before_cleanup = [
        ev("user.created", &a, &a),
        ev("session.created", &a, &a),
        ev("user.created", &b, &b),
        ev("session.created", &b, &b),
        ev("user.updated", &b, &b),
        ev("user.created", &c, &c),
        ev("session.created", &c, &c),
    ];
    assert_eq!(summary[..7], expected_before_cleanup[..]);
    let mut cleaned: Vec<&(String, String, String)> = summary[7..].iter().collect();
    cleaned.sort();
    let (mut x, mut y) = (
        ev("user.deleted", &a, "system"),
        ev("user.deleted", &c, "system"),
    );
    if x > y {
        std::mem::swap(&mut x, &mut y);
    }
    assert_eq!(cleaned, [&x, &y]);
    assert!(events[7]["ipHash"].is_null());

    // Paging: 9 events, 4 per page, newest first, no overlap.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/admin/audit-log?limit=4&after={a}"),
            None => "/admin/audit-log?limit=4".into(),
        };
        let (_, body) = s.admin_get(&path).await;
        pages += 1;
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        match body["listMetadata"]["after"].as_str() {
            Some(a) => after = Some(a.into()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = events
        .iter()
        .rev()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, expected);
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 9);

    // Filters.
    let (_, only_b) = s.admin_get(&format!("/admin/audit-log?userId={b}")).await;
    assert_eq!(only_b["data"].as_array().unwrap().len(), 3);
    let (_, deletions) = s.admin_get("/admin/audit-log?event=user.deleted").await;
    assert_eq!(deletions["data"].as_array().unwrap().len(), 2);
    assert_error(
        &s.admin_get("/admin/audit-log?event=user.exploded").await,
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        &s.admin_get("/admin/audit-log?after=1%27%20OR%201%3D1")
            .await,
        400,
        "INVALID_REQUEST",
    );
    s.stop().await;
}

async fn rate_limit_refuses_the_31st_request_per_minute(backend: Backend) {
    let s =
        TestServer::start_with(&backend, |c| c.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let from = |ip: &str| {
        s.http
            .post(s.url("/sign-in/anonymous"))
            .header("x-forwarded-for", format!("203.0.113.9, {ip}"))
            .json(&json!({}))
    };
    for i in 1..=30 {
        let res = from("198.51.100.1").send().await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
    }
    let res = from("198.51.100.1").send().await.unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 55, "t0 is 5 s into its minute");
    assert_error(&into_json(res).await, 429, "RATE_LIMITED");
    // Another address has its own count; the left (client-supplied) entry is ignored.
    assert_eq!(from("198.51.100.2").send().await.unwrap().status(), 200);
    // The next minute opens again.
    s.clock.advance(Duration::seconds(55));
    assert_eq!(from("198.51.100.1").send().await.unwrap().status(), 200);
    s.stop().await;

    // Without a trusted proxy header, spoofed headers do not escape the limit.
    let s = TestServer::start_with(&backend, |c| c.rate_limit.anonymous_per_minute = 3).await;
    for i in 0..3 {
        assert_eq!(
            s.post("/sign-in/anonymous", None, json!({})).await.0,
            200,
            "{i}"
        );
    }
    let res = s
        .http
        .post(s.url("/sign-in/anonymous"))
        .header("x-forwarded-for", "192.0.2.77")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    s.stop().await;
}

async fn rate_limit_can_be_turned_off(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.rate_limit.anonymous_per_minute = 0).await;
    for i in 0..40 {
        assert_eq!(
            s.post("/sign-in/anonymous", None, json!({})).await.0,
            200,
            "{i}"
        );
    }
    s.stop().await;
}

async fn bad_input_gets_json_4xx(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let raw = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = s.http.post(s.url(path)).bearer_auth(&token).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    let json_ct = Some("application/json");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            raw("/anonymous/upgrade", json_ct, b"{not json".to_vec()),
            400,
            "INVALID_REQUEST",
        ),
        (
            raw("/anonymous/upgrade", json_ct, b"[]".to_vec()),
            400,
            "INVALID_REQUEST",
        ),
        (
            raw("/anonymous/upgrade", json_ct, b"".to_vec()),
            400,
            "INVALID_REQUEST",
        ),
        (
            raw(
                "/anonymous/upgrade",
                Some("text/plain"),
                br#"{"email":"a@b.co","password":"password123"}"#.to_vec(),
            ),
            415,
            "INVALID_REQUEST",
        ),
        (
            raw(
                "/anonymous/upgrade",
                None,
                br#"{"email":"a@b.co","password":"password123"}"#.to_vec(),
            ),
            415,
            "INVALID_REQUEST",
        ),
        (
            raw(
                "/anonymous/upgrade",
                json_ct,
                br#"{"email":"a@b.co","password":"password123","isAdmin":true}"#.to_vec(),
            ),
            400,
            "INVALID_REQUEST",
        ),
        (
            raw("/anonymous/upgrade", json_ct, vec![b' '; 100 * 1024]),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            raw(
                "/sign-in/anonymous",
                json_ct,
                format!(r#"{{"id":"{}"}}"#, "A".repeat(70_000)).into_bytes(),
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            raw("/sign-in/email", json_ct, br#"{"email":"x@y.z"}"#.to_vec()),
            400,
            "INVALID_REQUEST",
        ),
        (
            raw("/admin/remove-user", json_ct, b"{}".to_vec()),
            401,
            "UNAUTHORIZED",
        ),
        (s.http.get(s.url("/no-such-route")), 404, "NOT_FOUND"),
        (s.http.get(format!("{}/nowhere", s.base)), 404, "NOT_FOUND"),
        (
            s.http.get(s.url("/sign-in/anonymous")),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            s.http.delete(s.url("/get-session")),
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (req, status, code) in cases {
        let res = req.send().await.unwrap();
        let ct = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let got = into_json(res).await;
        assert_error(&got, status, code);
        assert_eq!(ct.as_deref(), Some("application/json"), "{got:?}");
        // Nothing internal leaks.
        let message = got.1["message"].as_str().unwrap();
        assert!(
            !message.contains("sqlx") && !message.contains("password123"),
            "{message}"
        );
    }
    // The guest survived all of it.
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert_eq!(me["user"]["isAnonymous"], true);
    let (status, health) = s.get("/health", None).await;
    assert_eq!((status.as_u16(), health), (200, json!({"status": "ok"})));
    s.stop().await;
}

async fn social_upgrade_verifies_the_id_token_and_links_in_place(backend: Backend) {
    let idp = MockIdp::start().await;
    let issuer = idp.issuer.clone();
    let s = TestServer::start_with(&backend, |c| {
        c.social_providers.insert(
            "google".into(),
            guestpass_server::config::SocialProvider {
                client_id: "guestpass-app".into(),
                issuer,
            },
        );
    })
    .await;
    let (n1, n2, n3) = (s.nonce().await, s.nonce().await, s.nonce().await);
    let exp = (t0() + Duration::hours(1)).timestamp();
    let claims = |sub: &str, nonce: &str| {
        json!({
            "iss": idp.issuer, "aud": "guestpass-app", "sub": sub, "exp": exp,
            "iat": t0().timestamp(), "nonce": nonce,
            "email": "Social.User@Example.com", "email_verified": true, "name": "Social User"
        })
    };
    let good = idp.sign(&claims("google-sub-1", &n1));
    let body = |provider: &str, token: &str, nonce: Option<&str>| {
        let mut b = json!({"provider": provider, "idToken": token});
        if let Some(n) = nonce {
            b["nonce"] = json!(n);
        }
        b
    };
    assert_error(
        &s.post(
            "/anonymous/upgrade-social",
            None,
            body("google", &good, Some(&n1)),
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
    let (id, token) = s.guest().await;
    let (_, before) = s.get("/get-session", Some(&token)).await;
    let up = "/anonymous/upgrade-social";
    assert_error(
        &s.post(up, Some(&token), body("myspace", &good, Some(&n1)))
            .await,
        404,
        "UNKNOWN_PROVIDER",
    );

    let mut tampered = good.clone();
    tampered.insert(tampered.len() - 5, 'A');
    tampered.truncate(tampered.len() - 1);
    let mut wrong_aud = claims("google-sub-1", &n1);
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("google-sub-1", &n1);
    wrong_iss["iss"] = json!("https://evil.example");
    let mut expired = claims("google-sub-1", &n1);
    expired["exp"] = json!((t0() - Duration::hours(1)).timestamp());
    let refused = [
        body("google", "x.y.z", Some(&n1)),
        body("google", &tampered, Some(&n1)),
        body("google", &idp.sign(&wrong_aud), Some(&n1)),
        body("google", &idp.sign(&wrong_iss), Some(&n1)),
        body("google", &idp.sign(&expired), Some(&n1)),
        body("google", &good, Some(&n2)),
        body("google", &good, None),
    ];
    for b in refused {
        assert_error(
            &s.post(up, Some(&token), b.clone()).await,
            401,
            "INVALID_ID_TOKEN",
        );
    }
    let (_, still) = s.get("/get-session", Some(&token)).await;
    assert_eq!(
        still["user"]["isAnonymous"], true,
        "refusals leave the guest untouched"
    );

    let res = s
        .call(
            Method::POST,
            up,
            Some(&token),
            Some(body("google", &good, Some(&n1))),
        )
        .await;
    let rotated = res.headers()["set-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let (status, got) = into_json(res).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        s.get("/get-session", Some(&token)).await,
        (StatusCode::OK, Value::Null),
        "the guest's token died with the upgrade"
    );
    let token = rotated;
    assert_eq!(got["user"]["id"], id);
    assert_eq!(got["user"]["isAnonymous"], false);
    assert_eq!(got["user"]["email"], "social.user@example.com");
    assert_eq!(got["user"]["emailVerified"], true);
    assert_eq!(got["user"]["name"], "Social User");
    assert_eq!(got["session"], before["session"]);
    let events = s.audit_events().await;
    let last = events.iter().rev().find(|e| e["userId"] == id).unwrap();
    assert_eq!(last["event"], "user.updated");
    assert_eq!(last["detail"]["provider"], "google");

    // Already upgraded; and the same Google account cannot be linked twice.
    assert_error(
        &s.post(up, Some(&token), body("google", &good, Some(&n1)))
            .await,
        400,
        "USER_NOT_ANONYMOUS",
    );
    let (_, other) = s.guest().await;
    let mut same_sub = claims("google-sub-1", &n3);
    same_sub["email_verified"] = json!(false);
    let got = s
        .post(
            up,
            Some(&other),
            body("google", &idp.sign(&same_sub), Some(&n3)),
        )
        .await;
    assert_error(&got, 409, "PROVIDER_ACCOUNT_IN_USE");
    s.stop().await;
}

async fn database_outage_is_503_and_recovers(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (_, token) = s.guest().await;
    let outage = Outage::start(&s).await;
    match outage {
        Outage::SqliteLocked(_) => {
            let got = s.post("/sign-in/anonymous", None, json!({})).await;
            assert_error(&got, 503, "SERVICE_UNAVAILABLE");
            let got = s
                .post(
                    "/anonymous/upgrade",
                    Some(&token),
                    json!({"email": "o@example.com", "password": "password123"}),
                )
                .await;
            assert_error(&got, 503, "SERVICE_UNAVAILABLE");
        }
        Outage::Postgres(..) => {
            let got = s.post("/sign-in/anonymous", None, json!({})).await;
            assert_error(&got, 503, "SERVICE_UNAVAILABLE");
            assert_error(
                &s.get("/get-session", Some(&token)).await,
                503,
                "SERVICE_UNAVAILABLE",
            );
            assert_error(&s.get("/health", None).await, 503, "SERVICE_UNAVAILABLE");
        }
    }
    outage.end().await;
    // Back: the next requests succeed without restarting the server.
    assert_eq!(s.post("/sign-in/anonymous", None, json!({})).await.0, 200);
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert_eq!(me["user"]["isAnonymous"], true);
    s.stop().await;
}
