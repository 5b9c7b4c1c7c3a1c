// "Delete guest and its data" and "Delete my account" (both in the account menu):
// the counts of what goes, an explicit confirmation, and the password for an account
// that has one. Afterwards the app is a fresh, empty guest.

import { careApi } from "../auth-client.js";
import { $, busy, clearErrors, plural, showError } from "../dom.js";
import { state } from "../state.js";
import { switchTo } from "../switch-account.js";
import { closeAccountMenu } from "./account-menu.js";

const dialog = () => $("delete-dialog");
const password = () => $("delete-password");
const confirmBox = () => $("delete-confirm");
const errors = () => [$("delete-password-error"), $("delete-error")];

let guest = true;

export async function openDelete() {
  guest = !!state.user?.isAnonymous;
  clearErrors(errors(), [password()]);
  password().value = "";
  confirmBox().checked = false;
  $("delete-submit").disabled = true;
  const { data } = await careApi.deletionSummary();
  const counts = data ? ` — ${plural(data.notes, "note")}, ${plural(data.preferences, "preference")} —` : "";
  if (guest) {
    $("delete-title").textContent = "Delete guest and its data";
    $("delete-lead").textContent = `This deletes the guest and everything it holds${counts} from this computer and from the server.`;
    $("delete-confirm-label").textContent = "Yes, delete this guest and its data";
    $("delete-submit").textContent = "Delete guest and its data";
  } else {
    const who = state.user?.email ?? "your account";
    $("delete-title").textContent = "Delete my account";
    $("delete-lead").textContent = `This deletes ${who} and everything it holds${counts} from this computer and from the server.`;
    $("delete-confirm-label").textContent = "Yes, delete my account and its data";
    $("delete-submit").textContent = "Delete my account";
  }
  // A guest has no password; an account signed in with a provider leaves it empty.
  $("delete-password-box").hidden = guest;
  closeAccountMenu();
  if (!dialog().open) dialog().showModal();
  (guest ? confirmBox() : password()).focus();
}

function close() {
  password().value = "";
  dialog().close();
}

async function submit(e) {
  e.preventDefault();
  clearErrors(errors(), [password()]);
  if (!confirmBox().checked) return;
  const done = busy($("delete-submit"), "Deleting…");
  $("delete-cancel").disabled = true;
  const { data, error } = await careApi.deleteAccount(guest ? null : password().value);
  done();
  $("delete-cancel").disabled = false;
  $("delete-submit").disabled = !confirmBox().checked;
  if (error) {
    if (error.code === "INVALID_PASSWORD") {
      showError($("delete-password-error"), error, password());
      return password().select();
    }
    return showError($("delete-error"), error, guest ? null : password());
  }
  close();
  await switchTo(data.user, guest ? "The guest and its data were deleted. You are a new guest now." : "Your account and its data were deleted. You are a new guest now.");
  $("note-input").focus();
}

export function initDeleteAccount() {
  $("guest-delete").addEventListener("click", openDelete);
  $("account-delete").addEventListener("click", openDelete);
  confirmBox().addEventListener("change", () => {
    $("delete-submit").disabled = !confirmBox().checked;
  });
  $("delete-form").addEventListener("submit", submit);
  $("delete-cancel").addEventListener("click", close);
}
