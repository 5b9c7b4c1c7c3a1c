// Guest recovery (issue 16): "Save my guest" shows the guest's recovery phrase (12
// words and a QR code) after a plain warning, and can replace it; "Restore a guest"
// takes a phrase on a fresh install, from the sign-in form, or after the keyring lost
// this device's keys, then asks the usual question if the guest here has notes. Two
// banners: the keys were lost (offers the phrase), and the server had forgotten this
// guest (said once, dismissed with OK).

import { recoveryApi } from "../auth-client.js";
import { $, busy, clearErrors, showError } from "../dom.js";
import { onRender, setPanel, state } from "../state.js";
import { switchTo } from "../switch-account.js";
import { askMerge } from "./merge.js";
import { closeAccountMenu } from "./account-menu.js";

const phraseDialog = () => $("phrase-dialog");
const restoreDialog = () => $("restore-dialog");
const phraseField = () => $("restore-phrase");

// ---- Save my guest ----------------------------------------------------------------

function clearPhrase() {
  // The words leave the page when the dialog closes: nothing secret stays in the DOM.
  $("phrase-words").replaceChildren();
  $("phrase-qr").removeAttribute("src");
  $("phrase-shown").hidden = true;
  $("phrase-reveal-step").hidden = false;
  $("phrase-new").hidden = true;
  $("phrase-new-confirm").hidden = true;
  $("phrase-error").hidden = true;
  $("phrase-progress").hidden = true;
}

function showWords(view) {
  const items = view.words.map((w) => {
    const li = document.createElement("li");
    li.textContent = w;
    return li;
  });
  $("phrase-words").replaceChildren(...items);
  $("phrase-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(view.qrSvg)}`;
  $("phrase-reveal-step").hidden = true;
  $("phrase-shown").hidden = false;
  $("phrase-new").hidden = false;
  $("phrase-words").focus();
}

async function reveal(load, btn, label) {
  $("phrase-error").hidden = true;
  const done = busy(btn, label);
  $("phrase-progress").textContent = label;
  $("phrase-progress").hidden = false;
  const { data, error } = await load();
  done();
  $("phrase-progress").hidden = true;
  if (error) return showError($("phrase-error"), error);
  showWords(data);
}

export function openPhrase() {
  closeAccountMenu();
  clearPhrase();
  phraseDialog().showModal();
  $("phrase-reveal").focus();
}

function closePhrase() {
  clearPhrase();
  phraseDialog().close();
  $("account-menu-button").focus();
}

// ---- Restore a guest --------------------------------------------------------------

function clearRestoreErrors() {
  clearErrors([$("restore-phrase-error"), $("restore-error")], [phraseField()]);
}

/** Opens the restore form; `why` replaces its lead (the keyring lost the keys). */
export function openRestore(why = null) {
  closeAccountMenu();
  if (state.panel === "signIn") setPanel(null);
  clearRestoreErrors();
  phraseField().value = "";
  $("restore-lead").textContent = why ?? $("restore-lead").dataset.default;
  restoreDialog().showModal();
  phraseField().focus();
}

function closeRestore() {
  phraseField().value = "";
  restoreDialog().close();
}

async function submitRestore(e) {
  e.preventDefault();
  clearRestoreErrors();
  const typed = phraseField().value;
  if (!typed.trim()) {
    showError($("restore-phrase-error"), { code: "INVALID_RECOVERY_PHRASE", message: "Enter the 12 words of your recovery phrase." }, phraseField());
    return phraseField().focus();
  }
  const done = busy($("restore-submit"), "Restoring…");
  $("restore-cancel").disabled = true;
  $("restore-progress").hidden = false;
  const { data, error } = await recoveryApi.restore(typed);
  done();
  $("restore-cancel").disabled = false;
  $("restore-progress").hidden = true;
  if (error) {
    // A phrase that is not one, or that no guest has: the field is what to fix.
    if (error.code === "INVALID_RECOVERY_PHRASE") {
      showError($("restore-phrase-error"), error, phraseField());
      return phraseField().focus();
    }
    return showError($("restore-error"), error);
  }
  closeRestore();
  if (data.status === "choiceNeeded") return askMerge(data.account, data.guest);
  await switchTo(data.user, "Your guest is back. Its notes are coming down from the server.");
}

// ---- Banners ----------------------------------------------------------------------

function renderBanners({ user, sync }) {
  const lost = user.isAnonymous && sync?.reason?.code === "DEVICE_KEYS_LOST";
  $("keys-lost-banner").hidden = !lost;
  if (lost) $("keys-lost-text").textContent = sync.reason.message;
  $("notice-banner").hidden = !sync?.notice;
  $("notice-text").textContent = sync?.notice ?? "";
  // Where a phrase can work at all: a guest on the reference server (the menu's
  // items say so with data-needs, account-menu.js).
  $("sign-in-restore").hidden = !(user.isAnonymous && !!sync?.recordsOnServer);
  renderRestoreOffer($("notes-list").children.length);
}

export function initRecovery() {
  onRender(renderBanners);
  $("restore-lead").dataset.default = $("restore-lead").textContent;
  $("phrase-open").addEventListener("click", openPhrase);
  $("phrase-reveal").addEventListener("click", (e) => reveal(recoveryApi.phrase, e.currentTarget, "Getting your phrase…"));
  $("phrase-new").addEventListener("click", () => {
    $("phrase-new-confirm").hidden = false;
    $("phrase-new-no").focus();
  });
  $("phrase-new-no").addEventListener("click", () => {
    $("phrase-new-confirm").hidden = true;
    $("phrase-new").focus();
  });
  $("phrase-new-yes").addEventListener("click", async (e) => {
    $("phrase-new-confirm").hidden = true;
    await reveal(recoveryApi.newPhrase, e.currentTarget, "Making a new phrase…");
  });
  $("phrase-close").addEventListener("click", closePhrase);
  phraseDialog().addEventListener("cancel", (e) => {
    e.preventDefault();
    closePhrase();
  });
  for (const id of ["restore-open", "sign-in-restore", "restore-offer-open"]) {
    $(id).addEventListener("click", () => openRestore());
  }
  $("keys-lost-restore").addEventListener("click", () => openRestore(state.sync?.reason?.message ?? null));
  $("restore-form").addEventListener("submit", submitRestore);
  $("restore-cancel").addEventListener("click", closeRestore);
  restoreDialog().addEventListener("cancel", (e) => {
    e.preventDefault();
    if (!$("restore-cancel").disabled) closeRestore();
  });
  $("notice-ok").addEventListener("click", async () => {
    await recoveryApi.dismissNotice();
    $("notice-banner").hidden = true;
    $("note-input").focus();
  });
}

/** The offer on an empty guest's first screen, redrawn whenever the list changes. */
export function renderRestoreOffer(noteCount) {
  const here = !!state.user?.isAnonymous && !!state.sync?.recordsOnServer;
  $("restore-offer").hidden = !here || noteCount > 0;
}
