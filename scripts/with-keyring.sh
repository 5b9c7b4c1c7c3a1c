#!/usr/bin/env bash
# Runs a command inside its own D-Bus session with an unlocked GNOME Keyring, the
# Secret Service a Linux desktop user has. Used by the tests and by headless runs.
#   scripts/with-keyring.sh cargo test
# The keyring files live in a private temp dir: two daemons sharing one keyring file
# reload each other's writes as locked collections.
#
# The session bus starts the daemon itself, through a service file of ours listed before
# the system's: gnome-keyring-daemon (42.x) aborts when a client vanishes in the middle
# of its handshake (a test process killed or exiting at that instant), and the system's
# service file would then bring up a daemon on the default, *locked* keyring, failing
# every later call with "no result found". Ours unlocks the session's keyring files
# again, so the next call after such an abort finds a working keyring.
set -euo pipefail
if [ "${GUESTPASS_IN_KEYRING_SESSION:-}" = 1 ]; then exec "$@"; fi
export GUESTPASS_IN_KEYRING_SESSION=1

keyring_home=$(mktemp -d "${TMPDIR:-/tmp}/guestpass-keyring.XXXXXX")
trap 'rm -rf "$keyring_home"' EXIT
mkdir -p "$keyring_home/keyrings" "$keyring_home/services"

# --unlock reads the keyring password from stdin (without it the daemon would prompt);
# --foreground because the bus, not a shell, owns the process.
cat > "$keyring_home/start-keyring" <<EOF
#!/bin/sh
printf 'guestpass-ci' | XDG_DATA_HOME='$keyring_home' exec gnome-keyring-daemon --unlock --foreground --components=secrets
EOF
chmod +x "$keyring_home/start-keyring"
for name in org.freedesktop.secrets org.gnome.keyring; do
  printf '[D-BUS Service]\nName=%s\nExec=%s\n' "$name" "$keyring_home/start-keyring" \
    > "$keyring_home/services/$name.service"
done
# A directory listed first wins over the system's service files of the same name.
cat > "$keyring_home/session.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <servicedir>$keyring_home/services</servicedir>
  <include>/usr/share/dbus-1/session.conf</include>
</busconfig>
EOF

status=0
dbus-run-session --config-file="$keyring_home/session.conf" -- bash -c '
  set -euo pipefail
  # Start the daemon now (a call to the name activates it and waits until it owns it).
  dbus-send --session --print-reply --dest=org.freedesktop.secrets \
    /org/freedesktop/secrets org.freedesktop.DBus.Peer.Ping > /dev/null
  "$@"
' bash "$@" || status=$?
exit "$status"
