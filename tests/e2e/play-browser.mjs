#!/usr/bin/env node
// The e2e tests' stand-in for the system browser (GUESTPASS_BROWSER): it follows the
// URL the app opened, redirect by redirect, through the real OIDC provider (which
// auto-approves) to the app's loopback callback, like a person's browser would.
let url = process.argv[2];
for (let hop = 0; hop < 10 && url; hop++) {
  const res = await fetch(url, { redirect: "manual" });
  const next = res.headers.get("location");
  if (!next) {
    process.stderr.write(`play-browser: ${res.status} at ${new URL(url).pathname}\n`);
    break;
  }
  url = new URL(next, url).toString();
}
