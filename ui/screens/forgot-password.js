// "Forgot password?" under the sign-in form: asks the address and has the server mail
// a reset link. The answer is the same whether or not the address has an account, and
// so is what we say. A reset needs the server: offline it says so, and keeps nothing.

import { careApi, checkEmail } from "../auth-client.js";
import { $, busy, clearErrors, showError } from "../dom.js";

const field = () => $("forgot-email");
const errors = () => [$("forgot-email-error"), $("forgot-error")];

function show(open) {
  $("forgot-form").hidden = !open;
  $("sign-in-form").hidden = open;
  $("forgot-password").setAttribute("aria-expanded", String(open));
  clearErrors(errors(), [field()]);
  $("forgot-sent").hidden = true;
  if (open) {
    field().value = $("sign-in-email").value.trim();
    field().focus();
  } else {
    $("forgot-password").focus();
  }
}

async function submit(e) {
  e.preventDefault();
  clearErrors(errors(), [field()]);
  $("forgot-sent").hidden = true;
  const email = field().value.trim();
  const mistake = checkEmail(email);
  if (mistake) {
    showError($("forgot-email-error"), mistake, field());
    return field().focus();
  }
  const done = busy($("forgot-submit"), "Sending…");
  const { error } = await careApi.requestPasswordReset(email);
  done();
  if (error) {
    if (error.code === "INVALID_EMAIL") return showError($("forgot-email-error"), error, field());
    return showError($("forgot-error"), error, field());
  }
  $("forgot-sent").hidden = false;
}

/** Called when the sign-in panel opens: it starts on the sign-in form, not this one. */
export function resetForgot() {
  $("forgot-form").hidden = true;
  $("sign-in-form").hidden = false;
  $("forgot-password").setAttribute("aria-expanded", "false");
}

export function initForgotPassword() {
  $("forgot-password").addEventListener("click", () => show(true));
  $("forgot-back").addEventListener("click", () => show(false));
  $("forgot-form").addEventListener("submit", submit);
  $("forgot-form").addEventListener("keydown", (e) => {
    if (e.key === "Escape") show(false);
  });
}
