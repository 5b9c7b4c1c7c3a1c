// A minimal SMTP listener on loopback for the WebDriver tests: enough of RFC 5321 for
// the reference server's mailer (lettre, plain SMTP), each message handed to the test.

import net from "node:net";

/** Starts it; `next()` resolves with the next message's raw data. */
export async function startSmtp() {
  const inbox = [];
  const waiting = [];
  const deliver = (data) => (waiting.length ? waiting.shift()(data) : inbox.push(data));
  const server = net.createServer((sock) => {
    let buf = "";
    let inData = false;
    let data = "";
    sock.write("220 localhost ESMTP sink\r\n");
    sock.on("data", (chunk) => {
      buf += chunk.toString("utf8");
      let nl;
      while ((nl = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (inData) {
          if (line === ".") {
            inData = false;
            deliver(data);
            data = "";
            sock.write("250 OK\r\n");
          } else {
            data += `${line.startsWith("..") ? line.slice(1) : line}\n`;
          }
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO" || verb === "HELO") sock.write("250 localhost\r\n");
        else if (verb === "DATA") {
          inData = true;
          sock.write("354 go ahead\r\n");
        } else if (verb === "QUIT") {
          sock.end("221 bye\r\n");
        } else sock.write("250 OK\r\n");
      }
    });
    sock.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `smtp://127.0.0.1:${server.address().port}`,
    next: (ms = 20000) =>
      inbox.length
        ? Promise.resolve(inbox.shift())
        : new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no email within ${ms} ms`)), ms);
            waiting.push((d) => {
              clearTimeout(timer);
              resolve(d);
            });
          }),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Undoes quoted-printable soft breaks and escapes. */
export function decodeQp(data) {
  return data.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

/** The token of the first link to `route` in a message, or null. */
export function linkToken(data, route) {
  for (const [word] of decodeQp(data).matchAll(/https?:\/\/[^\s"'<>]+/g)) {
    const url = new URL(word.replace(/&amp;/g, "&"));
    if (url.pathname.endsWith(route) && url.searchParams.get("token")) return url.searchParams.get("token");
  }
  return null;
}
