// A real OpenID Connect provider for Guestpass's native social upgrade tests.
//
//   node server.mjs [port]        (default 0 = any free port)
//
// oauth2-mock-server on 127.0.0.1: discovery at /.well-known/openid-configuration,
// /authorize (auto-approves and redirects back with a code; honours PKCE S256, state and
// nonce), /token (public clients: client_id in the body) and /jwks; ID tokens are RS256
// with `aud` = the client id and the `nonce` given at /authorize.
//
// When it listens it prints exactly one line to stdout,
// `{"port":N,"issuer":"http://127.0.0.1:N"}`, and nothing else afterwards. It exits when
// stdin closes (the test that started it went away) or on SIGTERM/SIGINT.
//
// The person signing in is chosen by whoever plays the browser, with extra query
// parameters on the authorize URL (a test appends them before following it):
//   login_hint=<email>      the account: the ID token carries `email` = it,
//                           `email_verified: true` and `sub` = "sub-<email>"
//                           (default social@example.com)
//   peer_error=<code>       the provider refuses: redirects back with `error=<code>`
//                           (e.g. access_denied) and no code
//   peer_sub=<id>           the provider's subject instead of "sub-<email>" (the same
//                           provider account under another email)
//   peer_aud=<client id>    the ID token names another audience (a forged-audience case)
//
// Install once with `npm ci` in this directory (scripts/setup.sh test does it).

import { OAuth2Server } from "oauth2-mock-server";

const wanted = Number(process.argv[2] ?? 0);
if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) {
  process.stderr.write(`oidc peer: bad port ${process.argv[2]}\n`);
  process.exit(2);
}

const DEFAULT_EMAIL = "social@example.com";

const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");

// What the browser asked for at /authorize, by the code it was handed.
const byCode = new Map();

server.service.on("beforeAuthorizeRedirect", (redirect, req) => {
  const q = req.query ?? {};
  const error = typeof q.peer_error === "string" ? q.peer_error : undefined;
  if (error) {
    redirect.url.searchParams.delete("code");
    redirect.url.searchParams.set("error", error);
    return;
  }
  const code = redirect.url.searchParams.get("code");
  if (code) {
    byCode.set(code, {
      email: typeof q.login_hint === "string" && q.login_hint ? q.login_hint : DEFAULT_EMAIL,
      sub: typeof q.peer_sub === "string" && q.peer_sub ? q.peer_sub : undefined,
      aud: typeof q.peer_aud === "string" && q.peer_aud ? q.peer_aud : undefined,
    });
  }
});

server.service.on("beforeTokenSigning", (token, req) => {
  const code = req.body?.code;
  const who = (typeof code === "string" && byCode.get(code)) || { email: DEFAULT_EMAIL };
  token.payload.sub = who.sub ?? `sub-${who.email}`;
  // The ID token is the one with an audience (the client id); the access token has none.
  if (token.payload.aud !== undefined) {
    token.payload.email = who.email;
    token.payload.email_verified = true;
    token.payload.name = who.email.split("@")[0];
    if (who.aud) token.payload.aud = who.aud;
  }
});

// Both tokens of one exchange are built; forget the code once the response is out.
server.service.on("beforeResponse", (_response, req) => {
  const code = req.body?.code;
  if (typeof code === "string") byCode.delete(code);
});

try {
  await server.start(wanted, "127.0.0.1");
} catch (e) {
  process.stderr.write(`oidc peer: ${e.message}\n`);
  process.exit(1);
}
const { port } = server.address();
// The library would call itself "localhost"; the tests and the server speak 127.0.0.1.
server.issuer.url = `http://127.0.0.1:${port}`;
process.stdout.write(`${JSON.stringify({ port, issuer: server.issuer.url })}\n`);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.stop().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.on("error", stop);
process.stdin.resume();
