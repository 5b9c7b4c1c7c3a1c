//! Anonymous sign-in's commit path (issue 17) under SIGKILL. Devices sign in their
//! own guest ids in a tight loop, so the writer always has batches in flight: one
//! being written while the one before it waits for its commit to reach the disk
//! (SQLite: the WAL's fdatasync after the write lock is released; PostgreSQL: the
//! one-statement batch). The server dies at a random instant. Then:
//! - every sign-in that was answered 200 is stored: its user, its session (the
//!   token opens it after the restart) and its audits. A kill after the answer,
//!   before the next batch's sync, loses nothing;
//! - a sign-in that was committed but not answered (the kill fell between the
//!   commit and the answer) is whole too, and its device's retry with the same id
//!   and device key signs it in as that same guest. The test counts these and
//!   asserts the kills did land in that window;
//! - nothing is half written (`check_server_db`).
//!
//! On SQLite the WAL is restarted past 64 KiB instead of 64 MiB
//! (`sqliteWalRestartKib`), and each round is killed only after the server
//! reported a restart on `/metrics`: the kills then fall after the writer was paused
//! and its WAL written from the start again, over frames of batches already
//! answered (`wal_checkpoint.rs`), and those batches must still be whole.
//!
//! A SIGKILL leaves the OS's page cache alone, so it shows the order of commit and
//! answer, not the fsync itself: that a batch is on disk before its answer is
//! `wal_sync.rs`'s job, whose order (sync, then answer) is in `store_guests.rs`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guestpass_tests::server_process::{ServerDb, ServerProcess};
use guestpass_tests::{on_pool, post_json};
use rand::Rng;
use serde_json::json;

use super::{check_server_db, plan, tell};

/// Devices signing in at once: enough for several batches in flight.
const DEVICES: usize = 24;

/// The WAL's restart point on SQLite: a few batches' worth, so the checkpoint
/// task restarts it at nearly every pass (every 100 ms) instead of once a second
/// at full load.
const WAL_RESTART_KIB: u64 = 64;

/// Sign-ins after which a round gives up waiting for a WAL restart.
const RESTART_WITHIN: usize = 20_000;

fn reserve_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// `guestpass_sqlite_wal_restarts_total` of the running server.
async fn wal_restarts(http: &reqwest::Client, metrics: std::net::SocketAddr) -> u64 {
    let text = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("guestpass_sqlite_wal_restarts_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no WAL restart count in:\n{text}"))
}

fn device_key(id: &str) -> String {
    format!("crash-sign-in-device-key-{id}")
}

/// `(sessions, user.created audits, session.created audits)` of one user, or `None`.
async fn stored(db: &ServerDb, id: &str) -> Option<(i64, i64, i64)> {
    on_pool!(db, |p| {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id), \
             (SELECT COUNT(*) FROM audit_log a WHERE a.user_id = u.id AND a.event = 'user.created'), \
             (SELECT COUNT(*) FROM audit_log a WHERE a.user_id = u.id AND a.event = 'session.created') \
             FROM users u WHERE u.id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await
        .unwrap()
    })
}

#[derive(Default)]
struct Sent {
    /// Ids whose sign-in went out, answered or not.
    tried: Vec<String>,
    /// `(id, token)` of every 200.
    answered: Vec<(String, String)>,
}

pub(super) async fn killed_mid_sign_in(db: ServerDb) {
    let kind = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let (kills, mut rng) = plan(&format!("server killed mid-sign-in ({kind})"));
    let metrics = reserve_port();
    let wal = if db.is_sqlite() {
        format!("sqliteWalRestartKib = {WAL_RESTART_KIB}\n")
    } else {
        String::new()
    };
    let mut server = ServerProcess::new(
        &db.url,
        &format!("cleanupIntervalSecs = 0\nmetricsListen = \"{metrics}\"\n{wal}"),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut answered_total, mut unanswered_but_stored, mut restarts_total) = (0, 0, 0);
    for round in 0..kills {
        server.start().await;
        let base = format!("{}/api/auth", server.url());
        let sent = Arc::new(Mutex::new(Sent::default()));
        // Each 200 is told here, so the kill comes once the writer is busy, however
        // slow the machine, and then at a random instant.
        let (told, mut answers) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut devices = Vec::new();
        for _ in 0..DEVICES {
            let (http, base, sent) = (http.clone(), base.clone(), Arc::clone(&sent));
            let told = told.clone();
            devices.push(tokio::spawn(async move {
                loop {
                    let id = guestpass_proto::new_user_id();
                    sent.lock().unwrap().tried.push(id.clone());
                    let res = http
                        .post(format!("{base}/sign-in/anonymous"))
                        .json(&json!({"id": id, "deviceKey": device_key(&id)}))
                        .send()
                        .await;
                    let Ok(res) = res else { return };
                    let status = res.status().as_u16();
                    let Ok(body) = res.json::<serde_json::Value>().await else {
                        return;
                    };
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["user"]["id"].as_str(), Some(id.as_str()));
                    let token = body["token"].as_str().unwrap().to_owned();
                    sent.lock().unwrap().answered.push((id, token));
                    let _ = told.send(());
                }
            }));
        }
        drop(told);
        let wait = rng.gen_range(DEVICES..DEVICES * 4);
        for seen in 1.. {
            answers
                .recv()
                .await
                .expect("the devices stopped before the kill");
            if seen < wait || (db.is_sqlite() && seen % DEVICES != 0) {
                continue;
            }
            if !db.is_sqlite() {
                break;
            }
            let restarts = wal_restarts(&http, metrics).await;
            if restarts > 0 {
                restarts_total += restarts;
                break;
            }
            assert!(
                seen < RESTART_WITHIN,
                "round {round}: no WAL restart after {seen} sign-ins"
            );
        }
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..20_000))).await;
        assert!(
            server.kill(),
            "the server died on its own\n{}",
            server.last_log()
        );
        for device in devices {
            device.await.unwrap();
        }
        check_server_db(&db, &format!("sign-in round {round}, after the kill")).await;
        let sent = std::mem::take(&mut *sent.lock().unwrap());
        let answered: HashSet<&str> = sent.answered.iter().map(|(id, _)| id.as_str()).collect();
        assert!(
            !answered.is_empty(),
            "round {round}: no sign-in was answered"
        );
        answered_total += answered.len();
        for id in &sent.tried {
            match stored(&db, id).await {
                Some(rows) => {
                    assert_eq!(rows, (1, 1, 1), "round {round}: {id} is half written");
                    unanswered_but_stored += usize::from(!answered.contains(id.as_str()));
                }
                None => assert!(
                    !answered.contains(id.as_str()),
                    "round {round}: {id} was answered 200 and is not stored"
                ),
            }
        }

        // Back up: every answered token opens its session; every device whose
        // answer was lost signs in again as the same guest.
        server.start().await;
        for (id, token) in &sent.answered {
            let res = http
                .get(format!("{base}/get-session"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(
                body["user"]["id"].as_str(),
                Some(id.as_str()),
                "round {round}"
            );
        }
        for id in sent
            .tried
            .iter()
            .filter(|id| !answered.contains(id.as_str()))
        {
            let (status, body) = post_json(
                &http,
                &format!("{base}/sign-in/anonymous"),
                None,
                json!({"id": id, "deviceKey": device_key(id)}),
            )
            .await;
            assert_eq!(
                (status, body["user"]["id"].as_str()),
                (200, Some(id.as_str())),
                "round {round}: {body}"
            );
        }
        assert!(server.kill());
        check_server_db(&db, &format!("sign-in round {round}, converged")).await;
    }
    let restarts = if db.is_sqlite() {
        format!("; {restarts_total} WAL restarts before the kills")
    } else {
        String::new()
    };
    tell(&format!(
        "sign-in ({kind}): {kills} kills, {answered_total} sign-ins answered and all stored, \
         {unanswered_but_stored} committed but cut before their answer, all whole{restarts}"
    ));
    assert!(
        unanswered_but_stored > 0,
        "no kill fell between a commit and its answer: the test did not reach that window"
    );
}
