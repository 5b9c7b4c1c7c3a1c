// Issue 12, end to end in two real windows against one real reference server: a guest
// writes two notes and creates an account; a fresh install signs in to it and gets the
// notes by itself; both devices edit the same note while the server is down (the pill
// counts the change waiting) and, once it is back, both show one text holding both
// edits — the device that stayed open redraws without being touched.

import { test } from "node:test";
import assert from "node:assert/strict";
import { By, newDevice, startDriver, startServer, launchApp, screenshot, visible, sql, until, waitPill, withApp, writeNote } from "./harness.mjs";

const EMAIL = "sam@example.com";
const PASSWORD = "correct-horse-42";
const SHARED = "Buy oat milk";
const OTHER = "Call the plumber on Tuesday";
const FROM_A = `${SHARED} from A`;
const FROM_B = `B says: ${SHARED}`;
const MERGED = `B says: ${SHARED} from A`;
const NEW = "Seen on the other device at once";

// Read in one script, not element by element: a background redraw replaces the list
// between two WebDriver calls (a stale element) when a pull lands mid-read.
const noteBodies = (app) =>
  app.executeScript("return [...document.querySelectorAll('#notes-list .note-body')].map((e) => e.textContent);");

const sortedBodies = async (app) => (await noteBodies(app)).sort();

async function waitForNotes(app, expected, why) {
  const want = [...expected].sort();
  await app.wait(async () => JSON.stringify(await sortedBodies(app)) === JSON.stringify(want), 20000, why)
    .catch(async (e) => {
      throw new Error(`${e.message}: the list shows ${JSON.stringify(await noteBodies(app))}`);
    });
}

async function waitForAccount(app, text) {
  const kind = await visible(app, "#account-kind");
  await app.wait(until.elementTextIs(kind, text), 15000, `the account never showed ${text}`);
}


/** Edits the note showing `from` to read `to`, through its Edit button. */
async function editNote(app, from, to) {
  const items = await app.findElements(By.css("#notes-list li.note"));
  let item;
  for (const li of items) {
    if ((await li.findElement(By.css(".note-body")).getText()) === from) item = li;
  }
  assert.ok(item, `no note reads ${from}`);
  await item.findElement(By.css(".note-edit")).click();
  const area = await item.findElement(By.css(".note-edit-input"));
  await area.clear();
  await area.sendKeys(to);
  await item.findElement(By.css(".note-save")).click();
  await app.wait(async () => (await noteBodies(app)).includes(to), 10000, "the edit never showed");
}

test("record sync between two devices in the real window", async () => {
  const server = await startServer();
  const backend = { GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" };
  const a = newDevice();
  const b = newDevice();
  const driverA = await startDriver({ ...a.env, ...backend });
  const driverB = await startDriver({ ...b.env, ...backend });
  try {
    // Device A: a guest writes two notes, then creates the account in place.
    const accountId = await withApp(driverA, "records-a-upgrade", async (app) => {
      await visible(app, "#guest-banner");
      await waitPill(app, "upToDate", 0);
      await writeNote(app, SHARED);
      await writeNote(app, OTHER);
      await app.findElement(By.css("#create-account")).click();
      await visible(app, "#upgrade-form");
      await app.findElement(By.css("#upgrade-email")).sendKeys(EMAIL);
      await app.findElement(By.css("#upgrade-password")).sendKeys(PASSWORD);
      await app.findElement(By.css("#upgrade-submit")).click();
      await waitForAccount(app, EMAIL);
      // Both notes reached the server: nothing waits and the pill says when it saved.
      assert.match(await waitPill(app, "upToDate", 0), /^Saved to the server at /);
      return app.findElement(By.css("#user-id")).getText();
    });

    // Device B: a fresh install signs in; A's notes arrive without anyone asking.
    await withApp(driverB, "records-b-sign-in", async (app) => {
      await visible(app, "#guest-banner");
      await waitPill(app, "upToDate", 0);
      assert.deepEqual(await noteBodies(app), [], "a fresh install starts empty");
      await app.findElement(By.css("#sign-in-open")).click();
      await (await visible(app, "#sign-in-email")).sendKeys(EMAIL);
      await app.findElement(By.css("#sign-in-password")).sendKeys(PASSWORD);
      await app.findElement(By.css("#sign-in-submit")).click();
      await waitForAccount(app, EMAIL);
      assert.equal(await app.findElement(By.css("#user-id")).getText(), accountId);
      await waitForNotes(app, [SHARED, OTHER], "A's notes never appeared on B");
      assert.match(await waitPill(app, "upToDate", 0), /^Saved to the server at /);
      await screenshot(app, "records-b-signed-in");
    });

    // The server goes away: each device edits the same note its own way.
    await server.stop();
    await withApp(driverA, "records-a-offline", async (app) => {
      await waitForAccount(app, EMAIL);
      await waitPill(app, "offline", 0);
      await editNote(app, SHARED, FROM_A);
      assert.equal(await waitPill(app, "offline", 1), "Offline · 1 change waiting");
      await screenshot(app, "records-a-offline");
    });
    await withApp(driverB, "records-b-offline", async (app) => {
      await waitForAccount(app, EMAIL);
      await waitPill(app, "offline", 0);
      await editNote(app, SHARED, FROM_B);
      assert.equal(await waitPill(app, "offline", 1), "Offline · 1 change waiting");
      await screenshot(app, "records-b-offline");
    });

    // Back online (same port, same database). A pushes its edit and stays open; then B
    // opens beside it, pushes its own and pulls A's; the server tells A, whose list
    // redraws by itself. Both windows stay open for the last step.
    await server.start();
    const appA = await launchApp(driverA);
    let appB;
    try {
      assert.match(await waitPill(appA, "upToDate", 0), /^Saved to the server at /);
      await waitForNotes(appA, [FROM_A, OTHER], "A lost its offline edit");
      appB = await launchApp(driverB);
      await waitForNotes(appB, [MERGED, OTHER], "B never showed both edits");
      assert.match(await waitPill(appB, "upToDate", 0), /^Saved to the server at /);
      await screenshot(appB, "records-b-merged");
      await waitForNotes(appA, [MERGED, OTHER], "A never redrew with B's edit");
      assert.match(await waitPill(appA, "upToDate", 0), /^Saved to the server at /);
      await screenshot(appA, "records-a-merged");

      // A note written on A reaches the open B in seconds: the write wakes A's sync at
      // once (the fallback poll is a minute, longer than this wait) and B is told live.
      await writeNote(appA, NEW);
      await waitForNotes(appB, [NEW, MERGED, OTHER], "A's new note never reached the open B");
    } catch (e) {
      await screenshot(appA, "records-a-online-FAILED").catch(() => {});
      if (appB) await screenshot(appB, "records-b-online-FAILED").catch(() => {});
      throw e;
    } finally {
      await appA.quit();
      if (appB) await appB.quit();
    }

    // The same text in each device's own file, not only on screen.
    const stored = (dir) => sql(dir, "SELECT body FROM notes ORDER BY body");
    const all = [NEW, MERGED, OTHER].sort().join("\n");
    assert.equal(stored(a.dataDir), all);
    assert.equal(stored(b.dataDir), all);
  } finally {
    await driverA.stop();
    await driverB.stop();
    await server.stop();
  }
});
