//! PostgreSQL stopped under load, then started again: meanwhile every answer is 503
//! with the typed body, within a bound set by the configured database timeout (no
//! hang, no 500), and the same server process recovers on its own with nothing lost.
//!
//! The test runs its own PostgreSQL cluster (initdb into a temp dir, a free port) so
//! stopping it disturbs no other test. Runs where the PostgreSQL tests run
//! (GUESTPASS_TEST_POSTGRES_URL set, so PostgreSQL is installed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use guestpass_server::ManualClock;
use reqwest::Client;
use serde_json::json;
use sqlx::Connection;

/// A PostgreSQL cluster of the test's own, stopped (immediately) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl Cluster {
    fn start() -> Self {
        let bin = pg_bindir();
        let as_root = run_out(Command::new("id").arg("-u")).trim() == "0";
        let dir = tempfile::tempdir().unwrap();
        if as_root {
            // initdb and postgres refuse to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            dir,
            bin,
            port,
            as_root,
        };
        let data = cluster.data();
        run(&mut cluster.pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        ));
        tokio::task::block_in_place(|| cluster.pg_ctl(&["start"]));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        cmd.args(args);
        cmd
    }

    /// `pg_ctl <action> -w`; `action` is `start` or `stop` plus its flags.
    fn pg_ctl(&self, action: &[&str]) {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", data.to_str().unwrap(), "-w"];
        args.extend_from_slice(action);
        if action[0] == "start" {
            args.extend_from_slice(&["-l", log.to_str().unwrap(), "-o", &options]);
        }
        run(&mut self.pg("pg_ctl", &args));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .pg(
                "pg_ctl",
                &["-D", data.to_str().unwrap(), "stop", "-m", "immediate"],
            )
            .output();
    }
}

/// The newest installed PostgreSQL's tools (Debian layout), else `pg_config`'s.
fn pg_bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    found
        .pop()
        .unwrap_or_else(|| PathBuf::from(run_out(Command::new("pg_config").arg("--bindir")).trim()))
}

fn run(cmd: &mut Command) {
    run_out(cmd);
}

fn run_out(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the database is in its outage cycle; requests record it when sent and
/// when answered. Outage `k` is phases `4k+1` (stopping), `4k+2` (down), `4k+3`
/// (starting); `4k` is up.
const STOPPING: usize = 1;
const DOWN: usize = 2;
const STARTING: usize = 3;

#[derive(Debug, Clone)]
struct Sample {
    route: &'static str,
    sent_phase: usize,
    answered_phase: usize,
    answered_at: Instant,
    took: Duration,
    /// `None`: no answer within the client timeout, or the connection dropped.
    status: Option<u16>,
    code: Option<String>,
}

struct Load {
    phase: AtomicUsize,
    stop: AtomicBool,
    samples: Mutex<Vec<Sample>>,
    /// Every guest a 200 sign-in admitted: (id, token).
    admitted: Mutex<Vec<(String, String)>>,
    /// Answers that should never happen (a 500, an untyped 503, no answer).
    faults: Mutex<Vec<String>>,
}

impl Load {
    fn fault(&self, what: String) {
        self.faults.lock().unwrap().push(what);
    }

    fn assert_no_faults(&self) {
        let faults = self.faults.lock().unwrap();
        assert!(
            faults.is_empty(),
            "{} bad answers: {faults:#?}",
            faults.len()
        );
    }

    fn count(&self, f: impl Fn(&Sample) -> bool) -> usize {
        self.samples.lock().unwrap().iter().filter(|s| f(s)).count()
    }
}

/// Sends one request and records the answer. A transport error (including the
/// client timeout, well above the database timeout) is recorded as no answer: a
/// hang. Anything but 200 or a typed 503 is recorded as a fault.
async fn call(
    load: &Load,
    req: reqwest::RequestBuilder,
    route: &'static str,
) -> (Option<u16>, serde_json::Value) {
    let sent_phase = load.phase.load(Ordering::SeqCst);
    let sent_at = Instant::now();
    let (status, body) = match req.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            let text = res.text().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let typed_503 = status == 503
                && body["code"] == "SERVICE_UNAVAILABLE"
                && body["message"].as_str().is_some_and(|m| !m.is_empty());
            if status != 200 && !typed_503 {
                load.fault(format!("{route}: {status} {text:?}"));
            }
            (Some(status), body)
        }
        Err(e) => {
            load.fault(format!(
                "{route}: no answer after {:?}: {e}",
                sent_at.elapsed()
            ));
            (None, serde_json::Value::Null)
        }
    };
    load.samples.lock().unwrap().push(Sample {
        route,
        sent_phase,
        answered_phase: load.phase.load(Ordering::SeqCst),
        answered_at: Instant::now(),
        took: sent_at.elapsed(),
        status,
        code: body["code"].as_str().map(str::to_owned),
    });
    (status, body)
}

/// Signs in a guest, then reads the session of the latest guest it has, until told
/// to stop (so get-session is tried during the outage too).
async fn worker(load: Arc<Load>, base: String) {
    let http = Client::builder().timeout(CLIENT_TIMEOUT).build().unwrap();
    let mut mine: Option<(String, String)> = None;
    while !load.stop.load(Ordering::SeqCst) {
        let (status, body) = call(
            &load,
            http.post(format!("{base}/api/auth/sign-in/anonymous"))
                .json(&json!({})),
            "sign-in",
        )
        .await;
        if status == Some(200) {
            let id = body["user"]["id"].as_str().unwrap_or_default().to_owned();
            let token = body["token"].as_str().unwrap_or_default().to_owned();
            load.admitted
                .lock()
                .unwrap()
                .push((id.clone(), token.clone()));
            mine = Some((id, token));
        }
        let Some((id, token)) = &mine else { continue };
        let (status, session) = call(
            &load,
            http.get(format!("{base}/api/auth/get-session"))
                .bearer_auth(token),
            "get-session",
        )
        .await;
        if status == Some(200) && session["user"]["id"] != id.as_str() {
            load.fault(format!("get-session for {id} answered {session}"));
        }
    }
}

const DB_TIMEOUT_SECS: u64 = 1;
/// Beyond this an answer counts as a hang. The sign-in writer may wait up to twice
/// the database timeout (its own wait plus the batch ahead of it); the rest is
/// slack for a loaded CI machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2 * DB_TIMEOUT_SECS + 5);
const WORKERS: usize = 4;

/// Polls `cond` every 50 ms until it holds; fails after `limit`, or as soon as
/// a worker records a bad answer.
async fn until(load: &Load, what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        load.assert_no_faults();
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_gives_503_then_recovers_without_a_restart() {
    if Backend::postgres().is_none() {
        return report_skip(
            "postgres_stopped_under_load_gives_503_then_recovers_without_a_restart",
        );
    }
    let cluster = Cluster::start();
    let db = Arc::new(TestDb::new(&Backend::Postgres(cluster.admin_url())).await);
    let server = TestServer::start_on(db.clone(), ManualClock::new(t0()), |c| {
        c.database_timeout_secs = DB_TIMEOUT_SECS;
        // The load signs in far more than 30 guests a minute from one address.
        c.rate_limit.anonymous_per_minute = 0;
    })
    .await;

    let load = Arc::new(Load {
        phase: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        samples: Mutex::new(Vec::new()),
        admitted: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(worker(load.clone(), server.base.clone())))
        .collect();

    // Fast shutdown first (clean checkpoint), then immediate (crash: WAL replay).
    for (k, mode) in ["fast", "immediate"].into_iter().enumerate() {
        let up = 4 * k;
        let ok_before = load.count(|s| s.status == Some(200));
        until(
            &load,
            "sign-ins before the stop",
            Duration::from_secs(60),
            || load.count(|s| s.status == Some(200)) >= ok_before + 20,
        )
        .await;

        load.phase.store(up + STOPPING, Ordering::SeqCst);
        tokio::task::block_in_place(|| cluster.pg_ctl(&["stop", "-m", mode]));
        load.phase.store(up + DOWN, Ordering::SeqCst);
        let down = |s: &Sample| s.sent_phase == up + DOWN && s.answered_phase == up + DOWN;
        // Each worker goes through a few database timeouts; get-session too.
        until(
            &load,
            "answers during the outage",
            Duration::from_secs(60),
            || {
                load.count(down) >= 2 * WORKERS
                    && load.count(|s| down(s) && s.route == "get-session") >= 1
            },
        )
        .await;
        assert_error(
            &server.get("/health", None).await,
            503,
            "SERVICE_UNAVAILABLE",
        );
        // The load balancer's view: the instance is alive but not ready.
        assert_error(
            &server.get("/readyz", None).await,
            503,
            "SERVICE_UNAVAILABLE",
        );
        assert_eq!(server.get("/healthz", None).await.0, 200, "alive meanwhile");

        load.phase.store(up + STARTING, Ordering::SeqCst);
        tokio::task::block_in_place(|| cluster.pg_ctl(&["start"]));
        let started = Instant::now();
        load.phase.store(up + 4, Ordering::SeqCst);
        until(
            &load,
            "a sign-in after the restart",
            Duration::from_secs(30),
            || {
                load.count(|s| {
                    s.sent_phase == up + 4 && s.status == Some(200) && s.route == "sign-in"
                }) > 0
            },
        )
        .await;
        // Ready again once the database answers (a pooled connection cut by the
        // restart may fail one probe before it is replaced).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = server.get("/readyz", None).await;
            if ready.0 == 200 {
                assert_eq!(ready.1, json!({"status": "ready"}));
                break;
            }
            assert!(Instant::now() < deadline, "still not ready: {ready:?}");
        }

        let samples = load.samples.lock().unwrap().clone();
        load.assert_no_faults();
        let during: Vec<&Sample> = samples.iter().filter(|s| down(s)).collect();
        assert!(
            during.iter().all(|s| s.status == Some(503)),
            "every answer while the database is down is 503: {during:?}"
        );
        let recovered = samples
            .iter()
            .filter(|s| s.sent_phase == up + 4 && s.status == Some(200) && s.route == "sign-in")
            .map(|s| s.answered_at)
            .min()
            .unwrap();
        eprintln!(
            "outage {} (pg_ctl stop -m {mode}): {} answers while down, all 503 {:?} \
             ({} sign-in, {} get-session; longest {:?}); {} answers straddling stop/start \
             ({} of them 503); first 200 sign-in {:?} after pg_ctl start returned",
            k + 1,
            during.len(),
            during
                .iter()
                .map(|s| s.code.clone())
                .collect::<std::collections::BTreeSet<_>>(),
            during.iter().filter(|s| s.route == "sign-in").count(),
            during.iter().filter(|s| s.route == "get-session").count(),
            during.iter().map(|s| s.took).max(),
            samples
                .iter()
                .filter(|s| s.sent_phase != s.answered_phase)
                .filter(|s| s.sent_phase > up && s.sent_phase <= up + 4)
                .count(),
            samples
                .iter()
                .filter(|s| s.sent_phase != s.answered_phase && s.status == Some(503))
                .filter(|s| s.sent_phase > up && s.sent_phase <= up + 4)
                .count(),
            recovered.duration_since(started),
        );
    }

    let ok_before = load.count(|s| s.status == Some(200));
    until(
        &load,
        "sign-ins after the last restart",
        Duration::from_secs(60),
        || load.count(|s| s.status == Some(200)) >= ok_before + 20,
    )
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    load.assert_no_faults();
    let samples = load.samples.lock().unwrap().clone();
    let up_503 = samples
        .iter()
        .filter(|s| s.sent_phase % 4 == 0 && s.answered_phase == s.sent_phase)
        .filter(|s| s.status == Some(503))
        .count();
    eprintln!(
        "{} requests in all, {} answered 200, {} answered 503 ({} of them sent and answered \
         while the database was up)",
        samples.len(),
        samples.iter().filter(|s| s.status == Some(200)).count(),
        samples.iter().filter(|s| s.status == Some(503)).count(),
        up_503,
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.sent_phase == 0 && s.answered_phase == 0)
            .all(|s| s.status == Some(200)),
        "before the first stop every answer is 200"
    );

    // Nothing lost: every admitted guest is stored and its session still opens.
    let admitted = load.admitted.lock().unwrap().clone();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let stored: std::collections::HashSet<String> = sqlx::query_scalar("SELECT id FROM users")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
    conn.close().await.unwrap();
    let missing: Vec<&String> = admitted
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(missing.is_empty(), "admitted but not stored: {missing:?}");
    for (id, token) in &admitted {
        let got = server.get("/get-session", Some(token)).await;
        assert_eq!((got.0.as_u16(), &got.1["user"]["id"]), (200, &json!(id)));
    }
    eprintln!(
        "{} guests admitted, all stored ({} users in the database) with live sessions",
        admitted.len(),
        stored.len()
    );

    server.handle.shutdown().await.unwrap();
    drop(cluster);
}
