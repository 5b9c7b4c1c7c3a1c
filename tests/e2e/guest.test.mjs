// Issue 2, end to end in the real window: the guest appears with no form and no
// network, writes a note, and is the same guest with the same note after a restart.

import { test } from "node:test";
import assert from "node:assert/strict";
import { By, newDevice, startDriver, launchApp, screenshot, visible, sql, until } from "./harness.mjs";

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
