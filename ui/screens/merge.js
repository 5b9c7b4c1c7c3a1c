// The one question a guest with data is asked when signing in to an existing account
// (DESIGN.md §2a): bring the notes in (the default), leave them behind (deleted only
// after a second, explicit yes), or cancel and stay a guest. Nothing changes before
// an answer.

import { authClient } from "../auth-client.js";
import { $, countWords } from "../dom.js";
import { setPanel, setStatus, setUser } from "../state.js";
import { showCurrentUser, switchTo } from "../switch-account.js";

const dialog = () => $("merge-dialog");
const allButtons = () => dialog().querySelectorAll("button");

let asked = null; // {account, guest} while the question is open
let working = false;

function step(confirming) {
  $("merge-ask").hidden = confirming;
  $("merge-confirm").hidden = !confirming;
  (confirming ? $("merge-leave-back") : $("merge-bring")).focus();
}

/** Asks what to do with the guest's records; `account` is the User being signed in to. */
export function askMerge(account, guest) {
  asked = { account, guest };
  const what = countWords(guest);
  // A guest restored by its phrase is asked about too (recovery.js).
  const who = account.isAnonymous ? "your restored guest" : account.email ?? account.name ?? "your account";
  $("merge-title").textContent = `You have ${what} as a guest`;
  $("merge-account").textContent = who;
  $("merge-bring").textContent = `Bring your ${what} into ${who}`;
  $("merge-confirm-what").textContent = what;
  $("merge-confirm-account").textContent = who;
  $("merge-progress").hidden = true;
  if (!dialog().open) dialog().showModal();
  step(false);
}

const PROGRESS = {
  merge: "Bringing them into your account…",
  leaveBehind: "Deleting them and signing in…",
  cancel: "Cancelling…",
};

async function answer(choice) {
  if (!asked || working) return;
  working = true;
  for (const b of allButtons()) b.disabled = true;
  $("merge-progress").textContent = PROGRESS[choice];
  $("merge-progress").hidden = false;
  const { data, error } = await authClient.completeSignIn(choice);
  working = false;
  for (const b of allButtons()) b.disabled = false;
  $("merge-progress").hidden = true;
  const { account, guest } = asked;
  asked = null;
  dialog().close();
  if (error) {
    // The answer was taken even so: a merge the server did not finish stays durable
    // on the device and rolls forward on a later pass (app.js shows the account then).
    // Show who the user is now and say what happened.
    await showCurrentUser(error.message, true);
    return;
  }
  const who = account.isAnonymous ? "your restored guest" : account.email ?? "your account";
  if (choice === "cancel") {
    setPanel(null);
    setUser(data.user);
    setStatus("You are still a guest. Nothing was changed.");
    $("note-input").focus();
    return;
  }
  const what = countWords(guest);
  const one = guest.notes + guest.preferences === 1;
  await switchTo(
    data.user,
    choice === "merge"
      ? `Signed in as ${who}. Your ${what} ${one ? "is" : "are"} ${account.isAnonymous ? "with it" : "in your account"} now.`
      : `Signed in as ${who}. The guest's ${what} ${one ? "was" : "were"} deleted.`,
  );
}

export function initMerge() {
  $("merge-bring").addEventListener("click", () => answer("merge"));
  $("merge-leave").addEventListener("click", () => step(true));
  $("merge-leave-back").addEventListener("click", () => step(false));
  $("merge-leave-confirm").addEventListener("click", () => answer("leaveBehind"));
  $("merge-cancel").addEventListener("click", () => answer("cancel"));
  // Escape means "not this": back from the second confirmation, else cancel (stay a
  // guest). The dialog never closes without an answer the core has taken.
  dialog().addEventListener("cancel", (e) => {
    e.preventDefault();
    if (working) return;
    if (!$("merge-confirm").hidden) step(false);
    else answer("cancel");
  });
}
