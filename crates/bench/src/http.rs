//! The side-by-side matrix: every request kind × connection count × server, each cell
//! on a freshly started server (so one cell's guests never slow the next, and the
//! peak RSS is that cell's), loaded by the same wrk for the same time.

use std::time::Duration;

use crate::cpu;
use crate::load::{self, Kind, Measured, Scripts};
use crate::pg::FreshDb;
use crate::prepare;
use crate::servers::{Paths, Server, Target};

pub struct Plan {
    /// The request kinds to run (all by default).
    pub kinds: Vec<Kind>,
    pub duration: Duration,
    pub warmup: Option<Duration>,
    pub connections: Vec<usize>,
    /// Guests pre-created for an upgrade cell; each upgrade request spends one.
    pub upgrade_pool: usize,
    pub postgres_admin_url: Option<String>,
    pub better_auth: bool,
}

pub struct Row {
    pub kind: Kind,
    pub connections: usize,
    pub target: Target,
    pub measured: Measured,
    pub peak_rss_kib: u64,
    /// CPU time of the server, wrk and PostgreSQL during the measured run.
    pub cpu: cpu::Spent,
    /// Something the reader must know about this cell (e.g. the guest pool ran out).
    pub note: Option<String>,
}

pub fn targets(plan: &Plan) -> Vec<Target> {
    let mut t = vec![Target::GuestpassSqlite];
    if let Some(url) = &plan.postgres_admin_url {
        t.push(Target::GuestpassPostgres { url: url.clone() });
    }
    if plan.better_auth {
        t.push(Target::BetterAuthMemory);
        if let Some(url) = &plan.postgres_admin_url {
            t.push(Target::BetterAuthPostgres { url: url.clone() });
        }
    }
    t
}

pub async fn run(plan: &Plan, paths: &Paths, scripts: &Scripts) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &kind in &plan.kinds {
        for &connections in &plan.connections {
            for target in targets(plan) {
                eprintln!(
                    "==> {} · {connections} connections · {} ({})",
                    kind.label(),
                    target.server(),
                    target.storage()
                );
                // A failed cell is reported as such and the run goes on, so one
                // unattended run still prints everything it could measure.
                let row = match cell(plan, paths, scripts, kind, connections, &target).await {
                    Ok(row) => row,
                    Err(e) => {
                        eprintln!("    FAILED: {e:#}");
                        Row {
                            kind,
                            connections,
                            target: target.clone(),
                            measured: Measured::default(),
                            peak_rss_kib: 0,
                            cpu: cpu::Spent::default(),
                            note: Some(format!("FAILED: {e:#}")),
                        }
                    }
                };
                eprintln!(
                    "    {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors, peak RSS {:.1} MiB, \
                     CPU s server {:.2} wrk {:.2}{}, server {:.0} µs CPU/req",
                    row.measured.per_sec(),
                    row.measured.p50_us as f64 / 1000.0,
                    row.measured.p99_us as f64 / 1000.0,
                    row.measured.errors(),
                    row.peak_rss_kib as f64 / 1024.0,
                    row.cpu.server_s,
                    row.cpu.load_s,
                    row.cpu
                        .postgres_s
                        .map(|p| format!(" postgres {p:.2}"))
                        .unwrap_or_default(),
                    row.cpu
                        .server_us_per_request(row.measured.requests)
                        .unwrap_or(0.0)
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

async fn cell(
    plan: &Plan,
    paths: &Paths,
    scripts: &Scripts,
    kind: Kind,
    connections: usize,
    target: &Target,
) -> anyhow::Result<Row> {
    let (fresh, started) = FreshDb::for_target(target, "http").await?;
    let outcome = measure(plan, paths, scripts, kind, connections, &started).await;
    if let Some(db) = fresh {
        db.drop_now().await?;
    }
    let (measured, peak_rss_kib, cpu, note) = outcome?;
    Ok(Row {
        kind,
        connections,
        target: target.clone(),
        measured,
        peak_rss_kib,
        cpu,
        note,
    })
}

async fn measure(
    plan: &Plan,
    paths: &Paths,
    scripts: &Scripts,
    kind: Kind,
    connections: usize,
    target: &Target,
) -> anyhow::Result<(Measured, u64, cpu::Spent, Option<String>)> {
    let server = Server::start(target, paths)?;
    let base = server.base_url.clone();
    let tokens_file = tempfile::NamedTempFile::new()?;
    let path = match kind {
        Kind::SignIn => "/api/auth/sign-in/anonymous",
        Kind::GetSession => "/api/auth/get-session",
        // Better Auth links a guest by signing up with the guest's bearer token.
        Kind::Upgrade if target.is_guestpass() => "/api/auth/anonymous/upgrade",
        Kind::Upgrade => "/api/auth/sign-up/email",
        Kind::Push | Kind::Pull => {
            anyhow::bail!("record sync requests run in the records scenario (Guestpass only)")
        }
    };
    let url = format!("{base}{path}");
    let tokens = match kind {
        Kind::SignIn => Vec::new(),
        Kind::GetSession => prepare::guests(&base, load::THREADS, tokens_file.path()).await?,
        Kind::Upgrade => prepare::guests(&base, plan.upgrade_pool, tokens_file.path()).await?,
        Kind::Push | Kind::Pull => Vec::new(),
    };
    for token in tokens.iter().take(load::THREADS) {
        anyhow::ensure!(
            prepare::session_is_live(&base, token).await?,
            "a freshly created guest's token does not open a session"
        );
    }
    let tokens_arg = (kind != Kind::SignIn).then(|| tokens_file.path().to_path_buf());
    if let (Some(warmup), true) = (plan.warmup, kind != Kind::Upgrade) {
        let (s, u, t) = (scripts.clone(), url.clone(), tokens_arg.clone());
        tokio::task::spawn_blocking(move || {
            load::run(&s, kind, &u, connections, warmup, t.as_deref())
        })
        .await??;
    }
    let (s, u, t, d) = (
        scripts.clone(),
        url.clone(),
        tokens_arg.clone(),
        plan.duration,
    );
    let before = cpu::Reading::now(server.pid());
    let measured =
        tokio::task::spawn_blocking(move || load::run(&s, kind, &u, connections, d, t.as_deref()))
            .await??;
    let spent = cpu::Reading::now(server.pid()).since(&before, target.postgres_url().is_some());
    let peak = server.peak_rss_kib()?;
    let mut note = None;
    if kind == Kind::GetSession {
        // Both servers answer 200 `null` for a dead session: make sure wrk measured
        // real sessions all along.
        for token in &tokens {
            anyhow::ensure!(
                prepare::session_is_live(&base, token).await?,
                "a get-session token stopped opening its session during the run"
            );
        }
    }
    if kind == Kind::Upgrade && measured.requests as usize > plan.upgrade_pool {
        note = Some(format!(
            "guest pool of {} spent: raise --upgrade-pool",
            plan.upgrade_pool
        ));
    }
    Ok((measured, peak, spent, note))
}
