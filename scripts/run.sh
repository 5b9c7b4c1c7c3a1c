#!/usr/bin/env bash
# Launches Guestpass: installs the system packages when missing, builds, starts the
# reference backend on loopback (SQLite file beside the app's data) and opens the app.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh app

echo "==> building the app and the reference server (first build takes several minutes)"
cargo build -p guestpass-app -p guestpass-server

data_home=${XDG_DATA_HOME:-$HOME/.local/share}
server_dir="$data_home/dev.guestpass.app/server"
mkdir -p "$server_dir"
log="$server_dir/server.log"
port=${GUESTPASS_PORT:-8787}

echo "==> starting the reference backend on 127.0.0.1:$port (log: $log)"
GUESTPASS_LISTEN="127.0.0.1:$port" \
GUESTPASS_DATABASE_URL="sqlite://$server_dir/guestpass-server.db" \
  target/debug/guestpass-server serve >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

export GUESTPASS_BACKEND_URL=${GUESTPASS_BACKEND_URL:-http://127.0.0.1:$port}
export GUESTPASS_BACKEND_DIALECT=${GUESTPASS_BACKEND_DIALECT:-guestpass}
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "guestpass: no graphical display (DISPLAY/WAYLAND_DISPLAY unset). Run it in a desktop session," >&2
  echo "           or headless: xvfb-run -a scripts/with-keyring.sh scripts/run.sh" >&2
  exit 2
fi
echo "==> opening Guestpass"
target/debug/guestpass
