// After a sign-in, a merge, or a sign-out the app shows another user: every screen
// redraws, the notes list is read again (it is that user's now), sync is asked now.

import { authClient, syncApi } from "./auth-client.js";
import { refreshNotes } from "./screens/notes.js";
import { setStatus, setUser, state } from "./state.js";

export async function switchTo(user, message, isError = false) {
  state.panel = null;
  state.queuedEmail = null;
  state.justCreated = false;
  if (state.sync) state.sync = { ...state.sync, signInRequired: false };
  setUser(user);
  await refreshNotes();
  setStatus(message, isError);
  // The new user's sync state, without waiting for the next pass to report it.
  syncApi.now();
}

/**
 * Shows whoever the device's user is now. After a merge the server did not finish, the
 * core rolls it forward on a later pass; until then this may still be the guest.
 */
export async function showCurrentUser(message, isError = false) {
  const { data } = await authClient.getSession();
  if (data) await switchTo(data.user, message, isError);
  else setStatus(message, isError);
}
