#!/usr/bin/env bash
# The benchmark, end to end from a clean checkout: installs what it needs, builds, starts
# Guestpass's reference server (SQLite, and PostgreSQL when a cluster is available) and a
# stock Better Auth on loopback, loads them with wrk, runs the cleanup of 1,000,000 stale
# guests, then times the device (guest creation, relaunch, 10k notes, in core on the real
# keyring; start to guest banner in the real window under Xvfb), and prints markdown tables
# (also written to target/bench/results.md). Then record sync: real devices (guestpass-core
# on the real keyring) against the server — a new device's first sync of 10,000 notes, a push
# of 1,000 changes, an idle pass, the live delay between two devices — and push/pull under
# wrk at 20 connections (`guestpass-bench --scenario records`).
#
#   scripts/bench.sh            release build; 10 s per cell at 2 and 20 connections (~10 min)
#   scripts/bench.sh --smoke    seconds: debug build, 1 s cells, 10,000 guests (CI runs it)
#
# Any other argument goes to guestpass-bench (target/<profile>/guestpass-bench --help);
# with --scenario http|cleanup the device timers and record sync are skipped; with
# --scenario records only record sync runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# --smoke uses the debug build (CI has built it already; a release build costs ~11 min);
# --profile=release|debug overrides.
profile=release
explicit=""
smoke=""
device=1
records=1
main=1
rec_args=()
prev=""
for arg in "$@"; do
  case $arg in
    --smoke) smoke=1; [ -n "$explicit" ] || profile=debug ;;
    --profile=*) profile=${arg#--profile=}; explicit=1 ;;
    --scenario=http|--scenario=cleanup|http|cleanup) device=""; records="" ;;
    --scenario=records|records) device=""; main="" ;;
  esac
  # The records run gets every argument but the scenario (it sets its own).
  case $arg in
    --scenario|--scenario=*) ;;
    *) [ "$prev" = --scenario ] || rec_args+=("$arg") ;;
  esac
  prev=$arg
done
args=("$@")
[ -n "$explicit" ] || { args+=(--profile "$profile"); rec_args+=(--profile "$profile"); }

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

out=target/bench/results.md
mkdir -p target/bench
if [ -n "$main" ]; then
  "target/$profile/guestpass-bench" "${args[@]}"
else
  : > "$out"
fi

# Record sync: its devices keep their tokens in the real keyring, hence with-keyring.sh.
if [ -n "$records" ]; then
  echo "==> record sync: devices against the server, push/pull under wrk" >&2
  scripts/with-keyring.sh "target/$profile/guestpass-bench" "${rec_args[@]}" \
    --scenario records --out target/bench/records.md
  if [ -n "$main" ]; then
    { echo; sed -n '/^## Record sync/,$p' target/bench/records.md; } >> "$out"
  else
    cat target/bench/records.md >> "$out"
  fi
fi
[ -n "$device" ] || exit 0

# The device: core's timers on the real keyring and a real SQLite file.
echo "==> the device: guest creation, relaunch, notes (guestpass-core, real keyring)" >&2
if [ -n "$smoke" ]; then
  scripts/with-keyring.sh cargo test -q -p guestpass-core --bench device -- --smoke \
    --markdown "$PWD/target/bench/device.md"
else
  scripts/with-keyring.sh cargo bench -q -p guestpass-core --bench device -- \
    --markdown "$PWD/target/bench/device.md"
fi
{ echo; cat target/bench/device.md; } >> "$out"

# Start to guest banner in the real window. The smoke run leaves it to the WebDriver
# suite, which CI runs next with the same app build.
if [ -z "$smoke" ]; then
  scripts/setup.sh test
  echo "==> the device: start to guest banner in the real window (Xvfb, WebDriver)" >&2
  cargo build -p guestpass-app
  xvfb-run -a -s "-screen 0 1280x1024x24" scripts/with-keyring.sh \
    node tests/e2e/bench-start.mjs --runs 10 --markdown "$PWD/target/bench/start.md"
  { echo; cat target/bench/start.md; } >> "$out"
fi
echo "==> all tables in $out" >&2
