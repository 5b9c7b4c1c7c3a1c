//! Hostile input to every route (proptest; cargo-fuzz needs a nightly toolchain).
//!
//! The real router on a real SQLite file, driven in-process (`tower::ServiceExt::
//! oneshot`, no socket: ~1 ms a case). Two victims are seeded first — a guest and a
//! full account with two sessions — whose tokens and password the fuzzer never
//! holds; it holds its own accounts' tokens, near-misses of the victims' tokens,
//! junk, and (for read-only admin routes) the admin key. Properties, per request:
//! never a 5xx (a panic is caught and answered 500, so this covers panics), and
//! every error is `{code, message, requestId}` JSON with a code from the server's closed set.
//! After the run: the victims' rows are byte-for-byte as before and their tokens
//! still work.
//!
//! `PROPTEST_CASES` sets the number of requests (default [`DEFAULT_CASES`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use common::{base_config, t0, MockIdp, ADMIN_KEY};
use guestpass_proto::{routes, ErrorCode};
use guestpass_server::config::SocialProvider;
use guestpass_server::ManualClock;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{json, Value};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::SqlitePool;
use tower::ServiceExt;

const DEFAULT_CASES: u32 = 2000;
const CLIENT_ID: &str = "guestpass-app";

/// Codes a server may answer with (the device codes never travel over HTTP).
const SERVER_CODES: &[ErrorCode] = &[
    ErrorCode::UserIdTaken,
    ErrorCode::InvalidRecoveryPhrase,
    ErrorCode::GuestRemoved,
    ErrorCode::AnonymousUsersCannotSignInAgainAnonymously,
    ErrorCode::RateLimited,
    ErrorCode::EmailAlreadyInUse,
    ErrorCode::InvalidEmail,
    ErrorCode::PasswordTooShort,
    ErrorCode::PasswordTooLong,
    ErrorCode::InvalidName,
    ErrorCode::NameTooLong,
    ErrorCode::UserNotAnonymous,
    ErrorCode::Unauthorized,
    ErrorCode::ProviderAccountInUse,
    ErrorCode::InvalidIdToken,
    ErrorCode::UnknownProvider,
    ErrorCode::AnonymousNotAllowed,
    ErrorCode::InvalidPassword,
    ErrorCode::SessionNotFresh,
    ErrorCode::EmailAlreadyVerified,
    ErrorCode::InvalidEmailOrPassword,
    ErrorCode::InvalidToken,
    ErrorCode::UserNotFound,
    ErrorCode::RecordTooLarge,
    ErrorCode::QuotaExceeded,
    ErrorCode::CursorExpired,
    ErrorCode::ClientTooOld,
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidUserId,
    ErrorCode::PayloadTooLarge,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::ServiceUnavailable,
    ErrorCode::InternalError,
];

const ROUTES: &[&str] = &[
    routes::SIGN_IN_ANONYMOUS,
    routes::GET_SESSION,
    routes::UPGRADE,
    routes::UPGRADE_SOCIAL,
    routes::SIGN_IN_EMAIL,
    routes::VERIFY_EMAIL,
    routes::SIGN_OUT,
    routes::DELETE_ANONYMOUS_USER,
    routes::ADMIN_LIST_USERS,
    routes::ADMIN_REMOVE_USER,
    routes::ADMIN_AUDIT_LOG,
    routes::SIGN_IN_SOCIAL,
    routes::SOCIAL_NONCE,
    routes::MERGE,
    routes::SIGN_UP_EMAIL,
    routes::LINK_SOCIAL,
    routes::SYNC_PUSH,
    routes::SYNC_PULL,
    routes::SYNC_EVENTS,
    routes::REQUEST_PASSWORD_RESET,
    routes::RESET_PASSWORD,
    routes::SEND_VERIFICATION_EMAIL,
    routes::CHANGE_PASSWORD,
    routes::DELETE_USER,
    routes::EXPORT,
    routes::PROVIDERS,
    routes::RECOVERY_KEY,
    routes::SIGN_IN_RECOVERY,
];

/// The routes that answer a browser with a page (issue 13).
const PAGES: &[&str] = &[routes::VERIFY_EMAIL, routes::RESET_PASSWORD];

// ---------------------------------------------------------------------------
// The target: router, database, victims, and what the attacker holds.
// ---------------------------------------------------------------------------

struct Account {
    id: String,
    token: String,
}

struct Target {
    app: Router,
    pool: SqlitePool,
    victim_guest: Account,
    victim_full: Account,
    victim_full_second_token: String,
    /// Makes each helper-created guest come from its own address, so the helper
    /// is not rate limited (the fuzzer's own sign-ins are).
    next_ip: AtomicU32,
    _idp: MockIdp,
    _dir: tempfile::TempDir,
}

/// Answers `(status, content-type, body)`.
async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if ct.as_deref() == Some("text/event-stream") {
        // An open `sync/events` stream never ends by itself: the answer is its head.
        return (status, ct, Vec::new());
    }
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ct, body.to_vec())
}

fn json_post(path: &str, token: Option<&str>, ip: &str, body: Value) -> Request<Body> {
    let mut req = Request::post(format!("{}{path}", routes::BASE))
        .header("content-type", "application/json")
        .header("x-forwarded-for", ip);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(Body::from(body.to_string())).unwrap()
}

impl Target {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("server.db").display());
        let idp = MockIdp::start().await;
        let mut config = base_config(&url);
        // Lets the fuzzer's junk x-forwarded-for reach the address parsing.
        config.trusted_proxy_header = Some("x-forwarded-for".into());
        config.social_providers.insert(
            "google".into(),
            SocialProvider {
                client_id: CLIENT_ID.into(),
                issuer: idp.issuer.clone(),
            },
        );
        let clock = ManualClock::new(t0());
        let state = guestpass_server::server::build_state(config, Arc::new(clock))
            .await
            .unwrap();
        let app = guestpass_server::server::router(Arc::new(state));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let mut t = Target {
            app,
            pool,
            victim_guest: Account {
                id: String::new(),
                token: String::new(),
            },
            victim_full: Account {
                id: String::new(),
                token: String::new(),
            },
            victim_full_second_token: String::new(),
            next_ip: AtomicU32::new(1),
            _idp: idp,
            _dir: dir,
        };
        t.victim_guest = t.guest().await;
        t.victim_full = t.guest().await;
        // A password the fuzzer's generators can never produce.
        let password = format!("victim-{}", ulid::Ulid::new());
        let next = format!("victim-token-{}", ulid::Ulid::new());
        let next_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(next.as_bytes()));
        let up = t
            .call(json_post(
                routes::UPGRADE,
                Some(&t.victim_full.token),
                "198.51.100.1",
                json!({"email": "victim@example.com", "password": password, "name": "Victim",
                       "nextTokenHash": next_hash}),
            ))
            .await;
        assert_eq!(up.0, 200, "{}", String::from_utf8_lossy(&up.2));
        // The upgrade replaced the guest's token with the one it named (issue 14).
        t.victim_full.token = next;
        let second = t
            .call(json_post(
                routes::SIGN_IN_EMAIL,
                None,
                "198.51.100.1",
                json!({"email": "victim@example.com", "password": password}),
            ))
            .await;
        assert_eq!(second.0, 200);
        t.victim_full_second_token = token_of(&second.2);
        // A record of the victim's, which nothing the fuzzer holds may reach.
        let mut push = json_post(
            routes::SYNC_PUSH,
            Some(&t.victim_guest.token),
            "198.51.100.1",
            json!({"changes": [{"collection": "notes", "id": "victim-note",
                                "change": "c2VjcmV0", "schemaVersion": 1}]}),
        );
        push.headers_mut()
            .insert(routes::SYNC_PROTOCOL_HEADER, HeaderValue::from_static("1"));
        let pushed = t.call(push).await;
        assert_eq!(pushed.0, 200, "{}", String::from_utf8_lossy(&pushed.2));
        // The victim guest's recovery key, which the fuzzer never holds: no answer
        // may change it or open the guest with anything else.
        let kept = t
            .call(json_post(
                routes::RECOVERY_KEY,
                Some(&t.victim_guest.token),
                "198.51.100.1",
                json!({"recoveryKey": format!("victim-recovery-key-{}", ulid::Ulid::new())}),
            ))
            .await;
        assert_eq!(kept.0, 200, "{}", String::from_utf8_lossy(&kept.2));
        t
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
        send(&self.app, req).await
    }

    fn fresh_ip(&self) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
    }

    async fn guest(&self) -> Account {
        let res = self
            .call(json_post(
                routes::SIGN_IN_ANONYMOUS,
                None,
                &self.fresh_ip(),
                json!({}),
            ))
            .await;
        assert_eq!(res.0, 200, "{}", String::from_utf8_lossy(&res.2));
        let v: Value = serde_json::from_slice(&res.2).unwrap();
        Account {
            id: v["user"]["id"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
        }
    }

    /// Everything the server keeps about the victims, as comparable text.
    async fn snapshot(&self) -> Vec<String> {
        let ids = [&self.victim_guest.id, &self.victim_full.id];
        let queries = [
            "SELECT json_object('id',id,'email',email,'name',name,'image',image,
                'ev',email_verified,'anon',is_anonymous,'pw',password_hash,'meta',metadata,
                'c',created_at,'u',updated_at,'a',last_active_at,
                'dk',device_key_hash,'rk',recovery_key_hash)
             FROM users WHERE id IN (?1, ?2) ORDER BY id",
            "SELECT json_object('id',id,'user',user_id,'hash',token_hash,'exp',expires_at,
                'c',created_at,'u',updated_at)
             FROM sessions WHERE user_id IN (?1, ?2) ORDER BY id",
            "SELECT json_object('id',id,'user',user_id,'p',provider,'pid',provider_account_id)
             FROM accounts WHERE user_id IN (?1, ?2) ORDER BY id",
            "SELECT json_object('hash',token_hash,'user',user_id,'email',email,'exp',expires_at,
                'used',used_at)
             FROM verification_tokens WHERE user_id IN (?1, ?2) ORDER BY token_hash",
            "SELECT json_object('user',user_id,'seq',seq,'hash',hash,'c',created_at)
             FROM record_changes WHERE user_id IN (?1, ?2) ORDER BY user_id, seq",
            "SELECT json_object('user',user_id,'next',next_seq,'r',records,'b',bytes,
                'p',pruned_through)
             FROM record_heads WHERE user_id IN (?1, ?2) ORDER BY user_id",
        ];
        let mut rows = Vec::new();
        for q in queries {
            let found: Vec<(String,)> = sqlx::query_as(q)
                .bind(ids[0])
                .bind(ids[1])
                .fetch_all(&self.pool)
                .await
                .unwrap();
            rows.extend(found.into_iter().map(|r| r.0));
        }
        rows
    }

    /// Tokens and id-like strings the attacker may present: its own, near-misses
    /// of the victims', and junk.
    fn token_pool(&self, own: &[Account]) -> Vec<String> {
        let v = &self.victim_full.token;
        let mut flipped = v.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        let mut pool: Vec<String> = own.iter().map(|a| a.token.clone()).collect();
        pool.extend([
            flipped,
            v[..v.len() - 1].to_string(),
            format!("{v}x"),
            v.to_uppercase(),
            guestpass_server::crypto::sha256_hex(v),
            guestpass_server::crypto::sha256_hex(&self.victim_guest.token),
            self.victim_guest.id.clone(),
            self.victim_full.id.clone(),
            ADMIN_KEY.to_string(),
            format!("{ADMIN_KEY}x"),
            String::new(),
            "null".into(),
            "x".repeat(10_000),
            "ñ\u{1F600}\u{202E}".into(),
        ]);
        pool
    }
}

fn token_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["token"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------
// Generated requests.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Auth {
    None,
    /// `Authorization: <scheme> <pool[i]>`.
    Pooled(&'static str, usize),
    Raw(String),
    /// A guest created just for this request.
    FreshGuest,
}

#[derive(Debug, Clone)]
struct Case {
    /// Most cases use the route's own method, so they get past the router.
    native_method: bool,
    method: Method,
    path: String,
    auth: Auth,
    api_key: Option<String>,
    content_type: Option<String>,
    content_length: Option<String>,
    forwarded_for: Option<String>,
    /// `x-guestpass-sync-protocol`.
    protocol: Option<String>,
    /// `accept` (a browser's asks the pages for HTML).
    accept: Option<String>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        6 => Just(Method::POST),
        4 => Just(Method::GET),
        1 => prop::sample::select(vec![
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::HEAD,
            Method::TRACE,
        ]),
        1 => "[A-Z]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Percent-encodes what a URI cannot carry raw, but keeps `%` so broken
/// escapes reach the server too.
fn uri_safe(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "token",
            "limit",
            "after",
            "before",
            "isAnonymous",
            "userId",
            "event",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "1",
            "0",
            "-1",
            "200",
            "201",
            "99999999999999999999",
            "true",
            "false",
            "user.created",
            "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "aud_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "MTIzOnVzcl8wMUFSWjNOREVLVFNWNFJSRkZRNjlHNUZBVg",
            "0123456789abcdef01234567.0",
            "0123456789abcdef01234567.99999999999999999999",
            "abc.1",
            ".",
            "1000",
            "1001",
            "",
        ])
        .prop_map(str::to_string),
        any::<String>(),
        "[A-Za-z0-9_-]{0,300}",
    ];
    prop_oneof![
        3 => Just(String::new()),
        4 => prop::collection::vec((key, value), 1..4).prop_map(|kv| {
            let pairs: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{}={}", uri_safe(k), uri_safe(v)))
                .collect();
            format!("?{}", pairs.join("&"))
        }),
        1 => any::<String>().prop_map(|q| format!("?{}", uri_safe(&q))),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = prop::sample::select(ROUTES.to_vec());
    let route = prop_oneof![
        8 => known.clone().prop_map(|r| format!("{}{r}", routes::BASE)),
        1 => prop::sample::select(vec!["/health", "/healthz", "/readyz"]).prop_map(String::from),
        2 => (known, 0..7usize, "[a-zA-Z0-9%._-]{0,12}").prop_map(|(r, how, junk)| {
            let full = format!("{}{r}", routes::BASE);
            match how {
                0 => format!("{full}/"),
                1 => format!("{full}/{junk}"),
                2 => full.to_uppercase(),
                3 => full.replace('/', "//"),
                4 => format!("{}{full}", routes::BASE),
                5 => full.replacen('/', "%2F", 2),
                _ => format!("{full}{junk}"),
            }
        }),
        1 => prop::collection::vec(any::<String>(), 0..5)
            .prop_map(|segs| format!("{}/{}", routes::BASE, uri_safe(&segs.join("/")))),
        1 => any::<String>().prop_map(|p| format!("/{}", uri_safe(&p))),
    ];
    (route, query()).prop_map(|(p, q)| format!("{p}{q}"))
}

fn auth(pool_len: usize) -> impl Strategy<Value = Auth> {
    prop_oneof![
        3 => Just(Auth::None),
        6 => (
            prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Bearer "]),
            0..pool_len
        )
            .prop_map(|(s, i)| Auth::Pooled(s, i)),
        2 => Just(Auth::FreshGuest),
        1 => any::<String>().prop_map(Auth::Raw),
    ]
}

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,64}", "[\\x00-\\xff]{0,16}"]
}

/// api key, content type, content length, forwarded-for, sync protocol.
type HeaderSet = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn headers() -> impl Strategy<Value = HeaderSet> {
    let api_key = prop_oneof![
        6 => Just(None),
        2 => Just(Some(ADMIN_KEY.to_string())),
        1 => Just(Some(format!("{ADMIN_KEY} "))),
        1 => header_text().prop_map(Some),
    ];
    let content_type = prop_oneof![
        2 => Just(None),
        6 => Just(Some("application/json".to_string())),
        1 => prop::sample::select(vec![
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/json-patch+json",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            ";",
            "",
        ])
        .prop_map(|s| Some(s.to_string())),
        1 => header_text().prop_map(Some),
    ];
    let content_length = prop_oneof![
        8 => Just(None),
        1 => prop::sample::select(vec!["0", "1", "-1", "99999999999999999999", "65537", "abc", " 5"])
            .prop_map(|s| Some(s.to_string())),
        1 => any::<u32>().prop_map(|n| Some(n.to_string())),
    ];
    let forwarded_for = prop_oneof![
        4 => Just(None),
        1 => prop::sample::select(vec![
            "203.0.113.7",
            "203.0.113.7, 198.51.100.2",
            "::1",
            "[::1]:80",
            "unknown",
            "999.1.1.1",
            ",,,",
            "",
        ])
        .prop_map(|s| Some(s.to_string())),
        1 => header_text().prop_map(Some),
    ];
    let protocol = prop_oneof![
        6 => Just(Some("1".to_string())),
        2 => Just(None),
        1 => prop::sample::select(vec!["0", "2", "4294967296", "-1", " 1", ""])
            .prop_map(|s| Some(s.to_string())),
        1 => header_text().prop_map(Some),
    ];
    (
        api_key,
        content_type,
        content_length,
        forwarded_for,
        protocol,
    )
}

fn accept() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        2 => Just(Some("text/html,application/xhtml+xml,*/*;q=0.8".to_string())),
        1 => Just(Some("application/json".to_string())),
        1 => header_text().prop_map(Some),
    ]
}

fn extra_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(vec![
                    "origin",
                    "accept",
                    "cookie",
                    "transfer-encoding",
                    "expect",
                    "host",
                    "x-api-key",
                    "authorization",
                    "content-encoding",
                ])
                .prop_map(str::to_string),
                "[a-z][a-z0-9-]{0,20}",
            ],
            header_text(),
        ),
        0..3,
    )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Email,
    Password,
    Name,
    UserId,
    Provider,
    IdToken,
    Nonce,
    /// A session token offered as the guest to merge.
    GuestToken,
    /// A mailed link's token (verification, password reset).
    LinkToken,
    Flag,
    Changes,
    /// An upgrade's `nextTokenHash`.
    TokenHash,
    /// A recovery key or a device key (issue 16).
    RecoveryKey,
}

/// One pushed change: mostly well-formed, with every field sometimes wrong.
fn record_change() -> impl Strategy<Value = Value> {
    use base64::Engine;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    let collection = prop_oneof![
        4 => prop::sample::select(vec!["notes", "prefs", "a-b_1"]).prop_map(|s| json!(s)),
        1 => prop::sample::select(vec!["Notes", "", "1abc", "x/y"]).prop_map(|s| json!(s)),
        1 => "[a-z]{30,40}".prop_map(|s| json!(s)),
        1 => json_value(),
    ];
    let id = prop_oneof![
        4 => "[A-Za-z0-9_.:-]{1,20}".prop_map(|s| json!(s)),
        1 => "[ -~]{0,140}".prop_map(|s| json!(s)),
        1 => json_value(),
    ];
    let change = prop_oneof![
        5 => prop::collection::vec(any::<u8>(), 0..64).prop_map(move |b| json!(b64(b))),
        1 => Just(()).prop_map(move |_| json!(b64(vec![0; 256 * 1024 + 1]))),
        1 => "[ -~]{0,64}".prop_map(|s| json!(s)),
        1 => json_value(),
    ];
    let deleted = prop_oneof![4 => any::<bool>().prop_map(|b| json!(b)), 1 => json_value()];
    let version = prop_oneof![
        4 => Just(json!(1)),
        1 => prop::sample::select(vec![json!(0), json!(u32::MAX), json!(-1), json!(2_147_483_648u64), json!(1.5)]),
        1 => json_value(),
    ];
    // `compacts`: absent, a well-formed cursor (of some epoch, maybe beyond the head),
    // garbage, or any JSON.
    let compacts = prop_oneof![
        4 => Just(None),
        2 => ("[0-9a-f]{1,24}", 0u64..u64::MAX).prop_map(|(e, s)| Some(json!(format!("{e}.{s}")))),
        1 => "[ -~]{0,40}".prop_map(|s| Some(json!(s))),
        1 => json_value().prop_map(Some),
    ];
    (collection, id, change, deleted, version, compacts).prop_map(|(c, i, ch, d, v, k)| {
        let mut change =
            json!({"collection": c, "id": i, "change": ch, "deleted": d, "schemaVersion": v});
        if let Some(k) = k {
            change["compacts"] = k;
        }
        change
    })
}

fn good_value(field: Field, idp_tokens: Vec<String>) -> BoxedStrategy<Value> {
    let s = |v: &[&str]| {
        prop::sample::select(v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .prop_map(Value::String)
            .boxed()
    };
    match field {
        Field::Email => prop_oneof![
            s(&[
                "victim@example.com",
                "VICTIM@EXAMPLE.COM",
                " victim@example.com ",
                "attacker@example.com",
                "a@b.co",
                "no-at-sign",
                "@",
                "a@b",
                "ä@ü.de",
                "victim@exämple.com",
                "victim@xn--exmple-cua.com",
                "vic\u{0}tim@example.com",
                "victim@exa\u{200B}mple.com",
                "\u{202E}moc.elpmaxe@mitciv",
            ]),
            "[a-z0-9]{1,12}@[a-z]{1,8}\\.[a-z]{2,4}".prop_map(Value::String),
        ]
        .boxed(),
        Field::Password => prop_oneof![
            s(&["password123", "1234567", "12345678"]),
            "[ -~]{0,140}".prop_map(Value::String),
        ]
        .boxed(),
        Field::Name => prop_oneof![
            s(&[
                "Jane\u{0}Doe",
                "\u{202E}eoD enaJ",
                "Jane\u{200B}",
                "👩\u{200D}💻"
            ]),
            "[ -~]{0,300}".prop_map(Value::String),
        ]
        .boxed(),
        Field::UserId => prop_oneof![
            s(&[
                "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                "usr_",
                "usr_00000000000000000000000000",
                "usr_ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
                "ses_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            ]),
            Just(()).prop_map(|_| Value::String(format!("usr_{}", ulid::Ulid::new()))),
            "usr_[0-9A-Za-z]{0,30}".prop_map(Value::String),
        ]
        .boxed(),
        Field::Provider => s(&["google", "Google", "github", "", "__proto__"]),
        Field::IdToken => prop_oneof![
            prop::sample::select(idp_tokens).prop_map(Value::String),
            "[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{1,80}\\.[A-Za-z0-9_-]{0,80}"
                .prop_map(Value::String),
        ]
        .boxed(),
        Field::Nonce => prop_oneof![
            3 => Just(Value::String(fuzz_nonce())),
            1 => s(&["n-1", "", "wrong"]),
        ]
        .boxed(),
        Field::GuestToken => prop_oneof![
            s(&["", "null", "Bearer x"]),
            "[A-Za-z0-9_-]{1,64}".prop_map(Value::String),
        ]
        .boxed(),
        Field::LinkToken => prop_oneof![
            s(&["", "null", "%00", "../reset-password"]),
            "[A-Za-z0-9_-]{43}".prop_map(Value::String),
            "[ -~]{0,300}".prop_map(Value::String),
        ]
        .boxed(),
        Field::Flag => any::<bool>().prop_map(Value::Bool).boxed(),
        Field::RecoveryKey => prop_oneof![
            3 => "[A-Za-z0-9_-]{43}".prop_map(Value::String),
            1 => "[ -~]{0,140}".prop_map(Value::String),
            1 => s(&["", "victim-recovery-", "abandon abandon abandon"]),
        ]
        .boxed(),
        Field::TokenHash => prop_oneof![
            "[0-9a-f]{64}".prop_map(Value::String),
            "[0-9A-Fa-f]{63,65}".prop_map(Value::String),
            "[ -~]{0,80}".prop_map(Value::String),
        ]
        .boxed(),
        Field::Changes => prop_oneof![
            8 => prop::collection::vec(record_change(), 0..6).prop_map(Value::Array),
            // One over PUSH_MAX_CHANGES, each change small (a 501-fold copy of a
            // 256 KiB one would be a 175 MB body to build per case).
            1 => Just(Value::Array(vec![
                json!({"collection": "notes", "id": "n", "change": "AA==", "schemaVersion": 1});
                501
            ])),
        ]
        .boxed(),
    }
}

fn field_value(field: Field, idp_tokens: Vec<String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => good_value(field, idp_tokens),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => json_value(),
        1 => any::<String>().prop_map(Value::String),
        1 => (1usize..70_000).prop_map(|n| Value::String("é".repeat(n / 2))),
    ]
}

fn fields_for(path: &str) -> &'static [(&'static str, Field)] {
    if path.contains("sync/push") {
        &[("changes", Field::Changes)]
    } else if path.contains("anonymous/upgrade-social") || path.contains("sign-in/social") {
        &[
            ("provider", Field::Provider),
            ("idToken", Field::IdToken),
            ("nonce", Field::Nonce),
            ("nextTokenHash", Field::TokenHash),
        ]
    } else if path.contains("anonymous/upgrade") {
        &[
            ("email", Field::Email),
            ("password", Field::Password),
            ("name", Field::Name),
            ("nextTokenHash", Field::TokenHash),
        ]
    } else if path.contains("sign-in/email") {
        &[
            ("email", Field::Email),
            ("password", Field::Password),
            ("rememberMe", Field::Flag),
        ]
    } else if path.contains("sign-up/email") {
        &[
            ("email", Field::Email),
            ("password", Field::Password),
            ("name", Field::Name),
            ("image", Field::Name),
            ("callbackURL", Field::Name),
        ]
    } else if path.contains("request-password-reset") {
        &[("email", Field::Email), ("redirectTo", Field::Name)]
    } else if path.contains("reset-password") {
        &[
            ("token", Field::LinkToken),
            ("newPassword", Field::Password),
            ("confirmPassword", Field::Password),
        ]
    } else if path.contains("send-verification-email") {
        &[("email", Field::Email), ("callbackURL", Field::Name)]
    } else if path.contains("verify-email") {
        &[("token", Field::LinkToken)]
    } else if path.contains("change-password") {
        &[
            ("currentPassword", Field::Password),
            ("newPassword", Field::Password),
            ("revokeOtherSessions", Field::Flag),
        ]
    } else if path.contains("delete-user") {
        &[("password", Field::Password), ("callbackURL", Field::Name)]
    } else if path.contains("anonymous/recovery-key") {
        &[("recoveryKey", Field::RecoveryKey)]
    } else if path.contains("sign-in/recovery") {
        &[
            ("recoveryKey", Field::RecoveryKey),
            ("deviceKey", Field::RecoveryKey),
        ]
    } else if path.contains("anonymous/merge") {
        &[("guestToken", Field::GuestToken)]
    } else if path.contains("sign-in/anonymous") {
        &[("id", Field::UserId)]
    } else {
        &[("userId", Field::UserId)]
    }
}

fn near_valid(path: &str, idp_tokens: Vec<String>) -> BoxedStrategy<Vec<u8>> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = fields_for(path)
        .iter()
        .map(|&(name, kind)| {
            prop::option::weighted(0.85, field_value(kind, idp_tokens.clone()))
                .prop_map(move |v| v.map(|v| (name.to_string(), v)))
                .boxed()
        })
        .collect();
    let unknown = prop::option::weighted(
        0.1,
        (
            prop_oneof!["isAdmin", "userId", "role", "__proto__", "email"],
            json_value(),
        ),
    );
    (fields, unknown)
        .prop_map(|(fields, unknown)| {
            let mut obj = serde_json::Map::new();
            for (k, v) in fields.into_iter().flatten() {
                obj.insert(k, v);
            }
            let mut text = Value::Object(obj).to_string();
            if let Some((k, v)) = unknown {
                // Appended by hand so a duplicate key reaches the parser too.
                let extra = format!("{}:{}", json!(k), v);
                text = if text == "{}" {
                    format!("{{{extra}}}")
                } else {
                    format!("{},{extra}}}", &text[..text.len() - 1])
                };
            }
            text.into_bytes()
        })
        .boxed()
}

/// A form post as the pages send it: the route's fields (and junk), urlencoded.
fn near_valid_form(path: &str) -> BoxedStrategy<Vec<u8>> {
    let names: Vec<String> = fields_for(path)
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(["x".to_string(), String::new()])
        .collect();
    let value = prop_oneof!["[A-Za-z0-9_-]{0,48}", "[ -~]{0,200}", any::<String>(),];
    let pair = (prop::sample::select(names), value);
    (prop::collection::vec(pair, 0..5), any::<bool>())
        .prop_map(|(pairs, raw)| {
            if raw {
                // Hand-made, so broken escapes and bare keys reach the parser too.
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return text.join("&").into_bytes();
            }
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                form.append_pair(k, v);
            }
            form.finish().into_bytes()
        })
        .boxed()
}

fn body(path: String, idp_tokens: Vec<String>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        2 => near_valid_form(&path),
        8 => near_valid(&path, idp_tokens),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        2 => prop::collection::vec(any::<u8>(), 0..512),
        1 => (1usize..4000, any::<bool>()).prop_map(|(n, arr)| {
            if arr {
                format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()
            } else {
                format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()
            }
        }),
        1 => Just(b"{\"email\":\"a@b.co\",\"password\":\"password123\"".to_vec()),
        1 => Just(vec![b' '; 70_000]),
    ]
}

fn case(pool_len: usize, idp_tokens: Vec<String>) -> impl Strategy<Value = Case> {
    let native = prop::bool::weighted(0.8);
    (
        native,
        method(),
        path(),
        auth(pool_len),
        headers(),
        extra_headers(),
        accept(),
    )
        .prop_flat_map(
            move |(
                native_method,
                method,
                path,
                auth,
                (api_key, content_type, content_length, forwarded_for, protocol),
                extra,
                accept,
            )| {
                body(path.clone(), idp_tokens.clone()).prop_map(move |body| Case {
                    native_method,
                    method: method.clone(),
                    path: path.clone(),
                    auth: auth.clone(),
                    api_key: api_key.clone(),
                    content_type: content_type.clone(),
                    content_length: content_length.clone(),
                    forwarded_for: forwarded_for.clone(),
                    protocol: protocol.clone(),
                    accept: accept.clone(),
                    extra: extra.clone(),
                    body,
                })
            },
        )
}

/// A nonce the fuzzed server issued (same secret, its clock at `t0`): the tokens
/// below carry it, so the checks past the nonce are reached too.
fn fuzz_nonce() -> String {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NONCE
        .get_or_init(|| {
            let secret = base_config("sqlite::memory:").secret.unwrap();
            guestpass_server::social_nonce::issue(
                secret.expose().as_bytes(),
                t0().timestamp_millis(),
            )
            .unwrap()
            .0
        })
        .clone()
}

/// ID tokens signed by the test provider: valid for our client (these link the
/// attacker's own guest, which is allowed), and subtly wrong ones.
fn idp_tokens(idp: &MockIdp) -> Vec<String> {
    let now = t0().timestamp();
    let base = json!({"iss": idp.issuer, "aud": CLIENT_ID, "exp": now + 600, "nonce": fuzz_nonce(),
        "email": "social@example.com", "email_verified": true});
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        idp.sign(&c)
    };
    vec![
        with(json!({"sub": "attacker-sub-1"})),
        with(json!({"sub": "attacker-sub-2", "email": "victim@example.com"})),
        with(json!({"sub": "x", "aud": "someone-else"})),
        with(json!({"sub": "x", "iss": "http://evil.example"})),
        with(json!({"sub": "x", "exp": now - 3600})),
        with(json!({"sub": ""})),
        with(json!({"sub": "x", "nonce": Value::Null})),
    ]
}

// ---------------------------------------------------------------------------
// Running a case and checking its answer.
// ---------------------------------------------------------------------------

impl Target {
    async fn build(&self, case: &Case, pool: &[String]) -> Option<Request<Body>> {
        let mut req = Request::builder().method(method_of(case)).uri(&case.path);
        let bearer = match &case.auth {
            Auth::None => None,
            Auth::Pooled(scheme, i) => Some(format!("{scheme} {}", pool[*i])),
            Auth::Raw(raw) => Some(raw.clone()),
            Auth::FreshGuest => Some(format!("Bearer {}", self.guest().await.token)),
        };
        let admin = case.api_key.as_deref() == Some(ADMIN_KEY)
            || bearer
                .as_deref()
                .is_some_and(|b| b.split_whitespace().nth(1) == Some(ADMIN_KEY));
        let mut body = case.body.clone();
        if admin && case.path.contains("remove-user") {
            // The admin may delete anyone: that is authority, not an attack. Point
            // it at someone who does not exist instead of a victim.
            let text = String::from_utf8_lossy(&body)
                .replace(&self.victim_guest.id, "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV")
                .replace(&self.victim_full.id, "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV");
            body = text.into_bytes();
        }
        let headers = [
            ("authorization".to_string(), bearer),
            ("x-api-key".to_string(), case.api_key.clone()),
            ("content-type".to_string(), case.content_type.clone()),
            ("content-length".to_string(), case.content_length.clone()),
            ("x-forwarded-for".to_string(), case.forwarded_for.clone()),
            (
                routes::SYNC_PROTOCOL_HEADER.to_string(),
                case.protocol.clone(),
            ),
            ("accept".to_string(), case.accept.clone()),
        ];
        let extra = case.extra.iter().map(|(k, v)| (k.clone(), Some(v.clone())));
        for (name, value) in headers.into_iter().chain(extra) {
            let Some(value) = value else { continue };
            // What hyper would refuse before any handler runs is not worth sending.
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) else {
                continue;
            };
            req = req.header(name, value);
        }
        req.body(Body::from(body)).ok()
    }
}

fn method_of(case: &Case) -> Method {
    if !case.native_method {
        return case.method.clone();
    }
    // The pages answer both: GET (the page) and POST (its form, or JSON).
    if PAGES.iter().any(|p| case.path.contains(p)) && case.method == Method::GET {
        return Method::GET;
    }
    let gets = [
        routes::GET_SESSION,
        routes::EXPORT,
        routes::ADMIN_LIST_USERS,
        routes::ADMIN_AUDIT_LOG,
        routes::SYNC_PULL,
        routes::SYNC_EVENTS,
        routes::PROVIDERS,
        "/health",
    ];
    if gets.iter().any(|g| case.path.contains(g)) {
        Method::GET
    } else {
        Method::POST
    }
}

fn check_answer(
    case: &Case,
    status: StatusCode,
    ct: Option<&str>,
    body: &[u8],
) -> Result<(), TestCaseError> {
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
    prop_assert!(
        !status.is_server_error(),
        "{status} for {} {}: {shown}",
        method_of(case),
        case.path
    );
    if status.is_success() || method_of(case) == Method::HEAD {
        return Ok(());
    }
    if ct == Some("text/html; charset=utf-8") {
        // Only a page, and only to a browser: its GET asked for HTML, or it
        // posted the page's form.
        let form = case.content_type.as_deref().is_some_and(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        let browser = case
            .accept
            .as_deref()
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
            || case
                .extra
                .iter()
                .any(|(k, v)| k == "accept" && v.to_ascii_lowercase().contains("text/html"));
        prop_assert!(
            PAGES.iter().any(|p| case.path.contains(p)),
            "HTML from a route without a page: {shown}"
        );
        prop_assert!(
            if method_of(case) == Method::POST {
                form
            } else {
                browser
            },
            "HTML to a JSON client: {shown}"
        );
        prop_assert!(
            !String::from_utf8_lossy(body).contains("<script"),
            "{}",
            shown
        );
        return Ok(());
    }
    prop_assert_eq!(ct, Some("application/json"), "{} {}", status, shown);
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {shown}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| TestCaseError::fail(format!("{status}: not an object: {shown}")))?;
    prop_assert_eq!(obj.len(), 3, "only code, message and requestId: {}", shown);
    prop_assert!(
        obj["requestId"]
            .as_str()
            .is_some_and(|id| id.len() == 26 && id.bytes().all(|b| b.is_ascii_alphanumeric())),
        "requestId is the server's ULID, never an echo of the request: {}",
        shown
    );
    let code: ErrorCode = serde_json::from_value(obj["code"].clone())
        .map_err(|_| TestCaseError::fail(format!("code not a string: {shown}")))?;
    prop_assert!(
        SERVER_CODES.contains(&code),
        "code outside the set: {shown}"
    );
    prop_assert!(
        obj["message"].as_str().is_some_and(|m| !m.is_empty()),
        "empty message: {shown}"
    );
    Ok(())
}

fn cases_to_run() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

#[test]
fn every_route_survives_hostile_requests() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = rt.block_on(Target::start());
    let (own, tokens) = rt.block_on(async {
        let own = vec![target.guest().await, target.guest().await];
        let tokens = idp_tokens(&target._idp);
        (own, tokens)
    });
    let pool = target.token_pool(&own);
    let before = rt.block_on(target.snapshot());

    let cases = cases_to_run();
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let executed = AtomicU32::new(0);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let pages = AtomicU32::new(0);
    let result = runner.run(&case(pool.len(), tokens), |case| {
        executed.fetch_add(1, Ordering::Relaxed);
        rt.block_on(async {
            let Some(req) = target.build(&case, &pool).await else {
                return Ok(());
            };
            let (status, ct, body) = target.call(req).await;
            *statuses.lock().unwrap().entry(status.as_u16()).or_default() += 1;
            if ct.as_deref().is_some_and(|t| t.starts_with("text/html")) {
                pages.fetch_add(1, Ordering::Relaxed);
            }
            check_answer(&case, status, ct.as_deref(), &body)
        })
    });
    eprintln!(
        "fuzz: {} requests executed ({cases} cases); answers by status: {:?}; HTML pages: {}",
        executed.load(Ordering::Relaxed),
        statuses.lock().unwrap(),
        pages.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }

    rt.block_on(async {
        let after = target.snapshot().await;
        let gone: Vec<_> = before.iter().filter(|r| !after.contains(r)).collect();
        let new: Vec<_> = after.iter().filter(|r| !before.contains(r)).collect();
        assert!(
            gone.is_empty() && new.is_empty(),
            "a victim's rows changed: gone {gone:#?}, new {new:#?}"
        );
        for token in [
            &target.victim_guest.token,
            &target.victim_full.token,
            &target.victim_full_second_token,
        ] {
            let req = Request::get(format!("{}{}", routes::BASE, routes::GET_SESSION))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = target.call(req).await;
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 200);
            assert!(v["user"]["id"].is_string(), "victim signed out: {v}");
        }
        let (status, _, _) = target
            .call(Request::get("/health").body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, 200);
    });
}
