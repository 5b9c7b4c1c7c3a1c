#!/usr/bin/env bash
# Runs a command inside its own D-Bus session with an unlocked GNOME Keyring, the
# Secret Service a Linux desktop user has. Used by the tests and by headless runs.
#   scripts/with-keyring.sh cargo test
# The keyring files live in a private temp dir: two daemons sharing one keyring file
# reload each other's writes as locked collections.
set -euo pipefail
if [ "${GUESTPASS_IN_KEYRING_SESSION:-}" = 1 ]; then exec "$@"; fi
export GUESTPASS_IN_KEYRING_SESSION=1
exec dbus-run-session -- bash -c '
  set -euo pipefail
  keyring_home=$(mktemp -d "${TMPDIR:-/tmp}/guestpass-keyring.XXXXXX")
  trap "rm -rf \"$keyring_home\"" EXIT
  mkdir -p "$keyring_home/keyrings"
  # The crash harness restarts the daemon on these files when a killed client crashes it.
  export GUESTPASS_KEYRING_HOME="$keyring_home"
  # --unlock reads the keyring password from stdin; without it the daemon would prompt.
  eval "$(printf "guestpass-ci" | XDG_DATA_HOME="$keyring_home" gnome-keyring-daemon --unlock --components=secrets)"
  # The daemon returns before it owns its bus name; a client that asked first would
  # make D-Bus start a second, locked daemon. Wait (up to 10 s) for the name.
  for _ in $(seq 200); do
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null \
      | grep -q "boolean true" && break
    sleep 0.05
  done
  "$@"
' bash "$@"
