//! The native social upgrade (DESIGN.md §5) for real: a real OpenID Connect provider
//! (npm `oauth2-mock-server`, `tests/peers/oidc`), the reference server configured with
//! it, and the app core driving authorization code + PKCE through a loopback callback.
//! The test's [`Opener`] plays the system browser: it follows the URL the app hands it,
//! step by step through the provider's redirects, to the app's loopback callback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use guestpass_core::{Dialect, Guestpass, SocialProvider};
use guestpass_proto::{ErrorCode, SessionResponse};
use guestpass_testkit::oidc::OidcPeer;
use guestpass_tests::browser::{Browser, Mode};
use guestpass_tests::{count, Device, RefServer};

const PROVIDER: &str = "acme";
const CLIENT_ID: &str = "guestpass-desktop";

/// The reference server with the provider configured, and a registered guest with notes.
struct World {
    provider: OidcPeer,
    server: RefServer,
}

impl World {
    async fn start() -> Self {
        let provider = OidcPeer::start();
        let mut server = RefServer::reserve().await;
        server
            .up_with_social(&[(PROVIDER, CLIENT_ID, &provider.issuer)])
            .await;
        Self { provider, server }
    }

    fn device(&self) -> Device {
        device_for(&self.server.url(), &self.provider.issuer)
    }
}

fn device_for(server_url: &str, issuer: &str) -> Device {
    let mut device = Device::new(server_url, Dialect::Guestpass);
    device.social = vec![SocialProvider {
        name: PROVIDER.into(),
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.into(),
    }];
    device
}

async fn guest_with_notes(app: &Guestpass) -> (SessionResponse, Vec<String>) {
    let guest = app.ensure_session().await.unwrap();
    app.create_note("one").await.unwrap();
    app.create_note("two").await.unwrap();
    let notes = note_ids(app).await;
    (guest, notes)
}

async fn note_ids(app: &Guestpass) -> Vec<String> {
    app.list_notes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect()
}

/// The guest is exactly as it was: anonymous, same session, same notes, nothing queued,
/// no secret left behind, no upgrade audited; the server agrees where it knows the guest.
async fn assert_untouched(
    app: &Guestpass,
    device: &Device,
    server: Option<&RefServer>,
    guest: &SessionResponse,
    notes: &[String],
) {
    let now = app.get_session().await.unwrap().expect("still signed in");
    assert_eq!(now.user.id, guest.user.id);
    assert_eq!(now.session.id, guest.session.id);
    assert!(now.user.is_anonymous, "{now:?}");
    assert_eq!(now.user.email, None);
    assert_eq!(note_ids(app).await, notes);
    assert_eq!(count(app, "SELECT COUNT(*) FROM outbox").await, 0);
    assert_eq!(
        count(
            app,
            "SELECT COUNT(*) FROM audit_log WHERE event = 'user.updated'"
        )
        .await,
        0
    );
    assert!(device.keyring(&guest.user.id, "pending-password").is_none());
    if let Some(server) = server {
        let remote = server.admin_user(&guest.user.id).await.expect("registered");
        assert_eq!(remote["isAnonymous"], true, "{remote}");
    }
}

#[tokio::test]
async fn the_browser_round_trip_upgrades_the_guest_in_place() {
    let world = World::start().await;
    let device = world.device();
    let app = device.launch().await;
    assert_eq!(app.social_providers(), [PROVIDER]);
    let (guest, notes) = guest_with_notes(&app).await;

    let (browser, mut hops) = Browser::follow(&[("login_hint", "Sam@Example.com")]);
    let s = app.upgrade_with_social(PROVIDER, &browser).await.unwrap();
    assert_eq!(s.user.id, guest.user.id, "same user id");
    assert_eq!(s.session.id, guest.session.id, "same local session");
    assert!(!s.user.is_anonymous);
    assert_eq!(s.user.email.as_deref(), Some("sam@example.com"));
    assert!(s.user.email_verified);
    assert_eq!(note_ids(&app).await, notes, "notes intact");
    assert_eq!(browser.opens.load(Ordering::SeqCst), 1);

    // The browser went through the provider to the loopback callback and was told to
    // go back to the app.
    let hops = hops.recv().await.unwrap();
    let authorize = url::Url::parse(&hops[0].url).unwrap();
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert!(hops[0].url.starts_with(&world.provider.issuer), "{hops:?}");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!q["code_challenge"].is_empty() && !q["state"].is_empty() && !q["nonce"].is_empty());
    assert_eq!(q["scope"], "openid email profile");
    assert!(
        q["redirect_uri"].starts_with("http://127.0.0.1:")
            && q["redirect_uri"].ends_with("/callback")
    );
    let last = hops.last().unwrap();
    assert!(last.url.starts_with(&q["redirect_uri"]), "{hops:?}");
    assert_eq!(last.status, 200);
    assert!(last
        .body
        .contains("You can close this tab and return to Guestpass."));

    // Exactly one callback: the listener is gone, a replay finds nothing to talk to.
    let replay = reqwest::get(&last.url).await;
    assert!(
        replay.as_ref().is_err_and(reqwest::Error::is_connect),
        "{replay:?}"
    );

    // The server agrees, and the upgrade is audited on the device.
    let remote = world.server.admin_user(&guest.user.id).await.unwrap();
    assert_eq!(remote["isAnonymous"], false, "{remote}");
    assert_eq!(remote["email"], "sam@example.com");
    assert_eq!(remote["emailVerified"], true);
    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE event = 'user.updated' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(app.store().pool())
    .await
    .unwrap();
    assert!(detail.contains("social:acme"), "{detail}");
    assert!(device.keyring(&guest.user.id, "pending-password").is_none());

    // Upgrading again is refused before any browser opens.
    let again = app
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::UserNotAnonymous);
    assert_eq!(browser.opens.load(Ordering::SeqCst), 1, "no second browser");
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn cancel_in_the_app_ends_the_flow_and_leaves_the_guest_untouched() {
    let world = World::start().await;
    let device = world.device();
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;

    let (browser, _hops) = Browser::new(Mode::Idle);
    let (result, ()) = tokio::join!(app.upgrade_with_social(PROVIDER, &browser), async {
        browser.opened.notified().await;
        app.cancel_social();
    });
    let err = result.unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            ErrorCode::SocialCancelled,
            "Sign-in was cancelled".to_owned()
        )
    );
    assert_untouched(&app, &device, Some(&world.server), &guest, &notes).await;
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn an_unanswered_browser_times_out_and_leaves_the_guest_untouched() {
    let world = World::start().await;
    let device = world.device();
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;
    app.set_social_timeout(Duration::from_millis(500));

    let (browser, _hops) = Browser::new(Mode::Idle);
    let err = app
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::SocialTimeout, "{err}");
    assert_eq!(browser.opens.load(Ordering::SeqCst), 1);
    assert_untouched(&app, &device, Some(&world.server), &guest, &notes).await;
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn the_provider_saying_access_denied_cancels_and_leaves_the_guest_untouched() {
    let world = World::start().await;
    let device = world.device();
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;

    let (browser, mut hops) = Browser::follow(&[("peer_error", "access_denied")]);
    let err = app
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::SocialCancelled, "{err}");
    let hops = hops.recv().await.unwrap();
    let last = hops.last().unwrap();
    assert!(last.url.contains("error=access_denied"), "{hops:?}");
    assert!(last.body.contains("Sign-in was cancelled"), "{hops:?}");
    assert_untouched(&app, &device, Some(&world.server), &guest, &notes).await;
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn stray_callbacks_get_an_error_page_and_the_real_one_still_signs_in() {
    let world = World::start().await;
    let device = world.device();
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;

    // Before the real answer, two local requests to the loopback port: a forged
    // `state`, and none. Each gets the refusal page; the flow keeps waiting.
    let (browser, mut hops) = Browser::new(Mode::StrayFirst);
    let s = app.upgrade_with_social(PROVIDER, &browser).await.unwrap();
    let hops = hops.recv().await.unwrap();
    for stray in &hops[..2] {
        assert_eq!(stray.status, 400, "{hops:?}");
        assert!(
            stray.body.contains("did not belong to the sign-in"),
            "{hops:?}"
        );
    }
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "{hops:?}");
    assert!(last.body.contains("You can close this tab"), "{hops:?}");
    assert_eq!(s.user.id, guest.user.id);
    assert!(!s.user.is_anonymous);
    assert_eq!(note_ids(&app).await, notes);
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn a_provider_account_linked_to_someone_else_is_refused_in_plain_words() {
    let world = World::start().await;
    // Someone else linked this provider account first.
    let other_device = world.device();
    let other = other_device.launch().await;
    let first = other.ensure_session().await.unwrap();
    let (browser, _hops) = Browser::follow(&[
        ("login_hint", "first@example.com"),
        ("peer_sub", "shared-subject"),
    ]);
    other.upgrade_with_social(PROVIDER, &browser).await.unwrap();

    let device = world.device();
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;
    let (browser, _hops) = Browser::follow(&[
        ("login_hint", "second@example.com"),
        ("peer_sub", "shared-subject"),
    ]);
    let err = app
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            ErrorCode::ProviderAccountInUse,
            "This Acme account is already linked to another Guestpass account.".to_owned()
        )
    );
    assert_untouched(&app, &device, Some(&world.server), &guest, &notes).await;
    device.forget_keyring(&guest.user.id);
    other_device.forget_keyring(&first.user.id);
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused_by_the_server() {
    let world = World::start().await;
    let device = world.device();
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;

    let (browser, _hops) = Browser::follow(&[("peer_aud", "some-other-client")]);
    let err = app
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidIdToken, "{err}");
    assert_untouched(&app, &device, Some(&world.server), &guest, &notes).await;
    device.forget_keyring(&guest.user.id);
}

#[tokio::test]
async fn without_the_server_the_browser_is_never_opened() {
    let provider = OidcPeer::start();
    let server = RefServer::reserve().await; // nothing listens there
    let device = device_for(&server.url(), &provider.issuer);
    let app = device.launch().await;
    let (guest, notes) = guest_with_notes(&app).await;

    let (browser, _hops) = Browser::follow(&[]);
    let err = app
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.to_string()),
        (
            ErrorCode::BackendUnreachable,
            "Signing in with Acme needs a connection to the server.".to_owned()
        )
    );
    assert_eq!(browser.opens.load(Ordering::SeqCst), 0, "no browser opened");
    assert_untouched(&app, &device, None, &guest, &notes).await;
    device.forget_keyring(&guest.user.id);
}
