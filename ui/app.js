// AppShell: the spec's flow. Check for an existing session first; only when there is
// none, sign in anonymously. Then show the guest banner and the notes.

import { authClient, notesApi, syncApi, checkUpgradeInput } from "./auth-client.js";

const $ = (id) => document.getElementById(id);

// What to tell a person for each code that stops the app from starting.
const FATAL_HINTS = {
  KEYRING_UNAVAILABLE:
    "Guestpass keeps your session token only in the system keyring, never in a file, so it will not start a guest without one. Once the keyring runs, press Try again.",
  KEYRING_LOCKED:
    "Guestpass keeps your session token only in the system keyring, never in a file. Unlock the keyring (sign in to your desktop session again, or open your passwords app), then press Try again.",
  DATABASE_CORRUPT: "Your data file was not changed. Move it aside to start fresh, or restore it from a backup, then press Try again.",
  DATABASE_READ_ONLY: "Nothing was changed. Check that the disk has free space and the data folder can be written, then press Try again.",
  DISK_FULL: "Nothing was changed and everything saved before is intact. Free some space on the disk, then press Try again.",
};

let user = null;

function showFatal(error) {
  $("loading").hidden = true;
  $("shell").hidden = true;
  const fatal = $("fatal");
  fatal.dataset.code = error.code;
  $("fatal-message").textContent = error.message;
  $("fatal-hint").textContent = FATAL_HINTS[error.code] ?? "";
  fatal.hidden = false;
  $("fatal-retry").focus();
}

function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

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
  user = data.user;
  renderAccount();
  const sync = await syncApi.status();
  if (sync.data) renderSync(sync.data);
  await renderSocialButtons();
  $("loading").hidden = true;
  $("fatal").hidden = true;
  $("shell").hidden = false;
  // Start-up timing for tests/e2e/bench-start.mjs: the banner is on screen from here.
  performance.mark("guestpass:shell-shown");
  await refreshNotes();
  $("note-input").focus();
}

let formOpen = false;
let queuedEmail = null;

function renderAccount() {
  const guest = user.isAnonymous;
  $("guest-banner").hidden = !guest || formOpen || !!queuedEmail;
  $("upgrade-panel").hidden = !guest || !formOpen;
  $("upgrade-queued").hidden = !guest || !queuedEmail;
  $("queued-email").textContent = queuedEmail ?? "";
  $("verify-note").hidden = guest || user.emailVerified;
  $("verify-email").textContent = user.email ?? "";
  $("account-kind").textContent = guest ? "Guest" : user.email ?? "Account";
  $("user-id").textContent = user.id;
}

const SYNC_LABELS = {
  localOnly: "On this device only",
  offline: "Offline",
  syncing: "Syncing…",
  upToDate: "Up to date",
  needsAttention: "Needs attention",
};

let online = false;

const providerLabel = (name) => name.charAt(0).toUpperCase() + name.slice(1);

async function renderSocialButtons() {
  const { data } = await authClient.anonymous.socialProviders();
  const providers = data ?? [];
  $("social").hidden = providers.length === 0;
  $("social-buttons").replaceChildren(
    ...providers.map((name) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "social-button";
      b.dataset.provider = name;
      b.textContent = `Continue with ${providerLabel(name)}`;
      b.addEventListener("click", () => socialUpgrade(name));
      return b;
    }),
  );
  renderSocialAvailability();
}

function renderSocialAvailability() {
  // A social login cannot be queued: it needs the server now.
  for (const b of $("social-buttons").querySelectorAll("button")) b.disabled = !online;
  $("social-offline").hidden = online;
}

async function socialUpgrade(provider) {
  const err = $("upgrade-error");
  err.hidden = true;
  $("social-name").textContent = providerLabel(provider);
  $("social-waiting").hidden = false;
  $("social-buttons").hidden = true;
  $("upgrade-submit").disabled = true;
  const { data, error } = await authClient.anonymous.upgradeWithSocial({ provider });
  $("social-waiting").hidden = true;
  $("social-buttons").hidden = false;
  $("upgrade-submit").disabled = false;
  if (error) {
    err.textContent = error.message;
    err.dataset.code = error.code;
    err.hidden = false;
    return;
  }
  user = data.user;
  formOpen = false;
  setStatus(`Signed in with ${providerLabel(provider)}. Everything you made as a guest is still here.`);
  renderAccount();
}

async function renderSync(status) {
  online = status.state === "upToDate" || status.state === "syncing";
  renderSocialAvailability();
  const pill = $("sync-status");
  pill.dataset.state = status.state;
  const reason = status.reason?.message;
  pill.textContent = SYNC_LABELS[status.state] + (status.state === "needsAttention" && reason ? `: ${reason}` : "");
  pill.title = reason ?? (status.lastSyncedAt ? `Last synced ${new Date(status.lastSyncedAt).toLocaleString()}` : "");
  const wasQueued = queuedEmail;
  queuedEmail = status.pendingUpgrade ?? null;
  if (status.refusedUpgrade && user?.isAnonymous) {
    // A queued upgrade the server refused: tell the person why and let them fix it.
    queuedEmail = null;
    openForm(status.refusedUpgrade.message);
  }
  if (wasQueued && !queuedEmail) {
    // The queue drained: the local user may have just been upgraded.
    const { data } = await authClient.getSession();
    if (data) user = data.user;
  }
  if (user) renderAccount();
}

function openForm(errorText = "") {
  formOpen = true;
  const err = $("upgrade-error");
  err.textContent = errorText;
  err.hidden = !errorText;
  renderAccount();
  $("upgrade-email").focus();
}

function closeForm() {
  formOpen = false;
  $("upgrade-error").hidden = true;
  renderAccount();
  $("create-account").focus();
}

async function submitUpgrade(e) {
  e.preventDefault();
  const input = {
    email: $("upgrade-email").value,
    password: $("upgrade-password").value,
    name: $("upgrade-name").value.trim(),
  };
  const err = $("upgrade-error");
  const mistake = checkUpgradeInput(input);
  if (mistake) {
    err.textContent = mistake.message;
    err.dataset.code = mistake.code;
    err.hidden = false;
    return;
  }
  err.hidden = true;
  $("upgrade-submit").disabled = true;
  $("upgrade-progress").hidden = false;
  const { data, error } = await authClient.anonymous.upgrade(input);
  $("upgrade-submit").disabled = false;
  $("upgrade-progress").hidden = true;
  if (error) {
    err.textContent = error.message ?? "Upgrade failed";
    err.dataset.code = error.code;
    err.hidden = false;
    return;
  }
  $("upgrade-password").value = "";
  formOpen = false;
  if (data.status === "upgraded") {
    user = data.user;
    queuedEmail = null;
    setStatus("Your account is ready. Everything you made as a guest is still here.");
  } else {
    queuedEmail = data.email;
    setStatus("You're offline. Your account will be created when the server is reachable.");
  }
  renderAccount();
}

async function cancelQueued() {
  const { data, error } = await authClient.anonymous.dismissUpgrade();
  if (error) return setStatus(error.message, true);
  queuedEmail = null;
  renderSync(data);
}

function noteItem(note) {
  const li = document.createElement("li");
  li.className = "note";
  li.dataset.id = note.id;
  const body = document.createElement("p");
  body.className = "note-body";
  body.textContent = note.body;
  const meta = document.createElement("div");
  meta.className = "note-meta muted";
  const when = document.createElement("time");
  when.dateTime = note.updatedAt;
  when.textContent = new Date(note.updatedAt).toLocaleString();
  const actions = document.createElement("span");
  actions.className = "note-actions";
  const edit = button("Edit", "note-edit", () => startEdit(li, note));
  const del = button("Delete", "note-delete", () => removeNote(note));
  actions.append(edit, del);
  meta.append(when, actions);
  li.append(body, meta);
  return li;
}

function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `secondary ${cls}`;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

async function refreshNotes() {
  const { data, error } = await notesApi.list();
  if (error) return setStatus(error.message, true);
  const list = $("notes-list");
  list.replaceChildren(...data.map(noteItem));
  $("notes-empty").hidden = data.length > 0;
}

async function addNote(e) {
  e.preventDefault();
  const input = $("note-input");
  const body = input.value;
  if (!body.trim()) return setStatus("Write something first.", true);
  $("note-add").disabled = true;
  const { error } = await notesApi.create(body);
  $("note-add").disabled = false;
  // On error the text stays in the box: nothing typed is lost.
  if (error) return setStatus(error.message, true);
  input.value = "";
  setStatus("Note saved.");
  await refreshNotes();
  input.focus();
}

function startEdit(li, note) {
  const area = document.createElement("textarea");
  area.value = note.body;
  area.rows = 3;
  area.className = "note-edit-input";
  const save = button("Save", "note-save", async () => {
    const { error } = await notesApi.update(note.id, area.value);
    if (error) return setStatus(error.message, true);
    setStatus("Note updated.");
    await refreshNotes();
  });
  const cancel = button("Cancel", "note-cancel", refreshNotes);
  area.addEventListener("keydown", (e) => {
    if (e.key === "Escape") refreshNotes();
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) save.click();
  });
  li.replaceChildren(area, save, cancel);
  area.focus();
}

async function removeNote(note) {
  const { error } = await notesApi.remove(note.id);
  if (error) return setStatus(error.message, true);
  setStatus("Note deleted.");
  await refreshNotes();
}

window.addEventListener("DOMContentLoaded", () => {
  $("note-form").addEventListener("submit", addNote);
  $("note-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("note-form").requestSubmit();
  });
  $("create-account").addEventListener("click", () => openForm());
  $("upgrade-form").addEventListener("submit", submitUpgrade);
  $("upgrade-later").addEventListener("click", async () => {
    closeForm();
    // "Later" also drops an upgrade the server refused, erasing its password.
    await authClient.anonymous.dismissUpgrade();
  });
  $("upgrade-form").addEventListener("keydown", (e) => { if (e.key === "Escape") closeForm(); });
  $("queued-cancel").addEventListener("click", cancelQueued);
  $("social-cancel").addEventListener("click", () => authClient.anonymous.cancelSocial());
  syncApi.onChange(renderSync);
  $("fatal-retry").addEventListener("click", () => {
    $("fatal").hidden = true;
    $("loading").hidden = false;
    initSession();
  });
  initSession();
});
