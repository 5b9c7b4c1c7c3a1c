// Issue 16, end to end in two real windows against one real reference server: a guest
// writes notes, opens "Save my guest", reads the warning, shows its 12 words and QR
// code; a fresh install on another data folder is offered "Restore your guest" on its
// empty first screen, names a mistyped word, then restores with the phrase and shows
// the same user id and the notes. The phrase is in no file of either data folder.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { By, newDevice, startDriver, startServer, screenshot, visible, until, waitPill, withApp, writeNote } from "./harness.mjs";

const NOTES = ["Passport is in the blue drawer", "Call the vet on Friday"];

const noteBodies = (app) =>
  app.executeScript("return [...document.querySelectorAll('#notes-list .note-body')].map((e) => e.textContent).sort();");

/** Every byte under a data folder (database, WAL, logs, settings). */
function folderText(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(path.join(e.parentPath ?? e.path, e.name)).toString("latin1"))
    .join("\n");
}

test("a guest's recovery phrase restores it with its notes on another install", async () => {
  const server = await startServer();
  const backend = { GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" };
  const a = newDevice();
  const b = newDevice();
  const driverA = await startDriver({ ...a.env, ...backend });
  const driverB = await startDriver({ ...b.env, ...backend });
  let words = [];
  let userId = "";
  try {
    await withApp(driverA, "recovery-a", async (app) => {
      userId = await (await visible(app, "#user-id")).getText();
      for (const body of NOTES) await writeNote(app, body);
      assert.deepEqual(await noteBodies(app), [...NOTES].sort());
      await waitPill(app, "upToDate", 0);

      await (await visible(app, "#account-menu-button")).click();
      await (await visible(app, "#phrase-open")).click();
      const dialog = await visible(app, "#phrase-dialog");
      // The warning comes first; the words only on a second, deliberate click.
      assert.match(await (await app.findElement(By.css("#phrase-warning"))).getText(), /^Anyone who has your recovery phrase can open this guest/);
      assert.equal(await (await app.findElement(By.css("#phrase-shown"))).isDisplayed(), false);
      await app.findElement(By.css("#phrase-reveal")).click();
      await visible(app, "#phrase-words li");
      words = await app.executeScript("return [...document.querySelectorAll('#phrase-words li')].map((li) => li.textContent);");
      assert.equal(words.length, 12);
      assert.ok(words.every((w) => /^[a-z]+$/.test(w)), JSON.stringify(words.length));
      const qr = await app.findElement(By.css("#phrase-qr"));
      assert.match(await qr.getAttribute("src"), /^data:image\/svg\+xml/);
      assert.equal(await qr.getAttribute("alt"), "Your recovery phrase as a QR code");
      await screenshot(app, "recovery-phrase-shown");
      // Closing takes the words out of the page.
      await app.findElement(By.css("#phrase-close")).click();
      await app.wait(async () => !(await dialog.isDisplayed()), 5000);
      assert.equal(await app.executeScript("return document.querySelectorAll('#phrase-words li').length;"), 0);
    });

    await withApp(driverB, "recovery-b", async (app) => {
      // A fresh install: an empty guest, offered the restore beside starting anew.
      const offer = await visible(app, "#restore-offer");
      assert.match(await offer.getText(), /Used Guestpass before\?/);
      assert.notEqual(await (await app.findElement(By.css("#user-id"))).getText(), userId);
      await app.findElement(By.css("#restore-offer-open")).click();
      await visible(app, "#restore-dialog");
      const field = await app.findElement(By.css("#restore-phrase"));

      // A mistyped word is named, tied to the field, and nothing changes.
      const typo = [...words];
      typo[6] = `${typo[6]}q`;
      await field.sendKeys(typo.join(" "));
      await app.findElement(By.css("#restore-submit")).click();
      const error = await visible(app, "#restore-phrase-error");
      assert.equal(await error.getText(), "Word 7 is not on the list of recovery words. Check its spelling.");
      assert.equal(await error.getAttribute("data-code"), "INVALID_RECOVERY_PHRASE");
      assert.equal(await field.getAttribute("aria-invalid"), "true");
      assert.match(await field.getAttribute("aria-describedby"), /restore-phrase-error/);
      await screenshot(app, "recovery-typo-named");

      // The phrase, typed with capitals, commas and extra spaces: the guest comes back.
      await field.clear();
      await field.sendKeys(words.map((w, i) => (i % 4 === 3 ? `${w.toUpperCase()},  ` : `${w} `)).join(""));
      await app.findElement(By.css("#restore-submit")).click();
      const idShown = await app.findElement(By.css("#user-id"));
      await app.wait(until.elementTextIs(idShown, userId), 20000, "the restored guest's id never showed");
      await app.wait(async () => JSON.stringify(await noteBodies(app)) === JSON.stringify([...NOTES].sort()), 20000, "the notes never came down");
      assert.match(await (await app.findElement(By.css("#status"))).getText(), /Your guest is back/);
      assert.equal(await (await app.findElement(By.css("#restore-offer"))).isDisplayed(), false);
      await waitPill(app, "upToDate", 0);
      await screenshot(app, "recovery-restored-notes");
    });

    // The phrase is in no file of either data folder.
    const phrase = words.join(" ");
    for (const dir of [a.dataDir, b.dataDir]) {
      assert.equal(folderText(dir).includes(phrase), false, `the phrase reached a file in ${dir}`);
    }
  } finally {
    await driverA.stop();
    await driverB.stop();
    await server.stop();
  }
});
