// authClient: the spec's client API over the app's Tauri commands. Every call returns
// {data, error}; error is {code, message} and callers branch on error.code.

const invoke = (cmd, args) => window.__TAURI__.core.invoke(cmd, args);

function asError(e) {
  if (e && typeof e === "object" && typeof e.code === "string") {
    return { code: e.code, message: e.message ?? e.code };
  }
  return { code: "UNKNOWN", message: String(e ?? "Unknown error") };
}

async function call(cmd, args) {
  try {
    return { data: await invoke(cmd, args), error: null };
  } catch (e) {
    return { data: null, error: asError(e) };
  }
}

export const authClient = {
  getSession: () => call("get_session"),
  signIn: {
    anonymous: () => call("sign_in_anonymous"),
    // {data: {status: "signedIn", user, session} | {status: "choiceNeeded", account, guest: {notes, preferences}}, error}
    email: ({ email, password }) => call("sign_in_email", { email, password }),
    // The provider's page in the system browser, like upgradeWithSocial; same answer as email.
    social: ({ provider }) => call("sign_in_social", { provider }),
  },
  // The answer to "choiceNeeded": "merge" | "leaveBehind" | "cancel" → {data: {user, session}}.
  completeSignIn: (choice) => call("complete_sign_in", { choice }),
  // What the current guest holds: {notes, preferences}.
  guestSummary: () => call("guest_summary"),
  // A full account only. {data: the fresh guest's {user, session}}; error UNSYNCED_CHANGES
  // when removing would lose changes the server does not hold (call again with force).
  signOut: ({ removeData = false, force = false } = {}) => call("sign_out", { removeData, force }),
  anonymous: {
    // {data: {status: "upgraded", user, session} | {status: "queued", email}, error}
    upgrade: ({ email, password, name }) => call("upgrade", { email, password, name: name || null }),
    dismissUpgrade: () => call("dismiss_upgrade"),
    // Opens the provider in the system browser; resolves when the flow ends.
    upgradeWithSocial: ({ provider }) => call("upgrade_with_social", { provider }),
    cancelSocial: () => call("cancel_social"),
    socialProviders: () => call("social_providers"),
  },
};

// Account care (issue 13). Errors are {code, message} as everywhere.
export const careApi = {
  // Same answer whether or not the address has an account; BACKEND_UNREACHABLE offline.
  requestPasswordReset: (email) => call("request_password_reset", { email }),
  resendVerification: () => call("resend_verification"),
  changePassword: ({ current, next }) => call("change_password", { current, new: next }),
  // What deleting the signed-in user erases here: {notes, preferences}.
  deletionSummary: () => call("deletion_summary"),
  // {data: the fresh guest's {user, session}}; password for an account that has one.
  deleteAccount: (password) => call("delete_account", { password: password || null }),
  // ANONYMOUS_NOT_ALLOWED for a guest: the one gate for sensitive operations.
  requireFullAccount: () => call("require_full_account"),
  // Opens the system save dialog and writes the JSON file: {data: path | null (cancelled)}.
  exportData: () => call("export_data"),
};

export const settingsApi = {
  get: () => call("settings"),
  /** Who answers at `url`: `{dialect, version, providers, message}` or an error. */
  check: (url) => call("check_backend", { url }),
  save: ({ backendUrl, offlineOnly }) => call("save_settings", { settings: { backendUrl, offlineOnly } }),
  diagnostics: () => call("diagnostics"),
};

// Guest recovery (issue 16). A phrase view is {words: [12], qrSvg}.
export const recoveryApi = {
  // Shown after the warning; made with the server the first time (it must answer).
  phrase: () => call("recovery_phrase"),
  // Replaces it on the server: the old phrase stops working at once.
  newPhrase: () => call("new_recovery_phrase"),
  // Same answer as a sign-in: {status: "signedIn", user, session} | {status: "choiceNeeded", account, guest}.
  restore: (phrase) => call("restore_guest", { phrase }),
  dismissNotice: () => call("dismiss_notice"),
};

export const syncApi = {
  status: () => call("sync_status"),
  now: () => call("sync_now"),
  onChange: (fn) => window.__TAURI__.event.listen("sync-status", (e) => fn(e.payload)),
};

// The obvious mistakes, caught before any request (the core and the server check the
// rest with one normaliser: an international domain such as bücher.example is fine).
export function checkEmail(email) {
  const e = (email ?? "").trim();
  const domainOk = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/u.test(e);
  return domainOk ? null : { code: "INVALID_EMAIL", message: "Invalid email" };
}

export function checkUpgradeInput({ email, password }) {
  const bad = checkEmail(email);
  if (bad) return bad;
  const n = [...(password ?? "")].length;
  if (n < 8) return { code: "PASSWORD_TOO_SHORT", message: "Password too short" };
  if (n > 128) return { code: "PASSWORD_TOO_LONG", message: "Password too long" };
  return null;
}

export const notesApi = {
  list: () => call("list_notes"),
  create: (body) => call("create_note", { body }),
  update: (id, body) => call("update_note", { id, body }),
  remove: (id) => call("delete_note", { id }),
};

export const preferencesApi = {
  set: (key, value) => call("set_preference", { key, value }),
};
