#!/usr/bin/env bash
# Adds .deb files to a flat, signed apt repository and rewrites its indexes.
#   scripts/package/apt-repo.sh REPO_DIR FILE.deb...
# REPO_DIR is a folder any static web server (or file://) can serve:
#   pool/*.deb, Packages(.gz), Release, InRelease, Release.gpg, and the public key as
#   guestpass-archive-keyring.gpg (binary, for signed-by=) and .asc (armoured).
# A client uses it with
#   deb [signed-by=/usr/share/keyrings/guestpass-archive-keyring.gpg] https://HOST/PATH ./
# Older versions already in pool/ stay: apt picks the newest, and a pinned older
# version stays installable.
#
# The signing key lives in GUESTPASS_APT_GNUPGHOME (default target/apt-key, never
# committed); it is made there on first use, without a passphrase, for this repository
# only. A real release keeps that folder offline and backed up: losing it means every
# client must be given a new key.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ $# -lt 2 ]; then
  echo "usage: scripts/package/apt-repo.sh REPO_DIR FILE.deb..." >&2
  exit 2
fi
repo=$1
shift
target=${CARGO_TARGET_DIR:-target}
export GNUPGHOME=${GUESTPASS_APT_GNUPGHOME:-$target/apt-key}
uid="Guestpass apt repository <noreply@guestpass.invalid>"

mkdir -p "$GNUPGHOME" "$repo/pool"
chmod 700 "$GNUPGHOME"
# gpg-agent (started by gpg on demand) is stopped again on the way out, so no agent
# of ours outlives the run.
trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true' EXIT

if ! gpg --batch --list-secret-keys "$uid" >/dev/null 2>&1; then
  echo "==> making the apt repository's signing key in $GNUPGHOME"
  gpg --batch --pinentry-mode loopback --passphrase '' \
    --quick-generate-key "$uid" ed25519 sign never
fi
fingerprint=$(gpg --batch --with-colons --list-secret-keys "$uid" | awk -F: '/^fpr:/ {print $10; exit}')

for deb in "$@"; do
  cp -f "$deb" "$repo/pool/"
done

# Indexes with paths relative to the repo root, so the folder can move as a whole.
# The old signatures go first: they are not part of what Release lists.
rm -f "$repo/InRelease" "$repo/Release.gpg"
(
  cd "$repo"
  apt-ftparchive packages pool > Packages
  gzip -9 -n -c Packages > Packages.gz
  apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=Guestpass \
    -o APT::FTPArchive::Release::Label=Guestpass \
    -o APT::FTPArchive::Release::Suite=stable \
    -o APT::FTPArchive::Release::Codename=stable \
    -o APT::FTPArchive::Release::Description="Guestpass packages" \
    release . > Release.new
  mv -f Release.new Release
)
# InRelease (clear-signed, what apt reads first) and Release.gpg (detached, for old
# clients), both made by the repository's own key.
gpg --batch --yes --local-user "$fingerprint" --clearsign --output "$repo/InRelease" "$repo/Release"
gpg --batch --yes --local-user "$fingerprint" --armor --detach-sign --output "$repo/Release.gpg" "$repo/Release"
gpg --batch --yes --export "$fingerprint" > "$repo/guestpass-archive-keyring.gpg"
gpg --batch --yes --armor --export "$fingerprint" > "$repo/guestpass-archive-keyring.asc"
echo "==> apt repository $repo ($(find "$repo/pool" -name '*.deb' | wc -l) packages, key $fingerprint)"
