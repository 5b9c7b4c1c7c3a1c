//! The native social upgrade (DESIGN.md §5, RFC 8252): the system browser shows the
//! provider's page (the app hands the URL to an [`Opener`]; never a webview), the
//! authorization code comes back to a loopback listener on `127.0.0.1` with an ephemeral
//! port that accepts exactly one callback, the code is exchanged with PKCE (S256) for an
//! ID token, and the backend verifies that token (signature, issuer, audience, expiry,
//! nonce) and links the provider identity to the guest in place.
//!
//! Nothing on the device changes until the backend said yes: cancel, timeout, provider
//! errors, a wrong `state` or a refusal all leave the guest exactly as it was.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use guestpass_proto::{ApiError, ErrorCode, SessionResponse};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::backend::{BackendError, Dialect};
use crate::error::{Error, Result};
use crate::sync::{self, SyncState};
use crate::vault::Slot;
use crate::Guestpass;

/// How long the provider's page may stay open before the flow gives up.
pub const SOCIAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Overrides [`SOCIAL_TIMEOUT`] (whole seconds), read when the core opens.
pub const SOCIAL_TIMEOUT_ENV: &str = "GUESTPASS_SOCIAL_TIMEOUT_SECS";

/// One OpenID Connect provider the app offers ("Continue with …"): its public client id
/// only; a client secret, if the provider wants one, stays on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SocialProvider {
    /// The name the backend knows it by (its `[socialProviders.<name>]`), e.g. `google`.
    pub name: String,
    /// Discovery lives at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
}

/// How the app shows the provider's page: the system browser in the app, a seam in tests.
pub trait Opener: Send + Sync {
    fn open(&self, url: &str) -> std::result::Result<(), String>;
}

/// The social part of the core: the configured providers, the timeout, the cancel switch.
pub(crate) struct Social {
    providers: Vec<SocialProvider>,
    timeout_ms: AtomicU64,
    /// Bumped by `cancel_social`; a flow watches it from before it opens the browser.
    cancel: watch::Sender<u64>,
}

impl Social {
    pub(crate) fn new(providers: Vec<SocialProvider>) -> Self {
        let timeout = std::env::var(SOCIAL_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map_or(SOCIAL_TIMEOUT, Duration::from_secs);
        Self {
            providers,
            timeout_ms: AtomicU64::new(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            cancel: watch::channel(0).0,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }
}

/// The token endpoint's answer, with the OpenID Connect `id_token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdTokenFields {
    #[serde(default)]
    id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenFields {}

type OidcTokenResponse = StandardTokenResponse<IdTokenFields, BasicTokenType>;
type OidcClient = oauth2::Client<
    BasicErrorResponse,
    OidcTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The parts of the discovery document the flow needs.
#[derive(Debug, Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

/// "google" → "Google", for messages.
pub(crate) fn display_name(provider: &str) -> String {
    let mut chars = provider.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => provider.to_owned(),
    }
}

fn api(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::Api(ApiError::new(code, message))
}

/// The server did not hand out a nonce: nothing was opened, nothing changed.
pub(crate) fn nonce_error(e: BackendError, label: &str) -> Error {
    match e {
        BackendError::Refused(e) => Error::Api(e),
        BackendError::Unreachable(_) | BackendError::RateLimited { .. } => needs_connection(label),
        BackendError::Unauthorized | BackendError::Protocol(_) => api(
            ErrorCode::SocialFailed,
            format!("Sign-in with {label} failed: the server could not start it."),
        ),
    }
}

fn needs_connection(label: &str) -> Error {
    api(
        ErrorCode::BackendUnreachable,
        format!("Signing in with {label} needs a connection to the server."),
    )
}

impl Guestpass {
    /// The configuration of `provider`, or `UNKNOWN_PROVIDER` in words.
    pub(crate) fn social_config(&self, provider: &str) -> Result<SocialProvider> {
        self.social
            .providers
            .iter()
            .find(|p| p.name == provider)
            .cloned()
            .ok_or_else(|| {
                api(
                    ErrorCode::UnknownProvider,
                    format!(
                        "Signing in with {} is not set up in this app.",
                        display_name(provider)
                    ),
                )
            })
    }

    /// The configured providers' names, for the "Continue with …" buttons.
    pub fn social_providers(&self) -> Vec<String> {
        self.social
            .providers
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// How long a flow waits for the provider's answer (tests shorten it).
    #[doc(hidden)]
    pub fn set_social_timeout(&self, timeout: Duration) {
        self.social.timeout_ms.store(
            u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Ends a flow in flight (the app's Cancel button): it fails with `SOCIAL_CANCELLED`
    /// and the guest is untouched.
    pub fn cancel_social(&self) {
        self.social.cancel.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// The spec's `anonymous.upgradeWithSocial({provider})`, done natively: the provider's
    /// page in the system browser through `opener`, the answer on a loopback listener,
    /// the ID token verified and linked by the backend. The same user and session come
    /// back, now a full account.
    pub async fn upgrade_with_social(
        &self,
        provider: &str,
        opener: &dyn Opener,
    ) -> Result<SessionResponse> {
        let user_id = self
            .current
            .read()
            .await
            .clone()
            .ok_or(Error::from(ErrorCode::NoSession))?;
        let session = self
            .get_session()
            .await?
            .ok_or(Error::from(ErrorCode::NoSession))?;
        if !session.user.is_anonymous {
            return Err(ErrorCode::UserNotAnonymous.into());
        }
        let Some(config) = self
            .social
            .providers
            .iter()
            .find(|p| p.name == provider)
            .cloned()
        else {
            return Err(api(
                ErrorCode::UnknownProvider,
                format!(
                    "Signing in with {} is not set up in this app.",
                    display_name(provider)
                ),
            ));
        };
        let label = display_name(&config.name);
        let Some(backend) = self.sync.backend.clone() else {
            return Err(needs_connection(&label));
        };
        if backend.dialect() == Dialect::BetterAuth {
            return Err(api(
                ErrorCode::UnknownProvider,
                "Social upgrade needs the Guestpass server",
            ));
        }

        // A social sign-in cannot be queued: the guest must be known to the backend now.
        let status = self.sync_now().await;
        if status.state == SyncState::Offline {
            return Err(needs_connection(&label));
        }
        let session = self
            .get_session()
            .await?
            .ok_or(Error::from(ErrorCode::NoSession))?;
        if !session.user.is_anonymous {
            // A queued email upgrade went through in that pass.
            return Err(ErrorCode::UserNotAnonymous.into());
        }
        let remote_token = self.vault.get(&user_id, Slot::Remote).await?;
        let registered = sync::last_synced(&self.store, &user_id).await?.is_some();
        let Some(remote_token) = remote_token.filter(|_| registered) else {
            return Err(Error::Api(status.reason.unwrap_or_else(|| {
                ApiError::new(
                    ErrorCode::BackendUnreachable,
                    format!("Signing in with {label} needs a connection to the server."),
                )
            })));
        };

        let nonce = backend
            .social_nonce()
            .await
            .map_err(|e| nonce_error(e, &label))?;
        let id_token = self.provider_flow(&config, &label, opener, nonce).await?;

        // Under the pass lock: no pass sees the pending token while this is in flight.
        let linked = {
            let _one = self.sync.pass.lock().await;
            crate::upgrade::link_social(
                &self.store,
                &self.vault,
                &backend,
                &user_id,
                &remote_token,
                &config.name,
                &id_token.0,
                &id_token.1,
            )
            .await?
        };
        linked.map_err(|e| match e {
            BackendError::Refused(e) if e.code == ErrorCode::ProviderAccountInUse => api(
                ErrorCode::ProviderAccountInUse,
                format!("This {label} account is already linked to another Guestpass account."),
            ),
            BackendError::Refused(e) if e.code == ErrorCode::InvalidIdToken => api(
                ErrorCode::InvalidIdToken,
                format!("The server could not verify your {label} sign-in. Please try again."),
            ),
            BackendError::Refused(e) => Error::Api(e),
            BackendError::Unauthorized => {
                self.wake_sync();
                api(
                    ErrorCode::Unauthorized,
                    "The server session ended; reconnecting. Please try again in a moment.",
                )
            }
            BackendError::Unreachable(_) | BackendError::RateLimited { .. } => {
                needs_connection(&label)
            }
            BackendError::Protocol(why) => api(
                ErrorCode::SocialFailed,
                format!("Sign-in with {label} failed: the server could not complete it ({why})."),
            ),
        })?;
        // An email upgrade the backend refused earlier has nothing left to do.
        sync::dismiss_upgrade(&self.store, &self.vault, &user_id).await?;
        // Refresh the status the UI shows (no refused upgrade, last sync time).
        self.wake_sync();
        self.get_session()
            .await?
            .ok_or(Error::from(ErrorCode::NoSession))
    }

    /// Discovery, the browser, the loopback callback and the code exchange: the ID token
    /// and the nonce it must carry (`nonce`: from [`Backend::social_nonce`], which the
    /// reference server issues and checks).
    ///
    /// [`Backend::social_nonce`]: crate::backend::Backend::social_nonce
    pub(crate) async fn provider_flow(
        &self,
        config: &SocialProvider,
        label: &str,
        opener: &dyn Opener,
        nonce: String,
    ) -> Result<(SecretString, String)> {
        let failed = |why: String| {
            api(
                ErrorCode::SocialFailed,
                format!("Sign-in with {label} failed: {why}."),
            )
        };
        // The token exchange must not follow redirects (RFC 6749 §10.12 and oauth2's advice).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = http
            .get(&discovery_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| {
                failed(format!(
                    "the provider cannot be reached ({})",
                    e.without_url()
                ))
            })?
            .json()
            .await
            .map_err(|e| {
                failed(format!(
                    "the provider's configuration is unreadable ({})",
                    e.without_url()
                ))
            })?;

        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| failed(format!("no loopback port for the answer ({e})")))?;
        let port = listener
            .local_addr()
            .map_err(|e| failed(e.to_string()))?
            .port();
        let redirect = format!("http://127.0.0.1:{port}/callback");

        let client: OidcClient = oauth2::Client::new(ClientId::new(config.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(discovery.authorization_endpoint)
                    .map_err(|e| failed(format!("bad authorization endpoint ({e})")))?,
            )
            .set_token_uri(
                TokenUrl::new(discovery.token_endpoint)
                    .map_err(|e| failed(format!("bad token endpoint ({e})")))?,
            )
            .set_redirect_uri(RedirectUrl::new(redirect).map_err(|e| failed(e.to_string()))?)
            .set_auth_type(AuthType::RequestBody);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(["openid", "email", "profile"].map(|s| Scope::new(s.to_owned())))
            .add_extra_param("nonce", nonce.clone())
            .set_pkce_challenge(challenge)
            .url();

        // Watch for Cancel from before the browser opens, so no press is missed.
        let mut cancelled = self.social.cancel.subscribe();
        opener
            .open(url.as_str())
            .map_err(|e| failed(format!("the browser could not be opened ({e})")))?;
        let outcome = tokio::select! {
            got = await_callback(listener, state.secret().clone()) => got,
            () = tokio::time::sleep(self.social.timeout()) => {
                return Err(api(ErrorCode::SocialTimeout, format!("Sign-in with {label} timed out. Your guest data is unchanged; you can try again.")));
            }
            _ = cancelled.changed() => {
                return Err(api(ErrorCode::SocialCancelled, "Sign-in was cancelled"));
            }
        };
        // The listener is gone by now: a second callback finds the port closed.
        let code = match outcome {
            Callback::Code(code) => code,
            Callback::Denied(error) if error == "access_denied" => {
                return Err(api(ErrorCode::SocialCancelled, "Sign-in was cancelled"))
            }
            Callback::Denied(error) => {
                return Err(failed(format!("the provider answered {error}")))
            }
        };

        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    failed(format!("the provider refused the code ({})", r.error()))
                }
                RequestTokenError::Request(_) => failed("the provider cannot be reached".into()),
                RequestTokenError::Parse(_, _) | RequestTokenError::Other(_) => {
                    failed("the provider's answer is unreadable".into())
                }
            })?;
        let id_token = token
            .extra_fields()
            .id_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("the provider sent no ID token".into()))?;
        Ok((SecretString::from(id_token), nonce))
    }
}

/// What the one accepted callback said.
#[derive(Debug)]
enum Callback {
    Code(String),
    /// `error=…` from the provider (e.g. `access_denied`).
    Denied(String),
}

/// Largest request head the listener reads.
const MAX_HEAD: usize = 8 * 1024;
/// A connection that sends nothing for this long is dropped (browsers preconnect).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections until one of them is the callback (right path and this flow's
/// `state`), answers it and returns what it said; everything else — another path, a
/// callback with a missing or wrong `state` (a stray local request, a CSRF attempt) —
/// gets an error page and the wait goes on, so it cannot end the sign-in. Each
/// connection is served on its own task so an idle preconnect cannot block the real one.
async fn await_callback(listener: TcpListener, state: String) -> Callback {
    let state = Arc::new(state);
    let done = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel::<Callback>(1);
    loop {
        tokio::select! {
            got = rx.recv() => {
                if let Some(outcome) = got {
                    return outcome;
                }
            }
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let (state, done, tx) = (state.clone(), done.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(outcome) = serve(stream, &state, &done).await {
                            let _ = tx.try_send(outcome);
                        }
                    });
                }
            }
        }
    }
}

/// Serves one connection; `Some` when it was the (one) callback.
async fn serve(mut stream: TcpStream, state: &str, done: &AtomicBool) -> Option<Callback> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .ok()??;
    let target = head.lines().next().and_then(|line| {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next()) {
            (Some("GET"), Some(target)) => Some(target.to_owned()),
            _ => None,
        }
    });
    let Some(target) = target else {
        respond(
            &mut stream,
            400,
            "Bad request",
            "This address only takes the sign-in answer.",
        )
        .await;
        return None;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/callback" {
        respond(&mut stream, 404, "Not found", "Nothing here.").await;
        return None;
    }
    let mut got_state = None;
    let mut code = None;
    let mut error = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "state" => got_state = Some(v.into_owned()),
            "code" => code = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            _ => {}
        }
    }
    let state_ok = got_state
        .is_some_and(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), state.as_bytes()).into());
    // `state` first: only the answer to this flow may take its one slot.
    if !state_ok {
        respond(
            &mut stream,
            400,
            "Sign-in refused",
            "This answer did not belong to the sign-in Guestpass started, so it was ignored.",
        )
        .await;
        return None;
    }
    if done.swap(true, Ordering::SeqCst) {
        respond(
            &mut stream,
            400,
            "Already finished",
            "This sign-in has already received its answer. Return to Guestpass.",
        )
        .await;
        return None;
    }
    let outcome = if let Some(error) = error {
        // Only a short, plain code goes into messages.
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        respond(
            &mut stream,
            200,
            "Sign-in cancelled",
            "Sign-in was cancelled. You can close this tab and return to Guestpass.",
        )
        .await;
        Callback::Denied(error)
    } else if let Some(code) = code.filter(|c| !c.is_empty()) {
        respond(
            &mut stream,
            200,
            "Signed in",
            "You can close this tab and return to Guestpass.",
        )
        .await;
        Callback::Code(code)
    } else {
        respond(
            &mut stream,
            400,
            "Sign-in failed",
            "The provider's answer had no code. Return to Guestpass and try again.",
        )
        .await;
        Callback::Denied("no_code".into())
    };
    Some(outcome)
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).ok();
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Guestpass</title></head>\
         <body style=\"font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 32rem;\">\
         <h1>{title}</h1><p>{text}</p></body></html>"
    );
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_read_well_in_messages() {
        assert_eq!(display_name("google"), "Google");
        assert_eq!(display_name("Acme"), "Acme");
        assert_eq!(display_name(""), "");
    }

    /// The Tauri command awaits the flow on a multi-threaded runtime: it must be `Send`.
    #[allow(dead_code)]
    fn the_flow_is_send(g: &Guestpass, opener: &dyn Opener) {
        fn send<T: Send>(_: T) {}
        send(g.upgrade_with_social("google", opener));
    }

    #[tokio::test]
    async fn the_listener_answers_one_callback_and_404s_the_rest() {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let waiting = tokio::spawn(await_callback(listener, "s1".into()));
        let get = |path: &str| {
            let url = format!("http://127.0.0.1:{port}{path}");
            async move {
                let resp = reqwest::get(url).await.unwrap_or_else(|e| panic!("{e}"));
                (
                    resp.status().as_u16(),
                    resp.text().await.unwrap_or_default(),
                )
            }
        };
        assert_eq!(get("/favicon.ico").await.0, 404);
        // Stray local requests (no state, a wrong one) get an error page and leave
        // the slot to the real answer.
        for stray in ["/callback?code=x", "/callback?code=x&state=s2", "/callback"] {
            let (status, page) = get(stray).await;
            assert_eq!(status, 400, "{stray}");
            assert!(page.contains("did not belong to the sign-in"), "{page}");
        }
        let (status, page) = get("/callback?code=c1&state=s1").await;
        assert_eq!(status, 200);
        assert!(page.contains("You can close this tab and return to Guestpass."));
        match waiting.await {
            Ok(Callback::Code(code)) => assert_eq!(code, "c1"),
            other => panic!("{other:?}"),
        }
        // The listener went with the flow: nothing answers any more.
        let again =
            reqwest::get(format!("http://127.0.0.1:{port}/callback?code=c2&state=s1")).await;
        assert!(again.is_err_and(|e| e.is_connect()));
    }
}
