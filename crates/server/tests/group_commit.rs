//! Anonymous sign-ins are committed in batches by one writer (group commit). What a
//! user sees must not change: under a burst each request gets its own answer (a
//! taken id is 409 for that request alone), every 200 is a stored guest with its
//! session and audit rows, the rate limit counts exactly, and a database that goes
//! away mid-burst answers 503 (typed) and then recovers without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use guestpass_server::crypto::sha256_hex;
use guestpass_server::db::{AuditFilter, UserFilter};
use guestpass_server::Clock;
use serde_json::{json, Value};

both_backends!(
    a_burst_of_sign_ins_gets_one_answer_each_and_only_taken_ids_fail,
    the_rate_limit_counts_exactly_under_a_burst,
    a_database_gone_mid_burst_answers_503_then_recovers,
);

const BURST: usize = 200;

/// Fires every body at once (one connection each) and returns `(status, body)` in order.
async fn burst(s: &TestServer, bodies: Vec<Value>) -> Vec<(u16, Value, Option<String>)> {
    let url = s.url("/sign-in/anonymous");
    let calls = bodies.into_iter().map(|body| {
        let http = reqwest::Client::new();
        let url = url.clone();
        tokio::spawn(async move {
            let res = http.post(url).json(&body).send().await.unwrap();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let (status, body) = into_json(res).await;
            (status.as_u16(), body, retry_after)
        })
    });
    let mut out = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        out.push(call.await.unwrap());
    }
    out
}

/// The stored guest behind a 200: its session opens with the token, and it has
/// exactly its `user.created` and `session.created` audit rows.
async fn assert_stored(s: &TestServer, body: &Value) {
    let db = s.handle.database();
    let id = body["user"]["id"].as_str().unwrap();
    let token = body["token"].as_str().unwrap();
    let (user, session) = db
        .session_by_token(&sha256_hex(token), s.clock.now_ms())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no live session stored for {id}"));
    assert_eq!(user.id, id);
    assert!(user.is_anonymous);
    assert_eq!(session.id, body["session"]["id"].as_str().unwrap());
    let audits = db
        .audit_log(&AuditFilter {
            user_id: Some(id.to_owned()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut kinds: Vec<&str> = audits.iter().map(|a| a.event.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["session.created", "user.created"], "{id}");
}

async fn all_users(s: &TestServer) -> Vec<String> {
    s.handle
        .database()
        .list_users(&UserFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect()
}

async fn a_burst_of_sign_ins_gets_one_answer_each_and_only_taken_ids_fail(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.rate_limit.anonymous_per_minute = 0).await;
    // Ten ids already taken before the burst, and five asked for twice within it.
    let mut taken = Vec::new();
    for _ in 0..10 {
        let id = guestpass_proto::new_user_id();
        let (status, body) = s
            .post("/sign-in/anonymous", None, json!({ "id": id }))
            .await;
        assert_eq!(status, 200, "{body}");
        taken.push(id);
    }
    let twice: Vec<String> = (0..5).map(|_| guestpass_proto::new_user_id()).collect();
    let mut bodies: Vec<Value> = taken.iter().map(|id| json!({ "id": id })).collect();
    bodies.extend(
        twice
            .iter()
            .flat_map(|id| [json!({ "id": id }), json!({ "id": id })]),
    );
    while bodies.len() < BURST {
        // Half with an id minted on the device, half with one minted by the server.
        if bodies.len().is_multiple_of(2) {
            bodies.push(json!({ "id": guestpass_proto::new_user_id() }));
        } else {
            bodies.push(json!({}));
        }
    }
    let answers = burst(&s, bodies.clone()).await;

    let mut wins: HashMap<String, usize> = HashMap::new();
    let mut created = Vec::new();
    for ((status, body, _), asked) in answers.iter().zip(&bodies) {
        let asked = asked["id"].as_str();
        match status {
            200 => {
                let id = body["user"]["id"].as_str().unwrap().to_owned();
                if let Some(asked) = asked {
                    assert_eq!(id, asked);
                }
                assert!(!taken.contains(&id), "{id} was taken before the burst");
                *wins.entry(id.clone()).or_default() += 1;
                created.push(body.clone());
            }
            409 => {
                assert_error(
                    &(reqwest::StatusCode::CONFLICT, body.clone()),
                    409,
                    "USER_ID_TAKEN",
                );
                let asked = asked.expect("only a requested id can be taken").to_owned();
                assert!(
                    taken.contains(&asked) || twice.contains(&asked),
                    "{asked} was free"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // Each id asked twice: exactly one of the two got it.
    for id in &twice {
        assert_eq!(wins.get(id), Some(&1), "{id}");
    }
    assert!(wins.values().all(|&n| n == 1));
    assert_eq!(created.len(), BURST - taken.len() - twice.len());

    // Every 200 is stored, whole; nothing else was.
    for body in &created {
        assert_stored(&s, body).await;
    }
    let stored: HashSet<String> = all_users(&s).await.into_iter().collect();
    let expected: HashSet<String> = taken.iter().cloned().chain(wins.into_keys()).collect();
    assert_eq!(stored, expected);
    let audits = s
        .handle
        .database()
        .audit_log(&AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audits.len(), 2 * expected.len());
    s.stop().await;
}

async fn the_rate_limit_counts_exactly_under_a_burst(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| c.rate_limit.anonymous_per_minute = 30).await;
    // 60 at once from one address, a third of them refused before the writer
    // (malformed id): still requests, so they count like the rest.
    let bodies: Vec<Value> = (0..60_u32)
        .map(|i| {
            if i.is_multiple_of(3) {
                json!({ "id": "usr_not-an-id" })
            } else {
                json!({})
            }
        })
        .collect();
    let answers = burst(&s, bodies).await;
    let mut admitted = 0;
    let mut limited = 0;
    for (status, body, retry_after) in &answers {
        match status {
            200 => {
                admitted += 1;
                assert_stored(&s, body).await;
            }
            400 => assert_eq!(body["code"], "INVALID_USER_ID", "{body}"),
            429 => {
                limited += 1;
                assert_eq!(body["code"], "RATE_LIMITED", "{body}");
                // t0 is 5 s into its minute.
                assert_eq!(retry_after.as_deref(), Some("55"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let refused_early = answers.iter().filter(|a| a.0 == 400).count();
    assert_eq!(limited, 30);
    assert_eq!(admitted + limited + refused_early, 60);
    // Exactly 30 hits fit in the window; the 20 malformed ones took their share.
    assert_eq!(
        admitted + refused_early,
        30,
        "{admitted} admitted, {refused_early} refused as malformed"
    );
    assert_eq!(all_users(&s).await.len(), admitted);
    // Still limited now; a new window admits again.
    assert_error(
        &s.post("/sign-in/anonymous", None, json!({})).await,
        429,
        "RATE_LIMITED",
    );
    s.clock.advance(chrono::Duration::seconds(55));
    assert_eq!(s.post("/sign-in/anonymous", None, json!({})).await.0, 200);
    s.stop().await;
}

#[derive(Default)]
struct Load {
    /// 0 before the outage, 1 during, 2 after.
    phase: AtomicUsize,
    stop: AtomicBool,
    /// (phase when sent, phase when answered, status)
    answers: Mutex<Vec<(usize, usize, u16)>>,
    admitted: Mutex<Vec<Value>>,
}

impl Load {
    fn count(&self, f: impl Fn(&(usize, usize, u16)) -> bool) -> usize {
        self.answers.lock().unwrap().iter().filter(|a| f(a)).count()
    }
}

async fn sign_in_until_stopped(load: Arc<Load>, url: String) {
    // The client gives up well after the server must have answered (2 x the
    // database timeout): no answer by then is a hang.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while !load.stop.load(Ordering::SeqCst) {
        let sent = load.phase.load(Ordering::SeqCst);
        let res = http.post(&url).json(&json!({})).send().await;
        let res = res.unwrap_or_else(|e| panic!("no answer (a hang?): {e}"));
        let got = into_json(res).await;
        match got.0.as_u16() {
            200 => load.admitted.lock().unwrap().push(got.1.clone()),
            503 => assert_error(&got, 503, "SERVICE_UNAVAILABLE"),
            other => panic!("unexpected {other}: {}", got.1),
        }
        let answered = load.phase.load(Ordering::SeqCst);
        load.answers
            .lock()
            .unwrap()
            .push((sent, answered, got.0.as_u16()));
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_database_gone_mid_burst_answers_503_then_recovers(backend: Backend) {
    let s = TestServer::start_with(&backend, |c| {
        c.rate_limit.anonymous_per_minute = 0;
        c.database_timeout_secs = 1;
    })
    .await;
    let load = Arc::new(Load::default());
    let url = s.url("/sign-in/anonymous");
    let workers: Vec<_> = (0..16)
        .map(|_| tokio::spawn(sign_in_until_stopped(load.clone(), url.clone())))
        .collect();

    until("sign-ins before the outage", || {
        load.count(|a| a.2 == 200) >= 50
    })
    .await;
    let outage = Outage::start(&s).await;
    load.phase.store(1, Ordering::SeqCst);
    until("503s during the outage", || {
        load.count(|a| a.0 == 1 && a.1 == 1 && a.2 == 503) >= 16
    })
    .await;
    outage.end().await;
    load.phase.store(2, Ordering::SeqCst);
    until("sign-ins after the outage", || {
        load.count(|a| a.0 == 2 && a.2 == 200) >= 50
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    // Wholly inside the outage: nothing but 503. Wholly after: nothing but 200.
    assert_eq!(load.count(|a| a.0 == 1 && a.1 == 1 && a.2 != 503), 0);
    assert_eq!(load.count(|a| a.0 == 2 && a.2 != 200), 0);
    // Every guest that was told 200 is stored, whole.
    let admitted = load.admitted.lock().unwrap().clone();
    let stored: HashSet<String> = all_users(&s).await.into_iter().collect();
    for body in &admitted {
        assert!(stored.contains(body["user"]["id"].as_str().unwrap()));
        assert_stored(&s, body).await;
    }
    s.stop().await;
}

/// The sign-in writer leaves its checkpoints to a task of their own
/// (`wal_checkpoint.rs`): its commits still reach the database file while the
/// server runs, so a copy of the database file alone is current. Here the WAL
/// would never reach SQLite's own threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_reach_the_database_file_while_the_server_runs() {
    let s =
        TestServer::start_with(&Backend::Sqlite, |c| c.rate_limit.anonymous_per_minute = 0).await;
    let answers = burst(&s, vec![json!({}); 50]).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, body, _)| {
            assert_eq!(*status, 200, "{body}");
            body["user"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let db_file = s.db.url.trim_start_matches("sqlite://").to_owned();
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    // A copy taken while a checkpoint writes may be torn: that one does not count.
    let in_file_alone = || {
        let stored = || -> Option<HashSet<String>> {
            std::fs::copy(&db_file, &copy).ok()?;
            let conn = rusqlite::Connection::open(&copy).ok()?;
            let mut found = conn.prepare("SELECT id FROM users").ok()?;
            let rows = found.query_map([], |row| row.get(0)).ok()?;
            rows.collect::<Result<_, _>>().ok()
        };
        stored().is_some_and(|stored| ids.is_subset(&stored))
    };
    until("the guests in the database file alone", in_file_alone).await;
}

/// Under steady sign-ins the WAL is written from its start again once it holds
/// `sqliteWalRestartKib` (`wal_checkpoint.rs`), so its file stays near that size
/// however much the writer commits, and each restart is counted on `/metrics`.
/// Without the restart it only grows: these sign-ins took it to 89 MB (5-6 MB
/// with it, the restart at 1 MiB: what the debug server writes between passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_small_under_steady_sign_ins() {
    const SIGN_INS: usize = 6_000;
    const RESTART_KIB: u64 = 1024;
    const MAX_WAL: u64 = 16 << 20;
    let s = TestServer::start_with(&Backend::Sqlite, |c| {
        c.rate_limit.anonymous_per_minute = 0;
        c.sqlite_wal_restart_kib = RESTART_KIB;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let sent = Arc::new(AtomicUsize::new(0));
    let url = s.url("/sign-in/anonymous");
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (sent, url) = (sent.clone(), url.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while sent.fetch_add(1, Ordering::SeqCst) < SIGN_INS {
                    let res = http.post(&url).json(&json!({})).send().await.unwrap();
                    assert_eq!(res.status(), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let db_file = s.db.url.trim_start_matches("sqlite://").to_owned();
    // The file never shrinks: its size is the most the WAL ever held.
    let size = std::fs::metadata(format!("{db_file}-wal")).unwrap().len();
    assert!(size < MAX_WAL, "the WAL grew to {size} bytes");
    let restarts = s.metric("guestpass_sqlite_wal_restarts_total").await;
    assert!(
        restarts >= 1.0,
        "the WAL was never restarted ({size} bytes)"
    );
    let conn = rusqlite::Connection::open(&db_file).unwrap();
    let users: usize = conn
        .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
        .unwrap();
    assert_eq!(users, SIGN_INS);
    s.stop().await;
}
