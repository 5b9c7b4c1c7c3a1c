#!/usr/bin/env bash
# Runs a command inside its own D-Bus session with an unlocked GNOME Keyring, the
# Secret Service a Linux desktop user has. Used by the tests and by headless runs.
#   scripts/with-keyring.sh cargo test
set -euo pipefail
if [ "${GUESTPASS_IN_KEYRING_SESSION:-}" = 1 ]; then exec "$@"; fi
export GUESTPASS_IN_KEYRING_SESSION=1
exec dbus-run-session -- bash -c '
  set -euo pipefail
  mkdir -p "$HOME/.local/share/keyrings"
  # --unlock reads the keyring password from stdin; without it the daemon would prompt.
  eval "$(printf "guestpass-ci" | gnome-keyring-daemon --unlock --components=secrets)"
  export GNOME_KEYRING_CONTROL SSH_AUTH_SOCK 2>/dev/null || true
  exec "$@"
' bash "$@"
