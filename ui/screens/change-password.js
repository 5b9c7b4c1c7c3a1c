// "Change password" in the account menu: the current password and a new one. The
// server ends the account's other sessions; this device stays signed in.

import { careApi } from "../auth-client.js";
import { $, busy, clearErrors, showError } from "../dom.js";
import { setStatus } from "../state.js";

const dialog = () => $("change-password-dialog");
const current = () => $("change-password-current");
const next = () => $("change-password-new");
const errors = () => [$("change-password-current-error"), $("change-password-new-error"), $("change-password-error")];

function clear() {
  clearErrors(errors(), [current(), next()]);
}

export function openChangePassword() {
  clear();
  current().value = "";
  next().value = "";
  if (!dialog().open) dialog().showModal();
  current().focus();
}

function close() {
  current().value = "";
  next().value = "";
  dialog().close();
  $("account-menu-button").focus();
}

function showFor(error) {
  if (error.code === "INVALID_PASSWORD") return showError($("change-password-current-error"), error, current());
  if (error.code === "PASSWORD_TOO_SHORT" || error.code === "PASSWORD_TOO_LONG") {
    return showError($("change-password-new-error"), error, next());
  }
  showError($("change-password-error"), error);
}

async function submit(e) {
  e.preventDefault();
  clear();
  if (!current().value) {
    showFor({ code: "INVALID_PASSWORD", message: "Enter your current password." });
    return current().focus();
  }
  const n = [...next().value].length;
  if (n < 8 || n > 128) {
    showFor({ code: n < 8 ? "PASSWORD_TOO_SHORT" : "PASSWORD_TOO_LONG", message: n < 8 ? "Password too short (8 characters or more)." : "Password too long (128 characters at most)." });
    return next().focus();
  }
  const done = busy($("change-password-submit"), "Changing…");
  const { error } = await careApi.changePassword({ current: current().value, next: next().value });
  done();
  if (error) {
    showFor(error);
    return (error.code === "INVALID_PASSWORD" ? current() : next()).select();
  }
  close();
  setStatus("Your password was changed. Your other sessions were signed out.");
}

export function initChangePassword() {
  $("change-password-open").addEventListener("click", openChangePassword);
  $("change-password-form").addEventListener("submit", submit);
  $("change-password-cancel").addEventListener("click", close);
}
