//! A pretend system browser for the social tests: the [`Opener`] the app hands the
//! provider's URL to, following it step by step through the provider's redirects to the
//! app's loopback callback (or doing something else a person or an attacker might).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use guestpass_core::Opener;
use tokio::sync::{mpsc, Notify};

/// What the pretend browser does with the URL the app opens.
#[derive(Clone)]
pub enum Mode {
    /// Follows it through the provider, adding these query parameters to the authorize
    /// URL (the peer reads `login_hint`, `peer_sub`, `peer_aud`, `peer_error`).
    Follow(Vec<(&'static str, String)>),
    /// Opens nothing (the person walks away or presses Cancel in the app).
    Idle,
    /// First sends stray requests to the app's callback — a forged `state` (a CSRF
    /// attempt), none at all — then follows the URL through the provider like `Follow`.
    StrayFirst,
}

/// One step the browser took: the URL it asked for, the status and the body it got.
#[derive(Debug, Clone)]
pub struct Hop {
    pub url: String,
    pub status: u16,
    pub body: String,
}

pub struct Browser {
    pub mode: Mode,
    pub opened: Arc<Notify>,
    pub opens: AtomicUsize,
    pub hops: mpsc::UnboundedSender<Vec<Hop>>,
}

impl Browser {
    pub fn new(mode: Mode) -> (Self, mpsc::UnboundedReceiver<Vec<Hop>>) {
        let (hops, rx) = mpsc::unbounded_channel();
        (
            Self {
                mode,
                opened: Arc::new(Notify::new()),
                opens: AtomicUsize::new(0),
                hops,
            },
            rx,
        )
    }

    pub fn follow(extra: &[(&'static str, &str)]) -> (Self, mpsc::UnboundedReceiver<Vec<Hop>>) {
        Self::new(Mode::Follow(
            extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ))
    }
}

impl Opener for Browser {
    fn open(&self, url: &str) -> Result<(), String> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        self.opened.notify_one();
        let mut url = url::Url::parse(url).map_err(|e| e.to_string())?;
        let tx = self.hops.clone();
        match self.mode.clone() {
            Mode::Idle => {}
            Mode::Follow(extra) => {
                for (k, v) in extra {
                    url.query_pairs_mut().append_pair(k, &v);
                }
                tokio::spawn(async move {
                    let _ = tx.send(walk(url.to_string()).await);
                });
            }
            Mode::StrayFirst => {
                let redirect = url
                    .query_pairs()
                    .find(|(k, _)| k == "redirect_uri")
                    .map(|(_, v)| v.into_owned())
                    .expect("redirect_uri in the authorize URL");
                tokio::spawn(async move {
                    let mut hops =
                        walk(format!("{redirect}?code=stolen-code&state=forged-state")).await;
                    hops.extend(walk(format!("{redirect}?code=stolen-code")).await);
                    hops.extend(walk(url.to_string()).await);
                    let _ = tx.send(hops);
                });
            }
        }
        Ok(())
    }
}

/// A browser without auto-redirects: GET, and follow `Location` by hand.
pub async fn walk(mut url: String) -> Vec<Hop> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut hops = Vec::new();
    for _ in 0..10 {
        let resp = http.get(&url).send().await.expect("browser request");
        let status = resp.status().as_u16();
        let next = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let body = resp.text().await.unwrap_or_default();
        hops.push(Hop {
            url: url.clone(),
            status,
            body,
        });
        match next {
            Some(location) if (300..400).contains(&status) => {
                url = url::Url::parse(&url)
                    .unwrap()
                    .join(&location)
                    .unwrap()
                    .to_string();
            }
            _ => break,
        }
    }
    hops
}

/// What the app gets after the browser, without the app: the provider at `issuer`
/// (the OIDC peer) is walked through authorize (code + PKCE S256, `nonce`, the peer's
/// switches in `extra`) and the code exchanged for its ID token.
pub async fn mint_id_token(
    issuer: &str,
    client_id: &str,
    nonce: &str,
    extra: &[(&str, &str)],
) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let verifier = "a-pkce-verifier-of-enough-length-0123456789abcdef";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1:9/callback";
    let mut authorize = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid email profile")
        .append_pair("state", "s")
        .append_pair("nonce", nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    let resp = http.get(authorize).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let token: serde_json::Value = http
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["id_token"].as_str().unwrap().to_owned()
}
