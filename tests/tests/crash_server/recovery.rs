//! Guest recovery (issue 16) under SIGKILL: guests replace their recovery key
//! while other devices restore with the old one and a cleaned-up guest's device
//! brings it back, and the server dies at a random instant. After each kill every
//! change is all or nothing: a guest holds exactly one of its two keys, with one
//! `user.updated {change: "recoveryKey"}` audit per key it took; every session a
//! recovery opened has its `session.created {via: "recovery"}` audit and no audit
//! lacks its session; a revived guest is back with its tombstone gone, or still
//! gone with its tombstone. After a restart the key held restores, the other is
//! refused (401), and a revival that did not land lands now.

use std::time::Duration;

use guestpass_tests::server_process::{ServerDb, ServerProcess};
use guestpass_tests::{on_pool, post_json};
use rand::Rng;
use serde_json::json;

use super::{check_server_db, plan, tell};

const GUESTS_PER_ROUND: usize = 3;

fn key(round: usize, guest: usize, n: u8) -> String {
    // 43 characters like a device's (URL-safe base64 of 256 bits).
    format!("{:0>43}", format!("r{round}g{guest}k{n}"))
}

fn digest(s: &str) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()))
}

/// `(recovery key digest, key audits, sessions, recovery audits)` of one guest.
async fn recovery_state(db: &ServerDb, id: &str) -> (Option<String>, i64, i64, i64) {
    on_pool!(db, |p| {
        sqlx::query_as(
            "SELECT u.recovery_key_hash, \
             (SELECT COUNT(*) FROM audit_log l WHERE l.user_id = u.id AND l.event = 'user.updated' \
              AND l.detail LIKE '%\"change\":\"recoveryKey\"%'), \
             (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id), \
             (SELECT COUNT(*) FROM audit_log l WHERE l.user_id = u.id AND l.event = 'session.created' \
              AND l.detail LIKE '%\"via\":\"recovery\"%') \
             FROM users u WHERE u.id = $1",
        )
        .bind(id)
        .fetch_one(p)
        .await
        .unwrap()
    })
}

/// `(the user exists, its tombstone exists)`.
async fn revival_state(db: &ServerDb, id: &str) -> (bool, bool) {
    on_pool!(db, |p| {
        sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1), \
             EXISTS (SELECT 1 FROM gone_users WHERE id = $1)",
        )
        .bind(id)
        .fetch_one(p)
        .await
        .unwrap()
    })
}

/// Makes `id` a guest the stale-guest cleanup deleted (its tombstone, as the
/// cleanup writes it), straight in the database: the clock of a server process
/// cannot be moved, and the cleanup itself has its own crash test.
async fn as_cleaned_up(db: &ServerDb, id: &str, device_key: &str) {
    on_pool!(db, |p| {
        sqlx::query(
            "INSERT INTO gone_users (id, reason, device_key_hash, recovery_key_hash, gone_at) \
             VALUES ($1, 'cleanup', $2, NULL, 0)",
        )
        .bind(id)
        .bind(digest(device_key))
        .execute(p)
        .await
        .unwrap();
    })
}

pub(super) async fn killed_mid_recovery(db: ServerDb) {
    let kind = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let (kills, mut rng) = plan(&format!("server killed mid-recovery ({kind})"));
    let mut server = ServerProcess::new(&db.url, "cleanupIntervalSecs = 0\n");
    let http = reqwest::Client::new();
    let (mut cut, mut revived_before_kill) = (0, 0);
    for round in 0..kills {
        server.start().await;
        let base = format!("{}/api/auth", server.url());
        let mut guests = Vec::new();
        for g in 0..GUESTS_PER_ROUND {
            let (status, guest) =
                post_json(&http, &format!("{base}/sign-in/anonymous"), None, json!({})).await;
            assert_eq!(status, 200, "{guest}");
            let id = guest["user"]["id"].as_str().unwrap().to_owned();
            let token = guest["token"].as_str().unwrap().to_owned();
            let (status, set) = post_json(
                &http,
                &format!("{base}/anonymous/recovery-key"),
                Some(&token),
                json!({"recoveryKey": key(round, g, 1)}),
            )
            .await;
            assert_eq!(status, 200, "{set}");
            guests.push((id, token));
        }
        // A guest the cleanup took, whose device comes back during the kill.
        let gone_id = guestpass_proto::new_user_id();
        let device_key = format!("crash-device-key-{gone_id}");
        as_cleaned_up(&db, &gone_id, &device_key).await;

        let mut work = Vec::new();
        for (g, (_, token)) in guests.iter().enumerate() {
            let rotate = http
                .post(format!("{base}/anonymous/recovery-key"))
                .bearer_auth(token)
                .json(&json!({"recoveryKey": key(round, g, 2)}))
                .timeout(Duration::from_secs(10));
            let restore = http
                .post(format!("{base}/sign-in/recovery"))
                .json(&json!({"recoveryKey": key(round, g, 1)}))
                .timeout(Duration::from_secs(10));
            work.push(tokio::spawn(async move {
                rotate.send().await.map(|r| r.status().as_u16())
            }));
            work.push(tokio::spawn(async move {
                restore.send().await.map(|r| r.status().as_u16())
            }));
        }
        let comeback = http
            .post(format!("{base}/sign-in/anonymous"))
            .json(&json!({"id": gone_id, "deviceKey": device_key}))
            .timeout(Duration::from_secs(10));
        let came_back =
            tokio::spawn(async move { comeback.send().await.map(|r| r.status().as_u16()) });
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..40_000))).await;
        cut += usize::from(work.iter().any(|t| !t.is_finished()) || !came_back.is_finished());
        assert!(
            server.kill(),
            "the server died on its own\n{}",
            server.last_log()
        );
        for task in work {
            if let Ok(status) = task.await.unwrap() {
                assert!(status < 500, "round {round}: {status} at the kill");
            }
        }
        if let Ok(Ok(200)) = came_back.await {
            revived_before_kill += 1;
        }
        check_server_db(&db, &format!("recovery round {round}, after the kill")).await;
        for (g, (id, _)) in guests.iter().enumerate() {
            let (held, key_audits, sessions, via) = recovery_state(&db, id).await;
            let held = held.expect("a guest always holds one key");
            let expected_audits = if held == digest(&key(round, g, 2)) {
                2
            } else {
                1
            };
            assert!(
                held == digest(&key(round, g, 1)) || expected_audits == 2,
                "round {round}: a key nobody set"
            );
            assert_eq!(
                key_audits, expected_audits,
                "round {round}: a key change without its audit"
            );
            assert_eq!(
                sessions,
                1 + via,
                "round {round}: a recovery session without its audit, or the reverse"
            );
        }
        let (back, tombstone) = revival_state(&db, &gone_id).await;
        assert!(
            back != tombstone,
            "round {round}: half a revival (user {back}, tombstone {tombstone})"
        );

        // Back up: the key held restores, the other is refused; the comeback lands.
        server.start().await;
        for (g, (id, _)) in guests.iter().enumerate() {
            let (held, ..) = recovery_state(&db, id).await;
            let (good, bad) = if held.as_deref() == Some(digest(&key(round, g, 2)).as_str()) {
                (key(round, g, 2), key(round, g, 1))
            } else {
                (key(round, g, 1), key(round, g, 2))
            };
            let (status, body) = post_json(
                &http,
                &format!("{base}/sign-in/recovery"),
                None,
                json!({"recoveryKey": good}),
            )
            .await;
            assert_eq!(
                (status, body["user"]["id"].as_str()),
                (200, Some(id.as_str())),
                "round {round}"
            );
            let (status, body) = post_json(
                &http,
                &format!("{base}/sign-in/recovery"),
                None,
                json!({"recoveryKey": bad}),
            )
            .await;
            assert_eq!(status, 401, "round {round}: {body}");
        }
        let (status, body) = post_json(
            &http,
            &format!("{base}/sign-in/anonymous"),
            None,
            json!({"id": gone_id, "deviceKey": device_key}),
        )
        .await;
        assert_eq!(
            (status, body["user"]["id"].as_str()),
            (200, Some(gone_id.as_str())),
            "round {round}: {body}"
        );
        assert_eq!(
            revival_state(&db, &gone_id).await,
            (true, false),
            "round {round}"
        );
        assert!(server.kill());
        check_server_db(&db, &format!("recovery round {round}, converged")).await;
    }
    tell(&format!(
        "server killed mid-recovery ({kind}): {kills} kills, {cut} with requests in flight, \
         {revived_before_kill} revivals answered before a kill; every change all or nothing"
    ));
    db.drop_db().await;
}
