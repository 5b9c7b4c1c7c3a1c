// The window as a person sees it on a small screen and in a dark desktop theme: at
// 420 px wide nothing scrolls sideways (the guest banner, the menu, the sign-in form,
// the delete dialog), and with a dark GTK theme the app follows `prefers-color-scheme`
// (dark background, light text). Screenshots of each in target/e2e/layout-*.png.

import { test } from "node:test";
import assert from "node:assert/strict";
import { By, newDevice, startDriver, launchApp, screenshot, visible } from "./harness.mjs";

const WIDTH = 420;

/** How far the page scrolls sideways, in CSS pixels (0 when everything fits). */
const overflow = (app) =>
  app.executeScript(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

/** Elements poking out of the viewport's left or right edge, named for the failure message. */
const poking = (app) =>
  app.executeScript(() => {
    const w = document.documentElement.clientWidth;
    return [...document.querySelectorAll("body *")]
      .filter((e) => {
        if (e.getClientRects().length === 0) return false;
        const r = e.getBoundingClientRect();
        return r.right > w + 1 || r.left < -1;
      })
      .map((e) => e.id || `${e.tagName.toLowerCase()}.${e.className}`)
      .slice(0, 10);
  });

async function fits(app, what) {
  assert.equal(await overflow(app), 0, `${what} scrolls sideways at ${WIDTH} px: ${await poking(app)}`);
  // Off the left edge does not scroll: it is simply cut off.
  assert.deepEqual(await poking(app), [], `${what} pokes out of the window at ${WIDTH} px`);
}

/** The relative luminance of a computed CSS colour (`rgb(r, g, b)`), 0 (black) to 1 (white). */
function luminance(css) {
  const [r, g, b] = css.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

test("a narrow window in a dark theme", async () => {
  const device = newDevice();
  // Offline on purpose: layout does not need a server, and "On this device only" is the
  // state a packaged app starts in.
  const driver = await startDriver({ ...device.env, GUESTPASS_BACKEND_URL: "", GTK_THEME: "Adwaita:dark" });
  const app = await launchApp(driver);
  try {
    await app.manage().window().setRect({ width: WIDTH, height: 800 });
    await visible(app, "#guest-banner");
    await app.wait(async () => (await app.executeScript(() => window.innerWidth)) <= WIDTH, 10000, "the window never narrowed");

    const dark = await app.executeScript(() => matchMedia("(prefers-color-scheme: dark)").matches);
    assert.equal(dark, true, "a dark GTK theme reaches the page as prefers-color-scheme: dark");
    const colours = await app.executeScript(() => {
      const s = getComputedStyle(document.body);
      return { bg: s.backgroundColor, fg: s.color };
    });
    const [bg, fg] = [luminance(colours.bg), luminance(colours.fg)];
    assert.ok(bg < 0.2, `dark background, got ${colours.bg}`);
    // WCAG contrast of body text against its background: at least 4.5:1.
    assert.ok((fg + 0.05) / (bg + 0.05) >= 4.5, `readable text, got ${colours.fg} on ${colours.bg}`);

    await fits(app, "the guest banner");
    await screenshot(app, "layout-narrow-dark");

    await app.findElement(By.css("#account-menu-button")).click();
    await visible(app, "#guest-delete");
    await fits(app, "the open menu");
    await screenshot(app, "layout-narrow-menu");

    await app.findElement(By.css("#guest-delete")).click();
    await visible(app, "#delete-dialog #delete-confirm");
    await fits(app, "the delete dialog");
    const label = await app.findElement(By.css("#delete-confirm-label")).getRect();
    const box = await app.findElement(By.css("#delete-confirm")).getRect();
    assert.ok(box.width < 40, `the checkbox keeps its size, got ${box.width} px`);
    assert.ok(label.width > 150, `its label reads on one or two lines, got ${label.width} px wide`);
    await screenshot(app, "layout-narrow-delete");
    await app.findElement(By.css("#delete-cancel")).click();

    await app.findElement(By.css("#sign-in-open")).click();
    await visible(app, "#sign-in-form");
    await fits(app, "the sign-in form");
    await screenshot(app, "layout-narrow-sign-in");
  } catch (e) {
    await screenshot(app, "layout-FAILED").catch(() => {});
    throw e;
  } finally {
    await app.quit();
    await driver.stop?.();
  }
});
