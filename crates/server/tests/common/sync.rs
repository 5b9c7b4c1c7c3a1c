//! Record sync helpers: push, pull, and an open `sync/events` stream, over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use guestpass_proto::routes::SYNC_PROTOCOL_HEADER;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use super::{into_json, TestServer};

/// Long enough for any honest wait on this machine; only bounds a failing test.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn change(collection: &str, id: &str, bytes: &[u8], deleted: bool) -> Value {
    json!({"collection": collection, "id": id, "change": b64(bytes), "deleted": deleted,
           "schemaVersion": 1})
}

/// A note change with the given text.
pub fn note(id: &str, text: &str) -> Value {
    change("notes", id, text.as_bytes(), false)
}

pub async fn push_raw(s: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    let res = s
        .http
        .post(s.url("/sync/push"))
        .bearer_auth(token)
        .header(SYNC_PROTOCOL_HEADER, "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    into_json(res).await
}

pub async fn push(s: &TestServer, token: &str, changes: Vec<Value>) -> (StatusCode, Value) {
    push_raw(s, token, json!({ "changes": changes })).await
}

/// A push that must succeed: `(accepted, duplicates)`.
pub async fn push_ok(s: &TestServer, token: &str, changes: Vec<Value>) -> (u64, u64) {
    let (status, body) = push(s, token, changes).await;
    assert_eq!(status, 200, "{body}");
    (
        body["accepted"].as_u64().unwrap(),
        body["duplicates"].as_u64().unwrap(),
    )
}

pub async fn pull(
    s: &TestServer,
    token: &str,
    after: Option<&str>,
    limit: Option<u32>,
) -> (StatusCode, Value) {
    let mut query = Vec::new();
    if let Some(a) = after {
        query.push(("after", a.to_string()));
    }
    if let Some(l) = limit {
        query.push(("limit", l.to_string()));
    }
    let res = s
        .http
        .get(s.url("/sync/pull"))
        .query(&query)
        .bearer_auth(token)
        .header(SYNC_PROTOCOL_HEADER, "1")
        .send()
        .await
        .unwrap();
    into_json(res).await
}

/// Pulls page after page until `more` is false: (changes, last cursor, reset seen).
pub async fn pull_all(
    s: &TestServer,
    token: &str,
    after: Option<&str>,
) -> (Vec<Value>, String, bool) {
    let mut changes = Vec::new();
    let mut cursor = after.map(str::to_string);
    let mut reset = false;
    loop {
        let (status, body) = pull(s, token, cursor.as_deref(), Some(100)).await;
        assert_eq!(status, 200, "{body}");
        reset |= body["reset"].as_bool().unwrap();
        changes.extend(body["changes"].as_array().unwrap().iter().cloned());
        cursor = Some(body["cursor"].as_str().unwrap().to_string());
        if !body["more"].as_bool().unwrap() {
            return (changes, cursor.unwrap(), reset);
        }
    }
}

/// The (collection, id, change) of pulled changes, for comparing with what was pushed.
pub fn keys(changes: &[Value]) -> Vec<(String, String, String)> {
    changes
        .iter()
        .map(|c| {
            (
                c["collection"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// An open `GET /sync/events` stream.
pub struct Events {
    res: Response,
    buf: String,
}

impl Events {
    pub async fn open(s: &TestServer, token: &str) -> Self {
        let res = s
            .http
            .get(s.url("/sync/events"))
            .bearer_auth(token)
            .header(SYNC_PROTOCOL_HEADER, "1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Events {
            res,
            buf: String::new(),
        }
    }

    /// The next event's `(name, data)`, skipping keep-alive comments; `None`
    /// when the server ended the stream. Fails the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Option<(String, String)> {
        tokio::time::timeout(PATIENCE, self.next_inner())
            .await
            .expect("no event within the patience")
    }

    async fn next_inner(&mut self) -> Option<(String, String)> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = v.trim().to_string();
                    }
                }
                if !name.is_empty() {
                    return Some((name, data));
                }
            }
            let chunk = self.res.chunk().await.unwrap()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Eight devices push one user's changes at once (device `p` through
/// `servers[p % n]`) while another pulls in a loop (page `i` through
/// `servers[i % n]`): every acknowledged change reaches the puller exactly
/// once. A plain sequence would skip changes whose transaction commits after a
/// later one's.
pub async fn pushes_are_pulled_exactly_once(servers: &[Arc<TestServer>], token: &str) {
    const PUSHERS: usize = 8;
    const BATCHES: usize = 6;
    const PER_BATCH: usize = 5;
    let done = Arc::new(AtomicBool::new(false));
    let puller = {
        let (servers, token, done) = (servers.to_vec(), token.to_string(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            for page in 0.. {
                // Read `done` before pulling: the pull after it was set sees
                // every acknowledged push.
                let finished = done.load(Ordering::SeqCst);
                let s = &servers[page % servers.len()];
                let (status, body) = pull(s, &token, cursor.as_deref(), Some(7)).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["reset"], false);
                seen.extend(keys(body["changes"].as_array().unwrap()));
                cursor = Some(body["cursor"].as_str().unwrap().to_string());
                if finished && body["more"] == false {
                    break;
                }
            }
            seen
        })
    };
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (s, token) = (servers[p % servers.len()].clone(), token.to_string());
        pushers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0..BATCHES {
                let batch: Vec<Value> = (0..PER_BATCH)
                    .map(|i| note(&format!("p{p}_b{b}_{i}"), &format!("{p}/{b}/{i}")))
                    .collect();
                assert_eq!(
                    push_ok(&s, &token, batch.clone()).await,
                    (PER_BATCH as u64, 0)
                );
                acked.extend(keys(&batch));
            }
            acked
        }));
    }
    let mut acked = HashSet::new();
    for p in pushers {
        acked.extend(p.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let seen = puller.await.unwrap();
    let mut counts: HashMap<_, usize> = HashMap::new();
    for k in &seen {
        *counts.entry(k.clone()).or_default() += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "pulled twice: {doubled:?}");
    let missed: Vec<_> = acked.iter().filter(|k| !counts.contains_key(*k)).collect();
    assert!(
        missed.is_empty(),
        "acknowledged but never pulled: {missed:?}"
    );
    assert_eq!(seen.len(), PUSHERS * BATCHES * PER_BATCH);
}
