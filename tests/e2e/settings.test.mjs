// Issue 15, end to end in the real window: an app with no server set (an installed
// app's first run) is a guest on this device only; the settings screen refuses an
// address where nothing answers and saves nothing, then points the app at a freshly
// started reference server ("Reached Guestpass server 0.x", its providers listed),
// and the guest registers there with its note. An environment variable that wins
// over the screen is named on it. "Copy diagnostics" holds no secret.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { By, newDevice, startDriver, startOidcProvider, startServer, screenshot, visible, sql, until, waitPill, withApp, writeNote } from "./harness.mjs";

const ADMIN_KEY = "e2e-admin-key-0123456789";
const VERSION = JSON.parse(readFileSync(new URL("../../tauri.conf.json", import.meta.url))).version;

/** A loopback port nobody listens on (bound, then let go). */
const closedPort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

async function openSettings(app) {
  await (await visible(app, "#account-menu-button")).click();
  await (await visible(app, "#settings-open")).click();
  await visible(app, "#settings-dialog");
  // The dialog fills itself from the core: wait for the version line.
  const version = await app.findElement(By.css("#settings-version"));
  await app.wait(until.elementTextIs(version, `Guestpass ${VERSION}`), 10000);
}

async function setUrl(app, url) {
  const field = await app.findElement(By.css("#settings-url"));
  await field.clear();
  await field.sendKeys(url);
}

const text = async (app, css) => (await app.findElement(By.css(css))).getText();

test("the settings screen checks a server before saving and the guest registers there", async () => {
  const idp = await startOidcProvider();
  const server = await startServer(`[socialProviders.mock]\nclientId = "guestpass-app"\nissuer = "${idp.issuer}"\n`);
  const device = newDevice();
  const driver = await startDriver(device.env);
  const settingsFile = path.join(device.dataDir, "settings.json");
  try {
    await withApp(driver, "settings", async (app) => {
      const pill = await visible(app, "#sync-status");
      await app.wait(until.elementTextIs(pill, "On this device only"), 10000);
      const userId = await text(app, "#user-id");
      await app.findElement(By.css("#note-input")).sendKeys("Written before any server");
      await app.findElement(By.css("#note-add")).click();
      await visible(app, "#notes-list li.note");

      await openSettings(app);
      assert.equal(await text(app, "#settings-in-effect"), "No server: everything stays on this device");
      assert.equal(await text(app, "#settings-data-dir"), device.dataDir);
      assert.equal(await (await app.findElement(By.css("#settings-override"))).isDisplayed(), false);

      // Nothing answers: the field says so, and nothing is saved.
      await setUrl(app, `http://127.0.0.1:${await closedPort()}`);
      await app.findElement(By.css("#settings-save")).click();
      const urlError = await visible(app, "#settings-url-error");
      assert.match(await urlError.getText(), /^Nothing answers there\./);
      assert.equal(await urlError.getAttribute("data-code"), "BACKEND_UNREACHABLE");
      const field = await app.findElement(By.css("#settings-url"));
      assert.equal(await field.getAttribute("aria-invalid"), "true");
      assert.match(await field.getAttribute("aria-describedby"), /settings-url-error/);
      await screenshot(app, "settings-nothing-answers");
      assert.equal(existsSync(settingsFile), false, "a failed check saves nothing");
      assert.equal(await text(app, "#settings-in-effect"), "No server: everything stays on this device");

      // Not a web address: named before any request.
      await setUrl(app, "auth.example.com");
      await app.findElement(By.css("#settings-check")).click();
      await app.wait(until.elementTextMatches(urlError, /is not a web address/), 10000);

      // The real server: checked, then saved; the sync moves there at once.
      await setUrl(app, server.url);
      await app.findElement(By.css("#settings-check")).click();
      const reached = await visible(app, "#settings-reached");
      await app.wait(until.elementTextIs(reached, `Reached Guestpass server ${VERSION}. It offers sign-in with Mock.`), 10000);
      assert.equal(await urlError.isDisplayed(), false);
      assert.equal(existsSync(settingsFile), false, "a check alone saves nothing");
      await app.findElement(By.css("#settings-save")).click();
      await app.wait(until.elementTextMatches(reached, /Saved\. Syncing with /), 15000);
      assert.equal(await text(app, "#settings-in-effect"), `${server.url} (Guestpass server)`);
      assert.equal(await text(app, "#settings-providers"), "Mock");
      await screenshot(app, "settings-reached");
      const saved = JSON.parse(readFileSync(settingsFile, "utf8"));
      assert.equal(saved.backendUrl, server.url);
      assert.equal(saved.backendDialect, "guestpass");
      assert.deepEqual(saved.socialProviders, [{ name: "mock", issuer: idp.issuer, clientId: "guestpass-app" }]);

      // Copy diagnostics: versions, the server, the sync state; never a secret.
      await app.findElement(By.css("#settings-diagnostics")).click();
      const box = await visible(app, "#settings-diagnostics-text");
      await app.wait(async () => (await box.getAttribute("value")).includes("Guestpass diagnostics"), 10000);
      const diagnostics = await box.getAttribute("value");
      assert.match(diagnostics, new RegExp(`App: ${VERSION.replaceAll(".", "\\.")} `));
      assert.ok(diagnostics.includes(`Server: ${server.url} (Guestpass)`), diagnostics);
      assert.ok(diagnostics.includes(`User: guest ${userId}`), diagnostics);
      assert.match(await text(app, "#settings-diagnostics-status"), /Diagnostics copied|Press Ctrl\+C/);
      await app.findElement(By.css("#settings-close")).click();

      // The guest registered on the server under its own id, and its note went up.
      await app.wait(async () => (await pill.getAttribute("data-state")) === "upToDate" && (await pill.getAttribute("data-pending")) === "0", 20000, "never up to date on the new server");
      const res = await fetch(`${server.url}/api/auth/admin/list-users?limit=50`, { headers: { "x-api-key": ADMIN_KEY } });
      const users = (await res.json()).data;
      assert.deepEqual(users.map((u) => [u.id, u.isAnonymous]), [[userId, true]]);
      assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM record_outbox"), "0", "the note was pushed");
      // The upgrade form offers the server's provider, with no client id typed in.
      await (await visible(app, "#create-account")).click();
      await visible(app, "#social button");
      assert.match(await text(app, "#social"), /Continue with Mock/);
    });

    // A relaunch keeps the saved server; "Work offline only" stops syncing and keeps
    // the address for the day it is unticked.
    await withApp(driver, "settings-relaunch", async (app) => {
      const pill = await visible(app, "#sync-status");
      await app.wait(async () => (await pill.getAttribute("data-state")) === "upToDate", 20000, "the saved server is used after a relaunch");
      await openSettings(app);
      await app.findElement(By.css("#settings-offline")).click();
      assert.equal(await app.findElement(By.css("#settings-url")).isEnabled(), false, "the address is not used while offline only");
      await app.findElement(By.css("#settings-save")).click();
      const reached = await visible(app, "#settings-reached");
      await app.wait(until.elementTextIs(reached, "Saved. Everything stays on this device."), 10000);
      assert.deepEqual(
        (({ backendUrl, offlineOnly }) => ({ backendUrl, offlineOnly }))(JSON.parse(readFileSync(settingsFile, "utf8"))),
        { backendUrl: server.url, offlineOnly: true },
      );
      await app.findElement(By.css("#settings-close")).click();
      await app.wait(until.elementTextIs(pill, "On this device only"), 10000);
      // The wait is on the note itself: the pill said "No server is set" before it was saved.
      await writeNote(app, "Written offline only");
      await app.wait(
        async () => (await pill.getAttribute("data-pending")) === "1" && (await pill.getAttribute("title")).startsWith("No server is set"),
        10000,
        "the note written offline is not counted as waiting",
      );
      assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM record_outbox"), "1", "kept for later, not sent");

      await openSettings(app);
      await app.findElement(By.css("#settings-offline")).click();
      await app.findElement(By.css("#settings-save")).click();
      await app.wait(until.elementTextMatches(reached, /^Reached Guestpass server .* Saved\. Syncing with /), 15000);
      await app.findElement(By.css("#settings-close")).click();
      await app.wait(async () => (await pill.getAttribute("data-state")) === "upToDate" && (await pill.getAttribute("data-pending")) === "0", 20000, "the note written offline went up");
    });
  } finally {
    await driver.stop();
    await server.stop();
    await idp.stop();
  }
});

test("an environment variable that wins over the settings screen is named on it", async () => {
  const server = await startServer();
  const device = newDevice();
  const driver = await startDriver({ ...device.env, GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" });
  try {
    await withApp(driver, "settings-override", async (app) => {
      // The app is using the environment's server (and has settled: a click on the
      // account button in the window's first moments was lost about one run in five).
      await waitPill(app, "upToDate", 0);
      await openSettings(app);
      const override = await visible(app, "#settings-override");
      assert.equal(
        await override.getText(),
        `Set by the environment, which wins over this screen: GUESTPASS_BACKEND_URL=${server.url}, GUESTPASS_BACKEND_DIALECT=guestpass.`,
      );
      assert.equal(await text(app, "#settings-in-effect"), `${server.url} (Guestpass server)`);
      await screenshot(app, "settings-override");
    });
  } finally {
    await driver.stop();
    await server.stop();
  }
});
