// The notes list: write, edit, delete. Redrawn after a sign-in, a merge or a sign-out
// (another account's notes), and when a sync pass may have brought changes.

import { notesApi } from "../auth-client.js";
import { $, button } from "../dom.js";
import { setStatus } from "../state.js";
import { renderRestoreOffer } from "./recovery.js";

// What the list shows now, so a redraw that would change nothing leaves the DOM alone
// (a person's half-typed edit is never wiped by a background refresh).
let shown = "";
let editing = false;

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
  edit.setAttribute("aria-label", `Edit note: ${note.body.slice(0, 40)}`);
  const del = button("Delete", "note-delete", () => removeNote(note));
  del.setAttribute("aria-label", `Delete note: ${note.body.slice(0, 40)}`);
  actions.append(edit, del);
  meta.append(when, actions);
  li.append(body, meta);
  return li;
}

/** Redraws the list. `background` refreshes skip while a note is being edited. */
export async function refreshNotes({ background = false } = {}) {
  if (background && editing) return;
  const { data, error } = await notesApi.list();
  if (error) return setStatus(error.message, true);
  const signature = JSON.stringify(data.map((n) => [n.id, n.updatedAt, n.body]));
  if (background && signature === shown) return;
  shown = signature;
  editing = false;
  $("notes-list").replaceChildren(...data.map(noteItem));
  $("notes-empty").hidden = data.length > 0;
  renderRestoreOffer(data.length);
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
  // Only what was saved leaves the box: text typed while the save was on its way
  // (the next note, begun at once) stays. If the saved part was edited meanwhile,
  // nothing is cleared; the person sees it all and decides.
  if (input.value.startsWith(body)) input.value = input.value.slice(body.length);
  setStatus("Note saved.");
  await refreshNotes();
  input.focus();
}

function startEdit(li, note) {
  editing = true;
  const area = document.createElement("textarea");
  area.value = note.body;
  area.rows = 3;
  area.className = "note-edit-input";
  area.setAttribute("aria-label", "Edit note");
  const save = button("Save", "note-save", async () => {
    const { error } = await notesApi.update(note.id, area.value);
    if (error) return setStatus(error.message, true);
    setStatus("Note updated.");
    await refreshNotes();
  });
  const cancel = button("Cancel", "note-cancel", () => refreshNotes());
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

export function initNotes() {
  $("note-form").addEventListener("submit", addNote);
  $("note-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("note-form").requestSubmit();
  });
}
