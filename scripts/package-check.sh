#!/usr/bin/env bash
# The packages, installed and used as a person and an operator would: the longer run
# that CI's time cannot hold (two release builds). As root on Debian/Ubuntu:
#   scripts/package-check.sh
# It runs scripts/package.sh (version N), then builds N+1 from a copy of this tree
# (version bumped, one extra no-op client migration) and checks:
#   app     the .deb's files and dependencies; dpkg -i; the installed binary starts
#           under Xvfb with a keyring, a fresh HOME and no GUESTPASS_* variables and
#           makes exactly one guest in ~/.local/share/dev.guestpass.app; purge
#   rpm     rpm -qip / -qlp: name, version, webkit2gtk4.1, the files
#   server  the .deb's unit and conffile; dpkg -i; systemd-analyze verify; check-config
#           (the packaged file passes, bad files are refused with line and reason); the
#           binary as user guestpass on /var/lib/guestpass answers /healthz and /readyz
#   apt     the signed repository as a file:// source: install N, add a note (WebDriver),
#           upgrade to N+1 in place, the guest and the note survive; N's binary then
#           refuses the newer database (DATABASE_TOO_NEW) and leaves it unchanged
# Prints PASS/FAIL per check and exits non-zero on any failure. Whatever happens it
# purges what it installed and removes its apt source (trap). Scratch and logs:
# target/package-check/ (kept for a look afterwards; remade by the next run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "package-check: run as root (it installs and purges packages)" >&2
  exit 2
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
case $CARGO_TARGET_DIR in /*) ;; *) CARGO_TARGET_DIR=$root/$CARGO_TARGET_DIR ;; esac
work=$CARGO_TARGET_DIR/package-check
packages=${GUESTPASS_PACKAGE_OUT:-$CARGO_TARGET_DIR/packages}
apt_list=/etc/apt/sources.list.d/guestpass-package-check.list
# Only our own source is re-read by `apt-get update` (no trip to the distribution's
# mirrors); installs and upgrades then use apt's whole configuration, as a person's would.
apt_update=(apt-get update -q -o Dir::Etc::sourcelist="$apt_list" -o Dir::Etc::sourceparts=-
  -o APT::Get::List-Cleanup=0)
export DEBIAN_FRONTEND=noninteractive
# A marker of a run that installed something: a run killed before its cleanup lets the
# next one purge its leftovers rather than refuse.
marker=/var/lib/guestpass-package-check.installed

results=()
failed=0
pass() { results+=("PASS  $1"); echo "PASS  $1"; }
fail() { results+=("FAIL  $1"); echo "FAIL  $1" >&2; failed=1; }
# check NAME CMD...: one line of the summary; the command's output goes to the log.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# Process groups we started (setsid), stopped by their id in the cleanup.
groups=()
user_existed=0
getent passwd guestpass >/dev/null && user_existed=1
state_existed=0
[ -e /var/lib/guestpass ] && state_existed=1

purge_ours() {
  for p in guestpass guestpass-server; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed\|config-files'; then
      dpkg --purge "$p" >/dev/null || true
    fi
  done
}

cleanup() {
  local status=$?
  for g in "${groups[@]}"; do stop_group "$g"; done
  purge_ours
  rm -f "$apt_list" "$marker"
  find /var/lib/apt/lists -maxdepth 1 -name '*package-check_apt*' -delete 2>/dev/null || true
  # The server package keeps its data and user on purge (README "Operating it"): this
  # run's own are removed, anything that was there before stays.
  if [ "$state_existed" = 0 ]; then rm -rf /var/lib/guestpass; fi
  if [ "$user_existed" = 0 ] && getent passwd guestpass >/dev/null; then
    deluser --system guestpass >/dev/null 2>&1 || true
    if getent group guestpass >/dev/null; then delgroup --system guestpass >/dev/null 2>&1 || true; fi
  fi
  echo
  echo "== package-check summary (logs: $work)"
  printf '%s\n' "${results[@]}"
  if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
    echo "FAIL  the run stopped early (exit $status): see the output above"
    failed=1
  fi
  [ "$failed" = 0 ] || exit 1
  exit 0
}
trap cleanup EXIT

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds; false after SECONDS.
wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "package-check: gave up waiting ${secs}s for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# stop_group PGID: SIGTERM to the group, SIGKILL if it has not gone within 15 s.
stop_group() {
  local g=$1
  kill -0 -- "-$g" 2>/dev/null || return 0
  kill -TERM -- "-$g" 2>/dev/null || true
  if ! wait_for 15 "process group $g to end" bash -c "! kill -0 -- -$g"; then
    kill -KILL -- "-$g" 2>/dev/null || true
  fi
  wait "$g" 2>/dev/null || true
}

# A person's fresh desktop session: an empty HOME, the standard data dir, nothing of
# ours in the environment (env -i), an X server (xvfb-run) and an unlocked keyring.
desktop_env() {
  local home=$1
  echo env -i PATH=/usr/local/bin:/usr/bin:/bin:"${CARGO_HOME:-$HOME/.cargo}/bin" \
    HOME="$home" XDG_DATA_HOME="$home/.local/share" LANG=C.UTF-8 TMPDIR=/tmp
}
# run_desktop HOME LOG CMD...: start CMD in such a session, in its own process group.
run_desktop() {
  local home=$1 log=$2
  shift 2
  mkdir -p "$home"
  # shellcheck disable=SC2046 # desktop_env's words are meant to split
  setsid $(desktop_env "$home") xvfb-run -a -s "-screen 0 1280x1024x24" \
    "$root/scripts/with-keyring.sh" "$@" >"$log" 2>&1 &
  last_group=$!
  groups+=("$last_group")
}

db_of() { echo "$1/.local/share/dev.guestpass.app/guestpass.db"; }
sql() { sqlite3 -readonly "$1" "$2" 2>/dev/null; }
one_guest() { [ "$(sql "$1" 'SELECT count(*) FROM users WHERE is_anonymous = 1')" = 1 ] &&
  [ "$(sql "$1" 'SELECT count(*) FROM users')" = 1 ] &&
  [ "$(sql "$1" 'SELECT count(*) FROM device_account')" = 1 ]; }
has() { grep -qE -- "$2" "$1" || { echo "package-check: $1 has no /$2/" >&2; return 1; }; }
installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

if [ -e "$marker" ]; then
  echo "==> purging what an interrupted package-check left installed"
  purge_ours
elif dpkg-query -W -f='${Status}' guestpass 2>/dev/null | grep -q 'ok installed' ||
  dpkg-query -W -f='${Status}' guestpass-server 2>/dev/null | grep -q 'ok installed'; then
  echo "package-check: guestpass or guestpass-server is installed on this machine; it would be purged. Remove it first." >&2
  trap - EXIT
  exit 2
fi
rm -rf "$work"
mkdir -p "$work"

# ---------------------------------------------------------------- build N
echo "==> scripts/package.sh (version N)"
scripts/package.sh
version=$(cargo metadata --no-deps --format-version 1 | jq -r '.packages[] | select(.name == "guestpass-app") | .version')
app_deb=$packages/Guestpass_${version}_amd64.deb
app_rpm=$packages/Guestpass-${version}-1.x86_64.rpm
server_deb=$packages/guestpass-server_${version}-1_amd64.deb
for f in "$app_deb" "$app_rpm" "$server_deb"; do
  [ -f "$f" ] || { echo "package-check: package.sh made no $f" >&2; exit 1; }
done
touch "$marker"

# ---------------------------------------------------------------- (a) the app .deb
echo "==> app .deb: $app_deb"
dpkg -c "$app_deb" >"$work/app-deb-contents.txt"
dpkg -I "$app_deb" >"$work/app-deb-info.txt"
cat "$work/app-deb-info.txt"
check "app .deb lists /usr/bin/guestpass" has "$work/app-deb-contents.txt" ' (\./)?usr/bin/guestpass$'
check "app .deb lists the desktop entry" has "$work/app-deb-contents.txt" ' (\./)?usr/share/applications/[^/]+\.desktop$'
for size in 32x32 64x64 128x128 256x256@2; do
  check "app .deb lists the ${size} icon" has "$work/app-deb-contents.txt" " (\./)?usr/share/icons/hicolor/${size}/apps/[^/]+\.png$"
done
check "app .deb depends on libwebkit2gtk-4.1-0" has "$work/app-deb-info.txt" '^ Depends:.*libwebkit2gtk-4\.1-0'
check "app .deb depends on libgtk-3-0" has "$work/app-deb-info.txt" '^ Depends:.*libgtk-3-0'
check "app .deb recommends gnome-keyring" has "$work/app-deb-info.txt" '^ Recommends:.*gnome-keyring'
check "app .deb installs with dpkg -i" dpkg -i "$app_deb"
app_bin=$(dpkg -L guestpass | grep -E '/bin/guestpass$' | head -n 1)
check "installed binary at /usr/bin/guestpass" test "$app_bin" = /usr/bin/guestpass
desktop=$(dpkg -L guestpass | grep -E '\.desktop$' | head -n 1)
check "desktop entry runs guestpass" has "$desktop" '^Exec=guestpass'

home_a=$work/home-a
run_desktop "$home_a" "$work/app-first-run.log" /usr/bin/guestpass
check "first launch makes exactly one guest in \$XDG_DATA_HOME/dev.guestpass.app" \
  wait_for 60 "the guest in $(db_of "$home_a")" one_guest "$(db_of "$home_a")"
check "first launch wrote no settings.json (no backend configured)" \
  test ! -e "$home_a/.local/share/dev.guestpass.app/settings.json"
stop_group "$last_group"
check "purge removes the app" bash -c 'dpkg --purge guestpass >/dev/null && [ ! -e /usr/bin/guestpass ]'

# ---------------------------------------------------------------- (b) the .rpm
echo "==> app .rpm: $app_rpm"
rpm -qip "$app_rpm" >"$work/app-rpm-info.txt" 2>&1
rpm -qlp "$app_rpm" >"$work/app-rpm-files.txt" 2>&1
rpm -qp --requires "$app_rpm" >"$work/app-rpm-requires.txt" 2>&1
cat "$work/app-rpm-info.txt" "$work/app-rpm-requires.txt"
check "rpm -qip: version $version" has "$work/app-rpm-info.txt" "^Version *: *${version//./\\.}$"
check "rpm requires webkit2gtk4.1" has "$work/app-rpm-requires.txt" '^webkit2gtk4\.1'
check "rpm -qlp lists /usr/bin/guestpass" has "$work/app-rpm-files.txt" '^/usr/bin/guestpass$'
check "rpm -qlp lists the desktop entry" has "$work/app-rpm-files.txt" '^/usr/share/applications/[^/]+\.desktop$'
check "rpm -qlp lists the 128x128 icon" has "$work/app-rpm-files.txt" '^/usr/share/icons/hicolor/128x128/apps/'

# ---------------------------------------------------------------- (c) the server .deb
echo "==> server .deb: $server_deb"
dpkg -c "$server_deb" >"$work/server-deb-contents.txt"
dpkg -I "$server_deb" >"$work/server-deb-info.txt"
cat "$work/server-deb-info.txt"
check "server .deb lists the systemd unit" has "$work/server-deb-contents.txt" ' \./(usr/)?lib/systemd/system/guestpass-server\.service$'
check "server .deb lists /etc/guestpass/server.toml" has "$work/server-deb-contents.txt" ' \./etc/guestpass/server\.toml$'
check "server .deb marks server.toml a conffile" bash -c \
  "dpkg-deb --ctrl-tarfile '$server_deb' | tar -xO ./conffiles | grep -qx /etc/guestpass/server.toml"
check "server .deb installs with dpkg -i" dpkg -i "$server_deb"
unit=$(dpkg -L guestpass-server | grep -E '/guestpass-server\.service$' | head -n 1)
check "postinst made the system user guestpass" bash -c 'getent passwd guestpass | grep -q "^guestpass:x:[0-9]*:[0-9]*:.*:/var/lib/guestpass:"'
check "/var/lib/guestpass belongs to guestpass, mode 750" \
  test "$(stat -c '%U:%G %a' /var/lib/guestpass)" = "guestpass:guestpass 750"
check "server.toml is root:guestpass 640" \
  test "$(stat -c '%U:%G %a' /etc/guestpass/server.toml)" = "root:guestpass 640"
check "systemd-analyze verify $unit" bash -c "systemd-analyze verify '$unit' >'$work/systemd-verify.txt' 2>&1"
check "check-config accepts the packaged config (as guestpass)" \
  runuser -u guestpass -- /usr/bin/guestpass-server --config /etc/guestpass/server.toml check-config

# A broken rule: a reachable address with a short secret, reported at its line.
printf '%s\n' 'appName = "Check"' 'listen = "0.0.0.0:3000"' 'secret = "short"' >"$work/bad-rule.toml"
if /usr/bin/guestpass-server --config "$work/bad-rule.toml" check-config >"$work/bad-rule.out" 2>&1; then
  fail "check-config refuses a short secret on 0.0.0.0 (it accepted it)"
else
  cat "$work/bad-rule.out"
  check "check-config refuses a short secret with its line and reason" \
    has "$work/bad-rule.out" "bad-rule\.toml:3: .*secret.*32"
fi
# A TOML error: toml's own line and column.
printf '%s\n' 'appName = "Check"' 'listen = ' >"$work/bad-toml.toml"
if /usr/bin/guestpass-server --config "$work/bad-toml.toml" check-config >"$work/bad-toml.out" 2>&1; then
  fail "check-config refuses a TOML syntax error (it accepted it)"
else
  cat "$work/bad-toml.out"
  check "check-config refuses a TOML syntax error with its line" has "$work/bad-toml.out" "line 2"
fi

# The service's command line, as its user, on its state directory. (systemd is not
# PID 1 on these machines, so the unit's sandbox itself is not started here.)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid runuser -u guestpass -- /usr/bin/guestpass-server --config /etc/guestpass/server.toml \
  serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_group=$!
groups+=("$server_group")
check "the server as guestpass answers /healthz" \
  wait_for 30 "/healthz on $port" curl -fsS "http://127.0.0.1:$port/healthz"
check "/readyz: ready (database answers, migrations applied)" \
  bash -c "curl -fsS 'http://127.0.0.1:$port/readyz' | grep -q '\"ready\"'"
check "its SQLite file is /var/lib/guestpass/guestpass-server.db, owned by guestpass" \
  test "$(stat -c %U /var/lib/guestpass/guestpass-server.db 2>/dev/null)" = guestpass
stop_group "$server_group"
check "purge removes the server's unit and config" bash -c \
  "dpkg --purge guestpass-server >/dev/null && [ ! -e '$unit' ] && [ ! -e /etc/guestpass/server.toml ]"

# ---------------------------------------------------------------- (d) apt: N, then N+1
repo=$work/apt
echo "==> apt repository $repo with version $version"
scripts/package/apt-repo.sh "$repo" "$app_deb" "$server_deb"
echo "deb [signed-by=$repo/guestpass-archive-keyring.gpg] file://$repo ./" >"$apt_list"
check "apt-get update reads the signed repository" bash -c \
  "${apt_update[*]} >'$work/apt-update-n.log' 2>&1 && ! grep -qiE 'NO_PUBKEY|not signed|^W:|^E:' '$work/apt-update-n.log'"
check "apt-get install guestpass installs $version" bash -c \
  "apt-get install -y -q guestpass >'$work/apt-install-n.log' 2>&1 && [ \"\$(dpkg-query -W -f='\${Version}' guestpass)\" = '$version' ]"

home_d=$work/home-d
db_d=$(db_of "$home_d")
note="Kept across the upgrade to the next version"
# The first launch of N, in the real window: the guest appears and writes a note.
# (GUESTPASS_APP_BIN is read by the WebDriver harness, not by the app.)
run_desktop "$home_d" "$work/drive-n.log" env GUESTPASS_APP_BIN=/usr/bin/guestpass \
  node scripts/package/drive.mjs note "$note"
check "N: the guest writes a note in the window (WebDriver)" \
  wait_for 120 "the note in $db_d" bash -c "[ \"\$(sqlite3 -readonly '$db_d' 'SELECT count(*) FROM notes' 2>/dev/null)\" = 1 ]"
wait_for 60 "the WebDriver run of N to end" bash -c "! kill -0 -- -$last_group" || true
stop_group "$last_group"
guest_id=$(sql "$db_d" 'SELECT user_id FROM device_account')
echo "guest of N: $guest_id"
check "N: one guest, one note" bash -c "[ -n '$guest_id' ] && [ \"\$(sqlite3 -readonly '$db_d' 'SELECT count(*) FROM users')\" = 1 ]"
cp /usr/bin/guestpass "$work/guestpass-$version"

# N+1: the same tree with the version bumped and one more client migration, so that
# N has a reason to refuse what N+1 leaves behind. The copy keeps the files' times
# (tar) and an edited file gets its original's time, so a second run rebuilds nothing
# that did not change.
next=$(python3 -c 'import sys; v = sys.argv[1].split("."); v[-1] = str(int(v[-1]) + 1); print(".".join(v))' "$version")
src=$CARGO_TARGET_DIR/package-check-next
echo "==> building $next from a copy of this tree in $src"
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
bump() { # bump FILE SED: edit FILE in the copy, keeping the original's time
  sed -i "$2" "$src/$1"
  touch -r "$root/$1" "$src/$1"
}
bump Cargo.toml "0,/^version = \"${version//./\\.}\"/s//version = \"$next\"/"
bump tauri.conf.json "s/\"version\": \"${version//./\\.}\"/\"version\": \"$next\"/"
grep -q "^version = \"$next\"" "$src/Cargo.toml"
mig=$src/migrations/client/20261203000001_package_check.sql
printf '%s\n' "-- Only in the build scripts/package-check.sh makes: a harmless schema change." \
  "CREATE TABLE IF NOT EXISTS package_check(x);" >"$mig"
touch -r "$root/migrations/client" "$mig"
GUESTPASS_PACKAGE_OUT=$work/next-packages GUESTPASS_APT_DIR=$repo GUESTPASS_PACKAGE_ONLY=app \
  "$src/scripts/package.sh"

check "apt-get update sees $next" bash -c \
  "${apt_update[*]} >'$work/apt-update-next.log' 2>&1 && apt-cache policy guestpass | grep -q 'Candidate: $next'"
check "apt-get install --only-upgrade guestpass upgrades to $next in place" bash -c \
  "apt-get install -y -q --only-upgrade guestpass >'$work/apt-upgrade.log' 2>&1 && [ \"\$(dpkg-query -W -f='\${Version}' guestpass)\" = '$next' ]"

run_desktop "$home_d" "$work/app-next-run.log" /usr/bin/guestpass
check "N+1 migrates the database (its extra migration applied)" \
  wait_for 60 "migration 20261203000001 in $db_d" bash -c \
  "[ \"\$(sqlite3 -readonly '$db_d' 'SELECT count(*) FROM _sqlx_migrations WHERE version = 20261203000001' 2>/dev/null)\" = 1 ]"
# The guest is resumed (its token lived in the last session's keyring, so N+1 gives the
# same user a fresh session): wait for that session before stopping the app.
wait_for 30 "N+1's session for $guest_id" bash -c \
  "[ \"\$(sqlite3 -readonly '$db_d' \"SELECT count(*) FROM sessions WHERE user_id = '$guest_id'\" 2>/dev/null)\" -ge 2 ]" || true
stop_group "$last_group"
check "after the upgrade: the same guest, still the only user" bash -c \
  "[ \"\$(sqlite3 -readonly '$db_d' 'SELECT user_id FROM device_account')\" = '$guest_id' ] && [ \"\$(sqlite3 -readonly '$db_d' 'SELECT count(*) FROM users')\" = 1 ]"
check "after the upgrade: the note is still there" bash -c \
  "[ \"\$(sqlite3 -readonly '$db_d' \"SELECT body FROM notes WHERE user_id = '$guest_id'\")\" = '$note' ]"

# N's binary on N+1's database. The WAL is folded in first, so the file alone is the
# database and its checksum says whether anything at all was written.
sqlite3 "$db_d" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
sum_before=$(sha256sum "$db_d" | cut -d' ' -f1)
dump_before=$(sqlite3 -readonly "$db_d" .dump | sha256sum)
# First on its own, for its log (under WebDriver the app's output is not passed on),
# then in the window for what a person sees.
run_desktop "$home_d" "$work/old-binary.log" "$work/guestpass-$version"
check "N on N+1's database: DATABASE_TOO_NEW in its log" \
  wait_for 90 "DATABASE_TOO_NEW from $version" bash -c \
  "grep -q 'could not be opened.*newer version of Guestpass' '$work/old-binary.log' && grep -qE 'code.{0,16}=.{0,16}DATABASE_TOO_NEW' '$work/old-binary.log'"
stop_group "$last_group"
run_desktop "$home_d" "$work/old-binary-window.log" env GUESTPASS_APP_BIN="$work/guestpass-$version" \
  node scripts/package/drive.mjs fatal package-check-database-too-new
check "N on N+1's database: the window says a newer version last opened it" \
  wait_for 60 "the fatal screen" grep -q '"code":"DATABASE_TOO_NEW".*was last opened by a newer version of Guestpass' "$work/old-binary-window.log"
wait_for 60 "the WebDriver run of the old binary to end" bash -c "! kill -0 -- -$last_group" || true
stop_group "$last_group"
check "N on N+1's database: the file is unchanged (sha256)" \
  test "$(sha256sum "$db_d" | cut -d' ' -f1)" = "$sum_before"
check "N on N+1's database: the content is unchanged (.dump)" \
  test "$(sqlite3 -readonly "$db_d" .dump | sha256sum)" = "$dump_before"
echo "screenshots: $root/target/e2e/package-check-*.png"
