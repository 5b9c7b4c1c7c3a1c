//! Signing in with a provider (DESIGN.md §2a, §5) through the real OIDC provider on
//! loopback: the identity another device linked signs in here and the guest's notes
//! are merged; an identity nobody has makes a new full account; an upgrade with an
//! identity already linked is told PROVIDER_ACCOUNT_IN_USE and signing in with it works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guestpass_core::{Dialect, SignInChoice, SignInOutcome, SocialProvider};
use guestpass_proto::ErrorCode;
use guestpass_testkit::oidc::OidcPeer;
use guestpass_tests::browser::Browser;
use guestpass_tests::{Device, RefServer};

const PROVIDER: &str = "acme";
const CLIENT_ID: &str = "guestpass-desktop";

async fn world() -> (OidcPeer, RefServer) {
    let provider = OidcPeer::start();
    let mut server = RefServer::reserve().await;
    server
        .up_with_social(&[(PROVIDER, CLIENT_ID, &provider.issuer)])
        .await;
    (provider, server)
}

fn device(server: &RefServer, provider: &OidcPeer) -> Device {
    let mut d = Device::new(&server.url(), Dialect::Guestpass);
    d.social = vec![SocialProvider {
        name: PROVIDER.into(),
        issuer: provider.issuer.clone(),
        client_id: CLIENT_ID.into(),
    }];
    d
}

#[tokio::test]
async fn a_linked_identity_signs_in_on_another_device_and_the_guest_merges() {
    let (provider, server) = world().await;
    // Device A: a guest upgraded with the provider.
    let a = device(&server, &provider);
    let app_a = a.launch().await;
    app_a.ensure_session().await.unwrap();
    app_a.sync_now().await;
    let (browser, _) = Browser::follow(&[("login_hint", "pat@example.com")]);
    let account = app_a.upgrade_with_social(PROVIDER, &browser).await.unwrap();

    // Device B: a guest with a note. Upgrading with the same identity is refused as
    // the identity's conflict, not the email's.
    let b = device(&server, &provider);
    let app_b = b.launch().await;
    let guest = app_b.ensure_session().await.unwrap().user.id;
    let note = app_b.create_note("written as a guest on B").await.unwrap();
    app_b.sync_now().await;
    let (browser, _) = Browser::follow(&[("login_hint", "pat@example.com")]);
    let e = app_b
        .upgrade_with_social(PROVIDER, &browser)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ProviderAccountInUse, "{e}");

    // "Sign in with Acme instead".
    let (browser, _) = Browser::follow(&[("login_hint", "pat@example.com")]);
    let outcome = app_b.sign_in_social(PROVIDER, &browser).await.unwrap();
    let SignInOutcome::ChoiceNeeded {
        account: who,
        guest: held,
    } = outcome
    else {
        panic!("the guest with a note must be asked: {outcome:?}");
    };
    assert_eq!(who.id, account.user.id);
    assert_eq!(held.notes, 1);
    let s = app_b.complete_sign_in(SignInChoice::Merge).await.unwrap();
    assert_eq!(s.user.id, account.user.id, "the account of device A");
    let notes = app_b.list_notes().await.unwrap();
    assert_eq!((notes.len(), notes[0].id.as_str()), (1, note.id.as_str()));
    assert!(
        server.admin_user(&guest).await.is_none(),
        "the guest was folded in"
    );
    a.forget_keyring(&account.user.id);
    b.forget_keyring(&account.user.id);
}

#[tokio::test]
async fn an_identity_nobody_has_makes_a_full_account() {
    let (provider, server) = world().await;
    let d = device(&server, &provider);
    let app = d.launch().await;
    app.ensure_session().await.unwrap();
    let (browser, _) = Browser::follow(&[("login_hint", "new@example.com")]);
    let s = match app.sign_in_social(PROVIDER, &browser).await.unwrap() {
        SignInOutcome::SignedIn(s) => s,
        other => panic!("an empty guest is not asked: {other:?}"),
    };
    assert!(!s.user.is_anonymous);
    assert_eq!(s.user.email.as_deref(), Some("new@example.com"));
    let remote = server.admin_user(&s.user.id).await.expect("on the server");
    assert_eq!(remote["isAnonymous"], false);
    d.forget_keyring(&s.user.id);
}
