//! `GET /api/auth/providers` (issue 15): the server's name and version and the social
//! providers it accepts, public parts only, for the app's settings screen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use guestpass_server::config::SocialProvider;
use serde_json::json;

both_backends!(providers_name_the_server_and_its_public_client_ids);

async fn providers_name_the_server_and_its_public_client_ids(b: Backend) {
    let bare = TestServer::start(&b).await;
    let (status, body) = bare.get("/api/auth/providers", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "server": {"name": "guestpass", "version": env!("CARGO_PKG_VERSION")},
            "providers": []
        })
    );
    bare.stop().await;

    let s = TestServer::start_with(&b, |c| {
        for (name, client_id) in [("zeta", "zeta-client"), ("acme", "acme-client")] {
            c.social_providers.insert(
                name.into(),
                SocialProvider {
                    client_id: client_id.into(),
                    issuer: format!("https://{name}.example"),
                },
            );
        }
    })
    .await;
    let (status, body) = s.get("/api/auth/providers", None).await;
    assert_eq!(status, 200, "{body}");
    // Sorted by name, and exactly these fields: nothing of the server's secrets.
    assert_eq!(
        body["providers"],
        json!([
            {"name": "acme", "issuer": "https://acme.example", "clientId": "acme-client"},
            {"name": "zeta", "issuer": "https://zeta.example", "clientId": "zeta-client"},
        ])
    );
    // Read-only: another verb is refused in the usual shape.
    let (status, body) = s.post("/api/auth/providers", None, json!({})).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    s.stop().await;
}
