// After a sign-in, a merge, or a sign-out the app shows another user: every screen
// redraws, the notes list is read again (it is that user's now), sync is asked now.

import { syncApi } from "./auth-client.js";
import { refreshNotes } from "./screens/notes.js";
import { setStatus, setUser, state } from "./state.js";

export async function switchTo(user, message) {
  state.panel = null;
  state.queuedEmail = null;
  state.justCreated = false;
  if (state.sync) state.sync = { ...state.sync, signInRequired: false };
  setUser(user);
  await refreshNotes();
  setStatus(message);
  // The new user's sync state, without waiting for the next pass to report it.
  syncApi.now();
}
