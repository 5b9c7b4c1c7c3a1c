//! `POST /link-social` (bearer, full account): links a verified provider
//! identity to the signed-in account. The way a verified social login reaches
//! an account that already has its address (issue 14: `sign-in/social` never
//! links itself into it): prove the account first — sign in with its password,
//! or reset the password by the mailed link — then link the provider here.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use guestpass_proto::{AuditEventKind, ErrorCode, LinkSocialRequest, SessionResponse};

use crate::auth::{ip_hash, ip_of, Authed};
use crate::db::AuditRow;
use crate::db_claims::{LinkIdentity, LinkOutcome};
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, FullAccount, Peer};
use crate::social_sign_in::verify_identity;
use crate::state::SharedState;

/// 409 `EMAIL_ALREADY_IN_USE` for a provider login whose verified address
/// belongs to an account it is not linked to, saying how to get there.
pub(crate) fn email_taken(provider: &str) -> Failure {
    Failure::new(ErrorCode::EmailAlreadyInUse).with_message(format!(
        "An account already uses this email. Sign in to it with its password (or reset \
         the password by the link we email to this address), then link {provider} from there"
    ))
}

pub async fn link_social(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    FullAccount(Authed { user, session }): FullAccount,
    ApiJson(body): ApiJson<LinkSocialRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let verified = verify_identity(
        &state,
        &body.provider,
        &body.id_token,
        body.nonce.as_deref(),
    )
    .await?;
    let now = state.clock.now_ms();
    let link = LinkIdentity {
        user_id: user.id.clone(),
        provider: body.provider.clone(),
        provider_account_id: verified.sub,
        email: verified.email,
        now,
        audit: AuditRow::new(
            AuditEventKind::UserUpdated,
            &user.id,
            &user.id,
            now,
            ip_hash(&state, ip_of(&state, &headers, &peer)),
        )
        .with_detail(serde_json::json!({ "change": "link", "provider": body.provider })),
    };
    let linked = match state.db.link_identity(&link).await? {
        LinkOutcome::Linked(user) => {
            tracing::info!(user_id = %user.id, provider = %link.provider, "provider linked to an account");
            user
        }
        LinkOutcome::AlreadyLinked(user) => user,
        LinkOutcome::InUse => return Err(ErrorCode::ProviderAccountInUse.into()),
        LinkOutcome::Gone => return Err(ErrorCode::Unauthorized.into()),
    };
    Ok(Json(SessionResponse {
        user: linked.to_wire(),
        session: session.to_wire(),
    }))
}
