// What every screen reads: the current user and the last sync status. A screen that
// changes the user calls setUser; every screen that registered with onRender redraws.

import { $ } from "./dom.js";

export const state = {
  user: null,
  sync: null,
  /** The backend answers now (a social login cannot be queued: it needs the server). */
  online: false,
  /** Which panel under the banner is open: null | "upgrade" | "signIn". */
  panel: null,
  /** The email of an upgrade waiting for the server. */
  queuedEmail: null,
  /** This guest became an account in this window ("Account created"), not signed in to one. */
  justCreated: false,
};

const renderers = [];

export function onRender(fn) {
  renderers.push(fn);
}

export function render() {
  if (!state.user) return;
  for (const fn of renderers) fn(state);
}

export function setUser(user) {
  state.user = user;
  render();
}

export function setPanel(panel) {
  state.panel = panel;
  render();
}

export function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}
