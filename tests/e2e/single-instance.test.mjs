// Issue 15, one instance per data dir, in the real window: a second launch of the app on
// a data dir whose window is open brings that window to the front and exits 0 with one
// line; the first window keeps answering and stays the only app process on that folder.
// Another data dir is another instance: it opens beside the first.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync, realpathSync } from "node:fs";
import { appBinary, By, newDevice, startDriver, launchApp, screenshot, visible, until } from "./harness.mjs";

const appExe = realpathSync(appBinary);

/** Pids of app processes (the guestpass binary, not WebKit's helpers) started on `dataDir`. */
function appProcessesOn(dataDir) {
  const pids = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, "") !== appExe) continue;
      const env = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
      if (env.includes(`GUESTPASS_DATA_DIR=${dataDir}`)) pids.push(Number(pid));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

/** Polls `probe` until it returns a truthy value, or fails with `what`. */
async function eventually(probe, what, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The app binary started directly, as a person double-clicking it would. */
function launchDirectly(env, ms = 30000) {
  return new Promise((resolve, reject) => {
    const child = spawn(appBinary, [], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`the second launch did not exit within ${ms} ms; it said: ${out}`));
    }, ms);
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    });
  });
}

const hasFocus = (app) => app.executeScript("return document.hasFocus();");

test("a second launch on the same data dir brings the window to the front and exits", { timeout: 240000 }, async () => {
  const a = newDevice();
  const b = newDevice();
  const driverA = await startDriver(a.env);
  const driverB = await startDriver(b.env);
  let appA;
  let appB;
  try {
    appA = await launchApp(driverA);
    await visible(appA, "#guest-banner");
    const idEl = await visible(appA, "#user-id");
    await appA.wait(until.elementTextMatches(idEl, /^usr_/), 10000);
    const userId = await idEl.getText();
    // Count what the app tells its page when a second launch asks for the window.
    await appA.executeAsyncScript(`
      const done = arguments[arguments.length - 1];
      window.__focusRequests = 0;
      window.__TAURI__.event.listen("focus-requested", () => { window.__focusRequests += 1; }).then(() => done());
    `);
    const [pidA] = appProcessesOn(a.dataDir);
    assert.ok(pidA, "the first window's process is found by its data dir");

    // Another data dir is another instance: it opens beside A. Its new window also takes
    // the X input focus from A (no window manager under Xvfb: GTK focuses a presented
    // window itself), which is what lets the hand-over's focus be seen below.
    appB = await launchApp(driverB);
    await visible(appB, "#guest-banner");
    assert.equal(appProcessesOn(b.dataDir).length, 1, "B runs as its own process");
    await eventually(async () => (await hasFocus(appA)) === false, "A never lost the focus to B");

    // The second launch on A's folder.
    const second = await launchDirectly(a.env);
    assert.equal(second.code, 0, `exit status 0; it said: ${second.out}`);
    const lines = second.out.trim().split("\n");
    assert.ok(
      lines.includes(`guestpass: Guestpass is already open on this data folder (${a.dataDir}); brought its window to the front.`),
      `the line; it said: ${second.out}`,
    );

    // A got the request, took the focus back, and still answers.
    await eventually(() => appA.executeScript("return window.__focusRequests === 1;"), "A's page never heard of the second launch");
    await eventually(() => hasFocus(appA), "A's window never took the focus back");
    assert.equal(await hasFocus(appB), false, "B lost it");
    assert.equal(await appA.findElement(By.css("#user-id")).getText(), userId, "the first window still answers");
    assert.deepEqual(appProcessesOn(a.dataDir), [pidA], "exactly one app process has A's folder, the first one");
    assert.equal(appProcessesOn(b.dataDir).length, 1, "B still runs");
    await visible(appB, "#guest-banner");
    await screenshot(appA, "single-instance-focused");
  } catch (e) {
    if (appA) await screenshot(appA, "single-instance-a-FAILED").catch(() => {});
    if (appB) await screenshot(appB, "single-instance-b-FAILED").catch(() => {});
    throw e;
  } finally {
    if (appA) await appA.quit();
    if (appB) await appB.quit();
    await driverA.stop();
    await driverB.stop();
  }
});
