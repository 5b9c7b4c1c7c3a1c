//! JSON bodies of DESIGN.md §4, camelCase on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::rfc3339_millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    pub email_verified: bool,
    pub is_anonymous: bool,
    #[serde(with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_millis")]
    pub updated_at: DateTime<Utc>,
    /// Custom metadata (the app keeps preferences here); always a JSON object.
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub user_id: String,
    #[serde(with = "rfc3339_millis")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_millis")]
    pub updated_at: DateTime<Utc>,
}

/// `POST /sign-in/anonymous`: `{}` or `{"id": "usr_…", "deviceKey": "…"}` (the id the
/// device minted offline, and the secret that proves this device minted it).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnonymousSignInRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// 256 random bits (URL-safe base64) the device keeps in its keyring. When the
    /// id is taken, the same key gets a new session for that guest, so a device
    /// whose first answer was lost can register again (idempotent registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

impl std::fmt::Debug for AnonymousSignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnonymousSignInRequest")
            .field("id", &self.id)
            .field(
                "device_key",
                &self.device_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Answer of every route that creates a session. The token also travels in the
/// `set-auth-token` header.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInResponse {
    pub user: User,
    pub session: Session,
    pub token: String,
    /// Anonymous sign-in only: the server had deleted this guest as stale
    /// (cleanup) and made it again from its device, which then sends its
    /// records again (issue 16).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revived: bool,
}

impl std::fmt::Debug for SignInResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInResponse")
            .field("user", &self.user)
            .field("session", &self.session)
            .field("token", &"<redacted>")
            .field("revived", &self.revived)
            .finish()
    }
}

/// `GET /get-session` (or `null`), and the upgrade routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    pub user: User,
    pub session: Session,
}

/// `POST /anonymous/upgrade`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeRequest {
    pub email: String,
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The session's next token, as the device made it: the lowercase hex SHA-256
    /// of a token only the device knows ([`validate_token_hash`]). The upgrade
    /// installs it, so a device whose answer is lost already holds the token that
    /// works. Without it the server mints one and sends it in `set-auth-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token_hash: Option<String>,
}

impl std::fmt::Debug for UpgradeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .field("name", &self.name)
            .field(
                "next_token_hash",
                &self.next_token_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `POST /anonymous/upgrade-social`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SocialUpgradeRequest {
    pub provider: String,
    pub id_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// As in [`UpgradeRequest::next_token_hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token_hash: Option<String>,
}

impl std::fmt::Debug for SocialUpgradeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocialUpgradeRequest")
            .field("provider", &self.provider)
            .field("id_token", &"<redacted>")
            .field("nonce", &self.nonce)
            .field(
                "next_token_hash",
                &self.next_token_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `POST /sign-in/email`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSignInRequest {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for EmailSignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSignInRequest")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `{"success": true}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessResponse {
    pub success: bool,
}

impl SuccessResponse {
    pub const OK: Self = Self { success: true };
}

/// `POST /admin/remove-user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveUserRequest {
    pub user_id: String,
}

/// Cursor paging of the admin lists: pass `after` back to get the next (older) page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMetadata {
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    pub list_metadata: ListMetadata,
}

/// The four audit events of the spec, and the failed sign-ins the server keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditEventKind {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "session.created")]
    SessionCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    /// A `sign-in/email` refused for a wrong email or password (never the
    /// password; the email only as a keyed hash).
    #[serde(rename = "user.sign_in_failed")]
    UserSignInFailed,
}

impl AuditEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::SessionCreated => "session.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
            Self::UserSignInFailed => "user.sign_in_failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::UserCreated,
            Self::SessionCreated,
            Self::UserUpdated,
            Self::UserDeleted,
            Self::UserSignInFailed,
        ]
        .into_iter()
        .find(|k| k.as_str() == raw)
    }
}

/// One audit row as the admin API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub event: AuditEventKind,
    pub user_id: String,
    /// Who caused it: the user's own id, `admin`, `system` (cleanup), or
    /// `unauthenticated` (a failed sign-in). `user_id` of a failed sign-in with an
    /// unknown email is `email:<keyed hash of the email>`.
    pub actor: String,
    #[serde(with = "rfc3339_millis")]
    pub created_at: DateTime<Utc>,
    /// A keyed hash of the client address, never the address itself.
    pub ip_hash: Option<String>,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// `POST /social/nonce`: the nonce the device puts in its next authorization request.
/// It is signed by the server and carries its own expiry, so any instance on the same
/// secret accepts it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SocialNonceResponse {
    pub nonce: String,
    #[serde(with = "rfc3339_millis")]
    pub expires_at: DateTime<Utc>,
}

/// `GET /providers`: who answers (so the app's settings can tell a Guestpass server
/// from a Better Auth one) and the social providers it accepts, with their public
/// client ids only, so a person never types one in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvidersResponse {
    pub server: ServerInfo,
    pub providers: Vec<ProviderInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    /// Always `guestpass` on the reference server.
    pub name: String,
    /// The server's version (`0.1.0`).
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderInfo {
    /// The name the server knows it by (`[socialProviders.<name>]`), e.g. `google`.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
}

/// The `name` of [`ServerInfo`] on the reference server.
pub const GUESTPASS_SERVER_NAME: &str = "guestpass";

/// `POST /sign-in/social`: sign in with a provider identity (or create a full account).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SocialSignInRequest {
    pub provider: String,
    pub id_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl std::fmt::Debug for SocialSignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocialSignInRequest")
            .field("provider", &self.provider)
            .field("id_token", &"<redacted>")
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// `POST /link-social` (bearer = a full account): the same body as
/// `sign-in/social`; the identity is linked to the caller instead.
pub type LinkSocialRequest = SocialSignInRequest;

/// `POST /anonymous/merge` (bearer = the account): fold the guest into the account.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeRequest {
    pub guest_token: String,
}

impl std::fmt::Debug for MergeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeRequest")
            .field("guest_token", &"<redacted>")
            .finish()
    }
}

/// What a merge folded in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergedSummary {
    pub guest_id: String,
    /// Record changes re-owned by the account.
    pub records: u64,
}

/// `200` of a merge, the same on a retry after it completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeResponse {
    pub user: User,
    pub merged: MergedSummary,
}
