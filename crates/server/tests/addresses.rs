//! Addresses and names (issue 14, item 7), on SQLite and PostgreSQL: one mailbox
//! is one account however its domain is spelled (IDNA), and invisible or
//! text-reordering characters are refused with 422 before they reach the
//! database (PostgreSQL refuses a NUL in `text`: a 5xx if unchecked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::care::*;
use common::*;
use serde_json::json;

both_backends!(
    the_idn_pair_is_one_account,
    hidden_characters_are_refused_with_422,
);

const ASCII: &str = "jane@xn--bcher-kva.example";

async fn upgrade(
    s: &TestServer,
    token: &str,
    email: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    s.post(
        "/anonymous/upgrade",
        Some(token),
        json!({"email": email, "password": "password123"}),
    )
    .await
}

async fn the_idn_pair_is_one_account(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, mut smtp) = start(&backend, &idp).await;

    // The Unicode spelling upgrades; the account holds the ASCII one, and the
    // verification email goes there.
    let (id, guest_token) = s.guest().await;
    // The upgrade rotates the session's token (issue 14): go on with the new one.
    let token = s
        .upgrade(
            &guest_token,
            json!({"email": "Jane@Bücher.example", "password": "password123"}),
        )
        .await;
    let (status, body) = s.get("/get-session", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], ASCII);
    assert_eq!(smtp.next().await.to, [ASCII]);

    // Every other spelling of that mailbox is the same, taken, address.
    let (_, other) = s.guest().await;
    for spelling in [
        ASCII,
        "JANE@XN--BCHER-KVA.EXAMPLE",
        "jane@bu\u{0308}cher.example", // ü decomposed
        "jane@ｂüｃｈｅｒ。example",   // fullwidth letters, ideographic full stop
    ] {
        assert_error(
            &upgrade(&s, &other, spelling).await,
            409,
            "EMAIL_ALREADY_IN_USE",
        );
        let signed_up = s
            .post(
                "/sign-up/email",
                None,
                json!({"email": spelling, "password": "password123", "name": "Mallory"}),
            )
            .await;
        assert_error(&signed_up, 409, "EMAIL_ALREADY_IN_USE");
    }

    // Sign-in works with either spelling, into the one account.
    for spelling in [ASCII, "jane@bücher.example", " JANE@BÜCHER.EXAMPLE "] {
        let (status, body) = s
            .post(
                "/sign-in/email",
                None,
                json!({"email": spelling, "password": "password123"}),
            )
            .await;
        assert_eq!(status, 200, "{spelling}: {body}");
        assert_eq!(body["user"]["id"], id);
    }

    // A reset asked with the Unicode spelling reaches the account's mailbox.
    let (status, _) = s
        .post(
            "/request-password-reset",
            None,
            json!({"email": "jane@BÜCHER.example"}),
        )
        .await;
    assert_eq!(status, 200);
    let mail = smtp.next().await;
    assert_eq!(mail.to, [ASCII]);
    assert!(mail.data.contains("Reset your Guestpass password"));

    // Resending the verification names the address in either spelling.
    let (status, body) = s
        .post(
            "/send-verification-email",
            Some(&token),
            json!({"email": "jane@bücher.example"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(smtp.next().await.to, [ASCII]);

    // A provider's verified Unicode address is normalised the same way: the
    // social account holds the ASCII form, so the upgrade collides with it.
    let zoe_nonce = s.nonce().await;
    let claims = json!({
        "iss": idp.issuer, "aud": CLIENT_ID, "sub": "zoe-sub",
        "exp": (t0() + Duration::days(30)).timestamp(), "iat": t0().timestamp(),
        "nonce": zoe_nonce, "email": "Zoë@Bücher.Example", "email_verified": true,
    });
    let (status, body) = s
        .post(
            "/sign-in/social",
            None,
            json!({"provider": "google", "idToken": idp.sign(&claims), "nonce": zoe_nonce}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["email"], "zoë@xn--bcher-kva.example");
    assert_error(
        &upgrade(&s, &other, "zoe\u{0308}@xn--bcher-kva.example").await,
        409,
        "EMAIL_ALREADY_IN_USE",
    );
    s.stop().await;
}

async fn hidden_characters_are_refused_with_422(backend: Backend) {
    let idp = MockIdp::start().await;
    let (s, _smtp) = start(&backend, &idp).await;
    let (id, token) = s.guest().await;
    let hidden = [
        "\u{0000}", "\u{001B}", "\u{0085}", "\u{200B}", "\u{200F}", "\u{202E}", "\u{2066}",
        "\u{FEFF}",
    ];
    for c in hidden {
        // Each round in an hour of its own: the per-address limits on sign-ups
        // and failed sign-ins are not what this test is about.
        s.clock.advance(Duration::hours(1));
        for email in [
            format!("ja{c}ne@example.com"),
            format!("jane@exa{c}mple.com"),
        ] {
            assert_error(&upgrade(&s, &token, &email).await, 422, "INVALID_EMAIL");
            let signed_up = s
                .post(
                    "/sign-up/email",
                    None,
                    json!({"email": email, "password": "password123"}),
                )
                .await;
            assert_error(&signed_up, 422, "INVALID_EMAIL");
            let reset = s
                .post("/request-password-reset", None, json!({"email": email}))
                .await;
            assert_error(&reset, 422, "INVALID_EMAIL");
            // A sign-in with it opens nothing, as any unknown address (never a 5xx).
            let signed_in = s
                .post(
                    "/sign-in/email",
                    None,
                    json!({"email": email, "password": "password123"}),
                )
                .await;
            assert_error(&signed_in, 401, "INVALID_EMAIL_OR_PASSWORD");
        }
        let name = format!("Jane{c}Doe");
        let named = s
            .post(
                "/anonymous/upgrade",
                Some(&token),
                json!({"email": "jane@example.com", "password": "password123", "name": name}),
            )
            .await;
        assert_error(&named, 422, "INVALID_NAME");
        assert_eq!(named.1["message"], "Invalid name");
        let signed_up = s
            .post(
                "/sign-up/email",
                None,
                json!({"email": "new@example.com", "password": "password123", "name": name}),
            )
            .await;
        assert_error(&signed_up, 422, "INVALID_NAME");
    }
    let long = s
        .post(
            "/anonymous/upgrade",
            Some(&token),
            json!({"email": "jane@example.com", "password": "password123", "name": "n".repeat(257)}),
        )
        .await;
    assert_error(&long, 422, "NAME_TOO_LONG");

    // Nothing above was written: still a guest, and the address is still free.
    let (_, me) = s.get("/get-session", Some(&token)).await;
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["isAnonymous"], true);
    // A name in a script that needs ZWNJ, and an emoji sequence with ZWJ, are fine,
    // kept in NFC.
    let name = "Rene\u{0301} \u{0645}\u{06CC}\u{200C}\u{062E} 👩\u{200D}💻";
    let (status, body) = s
        .post(
            "/anonymous/upgrade",
            Some(&token),
            json!({"email": "jane@example.com", "password": "password123", "name": name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["user"]["name"],
        "Ren\u{00E9} \u{0645}\u{06CC}\u{200C}\u{062E} 👩\u{200D}💻"
    );

    // A provider's name is not the person's typing: what a typed name may not
    // hold is dropped, and the sign-in goes ahead.
    let nul_nonce = s.nonce().await;
    let claims = json!({
        "iss": idp.issuer, "aud": CLIENT_ID, "sub": "nul-sub",
        "exp": (t0() + Duration::days(30)).timestamp(), "iat": t0().timestamp(),
        "nonce": nul_nonce, "email": "nul@example.com", "email_verified": true,
        "name": "\u{202E}Eve\u{0000} Example\u{200B}",
    });
    let (status, body) = s
        .post(
            "/sign-in/social",
            None,
            json!({"provider": "google", "idToken": idp.sign(&claims), "nonce": nul_nonce}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["name"], "Eve Example");
    s.stop().await;
}
