// Shared pieces of the WebDriver tests: start tauri-driver on free ports with the
// environment the app should see, open the real app window, save screenshots, read
// the app's SQLite file.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Builder, By, until } from "selenium-webdriver";

export { By, until };

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, "../..");
export const appBinary = process.env.GUESTPASS_APP_BIN ?? path.join(repo, "target/debug/guestpass");
export const shotsDir = path.join(repo, "target/e2e");

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Readiness, not a sleep: retry a TCP connect until the driver accepts or we give up.
async function waitForPort(port, child, ms = 20000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.end(); resolve(true); });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listened on ${port} within ${ms} ms`);
}

export const serverBinary = process.env.GUESTPASS_SERVER_BIN ?? path.join(repo, "target/debug/guestpass-server");

/** The reference server on a free loopback port with its own SQLite file. */
export async function startServer(configToml = "") {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "guestpass-e2e-server-"));
  writeFileSync(path.join(dir, "server.toml"), configToml);
  const args = ["serve", "--config", path.join(dir, "server.toml"), "--listen", `127.0.0.1:${port}`, "--database", `sqlite://${dir}/server.db`];
  const spawnServer = async () => {
    const c = spawn(serverBinary, args, {
      env: { ...process.env, GUESTPASS_ADMIN_API_KEY: "e2e-admin-key-0123456789", GUESTPASS_SECRET: "e2e-secret" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    await waitForPort(port, c);
    return c;
  };
  let child = await spawnServer();
  const url = `http://127.0.0.1:${port}`;
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", resolve);
    child.kill("SIGTERM");
  });
  return {
    url,
    /** The server's SQLite file, for a test that plays another device (e.g. revoking sessions). */
    dbPath: path.join(dir, "server.db"),
    async post(route, body, token) {
      const res = await fetch(`${url}/api/auth${route}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
    stop,
    /** The same server again after `stop()`: same port, same database (the network came back). */
    async start() {
      await stop();
      child = await spawnServer();
    },
  };
}

/** The real OIDC provider (npm oauth2-mock-server) on a free loopback port. */
export async function startOidcProvider() {
  const child = spawn("node", [path.join(repo, "tests/peers/oidc/server.mjs")], { stdio: ["pipe", "pipe", "inherit"] });
  const ready = await new Promise((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (d) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(JSON.parse(buf.slice(0, nl)));
    });
    child.once("exit", (code) => reject(new Error(`the OIDC provider exited with ${code}`)));
  });
  return {
    issuer: ready.issuer,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once("exit", resolve);
      child.kill("SIGTERM");
    }),
  };
}

/** A stock Better Auth server (npm better-auth, in memory) on a free loopback port. */
export async function startBetterAuth() {
  // stdin stays open: the peer exits when it closes, so it cannot outlive the test.
  const child = spawn("node", [path.join(repo, "tests/peers/better-auth/server.mjs")], { stdio: ["pipe", "pipe", "inherit"] });
  const ready = await new Promise((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (d) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) resolve(JSON.parse(buf.slice(0, nl)));
    });
    child.once("exit", (code) => reject(new Error(`the Better Auth peer exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${ready.port}`;
  return {
    url,
    async post(route, body) {
      const res = await fetch(`${url}/api/auth${route}`, {
        method: "POST",
        // As a browser on the peer's own site would: Better Auth refuses a cookie-less
        // form post without an Origin it trusts.
        headers: { "content-type": "application/json", origin: url },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once("exit", resolve);
      child.kill("SIGTERM");
    }),
  };
}

/** A device: its own data dir and keyring service name. */
export function newDevice() {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "guestpass-e2e-"));
  const keyringService = `guestpass-e2e-${process.pid}-${Date.now()}`;
  return { dataDir, keyringService, env: { GUESTPASS_DATA_DIR: dataDir, GUESTPASS_KEYRING_SERVICE: keyringService } };
}

/** Starts tauri-driver whose app launches get `env` on top of ours. */
export async function startDriver(env = {}) {
  const port = await freePort();
  const nativePort = await freePort();
  const child = spawn("tauri-driver", ["--port", String(port), "--native-port", String(nativePort)], {
    env: { ...process.env, ...env },
    // Pipes of our own, not our stdout: an app window that outlives its driver (seen
    // once when a quit did not take) would otherwise hold node --test's pipe open and
    // the whole run would wait for it forever.
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(process.stdout);
  child.stderr.pipe(process.stderr);
  await waitForPort(port, child);
  const release = () => {
    child.stdout.destroy();
    child.stderr.destroy();
  };
  return {
    url: `http://127.0.0.1:${port}/`,
    // SIGTERM, never SIGKILL: a killed tauri-driver leaves WebKitWebDriver behind.
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve(release());
      child.once("exit", () => resolve(release()));
      child.kill("SIGTERM");
    }),
  };
}

/** Opens the app window: one launch of the app. */
export async function launchApp(driver) {
  return new Builder()
    .usingServer(driver.url)
    .withCapabilities({ browserName: "wry", "tauri:options": { application: appBinary } })
    .build();
}

/** One launch of the app: `fn(app)`, a screenshot named for the step if it fails, then quit. */
export async function withApp(driver, name, fn) {
  const app = await launchApp(driver);
  try {
    return await fn(app);
  } catch (e) {
    await screenshot(app, `${name}-FAILED`).catch(() => {});
    throw e;
  } finally {
    await app.quit();
  }
}

export async function screenshot(session, name) {
  mkdirSync(shotsDir, { recursive: true });
  // Let WebKit paint what the DOM already shows (two animation frames).
  await session.executeAsyncScript("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));");
  const file = path.join(shotsDir, `${name}.png`);
  writeFileSync(file, await session.takeScreenshot(), "base64");
  return file;
}

export async function visible(session, css, ms = 15000) {
  const el = await session.wait(until.elementLocated(By.css(css)), ms, `${css} never appeared`);
  await session.wait(until.elementIsVisible(el), ms, `${css} never became visible`);
  return el;
}

/** A value from the app's SQLite file, read with the sqlite3 CLI (read-only). */
export function sql(dataDir, query) {
  return execFileSync("sqlite3", ["-readonly", path.join(dataDir, "guestpass.db"), query], { encoding: "utf8" }).trim();
}

/** The pill in a given state with a given number of changes waiting; its words for the caller to check. */
export async function waitPill(app, state, pending) {
  const pill = await app.findElement(By.css("#sync-status"));
  await app.wait(
    async () => (await pill.getAttribute("data-state")) === state && (await pill.getAttribute("data-pending")) === String(pending),
    20000,
    `the pill never reached ${state} with ${pending} waiting`,
  ).catch(async (e) => {
    throw new Error(`${e.message}: it says "${await pill.getText()}" (${await pill.getAttribute("data-state")})`);
  });
  return pill.getText();
}

/** The notes' bodies as the list shows them, top to bottom. */
export const noteBodies = (app) =>
  app.executeScript(() => [...document.querySelectorAll("#notes-list .note-body")].map((e) => e.textContent.trim()));

/** Types a note and adds it as a person would, the next one only once this one shows. */
export async function writeNote(app, body) {
  await app.findElement(By.css("#note-input")).sendKeys(body);
  await app.findElement(By.css("#note-add")).click();
  await app.wait(async () => (await noteBodies(app)).includes(body.trim()), 10000, `the note "${body}" never showed`);
}
