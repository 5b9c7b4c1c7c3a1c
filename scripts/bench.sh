#!/usr/bin/env bash
# The benchmark, end to end from a clean checkout: installs what it needs, builds, starts
# Guestpass's reference server (SQLite, and PostgreSQL when a cluster is available) and a
# stock Better Auth on loopback, loads them with wrk, runs the cleanup of 1,000,000 stale
# guests, and prints a markdown table (also written to target/bench/results.md).
#
#   scripts/bench.sh            release build; 10 s per cell at 2 and 20 connections (~10 min)
#   scripts/bench.sh --smoke    seconds: debug build, 1 s cells, 10,000 guests (CI runs it)
#
# Any other argument goes to guestpass-bench (target/<profile>/guestpass-bench --help).
set -euo pipefail
cd "$(dirname "$0")/.."

# --smoke uses the debug build (CI has built it already; a release build costs ~11 min);
# --profile=release|debug overrides.
profile=release
explicit=""
for arg in "$@"; do
  case $arg in
    --smoke) [ -n "$explicit" ] || profile=debug ;;
    --profile=*) profile=${arg#--profile=}; explicit=1 ;;
  esac
done
args=("$@")
[ -n "$explicit" ] || args+=(--profile "$profile")

scripts/setup.sh bench

echo "==> building guestpass-server and guestpass-bench ($profile)" >&2
if [ "$profile" = release ]; then
  cargo build --release -p guestpass-server -p guestpass-bench
else
  cargo build -p guestpass-server -p guestpass-bench
fi

# PostgreSQL too when a local cluster can be started; SQLite alone otherwise.
if [ -z "${GUESTPASS_TEST_POSTGRES_URL:-}" ]; then
  if pg_out=$(scripts/postgres.sh 2>/dev/null); then
    eval "$pg_out"
  else
    echo "==> no PostgreSQL cluster: benchmarking SQLite only" >&2
  fi
fi

exec "target/$profile/guestpass-bench" "${args[@]}"
