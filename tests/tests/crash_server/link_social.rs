//! `POST /link-social` (issue 14) under SIGKILL: full accounts link a provider
//! identity (real ID tokens from the loopback OpenID peer, `tests/peers/oidc`)
//! while the server dies at a random instant. After each kill a link is all or
//! nothing — the identity row, its `{"change":"link"}` audit and the proven
//! address (the provider vouched for the same email) together — and after a
//! restart a retry links each account exactly once.

use std::time::Duration;

use guestpass_testkit::oidc::OidcPeer;
use guestpass_tests::server_process::{ServerDb, ServerProcess};
use guestpass_tests::{on_pool, post_json};
use rand::Rng;
use serde_json::json;

use super::{check_server_db, plan, server_nonce, tell};

const CLIENT_ID: &str = "guestpass-crash";
const ACCOUNTS_PER_ROUND: usize = 3;

/// A real ID token for `email` from the peer (authorization code, auto-approved).
async fn id_token(issuer: &str, email: &str, nonce: &str) -> String {
    guestpass_tests::browser::mint_id_token(issuer, CLIENT_ID, nonce, &[("login_hint", email)])
        .await
}

/// `(identities, link audits, email verified)` of one user.
async fn link_state(db: &ServerDb, user_id: &str) -> (i64, i64, bool) {
    on_pool!(db, |p| {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM accounts a WHERE a.user_id = u.id), \
             (SELECT COUNT(*) FROM audit_log l WHERE l.user_id = u.id AND l.event = 'user.updated' \
              AND l.detail LIKE '%\"change\":\"link\"%'), u.email_verified \
             FROM users u WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_one(p)
        .await
        .unwrap()
    })
}

pub(super) async fn killed_mid_link_social(db: ServerDb) {
    let kind = if db.is_sqlite() { "sqlite" } else { "postgres" };
    let (kills, mut rng) = plan(&format!("server killed mid-link-social ({kind})"));
    let idp = OidcPeer::start();
    let mut server = ServerProcess::new(
        &db.url,
        &format!(
            "cleanupIntervalSecs = 0\n\n[socialProviders.google]\nclientId = \"{CLIENT_ID}\"\nissuer = \"{}\"\n",
            idp.issuer
        ),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (mut cut, mut landed_before_kill) = (0, 0);
    for round in 0..kills {
        server.start().await;
        let base = format!("{}/api/auth", server.url());
        let mut accounts = Vec::new();
        for i in 0..ACCOUNTS_PER_ROUND {
            let email = format!("r{round}-a{i}@link.example.com");
            let (status, guest) =
                post_json(&http, &format!("{base}/sign-in/anonymous"), None, json!({})).await;
            assert_eq!(status, 200, "{guest}");
            let token = guest["token"].as_str().unwrap().to_owned();
            let (status, up) = post_json(
                &http,
                &format!("{base}/anonymous/upgrade"),
                Some(&token),
                json!({"email": email, "password": "crash-harness-pw"}),
            )
            .await;
            assert_eq!(status, 200, "{up}");
            let id = up["user"]["id"].as_str().unwrap().to_owned();
            // The upgrade rotated the guest's token away (issue 14): the account
            // signs in for one of its own.
            let (status, signed_in) = post_json(
                &http,
                &format!("{base}/sign-in/email"),
                None,
                json!({"email": email, "password": "crash-harness-pw"}),
            )
            .await;
            assert_eq!(status, 200, "{signed_in}");
            let token = signed_in["token"].as_str().unwrap().to_owned();
            let nonce = server_nonce(&http, &base).await;
            let id_token = id_token(&idp.issuer, &email, &nonce).await;
            accounts.push((id, token, email, nonce, id_token));
        }
        let mut work = Vec::new();
        for (_, token, _, nonce, id_token) in &accounts {
            let (http, url) = (http.clone(), format!("{base}/link-social"));
            let body = json!({"provider": "google", "idToken": id_token, "nonce": nonce});
            let token = token.clone();
            work.push(tokio::spawn(async move {
                let mut req = http.post(url).json(&body).bearer_auth(token);
                req = req.timeout(Duration::from_secs(10));
                req.send().await.map(|r| r.status().as_u16())
            }));
        }
        tokio::time::sleep(Duration::from_micros(rng.gen_range(0..60_000))).await;
        cut += usize::from(work.iter().any(|t| !t.is_finished()));
        assert!(
            server.kill(),
            "the server died on its own\n{}",
            server.last_log()
        );
        for task in work {
            if let Ok(Ok(200)) = task.await {
                landed_before_kill += 1;
            }
        }
        check_server_db(&db, &format!("link round {round}, after the kill")).await;
        for (id, ..) in &accounts {
            let (identities, audits, verified) = link_state(&db, id).await;
            assert!(
                (identities, audits, verified) == (0, 0, false)
                    || (identities, audits, verified) == (1, 1, true),
                "round {round}: half a link: {identities} identities, {audits} audits, verified {verified}"
            );
        }

        // Back up: every retry links (or finds its link), exactly once.
        server.start().await;
        for (id, token, email, _, _) in &accounts {
            let retry_nonce = server_nonce(&http, &base).await;
            let id_token = id_token(&idp.issuer, email, &retry_nonce).await;
            let (status, linked) = post_json(
                &http,
                &format!("{base}/link-social"),
                Some(token),
                json!({"provider": "google", "idToken": id_token, "nonce": retry_nonce}),
            )
            .await;
            assert_eq!(status, 200, "round {round}: {linked}");
            assert_eq!(linked["user"]["id"], json!(id));
            assert_eq!(link_state(&db, id).await, (1, 1, true), "round {round}");
        }
        assert!(server.kill());
        check_server_db(&db, &format!("link round {round}, converged")).await;
    }
    tell(&format!(
        "server killed mid-link-social ({kind}): {kills} kills, {cut} with requests in flight, \
         {landed_before_kill} links answered before a kill; every account linked exactly once"
    ));
    db.drop_db().await;
}
