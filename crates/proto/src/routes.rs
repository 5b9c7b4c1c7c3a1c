//! Route paths under [`BASE`], shared so client and server cannot drift apart.

pub const BASE: &str = "/api/auth";

pub const SIGN_IN_ANONYMOUS: &str = "/sign-in/anonymous";
pub const GET_SESSION: &str = "/get-session";
pub const UPGRADE: &str = "/anonymous/upgrade";
pub const UPGRADE_SOCIAL: &str = "/anonymous/upgrade-social";
pub const SIGN_IN_EMAIL: &str = "/sign-in/email";
/// `GET ?token=…`: a page with a "Confirm my email" button, changing nothing.
/// `POST {token}` (JSON or form): marks the email verified.
pub const VERIFY_EMAIL: &str = "/verify-email";
pub const SIGN_OUT: &str = "/sign-out";
pub const DELETE_ANONYMOUS_USER: &str = "/delete-anonymous-user";
pub const ADMIN_LIST_USERS: &str = "/admin/list-users";
pub const ADMIN_REMOVE_USER: &str = "/admin/remove-user";
pub const ADMIN_AUDIT_LOG: &str = "/admin/audit-log";

// Accounts (DESIGN.md §2a, §4).
pub const SIGN_IN_SOCIAL: &str = "/sign-in/social";
/// A fresh server-issued nonce for the next provider sign-in (`sign-in/social`,
/// `upgrade-social` accept only one of these, unexpired, in the ID token).
pub const SOCIAL_NONCE: &str = "/social/nonce";
pub const MERGE: &str = "/anonymous/merge";
/// Better Auth's sign-up: holding a guest's bearer it is the in-place upgrade.
pub const SIGN_UP_EMAIL: &str = "/sign-up/email";
/// Bearer, full account: `{provider, idToken, nonce?}` links that provider
/// identity to the signed-in account (issue 14: proving an email claim first).
pub const LINK_SOCIAL: &str = "/link-social";
/// Unauthenticated: the server's name and version and its social providers
/// (public client ids), for the app's settings screen (issue 15).
pub const PROVIDERS: &str = "/providers";

// Guest recovery (issue 16; crates/server/README.md "Guest recovery").
/// Bearer, guest: `{recoveryKey}` sets (or replaces at once) the key its
/// recovery phrase derives; the server keeps its SHA-256.
pub const RECOVERY_KEY: &str = "/anonymous/recovery-key";
/// `{recoveryKey, deviceKey?}`: a new session for the guest holding that key.
pub const SIGN_IN_RECOVERY: &str = "/sign-in/recovery";

// Account care (issue 13; crates/server/README.md "Account care").
/// `POST {email, redirectTo?}`: mails a single-use reset link (1 h); same answer
/// whether or not the address is registered.
pub const REQUEST_PASSWORD_RESET: &str = "/request-password-reset";
/// `GET ?token=…`: the server's page asking for the new password (the mailed
/// link opens it). `POST {token, newPassword}` (JSON or form): sets it.
pub const RESET_PASSWORD: &str = "/reset-password";
/// Bearer, full account: mails the verification link again (3 per hour).
pub const SEND_VERIFICATION_EMAIL: &str = "/send-verification-email";
/// Bearer, full account with a password: `{currentPassword, newPassword}`.
pub const CHANGE_PASSWORD: &str = "/change-password";
/// Bearer, guest or account: deletes the caller's user and everything it owns.
pub const DELETE_USER: &str = "/delete-user";
/// Bearer, full account: the server's view of the account, as JSON.
pub const EXPORT: &str = "/export";

// Records (DESIGN.md §3a).
pub const SYNC_PUSH: &str = "/sync/push";
pub const SYNC_PULL: &str = "/sync/pull";
/// Server-sent events: `event: pull` whenever the caller's records changed.
pub const SYNC_EVENTS: &str = "/sync/events";

/// Header carrying a newly created or rotated session token.
pub const SET_AUTH_TOKEN: &str = "set-auth-token";
/// Header carrying the admin API key (`Authorization: Bearer` works too).
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header on every sync request: the app's record-sync protocol version.
pub const SYNC_PROTOCOL_HEADER: &str = "x-guestpass-sync-protocol";
