// The app's start, measured in the real window: from asking tauri-driver for a session
// (which launches the app) to the guest banner on screen, for a first launch (fresh data
// dir and keyring service: the guest is created) and a relaunch (the guest resumes).
//
//   xvfb-run -a -s "-screen 0 1280x1024x24" scripts/with-keyring.sh \
//     node tests/e2e/bench-start.mjs [--runs N] [--smoke] [--markdown FILE]
//
// The end point is the page's own `guestpass:shell-shown` mark (ui/app.js), read back
// after the fact, so the figure carries no WebDriver polling delay. "in page" is the same
// end point measured from the page's time origin (the webview starting to load the UI).
// GUESTPASS_APP_BIN picks the binary (default target/debug/guestpass).

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { appBinary, newDevice, startDriver, launchApp, visible } from "./harness.mjs";

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "10" },
    smoke: { type: "boolean", default: false },
    markdown: { type: "string" },
  },
});
const runs = args.smoke ? 1 : Number(args.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, got ${args.runs}`);

/** One launch: ms from the session request to the banner, and from page start to it. */
async function launch(driver) {
  const asked = Date.now();
  const app = await launchApp(driver);
  try {
    await visible(app, "#guest-banner", 30000);
    const [origin, shown] = await app.executeScript(
      "const m = performance.getEntriesByName('guestpass:shell-shown')[0]; return [performance.timeOrigin, m ? m.startTime : null];",
    );
    if (shown === null) throw new Error("the app never marked guestpass:shell-shown (an older build of ui/app.js?)");
    return { total: origin + shown - asked, inPage: shown };
  } finally {
    await app.quit();
  }
}

const samples = { first: [], relaunch: [] };
for (let i = 0; i < runs; i++) {
  const device = newDevice();
  const driver = await startDriver(device.env);
  try {
    samples.first.push(await launch(driver));
    samples.relaunch.push(await launch(driver));
  } finally {
    await driver.stop();
  }
}

const pick = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
};
const fmt = (x) => x.toFixed(1);
let table = "| app start (real window) | runs | p50 ms | max ms | in page p50 ms |\n| --- | ---: | ---: | ---: | ---: |\n";
for (const [name, xs] of [["first launch → guest banner", samples.first], ["relaunch → guest banner", samples.relaunch]]) {
  const total = xs.map((x) => x.total);
  const inPage = xs.map((x) => x.inPage);
  table += `| ${name} | ${xs.length} | ${fmt(pick(total, 0.5))} | ${fmt(Math.max(...total))} | ${fmt(pick(inPage, 0.5))} |\n`;
}
process.stdout.write(`app: ${appBinary}\n${table}`);
if (args.markdown) writeFileSync(args.markdown, table);
