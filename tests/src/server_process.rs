//! The real `guestpass-server` binary as a child process, for the crash harness: a temp
//! config, SIGKILL at any instant, restart on the same database and port; and direct
//! access to that database (SQLite file or a PostgreSQL database of its own) to seed
//! it and check it while the server is dead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgPool, SqlitePool};

use crate::ADMIN_KEY;

pub const PG_ENV: &str = "GUESTPASS_TEST_POSTGRES_URL";

/// The binary next to this test's own (`target/debug/guestpass-server`, built by
/// `cargo build --workspace`), or `GUESTPASS_SERVER_BIN`.
pub fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("GUESTPASS_SERVER_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/guestpass-server
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|d| d.join("guestpass-server"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p guestpass-server` first (CI builds the workspace before testing)",
        bin.display()
    );
    bin
}

/// A database for one test: a SQLite file in a temp dir, or a fresh PostgreSQL
/// database (dropped at the end) when `GUESTPASS_TEST_POSTGRES_URL` is set.
pub struct ServerDb {
    pub url: String,
    pub pool: Pool,
    pg_admin: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub enum Pool {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// Runs the same sqlx expression on whichever pool the test has (the server's
/// queries are written once for both, and so are the checks).
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match &$db.pool {
            $crate::server_process::Pool::Sqlite($p) => $body,
            $crate::server_process::Pool::Pg($p) => $body,
        }
    };
}

impl ServerDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("server.db").display());
        let opts = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("sqlite url")
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .expect("open the server's SQLite file");
        Self {
            url,
            pool: Pool::Sqlite(pool),
            pg_admin: None,
            _dir: Some(dir),
        }
    }

    /// `None` when no PostgreSQL is configured for tests.
    pub async fn postgres() -> Option<Self> {
        let admin = std::env::var(PG_ENV).ok().filter(|v| !v.is_empty())?;
        let name = format!("gp_crash_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin).expect("postgres url");
        url.set_path(&name);
        // Named, so `settle_after_kill` can tell the test's connections from the server's.
        let opts = url
            .as_str()
            .parse::<sqlx::postgres::PgConnectOptions>()
            .expect("postgres url")
            .application_name("guestpass-tests");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .expect("connect to the test database");
        Some(Self {
            url: url.to_string(),
            pool: Pool::Pg(pool),
            pg_admin: Some((admin, name)),
            _dir: None,
        })
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.pool, Pool::Sqlite(_))
    }

    /// After a SIGKILL: waits until PostgreSQL has ended every backend of the dead
    /// server. A backend runs the statement it was given to its end (a `COMMIT`
    /// included) before it notices its client is gone, so reading before that could
    /// see a batch commit between two reads of one check. SQLite needs nothing: the
    /// kernel dropped the dead process's locks, and its writes are all or nothing.
    pub async fn settle_after_kill(&self) {
        let Pool::Pg(p) = &self.pool else { return };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let others: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND backend_type = 'client backend' AND application_name <> 'guestpass-tests'",
            )
            .fetch_one(p)
            .await
            .expect("pg_stat_activity");
            if others == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{others} backends of the killed server still run after 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn drop_db(self) {
        on_pool!(self, |p| p.close().await);
        if let Some((admin, name)) = &self.pg_admin {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// `guestpass-server serve` on a fixed loopback port with a temp config.
pub struct ServerProcess {
    pub addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: usize,
}

impl ServerProcess {
    /// Writes the config: `database_url`, a reserved port, the rate limit off, and
    /// `extra` TOML lines (e.g. the cleanup settings).
    pub fn new(database_url: &str, extra: &str) -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("reserve a port");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = format!(
            "siteUrl = \"http://{addr}\"\nlisten = \"{addr}\"\ndatabaseUrl = \"{database_url}\"\n\
             secret = \"crash-harness-secret\"\nadminApiKey = \"{ADMIN_KEY}\"\n{extra}\n\
             [rateLimit]\nanonymousPerMinute = 0\nupgradePerHour = 0\nrecoveryPerMinute = 0\nrecoveryGlobalPerMinute = 0\n"
        );
        std::fs::write(dir.path().join("server.toml"), config).expect("write the config");
        // Our own link: a concurrent `cargo build` relinking target/debug cannot pull
        // the binary away between restarts.
        let bin = dir.path().join("guestpass-server");
        if std::fs::hard_link(server_binary(), &bin).is_err() {
            std::fs::copy(server_binary(), &bin).expect("copy guestpass-server");
        }
        Self {
            addr,
            dir,
            child: None,
            starts: 0,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn command(&self) -> Command {
        let mut c = Command::new(self.dir.path().join("guestpass-server"));
        c.arg("--config")
            .arg(self.dir.path().join("server.toml"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// Runs `guestpass-server admin ARGS…` on the same database (it migrates it, too).
    pub fn admin(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .arg("admin")
            .args(args)
            .output()
            .expect("run guestpass-server admin");
        assert!(out.status.success(), "admin {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the server without waiting for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.starts)))
                .expect("server log");
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn guestpass-server");
        self.child = Some(child);
    }

    /// Starts it and waits until `/health` answers (30 s at most).
    pub async fn start(&mut self) {
        self.spawn();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/health", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "guestpass-server exited at start: {status}\n{}",
                    self.last_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "guestpass-server did not come up\n{}",
                self.last_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap it. Returns false if it had already died on its own.
    pub fn kill(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let alive = child.try_wait().ok().flatten().is_none();
        let _ = child.kill();
        let _ = child.wait();
        alive
    }

    pub fn last_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("server-{}.log", self.starts)))
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
