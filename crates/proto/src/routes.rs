//! Route paths under [`BASE`], shared so client and server cannot drift apart.

pub const BASE: &str = "/api/auth";

pub const SIGN_IN_ANONYMOUS: &str = "/sign-in/anonymous";
pub const GET_SESSION: &str = "/get-session";
pub const UPGRADE: &str = "/anonymous/upgrade";
pub const UPGRADE_SOCIAL: &str = "/anonymous/upgrade-social";
pub const SIGN_IN_EMAIL: &str = "/sign-in/email";
pub const VERIFY_EMAIL: &str = "/verify-email";
pub const SIGN_OUT: &str = "/sign-out";
pub const DELETE_ANONYMOUS_USER: &str = "/delete-anonymous-user";
pub const ADMIN_LIST_USERS: &str = "/admin/list-users";
pub const ADMIN_REMOVE_USER: &str = "/admin/remove-user";
pub const ADMIN_AUDIT_LOG: &str = "/admin/audit-log";

/// Header carrying a newly created or rotated session token.
pub const SET_AUTH_TOKEN: &str = "set-auth-token";
/// Header carrying the admin API key (`Authorization: Bearer` works too).
pub const API_KEY_HEADER: &str = "x-api-key";
