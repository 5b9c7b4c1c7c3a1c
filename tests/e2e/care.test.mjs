// Issue 13, end to end in the real window against the real reference server and its
// mail: a guest deletes itself and everything (a new empty guest follows); a guest asking
// for an export gets the upgrade form with the reason; an account's export is a JSON file
// holding every note; a forgotten password is reset through the mailed link (by HTTP, as
// the server's page posts it) and the app signs in with the new one.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { By, newDevice, startDriver, startServer, screenshot, visible, sql, until, withApp, noteBodies, writeNote } from "./harness.mjs";
import { linkToken, startSmtp } from "./smtp-sink.mjs";

const PASSWORD = "correct-horse-42";

// Read in one script, not element by element: a sync pass may redraw the list between
// two reads (a stale element otherwise).

async function waitUpToDate(app) {
  const sync = await app.findElement(By.css("#sync-status"));
  await app.wait(async () => (await sync.getAttribute("data-state")) === "upToDate", 15000, "sync never reached up to date");
}


/** The token of the next mailed link to `route` (other mails, e.g. verification, skipped). */
async function nextLink(smtp, route) {
  for (;;) {
    const token = linkToken(await smtp.next(), route);
    if (token) return token;
  }
}

test("account care in the real window", async (t) => {
  const smtp = await startSmtp();
  const server = await startServer(`smtpUrl = "${smtp.url}"\n`);
  const backend = { GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" };
  const drivers = [];
  const deviceWithDriver = async (extra = {}) => {
    const device = newDevice();
    const driver = await startDriver({ ...device.env, ...backend, ...extra });
    drivers.push(driver);
    return { device, driver };
  };
  try {
    await t.test("delete guest and its data → a new, empty guest", async () => {
      const { device, driver } = await deviceWithDriver();
      await withApp(driver, "care-delete-guest", async (app) => {
        await visible(app, "#guest-banner");
        await waitUpToDate(app);
        const oldId = await app.findElement(By.css("#user-id")).getText();
        await writeNote(app, "A guest note to delete");
        await writeNote(app, "Another one");

        await app.findElement(By.css("#account-menu-button")).click();
        await (await visible(app, "#guest-delete")).click();
        const lead = await visible(app, "#delete-dialog #delete-lead");
        await app.wait(until.elementTextMatches(lead, /2 notes, 0 preferences/), 10000);
        assert.equal(await app.findElement(By.css("#delete-title")).getText(), "Delete guest and its data");
        const submit = await app.findElement(By.css("#delete-submit"));
        assert.equal(await submit.isEnabled(), false, "needs the explicit confirmation first");
        assert.equal(await app.findElement(By.css("#delete-password-box")).isDisplayed(), false, "a guest has no password");
        await app.findElement(By.css("#delete-confirm")).click();
        assert.equal(await submit.isEnabled(), true);
        await screenshot(app, "care-delete-guest-confirm");
        await submit.click();

        const id = await app.findElement(By.css("#user-id"));
        await app.wait(async () => (await id.getText()) !== oldId, 15000, "no new guest");
        assert.equal(await app.findElement(By.css("#account-kind")).getText(), "Guest");
        await visible(app, "#notes-empty");
        assert.deepEqual(await noteBodies(app), []);
        assert.match(await app.findElement(By.css("#status")).getText(), /deleted/);
        await screenshot(app, "care-delete-guest-done");
        assert.equal(sql(device.dataDir, `SELECT COUNT(*) FROM users WHERE id = '${oldId}'`), "0");
        assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM notes"), "0");
      });
    });

    await t.test("export as a guest → the upgrade form with the reason", async () => {
      const { driver } = await deviceWithDriver();
      await withApp(driver, "care-export-guest", async (app) => {
        await visible(app, "#guest-banner");
        await writeNote(app, "Not exportable as a guest");
        await app.findElement(By.css("#account-menu-button")).click();
        await (await visible(app, "#account-export")).click();
        await visible(app, "#upgrade-form");
        const reason = await visible(app, "#upgrade-reason");
        assert.equal(await reason.getText(), "Create an account to export your notes");
        await screenshot(app, "care-export-guest-upgrade-form");
      });
    });

    await t.test("export as an account → a JSON file holding every note", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "guestpass-e2e-export-"));
      const file = path.join(dir, "export.json");
      const { driver } = await deviceWithDriver({ GUESTPASS_EXPORT_PATH: file });
      await withApp(driver, "care-export-account", async (app) => {
        await visible(app, "#guest-banner");
        await waitUpToDate(app);
        const notes = ["First note to export", "Second note to export"];
        for (const n of notes) await writeNote(app, n);
        await app.findElement(By.css("#create-account")).click();
        await visible(app, "#upgrade-form");
        await app.findElement(By.css("#upgrade-email")).sendKeys("exporter@example.com");
        await app.findElement(By.css("#upgrade-password")).sendKeys(PASSWORD);
        await app.findElement(By.css("#upgrade-submit")).click();
        const kind = await visible(app, "#account-kind");
        await app.wait(until.elementTextIs(kind, "exporter@example.com"), 15000);

        await app.findElement(By.css("#account-menu-button")).click();
        await (await visible(app, "#account-export")).click();
        const status = await app.findElement(By.css("#status"));
        await app.wait(until.elementTextMatches(status, /exported to/), 15000);
        await screenshot(app, "care-export-account-done");
      });
      assert.ok(existsSync(file), "the export file was written");
      const out = JSON.parse(readFileSync(file, "utf8"));
      assert.equal(out.user.email, "exporter@example.com");
      const bodies = out.notes.map((n) => n.body).sort();
      assert.deepEqual(bodies, ["First note to export", "Second note to export"]);
      assert.ok(Array.isArray(out.audit) && out.audit.length > 0);
      assert.doesNotMatch(JSON.stringify(out), new RegExp(PASSWORD));
    });

    await t.test("forgot password → mail → reset by HTTP → sign in with the new password", async () => {
      const email = "forgetful@example.com";
      const guest = await server.post("/sign-in/anonymous", {});
      const up = await server.post("/anonymous/upgrade", { email, password: PASSWORD }, guest.body.token);
      assert.equal(up.status, 200, JSON.stringify(up.body));
      const { driver } = await deviceWithDriver();
      await withApp(driver, "care-forgot-password", async (app) => {
        await visible(app, "#guest-banner");
        await app.findElement(By.css("#sign-in-open")).click();
        await (await visible(app, "#sign-in-email")).sendKeys(email);
        await app.findElement(By.css("#forgot-password")).click();
        const field = await visible(app, "#forgot-email");
        assert.equal(await field.getAttribute("value"), email, "the address carried over");
        assert.equal(await app.findElement(By.css("#forgot-password")).getAttribute("aria-expanded"), "true");
        await app.findElement(By.css("#forgot-submit")).click();
        const sent = await visible(app, "#forgot-sent");
        assert.equal(await sent.getText(), "If an account exists for that address, a link is on its way.");
        await screenshot(app, "care-forgot-password-sent");

        const token = await nextLink(smtp, "/reset-password");
        const newPassword = "a-new-password-after-reset";
        const reset = await server.post("/reset-password", { token, newPassword });
        assert.equal(reset.status, 200, JSON.stringify(reset.body));

        await app.findElement(By.css("#forgot-back")).click();
        await visible(app, "#sign-in-form");
        const pw = await app.findElement(By.css("#sign-in-password"));
        await pw.clear();
        await pw.sendKeys(newPassword);
        await app.findElement(By.css("#sign-in-submit")).click();
        const kind = await visible(app, "#account-kind");
        await app.wait(until.elementTextIs(kind, email), 15000);
        await screenshot(app, "care-forgot-password-signed-in");
      });
    });
  } finally {
    for (const d of drivers) await d.stop();
    await server.stop();
    await smtp.stop();
  }
});
