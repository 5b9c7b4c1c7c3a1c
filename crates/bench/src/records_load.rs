//! Record sync under load: `POST /sync/push` and `GET /sync/pull` from many devices at
//! once against the reference server, by the same wrk as the other routes (one fresh
//! server per cell, one pre-created guest per connection).

use std::time::Duration;

use anyhow::{bail, Context};
use guestpass_proto::PULL_MAX_LIMIT;

use crate::http::{targets, Plan, Row};
use crate::load::{self, Kind, Measured, Scripts};
use crate::pg::FreshDb;
use crate::prepare;
use crate::servers::{Paths, Server, Target};

/// The changes each user holds before a pull cell, and the page size pulled: every
/// answer is a full page of this many changes.
const PULL_PAGE: u32 = 100;
const PUSH_URL: &str = "/api/auth/sync/push";
const PULL_URL: &str = "/api/auth/sync/pull";

pub async fn run(plan: &Plan, paths: &Paths, scripts: &Scripts) -> Vec<Row> {
    let mut rows = Vec::new();
    for kind in Kind::RECORDS {
        for &connections in &plan.connections {
            for target in targets(plan).into_iter().filter(Target::is_guestpass) {
                eprintln!(
                    "==> {} · {connections} connections · {}",
                    kind.label(),
                    target.storage()
                );
                let (measured, peak_rss_kib, note) =
                    match cell(plan, paths, scripts, kind, connections, &target).await {
                        Ok((m, rss)) => (m, rss, None),
                        Err(e) => {
                            eprintln!("    FAILED: {e:#}");
                            (Measured::default(), 0, Some(format!("FAILED: {e:#}")))
                        }
                    };
                eprintln!(
                    "    {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                    measured.per_sec(),
                    measured.p50_us as f64 / 1000.0,
                    measured.p99_us as f64 / 1000.0,
                    measured.errors()
                );
                rows.push(Row {
                    kind,
                    connections,
                    target,
                    measured,
                    peak_rss_kib,
                    // Its table has no CPU columns.
                    cpu: crate::cpu::Spent::default(),
                    note,
                });
            }
        }
    }
    rows
}

async fn cell(
    plan: &Plan,
    paths: &Paths,
    scripts: &Scripts,
    kind: Kind,
    connections: usize,
    target: &Target,
) -> anyhow::Result<(Measured, u64)> {
    let (fresh, started) = FreshDb::for_target(target, "records").await?;
    let outcome = measure(plan, paths, scripts, kind, connections, &started).await;
    if let Some(db) = fresh {
        db.drop_now().await?;
    }
    outcome
}

async fn measure(
    plan: &Plan,
    paths: &Paths,
    scripts: &Scripts,
    kind: Kind,
    connections: usize,
    target: &Target,
) -> anyhow::Result<(Measured, u64)> {
    let server = Server::start(target, paths)?;
    let base = server.base_url.clone();
    let tokens_file = tempfile::NamedTempFile::new()?;
    let tokens = prepare::guests(&base, connections, tokens_file.path()).await?;
    let url = match kind {
        Kind::Push => format!("{base}{PUSH_URL}"),
        Kind::Pull => {
            let http = prepare::client()?;
            for token in &tokens {
                seed(&http, &base, token, PULL_PAGE as usize).await?;
            }
            format!("{base}{PULL_URL}?limit={}", PULL_PAGE.min(PULL_MAX_LIMIT))
        }
        _ => bail!("{} is not a record sync request", kind.label()),
    };
    let path = tokens_file.path().to_path_buf();
    if let Some(warmup) = plan.warmup {
        let (s, u, p) = (scripts.clone(), url.clone(), path.clone());
        tokio::task::spawn_blocking(move || load::run(&s, kind, &u, connections, warmup, Some(&p)))
            .await??;
    }
    let (s, d) = (scripts.clone(), plan.duration);
    let measured =
        tokio::task::spawn_blocking(move || load::run(&s, kind, &url, connections, d, Some(&path)))
            .await??;
    if kind == Kind::Pull {
        // wrk only sees statuses: check that a pull still answers a full page.
        let http = prepare::client()?;
        for token in tokens.iter().take(load::THREADS) {
            let n = pull_count(&http, &base, token).await?;
            if n != PULL_PAGE as usize {
                bail!("a pull answered {n} changes, not a page of {PULL_PAGE}");
            }
        }
    }
    Ok((measured, server.peak_rss_kib()?))
}

/// `n` note changes for the token's user, in one push (setup, not measured).
async fn seed(http: &reqwest::Client, base: &str, token: &str, n: usize) -> anyhow::Result<()> {
    let changes: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"collection": "notes", "id": format!("seed-{i}"),
                "change": format!("{i:016}"), "deleted": false, "schemaVersion": 1})
        })
        .collect();
    let resp = http
        .post(format!("{base}{PUSH_URL}"))
        .bearer_auth(token)
        .header(guestpass_proto::routes::SYNC_PROTOCOL_HEADER, "1")
        .json(&serde_json::json!({ "changes": changes }))
        .send()
        .await
        .context("seeding push")?;
    if !resp.status().is_success() {
        bail!(
            "seeding push answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn pull_count(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<usize> {
    let resp = http
        .get(format!("{base}{PULL_URL}?limit={PULL_PAGE}"))
        .bearer_auth(token)
        .header(guestpass_proto::routes::SYNC_PROTOCOL_HEADER, "1")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .context("pull")?;
    if !resp.status().is_success() {
        bail!("pull answered {}", resp.status());
    }
    let body: guestpass_proto::PullResponse = resp.json().await.context("pull body")?;
    Ok(body.changes.len())
}
