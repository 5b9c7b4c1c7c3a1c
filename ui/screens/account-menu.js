// The account menu: who is signed in, whether the email is verified, when the data was
// last saved to the server, export, and the two ways to sign out. A guest's menu has
// export (which asks for an account) and "Delete guest and its data", but no sign-out:
// signing a guest out would lose everything it made. Items carry `data-for="account"`
// or `data-for="guest"`; the others are for both. `data-needs="records"` items also
// need a server that keeps records (the guest's recovery phrase).

import { authClient } from "../auth-client.js";
import { $, busy, formatTime } from "../dom.js";
import { onRender } from "../state.js";
import { switchTo } from "../switch-account.js";

const menu = () => $("account-menu");
const toggle = () => $("account-menu-button");

function openMenu(open) {
  menu().hidden = !open;
  toggle().setAttribute("aria-expanded", String(open));
  $("account-menu-error").hidden = true;
  if (open) menu().querySelector("button:not([hidden])")?.focus();
}

function savedLine(sync) {
  if (!sync?.backendUrl) return "Notes are kept on this device only.";
  if (!sync.recordsOnServer) return "This server does not keep notes: they are kept on this device only.";
  if (sync.pendingChanges > 0) return `${sync.pendingChanges === 1 ? "1 change" : `${sync.pendingChanges} changes`} waiting to be saved to the server.`;
  if (sync.lastSavedAt) return `Saved to the server at ${formatTime(sync.lastSavedAt)}.`;
  return "Not saved to the server yet.";
}

/** For a screen the menu opened: the menu closes, and says so to a screen reader. */
export function closeAccountMenu() {
  openMenu(false);
}

function renderMenu({ user, sync }) {
  const full = !user.isAnonymous;
  $("account-kind").textContent = full ? user.email ?? user.name ?? "Account" : "Guest";
  $("user-id").textContent = user.id;
  toggle().setAttribute("aria-label", full ? `Account: ${user.email ?? "account"}, open the account menu` : "Guest account, open the menu");
  // `data-needs="records"`: only where the server keeps the user's records (the
  // recovery phrase lives there too).
  for (const item of menu().querySelectorAll("[data-for]")) {
    item.hidden = item.dataset.for !== (full ? "account" : "guest") || (item.dataset.needs === "records" && !sync?.recordsOnServer);
  }
  const verified = full && user.emailVerified;
  $("account-verified").hidden = !verified;
  $("account-menu-verified").hidden = !verified;
  $("account-menu-email").textContent = full ? user.email ?? user.name ?? "Account" : "Guest";
  $("account-menu-saved").textContent = savedLine(sync);
}

const SIGNED_OUT = {
  keep: "Signed out. Your account's notes stay on this computer, hidden, for your next sign-in. You are a new guest now.",
  remove: "Signed out, and your data was removed from this computer. You are a new guest now.",
};

async function signOut({ removeData, force }, btn) {
  const done = busy(btn, "Signing out…");
  $("account-menu-error").hidden = true;
  $("sign-out-error").hidden = true;
  const { data, error } = await authClient.signOut({ removeData, force });
  done();
  if (error?.code === "UNSYNCED_CHANGES") return askUnsynced(error);
  if (error) {
    const el = $("sign-out-dialog").open ? $("sign-out-error") : $("account-menu-error");
    el.textContent = error.message;
    el.dataset.code = error.code;
    el.hidden = false;
    return;
  }
  if ($("sign-out-dialog").open) $("sign-out-dialog").close();
  openMenu(false);
  await switchTo(data.user, removeData ? SIGNED_OUT.remove : SIGNED_OUT.keep);
  $("note-input").focus();
}

/** Removing would lose changes the server does not hold: the core's message names how many. */
function askUnsynced(error) {
  $("sign-out-message").textContent = error.message;
  $("sign-out-error").hidden = true;
  openMenu(false);
  const dialog = $("sign-out-dialog");
  if (!dialog.open) dialog.showModal();
  $("sign-out-keep").focus();
}

export function initAccountMenu() {
  onRender(renderMenu);
  toggle().addEventListener("click", () => openMenu(menu().hidden));
  menu().addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      openMenu(false);
      toggle().focus();
    }
  });
  document.addEventListener("click", (e) => {
    if (!menu().hidden && !$("account").contains(e.target)) openMenu(false);
  });
  $("sign-out").addEventListener("click", (e) => signOut({ removeData: false, force: false }, e.currentTarget));
  $("sign-out-remove").addEventListener("click", (e) => signOut({ removeData: true, force: false }, e.currentTarget));
  $("sign-out-keep").addEventListener("click", (e) => signOut({ removeData: false, force: false }, e.currentTarget));
  $("sign-out-force").addEventListener("click", (e) => signOut({ removeData: true, force: true }, e.currentTarget));
  $("sign-out-back").addEventListener("click", () => {
    $("sign-out-dialog").close();
    toggle().focus();
  });
}
