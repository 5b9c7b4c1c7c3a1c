//! The merge of a guest into an account (issue 11, DESIGN.md §2a), on SQLite and
//! PostgreSQL: `POST /anonymous/merge` and a Better Auth style sign-in that
//! carries the guest's bearer. Record changes are set up with SQL on a
//! connection of the test's own (push is another route's job); the merge must
//! move them by key without reading values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

/// A connection of the test's own to the server's database.
enum Sql {
    Lite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

/// Runs `$body` with `$c` bound to whichever connection it is (same SQL on both).
macro_rules! on {
    ($sql:expr, $c:ident => $body:expr) => {
        match $sql {
            Sql::Lite($c) => $body,
            Sql::Pg($c) => $body,
        }
    };
}

/// One row of a user's log: (seq, collection, record id, hash).
type Entry = (i64, String, String, String);

impl Sql {
    async fn open(s: &TestServer) -> Self {
        match s.db.pg_name() {
            Some(_) => Sql::Pg(sqlx::PgConnection::connect(&s.db.url).await.unwrap()),
            None => Sql::Lite(sqlx::SqliteConnection::connect(&s.db.url).await.unwrap()),
        }
    }

    async fn change(
        &mut self,
        user: &str,
        seq: i64,
        record: (&str, &str),
        value: &[u8],
        hash: &str,
    ) {
        let q =
            "INSERT INTO record_changes (user_id, seq, collection, record_id, change, deleted, \
                 schema_version, hash, created_at) VALUES ($1, $2, $3, $4, $5, FALSE, 1, $6, 0)";
        on!(self, c => sqlx::query(q).bind(user).bind(seq).bind(record.0).bind(record.1)
            .bind(value.to_vec()).bind(hash).execute(&mut *c).await.map(drop).unwrap());
    }

    async fn set_head(&mut self, user: &str, next_seq: i64, records: i64, bytes: i64) {
        let q =
            "INSERT INTO record_heads (user_id, next_seq, records, bytes) VALUES ($1, $2, $3, $4)";
        on!(self, c => sqlx::query(q).bind(user).bind(next_seq).bind(records).bind(bytes)
            .execute(&mut *c).await.map(drop).unwrap());
    }

    async fn head(&mut self, user: &str) -> Option<(i64, i64, i64)> {
        let q = "SELECT next_seq, records, bytes FROM record_heads WHERE user_id = $1";
        on!(self, c => sqlx::query_as(q).bind(user).fetch_optional(&mut *c).await.unwrap())
    }

    async fn log(&mut self, user: &str) -> Vec<Entry> {
        let q = "SELECT seq, collection, record_id, hash FROM record_changes WHERE user_id = $1 \
                 ORDER BY seq";
        on!(self, c => sqlx::query_as(q).bind(user).fetch_all(&mut *c).await.unwrap())
    }

    async fn value(&mut self, user: &str, seq: i64) -> Vec<u8> {
        let q = "SELECT change FROM record_changes WHERE user_id = $1 AND seq = $2";
        on!(self, c => sqlx::query_scalar(q).bind(user).bind(seq).fetch_one(&mut *c).await.unwrap())
    }

    async fn count(&mut self, table: &str, column: &str, value: &str) -> i64 {
        let q = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        on!(self, c => sqlx::query_scalar(&q).bind(value).fetch_one(&mut *c).await.unwrap())
    }

    async fn close(self) {
        on!(self, c => c.close().await.unwrap());
    }
}

fn entry(seq: i64, collection: &str, id: &str, hash: &str) -> Entry {
    (seq, collection.into(), id.into(), hash.into())
}

async fn merge(s: &TestServer, account: Option<&str>, guest_token: &str) -> (StatusCode, Value) {
    s.post(
        "/anonymous/merge",
        account,
        json!({ "guestToken": guest_token }),
    )
    .await
}

/// The account's log (3 changes) and the guest's (5): a record only the guest
/// has (edited twice), one only it has, a preference both have, and an exact
/// duplicate of one of the account's changes.
async fn seed(sql: &mut Sql, account: &str, guest: &str) {
    sql.change(account, 1, ("notes", "a1"), b"a1 v1", "h-a1")
        .await;
    sql.change(account, 2, ("prefs", "theme"), b"dark", "h-theme-a")
        .await;
    sql.change(account, 3, ("notes", "a2"), b"a2 v1", "h-a2")
        .await;
    sql.set_head(account, 4, 3, 15).await;
    sql.change(guest, 1, ("notes", "g1"), b"g1 v1", "h-g1-1")
        .await;
    sql.change(guest, 2, ("prefs", "theme"), b"light", "h-theme-g")
        .await;
    sql.change(guest, 3, ("notes", "g2"), b"g2 v1!", "h-g2")
        .await;
    sql.change(guest, 4, ("notes", "g1"), b"g1 v2", "h-g1-2")
        .await;
    sql.change(guest, 5, ("notes", "a1"), b"a1 v1", "h-a1")
        .await;
    sql.set_head(guest, 6, 4, 26).await;
}

async fn merge_moves_the_guests_records_after_the_accounts(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account_id, account) = s.full_user("owner@example.com").await;
    let (guest_id, guest) = s.guest().await;
    let mut sql = Sql::open(&s).await;
    seed(&mut sql, &account_id, &guest_id).await;

    let (status, body) = merge(&s, Some(&account), &guest).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], account_id);
    assert_eq!(body["user"]["isAnonymous"], false);
    assert_eq!(body["merged"], json!({ "guestId": guest_id, "records": 3 }));

    // New positions after the account's, in the guest's order; the preference
    // both had and the duplicate stayed behind (the account's log wins).
    assert_eq!(
        sql.log(&account_id).await,
        [
            entry(1, "notes", "a1", "h-a1"),
            entry(2, "prefs", "theme", "h-theme-a"),
            entry(3, "notes", "a2", "h-a2"),
            entry(4, "notes", "g1", "h-g1-1"),
            entry(5, "notes", "g2", "h-g2"),
            entry(6, "notes", "g1", "h-g1-2"),
        ]
    );
    assert_eq!(sql.value(&account_id, 2).await, b"dark");
    assert_eq!(sql.value(&account_id, 5).await, b"g2 v1!");
    // Two more records (g1, g2), 5 + 6 + 5 more bytes, the next position after 6.
    assert_eq!(sql.head(&account_id).await, Some((7, 5, 31)));

    // The guest is gone with its sessions, head and the changes left behind.
    assert!(sql.log(&guest_id).await.is_empty());
    assert_eq!(sql.head(&guest_id).await, None);
    assert_eq!(sql.count("users", "id", &guest_id).await, 0);
    assert_eq!(sql.count("sessions", "user_id", &guest_id).await, 0);
    let (_, me) = s.get("/get-session", Some(&guest)).await;
    assert_eq!(me, Value::Null, "the guest's token is dead");
    assert_error(
        &s.post(
            "/anonymous/upgrade",
            Some(&guest),
            json!({"email": "late@example.com", "password": "password123"}),
        )
        .await,
        401,
        "UNAUTHORIZED",
    );
    // Nor can its id come back as a new guest, with or without a device key.
    for body in [
        json!({ "id": guest_id }),
        json!({ "id": guest_id, "deviceKey": "k".repeat(43) }),
    ] {
        assert_error(
            &s.post("/sign-in/anonymous", None, body).await,
            409,
            "USER_ID_TAKEN",
        );
    }
    // The tombstone keeps the token's digest, never the token.
    assert_eq!(sql.count("merges", "guest_id", &guest_id).await, 1);
    assert_eq!(sql.count("merges", "guest_token_hash", &guest).await, 0);

    let events = s.audit_events().await;
    let deleted = events
        .iter()
        .find(|e| e["userId"] == guest_id && e["event"] == "user.deleted")
        .unwrap();
    assert_eq!(
        deleted["detail"],
        json!({ "reason": "merged", "into": account_id })
    );
    assert_eq!(deleted["actor"], account_id);
    let updated = events
        .iter()
        .rev()
        .find(|e| e["userId"] == account_id && e["event"] == "user.updated")
        .unwrap();
    assert_eq!(
        updated["detail"],
        json!({ "merged": guest_id, "records": 3 })
    );
    sql.close().await;
    s.stop().await;
}

async fn a_retried_merge_answers_the_same_200(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account_id, account) = s.full_user("retry@example.com").await;
    let (_, other) = s.full_user("other@example.com").await;
    let (guest_id, guest) = s.guest().await;
    let mut sql = Sql::open(&s).await;
    sql.change(&guest_id, 1, ("notes", "n1"), b"hello", "h-n1")
        .await;
    sql.set_head(&guest_id, 2, 1, 5).await;

    // Two at once (a lost answer retried while the first is still running):
    // both succeed with one answer, and the records move once.
    let (first, second) = tokio::join!(
        merge(&s, Some(&account), &guest),
        merge(&s, Some(&account), &guest)
    );
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first, second);
    assert_eq!(
        first.1["merged"],
        json!({ "guestId": guest_id, "records": 1 })
    );
    let again = merge(&s, Some(&account), &guest).await;
    assert_eq!(again, first);
    assert_eq!(
        sql.log(&account_id).await,
        [entry(1, "notes", "n1", "h-n1")]
    );
    assert_eq!(sql.head(&account_id).await, Some((2, 1, 5)));
    let merges = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["userId"] == guest_id && e["event"] == "user.deleted")
        .count();
    assert_eq!(merges, 1, "merged and audited once");

    // Another account presenting the same guest token learns nothing.
    assert_error(&merge(&s, Some(&other), &guest).await, 401, "UNAUTHORIZED");
    sql.close().await;
    s.stop().await;
}

async fn merge_refuses_what_is_not_a_guest_into_an_account(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (guest_id, guest) = s.guest().await;
    let (_, other_guest) = s.guest().await;
    let (_, account) = s.full_user("strict@example.com").await;
    let (_, second) = s.full_user("second@example.com").await;

    assert_error(&merge(&s, None, &guest).await, 401, "UNAUTHORIZED");
    assert_error(
        &merge(&s, Some("not-a-token"), &guest).await,
        401,
        "UNAUTHORIZED",
    );
    // A guest cannot absorb another guest.
    assert_error(
        &merge(&s, Some(&other_guest), &guest).await,
        403,
        "ANONYMOUS_NOT_ALLOWED",
    );
    // Two full accounts are never merged, nor an account into itself.
    assert_error(
        &merge(&s, Some(&account), &second).await,
        400,
        "USER_NOT_ANONYMOUS",
    );
    assert_error(
        &merge(&s, Some(&account), &account).await,
        400,
        "USER_NOT_ANONYMOUS",
    );
    assert_error(
        &merge(&s, Some(&account), "unknown-token").await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(&merge(&s, Some(&account), "").await, 401, "UNAUTHORIZED");
    assert_error(
        &merge(&s, Some(&account), &"x".repeat(10_000)).await,
        401,
        "UNAUTHORIZED",
    );
    let missing = s.post("/anonymous/merge", Some(&account), json!({})).await;
    assert_eq!(missing.0, 400, "{}", missing.1);
    let extra = s
        .post(
            "/anonymous/merge",
            Some(&account),
            json!({"guestToken": guest, "into": "usr_x"}),
        )
        .await;
    assert_eq!(extra.0, 400, "{}", extra.1);

    // Every refusal left both untouched.
    let (_, me) = s.get("/get-session", Some(&guest)).await;
    assert_eq!(me["user"]["id"], guest_id);
    let (_, me) = s.get("/get-session", Some(&second)).await;
    assert_eq!(me["user"]["isAnonymous"], false);
    s.stop().await;
}

async fn an_expired_guest_token_cannot_be_merged(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (guest_id, guest) = s.guest().await;
    s.clock.advance(Duration::days(8));
    let (_, account) = s.full_user("later@example.com").await;
    assert_error(
        &merge(&s, Some(&account), &guest).await,
        401,
        "UNAUTHORIZED",
    );
    let mut sql = Sql::open(&s).await;
    assert_eq!(sql.count("users", "id", &guest_id).await, 1);
    sql.close().await;
    s.stop().await;
}

async fn a_guest_without_records_merges_too(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account_id, account) = s.full_user("empty@example.com").await;
    let (guest_id, guest) = s.guest().await;
    let (status, body) = merge(&s, Some(&account), &guest).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["merged"], json!({ "guestId": guest_id, "records": 0 }));
    let mut sql = Sql::open(&s).await;
    assert_eq!(sql.count("users", "id", &guest_id).await, 0);
    assert_eq!(sql.head(&account_id).await, None, "no log was started");
    sql.close().await;
    s.stop().await;
}

/// Better Auth's way: signing in while holding the guest's bearer links the
/// guest to the account signed into (and deletes it); here, a merge.
async fn an_email_sign_in_holding_a_guests_bearer_folds_the_guest_in(backend: Backend) {
    let s = TestServer::start(&backend).await;
    let (account_id, first) = s.full_user("fold@example.com").await;
    let (guest_id, guest) = s.guest().await;
    let mut sql = Sql::open(&s).await;
    sql.change(&account_id, 1, ("notes", "a"), b"mine", "h-a")
        .await;
    sql.set_head(&account_id, 2, 1, 4).await;
    sql.change(&guest_id, 1, ("notes", "g"), b"the guest's", "h-g")
        .await;
    sql.set_head(&guest_id, 2, 1, 11).await;

    let res = s
        .call(
            reqwest::Method::POST,
            "/sign-in/email",
            Some(&guest),
            Some(json!({
                "email": "fold@example.com", "password": "password123",
                "callbackURL": "/home", "rememberMe": true
            })),
        )
        .await;
    assert_eq!(res.status(), 200);
    let header = res.headers()["set-auth-token"]
        .to_str()
        .unwrap()
        .to_string();
    let (_, body) = into_json(res).await;
    assert_eq!(body["redirect"], false);
    assert_eq!(body["url"], Value::Null);
    assert_eq!(body["token"], header);
    assert_eq!(body["user"]["id"], account_id);
    assert_ne!(header, first);
    let (_, me) = s.get("/get-session", Some(&header)).await;
    assert_eq!(me["session"]["id"], body["session"]["id"]);

    assert_eq!(
        sql.log(&account_id).await,
        [entry(1, "notes", "a", "h-a"), entry(2, "notes", "g", "h-g")]
    );
    assert_eq!(sql.count("users", "id", &guest_id).await, 0);
    let (_, gone) = s.get("/get-session", Some(&guest)).await;
    assert_eq!(gone, Value::Null);
    let events = s.audit_events().await;
    assert!(events.iter().any(|e| e["userId"] == guest_id
        && e["detail"] == json!({ "reason": "merged", "into": account_id })));

    // Holding a full account's bearer, a sign-in to another account merges nothing.
    let (other_id, other) = s.full_user("bystander@example.com").await;
    let (status, body) = s
        .post(
            "/sign-in/email",
            Some(&other),
            json!({"email": "fold@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sql.count("users", "id", &other_id).await, 1);
    let (_, still) = s.get("/get-session", Some(&other)).await;
    assert_eq!(still["user"]["id"], other_id);
    // A wrong password with a guest's bearer: refused, the guest untouched.
    let (guest2_id, guest2) = s.guest().await;
    let wrong = s
        .post(
            "/sign-in/email",
            Some(&guest2),
            json!({"email": "fold@example.com", "password": "password124"}),
        )
        .await;
    assert_error(&wrong, 401, "INVALID_EMAIL_OR_PASSWORD");
    assert_eq!(sql.count("users", "id", &guest2_id).await, 1);
    sql.close().await;
    s.stop().await;
}

both_backends!(
    merge_moves_the_guests_records_after_the_accounts,
    a_retried_merge_answers_the_same_200,
    merge_refuses_what_is_not_a_guest_into_an_account,
    an_expired_guest_token_cannot_be_merged,
    a_guest_without_records_merges_too,
    an_email_sign_in_holding_a_guests_bearer_folds_the_guest_in,
);
