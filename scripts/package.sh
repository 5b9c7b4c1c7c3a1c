#!/usr/bin/env bash
# Release packages of Guestpass, and a signed apt repository serving them.
#   scripts/package.sh
# Makes, under target/ (or $CARGO_TARGET_DIR):
#   packages/Guestpass_<v>_amd64.deb, packages/Guestpass-<v>-1.x86_64.rpm   the app
#   packages/guestpass-server_<v>-1_amd64.deb                              the server
#   apt/                     a flat apt repository with both .debs (any static server)
#   apt-key/                 the repository's signing key (made on first run; never commit it)
# Environment: GUESTPASS_PACKAGE_OUT (packages folder), GUESTPASS_APT_DIR (repository),
# GUESTPASS_APT_GNUPGHOME (the key's folder), GUESTPASS_PACKAGE_ONLY=app (no server). README.md "Packages" says more;
# scripts/package-check.sh installs and exercises what this makes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/setup.sh package

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$root/$CARGO_TARGET_DIR ;; esac
out=${GUESTPASS_PACKAGE_OUT:-$CARGO_TARGET_DIR/packages}
apt_dir=${GUESTPASS_APT_DIR:-$CARGO_TARGET_DIR/apt}
mkdir -p "$out"

# From the manifests (cargo pkgid would answer from a Cargo.lock not yet updated).
version=$(cargo metadata --no-deps --format-version 1 | jq -r '.packages[] | select(.name == "guestpass-app") | .version')
# One version for both: the bundler names the app's packages after tauri.conf.json's.
conf_version=$(jq -r '.version // empty' tauri.conf.json)
if [ -n "$conf_version" ] && [ "$conf_version" != "$version" ]; then
  echo "package: tauri.conf.json says version $conf_version, Cargo.toml $version: make them one" >&2
  exit 1
fi
echo "==> packaging Guestpass $version into $out"

# One release build of both binaries, so they share their dependencies' build (two
# separate builds unify features differently and compile most of them twice). The app
# as `tauri build` makes it: tauri's custom-protocol feature serves the UI from inside
# the binary. No other feature: the test seams (e2e-seams) are never in a package.
cargo build --release -p guestpass-app -p guestpass-server --features tauri/custom-protocol

# The app's packages, by Tauri's bundler, from that binary. The CLI does not take the
# config at the root of a virtual workspace, so it reads src-tauri/tauri.conf.json (a
# link to the root one) with TAURI_APP_PATH; src-tauri/tauri.bundle.json turns the
# bundle on for this step only (plain `cargo build` stays a dev build with no bundle).
# Old bundles go first so only this version's files are copied out.
rm -rf "$CARGO_TARGET_DIR/release/bundle/deb" "$CARGO_TARGET_DIR/release/bundle/rpm"
TAURI_APP_PATH=src-tauri scripts/package/node_modules/.bin/tauri bundle --ci \
  --config src-tauri/tauri.bundle.json --bundles deb,rpm
cp -f "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb "$CARGO_TARGET_DIR"/release/bundle/rpm/*.rpm "$out/"

# The server's package, by cargo-deb ([package.metadata.deb] in crates/server/Cargo.toml).
# GUESTPASS_PACKAGE_ONLY=app skips it (package-check's second version needs the app only).
if [ "${GUESTPASS_PACKAGE_ONLY:-}" != app ]; then
  cargo deb -p guestpass-server --no-build --output "$out"
fi

# Only this version's files are handed to the repository (older ones already in it stay).
scripts/package/apt-repo.sh "$apt_dir" "$out"/*_"$version"*.deb

echo "==> done:"
ls -l "$out"/*"$version"*
echo "apt repository: $apt_dir (deb [signed-by=$apt_dir/guestpass-archive-keyring.gpg] file://$apt_dir ./)"
