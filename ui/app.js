// AppShell: the spec's flow. Check for an existing session first; only when there is
// none, sign in anonymously. Then show the account (guest banner or account menu), the
// sync pill and the notes. Each screen lives in its own module under screens/.

import { authClient, syncApi } from "./auth-client.js";
import { $ } from "./dom.js";
import { render, state } from "./state.js";
import { switchTo } from "./switch-account.js";
import { initAccountMenu } from "./screens/account-menu.js";
import { initChangePassword } from "./screens/change-password.js";
import { initDeleteAccount } from "./screens/delete-account.js";
import { initExport } from "./screens/export.js";
import { initFatal, showFatal } from "./screens/fatal.js";
import { initForgotPassword } from "./screens/forgot-password.js";
import { initMerge } from "./screens/merge.js";
import { initNotes, refreshNotes } from "./screens/notes.js";
import { initRecovery } from "./screens/recovery.js";
import { initSettings } from "./screens/settings.js";
import { initSignIn } from "./screens/sign-in.js";
import { initSyncStatus } from "./screens/sync-status.js";
import { initUpgrade, openForm, renderSocialButtons } from "./screens/upgrade.js";
import { initVerify } from "./screens/verify.js";

async function initSession() {
  let { data, error } = await authClient.getSession();
  if (!error && !data) {
    ({ data, error } = await authClient.signIn.anonymous());
    // Another window of the app created the guest a moment ago: use that one.
    if (error?.code === "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY") {
      ({ data, error } = await authClient.getSession());
    }
  }
  if (error) return showFatal(error);
  state.user = data.user;
  const sync = await syncApi.status();
  if (sync.data) await onSyncStatus(sync.data);
  render();
  await renderSocialButtons();
  $("loading").hidden = true;
  $("fatal").hidden = true;
  $("shell").hidden = false;
  // Start-up timing for tests/e2e/bench-start.mjs: the banner is on screen from here.
  performance.mark("guestpass:shell-shown");
  await refreshNotes();
  $("note-input").focus();
}

async function onSyncStatus(status) {
  state.sync = status;
  state.online = status.state === "upToDate" || status.state === "syncing";
  const wasQueued = state.queuedEmail;
  state.queuedEmail = status.pendingUpgrade ?? null;
  if (status.refusedUpgrade && state.user?.isAnonymous) {
    // A queued upgrade the server refused: tell the person why and let them fix it.
    state.queuedEmail = null;
    if (state.panel !== "upgrade") openForm(status.refusedUpgrade);
  }
  if (wasQueued && !state.queuedEmail) {
    // The queue drained: the local user may have just been upgraded.
    const { data } = await authClient.getSession();
    if (data) {
      state.justCreated = state.user?.isAnonymous && !data.user.isAnonymous;
      state.user = data.user;
    }
  }
  render();
  if (state.user && status.state === "upToDate") {
    // Not while a sign-in is being answered here: that shows its own outcome.
    const answering = state.panel === "signIn" || $("merge-dialog").open;
    if (state.user.isAnonymous && !answering) {
      // A merge the server had not finished (in this window or before a restart) is
      // rolled forward by a pass: the device's user is then the account.
      const { data } = await authClient.getSession();
      if (data && data.user.id !== state.user.id && !data.user.isAnonymous) {
        return switchTo(data.user, `Signed in as ${data.user.email ?? "your account"}. Your guest notes are in your account now.`);
      }
    }
    // A finished pass may have brought notes from another device of this account.
    refreshNotes({ background: true });
  }
}

window.addEventListener("DOMContentLoaded", () => {
  initNotes();
  initUpgrade({ onSyncStatus });
  initSignIn();
  initMerge();
  initAccountMenu();
  initForgotPassword();
  initChangePassword();
  initDeleteAccount();
  initExport();
  initVerify();
  initSettings();
  initRecovery();
  initSyncStatus();
  initFatal(initSession);
  syncApi.onChange(onSyncStatus);
  initSession();
});
