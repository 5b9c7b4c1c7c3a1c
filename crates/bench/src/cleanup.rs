//! Cleanup at scale: a Guestpass server whose database holds N stale guests (each with
//! a session and an audit row, seeded with one SQL statement per table — a recursive
//! CTE on SQLite, generate_series on PostgreSQL), live get-session traffic from wrk on
//! guests that must survive, and the admin cleanup (`guestpass-server admin cleanup`,
//! the same pass as the periodic task) run against it. Reports how long the cleanup
//! took and get-session latency before and while it ran, then checks the outcome:
//! every stale guest gone and audited `user.deleted` by `system` exactly once, every
//! live guest still signed in.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use sqlx::Connection;

use crate::load::{self, Kind, Measured, Scripts};
use crate::pg::FreshDb;
use crate::prepare;
use crate::servers::{Paths, Server, Target};

/// Stale guests were last active 60 days ago (maxAge is 30 days), one ms apart.
const STALE_AGE_MS: i64 = 60 * 24 * 3600 * 1000;
/// Upper bound on the live traffic while the cleanup runs (it is stopped as soon as
/// the cleanup exits).
const MAX_DURING: Duration = Duration::from_secs(600);

pub struct Outcome {
    pub target: Target,
    pub guests: u64,
    pub seed_secs: f64,
    pub cleanup_secs: f64,
    /// CPU time (user + system) of the cleanup process: on a busy machine the
    /// wall time says more about the neighbours than about the cleanup.
    pub cleanup_cpu_secs: Option<f64>,
    pub deleted: u64,
    pub connections: usize,
    pub before: Measured,
    pub during: Measured,
    pub peak_rss_kib: u64,
}

pub async fn run(
    paths: &Paths,
    scripts: &Scripts,
    target: &Target,
    guests: u64,
    connections: usize,
    baseline: Duration,
) -> anyhow::Result<Outcome> {
    let (fresh, started) = FreshDb::for_target(target, "cleanup").await?;
    let outcome = scenario(paths, scripts, &started, guests, connections, baseline).await;
    if let Some(db) = fresh {
        db.drop_now().await?;
    }
    let mut outcome = outcome?;
    outcome.target = target.clone();
    Ok(outcome)
}

async fn scenario(
    paths: &Paths,
    scripts: &Scripts,
    target: &Target,
    guests: u64,
    connections: usize,
    baseline: Duration,
) -> anyhow::Result<Outcome> {
    let server = Server::start(target, paths)?;
    let db_url = server
        .database_url
        .clone()
        .context("cleanup needs a Guestpass server")?;
    let now = now_ms()?;
    eprintln!(
        "==> cleanup: seeding {guests} stale guests ({})",
        target.storage()
    );
    let seeding = Instant::now();
    seed(&db_url, guests, now - STALE_AGE_MS).await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    eprintln!("    seeded in {seed_secs:.1} s");

    let tokens_file = tempfile::NamedTempFile::new()?;
    let tokens = prepare::guests(&server.base_url, load::THREADS, tokens_file.path()).await?;
    let url = format!("{}/api/auth/get-session", server.base_url);
    let tokens_path = tokens_file.path().to_path_buf();

    eprintln!("==> cleanup: get-session for {baseline:?} before the cleanup");
    let (s, u, t) = (scripts.clone(), url.clone(), tokens_path.clone());
    let before = tokio::task::spawn_blocking(move || {
        load::run(&s, Kind::GetSession, &u, connections, baseline, Some(&t))
    })
    .await??;

    eprintln!("==> cleanup: `guestpass-server admin cleanup` under get-session load");
    let (s, bin, cfg) = (
        scripts.clone(),
        paths.server_bin.clone(),
        server.config_path(),
    );
    let ((cleanup_secs, cleanup_cpu_secs), stdout, during) =
        tokio::task::spawn_blocking(move || {
            let traffic = load::Load::start(
                &s,
                Kind::GetSession,
                &url,
                connections,
                MAX_DURING,
                Some(&tokens_path),
            )?;
            // wrk needs a moment to connect before the cleanup starts; this is a lead-in
            // of the measurement, not synchronisation.
            std::thread::sleep(Duration::from_millis(500));
            let started = Instant::now();
            let cpu_before = children_cpu_secs();
            let out = Command::new(&bin)
                .args(["admin", "cleanup", "--config"])
                .arg(&cfg)
                .env("RUST_LOG", "warn")
                .env_remove("GUESTPASS_DATABASE_URL")
                .output();
            let cleanup_secs = started.elapsed().as_secs_f64();
            // The cleanup process is the only child reaped in between (wrk still runs).
            let cleanup_cpu = children_cpu_secs()
                .zip(cpu_before)
                .map(|(after, before)| after - before);
            traffic.interrupt()?;
            let during = traffic.finish()?;
            let out = out.context("running guestpass-server admin cleanup")?;
            if !out.status.success() {
                bail!(
                    "admin cleanup failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            anyhow::Ok((
                (cleanup_secs, cleanup_cpu),
                String::from_utf8_lossy(&out.stdout).to_string(),
                during,
            ))
        })
        .await??;
    let deleted = stdout
        .split_whitespace()
        .skip_while(|w| *w != "deleted")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected admin cleanup output: {stdout}"))?;
    eprintln!("    {stdout}    in {cleanup_secs:.1} s");

    // The outcome a user would check.
    ensure!(
        deleted == guests,
        "the cleanup deleted {deleted} guests, not {guests}"
    );
    let (left, audited, distinct) = verify(&db_url).await?;
    ensure!(left == 0, "{left} stale guests are still there");
    ensure!(
        audited == guests && distinct == guests,
        "{audited} user.deleted audit rows by system for {distinct} users, expected {guests}"
    );
    for token in &tokens {
        ensure!(
            prepare::session_is_live(&server.base_url, token).await?,
            "a live guest lost its session to the cleanup"
        );
    }
    Ok(Outcome {
        target: target.clone(),
        guests,
        seed_secs,
        cleanup_secs,
        cleanup_cpu_secs,
        deleted,
        connections,
        before,
        during,
        peak_rss_kib: server.peak_rss_kib()?,
    })
}

/// CPU seconds of this process's reaped children (`cutime + cstime` of
/// /proc/self/stat), or None where that cannot be read.
fn children_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; cutime and cstime are the
    // 16th and 17th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?;
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|hz| *hz > 0.0)?;
    Some(ticks / hz)
}

fn now_ms() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?)
}

/// One statement per table, so seeding a million guests takes seconds. The ids are
/// valid ids (`usr_` + 26 Crockford digits), the token hashes unique hex.
async fn seed(url: &str, n: u64, stale: i64) -> anyhow::Result<()> {
    let n = i64::try_from(n)?;
    let week = 7 * 24 * 3600 * 1000_i64;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        let mut tx = c.begin().await?;
        let series =
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) ";
        sqlx::query(&format!(
            "{series} INSERT INTO users (id, email, name, image, email_verified, is_anonymous, \
             password_hash, metadata, created_at, updated_at, last_active_at) \
             SELECT printf('usr_%026d', i), NULL, NULL, NULL, FALSE, TRUE, NULL, '{{}}', \
             $2 - i, $2 - i, $2 - i FROM n"
        ))
        .bind(n)
        .bind(stale)
        .execute(&mut *tx)
        .await
        .context("seeding users")?;
        sqlx::query(&format!(
            "{series} INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) \
             SELECT printf('ses_%026d', i), printf('usr_%026d', i), printf('%064x', i), \
             $2 - i + $3, $2 - i, $2 - i FROM n"
        ))
        .bind(n)
        .bind(stale)
        .bind(week)
        .execute(&mut *tx)
        .await
        .context("seeding sessions")?;
        sqlx::query(&format!(
            "{series} INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) \
             SELECT printf('aud_%026d', i), 'user.created', printf('usr_%026d', i), \
             printf('usr_%026d', i), $2 - i, NULL, '{{\"isAnonymous\":true}}' FROM n"
        ))
        .bind(n)
        .bind(stale)
        .execute(&mut *tx)
        .await
        .context("seeding audit rows")?;
        tx.commit().await?;
        // A long-running database has its WAL folded back in; start from that state.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await?;
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        let mut tx = c.begin().await?;
        let series = "FROM generate_series(1, $1::bigint) AS i";
        sqlx::query(&format!(
            "INSERT INTO users (id, email, name, image, email_verified, is_anonymous, \
             password_hash, metadata, created_at, updated_at, last_active_at) \
             SELECT 'usr_' || lpad(i::text, 26, '0'), NULL, NULL, NULL, FALSE, TRUE, NULL, '{{}}', \
             $2 - i, $2 - i, $2 - i {series}"
        ))
        .bind(n)
        .bind(stale)
        .execute(&mut *tx)
        .await
        .context("seeding users")?;
        sqlx::query(&format!(
            "INSERT INTO sessions (id, user_id, token_hash, expires_at, created_at, updated_at) \
             SELECT 'ses_' || lpad(i::text, 26, '0'), 'usr_' || lpad(i::text, 26, '0'), \
             lpad(to_hex(i), 64, '0'), $2 - i + $3, $2 - i, $2 - i {series}"
        ))
        .bind(n)
        .bind(stale)
        .bind(week)
        .execute(&mut *tx)
        .await
        .context("seeding sessions")?;
        sqlx::query(&format!(
            "INSERT INTO audit_log (id, event, user_id, actor, created_at, ip_hash, detail) \
             SELECT 'aud_' || lpad(i::text, 26, '0'), 'user.created', 'usr_' || lpad(i::text, 26, '0'), \
             'usr_' || lpad(i::text, 26, '0'), $2 - i, NULL, '{{\"isAnonymous\":true}}' {series}"
        ))
        .bind(n)
        .bind(stale)
        .execute(&mut *tx)
        .await
        .context("seeding audit rows")?;
        tx.commit().await?;
        // Fresh statistics, as autovacuum would have them on a database this size.
        sqlx::query("ANALYZE").execute(&mut c).await?;
    }
    Ok(())
}

/// (stale guests left, `user.deleted` rows by `system`, distinct users among them).
async fn verify(url: &str) -> anyhow::Result<(u64, u64, u64)> {
    let cutoff = now_ms()? - 30 * 24 * 3600 * 1000;
    let left_sql = "SELECT COUNT(*) FROM users WHERE is_anonymous = TRUE AND last_active_at < $1";
    let audit_sql = "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM audit_log \
                     WHERE event = 'user.deleted' AND actor = 'system'";
    let (left, (audited, distinct)): (i64, (i64, i64)) = if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        (
            sqlx::query_scalar(left_sql)
                .bind(cutoff)
                .fetch_one(&mut c)
                .await?,
            sqlx::query_as(audit_sql).fetch_one(&mut c).await?,
        )
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        (
            sqlx::query_scalar(left_sql)
                .bind(cutoff)
                .fetch_one(&mut c)
                .await?,
            sqlx::query_as(audit_sql).fetch_one(&mut c).await?,
        )
    };
    Ok((
        u64::try_from(left)?,
        u64::try_from(audited)?,
        u64::try_from(distinct)?,
    ))
}
