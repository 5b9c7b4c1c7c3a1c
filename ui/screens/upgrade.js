// The guest banner and the upgrade form (email + password, or a social provider), the
// queued-upgrade note, and the ways on when the email or identity already has an
// account: "Sign in to that account instead" / "Sign in with <provider> instead".

import { authClient, checkUpgradeInput } from "../auth-client.js";
import { $, clearErrors, providerLabel, showError } from "../dom.js";
import { onRender, render, setPanel, setStatus, setUser, state } from "../state.js";
import { openSignIn, signInWithProvider } from "./sign-in.js";

// What the "…instead" button does for the error on show now.
let instead = null;

const fields = () => [$("upgrade-email"), $("upgrade-password"), $("upgrade-name")];

function fieldFor(code) {
  if (code === "INVALID_EMAIL" || code === "EMAIL_ALREADY_IN_USE") return $("upgrade-email");
  if (code === "PASSWORD_TOO_SHORT" || code === "PASSWORD_TOO_LONG") return $("upgrade-password");
  if (code === "INVALID_NAME" || code === "NAME_TOO_LONG") return $("upgrade-name");
  return null;
}

function clearUpgradeError() {
  clearErrors([$("upgrade-error")], fields());
  $("upgrade-instead").hidden = true;
  instead = null;
}

/** Shows an error from the form or the server, tied to its field, with a way on if there is one. */
function showUpgradeError(error, provider = null) {
  clearUpgradeError();
  showError($("upgrade-error"), error, fieldFor(error.code));
  if (error.code === "EMAIL_ALREADY_IN_USE") {
    // From a provider the email is the provider's, not the one typed in this form.
    const email = provider ? "" : $("upgrade-email").value.trim();
    offerInstead("Sign in to that account instead", () => openSignIn({ email }));
  } else if (error.code === "PROVIDER_ACCOUNT_IN_USE" && provider) {
    offerInstead(`Sign in with ${providerLabel(provider)} instead`, () => signInWithProvider(provider));
  }
}

function offerInstead(label, action) {
  $("upgrade-sign-in-instead").textContent = label;
  $("upgrade-instead").hidden = false;
  instead = action;
}

/**
 * Opens the form; `error` is why a queued upgrade was refused, if it was; `reason` says
 * why the guest is asked (a feature only an account has, e.g. the export).
 */
export function openForm(error = null, reason = null) {
  setPanel("upgrade");
  clearUpgradeError();
  $("upgrade-reason").textContent = reason ?? "";
  $("upgrade-reason").hidden = !reason;
  if (error) showUpgradeError(error);
  $("upgrade-email").focus();
}

function closeForm() {
  setPanel(null);
  clearUpgradeError();
  $("create-account").focus();
}

function renderUpgrade({ user, panel, queuedEmail }) {
  const guest = user.isAnonymous;
  const reauth = !guest && !!state.sync?.signInRequired;
  $("guest-banner").hidden = !guest || panel !== null || !!queuedEmail;
  $("upgrade-panel").hidden = !guest || panel !== "upgrade";
  $("upgrade-queued").hidden = !guest || !queuedEmail;
  $("queued-email").textContent = queuedEmail ?? "";
  $("verify-note").hidden = guest || user.emailVerified || reauth;
  $("verify-email").textContent = user.email ?? "";
  $("verify-created").hidden = !state.justCreated;
}

export async function renderSocialButtons() {
  const { data } = await authClient.anonymous.socialProviders();
  const providers = data ?? [];
  for (const [box, list, click] of [
    ["social", "social-buttons", socialUpgrade],
    ["sign-in-social", "sign-in-social-buttons", signInWithProvider],
  ]) {
    $(box).hidden = providers.length === 0;
    $(list).replaceChildren(
      ...providers.map((name) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "social-button";
        b.dataset.provider = name;
        b.textContent = `Continue with ${providerLabel(name)}`;
        b.addEventListener("click", () => click(name));
        return b;
      }),
    );
  }
  renderSocialAvailability();
}

function renderSocialAvailability() {
  // A social login cannot be queued: it needs the server now.
  for (const id of ["social-buttons", "sign-in-social-buttons"]) {
    for (const b of $(id).querySelectorAll("button")) b.disabled = !state.online;
  }
  $("social-offline").hidden = state.online;
  $("sign-in-social-offline").hidden = state.online;
}

async function socialUpgrade(provider) {
  clearUpgradeError();
  $("social-name").textContent = providerLabel(provider);
  $("social-waiting").hidden = false;
  $("social-buttons").hidden = true;
  $("upgrade-submit").disabled = true;
  const { data, error } = await authClient.anonymous.upgradeWithSocial({ provider });
  $("social-waiting").hidden = true;
  $("social-buttons").hidden = false;
  $("upgrade-submit").disabled = false;
  if (error) return showUpgradeError(error, provider);
  state.panel = null;
  state.justCreated = true;
  setUser(data.user);
  setStatus(`Signed in with ${providerLabel(provider)}. Everything you made as a guest is still here.`);
}

async function submitUpgrade(e) {
  e.preventDefault();
  const input = {
    email: $("upgrade-email").value,
    password: $("upgrade-password").value,
    name: $("upgrade-name").value.trim(),
  };
  const mistake = checkUpgradeInput(input);
  if (mistake) {
    showUpgradeError(mistake);
    fieldFor(mistake.code)?.focus();
    return;
  }
  clearUpgradeError();
  $("upgrade-submit").disabled = true;
  $("upgrade-progress").hidden = false;
  const { data, error } = await authClient.anonymous.upgrade(input);
  $("upgrade-submit").disabled = false;
  $("upgrade-progress").hidden = true;
  if (error) return showUpgradeError({ code: error.code, message: error.message ?? "Upgrade failed" });
  $("upgrade-password").value = "";
  state.panel = null;
  if (data.status === "upgraded") {
    state.queuedEmail = null;
    state.justCreated = true;
    setUser(data.user);
    setStatus("Your account is ready. Everything you made as a guest is still here.");
  } else {
    state.queuedEmail = data.email;
    render();
    setStatus("You're offline. Your account will be created when the server is reachable.");
  }
}

async function cancelQueued() {
  const { data, error } = await authClient.anonymous.dismissUpgrade();
  if (error) return setStatus(error.message, true);
  state.queuedEmail = null;
  render();
  return data;
}

export function initUpgrade({ onSyncStatus }) {
  onRender(renderUpgrade);
  onRender(renderSocialAvailability);
  $("create-account").addEventListener("click", () => openForm());
  $("upgrade-form").addEventListener("submit", submitUpgrade);
  $("upgrade-later").addEventListener("click", async () => {
    closeForm();
    // "Later" also drops an upgrade the server refused, erasing its password.
    await authClient.anonymous.dismissUpgrade();
  });
  $("upgrade-form").addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeForm();
  });
  $("upgrade-sign-in-instead").addEventListener("click", () => instead?.());
  $("queued-cancel").addEventListener("click", async () => {
    const status = await cancelQueued();
    if (status) onSyncStatus(status);
  });
  $("social-cancel").addEventListener("click", () => authClient.anonymous.cancelSocial());
}
