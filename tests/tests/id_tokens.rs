//! Attacks on the server's ID-token check (issue 14 item 5), with the real OpenID
//! provider of `tests/peers/oidc` minting the tokens (authorization code + PKCE over
//! HTTP, the test playing the browser) and the reference server on SQLite with an
//! injected clock: replays, nonces the server never issued or that expired, several
//! audiences without `azp`, a header algorithm the key was not published for, a
//! discovery document naming another issuer, the provider going down after the keys
//! were fetched, and one key fetch for many concurrent sign-ins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use guestpass_server::{launch_with_clock, ManualClock, ServerHandle};
use guestpass_testkit::oidc::OidcPeer;
use guestpass_tests::RefServer;
use serde_json::{json, Value};

const CLIENT_ID: &str = "guestpass-desktop";

struct World {
    idp: OidcPeer,
    ref_server: RefServer,
    _handle: ServerHandle,
    clock: ManualClock,
    http: reqwest::Client,
}

impl World {
    async fn start() -> Self {
        let idp = OidcPeer::start();
        let ref_server = RefServer::reserve().await;
        let mut config = ref_server.config();
        config.social_providers.insert(
            "acme".into(),
            guestpass_server::config::SocialProvider {
                client_id: CLIENT_ID.into(),
                issuer: idp.issuer.clone(),
            },
        );
        // The provider stamps tokens with the real time: the server's clock starts there.
        let clock = ManualClock::new(chrono::Utc::now());
        let listener = tokio::net::TcpListener::bind(ref_server.addr)
            .await
            .unwrap();
        let handle = launch_with_clock(config, listener, Arc::new(clock.clone()))
            .await
            .unwrap();
        Self {
            idp,
            ref_server,
            _handle: handle,
            clock,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn api(&self, route: &str) -> String {
        format!("{}/api/auth{route}", self.ref_server.url())
    }

    async fn nonce(&self) -> String {
        let got: Value = self
            .http
            .post(self.api("/social/nonce"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(got["expiresAt"].is_string(), "{got}");
        got["nonce"].as_str().unwrap().to_owned()
    }

    async fn mint(&self, nonce: &str, extra: &[(&str, &str)]) -> String {
        guestpass_tests::browser::mint_id_token(&self.idp.issuer, CLIENT_ID, nonce, extra).await
    }

    async fn sign_in(&self, id_token: &str, nonce: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.api("/sign-in/social"))
            .json(&json!({"provider": "acme", "idToken": id_token, "nonce": nonce}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/peer/stats", self.idp.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn control(&self, what: &str, value: &str) {
        let url = format!("{}/peer/{what}", self.idp.issuer);
        let resp = self
            .http
            .post(url)
            .query(&[("v", value)])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
}

fn assert_refused(got: &(u16, Value)) {
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["code"], "INVALID_ID_TOKEN", "{}", got.1);
}

#[tokio::test]
async fn a_replayed_id_token_is_refused() {
    let w = World::start().await;
    let nonce = w.nonce().await;
    let token = w.mint(&nonce, &[("login_hint", "once@example.com")]).await;
    let first = w.sign_in(&token, &nonce).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1["user"]["email"], "once@example.com");
    // The same token again (an attacker who copied it, or a retried request).
    assert_refused(&w.sign_in(&token, &nonce).await);
    // A second instance on the same database refuses it as well.
    let mut config = w.ref_server.config();
    config.social_providers.insert(
        "acme".into(),
        guestpass_server::config::SocialProvider {
            client_id: CLIENT_ID.into(),
            issuer: w.idp.issuer.clone(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = launch_with_clock(config, listener, Arc::new(w.clock.clone()))
        .await
        .unwrap();
    let resp = w
        .http
        .post(format!("{}/api/auth/sign-in/social", other.base_url()))
        .json(&json!({"provider": "acme", "idToken": token, "nonce": nonce}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A fresh sign-in of the same person (new nonce, new token) still works, on
    // the other instance with this one's nonce too.
    let nonce = w.nonce().await;
    let again = w.mint(&nonce, &[("login_hint", "once@example.com")]).await;
    let resp = w
        .http
        .post(format!("{}/api/auth/sign-in/social", other.base_url()))
        .json(&json!({"provider": "acme", "idToken": again, "nonce": nonce}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    other.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_nonce_the_server_did_not_issue_or_that_expired_is_refused() {
    let w = World::start().await;
    // The client makes its own nonce (as the app did before issue 14).
    let token = w.mint("client-made-nonce", &[]).await;
    assert_refused(&w.sign_in(&token, "client-made-nonce").await);
    // No nonce at all.
    let resp = w
        .http
        .post(w.api("/sign-in/social"))
        .json(&json!({"provider": "acme", "idToken": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A server nonce, but the token carries another one.
    let nonce = w.nonce().await;
    let other = w.nonce().await;
    let token = w.mint(&other, &[]).await;
    assert_refused(&w.sign_in(&token, &nonce).await);
    // A server nonce that outlived its ten minutes.
    let nonce = w.nonce().await;
    let token = w.mint(&nonce, &[]).await;
    w.clock.advance(chrono::Duration::minutes(11));
    assert_refused(&w.sign_in(&token, &nonce).await);
}

#[tokio::test]
async fn several_audiences_need_our_azp_and_the_header_alg_must_be_the_keys() {
    let w = World::start().await;
    let aud = format!("{CLIENT_ID},another-client");
    for extra in [
        vec![("peer_aud", aud.as_str())],
        vec![("peer_aud", aud.as_str()), ("peer_azp", "another-client")],
        // Single audience but issued to someone else.
        vec![("peer_azp", "another-client")],
        // Signed with the published RSA key under RS384 while the JWK says RS256.
        vec![("peer_alg", "RS384")],
        vec![("peer_alg", "RS512")],
    ] {
        let nonce = w.nonce().await;
        let token = w.mint(&nonce, &extra).await;
        let got = w.sign_in(&token, &nonce).await;
        assert_refused(&got);
    }
    // With our azp the several audiences are fine.
    let nonce = w.nonce().await;
    let token = w
        .mint(
            &nonce,
            &[("peer_aud", aud.as_str()), ("peer_azp", CLIENT_ID)],
        )
        .await;
    let got = w.sign_in(&token, &nonce).await;
    assert_eq!(got.0, 200, "{}", got.1);
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let w = World::start().await;
    w.control("announce-issuer", "https://accounts.evil.example")
        .await;
    let nonce = w.nonce().await;
    let token = w.mint(&nonce, &[]).await;
    assert_refused(&w.sign_in(&token, &nonce).await);
    assert_eq!(w.stats().await["jwks"], 0, "its keys were never fetched");
}

#[tokio::test]
async fn keys_fetched_before_keep_working_when_the_provider_is_down() {
    let mut w = World::start().await;
    let nonce = w.nonce().await;
    let token = w.mint(&nonce, &[("login_hint", "first@example.com")]).await;
    assert_eq!(w.sign_in(&token, &nonce).await.0, 200);
    // Two hours on (the keys are stale), a token minted while the provider was up,
    // then the provider goes away.
    w.clock.advance(chrono::Duration::hours(2));
    let nonce = w.nonce().await;
    let token = w
        .mint(
            &nonce,
            &[("login_hint", "second@example.com"), ("peer_ttl", "14400")],
        )
        .await;
    let nonce2 = w.nonce().await;
    let token2 = w
        .mint(
            &nonce2,
            &[("login_hint", "third@example.com"), ("peer_ttl", "14400")],
        )
        .await;
    w.idp.kill();
    let got = w.sign_in(&token, &nonce).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["user"]["email"], "second@example.com");
    // The next one does not wait for another failing fetch either.
    let started = std::time::Instant::now();
    let got = w.sign_in(&token2, &nonce2).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[tokio::test]
async fn concurrent_sign_ins_on_a_cold_cache_fetch_the_keys_once() {
    let w = World::start().await;
    // Keys answered late, so concurrent fetches would overlap if they were made.
    w.control("jwks-delay-ms", "300").await;
    let mut signed = Vec::new();
    for i in 0..8 {
        let nonce = w.nonce().await;
        let email = format!("c{i}@example.com");
        let token = w.mint(&nonce, &[("login_hint", email.as_str())]).await;
        signed.push((token, nonce));
    }
    let before = w.stats().await;
    assert_eq!(before["jwks"], 0);
    let results = futures_join(
        signed
            .iter()
            .map(|(t, n)| w.sign_in(t, n))
            .collect::<Vec<_>>(),
    )
    .await;
    for got in &results {
        assert_eq!(got.0, 200, "{}", got.1);
    }
    let after = w.stats().await;
    assert_eq!(after["jwks"], 1, "{after}");
    assert_eq!(
        after["discovery"],
        before["discovery"].as_u64().unwrap() + 1,
        "{after}"
    );
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    // All polled together on this task.
    let mut out = Vec::new();
    let mut pending: Vec<_> = set.into_iter().map(Some).collect();
    let mut done: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        done[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for v in done {
        out.push(v.unwrap());
    }
    out
}
