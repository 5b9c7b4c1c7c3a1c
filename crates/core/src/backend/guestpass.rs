//! The `guestpass` dialect: the reference server of DESIGN.md §4.

use guestpass_proto::{
    routes, AnonymousSignInRequest, ApiError, ErrorCode, SessionResponse, SignInResponse,
    SocialNonceResponse, SocialUpgradeRequest, UpgradeRequest, User,
};
use reqwest::{Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};

use super::{header_token, retry_after, transport, Backend, BackendError, Remote, RemoteUser};

pub(super) fn remote(u: &User) -> RemoteUser {
    RemoteUser {
        id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        email_verified: u.email_verified,
        is_anonymous: u.is_anonymous,
    }
}

/// Turns a non-2xx answer into the error the sync engine acts on.
pub(super) async fn failure(resp: Response) -> BackendError {
    let status = resp.status();
    let wait = retry_after(&resp);
    match resp.bytes().await {
        Ok(body) => classify(status, wait, &body),
        Err(e) => transport(e),
    }
}

/// [`failure`] for an answer already read: its status, `Retry-After` and body.
pub(super) fn classify(
    status: StatusCode,
    wait: Option<std::time::Duration>,
    body: &[u8],
) -> BackendError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return BackendError::RateLimited { retry_after: wait };
    }
    if status == StatusCode::UNAUTHORIZED {
        return BackendError::Unauthorized;
    }
    if status.is_server_error() {
        return BackendError::Protocol(format!("HTTP {status}"));
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) if e.code != ErrorCode::Unknown => BackendError::Refused(e),
        Ok(e) => BackendError::Protocol(format!("HTTP {status}: {}", e.message)),
        Err(_) => BackendError::Protocol(format!("HTTP {status} with an unreadable body")),
    }
}

pub(super) async fn body<T: serde::de::DeserializeOwned>(
    resp: Response,
) -> Result<T, BackendError> {
    resp.json::<T>()
        .await
        .map_err(|e| BackendError::Protocol(format!("unreadable answer: {}", e.without_url())))
}

pub(crate) async fn register(
    b: &Backend,
    local_user_id: &str,
    device_key: Option<&SecretString>,
) -> Result<(Remote, bool), BackendError> {
    let req = AnonymousSignInRequest {
        id: Some(local_user_id.to_owned()),
        device_key: device_key.map(|k| k.expose_secret().to_owned()),
    };
    let resp = b
        .http()
        .post(b.url(routes::SIGN_IN_ANONYMOUS))
        .json(&req)
        .send()
        .await
        .map_err(transport)?;
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    let header = header_token(&resp);
    let signed: SignInResponse = body(resp).await?;
    let token = header.unwrap_or_else(|| SecretString::from(signed.token.clone()));
    Ok((
        Remote {
            user: remote(&signed.user),
            token: Some(token),
        },
        signed.revived,
    ))
}

pub(crate) async fn get_session(
    b: &Backend,
    token: &SecretString,
) -> Result<Option<RemoteUser>, BackendError> {
    let resp = b.get_with(routes::GET_SESSION, token).await?;
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    let found: Option<SessionResponse> = body(resp).await?;
    Ok(found.map(|s| remote(&s.user)))
}

pub(crate) async fn upgrade(
    b: &Backend,
    token: &SecretString,
    req: &UpgradeRequest,
) -> Result<Remote, BackendError> {
    let resp = b.post_with(routes::UPGRADE, token, req).await?;
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    let header = header_token(&resp);
    let upgraded: SessionResponse = body(resp).await?;
    // Same session under a new token: the one whose hash the request named (then no
    // header), or one the server minted and sent in `set-auth-token`.
    Ok(Remote {
        user: remote(&upgraded.user),
        token: header,
    })
}

pub(crate) async fn social_nonce(b: &Backend) -> Result<String, BackendError> {
    let resp = b
        .http()
        .post(b.url(routes::SOCIAL_NONCE))
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(transport)?;
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    let issued: SocialNonceResponse = body(resp).await?;
    Ok(issued.nonce)
}

pub(crate) async fn upgrade_social(
    b: &Backend,
    token: &SecretString,
    provider: &str,
    id_token: &SecretString,
    nonce: &str,
    next_token_hash: Option<&str>,
) -> Result<Remote, BackendError> {
    let req = SocialUpgradeRequest {
        provider: provider.to_owned(),
        id_token: id_token.expose_secret().to_owned(),
        nonce: Some(nonce.to_owned()),
        next_token_hash: next_token_hash.map(str::to_owned),
    };
    let resp = b.post_with(routes::UPGRADE_SOCIAL, token, &req).await?;
    if resp.status() == StatusCode::UNAUTHORIZED {
        // 401 is also the server's answer to an ID token it refuses: that one is a
        // refusal to show, not a lost session.
        return Err(match resp.json::<ApiError>().await {
            Ok(e) if e.code == ErrorCode::InvalidIdToken => BackendError::Refused(e),
            _ => BackendError::Unauthorized,
        });
    }
    if !resp.status().is_success() {
        return Err(failure(resp).await);
    }
    let header = header_token(&resp);
    let upgraded: SessionResponse = body(resp).await?;
    Ok(Remote {
        user: remote(&upgraded.user),
        token: header,
    })
}
