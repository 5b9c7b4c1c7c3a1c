// Issue 4, end to end in the real window against the real reference server: a guest
// writes a note, is told "Email already in use" for a taken email, then upgrades in
// place with a fresh one — same user id, same note, after a restart too.

import { test } from "node:test";
import assert from "node:assert/strict";
import { By, newDevice, startDriver, startServer, launchApp, screenshot, visible, sql, until } from "./harness.mjs";

test("a guest upgrades in place from the banner's form", async () => {
  const server = await startServer();
  const device = newDevice();
  const driver = await startDriver({ ...device.env, GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" });
  try {
    // Someone already owns taken@example.com on the server.
    const other = await server.post("/sign-in/anonymous", {});
    assert.equal(other.status, 200);
    const taken = await server.post("/anonymous/upgrade", { email: "taken@example.com", password: "another-password" }, other.body.token);
    assert.equal(taken.status, 200);

    let app = await launchApp(driver);
    let userId;
    try {
      await visible(app, "#guest-banner");
      userId = await (await visible(app, "#user-id")).getText();
      const sync = await app.findElement(By.css("#sync-status"));
      await app.wait(async () => (await sync.getAttribute("data-state")) === "upToDate", 15000, "sync never reached up to date");

      await app.findElement(By.css("#note-input")).sendKeys("Plan the trip to Lisbon");
      await app.findElement(By.css("#note-add")).click();
      await visible(app, "#notes-list li.note");

      await app.findElement(By.css("#create-account")).click();
      await visible(app, "#upgrade-form");
      const email = await app.findElement(By.css("#upgrade-email"));
      const password = await app.findElement(By.css("#upgrade-password"));

      // Caught on the device, before any request.
      await email.sendKeys("not-an-email");
      await password.sendKeys("securePassword123");
      await app.findElement(By.css("#upgrade-submit")).click();
      const error = await visible(app, "#upgrade-error");
      assert.equal(await error.getText(), "Invalid email");

      // Refused by the server, in the spec's words.
      await email.clear();
      await email.sendKeys("taken@example.com");
      await app.findElement(By.css("#upgrade-submit")).click();
      await app.wait(until.elementTextIs(error, "Email already in use"), 15000);
      assert.equal(await error.getAttribute("data-code"), "EMAIL_ALREADY_IN_USE");
      await screenshot(app, "upgrade-email-taken");

      await email.clear();
      await email.sendKeys("jane@example.com");
      await app.findElement(By.css("#upgrade-submit")).click();
      const verify = await visible(app, "#verify-note");
      assert.match(await verify.getText(), /Check your inbox to verify jane@example\.com/);
      assert.equal(await app.findElement(By.css("#guest-banner")).isDisplayed(), false);
      assert.equal(await app.findElement(By.css("#user-id")).getText(), userId, "same user id");
      assert.equal(await app.findElement(By.css("#account-kind")).getText(), "jane@example.com");
      await screenshot(app, "upgraded");
    } finally {
      await app.quit();
    }

    app = await launchApp(driver);
    try {
      const kind = await visible(app, "#account-kind");
      await app.wait(until.elementTextIs(kind, "jane@example.com"), 10000);
      assert.equal(await app.findElement(By.css("#user-id")).getText(), userId);
      assert.equal(await app.findElement(By.css("#guest-banner")).isDisplayed(), false);
      const bodies = await Promise.all((await app.findElements(By.css("#notes-list .note-body"))).map((e) => e.getText()));
      assert.deepEqual(bodies, ["Plan the trip to Lisbon"]);
      await screenshot(app, "upgraded-relaunch");
    } finally {
      await app.quit();
    }
    assert.equal(sql(device.dataDir, "SELECT COUNT(*) || ':' || MIN(is_anonymous) || ':' || MIN(email) FROM users"), "1:0:jane@example.com");
  } finally {
    await driver.stop();
    await server.stop();
  }
});
