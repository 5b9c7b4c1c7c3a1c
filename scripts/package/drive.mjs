// Drives an installed Guestpass over WebDriver for scripts/package-check.sh, with the
// HOME and XDG_DATA_HOME it was started with (no GUESTPASS_* variables: the app finds
// its data dir as an installed app does).
//   node scripts/package/drive.mjs note TEXT   wait for the guest, add a note, print {userId}
//   node scripts/package/drive.mjs fatal NAME  wait for the "cannot start" screen, print
//                                              {code, text}, screenshot NAME.png
// The app binary is GUESTPASS_APP_BIN (tests/e2e/harness.mjs); screenshots go to
// target/e2e/.
import { startDriver, launchApp, visible, screenshot, By, until } from "../../tests/e2e/harness.mjs";

const [what, arg] = process.argv.slice(2);
const driver = await startDriver();
try {
  const app = await launchApp(driver);
  try {
    if (what === "note") {
      await visible(app, "#guest-banner");
      const idEl = await visible(app, "#user-id");
      await app.wait(until.elementTextMatches(idEl, /^usr_/), 15000);
      await app.findElement(By.css("#note-input")).sendKeys(arg);
      await app.findElement(By.css("#note-add")).click();
      const note = await visible(app, "#notes-list li.note .note-body");
      const text = await note.getText();
      if (text !== arg) throw new Error(`the note reads ${JSON.stringify(text)}`);
      await screenshot(app, "package-check-note");
      console.log(JSON.stringify({ userId: await idEl.getText() }));
    } else if (what === "fatal") {
      const fatal = await visible(app, "#fatal");
      await screenshot(app, arg);
      console.log(JSON.stringify({ code: await fatal.getAttribute("data-code"), text: await fatal.getText() }));
    } else {
      throw new Error("usage: drive.mjs note TEXT | fatal NAME");
    }
  } finally {
    await app.quit();
  }
} finally {
  await driver.stop();
}
