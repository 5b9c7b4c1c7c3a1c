//! What a cell needs before the load starts: live guests and their bearer tokens,
//! created over HTTP exactly as a client would (both servers answer sign-in with the
//! token in `set-auth-token`, which is what their bearer check accepts).

use std::path::Path;

use anyhow::{bail, Context};

const SIGN_IN: &str = "/api/auth/sign-in/anonymous";
const GET_SESSION: &str = "/api/auth/get-session";
/// Parallel requests while creating guests.
const PARALLEL: usize = 8;

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

pub async fn sign_in(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    // A loaded server may drop a kept-alive connection (Node resets idle ones): try a
    // fresh one a few times before calling the cell failed. Setup is not measured.
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        match http
            .post(format!("{base}{SIGN_IN}"))
            .json(&serde_json::json!({}))
            .send()
            .await
        {
            Ok(resp) => break resp,
            Err(e) if attempt < 4 && (e.is_connect() || e.is_request()) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("anonymous sign-in"),
        }
    };
    let status = resp.status();
    if !status.is_success() {
        bail!(
            "anonymous sign-in answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let token = resp
        .headers()
        .get("set-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("anonymous sign-in gave no set-auth-token header")?;
    Ok(token)
}

/// `n` new guests; their tokens, one per line, in `file`.
pub async fn guests(base: &str, n: usize, file: &Path) -> anyhow::Result<Vec<String>> {
    let http = client()?;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..PARALLEL {
        let share = n / PARALLEL + usize::from(worker < n % PARALLEL);
        let (http, base) = (http.clone(), base.to_string());
        tasks.spawn(async move {
            let mut tokens = Vec::with_capacity(share);
            for _ in 0..share {
                tokens.push(sign_in(&http, &base).await?);
            }
            anyhow::Ok(tokens)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    std::fs::write(file, all.join("\n") + "\n")?;
    Ok(all)
}

/// True when `token` opens a live session (both servers answer 200 `null` otherwise).
pub async fn session_is_live(base: &str, token: &str) -> anyhow::Result<bool> {
    let resp = client()?
        .get(format!("{base}{GET_SESSION}"))
        .bearer_auth(token)
        .send()
        .await
        .context("get-session")?;
    if !resp.status().is_success() {
        return Ok(false);
    }
    let body: serde_json::Value = resp.json().await.context("get-session body")?;
    Ok(body.get("user").and_then(|u| u.get("id")).is_some())
}
