// Issue 2, end to end in the real window: the guest appears with no form and no
// network, writes a note, and is the same guest with the same note after a restart.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { By, newDevice, startDriver, launchApp, screenshot, visible, sql, until } from "./harness.mjs";

/** Holds `BEGIN IMMEDIATE` on the app's database from a sqlite3 process until released. */
async function holdWriteLock(dataDir) {
  const child = spawn("sqlite3", [path.join(dataDir, "guestpass.db")], { stdio: ["pipe", "pipe", "inherit"] });
  const said = (word) =>
    new Promise((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d) => (out += d).includes(word) && resolve());
      child.on("exit", (code) => reject(new Error(`sqlite3 exited with ${code} before saying ${word}`)));
    });
  const locked = said("locked");
  child.stdin.write(".timeout 10000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n");
  await locked;
  return {
    release: () => {
      const gone = new Promise((resolve) => child.on("exit", resolve));
      child.stdin.end("COMMIT;\n.quit\n");
      return gone;
    },
  };
}

test("a guest's note and identity survive closing and reopening the app", async () => {
  const device = newDevice();
  const driver = await startDriver(device.env);
  try {
    // First launch.
    let app = await launchApp(driver);
    let userId;
    try {
      const banner = await visible(app, "#guest-banner");
      assert.match(await banner.getText(), /You are using a guest account\. Your data will be preserved when you create an account\./);
      assert.equal(await app.findElement(By.css("#create-account")).getText(), "Create Account");
      userId = await app.findElement(By.css("#user-id")).getText();
      assert.match(userId, /^usr_[0-9A-HJKMNP-TV-Z]{26}$/);

      const input = await app.findElement(By.css("#note-input"));
      await input.sendKeys("Buy oat milk before Friday");
      await app.findElement(By.css("#note-add")).click();
      const note = await visible(app, "#notes-list li.note .note-body");
      assert.equal(await note.getText(), "Buy oat milk before Friday");
      assert.equal(await input.getAttribute("value"), "", "the box is cleared after saving");
      await screenshot(app, "guest-first-launch");

      // Typing on while a note saves: only the saved words leave the box. Another
      // process holds the database's write lock, so the save is still waiting
      // while the person types on (as on a slow or busy disk).
      const lock = await holdWriteLock(device.dataDir);
      await input.sendKeys("Call the vet");
      await app.findElement(By.css("#note-add")).click();
      await input.sendKeys(" on Friday");
      await lock.release();
      await app.wait(async () => (await app.findElements(By.css("#notes-list li.note"))).length === 2, 10000, "the second note never showed");
      assert.equal(await input.getAttribute("value"), " on Friday", "what was typed during the save is still in the box");
      await (await app.findElement(By.xpath("//li[contains(@class,'note')][.//*[contains(@class,'note-body')][normalize-space()='Call the vet']]//button[contains(@class,'note-delete')]"))).click();
      await app.wait(async () => (await app.findElements(By.css("#notes-list li.note"))).length === 1, 10000);
      await input.clear();
    } finally {
      await app.quit();
    }

    // Second launch: the same guest resumes; nothing new is created.
    app = await launchApp(driver);
    try {
      await visible(app, "#guest-banner");
      const idEl = await visible(app, "#user-id");
      await app.wait(until.elementTextMatches(idEl, /^usr_/), 10000);
      assert.equal(await idEl.getText(), userId, "same user id after restart");
      const bodies = await Promise.all(
        (await app.findElements(By.css("#notes-list li.note .note-body"))).map((e) => e.getText()),
      );
      assert.deepEqual(bodies, ["Buy oat milk before Friday"]);
      await screenshot(app, "guest-relaunch");
    } finally {
      await app.quit();
    }

    assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM users"), "1", "no second guest in the database");
    assert.equal(sql(device.dataDir, "SELECT id FROM users"), userId);
    assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM sessions"), "1");
  } finally {
    await driver.stop();
  }
});

test("without a keyring the window explains what is missing", async () => {
  const device = newDevice();
  // No Secret Service on this bus: the headless-box case.
  const driver = await startDriver({ ...device.env, DBUS_SESSION_BUS_ADDRESS: "unix:path=/nonexistent/guestpass-no-bus" });
  try {
    const app = await launchApp(driver);
    try {
      const fatal = await visible(app, "#fatal");
      assert.equal(await fatal.getAttribute("data-code"), "KEYRING_UNAVAILABLE");
      assert.match(await app.findElement(By.css("#fatal-hint")).getText(), /keyring/i);
      await screenshot(app, "no-keyring");
    } finally {
      await app.quit();
    }
    assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM users"), "0", "no guest without a place for its token");
  } finally {
    await driver.stop();
  }
});
