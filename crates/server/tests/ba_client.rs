//! Better Auth's own client (npm `better-auth/client` with `anonymousClient()`,
//! a bearer token in memory) against the reference server, unchanged: a web app
//! on that client must work here (issue 11). `tests/peers/ba-client/run.mjs`
//! drives the client and prints what each call answered; this test starts the
//! server on port 0 and decides what is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

async fn run_client(base: &str) -> Value {
    let dir = guestpass_testkit::node_peer::peer_dir("ba-client");
    assert!(
        dir.join("node_modules/better-auth").is_dir(),
        "the Better Auth client is not installed: run `npm ci` in {} (scripts/setup.sh test does it)",
        dir.display()
    );
    let base = base.to_string();
    // Off the runtime's threads: the server answers the client meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg("run.mjs")
            .arg(base)
            .current_dir(&dir)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run.mjs failed: {stderr}\n{stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn better_auths_client_guest_sign_up_sign_out_sign_in() {
    let s = TestServer::start(&Backend::Sqlite).await;
    let out = run_client(&s.base).await;

    let guest = &out["anonymous"];
    assert_eq!(guest["error"], Value::Null, "{out}");
    assert_eq!(guest["hasToken"], true, "{out}");
    assert_eq!(guest["user"]["isAnonymous"], true, "{out}");
    let id = guest["user"]["id"].as_str().unwrap();
    assert!(id.starts_with("usr_"), "{out}");
    assert_eq!(out["guestSession"]["user"]["id"], id, "{out}");
    assert_eq!(out["guestSession"]["user"]["isAnonymous"], true, "{out}");

    // Sign-up while a guest is the upgrade in place: same id, and a new token (the
    // guest's dies with the upgrade, issue 14), which the client takes from the
    // answer and goes on with.
    assert_eq!(out["signUp"]["error"], Value::Null, "{out}");
    assert_eq!(out["signUp"]["user"]["id"], id, "{out}");
    assert_eq!(out["signUp"]["user"]["isAnonymous"], false, "{out}");
    assert_eq!(out["signUp"]["sameToken"], false, "{out}");
    assert_eq!(out["accountSession"]["user"]["id"], id, "{out}");
    assert_eq!(out["accountSession"]["user"]["isAnonymous"], false, "{out}");

    assert_eq!(
        out["signOut"],
        json!({ "success": true, "error": null }),
        "{out}"
    );
    assert_eq!(out["signedOutSession"]["user"], Value::Null, "{out}");

    assert_eq!(out["signIn"]["error"], Value::Null, "{out}");
    assert_eq!(out["signIn"]["user"]["id"], id, "{out}");
    assert_eq!(out["signIn"]["hasToken"], true, "{out}");
    assert_eq!(out["signedInSession"]["user"]["id"], id, "{out}");

    assert_eq!(out["wrongPassword"]["user"], Value::Null, "{out}");
    assert_eq!(
        out["wrongPassword"]["error"],
        json!({ "status": 401, "code": "INVALID_EMAIL_OR_PASSWORD" }),
        "{out}"
    );

    // One account, never a second user made by the sign-up.
    let (_, users) = s.admin_get("/admin/list-users?limit=10").await;
    assert_eq!(
        users["data"].as_array().unwrap().len(),
        0,
        "deleted at the end: {users}"
    );
    let created = s.audit_events().await;
    assert_eq!(
        created
            .iter()
            .filter(|e| e["event"] == "user.created")
            .count(),
        1,
        "{created:?}"
    );

    // Account care (issue 13) through the same client, unchanged.
    let ok = json!({ "success": true, "error": null });
    assert_eq!(out["sendVerification"], ok, "{out}");
    assert_eq!(out["requestReset"], ok, "{out}");
    assert_eq!(
        out["wrongChange"]["error"],
        json!({ "status": 401, "code": "INVALID_PASSWORD" }),
        "{out}"
    );
    let changed = &out["changePassword"];
    assert_eq!(changed["error"], Value::Null, "{out}");
    assert_eq!(changed["user"]["id"], id, "{out}");
    assert_eq!(
        (&changed["tokenNull"], &changed["sameToken"]),
        (&json!(true), &json!(true)),
        "{out}"
    );
    assert_eq!(out["changedSession"]["user"]["id"], id, "{out}");
    assert_eq!(
        out["wrongDelete"]["error"],
        json!({ "status": 401, "code": "INVALID_PASSWORD" }),
        "{out}"
    );
    assert_eq!(out["deleteUser"], ok, "{out}");
    assert_eq!(out["deletedSession"]["user"], Value::Null, "{out}");
    s.stop().await;
}

/// The same script against a stock Better Auth server: every step succeeds
/// there too and answers the same fields, except the one place the reference
/// server means to differ — Better Auth's sign-up as a guest makes a new user
/// with a new token (its link), ours upgrades the guest in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_journey_on_a_stock_better_auth_differs_only_in_place() {
    let peer = tokio::task::spawn_blocking(guestpass_testkit::better_auth::BetterAuthPeer::start)
        .await
        .unwrap();
    let theirs = run_client(&peer.base_url).await;
    let s = TestServer::start(&Backend::Sqlite).await;
    let ours = run_client(&s.base).await;
    s.stop().await;

    let id = theirs["anonymous"]["user"]["id"].clone();
    assert_eq!(theirs["guestSession"]["user"]["id"], id, "{theirs}");
    assert_ne!(theirs["signUp"]["user"]["id"], id, "{theirs}");
    assert_eq!(theirs["signUp"]["sameToken"], false, "{theirs}");
    // Both hand the client a new token; only ours keeps the guest's id.
    assert_eq!(ours["signUp"]["sameToken"], false, "{ours}");
    assert_eq!(
        ours["signUp"]["user"]["id"], ours["anonymous"]["user"]["id"],
        "{ours}"
    );
    let account = &theirs["signUp"]["user"]["id"];
    assert_eq!(theirs["signIn"]["user"]["id"], *account, "{theirs}");
    for step in [
        "anonymous",
        "guestSession",
        "signUp",
        "accountSession",
        "signOut",
        "signedOutSession",
        "signIn",
        "signedInSession",
        "wrongPassword",
    ] {
        let (a, b) = (&theirs[step], &ours[step]);
        assert_eq!(a["error"], b["error"], "{step}: {theirs}\n{ours}");
        assert_eq!(a["user"].is_null(), b["user"].is_null(), "{step}");
        if !a["user"].is_null() {
            assert_eq!(a["user"]["isAnonymous"], b["user"]["isAnonymous"], "{step}");
        }
    }
    drop(peer);
}
