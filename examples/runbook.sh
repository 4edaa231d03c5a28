#!/usr/bin/env bash
# The steps of examples/runbook.md, non-interactively and with checks: the notes stack (a web
# service and its database, examples/runbook/notes/) in a local git repository, then
#   v2: a release with a migration (backup of the database volume, migration job, new web);
#   v3: a bad migration (backup, the job fails half-way: web v2 keeps serving, the job is not
#       run again), `reconciler restore` of the volume from the backup, and `git revert`.
# Every step checks what the product should do; a failed check is reported and the script goes
# on. Exit 0 only when all checks passed.
#
#   bash examples/runbook.sh
#
# Needs: docker (docker.io), docker-registry, busybox-static, git, curl, and
# target/release/reconciler (built with `cargo build --release` when missing; RUNBOOK_BIN picks
# another binary). Uses 127.0.0.1:5055 (registry; one already there is reused), 127.0.0.1:8088
# (the notes web), the Compose project `notes`, and $RUNBOOK_DIR (default /tmp/reconciler-runbook)
# for everything else, state dir included. Cleans up on success, failure and Ctrl-C: the
# project's containers, network and volume, the registry if it started one, the images it
# pulled, $RUNBOOK_DIR.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${RUNBOOK_DIR:-/tmp/reconciler-runbook}
STATE=$W/state
BIN=${RUNBOOK_BIN:-$ROOT/target/release/reconciler}
PAGE=http://127.0.0.1:8088/cgi-bin/index
REGISTRY=127.0.0.1:5055
IMAGES=("$REGISTRY/demo/notes-db:v1" "$REGISTRY/demo/notes-web:v1" "$REGISTRY/demo/notes-web:v2"
        "$REGISTRY/demo/notes-web:v3")

FAILED=()
step() { printf '\n=== %s\n' "$*"; }
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; FAILED+=("$*"); }
die() { printf '  FATAL %s\n' "$*" >&2; exit 1; }
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
rc() { "$BIN" --state-dir "$STATE" "$@"; }
# apply_is CODE: `reconciler apply` of the repository exits with CODE; its output is shown.
apply_is() {
  local code=0
  rc apply --repo "file://$W/repo" >"$W/apply.log" 2>&1 || code=$?
  sed 's/^/  | /' "$W/apply.log" | tail -20
  [ "$code" = "$1" ] || { echo "  (apply exited $code)"; return 1; }
}
# grep reads all its input (no -q): with pipefail, a writer cut off by an early exit fails.
page_has() { curl -fsS --max-time 2 "$PAGE" 2>/dev/null | grep -F "$1" >/dev/null; }
db_says() { docker exec notes-db-1 cat /var/lib/notes/schema 2>/dev/null | grep -x "$1" >/dev/null; }
commit() { git -C "$W/repo" add -A && git -C "$W/repo" commit -qm "$1"; }
set_tag() { printf 'WEB_TAG=%s\n' "$1" >"$W/repo/notes/.env"; }
# history_has TEXT: the journal of notes/web, with the failed containers' last log lines.
history_has() { rc history --stack notes --service web -o json | grep -F "$1" >/dev/null; }
# failed_jobs: pre_deploy jobs that failed so far, as counted for /metrics in the state dir.
failed_jobs() { grep -o '"job_failed":[0-9]*' "$STATE/counters.json" 2>/dev/null | cut -d: -f2; }
failed_jobs_are() { [ "$(failed_jobs)" = "$1" ]; }
backups_of_volume() { rc backups notes -o json | grep -o '"volume": *"notes-data"' | wc -l; }
backups_are() { [ "$(backups_of_volume)" = "$1" ]; }

for tool in docker docker-registry git curl; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[ ! -e "$W" ] || die "$W exists (an interrupted run?); remove it first"
[ -z "$(docker ps -aq --filter label=com.docker.compose.project=notes)" ] ||
  die "Compose project notes already has containers; remove them first"
if curl -s --max-time 1 -o /dev/null "http://127.0.0.1:8088/"; then die "127.0.0.1:8088 is in use"; fi
if [ ! -x "$BIN" ]; then
  echo "runbook: building the release binary (a few minutes the first time)"
  cargo build --release -q
fi
PRE_IMAGES=""
for i in "${IMAGES[@]}"; do
  if docker image inspect "$i" >/dev/null 2>&1; then PRE_IMAGES="$PRE_IMAGES $i"; fi
done
mkdir -p "$W"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  step "cleanup"
  docker ps -aq --filter label=com.docker.compose.project=notes | xargs -r docker rm -f >/dev/null
  docker network rm notes_default >/dev/null 2>&1
  docker volume rm notes_notes-data >/dev/null 2>&1
  for i in "${IMAGES[@]}"; do
    case " $PRE_IMAGES " in *" $i "*) ;; *) docker image rm "$i" >/dev/null 2>&1 ;; esac
  done
  if [ -f "$W/registry.pid" ]; then kill "$(cat "$W/registry.pid")" 2>/dev/null; fi
  rm -rf "$W"
  echo "  removed project notes, its network and volume, and $W"
  if [ "$rc" -eq 0 ] && [ "${#FAILED[@]}" -gt 0 ]; then rc=1; fi
  if [ "${#FAILED[@]}" -gt 0 ]; then
    printf '\nrunbook: %d check(s) failed:\n' "${#FAILED[@]}"
    printf '  - %s\n' "${FAILED[@]}"
  elif [ "$rc" -eq 0 ]; then
    printf '\nrunbook: every check passed (%ss)\n' "$SECONDS"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "runbook: interrupted"; exit 130' INT TERM
SECONDS=0

step "1. images in a local registry"
WALKTHROUGH_DIR=$W bash examples/build-images.sh | sed 's/^/  /'

step "2. v1: the notes stack from a git repository"
git init -q -b main "$W/repo"
git -C "$W/repo" config user.name Runbook
git -C "$W/repo" config user.email runbook@example.com
cp -r examples/runbook/notes "$W/repo/"
commit "notes: web v1"
check "apply converges (exit 0)" apply_is 0
check "the page shows web v1 on schema 1" page_has "notes web v1"
check "the database is on schema 1" db_says 1
check "no backup yet: nothing was replaced" backups_are 0

step "3. v2: a release with a migration"
set_tag v2
commit "notes: web v2 (schema 2)"
check "apply converges (exit 0)" apply_is 0
check "the database volume was backed up before web was replaced" backups_are 1
check "the migration moved the database to schema 2" db_says 2
check "the page shows web v2" page_has "notes web v2"
check "notes-web:v1 stays on the host, so a revert needs no pull" \
  docker image inspect "$REGISTRY/demo/notes-web:v1"
rc backups notes | sed 's/^/  | /'

step "4. v3: a migration that fails half-way"
set_tag v3
commit "notes: web v3 (schema 3)"
check "apply says a service failed (exit 1)" apply_is 1
check "web v2 keeps serving" page_has "notes web v2"
check "a second backup was taken before the job" backups_are 2
check "the half-applied migration left the database broken" db_says 3-half-applied
check "history keeps the job's error" history_has "column email already exists"
check "one job failed so far" failed_jobs_are 1
check "apply again: the release stays failed, nothing is run (exit 1)" apply_is 1
check "the job was not run again for this commit" failed_jobs_are 1
rc status | sed 's/^/  | /'

step "5. restore the database volume from the backup taken before v3"
check "reconciler restore notes notes-data (exit 0)" rc restore notes notes-data
check "the database is back on schema 2" db_says 2
check "web v2 serves from it" page_has "schema 2"
rc backups notes | sed 's/^/  | /'

step "6. git revert the bad release"
git -C "$W/repo" revert --no-edit HEAD >/dev/null
check "apply: nothing to change, web v2 is the desired version again (exit 0)" apply_is 0
check "web v2 still serves on schema 2" page_has "schema 2"
rc status | sed 's/^/  | /'
