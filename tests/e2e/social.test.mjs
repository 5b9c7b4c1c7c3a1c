// Issue 5, end to end in the real window: "Continue with …" goes through the system
// browser (played by play-browser.mjs) and a real OIDC provider to the upgraded view.

import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { By, newDevice, repo, startDriver, startServer, startOidcProvider, launchApp, screenshot, visible, sql, until } from "./harness.mjs";

test("a guest upgrades with a social login through the system browser", async () => {
  const idp = await startOidcProvider();
  const server = await startServer(`[socialProviders.mock]\nclientId = "guestpass-app"\nissuer = "${idp.issuer}"\n`);
  const device = newDevice();
  const driver = await startDriver({
    ...device.env,
    GUESTPASS_BACKEND_URL: server.url,
    GUESTPASS_SOCIAL_PROVIDERS: JSON.stringify([{ name: "mock", issuer: idp.issuer, clientId: "guestpass-app" }]),
    GUESTPASS_BROWSER: path.join(repo, "tests/e2e/play-browser.mjs"),
  });
  try {
    const app = await launchApp(driver);
    try {
      await visible(app, "#guest-banner");
      const userId = await (await visible(app, "#user-id")).getText();
      const sync = await app.findElement(By.css("#sync-status"));
      await app.wait(async () => (await sync.getAttribute("data-state")) === "upToDate", 15000, "sync never reached up to date");
      await app.findElement(By.css("#note-input")).sendKeys("Kept through the social login");
      await app.findElement(By.css("#note-add")).click();
      await visible(app, "#notes-list li.note");

      await app.findElement(By.css("#create-account")).click();
      const button = await visible(app, "#social-buttons button[data-provider='mock']");
      assert.equal(await button.getText(), "Continue with Mock");
      await screenshot(app, "social-form");
      await button.click();

      const kind = await app.findElement(By.css("#account-kind"));
      await app.wait(async () => (await kind.getText()) !== "Guest", 20000, "never left the guest state");
      assert.match(await kind.getText(), /@/);
      assert.equal(await app.findElement(By.css("#guest-banner")).isDisplayed(), false);
      assert.equal(await app.findElement(By.css("#user-id")).getText(), userId, "same user id");
      const bodies = await Promise.all((await app.findElements(By.css("#notes-list .note-body"))).map((e) => e.getText()));
      assert.deepEqual(bodies, ["Kept through the social login"]);
      await screenshot(app, "social-upgraded");
    } finally {
      await app.quit();
    }
    assert.equal(sql(device.dataDir, "SELECT COUNT(*) || ':' || MIN(is_anonymous) FROM users"), "1:0");
  } finally {
    await driver.stop();
    await server.stop();
    await idp.stop();
  }
});
