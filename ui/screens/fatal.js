// The screen shown when the app cannot start (no keyring, damaged or read-only data
// file, full disk): what happened, what to do, and "Try again" without a restart.

import { $ } from "../dom.js";

// What to tell a person for each code that stops the app from starting.
const FATAL_HINTS = {
  KEYRING_UNAVAILABLE:
    "Guestpass keeps your session token only in the system keyring, never in a file, so it will not start a guest without one. Once the keyring runs, press Try again.",
  KEYRING_LOCKED:
    "Guestpass keeps your session token only in the system keyring, never in a file. Unlock the keyring (sign in to your desktop session again, or open your passwords app), then press Try again.",
  DATABASE_CORRUPT: "Your data file was not changed. Move it aside to start fresh, or restore it from a backup, then press Try again.",
  DATABASE_READ_ONLY: "Nothing was changed. Check that the disk has free space and the data folder can be written, then press Try again.",
  DISK_FULL: "Nothing was changed and everything saved before is intact. Free some space on the disk, then press Try again.",
  DATABASE_TOO_NEW: "Your notes are all still in that file. An older Guestpass cannot read what a newer one wrote, so keep the newer version installed.",
};

export function showFatal(error) {
  $("loading").hidden = true;
  $("shell").hidden = true;
  const fatal = $("fatal");
  fatal.dataset.code = error.code;
  $("fatal-message").textContent = error.message;
  $("fatal-hint").textContent = FATAL_HINTS[error.code] ?? "";
  // Trying again cannot help an older app: only installing the newer one does.
  const retry = $("fatal-retry");
  retry.hidden = error.code === "DATABASE_TOO_NEW";
  fatal.hidden = false;
  if (!retry.hidden) retry.focus();
}

export function initFatal(retry) {
  $("fatal-retry").addEventListener("click", () => {
    $("fatal").hidden = true;
    $("loading").hidden = false;
    retry();
  });
}
