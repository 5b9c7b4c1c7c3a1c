// The stock Better Auth client against a server speaking Better Auth's routes:
//
//   node run.mjs http://127.0.0.1:PORT
//
// What a web app on `better-auth/client` with `anonymousClient()` and a bearer token
// kept in memory does: a guest, its session, sign-up while a guest (in place on the
// reference server), sign-out, sign-in again, a wrong password, then account care
// (resend the verification, ask for a reset, change the password, delete the
// account). Prints one JSON line
// with what each step answered (never a token: whether it stayed the same is enough),
// and exits non-zero if a call threw. The test that runs it
// (crates/server/tests/ba_client.rs) decides what is right.
//
// Install once with `npm ci` in this directory (scripts/setup.sh test does it).

import { createAuthClient } from "better-auth/client";
import { anonymousClient } from "better-auth/client/plugins";

const baseURL = process.argv[2];
if (!baseURL) {
  process.stderr.write("usage: node run.mjs <base URL>\n");
  process.exit(2);
}

// The token lives in memory only, as a single-page app keeps it; every answer that
// creates or rotates a session carries the new one in `set-auth-token`.
let token = null;
const client = createAuthClient({
  baseURL,
  plugins: [anonymousClient()],
  fetchOptions: {
    // What a browser sends on every POST; Better Auth's own server refuses
    // state-changing calls without it (the reference server does not need it).
    headers: { origin: new URL(baseURL).origin },
    auth: { type: "Bearer", token: () => token ?? undefined },
    onSuccess: (ctx) => {
      const next = ctx.response.headers.get("set-auth-token");
      if (next) token = next;
    },
  },
});

const email = `ba-client-${Date.now()}@example.com`;
const password = "correct horse battery";

function user(u) {
  return u ? { id: u.id, isAnonymous: u.isAnonymous ?? null, email: u.email ?? null } : null;
}
function error(e) {
  return e ? { status: e.status, code: e.code ?? null } : null;
}
async function session() {
  const { data, error: e } = await client.getSession();
  return { user: user(data?.user), error: error(e) };
}

const out = {};
{
  const { data, error: e } = await client.signIn.anonymous();
  out.anonymous = { user: user(data?.user), error: error(e), hasToken: token !== null };
}
out.guestSession = await session();
{
  const before = token;
  const { data, error: e } = await client.signUp.email({ email, password, name: "BA Client" });
  out.signUp = { user: user(data?.user), error: error(e), sameToken: token === before };
}
out.accountSession = await session();
{
  const { data, error: e } = await client.signOut();
  out.signOut = { success: data?.success ?? null, error: error(e) };
  token = null;
}
out.signedOutSession = await session();
{
  const { data, error: e } = await client.signIn.email({ email, password });
  out.signIn = { user: user(data?.user), error: error(e), hasToken: token !== null };
}
out.signedInSession = await session();
{
  const { data, error: e } = await client.signIn.email({ email, password: "wrong password!" });
  out.wrongPassword = { user: user(data?.user), error: error(e) };
}
// Account care (issue 13), signed in: resend the verification, ask for a reset,
// change the password (a wrong current one first), delete the account.
{
  const { data, error: e } = await client.sendVerificationEmail({ email });
  out.sendVerification = { success: data?.success ?? null, error: error(e) };
}
{
  const { data, error: e } = await client.requestPasswordReset({ email, redirectTo: "/reset" });
  out.requestReset = { success: data?.success ?? null, error: error(e) };
}
const newPassword = "another horse battery";
{
  const { data, error: e } = await client.changePassword({ currentPassword: "wrong password!", newPassword });
  out.wrongChange = { error: error(e) };
}
{
  const before = token;
  const { data, error: e } = await client.changePassword({
    currentPassword: password,
    newPassword,
    revokeOtherSessions: true,
  });
  out.changePassword = {
    user: user(data?.user),
    tokenNull: data ? data.token === null : null,
    sameToken: token === before,
    error: error(e),
  };
}
out.changedSession = await session();
{
  const { data, error: e } = await client.deleteUser({ password: "wrong password!" });
  out.wrongDelete = { error: error(e) };
}
{
  const { data, error: e } = await client.deleteUser({ password: newPassword });
  out.deleteUser = { success: data?.success ?? null, error: error(e) };
}
out.deletedSession = await session();
process.stdout.write(`${JSON.stringify(out)}\n`);
