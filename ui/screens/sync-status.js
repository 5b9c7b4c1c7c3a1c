// The sync pill ("3 changes waiting", "Saved to the server at 14:02", "Notes are kept
// on this device only") and the "Sign in again" banner of a full account whose server
// session ended. Both read only the SyncStatus the core sends.

import { $, formatTime, plural } from "../dom.js";
import { onRender, state } from "../state.js";
import { openSignIn } from "./sign-in.js";

const LABELS = {
  localOnly: "On this device only",
  offline: "Offline",
  syncing: "Syncing…",
  upToDate: "Up to date",
  needsAttention: "Needs attention",
};

const waiting = (n) => `${plural(n, "change")} waiting`;

/** The pill's words and its longer explanation (the tooltip). */
export function describe(status) {
  const pending = status.pendingChanges ?? 0;
  const refused = status.refusedChanges ?? 0;
  const reason = status.reason?.message;
  const noRecords = status.backendUrl && !status.recordsOnServer;
  let text = LABELS[status.state] ?? status.state;
  let title = reason ?? "";
  if (status.signInRequired) {
    // The banner says the rest; the server's "Unauthorized" would only alarm.
    text = pending > 0 ? `Sign in to sync · ${waiting(pending)}` : "Sign in to sync";
    title = "Your session on the server ended. Your notes stay on this computer.";
  } else if (status.state === "needsAttention") {
    if (reason) text += `: ${reason}`;
  } else if (status.state === "upToDate" && pending > 0) {
    text = waiting(pending);
  } else if ((status.state === "offline" || status.state === "syncing") && pending > 0) {
    text += ` · ${waiting(pending)}`;
  } else if (status.state === "upToDate" && noRecords) {
    text = "Notes are kept on this device only";
    title = "This server keeps your account but not your notes.";
  } else if (status.state === "upToDate" && status.lastSavedAt) {
    text = `Saved to the server at ${formatTime(status.lastSavedAt)}`;
  }
  if (status.state === "localOnly") title = "No server is set. To sync, open Settings in the account menu.";
  if (refused > 0) {
    text += ` · ${refused === 1 ? "1 change" : `${refused} changes`} refused`;
    title = `${title ? `${title} ` : ""}The server refused ${plural(refused, "change")} (too large or over the storage quota); they stay on this computer.`;
  }
  if (!title && status.lastSyncedAt) title = `Last synced ${new Date(status.lastSyncedAt).toLocaleString()}`;
  return { text, title };
}

function renderPill({ sync }) {
  if (!sync) return;
  const pill = $("sync-status");
  const { text, title } = describe(sync);
  pill.dataset.state = sync.state;
  pill.dataset.pending = String(sync.pendingChanges ?? 0);
  pill.textContent = text;
  pill.title = title;
  // The empty list's promise follows where notes really live.
  $("notes-empty").textContent = sync.recordsOnServer
    ? "No notes yet. What you write is saved here and on the server."
    : "No notes yet. Everything you write stays on this device.";
}

function renderReauth({ user, sync, panel }) {
  const needed = !user.isAnonymous && !!sync?.signInRequired;
  $("reauth-banner").hidden = !needed || panel === "signIn";
  $("reauth-email").textContent = user.email ?? "";
}

export function initSyncStatus() {
  onRender(renderPill);
  onRender(renderReauth);
  $("reauth-sign-in").addEventListener("click", () => openSignIn({ email: state.user?.email ?? "", again: true }));
}
