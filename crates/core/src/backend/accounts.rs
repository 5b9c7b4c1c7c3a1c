//! The account calls of both dialects (DESIGN.md §2a): sign in with email and password
//! or a provider's ID token, fold a guest into an account, sign out, delete a guest.
//!
//! A 401 on a sign-in route means wrong credentials, not a lost session, so those
//! routes map it to `INVALID_EMAIL_OR_PASSWORD` instead of `Unauthorized`.

use guestpass_proto::{
    routes, ApiError, EmailSignInRequest, ErrorCode, MergeRequest, MergeResponse, SignInResponse,
    SocialSignInRequest,
};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};

use super::Remote;
use super::{better_auth, guestpass, header_token, transport, Backend, BackendError, Dialect};

/// What the server says a merge folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub guest_id: String,
    pub records: u64,
}

impl Backend {
    /// Signs in to a full account. `guest` is the anonymous bearer to send along: on
    /// Better Auth that folds (deletes) the guest into the account, as its anonymous
    /// plugin does; `None` only checks the credentials and opens a session.
    pub async fn sign_in_email(
        &self,
        email: &str,
        password: &SecretString,
        guest: Option<&SecretString>,
    ) -> Result<Remote, BackendError> {
        let body = EmailSignInRequest {
            email: email.to_owned(),
            password: password.expose_secret().to_owned(),
        };
        let mut req = self
            .http()
            .post(self.url(routes::SIGN_IN_EMAIL))
            .json(&body);
        if let Some(t) = guest {
            req = req.bearer_auth(t.expose_secret());
        }
        let resp = req.send().await.map_err(transport)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(BackendError::Refused(
                ErrorCode::InvalidEmailOrPassword.into(),
            ));
        }
        self.signed_in(resp).await
    }

    /// Signs in with a verified provider identity (reference server only): the linked
    /// account, or a new full account.
    pub async fn sign_in_social(
        &self,
        provider: &str,
        id_token: &SecretString,
        nonce: &str,
    ) -> Result<Remote, BackendError> {
        if self.dialect() == Dialect::BetterAuth {
            return Err(BackendError::Refused(ApiError::new(
                ErrorCode::UnknownProvider,
                "Signing in with a provider needs the Guestpass server",
            )));
        }
        let body = SocialSignInRequest {
            provider: provider.to_owned(),
            id_token: id_token.expose_secret().to_owned(),
            nonce: Some(nonce.to_owned()),
        };
        let resp = self
            .http()
            .post(self.url(routes::SIGN_IN_SOCIAL))
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(BackendError::Refused(ErrorCode::InvalidIdToken.into()));
        }
        self.signed_in(resp).await
    }

    /// Folds the guest behind `guest` into the account behind `account` (reference
    /// server). A retry after it completed answers the same.
    pub async fn merge(
        &self,
        account: &SecretString,
        guest: &SecretString,
    ) -> Result<Merged, BackendError> {
        let body = MergeRequest {
            guest_token: guest.expose_secret().to_owned(),
        };
        let resp = self.post_with(routes::MERGE, account, &body).await?;
        if !resp.status().is_success() {
            return Err(guestpass::failure(resp).await);
        }
        let merged: MergeResponse = guestpass::body(resp).await?;
        Ok(Merged {
            guest_id: merged.merged.guest_id,
            records: merged.merged.records,
        })
    }

    /// Revokes the session behind `token`. A session already gone counts as revoked.
    pub async fn sign_out(&self, token: &SecretString) -> Result<(), BackendError> {
        let resp = self
            .post_with(routes::SIGN_OUT, token, &serde_json::json!({}))
            .await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        Err(self.failure(resp).await)
    }

    /// Deletes the guest behind `token` and its data on the server. A guest already gone
    /// counts as deleted.
    pub async fn delete_guest(&self, token: &SecretString) -> Result<(), BackendError> {
        let resp = self
            .post_with(routes::DELETE_ANONYMOUS_USER, token, &serde_json::json!({}))
            .await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::UNAUTHORIZED {
            return Ok(());
        }
        Err(self.failure(resp).await)
    }

    async fn failure(&self, resp: reqwest::Response) -> BackendError {
        match self.dialect() {
            Dialect::Guestpass => guestpass::failure(resp).await,
            Dialect::BetterAuth => better_auth::failure(resp).await,
        }
    }

    /// A sign-in answer in either dialect: the user and the new session's token.
    async fn signed_in(&self, resp: reqwest::Response) -> Result<Remote, BackendError> {
        match self.dialect() {
            Dialect::BetterAuth => {
                let remote = better_auth::signed_in(resp).await?;
                if remote.token.is_none() {
                    return Err(BackendError::Protocol(
                        "sign-in answer without a token".into(),
                    ));
                }
                Ok(remote)
            }
            Dialect::Guestpass => {
                if !resp.status().is_success() {
                    return Err(guestpass::failure(resp).await);
                }
                let header = header_token(&resp);
                let signed: SignInResponse = guestpass::body(resp).await?;
                let token = header.unwrap_or_else(|| SecretString::from(signed.token.clone()));
                Ok(Remote {
                    user: guestpass::remote(&signed.user),
                    token: Some(token),
                })
            }
        }
    }
}
