// AppShell: the spec's flow. Check for an existing session first; only when there is
// none, sign in anonymously. Then show the guest banner and the notes.

import { authClient, notesApi } from "./auth-client.js";

const $ = (id) => document.getElementById(id);

// What to tell a person for each code that stops the app from starting.
const FATAL_HINTS = {
  KEYRING_UNAVAILABLE:
    "Guestpass keeps your session token only in the system keyring and never in a file. Start your desktop's keyring (GNOME Keyring or KWallet, or another Secret Service provider), then press Try again.",
  DATABASE_CORRUPT: "Your data file was not changed. Move it aside to start fresh, or restore it from a backup, then press Try again.",
  DATABASE_READ_ONLY: "Nothing was changed. Check that the disk has free space and the data folder can be written, then press Try again.",
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
  $("loading").hidden = true;
  $("fatal").hidden = true;
  $("shell").hidden = false;
  await refreshNotes();
  $("note-input").focus();
}

function renderAccount() {
  $("guest-banner").hidden = !user.isAnonymous;
  $("account-kind").textContent = user.isAnonymous ? "Guest" : user.email ?? "Account";
  $("user-id").textContent = user.id;
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

function openUpgrade() {
  const panel = $("upgrade-panel");
  panel.textContent = "Account creation needs a connection to your Guestpass server; it is not configured in this build yet. Your guest data stays safe on this device.";
  panel.hidden = false;
}

window.addEventListener("DOMContentLoaded", () => {
  $("note-form").addEventListener("submit", addNote);
  $("note-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("note-form").requestSubmit();
  });
  $("create-account").addEventListener("click", openUpgrade);
  $("fatal-retry").addEventListener("click", () => {
    $("fatal").hidden = true;
    $("loading").hidden = false;
    initSession();
  });
  initSession();
});
