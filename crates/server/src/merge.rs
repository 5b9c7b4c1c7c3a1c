//! `POST /anonymous/merge`: a full account (the bearer) folds in the guest whose
//! session token it presents (DESIGN.md §2a). The device cannot commit together
//! with the server, so the merge must be safe to retry: the server keeps a
//! tombstone (guest → account, keyed by the guest token's digest) and answers a
//! retry by the same account with the same 200.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use guestpass_proto::{ErrorCode, MergeRequest, MergeResponse, MergedSummary};

use crate::auth::{ip_hash, ip_of, Authed};
use crate::crypto::sha256_hex;
use crate::db::{AuditRow, SessionRow, UserRow};
use crate::db_accounts::{MergeOutcome, MergePlan, MergeRow};
use crate::error::{ApiResult, Failure};
use crate::extract::{ApiJson, FullAccount, Peer};
use crate::state::{AppState, SharedState};

/// Longer than any token this server mints; anything longer is not one.
const TOKEN_MAX: usize = 512;

pub async fn merge(
    State(state): State<SharedState>,
    peer: Peer,
    headers: HeaderMap,
    // Two guests are never merged, and neither are two accounts: the target
    // must be a full account (a guest bearer: 403 ANONYMOUS_NOT_ALLOWED), the
    // token a guest's.
    FullAccount(Authed { user: account, .. }): FullAccount,
    ApiJson(body): ApiJson<MergeRequest>,
) -> ApiResult<Json<MergeResponse>> {
    let token = body.guest_token;
    if token.is_empty() || token.len() > TOKEN_MAX {
        return Err(ErrorCode::Unauthorized.into());
    }
    let token_hash = sha256_hex(&token);
    if let Some(done) = state.db.merge_by_token(&token_hash).await? {
        return retried(&state, &account, done).await;
    }
    let now = state.clock.now_ms();
    let Some((guest, _)) = state.db.session_by_token(&token_hash, now).await? else {
        // A retry racing the first request: that one may have committed (and
        // ended the guest's session) since the tombstone was read above.
        if let Some(done) = state.db.merge_by_token(&token_hash).await? {
            return retried(&state, &account, done).await;
        }
        return Err(ErrorCode::Unauthorized.into());
    };
    if !guest.is_anonymous {
        return Err(ErrorCode::UserNotAnonymous.into());
    }
    let plan = MergePlan {
        guest_id: guest.id,
        guest_token_hash: token_hash,
        account_id: account.id.clone(),
        now,
        ip_hash: ip_hash(&state, ip_of(&state, &headers, &peer)),
        new_session: None,
    };
    match state.db.merge_guest(&plan).await? {
        MergeOutcome::Merged { account, merge } => {
            tracing::info!(guest_id = %merge.guest_id, account_id = %merge.account_id, records = merge.records, "guest merged into an account");
            // The account's other devices connected here pull the re-owned records now
            // (on other instances they arrive with their next pull).
            if merge.records > 0 {
                state.live.notify(&merge.account_id);
            }
            Ok(Json(answer(&account, &merge)))
        }
        MergeOutcome::AlreadyMerged(done) => retried(&state, &account, done).await,
        MergeOutcome::GuestGone => Err(ErrorCode::Unauthorized.into()),
        MergeOutcome::NotAnonymous => Err(ErrorCode::UserNotAnonymous.into()),
    }
}

/// A sign-in (Better Auth's way) carrying a guest's bearer into another
/// account: the guest is folded into it and `session` is written in the same
/// transaction. `Ok(false)`: the guest was gone or no longer a guest by then,
/// nothing was written, and the caller signs in plainly.
pub(crate) async fn fold_on_sign_in(
    state: &AppState,
    guest: &UserRow,
    guest_session: &SessionRow,
    account_id: &str,
    ip_hash: Option<String>,
    session: (SessionRow, AuditRow),
) -> ApiResult<bool> {
    let plan = MergePlan {
        guest_id: guest.id.clone(),
        guest_token_hash: guest_session.token_hash.clone(),
        account_id: account_id.to_string(),
        now: state.clock.now_ms(),
        ip_hash,
        new_session: Some(session),
    };
    Ok(match state.db.merge_guest(&plan).await? {
        MergeOutcome::Merged { merge, .. } => {
            tracing::info!(guest_id = %merge.guest_id, account_id = %merge.account_id, records = merge.records, "guest merged on sign-in");
            if merge.records > 0 {
                state.live.notify(&merge.account_id);
            }
            true
        }
        _ => false,
    })
}

/// The same 200 again for the account that made the merge; anyone else learns
/// nothing about that token.
async fn retried(
    state: &AppState,
    account: &UserRow,
    done: MergeRow,
) -> ApiResult<Json<MergeResponse>> {
    if done.account_id != account.id {
        return Err(ErrorCode::Unauthorized.into());
    }
    let current = state
        .db
        .user_by_id(&account.id)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::Unauthorized))?;
    Ok(Json(answer(&current, &done)))
}

fn answer(account: &UserRow, merge: &MergeRow) -> MergeResponse {
    MergeResponse {
        user: account.to_wire(),
        merged: MergedSummary {
            guest_id: merge.guest_id.clone(),
            records: u64::try_from(merge.records).unwrap_or(0),
        },
    }
}
