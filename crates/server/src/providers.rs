//! `GET /providers`: the server's name and version and the social providers it
//! accepts, so the app's settings screen can say "Reached Guestpass server 0.1" and
//! offer the providers without anyone typing a client id (issue 15).
//!
//! Only what an authorization request carries anyway (issuer, public client id): the
//! server's config holds no client secret (it verifies ID tokens against the
//! provider's published keys), and nothing else of the config is read here.

use axum::extract::State;
use axum::Json;
use guestpass_proto::{ProviderInfo, ProvidersResponse, ServerInfo, GUESTPASS_SERVER_NAME};

use crate::state::SharedState;

pub async fn providers(State(state): State<SharedState>) -> Json<ProvidersResponse> {
    let providers = state
        .config
        .social_providers
        .iter()
        .map(|(name, p)| ProviderInfo {
            name: name.clone(),
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
        })
        .collect();
    Json(ProvidersResponse {
        server: ServerInfo {
            name: GUESTPASS_SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        providers,
    })
}
