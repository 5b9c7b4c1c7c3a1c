//! "Who answers at this address?", asked by the settings screen before it saves a
//! backend (issue 15). The reference server names itself and its providers at
//! `GET /api/auth/providers`; a stock Better Auth server answers `GET /api/auth/ok`
//! with `{"ok": true}`. Anything else is named, so a person who typed the wrong
//! port or the wrong site hears so before the app starts syncing with it.

use std::time::Duration;

use guestpass_proto::{routes, ApiError, ErrorCode, ProvidersResponse, GUESTPASS_SERVER_NAME};
use serde::Serialize;

use super::Dialect;
use crate::social::SocialProvider;

/// What answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reached {
    pub dialect: Dialect,
    /// The reference server's version; Better Auth does not say.
    pub version: Option<String>,
    /// The providers the reference server accepts; none are listed by Better Auth.
    pub providers: Vec<SocialProvider>,
    /// "Reached Guestpass server 0.1.0" / "Reached a Better Auth server".
    pub message: String,
}

/// A probe is a person waiting on a form: shorter than a sync request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub const NOTHING_ANSWERS: &str =
    "Nothing answers there. Check the address and that the server is running.";

/// Asks `url` (already normalised: `settings::normalise_url`) who it is.
pub async fn probe(url: &str) -> Result<Reached, ApiError> {
    let http = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .connect_timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| ApiError::new(ErrorCode::InternalError, e.to_string()))?;
    let base = format!("{url}{}", routes::BASE);
    let unreachable = |e: reqwest::Error| {
        tracing::info!("probe of {url}: {e}");
        ApiError::new(ErrorCode::BackendUnreachable, NOTHING_ANSWERS)
    };
    let resp = http
        .get(format!("{base}{}", routes::PROVIDERS))
        .send()
        .await
        .map_err(unreachable)?;
    if resp.status().is_success() {
        if let Ok(found) = resp.json::<ProvidersResponse>().await {
            if found.server.name == GUESTPASS_SERVER_NAME {
                return Ok(guestpass(found));
            }
        }
    }
    let resp = http
        .get(format!("{base}/ok"))
        .send()
        .await
        .map_err(unreachable)?;
    let ok = resp.status().is_success()
        && resp
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v.get("ok") == Some(&serde_json::Value::Bool(true)));
    if ok {
        return Ok(Reached {
            dialect: Dialect::BetterAuth,
            version: None,
            providers: Vec::new(),
            message: "Reached a Better Auth server.".into(),
        });
    }
    Err(ApiError::new(
        ErrorCode::BackendError,
        "Something answers there, but it is neither a Guestpass nor a Better Auth server. Check the address.",
    ))
}

fn guestpass(found: ProvidersResponse) -> Reached {
    let providers = found
        .providers
        .into_iter()
        .map(|p| SocialProvider {
            name: p.name,
            issuer: p.issuer,
            client_id: p.client_id,
        })
        .collect();
    Reached {
        dialect: Dialect::Guestpass,
        message: format!("Reached Guestpass server {}.", found.server.version),
        version: Some(found.server.version),
        providers,
    }
}
