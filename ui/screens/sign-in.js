// Sign in to an existing account: email + password, or a configured provider through
// the system browser (the same flow as the social upgrade). A guest holding notes is
// asked first what should happen to them (merge.js); nothing changes before that.

import { authClient, checkEmail } from "../auth-client.js";
import { $, busy, clearErrors, countWords, providerLabel, showError } from "../dom.js";
import { onRender, setPanel, state } from "../state.js";
import { switchTo } from "../switch-account.js";
import { resetForgot } from "./forgot-password.js";
import { askMerge } from "./merge.js";

const emailField = () => $("sign-in-email");
const passwordField = () => $("sign-in-password");
const errors = () => [$("sign-in-email-error"), $("sign-in-password-error"), $("sign-in-error")];

// Words for what stops a sign-in, where the server's own message is not the best one.
const WORDS = {
  BACKEND_UNREACHABLE: "The server cannot be reached, and signing in needs it. Your notes are safe on this computer; try again once you are connected.",
  RATE_LIMITED: "Too many attempts. Wait a minute, then try again.",
};

function clearSignInErrors() {
  clearErrors(errors(), [emailField(), passwordField()]);
}

function showSignInError(error) {
  const shown = { code: error.code, message: WORDS[error.code] ?? error.message };
  if (error.code === "INVALID_EMAIL") return showError($("sign-in-email-error"), shown, emailField());
  if (error.code === "PASSWORD_REQUIRED") return showError($("sign-in-password-error"), shown, passwordField());
  // Wrong email or password belongs to both fields; the password is the one to retype.
  const field = error.code === "INVALID_EMAIL_OR_PASSWORD" ? passwordField() : null;
  showError($("sign-in-error"), shown, field);
  if (error.code === "INVALID_EMAIL_OR_PASSWORD") emailField().setAttribute("aria-invalid", "true");
}

/**
 * Opens the sign-in form. `email` prefills it (from "Email already in use" or "Sign in
 * again"); `again` words it for a full account whose session ended.
 */
export function openSignIn({ email = "", again = false } = {}) {
  setPanel("signIn");
  clearSignInErrors();
  resetForgot();
  $("sign-in-title").textContent = again ? "Sign in again" : "Sign in to your account";
  $("sign-in-lead").textContent = again
    ? "Your notes and changes stayed on this computer. Sign in to keep them in sync."
    : "If you have notes as a guest, you will be asked what to do with them before anything changes.";
  emailField().value = email;
  passwordField().value = "";
  (email ? passwordField() : emailField()).focus();
  if (!again && state.user?.isAnonymous) tellWhatGuestHolds();
}

/** Says up front what the guest would bring along, so the question after is no surprise. */
async function tellWhatGuestHolds() {
  const { data } = await authClient.guestSummary();
  if (!data || (data.notes === 0 && data.preferences === 0)) return;
  const one = data.notes + data.preferences === 1;
  $("sign-in-lead").textContent = `You have ${countWords(data)} as a guest. After you sign in, you choose whether to bring ${one ? "it" : "them"} into the account; nothing changes before that.`;
}

function closeSignIn() {
  setPanel(null);
  clearSignInErrors();
  passwordField().value = "";
  ($("sign-in-open").offsetParent ? $("sign-in-open") : $("note-input")).focus();
}

async function finish(outcome) {
  // The password did its job either way: the core holds the account's session now.
  passwordField().value = "";
  if (outcome.status === "choiceNeeded") return askMerge(outcome.account, outcome.guest);
  const who = outcome.user.email ?? "your account";
  await switchTo(outcome.user, `Signed in as ${who}.`);
}

async function submitSignIn(e) {
  e.preventDefault();
  clearSignInErrors();
  const email = emailField().value.trim();
  const password = passwordField().value;
  const mistake = checkEmail(email) ?? (password ? null : { code: "PASSWORD_REQUIRED", message: "Enter your password" });
  if (mistake) {
    showSignInError(mistake);
    (mistake.code === "INVALID_EMAIL" ? emailField() : passwordField()).focus();
    return;
  }
  const done = busy($("sign-in-submit"), "Signing in…");
  $("sign-in-cancel").disabled = true;
  const { data, error } = await authClient.signIn.email({ email, password });
  done();
  $("sign-in-cancel").disabled = false;
  if (error) {
    showSignInError(error);
    if (error.code === "INVALID_EMAIL_OR_PASSWORD") passwordField().select();
    return;
  }
  await finish(data);
}

/** Signs in with a provider, from this form or from the upgrade form's "…instead". */
export async function signInWithProvider(provider) {
  if (state.panel !== "signIn") openSignIn();
  clearSignInErrors();
  $("sign-in-social-name").textContent = providerLabel(provider);
  $("sign-in-social-waiting").hidden = false;
  $("sign-in-social-buttons").hidden = true;
  $("sign-in-submit").disabled = true;
  const { data, error } = await authClient.signIn.social({ provider });
  $("sign-in-social-waiting").hidden = true;
  $("sign-in-social-buttons").hidden = false;
  $("sign-in-submit").disabled = false;
  if (error) return showSignInError(error);
  await finish(data);
}

function renderSignIn({ panel }) {
  $("sign-in-panel").hidden = panel !== "signIn";
}

export function initSignIn() {
  onRender(renderSignIn);
  $("sign-in-open").addEventListener("click", () => openSignIn());
  $("sign-in-form").addEventListener("submit", submitSignIn);
  $("sign-in-cancel").addEventListener("click", closeSignIn);
  $("sign-in-form").addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeSignIn();
  });
  $("sign-in-social-cancel").addEventListener("click", () => authClient.anonymous.cancelSocial());
}
