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
//   peer_aud=<id>[,<id>…]   the ID token names another audience, or several (an array)
//   peer_azp=<client id>    the ID token carries this `azp` (authorized party)
//   peer_alg=RS384|RS512    the ID token is signed with the published RSA key but under
//                           another algorithm than the one its JWK names (RS256)
//   peer_ttl=<seconds>      the ID token's lifetime (default 3600)
//
// Test controls (not part of any provider):
//   GET  /peer/stats                 {"discovery":N,"jwks":N}: requests served so far
//   POST /peer/announce-issuer?v=X   the discovery document names issuer X from now on
//   POST /peer/jwks-delay-ms?v=N     the JWKS answers N ms late from now on (so that
//                                    concurrent fetches would overlap)
//
// Install once with `npm ci` in this directory (scripts/setup.sh test does it).

import { createSign, createPrivateKey } from "node:crypto";
import http from "node:http";
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
      azp: typeof q.peer_azp === "string" && q.peer_azp ? q.peer_azp : undefined,
      alg: ["RS384", "RS512"].includes(q.peer_alg) ? q.peer_alg : undefined,
      ttl: /^[0-9]+$/.test(q.peer_ttl ?? "") ? Number(q.peer_ttl) : undefined,
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
    if (who.aud) token.payload.aud = who.aud.includes(",") ? who.aud.split(",") : who.aud;
    if (who.azp) token.payload.azp = who.azp;
    if (who.ttl !== undefined) token.payload.exp = token.payload.iat + who.ttl;
  }
});

const b64url = (v) => Buffer.from(v).toString("base64url");

// The same payload and key id, signed under `alg` with the published RSA key (node's
// synchronous signer: the event handlers cannot wait).
function resign(idToken, alg) {
  const [head, payload] = idToken.split(".");
  const header = { ...JSON.parse(Buffer.from(head, "base64url").toString()), alg };
  const key = createPrivateKey({ key: server.issuer.keys.get(header.kid), format: "jwk" });
  const input = `${b64url(JSON.stringify(header))}.${payload}`;
  const signer = createSign(`SHA${alg.slice(2)}`);
  signer.update(input);
  return `${input}.${signer.sign(key).toString("base64url")}`;
}

// Both tokens of one exchange are built; forget the code once the response is out.
server.service.on("beforeResponse", (response, req) => {
  const code = req.body?.code;
  if (typeof code !== "string") return;
  const who = byCode.get(code);
  if (who?.alg && typeof response.body?.id_token === "string") {
    response.body.id_token = resign(response.body.id_token, who.alg);
  }
  byCode.delete(code);
});

// The library's handler behind a thin front that counts and bends what tests ask for.
const stats = { discovery: 0, jwks: 0 };
let announcedIssuer;
let jwksDelayMs = 0;
const front = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  const reply = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (url.pathname === "/peer/stats") return reply(200, stats);
  if (req.method === "POST" && url.pathname === "/peer/announce-issuer") {
    announcedIssuer = url.searchParams.get("v") ?? undefined;
    return reply(200, {});
  }
  if (req.method === "POST" && url.pathname === "/peer/jwks-delay-ms") {
    jwksDelayMs = Number(url.searchParams.get("v") ?? 0) || 0;
    return reply(200, {});
  }
  if (url.pathname === "/.well-known/openid-configuration") {
    stats.discovery += 1;
    if (announcedIssuer !== undefined) {
      const issuer = server.issuer.url;
      return reply(200, {
        issuer: announcedIssuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
      });
    }
  }
  if (url.pathname === "/jwks") {
    stats.jwks += 1;
    if (jwksDelayMs > 0) {
      setTimeout(() => server.service.requestHandler(req, res), jwksDelayMs);
      return;
    }
  }
  server.service.requestHandler(req, res);
});

try {
  await new Promise((resolve, reject) => {
    front.once("error", reject);
    front.listen(wanted, "127.0.0.1", resolve);
  });
} catch (e) {
  process.stderr.write(`oidc peer: ${e.message}\n`);
  process.exit(1);
}
const { port } = front.address();
// The library would call itself "localhost"; the tests and the server speak 127.0.0.1.
server.issuer.url = `http://127.0.0.1:${port}`;
process.stdout.write(`${JSON.stringify({ port, issuer: server.issuer.url })}\n`);

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  front.close(() => process.exit(0));
  front.closeAllConnections?.();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.on("error", stop);
process.stdin.resume();
