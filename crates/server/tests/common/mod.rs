//! Test harness: a real server on a port-0 listener, a real database (a fresh
//! SQLite file, or a fresh PostgreSQL database when GUESTPASS_TEST_POSTGRES_URL is
//! set), a manual clock, and a real SMTP listener.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod care;
pub mod sync;

use std::io::Write;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use guestpass_server::{launch_with_clock, Config, ManualClock, Secret, ServerHandle};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use tokio::net::TcpListener;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const PG_ENV: &str = "GUESTPASS_TEST_POSTGRES_URL";

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn postgres() -> Option<Self> {
        std::env::var(PG_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Backend::Postgres)
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }
}

/// Written straight to stderr so it shows even though the harness captures output.
pub fn report_skip(test: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {PG_ENV} is not set (PostgreSQL tests skipped)"
    );
}

/// Generates `sqlite::NAME` and `postgres::NAME` tests for each `async fn NAME(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::common::Backend::postgres() {
                        Some(b) => super::$name(b).await,
                        None => $crate::common::report_skip(concat!("postgres::", stringify!($name))),
                    }
                }
            )*
        }
    };
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("server.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres(admin_url) => {
                let name = format!("gp_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.ok();
                let mut url = url::Url::parse(admin_url).unwrap();
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    _dir: None,
                    pg: Some((admin_url.clone(), name)),
                }
            }
        }
    }

    pub fn pg_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|(_, n)| n.as_str())
    }

    pub async fn pg_admin(&self) -> sqlx::PgConnection {
        let (admin, _) = self.pg.as_ref().unwrap();
        sqlx::PgConnection::connect(admin).await.unwrap()
    }

    pub async fn drop_db(&self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// Something that makes the database unusable for the server, and undoes it.
pub enum Outage {
    /// Another connection holds SQLite's write lock past the busy timeout.
    SqliteLocked(sqlx::SqliteConnection),
    /// The PostgreSQL database refuses connections and the server's are cut.
    Postgres(sqlx::PgConnection, String),
}

impl Outage {
    pub async fn start(s: &TestServer) -> Self {
        match s.db.pg_name() {
            None => {
                let path = s.db.url.trim_start_matches("sqlite://").to_owned();
                let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Outage::SqliteLocked(conn)
            }
            Some(name) => {
                let mut admin = s.db.pg_admin().await;
                sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(name)
                .execute(&mut admin)
                .await
                .unwrap();
                Outage::Postgres(admin, name.to_owned())
            }
        }
    }

    pub async fn end(self) {
        match self {
            Outage::SqliteLocked(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Outage::Postgres(mut admin, name) => {
                sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
            }
        }
    }
}

pub fn t0() -> chrono::DateTime<Utc> {
    // Five seconds into a minute: rate-limit windows are predictable.
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 5).unwrap()
}

pub fn base_config(db_url: &str) -> Config {
    Config {
        database_url: Secret::new(db_url),
        secret: Some(Secret::new("test-secret")),
        admin_api_key: Some(Secret::new(ADMIN_KEY)),
        // The periodic task is driven by hand in tests (ServerHandle::run_cleanup).
        cleanup_interval_secs: 0,
        database_timeout_secs: 2,
        ..Config::default()
    }
}

pub struct TestServer {
    pub handle: ServerHandle,
    pub base: String,
    pub http: Client,
    pub clock: ManualClock,
    pub db: Arc<TestDb>,
}

impl TestServer {
    pub async fn start(backend: &Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: &Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = Arc::new(TestDb::new(backend).await);
        let clock = ManualClock::new(t0());
        Self::start_on(db, clock, tweak).await
    }

    /// Another instance on an existing database (sharing the clock).
    pub async fn start_on(
        db: Arc<TestDb>,
        clock: ManualClock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = base_config(&db.url);
        config.site_url = format!("http://{addr}");
        tweak(&mut config);
        let handle = launch_with_clock(config, listener, Arc::new(clock.clone()))
            .await
            .unwrap();
        TestServer {
            base: handle.base_url(),
            handle,
            http: Client::new(),
            clock,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        let top_level = ["/health", "/healthz", "/readyz"].contains(&path);
        if path.starts_with('/') && !path.starts_with("/api/") && !top_level {
            format!("{}/api/auth{}", self.base, path)
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        into_json(self.call(Method::POST, path, token, Some(body)).await).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        into_json(self.call(Method::GET, path, token, None).await).await
    }

    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(self.url(path))
            .header("x-api-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        into_json(res).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url(path))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        into_json(res).await
    }

    /// A new guest: (user id, token).
    /// A server-issued nonce for the next ID token (`POST /social/nonce`).
    pub async fn nonce(&self) -> String {
        let (status, body) = self.post("/social/nonce", None, json!({})).await;
        assert_eq!(status, 200, "{body}");
        body["nonce"].as_str().unwrap().to_string()
    }

    pub async fn guest(&self) -> (String, String) {
        let (status, body) = self.post("/sign-in/anonymous", None, json!({})).await;
        assert_eq!(status, 200, "{body}");
        (
            body["user"]["id"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    /// A guest upgraded to `email` / `password123`: (user id, token). The token
    /// is the one the upgrade rotated in (`set-auth-token`); the guest's is dead.
    pub async fn full_user(&self, email: &str) -> (String, String) {
        let (id, token) = self.guest().await;
        let token = self
            .upgrade(&token, json!({"email": email, "password": "password123"}))
            .await;
        (id, token)
    }

    /// `(status, body, set-auth-token)` of a POST: the answers that create or
    /// rotate a session carry the new token in that header.
    pub async fn post_with_token(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value, Option<String>) {
        let res = self.call(Method::POST, path, bearer, Some(body)).await;
        let header = res
            .headers()
            .get("set-auth-token")
            .map(|h| h.to_str().unwrap().to_string());
        let (status, body) = into_json(res).await;
        (status, body, header)
    }

    /// `POST /anonymous/upgrade` that must succeed: the new token from `set-auth-token`.
    pub async fn upgrade(&self, token: &str, body: Value) -> String {
        let (status, body, new) = self
            .post_with_token("/anonymous/upgrade", Some(token), body)
            .await;
        assert_eq!(status, 200, "{body}");
        new.expect("an upgrade without nextTokenHash answers set-auth-token")
    }

    /// Every audit event, oldest first, via the admin API.
    pub async fn audit_events(&self) -> Vec<Value> {
        self.audit_events_where("").await
    }

    /// The audit events the admin API's filter `query` (`event=user.deleted&`,
    /// or empty) selects, every page, oldest first.
    pub async fn audit_events_where(&self, query: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/admin/audit-log?{query}limit=200&after={a}"),
                None => format!("/admin/audit-log?{query}limit=200"),
            };
            let (status, body) = self.admin_get(&path).await;
            assert_eq!(status, 200, "{body}");
            all.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["listMetadata"]["after"].as_str() {
                Some(a) => after = Some(a.to_string()),
                None => break,
            }
        }
        all.reverse();
        all
    }

    /// An unlabelled sample on the metrics listener (`metrics_listen` must be set).
    pub async fn metric(&self, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.handle.metrics_addr().unwrap());
        let text = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    }

    pub async fn stop(self) {
        self.handle.shutdown().await.unwrap();
        self.db.drop_db().await;
    }
}

pub async fn into_json(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, value)
}

/// Asserts a `{code, message}` error.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use guestpass_testkit::{decode_qp, find_link, Mail, SmtpSink};

/// The first link to `route` (e.g. `/reset-password`) in a message.
pub fn find_link_to(data: &str, route: &str) -> String {
    let body = if data.contains("Content-Transfer-Encoding: quoted-printable") {
        decode_qp(data)
    } else {
        data.to_string()
    };
    let wanted = format!("/api/auth{route}?token=");
    body.split_whitespace()
        .find(|w| w.starts_with("http://") && w.contains(&wanted))
        .unwrap_or_else(|| panic!("no {route} link in {data}"))
        .to_string()
}

/// The `token` a mailed link carries.
pub fn token_in(link: &str) -> String {
    url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no token in {link}"))
}

/// A test-only RSA key (generated for these tests; it protects nothing).
const IDP_TEST_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDYjwgapjqObuyR\n2SEXzD4cOFx3/xwi8pnqk9m0GIWlaXkYoC1M//82uGcE9EbRL20MhfCsgDzoPhBu\nl0KS3CGbe/GXF4Q13uqVCfK/IZd8fJftt6y17no1v2NHI6/2aK7XEGOGMDigzytt\nDm16S1n9smsmdd6yWbaT526OcLcF7y6YaEoRy+9MpgMQK7muJaA07sqF11MYQmDP\nbSQN8CprPPAg6yRp2yeKDnNIBuH5K1Vw4tJqJ4fY6sSXRUHWpqgGcQ0eGqomtnB0\ni/bjEB146YsQgtABkr9FLn/jprnC4CTUBfbf4i6h4mXCRnP/venilR3y81aA0cFt\nAM4a6oU3AgMBAAECggEAX6FV7lK+o/xG2qccDoLCYLrg1pqgxawFHQoaRoXXqrJ3\nZ9EAADNB89udnpnyldiQGsog/EQK4XHa1sNUAj9UVfF3P4YCe7mLNLJ2cEG4wB/T\nBYYpLhP4ArkX8afIQhN7NfyGPpEXyKeDoT6QSMNyo24BFDRT2cV1Mz4tW5hZsjPb\niQojILHa5W97KvPZsyXZoP7xT/UDcggQJ9oFQBBxAfsyyaH0IQ+INRThgr3d4VPO\nIiW106aOzmP/HBUMra5i8rMsoynYw8B9VWBKivBbWP9RtxzPQeHn2oAIhUqPDt/J\nQyN0ki1RXTrrX3ZFKJQhGH8rcuTkbkhrywR8U6/kmQKBgQDw+9vuMq6309w8M8/H\nNe6iDmwhCpiIBpaS3t42yULHzHSB3BeDycnEAVxYBMf0zP2h6Ac9sLJdf9SyJa9A\n+a3msEtm3OZsZ/ct7n6DJby+yDUy8T+voldS1NILvIuYevmaSipwCJU4WZPbpcO5\nE383BJNcytCkhW+0k2bfhkuPKQKBgQDmDYvtqfyejZOmGec4znSz3YTpGdDDEnQx\nr1iSxE1Gk1WwuVPJXBiK6gdsPEbFg/LdP0D2T9PNSXG8aMz8dLlg+Yf4oc3W1BpW\n1sy7ph/K04PwQG3X+g/fuwrSF3LFPLZKeDHxeseXEQgeIMuPenSLqo2kNoUlOP/R\nUHfDIzrdXwKBgFe0knrC32vwI3uVr81lB5DbhucPoCwBmdOiYWW3IiLteom4vKYu\nTsyTYjR2qP+ji7vdYqVFJeV5nMOpi3suY+hNyWOKiiJyRDfnUQwSM/uLijEcNH2L\nrBRteHTlDjlUqHtK+t8DgKudjn6mefFl8yrm82sWNZFrLxidfRdlHSLhAoGBAIg6\nDVo3Brh87am2PQ2Oc9zul/3Qo6ZgDx48zx5Zz8izBlMX612Zg47+9lZJez8K243Y\nHwe8TZeKnicLiBcWp4+dM78vUUydXNt/ZszXmovopIBoJqN2GGBLyiSObhAN24RN\nmIV+RyJVm5D7qo7T3J+35xgOkNlx30p7c+/BtOHRAoGATeQ5gBOUlIaok2lq7osS\nyx8Frs2imqmUGQ9qvcN3pdd86DnvlKosDlsjr8ffLRxE7zQSGO0bBfK6zipEm1ul\nDhTemLv7VkqI1CtXXJ2MZEd6a2hAwa1UxYypwr/mjq0wNq3fm6TtPI/87fZJXaCw\nv8clKZaRiX8iLvYwi2Hjw2g=\n-----END PRIVATE KEY-----";
const IDP_TEST_KEY_N: &str = "2I8IGqY6jm7skdkhF8w-HDhcd_8cIvKZ6pPZtBiFpWl5GKAtTP__NrhnBPRG0S9tDIXwrIA86D4QbpdCktwhm3vxlxeENd7qlQnyvyGXfHyX7beste56Nb9jRyOv9miu1xBjhjA4oM8rbQ5tektZ_bJrJnXeslm2k-dujnC3Be8umGhKEcvvTKYDECu5riWgNO7KhddTGEJgz20kDfAqazzwIOskadsnig5zSAbh-StVcOLSaieH2OrEl0VB1qaoBnENHhqqJrZwdIv24xAdeOmLEILQAZK_RS5_46a5wuAk1AX23-IuoeJlwkZz_73p4pUd8vNWgNHBbQDOGuqFNw";

/// A minimal OpenID provider: discovery document and JWKS over real HTTP, and
/// RS256 ID tokens signed with [`IDP_TEST_KEY_PEM`].
pub struct MockIdp {
    pub issuer: String,
}

impl MockIdp {
    pub async fn start() -> Self {
        use axum::routing::get;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks") });
        let jwks = json!({ "keys": [{ "kty": "RSA", "kid": "test-key", "use": "sig", "alg": "RS256", "n": IDP_TEST_KEY_N, "e": "AQAB" }] });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route("/jwks", get(move || async move { axum::Json(jwks) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MockIdp { issuer }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-key".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(IDP_TEST_KEY_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}
