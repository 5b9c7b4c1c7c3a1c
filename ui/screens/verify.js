// "Check your inbox" with "Resend" (3 per hour; the server says when to try again),
// and the verified badge once the server reports the address verified.

import { careApi } from "../auth-client.js";
import { $, busy } from "../dom.js";

async function resend(e) {
  const done = busy(e.currentTarget, "Sending…");
  const status = $("verify-resend-status");
  status.textContent = "";
  status.classList.remove("error");
  const { error } = await careApi.resendVerification();
  done();
  if (error) {
    status.textContent = error.message;
    status.classList.add("error");
    return;
  }
  status.textContent = "Sent. Check your inbox.";
}

export function initVerify() {
  $("verify-resend").addEventListener("click", resend);
}
