//! Crash safety of the reference server: the real `guestpass-server` binary is
//! SIGKILLed at random instants while app cores upgrade their guests, while devices
//! sign in (`crash_server/sign_in.rs`), and while it deletes a backlog of stale
//! guests; after each kill its database is checked, and after a restart on the same
//! database the apps' retried upgrades must converge.
//!
//! SQLite always; PostgreSQL too when `GUESTPASS_TEST_POSTGRES_URL` is set. Kills per
//! scenario: `GUESTPASS_CRASH_SERVER_KILLS` (default 12); seed printed, replay with
//! `GUESTPASS_CRASH_SEED`. Needs the keyring (the app cores): run under
//! `scripts/with-keyring.sh`, after `cargo build -p guestpass-server`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use guestpass_core::{Dialect, SyncState, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use guestpass_tests::on_pool;
use guestpass_tests::server_process::{ServerDb, ServerProcess};
use guestpass_tests::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;

fn tell(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn plan(scenario: &str) -> (usize, StdRng) {
    let kills = std::env::var("GUESTPASS_CRASH_SERVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed = std::env::var("GUESTPASS_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    tell(&format!(
        "{scenario}: {kills} kills, seed {seed} (replay: GUESTPASS_CRASH_SEED={seed})"
    ));
    (kills, StdRng::seed_from_u64(seed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_mid_upgrade() {
    killed_mid_upgrade(ServerDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_mid_upgrade() {
    match ServerDb::postgres().await {
        Some(db) => killed_mid_upgrade(db).await,
        None => tell(
            "SKIPPED postgres_server_killed_mid_upgrade: GUESTPASS_TEST_POSTGRES_URL is not set",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_mid_cleanup() {
    killed_mid_cleanup(ServerDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_mid_cleanup() {
    match ServerDb::postgres().await {
        Some(db) => killed_mid_cleanup(db).await,
        None => tell(
            "SKIPPED postgres_server_killed_mid_cleanup: GUESTPASS_TEST_POSTGRES_URL is not set",
        ),
    }
}

#[path = "crash_server/link_social.rs"]
mod link_social;
#[path = "crash_server/recovery.rs"]
mod recovery;
#[path = "crash_server/sign_in.rs"]
mod sign_in;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_mid_sign_in() {
    sign_in::killed_mid_sign_in(ServerDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_mid_sign_in() {
    match ServerDb::postgres().await {
        Some(db) => sign_in::killed_mid_sign_in(db).await,
        None => tell(
            "SKIPPED postgres_server_killed_mid_sign_in: GUESTPASS_TEST_POSTGRES_URL is not set",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_mid_recovery() {
    recovery::killed_mid_recovery(ServerDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_mid_recovery() {
    match ServerDb::postgres().await {
        Some(db) => recovery::killed_mid_recovery(db).await,
        None => tell(
            "SKIPPED postgres_server_killed_mid_recovery: GUESTPASS_TEST_POSTGRES_URL is not set",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_mid_link_social() {
    link_social::killed_mid_link_social(ServerDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_mid_link_social() {
    match ServerDb::postgres().await {
        Some(db) => link_social::killed_mid_link_social(db).await,
        None => tell(
            "SKIPPED postgres_server_killed_mid_link_social: GUESTPASS_TEST_POSTGRES_URL is not set",
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_mid_social_sign_in() {
    killed_mid_social_sign_in(ServerDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_killed_mid_social_sign_in() {
    match ServerDb::postgres().await {
        Some(db) => killed_mid_social_sign_in(db).await,
        None => tell(
            "SKIPPED postgres_server_killed_mid_social_sign_in: GUESTPASS_TEST_POSTGRES_URL is not set",
        ),
    }
}

/// `POST /social/nonce` and `sign-in/social` (issue 14), and `GET /providers` (issue
/// 15), with the server SIGKILLed at a
/// random instant after the sign-in was sent: after the restart a nonce issued before
/// the kill still works (it is signed, not stored), a token the server had answered
/// 200 is a replay (401), a token whose answer was lost either signs in now or was
/// already spent (401) — never a 5xx, never two accounts for one identity — and the
/// database checks hold.
async fn killed_mid_social_sign_in(db: ServerDb) {
    use guestpass_testkit::oidc::OidcPeer;
    use serde_json::json;
    let (kills, mut rng) = plan("killed_mid_social_sign_in");
    let idp = OidcPeer::start();
    let extra = format!(
        "[socialProviders.acme]\nclientId = \"crash-client\"\nissuer = \"{}\"\n",
        idp.issuer
    );
    let mut server = ServerProcess::new(&db.url, &extra);
    server.start().await;
    let http = reqwest::Client::new();
    let base = server.url();
    let api = |route: &str| format!("{base}/api/auth{route}");
    for round in 0..kills {
        let login = format!("crash-{round}@example.com");
        let n = server_nonce(&http, &api("")).await;
        let token = guestpass_tests::browser::mint_id_token(
            &idp.issuer,
            "crash-client",
            &n,
            &[("login_hint", login.as_str())],
        )
        .await;
        // A nonce for after the restart, issued by the process about to die.
        let later = server_nonce(&http, &api("")).await;
        let body = json!({"provider": "acme", "idToken": token, "nonce": n});
        let sent = tokio::spawn(
            http.post(api("/sign-in/social"))
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send(),
        );
        // The settings screen's read (issue 15), in flight at the kill too.
        let asked = tokio::spawn(http.get(api("/providers")).send());
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..30_000))).await;
        server.kill();
        let answered = match sent.await.unwrap() {
            Ok(r) => Some(r.status().as_u16()),
            Err(_) => None,
        };
        if let Ok(r) = asked.await.unwrap() {
            assert_eq!(
                r.status().as_u16(),
                200,
                "round {round}: providers at the kill"
            );
        }
        check_server_db(&db, &format!("social round {round} after the kill")).await;
        server.start().await;
        // The restarted process is ready for a load balancer at once (issue 15).
        let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(
            ready.status().as_u16(),
            200,
            "round {round}: /readyz after the restart"
        );
        let providers: serde_json::Value = http
            .get(api("/providers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            providers["providers"],
            json!([{"name": "acme", "issuer": idp.issuer, "clientId": "crash-client"}]),
            "round {round}: the restarted server's providers"
        );
        let again = http
            .post(api("/sign-in/social"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let again = again.status().as_u16();
        match answered {
            Some(200) => assert_eq!(again, 401, "round {round}: a replay after the restart"),
            Some(status) => assert!(status < 500, "round {round}: {status}"),
            None => assert!(again == 200 || again == 401, "round {round}: {again}"),
        }
        let fresh = guestpass_tests::browser::mint_id_token(
            &idp.issuer,
            "crash-client",
            &later,
            &[("login_hint", login.as_str())],
        )
        .await;
        let resp = http
            .post(api("/sign-in/social"))
            .json(&json!({"provider": "acme", "idToken": fresh, "nonce": later}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "round {round}: the nonce from before the kill"
        );
    }
    let identities: i64 = on_pool!(db, |p| sqlx::query_scalar(
        "SELECT COUNT(*) FROM accounts WHERE provider = 'acme'"
    )
    .fetch_one(p)
    .await
    .unwrap());
    assert_eq!(
        identities,
        i64::try_from(kills).unwrap(),
        "one account per identity"
    );
    server.kill();
    db.drop_db().await;
}

/// A nonce issued by the server (`POST {auth_base}/social/nonce`), as the app asks
/// for one before it opens the browser.
async fn server_nonce(http: &reqwest::Client, auth_base: &str) -> String {
    let got: serde_json::Value = http
        .post(format!("{auth_base}/social/nonce"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    got["nonce"].as_str().unwrap().to_owned()
}

const DEVICES_PER_ROUND: usize = 3;

/// Rounds of fresh devices that register and upgrade at once while the server dies
/// under them; then the server comes back and every device's upgrade must land
/// exactly once.
async fn killed_mid_upgrade(db: ServerDb) {
    let kind = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let (kills, mut rng) = plan(&format!("server killed mid-upgrade ({kind})"));
    let mut server = ServerProcess::new(&db.url, "cleanupIntervalSecs = 0");
    let (mut cut, mut queued, mut lost) = (0, 0, 0);
    let mut lost_at: Vec<String> = Vec::new();
    for round in 0..kills {
        server.start().await;
        let devices: Vec<Device> = (0..DEVICES_PER_ROUND)
            .map(|_| Device::new(&server.url(), Dialect::Guestpass))
            .collect();
        let mut work = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let app = std::sync::Arc::new(device.launch().await);
            let email = format!("r{round}-d{i}@crash.example.com");
            let a = app.clone();
            work.push((
                app,
                email.clone(),
                tokio::spawn(async move {
                    a.ensure_session().await.unwrap();
                    a.upgrade(
                        &email,
                        SecretString::from("crash-harness-pw".to_owned()),
                        None,
                    )
                    .await
                }),
            ));
        }
        // The fault: a kill at an arbitrary instant of registration, hashing, commit
        // or answer.
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..400_000))).await;
        let running = work.iter().filter(|(_, _, t)| !t.is_finished()).count();
        assert!(
            server.kill(),
            "the server died on its own\n{}",
            server.last_log()
        );
        cut += usize::from(running > 0);
        for (_, _, task) in &mut work {
            match task.await.unwrap() {
                Ok(UpgradeOutcome::Queued { .. }) => queued += 1,
                Ok(UpgradeOutcome::Upgraded(_)) => {}
                Err(e) => panic!("round {round}: upgrade answered {e:?}"),
            }
        }
        check_server_db(&db, &format!("round {round}, after the kill")).await;

        server.start().await;
        for (app, email, _) in &work {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut registration_lost = false;
            loop {
                let s = app.sync_now().await;
                if s.state == SyncState::UpToDate && s.pending_upgrade.is_none() {
                    break;
                }
                // Killed after committing the guest's registration but before
                // answering: the retry carries the same device key and must get a
                // new session (idempotent registration). A USER_ID_TAKEN here is a
                // lost registration: counted and shown, then failed below.
                if s.reason.as_ref().map(|r| r.code) == Some(ErrorCode::UserIdTaken) {
                    registration_lost = true;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: no convergence: {s:?}"
                );
            }
            if registration_lost {
                lost += 1;
                lost_at.push(format!("round {round}: {email}"));
                continue;
            }
            let me = app.ensure_session().await.unwrap();
            assert!(
                !me.user.is_anonymous,
                "round {round}: {email} not upgraded locally"
            );
            assert_eq!(me.user.email.as_deref(), Some(email.as_str()));
            let (anonymous, remote_email, upgrades): (bool, Option<String>, i64) =
                on_pool!(db, |p| {
                    sqlx::query_as(
                        "SELECT u.is_anonymous, u.email, (SELECT COUNT(*) FROM audit_log a \
                     WHERE a.user_id = u.id AND a.event = 'user.updated' \
                     AND a.detail LIKE '%\"upgrade\":\"email\"%') FROM users u WHERE u.id = $1",
                    )
                    .bind(&me.user.id)
                    .fetch_one(p)
                    .await
                    .unwrap()
                });
            assert_eq!(
                (anonymous, remote_email.as_deref(), upgrades),
                (false, Some(email.as_str()), 1)
            );
        }
        assert!(server.kill());
        check_server_db(&db, &format!("round {round}, converged")).await;
        for ((app, _, _), device) in work.iter().zip(&devices) {
            if let Ok(Some(s)) = app.get_session().await {
                device.forget_keyring(&s.user.id);
            }
            app.store().close().await;
        }
    }
    tell(&format!(
        "server killed mid-upgrade ({kind}): {kills} kills, {cut} with requests in flight, \
         {queued} upgrades queued by the kill and retried after the restart; \
         {} converged exactly once; {lost} lost their registration (USER_ID_TAKEN)",
        kills * DEVICES_PER_ROUND - lost
    ));
    db.drop_db().await;
    assert!(
        lost_at.is_empty(),
        "{kind}: devices lost their registration (USER_ID_TAKEN) although they kept \
         their device key: {lost_at:?}"
    );
}

/// Whole-database invariants the server must keep at every instant.
async fn check_server_db(db: &ServerDb, context: &str) {
    db.settle_after_kill().await;
    if let guestpass_tests::server_process::Pool::Sqlite(p) = &db.pool {
        let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(p)
            .await
            .unwrap();
        assert_eq!(ok, "ok", "{context}");
    }
    let checks = [
        (
            "half-upgraded users (is_anonymous disagrees with email + password hash)",
            // Social accounts (a provider identity, no password) are the exception.
            "SELECT COUNT(*) FROM users WHERE (is_anonymous = FALSE) <> \
             (email IS NOT NULL AND password_hash IS NOT NULL) \
             AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.user_id = users.id)",
        ),
        (
            "full accounts without exactly one upgrade audit and verification token",
            "SELECT COUNT(*) FROM users u WHERE u.is_anonymous = FALSE AND u.password_hash <> 'seeded' AND ( \
               (SELECT COUNT(*) FROM audit_log a WHERE a.user_id = u.id AND a.event = 'user.updated' \
                AND a.detail LIKE '%\"upgrade\":\"email\"%') <> 1 \
               OR (SELECT COUNT(*) FROM verification_tokens v WHERE v.user_id = u.id) <> 1)",
        ),
        (
            "guests with an upgrade audit",
            // A guest's recovery key change (issue 16) is no upgrade.
            "SELECT COUNT(*) FROM users u WHERE u.is_anonymous = TRUE AND EXISTS (SELECT 1 FROM audit_log a \
             WHERE a.user_id = u.id AND a.event = 'user.updated' \
             AND a.detail NOT LIKE '%\"change\":\"recoveryKey\"%')",
        ),
        (
            "orphaned sessions",
            "SELECT COUNT(*) FROM sessions s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id)",
        ),
        (
            "orphaned accounts",
            "SELECT COUNT(*) FROM accounts s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id)",
        ),
        (
            "orphaned verification tokens",
            "SELECT COUNT(*) FROM verification_tokens s WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id)",
        ),
        (
            "users without their user.created audit",
            "SELECT COUNT(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM audit_log a \
             WHERE a.user_id = u.id AND a.event = 'user.created')",
        ),
        (
            "deleted users still present",
            "SELECT COUNT(*) FROM audit_log a WHERE a.event = 'user.deleted' \
             AND EXISTS (SELECT 1 FROM users u WHERE u.id = a.user_id)",
        ),
        (
            "users deleted twice",
            "SELECT COUNT(*) FROM (SELECT user_id FROM audit_log WHERE event = 'user.deleted' \
             GROUP BY user_id HAVING COUNT(*) > 1) t",
        ),
    ];
    for (what, sql) in checks {
        let n: i64 = on_pool!(db, |p| sqlx::query_scalar(sql).fetch_one(p).await.unwrap());
        assert_eq!(n, 0, "{context}: {what}");
    }
}

const STALE_PER_SEED: usize = 5_000;
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Inserts `n` guests last active two days ago (each with a session and its
/// `user.created`), the way the server writes them. Returns their ids.
async fn seed_stale(db: &ServerDb, n: usize, round: usize) -> Vec<String> {
    let old = now_ms() - 2 * DAY_MS;
    let ids: Vec<String> = (0..n).map(|_| guestpass_proto::new_user_id()).collect();
    for (c, chunk) in ids.chunks(500).enumerate() {
        let users: Vec<String> = chunk
            .iter()
            .map(|id| format!("('{id}', NULL, FALSE, TRUE, NULL, '{{}}', {old}, {old}, {old})"))
            .collect();
        let sessions: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                format!(
                    "('ses_seed{round}x{c}x{i}', '{id}', 'hash{round}x{c}x{i}', {}, {old}, {old})",
                    old + 7 * DAY_MS
                )
            })
            .collect();
        let audits: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| format!("('aud_seed{round}x{c}x{i}', 'user.created', '{id}', '{id}', {old}, NULL, '{{}}')"))
            .collect();
        let statements = [
            format!("INSERT INTO users (id, email, email_verified, is_anonymous, password_hash, metadata, created_at, updated_at, last_active_at) VALUES {}", users.join(",")),
            format!("INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) VALUES {}", sessions.join(",")),
            format!("INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) VALUES {}", audits.join(",")),
        ];
        for sql in &statements {
            on_pool!(db, |p| {
                sqlx::query(sql).execute(p).await.unwrap();
            });
        }
    }
    ids
}

/// Those who must survive every cleanup: recent guests and old full accounts.
async fn seed_keepers(db: &ServerDb) -> Vec<String> {
    let now = now_ms();
    let mut keep = Vec::new();
    for i in 0..40 {
        let id = guestpass_proto::new_user_id();
        let (anonymous, email, hash, active) = if i % 2 == 0 {
            ("TRUE", "NULL".to_owned(), "NULL", now)
        } else {
            (
                "FALSE",
                format!("'keeper{i}@crash.example.com'"),
                "'seeded'",
                now - 30 * DAY_MS,
            )
        };
        let sql = [
            format!("INSERT INTO users (id, email, email_verified, is_anonymous, password_hash, metadata, created_at, updated_at, last_active_at) VALUES ('{id}', {email}, FALSE, {anonymous}, {hash}, '{{}}', {active}, {active}, {active})"),
            format!("INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) VALUES ('ses_keep{i}', '{id}', 'keephash{i}', {}, {active}, {active})", now + 7 * DAY_MS),
            format!("INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) VALUES ('aud_keep{i}', 'user.created', '{id}', '{id}', {active}, NULL, '{{}}')"),
        ];
        for s in &sql {
            on_pool!(db, |p| {
                sqlx::query(s).execute(p).await.unwrap();
            });
        }
        keep.push(id);
    }
    keep
}

/// The server starts with a backlog of stale guests and its periodic cleanup due at
/// once; it is killed at random instants of it. After each kill: every stale guest is
/// either still there with its session or gone with exactly one `user.deleted`, no
/// session outlives its user, and nobody else was touched.
async fn killed_mid_cleanup(db: ServerDb) {
    let kind = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let (kills, mut rng) = plan(&format!("server killed mid-cleanup ({kind})"));
    let mut server = ServerProcess::new(
        &db.url,
        "cleanupIntervalSecs = 1\n[authMethods]\nanonymous = { enabled = true, maxAge = 3600 }",
    );
    server.admin(&["list-users", "--limit", "1"]); // creates the schema
    let keepers = seed_keepers(&db).await;
    let mut stale: BTreeSet<String> = BTreeSet::new();
    let mut deleted_total = 0usize;
    let mut mid = 0;
    // The kill window adapts to where the cleanup runs on this machine: a kill that
    // found nothing deleted moves it later, one that found everything moves it earlier.
    let (mut lo, mut hi) = (0u64, 1_500u64);
    for round in 0..kills {
        if stale.is_empty() {
            stale.extend(seed_stale(&db, STALE_PER_SEED, round).await);
        }
        let before = stale.len();
        let at = rng.gen_range(lo..=hi.max(lo + 1));
        server.spawn();
        tokio::time::sleep(Duration::from_millis(at)).await;
        assert!(
            server.kill(),
            "the server died on its own\n{}",
            server.last_log()
        );

        let context = format!("cleanup kill {round} at {at} ms");
        check_server_db(&db, &context).await;
        let present: BTreeSet<String> = on_pool!(db, |p| {
            sqlx::query_scalar::<_, String>("SELECT id FROM users")
                .fetch_all(p)
                .await
                .unwrap()
        })
        .into_iter()
        .collect();
        let audited: BTreeMap<String, i64> = on_pool!(db, |p| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT user_id, COUNT(*) FROM audit_log WHERE event = 'user.deleted' \
                 AND actor = 'system' GROUP BY user_id",
            )
            .fetch_all(p)
            .await
            .unwrap()
        })
        .into_iter()
        .collect();
        for id in &keepers {
            assert!(
                present.contains(id) && !audited.contains_key(id),
                "{context}: keeper {id} deleted"
            );
        }
        let gone: Vec<String> = stale
            .iter()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in &stale {
            let n = audited.get(id).copied().unwrap_or(0);
            assert_eq!(
                n,
                i64::from(!present.contains(id)),
                "{context}: {id} deleted {n} times"
            );
        }
        let live_sessions: i64 = on_pool!(db, |p| {
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
                .fetch_one(p)
                .await
                .unwrap()
        });
        assert_eq!(
            live_sessions as usize,
            keepers.len() + stale.len() - gone.len(),
            "{context}"
        );
        for id in &gone {
            stale.remove(id);
        }
        deleted_total += gone.len();
        match gone.len() {
            0 => lo = at.min(hi.saturating_sub(20)),
            n if n == before => hi = at.max(lo + 20),
            _ => mid += 1,
        }
    }
    tell(&format!(
        "server killed mid-cleanup ({kind}): {kills} kills, {mid} in the middle of the backlog, \
         {deleted_total} stale guests deleted, each audited exactly once; no orphaned sessions; \
         kill window settled at {lo}..{hi} ms"
    ));
    db.drop_db().await;
}
