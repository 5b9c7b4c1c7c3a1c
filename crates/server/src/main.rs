//! `guestpass-server`: serve the API, or administer the database directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use guestpass_proto::{format_time, parse_user_id, AuditEventKind};
use guestpass_server::clock::{Clock, SystemClock};
use guestpass_server::db::{AuditFilter, AuditRow, Db, UserFilter};
use guestpass_server::{cleanup, records, store, Config, Secret};

#[derive(Parser)]
#[command(
    name = "guestpass-server",
    version,
    about = "The Guestpass reference auth backend"
)]
struct Cli {
    /// TOML config file (see server.example.toml).
    #[arg(long, global = true, env = "GUESTPASS_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL, sqlite://FILE or postgres://… (overrides config and GUESTPASS_DATABASE_URL).
    #[arg(long, global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:3000 (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Address for Prometheus metrics (GET /metrics), apart from the API.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
    },
    /// Check the config (the file, then GUESTPASS_… variables) as `serve` would,
    /// without starting: run it before restarting a service on a changed file.
    CheckConfig,
    /// Work directly on the database named by the config.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Users, newest first.
    ListUsers {
        /// Only guests.
        #[arg(long)]
        anonymous: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Delete a user with sessions and data (audited as user.deleted by admin).
    RemoveUser { id: String },
    /// Delete guests inactive for longer than maxAge now.
    Cleanup {
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Seconds; defaults to authMethods.anonymous.maxAge.
        #[arg(long)]
        max_age: Option<u64>,
    },
    /// Start a new record-sync epoch: the step after restoring a backup. Every
    /// device then pulls from the start and pushes again what the backup lost.
    NewEpoch,
    /// Audit events, newest first.
    AuditLog {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        user: Option<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guestpass-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::CheckConfig = cli.command {
        return check_config(cli.config.as_deref(), cli.database);
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(url) = cli.database {
        config.database_url = Secret::new(url);
    }
    match cli.command {
        Command::CheckConfig => Ok(()),
        Command::Serve {
            listen,
            metrics_listen,
        } => {
            if let Some(addr) = listen {
                config.listen = addr;
            }
            if metrics_listen.is_some() {
                config.metrics_listen = metrics_listen;
            }
            let handle = guestpass_server::launch(config).await?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    r.context("waiting for Ctrl-C")?;
                    tracing::info!("shutting down");
                }
                _ = terminate() => tracing::info!("terminated; shutting down"),
            }
            handle.shutdown().await?;
            Ok(())
        }
        Command::Admin { command } => {
            let db = store::connect(config.database_url.expose(), config.store_options()).await?;
            admin(db, &config, command).await
        }
    }
}

/// `check-config`: parse errors come with toml's line and column; a rule broken by
/// a parsed value is reported at the line that sets it.
fn check_config(path: Option<&std::path::Path>, database: Option<String>) -> anyhow::Result<()> {
    let mut config = Config::load(path)?;
    if let Some(url) = database {
        config.database_url = Secret::new(url);
    }
    let shown = path.map_or_else(|| "(no file)".to_owned(), |p| p.display().to_string());
    if let Err(invalid) = config.validate(config.listen) {
        let line = path
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| guestpass_server::config_check::line_of(&text, &invalid.setting));
        match line {
            Some(n) => bail!("{shown}:{n}: {invalid}"),
            None => bail!("{shown}: {invalid}"),
        }
    }
    println!("{shown}: the config is valid (listen {})", config.listen);
    Ok(())
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

async fn admin(db: Db, config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command {
        AdminCommand::ListUsers { anonymous, limit } => {
            let filter = UserFilter {
                is_anonymous: anonymous.then_some(true),
                limit: limit.clamp(1, 10_000),
                ..Default::default()
            };
            let users = db.list_users(&filter).await?;
            println!(
                "{:<30}  {:<9}  {:<24}  {:<8}  email",
                "id", "anonymous", "created", "verified"
            );
            for u in &users {
                let w = u.to_wire();
                println!(
                    "{:<30}  {:<9}  {:<24}  {:<8}  {}",
                    w.id,
                    w.is_anonymous,
                    format_time(&w.created_at),
                    w.email_verified,
                    w.email.as_deref().unwrap_or("-")
                );
            }
            eprintln!("{} user(s)", users.len());
        }
        AdminCommand::RemoveUser { id } => {
            let id = parse_user_id(&id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let audit = AuditRow::new(
                AuditEventKind::UserDeleted,
                &id,
                "admin",
                clock.now_ms(),
                None,
            )
            .with_detail(serde_json::json!({ "reason": "admin", "via": "cli" }));
            if !db.delete_user(&id, false, &audit).await? {
                bail!("user not found: {id}");
            }
            println!("removed {id}");
        }
        AdminCommand::Cleanup { dry_run, max_age } => {
            let Some(max_age) = max_age.or(config.auth_methods.anonymous.max_age_secs()) else {
                bail!("no maxAge: set authMethods.anonymous.maxAge or pass --max-age SECONDS");
            };
            if dry_run {
                let n = cleanup::dry_run(&db, clock.as_ref(), max_age).await?;
                println!(
                    "{n} stale guest(s) would be deleted (inactive for more than {max_age} s)"
                );
            } else {
                let report = cleanup::run_once(&db, clock.as_ref(), max_age).await?;
                let retention = config.records.tombstone_retention_days;
                let changes = records::prune_tombstones(&db, clock.as_ref(), retention).await?;
                println!(
                    "deleted {} stale guest(s); pruned {} expired row(s); pruned {changes} change(s) of records deleted over {retention} day(s) ago",
                    report.guests_deleted, report.rows_pruned
                );
            }
        }
        AdminCommand::NewEpoch => {
            let epoch = db.records().new_epoch(clock.now_ms()).await?;
            println!(
                "new record epoch {epoch}: devices will pull from the start and push again what they hold"
            );
        }
        AdminCommand::AuditLog { limit, user } => {
            let user_id = user
                .map(|u| parse_user_id(&u).map_err(|e| anyhow::anyhow!("{e}")))
                .transpose()?;
            let filter = AuditFilter {
                user_id,
                limit: limit.clamp(1, 10_000),
                ..Default::default()
            };
            for row in db.audit_log(&filter).await? {
                if let Some(e) = row.to_wire() {
                    println!("{}", serde_json::to_string(&e)?);
                }
            }
        }
    }
    Ok(())
}
