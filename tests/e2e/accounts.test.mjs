// Issue 11, end to end in the real window against the real reference server: a guest
// whose email already has an account signs in to it instead and brings the note along
// (asked once, with the count); signing out leaves a new empty guest; signing in again
// brings the account and its note back without a question.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { By, newDevice, repo, startBetterAuth, startDriver, startServer, startOidcProvider, screenshot, visible, sql, until, withApp, noteBodies, writeNote } from "./harness.mjs";

const EMAIL = "jane@example.com";
const PASSWORD = "correct-horse-42";
const NOTE = "Bring me along to the account";

/** An account that exists on the server before the app starts: a guest upgraded over HTTP. */
async function createAccount(server, email) {
  const guest = await server.post("/sign-in/anonymous", {});
  assert.equal(guest.status, 200);
  const upgraded = await server.post("/anonymous/upgrade", { email, password: PASSWORD }, guest.body.token);
  assert.equal(upgraded.status, 200, JSON.stringify(upgraded.body));
  return upgraded.body.user.id;
}

// Read in one script, not element by element: a sync pass may redraw the list between
// two reads (a stale element otherwise).

async function waitUpToDate(app) {
  const sync = await app.findElement(By.css("#sync-status"));
  await app.wait(async () => (await sync.getAttribute("data-state")) === "upToDate", 15000, "sync never reached up to date");
}

async function waitForAccount(app, text) {
  const kind = await visible(app, "#account-kind");
  await app.wait(until.elementTextIs(kind, text), 15000, `the account never showed ${text}`);
}


async function signIn(app, email) {
  await (await visible(app, "#sign-in-email")).clear();
  await app.findElement(By.css("#sign-in-email")).sendKeys(email);
  await app.findElement(By.css("#sign-in-password")).sendKeys(PASSWORD);
  await app.findElement(By.css("#sign-in-submit")).click();
}

test("accounts in the real window", async (t) => {
  const server = await startServer();
  const backend = { GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" };
  const drivers = [];
  /** A device of its own (data dir, keyring service) and a driver that launches the app on it. */
  const deviceWithDriver = async () => {
    const device = newDevice();
    const driver = await startDriver({ ...device.env, ...backend });
    drivers.push(driver);
    return { device, driver };
  };
  try {
    const accountId = await createAccount(server, EMAIL);

    await t.test("the sign-in form checks its fields and a guest has no sign-out", async () => {
      const { driver } = await deviceWithDriver();
      await withApp(driver, "accounts-validation", async (app) => {
        await visible(app, "#guest-banner");
        // A guest's menu has export and delete, never a sign-out (it would lose everything).
        await app.findElement(By.css("#account-menu-button")).click();
        await visible(app, "#guest-delete");
        for (const id of ["#sign-out", "#sign-out-remove", "#change-password-open", "#account-delete"]) {
          assert.equal(await app.findElement(By.css(id)).isDisplayed(), false, `a guest's menu has no ${id}`);
        }
        await screenshot(app, "accounts-guest-menu");
        await app.findElement(By.css("#account-menu-button")).click();
        const open = await visible(app, "#sign-in-open");
        assert.equal(await open.getText(), "Sign in");
        await open.click();
        await visible(app, "#sign-in-form");
        const email = await app.findElement(By.css("#sign-in-email"));
        const password = await app.findElement(By.css("#sign-in-password"));

        // Caught on the device, tied to the field it is about.
        await app.findElement(By.css("#sign-in-submit")).click();
        const emailError = await visible(app, "#sign-in-email-error");
        assert.equal(await emailError.getText(), "Invalid email");
        assert.equal(await email.getAttribute("aria-invalid"), "true");
        assert.match(await email.getAttribute("aria-describedby"), /\bsign-in-email-error\b/);

        await email.sendKeys(EMAIL);
        await app.findElement(By.css("#sign-in-submit")).click();
        const passwordError = await visible(app, "#sign-in-password-error");
        assert.equal(await passwordError.getText(), "Enter your password");
        assert.equal(await password.getAttribute("aria-invalid"), "true");
        assert.equal(await emailError.isDisplayed(), false);

        // Refused by the server, in words, tied to the password to retype.
        await password.sendKeys("not-the-password");
        await app.findElement(By.css("#sign-in-submit")).click();
        const error = await visible(app, "#sign-in-error");
        await app.wait(async () => (await error.getAttribute("data-code")) !== null, 15000);
        assert.equal(await error.getAttribute("data-code"), "INVALID_EMAIL_OR_PASSWORD");
        assert.match(await error.getText(), /[Ww]rong email or password|Invalid email or password/);
        assert.match(await password.getAttribute("aria-describedby"), /\bsign-in-error\b/);
        assert.equal(await app.findElement(By.css("#sign-in-submit")).getText(), "Sign in", "the button is back once answered");

        await screenshot(app, "accounts-sign-in-errors");

        await app.findElement(By.css("#sign-in-cancel")).click();
        await visible(app, "#guest-banner");
        assert.equal(await app.findElement(By.css("#account-kind")).getText(), "Guest");
      });
    });

    await t.test("(a) email already in use → sign in instead → bring the note into the account", async () => {
      const { device, driver } = await deviceWithDriver();
      await withApp(driver, "accounts-merge", async (app) => {
        await visible(app, "#guest-banner");
        await waitUpToDate(app);
        await writeNote(app, NOTE);

        await app.findElement(By.css("#create-account")).click();
        await visible(app, "#upgrade-form");
        await app.findElement(By.css("#upgrade-email")).sendKeys(EMAIL);
        await app.findElement(By.css("#upgrade-password")).sendKeys("a-new-password-1");
        await app.findElement(By.css("#upgrade-submit")).click();
        const error = await visible(app, "#upgrade-error");
        await app.wait(until.elementTextIs(error, "Email already in use"), 15000);
        const instead = await visible(app, "#upgrade-sign-in-instead");
        assert.equal(await instead.getText(), "Sign in to that account instead");
        assert.equal(await app.findElement(By.css("#upgrade-email")).getAttribute("aria-invalid"), "true");
        await screenshot(app, "accounts-email-in-use");
        await instead.click();

        await visible(app, "#sign-in-form");
        assert.equal(await app.findElement(By.css("#sign-in-email")).getAttribute("value"), EMAIL, "prefilled");
        assert.equal(await app.findElement(By.css("#upgrade-panel")).isDisplayed(), false);
        assert.equal(await app.switchTo().activeElement().getAttribute("id"), "sign-in-password", "the password is next");
        const lead = await app.findElement(By.css("#sign-in-lead"));
        await app.wait(until.elementTextMatches(lead, /You have 1 note as a guest/), 10000);
        await app.findElement(By.css("#sign-in-password")).sendKeys(PASSWORD);
        await screenshot(app, "accounts-sign-in-prefilled");
        await app.findElement(By.css("#sign-in-submit")).click();

        // Asked once, in plain words, with the count; bringing them in is the default.
        const bring = await visible(app, "#merge-dialog #merge-bring");
        assert.equal(await bring.getText(), `Bring your 1 note into ${EMAIL}`);
        assert.equal(await app.findElement(By.css("#merge-title")).getText(), "You have 1 note as a guest");
        assert.equal(await app.switchTo().activeElement().getAttribute("id"), "merge-bring", "the default is focused");
        assert.equal(await app.findElement(By.css("#merge-leave")).getText(), "Leave them behind");
        await screenshot(app, "accounts-merge-question");
        await bring.click();

        await waitForAccount(app, EMAIL);
        assert.equal(await app.findElement(By.css("#merge-dialog")).isDisplayed(), false);
        assert.equal(await app.findElement(By.css("#guest-banner")).isDisplayed(), false, "banner gone");
        assert.equal(await app.findElement(By.css("#user-id")).getText(), accountId, "the account's id");
        assert.deepEqual(await noteBodies(app), [NOTE]);
        await screenshot(app, "accounts-merged");
      });

      await withApp(driver, "accounts-merge-relaunch", async (app) => {
        await waitForAccount(app, EMAIL);
        assert.equal(await app.findElement(By.css("#user-id")).getText(), accountId);
        assert.equal(await app.findElement(By.css("#guest-banner")).isDisplayed(), false);
        await visible(app, "#notes-list li.note");
        assert.deepEqual(await noteBodies(app), [NOTE]);
        await screenshot(app, "accounts-merged-relaunch");
      });
      assert.equal(sql(device.dataDir, `SELECT user_id FROM notes WHERE body = '${NOTE}'`), accountId, "one note, owned by the account");
    });

    await t.test("cancel stays a guest; leave behind needs a second yes, then the guest's note is gone", async () => {
      const email = "max@example.com";
      const maxId = await createAccount(server, email);
      const { device, driver } = await deviceWithDriver();
      await withApp(driver, "accounts-leave-behind", async (app) => {
        await visible(app, "#guest-banner");
        await waitUpToDate(app);
        const guestId = await app.findElement(By.css("#user-id")).getText();
        await writeNote(app, "Scratch note, not worth keeping");

        await app.findElement(By.css("#sign-in-open")).click();
        await signIn(app, email);
        await visible(app, "#merge-dialog #merge-bring");
        await app.findElement(By.css("#merge-cancel")).click();
        await app.wait(async () => !(await app.findElement(By.css("#merge-dialog")).isDisplayed()), 10000);
        assert.equal(await app.findElement(By.css("#account-kind")).getText(), "Guest", "cancel stays a guest");
        assert.equal(await app.findElement(By.css("#user-id")).getText(), guestId);
        assert.deepEqual(await noteBodies(app), ["Scratch note, not worth keeping"]);

        await app.findElement(By.css("#sign-in-open")).click();
        await signIn(app, email);
        await (await visible(app, "#merge-dialog #merge-leave")).click();
        const confirm = await visible(app, "#merge-leave-confirm");
        assert.equal(await app.findElement(By.css("#merge-confirm-title")).getText(), "Delete 1 note?");
        assert.equal(await app.switchTo().activeElement().getAttribute("id"), "merge-leave-back", "the safe answer is focused");
        await screenshot(app, "accounts-leave-behind-confirm");
        // "Go back" returns to the question; nothing was deleted.
        await app.findElement(By.css("#merge-leave-back")).click();
        await visible(app, "#merge-bring");
        assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM notes"), "1");
        await app.findElement(By.css("#merge-leave")).click();
        await confirm.click();

        await waitForAccount(app, email);
        assert.equal(await app.findElement(By.css("#user-id")).getText(), maxId);
        assert.deepEqual(await noteBodies(app), []);
      });
      assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM notes WHERE body = 'Scratch note, not worth keeping'"), "0");
    });

    // Its own account, so that notes (a) brought to the server never show up here.
    await t.test("(b) sign in on a fresh install; sign out → a new empty guest; sign in again → the account and its note, no question", async () => {
      const email = "sam@example.com";
      const samId = await createAccount(server, email);
      const { device, driver } = await deviceWithDriver();
      await withApp(driver, "accounts-sign-out", async (app) => {
        await visible(app, "#guest-banner");
        await waitUpToDate(app);
        await app.findElement(By.css("#sign-in-open")).click();
        await signIn(app, email);
        await waitForAccount(app, email);
        assert.equal(await app.findElement(By.css("#merge-dialog")).isDisplayed(), false, "an empty guest is not asked");
        assert.equal(await app.findElement(By.css("#user-id")).getText(), samId);
        await writeNote(app, "Written as Sam");

        const menuButton = await app.findElement(By.css("#account-menu-button"));
        await menuButton.click();
        await visible(app, "#account-menu");
        assert.equal(await menuButton.getAttribute("aria-expanded"), "true");
        assert.equal(await app.findElement(By.css("#account-menu-email")).getText(), email);
        assert.equal(await app.findElement(By.css("#sign-out-remove")).getText(), "Sign out and remove my data from this computer");
        await screenshot(app, "accounts-menu");
        await app.findElement(By.css("#sign-out")).click();

        await waitForAccount(app, "Guest");
        await visible(app, "#guest-banner");
        const guestId = await app.findElement(By.css("#user-id")).getText();
        assert.match(guestId, /^usr_[0-9A-HJKMNP-TV-Z]{26}$/);
        assert.notEqual(guestId, samId, "a new guest");
        assert.deepEqual(await noteBodies(app), [], "the account's note is hidden, not shown to the guest");
        assert.equal(await app.findElement(By.css("#notes-empty")).isDisplayed(), true);
        await screenshot(app, "accounts-signed-out");

        await app.findElement(By.css("#sign-in-open")).click();
        await signIn(app, email);
        await waitForAccount(app, email);
        assert.equal(await app.findElement(By.css("#merge-dialog")).isDisplayed(), false, "an empty guest is not asked");
        assert.equal(await app.findElement(By.css("#user-id")).getText(), samId);
        await visible(app, "#notes-list li.note");
        assert.deepEqual(await noteBodies(app), ["Written as Sam"]);
        await screenshot(app, "accounts-signed-in-again");
      });
      assert.equal(sql(device.dataDir, "SELECT COUNT(*) FROM notes WHERE body = 'Written as Sam'"), "1", "the note once, not doubled");
    });

    await t.test("a session the server revoked: 'Sign in again' keeps the data and resumes the same account", async () => {
      const email = "ria@example.com";
      const riaId = await createAccount(server, email);
      const { driver } = await deviceWithDriver();
      await withApp(driver, "accounts-sign-in-again", async (app) => {
        await visible(app, "#guest-banner");
        await waitUpToDate(app);
        await app.findElement(By.css("#sign-in-open")).click();
        await signIn(app, email);
        await waitForAccount(app, email);
        await writeNote(app, "Kept while signed out by the server");

        // Another device (or an admin) ended every session of this account on the server.
        execFileSync("sqlite3", [server.dbPath, `DELETE FROM sessions WHERE user_id = '${riaId}'`]);
        // The first pass after that forgets the dead session ("reconnecting"), the next
        // finds no way back but a sign-in: ask for passes now instead of waiting a minute.
        let status;
        for (let pass = 0; pass < 4 && !status?.signInRequired; pass++) {
          status = await app.executeAsyncScript("const done = arguments[0]; window.__TAURI__.core.invoke('sync_now').then(done, done);");
        }
        assert.equal(status?.signInRequired, true, `never asked to sign in again: ${JSON.stringify(status)}`);
        const banner = await visible(app, "#reauth-banner");
        assert.match(await banner.getText(), /ria@example\.com has ended/);
        assert.match(await app.findElement(By.css("#sync-status")).getText(), /^Sign in to sync/);
        assert.deepEqual(await noteBodies(app), ["Kept while signed out by the server"], "local data stays");
        await screenshot(app, "accounts-session-ended");

        await app.findElement(By.css("#reauth-sign-in")).click();
        assert.equal(await (await visible(app, "#sign-in-title")).getText(), "Sign in again");
        assert.equal(await app.findElement(By.css("#sign-in-email")).getAttribute("value"), email, "prefilled");
        await app.findElement(By.css("#sign-in-password")).sendKeys(PASSWORD);
        await app.findElement(By.css("#sign-in-submit")).click();

        const sync = await app.findElement(By.css("#sync-status"));
        await app.wait(async () => !(await banner.isDisplayed()) && (await sync.getAttribute("data-state")) === "upToDate", 15000, "never back in sync");
        assert.equal(await app.findElement(By.css("#merge-dialog")).isDisplayed(), false, "the same account: no question");
        assert.equal(await app.findElement(By.css("#user-id")).getText(), riaId);
        assert.deepEqual(await noteBodies(app), ["Kept while signed out by the server"]);
        await screenshot(app, "accounts-signed-in-again-after-revoke");
      });
    });
  } finally {
    for (const d of drivers) await d.stop();
    await server.stop();
  }
});

test("a provider identity already linked to an account: sign in with it instead", async () => {
  const idp = await startOidcProvider();
  const server = await startServer(`[socialProviders.mock]\nclientId = "guestpass-app"\nissuer = "${idp.issuer}"\n`);
  const social = {
    GUESTPASS_BACKEND_URL: server.url,
    GUESTPASS_SOCIAL_PROVIDERS: JSON.stringify([{ name: "mock", issuer: idp.issuer, clientId: "guestpass-app" }]),
    GUESTPASS_BROWSER: path.join(repo, "tests/e2e/play-browser.mjs"),
  };
  // The browser player signs in as the provider's default person every time.
  const first = newDevice();
  const second = newDevice();
  const drivers = [];
  try {
    // Device one links the identity: its guest becomes that account.
    drivers.push(await startDriver({ ...first.env, ...social }));
    let accountId;
    await withApp(drivers[0], "accounts-provider-one", async (app) => {
      await visible(app, "#guest-banner");
      await waitUpToDate(app);
      await app.findElement(By.css("#create-account")).click();
      await (await visible(app, "#social-buttons button[data-provider='mock']")).click();
      const kind = await app.findElement(By.css("#account-kind"));
      await app.wait(async () => (await kind.getText()) !== "Guest", 20000, "device one never left the guest state");
      accountId = await app.findElement(By.css("#user-id")).getText();
    });

    // Device two: a guest with a note tries to link the same identity.
    drivers.push(await startDriver({ ...second.env, ...social }));
    await withApp(drivers[1], "accounts-provider-two", async (app) => {
      await visible(app, "#guest-banner");
      await waitUpToDate(app);
      await app.findElement(By.css("#note-input")).sendKeys("Written on the second computer");
      await app.findElement(By.css("#note-add")).click();
      await visible(app, "#notes-list li.note");
      await app.findElement(By.css("#create-account")).click();
      await (await visible(app, "#social-buttons button[data-provider='mock']")).click();

      const error = await visible(app, "#upgrade-error", 20000);
      await app.wait(async () => (await error.getAttribute("data-code")) !== null, 20000);
      assert.equal(await error.getAttribute("data-code"), "PROVIDER_ACCOUNT_IN_USE");
      const instead = await visible(app, "#upgrade-sign-in-instead");
      assert.equal(await instead.getText(), "Sign in with Mock instead");
      await screenshot(app, "accounts-provider-in-use");
      await instead.click();

      const bring = await visible(app, "#merge-dialog #merge-bring", 20000);
      assert.match(await bring.getText(), /^Bring your 1 note into \S+@\S+$/);
      await bring.click();
      const kind = await app.findElement(By.css("#account-kind"));
      await app.wait(async () => (await kind.getText()) !== "Guest", 20000, "device two never signed in");
      assert.equal(await app.findElement(By.css("#user-id")).getText(), accountId, "the account device one made");
      assert.deepEqual(await noteBodies(app), ["Written on the second computer"]);
      await screenshot(app, "accounts-provider-signed-in");
    });
  } finally {
    for (const d of drivers) await d.stop();
    await server.stop();
    await idp.stop();
  }
});

test("sign out and remove my data: asked with the count when the server cannot confirm, then removed for good", async () => {
  const server = await startServer();
  const device = newDevice();
  const driver = await startDriver({ ...device.env, GUESTPASS_BACKEND_URL: server.url, GUESTPASS_BACKEND_DIALECT: "guestpass" });
  const secret = "Shopping list for the surprise party";
  let serverUp = true;
  try {
    const email = "lee@example.com";
    await createAccount(server, email);
    await withApp(driver, "accounts-remove", async (app) => {
      await visible(app, "#guest-banner");
      await waitUpToDate(app);
      await app.findElement(By.css("#sign-in-open")).click();
      await signIn(app, email);
      await waitForAccount(app, email);
      await writeNote(app, secret);

      // With the server gone nothing can confirm it holds the note: the person is asked.
      await server.stop();
      serverUp = false;
      await app.findElement(By.css("#account-menu-button")).click();
      await (await visible(app, "#sign-out-remove")).click();
      const message = await visible(app, "#sign-out-dialog #sign-out-message", 20000);
      assert.match(await message.getText(), /\b1 (note|change)\b/, "the count is named");
      assert.equal(await app.switchTo().activeElement().getAttribute("id"), "sign-out-keep", "the safe answer is focused");
      await screenshot(app, "accounts-remove-asked");

      // "Cancel" changes nothing.
      await app.findElement(By.css("#sign-out-back")).click();
      assert.equal(await app.findElement(By.css("#sign-out-dialog")).isDisplayed(), false);
      assert.equal(await app.findElement(By.css("#account-kind")).getText(), email);
      assert.deepEqual(await noteBodies(app), [secret]);

      await app.findElement(By.css("#account-menu-button")).click();
      await (await visible(app, "#sign-out-remove")).click();
      await (await visible(app, "#sign-out-force", 20000)).click();
      await waitForAccount(app, "Guest");
      assert.deepEqual(await noteBodies(app), []);
      await screenshot(app, "accounts-removed");
    });
    assert.equal(sql(device.dataDir, `SELECT COUNT(*) FROM notes WHERE body = '${secret}'`), "0");
    for (const file of ["guestpass.db", "guestpass.db-wal"]) {
      const bytes = existsSync(path.join(device.dataDir, file)) ? readFileSync(path.join(device.dataDir, file)) : Buffer.alloc(0);
      assert.equal(bytes.includes(secret), false, `the removed text is not left in ${file}`);
    }
  } finally {
    await driver.stop();
    if (serverUp) await server.stop();
  }
});

test("on a stock Better Auth server: sign in, bring the note, and the app says notes stay on this device", async () => {
  const peer = await startBetterAuth();
  const device = newDevice();
  const driver = await startDriver({ ...device.env, GUESTPASS_BACKEND_URL: peer.url, GUESTPASS_BACKEND_DIALECT: "better-auth" });
  try {
    const email = "bo@example.com";
    const made = await peer.post("/sign-up/email", { email, password: PASSWORD, name: "" });
    assert.equal(made.status, 200, JSON.stringify(made.body));
    await withApp(driver, "accounts-better-auth", async (app) => {
      await visible(app, "#guest-banner");
      await waitUpToDate(app);
      assert.equal(await app.findElement(By.css("#sync-status")).getText(), "Notes are kept on this device only");
      await writeNote(app, "Kept here on Better Auth");
      await app.findElement(By.css("#sign-in-open")).click();
      await signIn(app, email);
      const bring = await visible(app, "#merge-dialog #merge-bring");
      assert.equal(await bring.getText(), `Bring your 1 note into ${email}`);
      await bring.click();
      await waitForAccount(app, email);
      assert.deepEqual(await noteBodies(app), ["Kept here on Better Auth"]);
      await app.findElement(By.css("#account-menu-button")).click();
      assert.match(await (await visible(app, "#account-menu-saved")).getText(), /kept on this device only/);
      await screenshot(app, "accounts-better-auth");
    });
  } finally {
    await driver.stop();
    await peer.stop();
  }
});
