//! No secret at rest or in logs: after a full journey — a guest syncing notes and
//! upgrading with a password, another linking a social account with a real ID
//! token, email sign-in, sign-up, a merge, a social sign-in, the admin API with its
//! key, account care (a password reset through its mailed link and page, a
//! verification resent and confirmed, a password change, an account deleted with
//! its password), and refusals of each — and what the settings screen, "Copy
//! diagnostics", the health probes and the metrics show (issue 15), and a guest's
//! recovery phrase shown, replaced and restored with (issue 16): every
//! byte of every SQLite file (database, WAL, SHM) of both devices and the server,
//! everything the app core and the server logged at DEBUG, and every error message
//! are searched for the session tokens, the password, the admin key and the ID
//! token, the mailed link tokens, the new passwords, the recovery phrases and the
//! keys derived from them, also as hex and base64.
//! None may appear.
//!
//! The ID token only ever travels from the app to the server, so the app talks to
//! the server through a recording pass-through here: it is how the test learns the
//! token it must then not find anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use guestpass_core::{Dialect, Opener, SocialProvider, UpgradeOutcome};
use guestpass_proto::ErrorCode;
use guestpass_testkit::oidc::OidcPeer;
use guestpass_tests::{Device, RefServer, SmtpSink, ADMIN_KEY};
use secrecy::SecretString;
use serde_json::{json, Value};

const PASSWORD: &str = "Correct-Horse-Battery-42";
/// Set through the reset link, then changed to the next one.
const RESET_PASSWORD: &str = "Reset-Horse-Battery-43";
const CHANGED_PASSWORD: &str = "Changed-Horse-Battery-44";
const PROVIDER: &str = "acme";
const CLIENT_ID: &str = "guestpass-desktop";

/// Everything every `tracing` call in this process wrote, at DEBUG and above.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> LogSink {
    let sink = LogSink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    sink
}

/// Forwards to the server and remembers every request body and every error answer.
struct Recorder {
    upstream: String,
    http: reqwest::Client,
    requests: Mutex<Vec<Vec<u8>>>,
    error_bodies: Mutex<Vec<String>>,
}

async fn forward(State(r): State<Arc<Recorder>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap();
    r.requests.lock().unwrap().push(body.to_vec());
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = r
        .http
        .request(parts.method, format!("{}{path}", r.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let res = out.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        r.error_bodies.lock().unwrap().push(text);
    }
    let mut answer = Response::builder().status(status);
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" {
            answer = answer.header(name, value);
        }
    }
    answer.body(Body::from(bytes)).unwrap()
}

async fn start_recorder(upstream: String) -> (String, Arc<Recorder>) {
    let recorder = Arc::new(Recorder {
        upstream,
        http: reqwest::Client::new(),
        requests: Mutex::default(),
        error_bodies: Mutex::default(),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, recorder)
}

/// The system browser: follows the authorize URL through the provider's redirects
/// to the app's loopback callback.
struct Browser;

impl Opener for Browser {
    fn open(&self, url: &str) -> Result<(), String> {
        let mut url = url::Url::parse(url).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("login_hint", "social@example.com");
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut next = url.to_string();
            for _ in 0..10 {
                let res = http.get(&next).send().await.unwrap();
                let Some(location) = res.headers().get("location") else {
                    break;
                };
                let location = location.to_str().unwrap().to_owned();
                next = url::Url::parse(&next)
                    .unwrap()
                    .join(&location)
                    .unwrap()
                    .to_string();
            }
        });
        Ok(())
    }
}

/// A secret and the encodings it could hide in.
fn forms(secret: &str) -> Vec<String> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let b64url = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forms = vec![
        secret.to_owned(),
        hex::encode(secret),
        hex::encode_upper(secret),
        b64.encode(secret),
        b64url.encode(secret),
    ];
    // Tokens are base64url of random bytes: those bytes, written another way.
    if let Ok(raw) = b64url.decode(secret) {
        forms.extend([hex::encode(&raw), b64.encode(&raw)]);
    }
    // A JWT's parts can be stored apart (the signature is what proves possession).
    if secret.matches('.').count() == 2 {
        forms.extend(secret.split('.').skip(1).map(str::to_owned));
    }
    forms
}

fn files_of(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::read(&p)
                .ok()
                .map(|b| (p.to_string_lossy().into_owned(), b))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

/// The token of the next mailed link to `route`; every link token seen on the
/// way (verification emails of the upgrades and sign-ups) goes into `seen`.
async fn next_link(smtp: &mut SmtpSink, route: &str, seen: &mut Vec<String>) -> String {
    loop {
        let mail = smtp.next().await;
        let body = guestpass_testkit::decode_qp(&mail.data);
        let mut found = None;
        for word in body.split_whitespace().filter(|w| w.contains("?token=")) {
            let url = url::Url::parse(word).unwrap();
            let token = url
                .query_pairs()
                .find(|(k, _)| k == "token")
                .unwrap()
                .1
                .into_owned();
            seen.push(token.clone());
            if url.path().ends_with(route) {
                found = Some(token);
            }
        }
        if let Some(token) = found {
            return token;
        }
    }
}

/// A browser opening a mailed link, over a plain socket: an HTTP client library
/// would log the address (and the token in it) at DEBUG.
async fn open_page(base: &str, path_and_query: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn error_text<T>(result: guestpass_core::Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => format!("{e} / {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_a_database_file_a_log_or_an_error_message() {
    let logs = capture_logs();
    let provider = OidcPeer::start();
    let mut smtp = SmtpSink::start().await;
    let mut server = RefServer::reserve().await;
    server.smtp_url = Some(smtp.url());
    let mut config = server.config();
    config.social_providers.insert(
        PROVIDER.into(),
        guestpass_server::config::SocialProvider {
            client_id: CLIENT_ID.into(),
            issuer: provider.issuer.clone(),
        },
    );
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    server.up_with(config).await;
    let (via, recorder) = start_recorder(server.url()).await;
    let mut messages: Vec<String> = Vec::new();

    // A guest with notes syncs, then upgrades with a password, online.
    let device_a = Device::new(&via, Dialect::Guestpass);
    let a = device_a.launch().await;
    let guest_a = a.ensure_session().await.unwrap();
    a.create_note("a note that syncs").await.unwrap();
    a.sync_now().await;
    let up = a
        .upgrade("secret-keeper@example.com", pw(PASSWORD), Some("Keeper"))
        .await
        .unwrap();
    assert!(matches!(up, UpgradeOutcome::Upgraded(_)), "{up:?}");
    messages.push(error_text(
        a.upgrade("x@example.com", pw(PASSWORD), None).await,
    ));

    // A second device is refused the same email (with the same password).
    let device_c = Device::new(&via, Dialect::Guestpass);
    let c = device_c.launch().await;
    let guest_c = c.ensure_session().await.unwrap();
    let refused = c
        .upgrade("secret-keeper@example.com", pw(PASSWORD), None)
        .await;
    messages.push(error_text(refused));

    // Issue 16: that guest shows its recovery phrase, makes a new one, and is
    // restored with it; an old phrase and a mistyped one are refused.
    c.create_note("a note to come back to").await.unwrap();
    c.sync_now().await;
    let first_phrase = c.recovery_phrase().await.unwrap().words.join(" ");
    let phrase = c.new_recovery_phrase().await.unwrap().words.join(" ");
    messages.push(error_text(c.restore_guest(&first_phrase).await));
    let mut typo: Vec<&str> = phrase.split(' ').collect();
    typo[4] = "zzzzzz";
    messages.push(error_text(c.restore_guest(&typo.join(" ")).await));
    let restored = c.restore_guest(&phrase).await.unwrap();
    assert!(
        matches!(&restored, guestpass_core::SignInOutcome::SignedIn(s) if s.user.id == guest_c.user.id),
        "{restored:?}"
    );
    let recovery_keys: Vec<String> = [&first_phrase, &phrase]
        .iter()
        .map(|p| {
            use secrecy::ExposeSecret;
            guestpass_core::recovery::Phrase::parse(p)
                .unwrap()
                .sign_in_key()
                .expose_secret()
                .to_owned()
        })
        .collect();

    // Another guest links a social account.
    let mut device_b = Device::new(&via, Dialect::Guestpass);
    device_b.social = vec![SocialProvider {
        name: PROVIDER.into(),
        issuer: provider.issuer.clone(),
        client_id: CLIENT_ID.into(),
    }];
    let b = device_b.launch().await;
    let guest_b = b.ensure_session().await.unwrap();
    b.create_note("another note").await.unwrap();
    let linked = b.upgrade_with_social(PROVIDER, &Browser).await.unwrap();
    assert!(!linked.user.is_anonymous);
    let again = b.upgrade_with_social(PROVIDER, &Browser).await;
    assert_eq!(
        again.as_ref().err().map(|e| e.code()),
        Some(ErrorCode::UserNotAnonymous)
    );
    messages.push(error_text(again));

    let id_token = recorder
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|body| serde_json::from_slice::<Value>(body).ok())
        .find_map(|v| v["idToken"].as_str().map(str::to_owned))
        .expect("the app sent an ID token to the server");

    // Straight to the server: email sign-in (wrong and right), a replayed ID token
    // on a fresh guest, the admin API with and without its key.
    let (_, wrong) = server
        .post(
            "/sign-in/email",
            None,
            json!({"email": "secret-keeper@example.com", "password": format!("{PASSWORD}!")}),
        )
        .await;
    messages.push(wrong.to_string());
    let (status, signed_in) = server
        .post(
            "/sign-in/email",
            None,
            json!({"email": "secret-keeper@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{signed_in}");
    let email_token = signed_in["token"].as_str().unwrap().to_owned();
    let sign_in_answer: guestpass_proto::SignInResponse =
        serde_json::from_value(signed_in.clone()).unwrap();
    let (_, fresh) = server.post("/sign-in/anonymous", None, json!({})).await;
    let fresh_token = fresh["token"].as_str().unwrap().to_owned();
    let (_, replay) = server
        .post(
            "/anonymous/upgrade-social",
            Some(&fresh_token),
            json!({"provider": PROVIDER, "idToken": id_token}),
        )
        .await;
    messages.push(replay.to_string());
    // The account routes (issue 11): a sign-up, a guest merged into that account
    // (and the retry), the linked identity signing in, and their refusals.
    let (status, signed_up) = server
        .post(
            "/sign-up/email",
            None,
            json!({"email": "merger@example.com", "password": PASSWORD, "name": "M"}),
        )
        .await;
    assert_eq!(status, 200, "{signed_up}");
    let sign_up_token = signed_up["token"].as_str().unwrap().to_owned();
    let (_, taken) = server
        .post(
            "/sign-up/email",
            None,
            json!({"email": "merger@example.com", "password": PASSWORD, "name": "M"}),
        )
        .await;
    messages.push(taken.to_string());
    let (_, merged_guest) = server.post("/sign-in/anonymous", None, json!({})).await;
    let merged_guest_token = merged_guest["token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, merged) = server
            .post(
                "/anonymous/merge",
                Some(&sign_up_token),
                json!({ "guestToken": merged_guest_token }),
            )
            .await;
        assert_eq!(status, 200, "{merged}");
    }
    let (_, refused_merge) = server
        .post(
            "/anonymous/merge",
            Some(&email_token),
            json!({ "guestToken": merged_guest_token }),
        )
        .await;
    messages.push(refused_merge.to_string());
    // The nonce the app sent with that ID token: the token then signs in to
    // the account it was linked to.
    let nonce = recorder
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|body| serde_json::from_slice::<Value>(body).ok())
        .find(|v| v["idToken"].as_str() == Some(id_token.as_str()))
        .map(|v| v["nonce"].clone());
    // The same token again is a replay (issue 14): refused, and its words scanned.
    let (status, replayed) = server
        .post(
            "/sign-in/social",
            None,
            json!({"provider": PROVIDER, "idToken": id_token, "nonce": nonce}),
        )
        .await;
    assert_eq!(status, 401, "{replayed}");
    messages.push(replayed.to_string());
    // A fresh one, for a nonce the server issued, signs in to the linked account.
    let (_, issued) = server.post("/social/nonce", None, json!({})).await;
    let fresh_nonce = issued["nonce"].as_str().unwrap().to_owned();
    let fresh =
        guestpass_tests::browser::mint_id_token(&provider.issuer, CLIENT_ID, &fresh_nonce, &[])
            .await;
    let (status, social) = server
        .post(
            "/sign-in/social",
            None,
            json!({"provider": PROVIDER, "idToken": fresh, "nonce": fresh_nonce}),
        )
        .await;
    assert_eq!(status, 200, "{social}");
    let social_token = social["token"].as_str().unwrap().to_owned();
    let (_, refused_social) = server
        .post(
            "/sign-in/social",
            None,
            json!({"provider": PROVIDER, "idToken": id_token, "nonce": "another"}),
        )
        .await;
    messages.push(refused_social.to_string());
    // link-social (issue 14): that identity is another account's, and a guest
    // may not link; both refusals are scanned, and the ID token goes in the logs'
    // reach like any other request body.
    let (_, refused_link) = server
        .post(
            "/link-social",
            Some(&sign_up_token),
            json!({"provider": PROVIDER, "idToken": id_token, "nonce": nonce}),
        )
        .await;
    messages.push(refused_link.to_string());
    let (_, guest_link) = server
        .post(
            "/link-social",
            Some(&fresh_token),
            json!({"provider": PROVIDER, "idToken": id_token, "nonce": nonce}),
        )
        .await;
    messages.push(guest_link.to_string());
    assert!(server.admin_user(&guest_a.user.id).await.is_some());
    let refused_admin = reqwest::Client::new()
        .get(format!("{}/api/auth/admin/list-users", server.url()))
        .header("x-api-key", format!("{ADMIN_KEY}-wrong"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    messages.push(refused_admin);
    // Account care (issue 13), straight to the server: a reset through the
    // mailed link and its page (refused once, set, refused again), a sign-in
    // with the new password, a password change (wrong, then right), a resent
    // verification confirmed through the page's form, and the merger account
    // deleted (wrong password, then right).
    let mut link_tokens = Vec::new();
    let keeper = "secret-keeper@example.com";
    let (status, _) = server
        .post("/request-password-reset", None, json!({ "email": keeper }))
        .await;
    assert_eq!(status, 200);
    let reset = next_link(&mut smtp, "/reset-password", &mut link_tokens).await;
    let page = open_page(
        &server.url(),
        &format!("/api/auth/reset-password?token={reset}"),
    )
    .await;
    assert!(
        page.starts_with("HTTP/1.1 200") && page.contains("name=\"newPassword\""),
        "{page}"
    );
    let http = reqwest::Client::new();
    let reset_form = |new: &'static str, again: &'static str| {
        let form = [
            ("token", reset.clone()),
            ("newPassword", new.into()),
            ("confirmPassword", again.into()),
        ];
        http.post(format!("{}/api/auth/reset-password", server.url()))
            .header("accept", "text/html")
            .form(&form)
            .send()
    };
    // Refused, the page's form comes back with its message, and with the token
    // in its hidden field (the holder posted it and needs it to try again): the
    // only place it is, and never in the message.
    let differ = reset_form(RESET_PASSWORD, CHANGED_PASSWORD).await.unwrap();
    assert_eq!(differ.status(), 400);
    let again = differ.text().await.unwrap();
    let hidden = format!("<input type=\"hidden\" name=\"token\" value=\"{reset}\">");
    assert_eq!(
        (
            again.matches(&reset).count(),
            again.matches(&hidden).count()
        ),
        (1, 1)
    );
    let alert = again
        .split("role=\"alert\">")
        .nth(1)
        .and_then(|a| a.split("</p>").next());
    messages.push(alert.unwrap().to_owned());
    messages.push(again.replace(&hidden, ""));
    let set = reset_form(RESET_PASSWORD, RESET_PASSWORD).await.unwrap();
    assert_eq!(set.status(), 200);
    let used = reset_form(RESET_PASSWORD, RESET_PASSWORD).await.unwrap();
    assert_eq!(used.status(), 400);
    messages.push(used.text().await.unwrap());
    let (_, reused) = server
        .post(
            "/reset-password",
            None,
            json!({"token": reset, "newPassword": RESET_PASSWORD}),
        )
        .await;
    messages.push(reused.to_string());
    let (status, after_reset) = server
        .post(
            "/sign-in/email",
            None,
            json!({"email": keeper, "password": RESET_PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{after_reset}");
    let reset_token = after_reset["token"].as_str().unwrap().to_owned();
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let (status, wrong_change) = server
        .post(
            "/change-password",
            Some(&reset_token),
            change(PASSWORD, CHANGED_PASSWORD),
        )
        .await;
    assert_eq!(status, 401);
    messages.push(wrong_change.to_string());
    let (status, changed) = server
        .post(
            "/change-password",
            Some(&reset_token),
            change(RESET_PASSWORD, CHANGED_PASSWORD),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    let (status, _) = server
        .post("/send-verification-email", Some(&sign_up_token), json!({}))
        .await;
    assert_eq!(status, 200);
    let resent = next_link(&mut smtp, "/verify-email", &mut link_tokens).await;
    let confirmed = http
        .post(format!("{}/api/auth/verify-email", server.url()))
        .header("accept", "text/html")
        .form(&[("token", resent.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let (status, wrong_delete) = server
        .post(
            "/delete-user",
            Some(&sign_up_token),
            json!({ "password": CHANGED_PASSWORD }),
        )
        .await;
    assert_eq!(status, 401);
    messages.push(wrong_delete.to_string());
    let (status, deleted) = server
        .post(
            "/delete-user",
            Some(&sign_up_token),
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert!(
        link_tokens.len() >= 3,
        "a reset and two verification links at least"
    );

    messages.extend(recorder.error_bodies.lock().unwrap().iter().cloned());
    // Issue 15: what the settings screen reads from the server, and the
    // diagnostics a person pastes into a support request.
    let (status, providers) = server.get("/providers", None).await;
    assert_eq!(status, 200, "{providers}");
    assert_eq!(providers["providers"][0]["clientId"], CLIENT_ID);
    messages.push(providers.to_string());
    let about = guestpass_core::About {
        app_version: "test".into(),
        data_dir: device_a.dir.path().display().to_string(),
        overrides: Vec::new(),
    };
    // And what an operator reads (issue 15): the probes and the metrics, scraped
    // after the whole journey.
    for probe in ["/healthz", "/readyz"] {
        let answer = reqwest::get(format!("{}{probe}", server.url()))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{probe}");
        messages.push(answer.text().await.unwrap());
    }
    let metrics = reqwest::get(server.metrics_url().unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("guestpass_http_requests_total"),
        "{metrics}"
    );
    messages.push(metrics);
    let diagnostics = a.diagnostics(&about).await;
    assert!(diagnostics.contains("Sync: "), "{diagnostics}");
    messages.push(diagnostics);
    // The device made its next token itself and sent only its SHA-256: the token
    // device A now holds is the one the upgrade named (so the scan below covers
    // the pending token), and no pending token is left behind.
    let next_token_hash = recorder
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|body| serde_json::from_slice::<Value>(body).ok())
        .find(|v| v["email"] == "secret-keeper@example.com" && v["nextTokenHash"].is_string())
        .map(|v| v["nextTokenHash"].as_str().unwrap().to_owned())
        .expect("the app sent nextTokenHash with its upgrade");
    let held = device_a
        .keyring(&guest_a.user.id, "remote-session")
        .expect("device A's session token");
    assert_eq!(
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(held.as_bytes())),
        next_token_hash
    );
    assert_eq!(device_a.keyring(&guest_a.user.id, "pending-token"), None);
    assert_eq!(device_b.keyring(&guest_b.user.id, "pending-token"), None);
    // What a `{:?}` in any log line would print of the values that carry secrets.
    let debug_views = [
        format!("{:?}", server.config()),
        format!(
            "{:?}",
            guestpass_proto::RecoverySignInRequest {
                recovery_key: phrase.clone(),
                device_key: Some(phrase.clone()),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::RecoveryKeyRequest {
                recovery_key: phrase.clone(),
            }
        ),
        format!(
            "{:?}",
            guestpass_core::recovery::Phrase::parse(&phrase).unwrap()
        ),
        format!("{:?}", c.recovery_phrase().await.unwrap()),
        format!("{sign_in_answer:?}"),
        format!(
            "{:?}",
            guestpass_proto::UpgradeRequest {
                email: "secret-keeper@example.com".into(),
                password: PASSWORD.into(),
                name: None,
                next_token_hash: Some(next_token_hash.clone()),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::EmailSignInRequest {
                email: "secret-keeper@example.com".into(),
                password: PASSWORD.into(),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::MergeRequest {
                guest_token: merged_guest_token.clone(),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::SocialSignInRequest {
                provider: PROVIDER.into(),
                id_token: id_token.clone(),
                nonce: None,
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::SocialUpgradeRequest {
                provider: PROVIDER.into(),
                id_token: id_token.clone(),
                nonce: None,
                next_token_hash: Some(next_token_hash.clone()),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::ResetPasswordRequest {
                token: reset.clone(),
                new_password: RESET_PASSWORD.into(),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::VerifyEmailRequest {
                token: resent.clone(),
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::ChangePasswordRequest {
                current_password: RESET_PASSWORD.into(),
                new_password: CHANGED_PASSWORD.into(),
                revoke_other_sessions: None,
            }
        ),
        format!(
            "{:?}",
            guestpass_proto::DeleteUserRequest {
                password: Some(PASSWORD.into()),
                callback_url: None,
            }
        ),
    ];

    // The secrets: every session token (local and server-side), the password, the
    // admin key, the ID token.
    let mut secrets = vec![
        ("password", PASSWORD.to_owned()),
        ("admin key", ADMIN_KEY.to_owned()),
        ("ID token", id_token),
        ("second ID token", fresh),
        ("email sign-in token", email_token),
        ("fresh guest token", fresh_token),
        ("sign-up token", sign_up_token),
        ("merged guest token", merged_guest_token),
        ("social sign-in token", social_token),
        ("reset password", RESET_PASSWORD.to_owned()),
        ("changed password", CHANGED_PASSWORD.to_owned()),
        ("post-reset sign-in token", reset_token),
        ("recovery phrase", phrase.clone()),
        ("replaced recovery phrase", first_phrase.clone()),
    ];
    secrets.extend(
        recovery_keys
            .into_iter()
            .map(|k| ("recovery sign-in key", k)),
    );
    secrets.extend(link_tokens.into_iter().map(|t| ("mailed link token", t)));
    for (device, user) in [
        (&device_a, &guest_a.user.id),
        (&device_b, &guest_b.user.id),
        (&device_c, &guest_c.user.id),
    ] {
        // A pending token (an upgrade's next token, issue 14) is a session token too.
        for slot in ["session", "remote-session", "pending-token"] {
            if let Some(token) = device.keyring(user, slot) {
                secrets.push(("session token", token));
            }
        }
        // The key that proves this device registered its guest (the server keeps
        // only its SHA-256).
        if let Some(key) = device.keyring(user, "device-key") {
            secrets.push(("device key", key));
        }
    }
    assert!(
        secrets
            .iter()
            .filter(|(k, _)| *k == "session token")
            .count()
            >= 6,
        "each device holds a local and a server token"
    );
    assert!(
        secrets.iter().any(|(k, _)| *k == "device key"),
        "a registered device holds its device key"
    );

    // Written to disk, as a crash would leave them: scan with the apps still open
    // (WAL not checkpointed), then again after they and the server have closed.
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    let server_db = server.dir.path().join("server.db");
    let db_paths = [
        device_a.db_path(),
        device_b.db_path(),
        device_c.db_path(),
        server_db,
    ];
    let mut scan = |pass: &str| {
        for path in &db_paths {
            for (name, bytes) in files_of(path) {
                places.push((format!("{name} ({pass})"), bytes));
            }
        }
    };
    scan("open");
    drop((a, b, c));
    server.down().await;
    scan("closed");
    let log = logs.0.lock().unwrap().clone();
    assert!(
        contains(&log, "DEBUG") && contains(&log, "guest upgraded"),
        "the server's DEBUG log was captured: {}",
        String::from_utf8_lossy(&log[..log.len().min(3000)])
    );
    places.push(("log output".into(), log));
    for (i, d) in debug_views.iter().enumerate() {
        assert!(d.contains("<redacted>"), "{d}");
        places.push((format!("Debug view {i}: {d}"), d.clone().into_bytes()));
    }
    for (i, m) in messages.iter().enumerate() {
        places.push((format!("error message {i}: {m}"), m.clone().into_bytes()));
    }
    assert!(places.iter().filter(|(n, _)| n.contains("-wal")).count() >= 4);

    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        for form in forms(secret) {
            for (place, bytes) in &places {
                if contains(bytes, &form) {
                    leaks.push(format!("{what} ({form:.12}…) in {place}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "secrets found:\n{}", leaks.join("\n"));
    for (device, user) in [
        (&device_a, &guest_a.user.id),
        (&device_b, &guest_b.user.id),
        (&device_c, &guest_c.user.id),
    ] {
        device.forget_keyring(user);
    }
}
