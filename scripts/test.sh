#!/usr/bin/env bash
# Runs every Guestpass test against real parts: installs what is missing, starts
# PostgreSQL, and runs the Rust suites and the WebDriver journey inside a D-Bus session
# with an unlocked GNOME Keyring and a virtual X display.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
eval "$(scripts/postgres.sh)"   # exports GUESTPASS_TEST_POSTGRES_URL

# The app is built with its test seams (`e2e-seams`: GUESTPASS_BROWSER) in every step
# here, so the WebDriver suite needs no second build with other features; a build for
# people (`scripts/run.sh`, packages) has none.
FEATURES=(--features guestpass-app/e2e-seams)

echo "==> building"
cargo build --workspace --all-targets "${FEATURES[@]}"

echo "==> Rust tests (real SQLite files, real keyring, servers on port 0, PostgreSQL)"
scripts/with-keyring.sh cargo test --workspace --no-fail-fast "${FEATURES[@]}"

echo "==> benchmark, smoke run (seconds; asserts no timing: fails only if a server does not start or a request kind errors)"
scripts/bench.sh --smoke

echo "==> end-to-end: the real app window under Xvfb over WebDriver (screenshots in target/e2e/)"
xvfb-run -a -s "-screen 0 1280x1024x24" scripts/with-keyring.sh \
  bash -c 'cd tests/e2e && npm test'
