// A stock Better Auth server for Guestpass's `better-auth` dialect tests and benchmark.
//
//   node server.mjs [port]        (or PORT=... ; default 0 = any free port)
//
// Better Auth with the `anonymous` and `bearer` plugins and email+password sign-up,
// behind a plain node:http server on 127.0.0.1. Storage:
// - by default its in-memory adapter (nothing to compile, nothing left on disk): what
//   the dialect tests use;
// - with PEER_DATABASE_URL=postgres://... a `pg` Pool on that database (Better Auth's
//   Kysely Postgres dialect; pg's default of 10 connections), its schema created with
//   Better Auth's own migrations before the ready line: the durable baseline the
//   benchmark compares Guestpass's PostgreSQL server with. The database should be
//   empty or already hold Better Auth's schema; it is left in place on exit.
// When it listens (and its schema is in place) it prints exactly one line to stdout,
// `{"port":12345}`, and nothing else goes to stdout afterwards, so a test reads that line
// to know it is ready. It exits when stdin closes (the test that started it went away)
// or on SIGTERM/SIGINT, so tests cannot leak it. (So run it by hand in a terminal, not
// with stdin from /dev/null, or it leaves at once.)
//
// Install once with `npm ci` in this directory (scripts/setup.sh test does it).
//
// The rate limiter stays off because NODE_ENV is not "production" (Better Auth only
// enables it there by default). A test of 429 handling may set
// PEER_ANON_RATE_LIMIT=<n>: then Better Auth's own limiter allows n anonymous sign-ins
// per minute (one shared bucket: loopback requests carry no client-IP header).
// BETTER_AUTH_SECRET may be given; otherwise a random one is used.

import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { anonymous } from "better-auth/plugins/anonymous";
import { bearer } from "better-auth/plugins/bearer";
import { toNodeHandler } from "better-auth/node";
import { getMigrations } from "better-auth/db/migration";

// Better Auth's logger writes to the console; keep stdout for the ready line alone.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const wanted = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) {
  process.stderr.write(`better-auth peer: bad port ${process.argv[2] ?? process.env.PORT}\n`);
  process.exit(2);
}

const secret = process.env.BETTER_AUTH_SECRET || randomBytes(32).toString("hex");

const anonLimit = Number(process.env.PEER_ANON_RATE_LIMIT ?? "");
const rateLimit =
  Number.isInteger(anonLimit) && anonLimit > 0
    ? {
        enabled: true,
        storage: "memory",
        customRules: { "/sign-in/anonymous": { window: 60, max: anonLimit } },
      }
    : { enabled: false };

const databaseUrl = process.env.PEER_DATABASE_URL || "";
let pool = null;
let database;
if (databaseUrl) {
  // Loaded only here, so the in-memory peer never needs `pg`.
  const { default: pg } = await import("pg");
  pool = new pg.Pool({ connectionString: databaseUrl });
  // An idle client losing its connection (the server restarting) must not crash the
  // peer with an unhandled 'error' event; the next query reports it instead.
  pool.on("error", (e) => process.stderr.write(`better-auth peer: pg pool: ${e.message}\n`));
  database = pool;
} else {
  // The memory adapter wants one array per model it may touch.
  database = memoryAdapter({ user: [], session: [], account: [], verification: [] });
}

const server = createServer();
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
server.on("request", (req, res) => handler(req, res));

server.listen(wanted, "127.0.0.1", () => {
  const { port } = server.address();
  const baseURL = `http://127.0.0.1:${port}`;
  const options = {
    baseURL,
    basePath: "/api/auth",
    secret,
    database,
    // The reset and verification mails of account care (issue 13) go to stderr as one
    // line each, `better-auth peer: mail {"kind","email","token"}`, for the tests to
    // read (this peer has no SMTP); deleting a user is enabled, as an app store asks.
    emailAndPassword: {
      enabled: true,
      sendResetPassword: async ({ user, token }) => mail("reset-password", user, token),
    },
    emailVerification: {
      sendVerificationEmail: async ({ user, token }) => mail("verify-email", user, token),
    },
    user: { deleteUser: { enabled: true } },
    plugins: [anonymous(), bearer()],
    trustedOrigins: [baseURL],
    rateLimit,
    telemetry: { enabled: false },
  };
  ready(options).catch((e) => {
    process.stderr.write(`better-auth peer: ${e?.stack ?? e}\n`);
    process.exit(1);
  });
});

async function ready(options) {
  if (pool) {
    // What `npx @better-auth/cli migrate` would do, for this exact config (plugins
    // included); a no-op on a database that already has the schema.
    const { runMigrations } = await getMigrations(options);
    await runMigrations();
  }
  handler = toNodeHandler(betterAuth(options));
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
}

function mail(kind, user, token) {
  process.stderr.write(
    `better-auth peer: mail ${JSON.stringify({ kind, email: user.email, token })}\n`,
  );
}

server.on("error", (e) => {
  process.stderr.write(`better-auth peer: ${e.message}\n`);
  process.exit(1);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections?.();
  // Give the pool a moment to close its connections cleanly (no "unexpected EOF" in
  // PostgreSQL's log), but never hang on a query still running.
  setTimeout(() => process.exit(0), 2000).unref();
  Promise.resolve(pool?.end())
    .catch(() => {})
    .finally(() => process.exit(0));
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// stdin closing means whoever started us is gone (or dropped its handle): leave too.
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.on("error", stop);
process.stdin.resume();
