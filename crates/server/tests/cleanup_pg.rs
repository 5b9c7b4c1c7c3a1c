//! PostgreSQL's stale-guest cleanup deletes a guest's rows in the tables that
//! reference `users` by set where its role may switch the cascades off for a batch
//! (`store_cleanup.rs`), and through `ON DELETE CASCADE` where it may not. Either
//! way nothing is left that points at a deleted guest, and live guests keep
//! everything. Needs GUESTPASS_TEST_POSTGRES_URL (a superuser, as CI's is).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::Duration;
use common::sync::*;
use common::*;
use guestpass_server::store_cleanup::Children;
use guestpass_server::ManualClock;
use sqlx::Connection;

/// Rows in any table that references `users` whose user is gone, per table.column.
async fn orphans(url: &str) -> Vec<(String, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let refs: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, quote_ident(a.attname) FROM pg_constraint c \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
         WHERE c.contype = 'f' AND c.confrelid = 'users'::regclass ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(refs.len() >= 7, "the tables that reference users: {refs:?}");
    let mut out = Vec::new();
    for (table, column) in refs {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} x WHERE NOT EXISTS \
             (SELECT 1 FROM users u WHERE u.id = x.{column})"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        out.push((format!("{table}.{column}"), n));
    }
    out
}

/// (sessions, record changes, record heads) of one user, straight from the database.
async fn rows_of(url: &str, user_id: &str) -> (i64, i64, i64) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM sessions WHERE user_id = $1), \
         (SELECT COUNT(*) FROM record_changes WHERE user_id = $1), \
         (SELECT COUNT(*) FROM record_heads WHERE user_id = $1)",
    )
    .bind(user_id)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// Three stale guests with notes and a live one with notes; the cleanup takes the
/// three with everything of theirs and leaves the live guest whole.
async fn stale_guests_go_with_their_rows(s: &TestServer, url: &str) {
    let notes = || vec![note("a", "1"), note("b", "2")];
    let mut stale = Vec::new();
    for _ in 0..3 {
        let (id, token) = s.guest().await;
        push_ok(s, &token, notes()).await;
        assert_eq!(rows_of(url, &id).await, (1, 2, 1));
        stale.push(id);
    }
    s.clock.advance(Duration::hours(2));
    let (live, live_token) = s.guest().await;
    push_ok(s, &live_token, notes()).await;
    // A tombstone left under a live guest's id (an id in `users` is never in
    // `gone_users`, but a store restored by hand could have one): the cleanup
    // replaces it instead of failing every batch on it.
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("INSERT INTO gone_users (id, reason, gone_at) VALUES ($1, 'removed', 1)")
        .bind(&stale[0])
        .execute(&mut conn)
        .await
        .unwrap();

    let report = s.handle.run_cleanup().await.unwrap();
    assert_eq!(report.guests_deleted, 3);
    let now = guestpass_server::Clock::now_ms(&s.clock);
    for id in &stale {
        assert_eq!(rows_of(url, id).await, (0, 0, 0), "{id}");
        let tombstone: (String, i64) =
            sqlx::query_as("SELECT reason, gone_at FROM gone_users WHERE id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(tombstone, ("cleanup".to_string(), now), "{id}");
    }
    for (column, n) in orphans(url).await {
        assert_eq!(n, 0, "{column} still points at deleted guests");
    }
    assert_eq!(rows_of(url, &live).await, (1, 2, 1));
    let (_, me) = s.get("/get-session", Some(&live_token)).await;
    assert_eq!(me["user"]["id"], live);
    let deleted = s
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["event"] == "user.deleted" && e["actor"] == "system")
        .count();
    assert_eq!(deleted, 3);
}

fn with_max_age(c: &mut guestpass_server::Config) {
    c.auth_methods.anonymous =
        serde_json::from_value(serde_json::json!({"enabled": true, "maxAge": 3600})).unwrap();
}

#[tokio::test]
async fn a_superuser_cleanup_deletes_by_set_and_leaves_nothing_of_a_guest() {
    let Some(backend) = Backend::postgres() else {
        return report_skip("a_superuser_cleanup_deletes_by_set_and_leaves_nothing_of_a_guest");
    };
    let s = TestServer::start_with(&backend, with_max_age).await;
    let url = s.db.url.clone();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    match Children::of(&pool).await.unwrap() {
        Children::BySet(tables) => {
            for expected in ["sessions", "record_changes", "record_heads", "accounts"] {
                assert!(
                    tables.iter().any(|(t, c)| t == expected && c == "user_id"),
                    "{expected} in {tables:?}"
                );
            }
            assert!(tables.contains(&("merges".into(), "account_id".into())));
        }
        Children::Cascade => panic!("a superuser may set session_replication_role"),
    }
    pool.close().await;
    stale_guests_go_with_their_rows(&s, &url).await;
    let db = s.db.clone();
    s.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn a_role_that_may_not_skip_triggers_relies_on_the_cascades() {
    let Some(backend) = Backend::postgres() else {
        return report_skip("a_role_that_may_not_skip_triggers_relies_on_the_cascades");
    };
    let db = Arc::new(TestDb::new(&backend).await);
    let name = db.pg_name().unwrap().to_string();
    let role = format!("{name}_owner");
    let mut admin = db.pg_admin().await;
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'owner' NOSUPERUSER"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} OWNER TO {role}"))
        .execute(&mut admin)
        .await
        .unwrap();
    // PostgreSQL 15 gives PUBLIC no CREATE on `public`; the owner of the
    // database's schema is still the bootstrap superuser.
    let mut in_db = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(&format!("GRANT ALL ON SCHEMA public TO {role}"))
        .execute(&mut in_db)
        .await
        .unwrap();
    in_db.close().await.ok();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("owner")).unwrap();
    let url = url.to_string();

    let server_url = url.clone();
    let s = TestServer::start_on(db.clone(), ManualClock::new(t0()), |c| {
        with_max_age(c);
        c.database_url = guestpass_server::Secret::new(server_url.as_str());
    })
    .await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    assert_eq!(Children::of(&pool).await.unwrap(), Children::Cascade);
    pool.close().await;
    stale_guests_go_with_their_rows(&s, &url).await;
    s.stop().await;
    db.drop_db().await;
    sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&mut admin)
        .await
        .unwrap();
}
