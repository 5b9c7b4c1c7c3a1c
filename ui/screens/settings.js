// Settings (issue 15): the server this device syncs with, checked before it is saved
// ("Reached Guestpass server 0.1.0" / "Reached a Better Auth server" / "Nothing
// answers there"), "Work offline only", the sign-in providers the server offers, the
// version and where the data lives, and "Copy diagnostics". An environment variable
// that overrides the screen is named on it. A failed check saves nothing.

import { authClient, settingsApi, syncApi } from "../auth-client.js";
import { $, busy, clearErrors, providerLabel, showError } from "../dom.js";
import { setStatus, setUser, state } from "../state.js";
import { renderSocialButtons } from "./upgrade.js";
import { closeAccountMenu } from "./account-menu.js";

const dialog = () => $("settings-dialog");
const url = () => $("settings-url");
const offline = () => $("settings-offline");
const errors = () => [$("settings-url-error"), $("settings-error")];

const DIALECTS = { guestpass: "Guestpass server", "better-auth": "Better Auth server" };

function clear() {
  clearErrors(errors(), [url()]);
  $("settings-reached").hidden = true;
}

function show(view) {
  url().value = view.backendUrl ?? "";
  offline().checked = view.offlineOnly;
  url().disabled = view.offlineOnly;
  const inEffect = view.inEffect
    ? `${view.inEffect} (${DIALECTS[view.inEffectDialect] ?? view.inEffectDialect})`
    : "No server: everything stays on this device";
  $("settings-in-effect").textContent = inEffect;
  $("settings-providers").textContent = view.providers.length ? view.providers.map(providerLabel).join(", ") : "None";
  $("settings-version").textContent = `Guestpass ${view.appVersion}`;
  $("settings-data-dir").textContent = view.dataDir;
  const override = $("settings-override");
  override.hidden = view.overrides.length === 0;
  override.textContent = view.overrides.length
    ? `Set by the environment, which wins over this screen: ${view.overrides.map((o) => (o.value === "(set)" ? o.name : `${o.name}=${o.value}`)).join(", ")}.`
    : "";
  if (!view.backendUrl && view.buildDefault && !view.offlineOnly) url().placeholder = view.buildDefault;
}

function showFailure(error) {
  // Reaching the server is about the address; anything else is about the save.
  const aboutUrl = ["INVALID_REQUEST", "BACKEND_UNREACHABLE", "BACKEND_ERROR"].includes(error.code);
  if (aboutUrl) {
    showError($("settings-url-error"), error, url());
    url().focus();
  } else {
    showError($("settings-error"), error);
  }
}

function reached(result) {
  const el = $("settings-reached");
  const names = result.providers.map((p) => providerLabel(p.name));
  el.textContent = names.length ? `${result.message} It offers sign-in with ${names.join(", ")}.` : result.message;
  el.hidden = false;
}

export async function openSettings() {
  closeAccountMenu();
  clear();
  $("settings-diagnostics-text").hidden = true;
  $("settings-diagnostics-status").textContent = "";
  const { data, error } = await settingsApi.get();
  if (error) showError($("settings-error"), error);
  else show(data);
  if (!dialog().open) dialog().showModal();
  url().focus();
}

async function check() {
  clear();
  if (!url().value.trim()) {
    return showFailure({ code: "INVALID_REQUEST", message: "Type the server's address first." });
  }
  const done = busy($("settings-check"), "Checking…");
  const { data, error } = await settingsApi.check(url().value);
  done();
  if (error) return showFailure(error);
  reached(data);
}

/** After a saved change the core was reopened: the session and the sync pill follow it. */
async function refreshAfterSave() {
  const session = await authClient.getSession();
  if (session.data) setUser(session.data.user);
  const sync = await syncApi.status();
  if (sync.data) {
    state.sync = sync.data;
    setUser(state.user);
  }
  await renderSocialButtons();
}

async function save(e) {
  e.preventDefault();
  clear();
  const done = busy($("settings-save"), url().value.trim() && !offline().checked ? "Checking the server…" : "Saving…");
  const { data, error } = await settingsApi.save({ backendUrl: url().value, offlineOnly: offline().checked });
  done();
  if (error) return showFailure(error);
  show(data.settings);
  if (data.reached) reached(data.reached);
  await refreshAfterSave();
  const where = data.settings.inEffect ? `Syncing with ${data.settings.inEffect}.` : "Everything stays on this device.";
  $("settings-reached").textContent = `${data.reached ? `${data.reached.message} ` : ""}Saved. ${where}`;
  $("settings-reached").hidden = false;
  setStatus(`Settings saved. ${where}`);
}

async function copyDiagnostics() {
  const status = $("settings-diagnostics-status");
  const box = $("settings-diagnostics-text");
  const { data, error } = await settingsApi.diagnostics();
  if (error) return showError($("settings-error"), error);
  box.value = data;
  box.hidden = false;
  try {
    await navigator.clipboard.writeText(data);
    status.textContent = "Diagnostics copied. They hold no passwords, tokens, email addresses or notes.";
  } catch {
    // No clipboard access in this webview: the text is selected for Ctrl+C instead.
    box.focus();
    box.select();
    const copied = document.execCommand?.("copy");
    status.textContent = copied
      ? "Diagnostics copied. They hold no passwords, tokens, email addresses or notes."
      : "Press Ctrl+C to copy the selected diagnostics.";
  }
}

function close() {
  dialog().close();
  $("account-menu-button").focus();
}

export function initSettings() {
  $("settings-open").addEventListener("click", openSettings);
  $("settings-form").addEventListener("submit", save);
  $("settings-check").addEventListener("click", check);
  $("settings-diagnostics").addEventListener("click", copyDiagnostics);
  $("settings-close").addEventListener("click", close);
  offline().addEventListener("change", () => {
    url().disabled = offline().checked;
    clear();
  });
}
