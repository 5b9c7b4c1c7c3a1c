#!/usr/bin/env bash
# Runs every Guestpass test against real parts: installs what is missing, starts
# PostgreSQL, and runs the Rust suites and the WebDriver journey inside a D-Bus session
# with an unlocked GNOME Keyring and a virtual X display.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
eval "$(scripts/postgres.sh)"   # exports GUESTPASS_TEST_POSTGRES_URL

echo "==> building"
cargo build --workspace --all-targets

echo "==> Rust tests (real SQLite files, real keyring, servers on port 0, PostgreSQL)"
scripts/with-keyring.sh cargo test --workspace --no-fail-fast

echo "==> benchmark, smoke run (seconds; asserts no timing: fails only if a server does not start or a request kind errors)"
scripts/bench.sh --smoke

echo "==> the app with its test seams (GUESTPASS_BROWSER), for the WebDriver suite only"
cargo build -p guestpass-app --features e2e-seams

echo "==> end-to-end: the real app window under Xvfb over WebDriver (screenshots in target/e2e/)"
xvfb-run -a -s "-screen 0 1280x1024x24" scripts/with-keyring.sh \
  bash -c 'cd tests/e2e && npm test'
