// Issue 7 in the real window: the data dir turns read-only (a real tmpfs remounted ro).
// The app says why it cannot start, in words and with the typed code, and the guest's
// note is still there once the disk can be written again and the person presses Try again. Needs root to mount.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { By, newDevice, startDriver, launchApp, screenshot, visible, sql } from "./harness.mjs";

const mount = (...args) => execFileSync("mount", args, { stdio: ["ignore", "ignore", "pipe"] });

// The app may still be closing its files when quit() returns; a ro remount waits for
// that (the kernel refuses it while a file is open for writing). Poll, with a deadline.
async function remountReadOnly(dir, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return mount("-o", "remount,ro", dir);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

test("a read-only data dir: the window says why and the note is kept", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("needs root to mount a tmpfs for the data dir");
  const device = newDevice();
  mount("-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", device.dataDir);
  const driver = await startDriver(device.env);
  try {
    let app = await launchApp(driver);
    try {
      await visible(app, "#guest-banner");
      await app.findElement(By.css("#note-input")).sendKeys("Written before the disk went read-only");
      await app.findElement(By.css("#note-add")).click();
      await visible(app, "#notes-list li.note .note-body");
    } finally {
      await app.quit();
    }

    await remountReadOnly(device.dataDir);
    app = await launchApp(driver);
    try {
      const fatal = await visible(app, "#fatal");
      assert.equal(await fatal.getAttribute("data-code"), "DATABASE_READ_ONLY");
      assert.match(await app.findElement(By.css("#fatal-message")).getText(), /cannot be written/);
      assert.match(await app.findElement(By.css("#fatal-hint")).getText(), /data folder can be written/);
      await screenshot(app, "read-only-data-dir");

      // The person fixes the disk and presses "Try again": the same window opens the
      // store now, with the same guest and the note, no restart.
      mount("-o", "remount,rw", device.dataDir);
      await app.findElement(By.css("#fatal-retry")).click();
      await visible(app, "#guest-banner");
      const note = await visible(app, "#notes-list li.note .note-body");
      assert.equal(await note.getText(), "Written before the disk went read-only");
      await screenshot(app, "read-only-then-retry");
    } finally {
      await app.quit();
    }

    assert.equal(sql(device.dataDir, "SELECT body FROM notes"), "Written before the disk went read-only", "nothing lost");
    assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM users"), "1");
  } finally {
    await driver.stop();
    // Lazy, so a process still holding a file cannot keep the mount (or the test) alive.
    execFileSync("umount", ["-l", device.dataDir]);
  }
});

// Issue 15: a newer Guestpass migrated this data file, then the person went back to an
// older one. The older app refuses to open it, says why and what to do, offers no
// "Try again" that could not help, and leaves every byte of the file as it was.
test("a data file from a newer app: the older app refuses it and changes nothing", async () => {
  const device = newDevice();
  const driver = await startDriver(device.env);
  const db = path.join(device.dataDir, "guestpass.db");
  try {
    let app = await launchApp(driver);
    try {
      await visible(app, "#guest-banner");
      await app.findElement(By.css("#note-input")).sendKeys("Written by the newer app");
      await app.findElement(By.css("#note-add")).click();
      await visible(app, "#notes-list li.note .note-body");
    } finally {
      await app.quit();
    }
    // What the newer app's next migration leaves behind: a row this build does not know.
    execFileSync("sqlite3", [db, "PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990101000000, 'from a newer app', 1, X'00', 0); PRAGMA wal_checkpoint(TRUNCATE);"]);
    const before = createHash("sha256").update(readFileSync(db)).digest("hex");

    app = await launchApp(driver);
    try {
      const fatal = await visible(app, "#fatal");
      assert.equal(await fatal.getAttribute("data-code"), "DATABASE_TOO_NEW");
      assert.match(await app.findElement(By.css("#fatal-hint")).getText(), /cannot read what a newer one wrote/);
      assert.equal(await app.findElement(By.css("#fatal-retry")).isDisplayed(), false, "no Try again that cannot help");
      await screenshot(app, "database-too-new");
    } finally {
      await app.quit();
    }
    assert.equal(createHash("sha256").update(readFileSync(db)).digest("hex"), before, "the file is unchanged");
    assert.equal(sql(device.dataDir, "SELECT body FROM notes"), "Written by the newer app");
  } finally {
    await driver.stop();
  }
});
