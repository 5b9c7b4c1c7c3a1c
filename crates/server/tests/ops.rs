//! What an operator sees (issue 15): `/healthz` and `/readyz` for a load balancer,
//! Prometheus metrics on their own listener counting the requests just made, and a
//! request id in every error body and in the server's log lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

both_backends!(
    healthz_and_readyz_answer_and_a_newer_schema_is_not_ready,
    metrics_count_the_requests_just_made,
);

async fn healthz_and_readyz_answer_and_a_newer_schema_is_not_ready(b: Backend) {
    let s = TestServer::start(&b).await;
    assert_eq!(s.get("/healthz", None).await.1, json!({"status": "ok"}));
    assert_eq!(s.get("/readyz", None).await.1, json!({"status": "ready"}));

    // A newer release migrated the database past what this build knows: rolling
    // it back would be unsafe, so this instance leaves the load balancer.
    let sql =
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
               VALUES (99990101000000, 'from a newer server', TRUE, X'00', 0)";
    let sql_pg =
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                  VALUES (99990101000000, 'from a newer server', TRUE, '\\x00', 0)";
    if b.is_postgres() {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        sqlx::query(sql_pg).execute(&mut c).await.unwrap();
    } else {
        let path = s.db.url.trim_start_matches("sqlite://").to_owned();
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute(sql, []).unwrap();
    }
    let got = s.get("/readyz", None).await;
    assert_error(&got, 503, "SERVICE_UNAVAILABLE");
    assert!(
        got.1["message"]
            .as_str()
            .unwrap()
            .contains("newer guestpass-server"),
        "{got:?}"
    );
    assert_eq!(
        s.get("/healthz", None).await.0,
        200,
        "the process still lives"
    );
}

/// The value of the sample `name{labels}` in a text exposition, if present.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
}

async fn metrics_count_the_requests_just_made(b: Backend) {
    let s = TestServer::start_with(&b, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.rate_limit.anonymous_per_minute = 2;
    })
    .await;
    let metrics = format!("http://{}/metrics", s.handle.metrics_addr().unwrap());
    let (_, token) = s.guest().await;
    s.guest().await;
    let limited = s.post("/sign-in/anonymous", None, json!({})).await;
    assert_error(&limited, 429, "RATE_LIMITED");
    for _ in 0..3 {
        assert_eq!(s.get("/get-session", Some(&token)).await.0, 200);
    }
    assert_eq!(s.get("/no-such-route", None).await.0, 404);
    assert_eq!(
        common::sync::push_ok(
            &s,
            &token,
            vec![common::sync::note("n1", "a"), common::sync::note("n2", "b")]
        )
        .await,
        (2, 0)
    );
    let (status, pulled) = common::sync::pull(&s, &token, None, None).await;
    assert_eq!(status, 200, "{pulled}");

    let text = s
        .http
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let req = |route: &str, method: &str, status: &str| {
        sample(
            &text,
            "guestpass_http_requests_total",
            &[("route", route), ("method", method), ("status", status)],
        )
    };
    assert_eq!(
        req("/api/auth/sign-in/anonymous", "POST", "200"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        req("/api/auth/sign-in/anonymous", "POST", "429"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        req("/api/auth/get-session", "GET", "200"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(req("unmatched", "GET", "404"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "guestpass_rate_limited_total",
            &[("route", "/api/auth/sign-in/anonymous")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "guestpass_http_request_duration_seconds_count",
            &[("route", "/api/auth/get-session")]
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "guestpass_records_pushed_total", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "guestpass_records_pulled_total", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "guestpass_password_hash_queue", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "guestpass_http_connections", &[]).unwrap() >= 1.0,
        "the test's own keep-alive connection is open: {text}"
    );
    // Nothing secret in it: no token, no raw path outside the route set.
    assert!(
        !text.contains(&token) && !text.contains("no-such-route"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_body_and_its_log_lines_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("server.db").display());
    let mut child = Server(
        Command::new(env!("CARGO_BIN_EXE_guestpass-server"))
            .args(["--database", &db, "serve", "--listen", "127.0.0.1:0"])
            .env_remove("GUESTPASS_CONFIG")
            // The trace layer's per-request line is at debug.
            .env("RUST_LOG", "info,tower_http=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    let base = loop {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "the server exited");
        if let Some(at) = line.find("listening on http://") {
            let rest = &line[at + "listening on ".len()..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{base}/api/auth/export"))
        .bearer_auth("not-a-token")
        // A client's own id is kept beside ours, not instead of it.
        .header("x-request-id", "proxy-7")
        .send()
        .await
        .unwrap();
    let header = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "UNAUTHORIZED", "{body}");
    assert_eq!(body["requestId"], header.as_str(), "{body}");
    assert_eq!(header.len(), 26, "a ULID: {header}");
    let mut bad = http
        .post(format!("{base}/api/auth/sign-in/anonymous"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(bad["code"], "INVALID_REQUEST", "{bad}");
    let other = bad["requestId"].take();
    assert!(other.as_str().is_some_and(|id| id != header), "{other}");

    // The trace layer's line for the request names it.
    let mut seen = String::new();
    loop {
        line.clear();
        assert!(log.read_line(&mut line).unwrap() > 0, "log ended:\n{seen}");
        seen.push_str(&line);
        if line.contains(&header) && line.contains("finished processing request") {
            assert!(line.contains("upstream_id=proxy-7"), "{line}");
            assert!(line.contains("/api/auth/export"), "{line}");
            break;
        }
    }
}

/// The server process, killed however the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
