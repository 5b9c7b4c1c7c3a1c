#!/usr/bin/env bash
# Makes sure a local PostgreSQL cluster runs and prints the export line for its URL:
#   eval "$(scripts/postgres.sh)"
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ -n "${GUESTPASS_TEST_POSTGRES_URL:-}" ]; then
  echo "export GUESTPASS_TEST_POSTGRES_URL='$GUESTPASS_TEST_POSTGRES_URL'"
  exit 0
fi
read -r ver name port status _ < <(pg_lsclusters -h | head -1) || {
  echo "guestpass: no PostgreSQL cluster found (pg_lsclusters is empty)" >&2; exit 1; }
if [ "$status" != online ]; then
  $SUDO pg_ctlcluster "$ver" "$name" start >&2
fi
# Tests connect over TCP with a password, as a server would.
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
as_postgres psql -q -p "$port" -c "ALTER USER postgres PASSWORD 'postgres'" >&2
echo "export GUESTPASS_TEST_POSTGRES_URL='postgres://postgres:postgres@127.0.0.1:$port/postgres'"
