#!/usr/bin/env bash
# The steps of examples/walkthrough.md, non-interactively and with checks: a local bare git
# repository as the remote, `reconciler run` following it, then a release, a revert, a broken
# release (refused, not retried, `retry`), a tag that does not exist, suspend/resume, self-heal,
# and the webhook with a secret. Every step checks what the product should do; a check that fails
# is reported and the script goes on, so one run shows every misbehaviour. Exit 0 only when all
# checks passed.
#
#   bash examples/walkthrough.sh
#
# Needs: docker (docker.io), docker-registry, busybox-static, git, curl, openssl, and
# target/release/reconciler (built with `cargo build --release` when missing; WALKTHROUGH_BIN
# picks another binary). Uses 127.0.0.1:5055 (registry; one already there is reused, e.g.
# scripts/demo.sh's), 127.0.0.1:8080 (the shop's web) and 127.0.0.1:9090 (--listen), Compose
# projects `shop` and `jobs`, and $WALKTHROUGH_DIR (default /tmp/reconciler-walkthrough) for
# everything else, state dir included (--state-dir $WALKTHROUGH_DIR/state: no other state is
# touched).
#
# Refuses to start when `shop` or `jobs` containers exist (e.g. from scripts/demo.sh);
# WALKTHROUGH_REPLACE=1 removes them first. Cleans up on success, failure, Ctrl-C and SIGTERM:
# the `run` process, the containers of both projects, the networks and volumes it created, the
# registry if it started one, images it pulled, $WALKTHROUGH_DIR. Bounded: a watchdog stops it
# after WALKTHROUGH_TIMEOUT seconds (default 290; the release build, if needed, comes before).
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${WALKTHROUGH_DIR:-/tmp/reconciler-walkthrough}
STATE=$W/state
BIN=${WALKTHROUGH_BIN:-$ROOT/target/release/reconciler}
LISTEN=127.0.0.1:9090
WEB=http://127.0.0.1:8080/
SECRET=walkthrough-secret
payload='{"ref":"refs/heads/main"}'
TIMEOUT=${WALKTHROUGH_TIMEOUT:-290}
REGISTRY=127.0.0.1:5055
PROJECTS=(shop jobs)
IMAGES=("$REGISTRY/demo/web:v1" "$REGISTRY/demo/web:v2" "$REGISTRY/demo/web:v3"
        "$REGISTRY/demo/worker:v1" "$REGISTRY/demo/db:v1")

FAILED=()
step() { printf '\n=== %s\n' "$*"; }
ok() { printf '  ok    %s\n' "$*"; }
bad() { printf '  FAIL  %s\n' "$*"; FAILED+=("$*"); }
die() { printf '  FATAL %s\n' "$*" >&2; exit 1; }
# check DESCRIPTION COMMAND...: run the command, record the result, go on.
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi; }
# eventually SECONDS DESCRIPTION COMMAND...: poll until the command succeeds.
eventually() {
  local secs=$1 d=$2 end
  shift 2
  end=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then bad "$d (not within ${secs}s)"; return 0; fi
    sleep 0.5
  done
  ok "$d"
}
rc() { "$BIN" --state-dir "$STATE" "$@"; }
body_is() { [ "$(curl -fsS --max-time 2 "$WEB" 2>/dev/null)" = "$1" ]; }
# col STACK SERVICE COLUMN: one cell of `reconciler status`, found by its header (spaces in
# header names become _: DESIRED_IMAGE, RUNNING_IMAGE, LAST_ERROR).
col() {
  rc status | awk -v st="$1" -v sv="$2" -v name="$3" '
    NR == 1 { gsub(/DESIRED IMAGE/, "DESIRED_IMAGE"); gsub(/RUNNING IMAGE/, "RUNNING_IMAGE")
              gsub(/LAST ERROR/, "LAST_ERROR"); $0 = $0
              for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
    $1 == st && $2 == sv { print $c }'
}
col_is() { [ "$(col "$1" "$2" "$3")" = "$4" ]; }
# count_history ACTION RESULT: rows of `history` for shop/web. Columns: AT SERVICE ACTION
# REVISION IMAGE RESULT REASON, where IMAGE is three words ("from -> to"), so RESULT is field 8.
count_history() { rc history --stack shop --service web | awk -v a="$1" -v r="$2" '$3 == a && $8 == r' | wc -l; }
history_count_is() { [ "$(count_history "$1" "$2")" = "$3" ]; }
running() { [ -f "$W/run.pid" ] && kill -0 "$(cat "$W/run.pid")" 2>/dev/null; }
commit_push() { # MESSAGE: commit everything in the work tree and push it
  git -C "$W/work" add -A
  git -C "$W/work" commit -qm "$1"
  git -C "$W/work" push -q origin main 2>&1 | sed 's/^/  git: /'
}
set_env() { sed -i "s/^$1=.*/$1=$2/" "$W/work/shop/.env"; }
start_run() { # INTERVAL [env...]: start `reconciler run` in the background
  local interval=$1
  shift
  env "$@" "$BIN" --state-dir "$STATE" run --repo "file://$W/desired.git" \
    --interval "$interval" --listen "$LISTEN" >>"$W/run.log" 2>&1 &
  echo $! >"$W/run.pid"
  local end=$((SECONDS + 10))
  until curl -fsS --max-time 1 "http://$LISTEN/healthz" >/dev/null 2>&1; do
    running || { cat "$W/run.log"; die "reconciler run exited at start"; }
    [ "$SECONDS" -lt "$end" ] || die "reconciler run does not answer on $LISTEN"
    sleep 0.2
  done
}
stop_run() { # [SECONDS]: SIGTERM, as systemd does; returns 0 when it stopped by itself
  running || return 0
  local pid
  pid=$(cat "$W/run.pid")
  kill -TERM "$pid"
  for _ in $(seq $((${1:-120} * 2))); do kill -0 "$pid" 2>/dev/null || { rm -f "$W/run.pid"; return 0; }; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$W/run.pid"
  return 1
}
project_containers() { docker ps -aq --filter "label=com.docker.compose.project=$1"; }
is_running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
is_stopped() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = false ]; }
has_env() { docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$1" | grep -qx "$2"; }
# hook_code [HEADER]: the HTTP status of POST /hooks/git with the payload
hook_code() {
  curl -s -o /dev/null -w '%{http_code}' -X POST ${1:+-H "$1"} --data "$payload" "http://$LISTEN/hooks/git"
}
hook_code_is() { [ "$(hook_code "${2:-}")" = "$1" ]; }
sign() { printf '%s' "$1" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //'; }
metrics_say() { curl -fsS "http://$LISTEN/metrics" | grep -qF "$1"; }

# --- preconditions ---------------------------------------------------------------------------
for tool in docker docker-registry git curl openssl awk; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[ ! -e "$W" ] || die "$W exists (an interrupted run?); remove it first"
for p in "${PROJECTS[@]}"; do
  if [ -n "$(project_containers "$p")" ]; then
    if [ "${WALKTHROUGH_REPLACE:-0}" = 1 ]; then
      echo "walkthrough: removing the existing $p containers (WALKTHROUGH_REPLACE=1)"
      project_containers "$p" | xargs -r docker rm -f >/dev/null
    else
      die "Compose project $p already has containers (scripts/demo.sh?); remove them or set WALKTHROUGH_REPLACE=1"
    fi
  fi
done
for port in 8080 9090; do
  if curl -s --max-time 1 -o /dev/null "http://127.0.0.1:$port/"; then die "127.0.0.1:$port is in use"; fi
done
if [ ! -x "$BIN" ]; then
  echo "walkthrough: building the release binary (a few minutes the first time)"
  cargo build --release -q
fi

# What exists before, so cleanup removes only what the walkthrough made.
PRE_NETWORKS=$(docker network ls --format '{{.Name}}')
PRE_VOLUMES=$(docker volume ls --format '{{.Name}}')
PRE_IMAGES=""
for i in "${IMAGES[@]}"; do
  if docker image inspect "$i" >/dev/null 2>&1; then PRE_IMAGES="$PRE_IMAGES $i"; fi
done

mkdir -p "$W"
WATCHDOG=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  step "cleanup"
  stop_run 30
  for p in "${PROJECTS[@]}"; do project_containers "$p" | xargs -r docker rm -f >/dev/null; done
  for n in shop_default jobs_default; do
    grep -qx "$n" <<<"$PRE_NETWORKS" || docker network rm "$n" >/dev/null 2>&1
  done
  grep -qx shop_db-data <<<"$PRE_VOLUMES" || docker volume rm shop_db-data >/dev/null 2>&1
  for i in "${IMAGES[@]}"; do
    case " $PRE_IMAGES " in *" $i "*) ;; *) docker image rm "$i" >/dev/null 2>&1 ;; esac
  done
  if [ -f "$W/registry.pid" ]; then kill "$(cat "$W/registry.pid")" 2>/dev/null; fi
  rm -rf "$W"
  [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null
  echo "  removed the run process, projects ${PROJECTS[*]}, what they created, and $W"
  if [ "$rc" -eq 0 ] && [ "${#FAILED[@]}" -gt 0 ]; then rc=1; fi
  if [ "${#FAILED[@]}" -gt 0 ]; then
    printf '\nwalkthrough: %d check(s) failed:\n' "${#FAILED[@]}"
    printf '  - %s\n' "${FAILED[@]}"
  elif [ "$rc" -eq 0 ]; then
    printf '\nwalkthrough: every check passed (%ss)\n' "$SECONDS"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "walkthrough: interrupted"; exit 130' INT
trap 'echo "walkthrough: stopped (timeout or SIGTERM)"; exit 124' TERM
(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$TIMEOUT" & nap=$!
  wait "$nap"
  echo "walkthrough: watchdog: more than ${TIMEOUT}s, stopping" >&2
  kill -TERM $$
) &
WATCHDOG=$!
SECONDS=0

# --- 1. images and registry ------------------------------------------------------------------
step "1. images in a local registry"
WALKTHROUGH_DIR=$W bash examples/build-images.sh | sed 's/^/  /'

# --- 2. the remote -----------------------------------------------------------------------------
step "2. a bare repository as the remote, desired-state/ pushed to it"
git init -q --bare -b main "$W/desired.git"
git clone -q "$W/desired.git" "$W/work" 2>/dev/null
git -C "$W/work" config user.name Walkthrough
git -C "$W/work" config user.email walkthrough@example.com
cp -r desired-state/. "$W/work/"
commit_push "shop: web v1, worker v1, db v1"
check "validate the remote" rc validate --repo "file://$W/desired.git"
set +e; rc diff --repo "file://$W/desired.git" >"$W/diff.txt" 2>&1; code=$?; set -e
sed 's/^/  | /' "$W/diff.txt"
check "diff exits 1 (drift: three services to create)" test "$code" = 1

# --- 3. the loop -------------------------------------------------------------------------------
step "3. reconciler run --interval 5s --listen $LISTEN"
start_run 5s
eventually 60 "web serves v1" body_is "web v1"
all_synced() { col_is shop web SYNC Synced && col_is shop worker SYNC Synced && col_is shop db SYNC Synced; }
eventually 20 "status: web, worker, db Synced" all_synced
rc status | sed 's/^/  | /'
check "/healthz says ok" test "$(curl -fsS "http://$LISTEN/healthz")" = ok

# --- 4. a release ------------------------------------------------------------------------------
step "4. release: WEB_TAG=v2"
set_env WEB_TAG v2
commit_push "shop: web v2"
eventually 30 "web serves v2" body_is "web v2"
eventually 20 "history: shop/web update ok" history_count_is update ok 1
eventually 10 "status: web runs v2, Synced" col_is shop web SYNC Synced
check "status: db was not touched (still at the first revision)" \
  test "$(col shop db REVISION)" = "$(git -C "$W/work" rev-parse HEAD~1)"
curl -fsS "http://$LISTEN/metrics" | grep -E '^reconciler_(service_sync|applies_total|passes_total)' | sed 's/^/  | /'
check "/metrics: web Synced" metrics_say 'service="web",sync="Synced"'

# --- 5. rollback -------------------------------------------------------------------------------
step "5. rollback: git revert + push"
git -C "$W/work" revert --no-edit HEAD >/dev/null
git -C "$W/work" push -q origin main
eventually 30 "web serves v1 again" body_is "web v1"
eventually 20 "history: shop/web rollback ok" history_count_is rollback ok 1
rc history --service web | sed 's/^/  | /'

# --- 6. a broken release -----------------------------------------------------------------------
step "6. broken release: WEB_TAG=v3 (its healthcheck never passes)"
set_env WEB_TAG v3
commit_push "shop: web v3"
eventually 60 "history: shop/web update failed" history_count_is update failed 1
check "web still serves v1 (the old container was restored)" body_is "web v1"
check "status: web Failed" col_is shop web SYNC Failed
check "status: web still runs v1" col_is shop web RUNNING_IMAGE "$REGISTRY/demo/web:v1"
sleep 16 # three passes
check "not retried by the next passes" history_count_is update failed 1
step "6b. reconciler retry shop web: one more attempt, no loop"
rc retry shop web | sed 's/^/  | /'
eventually 60 "history: a second failed update" history_count_is update failed 2
sleep 11
check "then not retried again" history_count_is update failed 2
check "web still serves v1" body_is "web v1"

step "6c. a tag that was never pushed: WEB_TAG=v9"
set_env WEB_TAG v9
commit_push "shop: web v9"
eventually 30 "history: pull failed, nothing changed" history_count_is pull failed 1
check "web still serves v1" body_is "web v1"
check "status: LAST ERROR names the pull" col_is shop web LAST_ERROR pull
rc status | sed 's/^/  | /'

step "6d. fix: revert both broken commits in one push"
git -C "$W/work" revert --no-edit HEAD HEAD~1 >/dev/null
git -C "$W/work" push -q origin main
check "shop/.env is back to WEB_TAG=v1" grep -qx WEB_TAG=v1 "$W/work/shop/.env"
eventually 20 "diff: in sync (exit 0)" rc diff --repo "file://$W/desired.git"
check "web serves v1, untouched" body_is "web v1"
eventually 15 "status: web Synced again (the failure is no longer current)" col_is shop web SYNC Synced
rc status | sed 's/^/  | /'

# --- 7. suspend / resume -----------------------------------------------------------------------
step "7. suspend/resume (per stack): a second stack, jobs"
mkdir -p "$W/work/jobs"
cat >"$W/work/jobs/compose.yaml" <<'YML'
services:
  mailer:
    image: 127.0.0.1:5055/demo/worker:v1
    environment:
      QUEUE: ${QUEUE}
    restart: unless-stopped
    x-reconciler:
      min_ready: 2s
YML
echo QUEUE=emails >"$W/work/jobs/.env"
commit_push "jobs: a mailer"
eventually 30 "jobs-mailer-1 runs" is_running jobs-mailer-1
rc suspend shop | sed 's/^/  | /'
set_env WEB_TAG v2
echo QUEUE=emails-v2 >"$W/work/jobs/.env"
commit_push "shop: web v2; jobs: queue emails-v2"
docker stop shop-worker-1 >/dev/null
eventually 30 "jobs (not suspended) converges: mailer has QUEUE=emails-v2" \
  has_env jobs-mailer-1 QUEUE=emails-v2
sleep 6
check "shop (suspended) untouched: web still v1" body_is "web v1"
check "shop (suspended): the stopped worker is left stopped" is_stopped shop-worker-1
check "status: shop Suspended" col_is shop web SYNC Suspended
rc status | sed 's/^/  | /'
rc resume shop | sed 's/^/  | /'
eventually 30 "after resume: web serves v2" body_is "web v2"
eventually 20 "after resume: the worker runs again" is_running shop-worker-1
step "7b. self-heal: a container removed by hand comes back"
docker rm -f shop-worker-1 >/dev/null
eventually 20 "shop-worker-1 was recreated" is_running shop-worker-1

# --- 8. webhook --------------------------------------------------------------------------------
step "8. SIGTERM, then run again with a webhook secret and --interval 1h"
eventually 20 "status: all Synced before the stop" col_is shop web SYNC Synced
if stop_run; then ok "run stopped on SIGTERM"; else bad "run did not stop on SIGTERM within 120s"; fi
check "run logged 'stopped'" grep -qx stopped "$W/run.log"
start_run 1h RECONCILER_WEBHOOK_SECRET=$SECRET
check "unsigned POST /hooks/git is refused (401)" hook_code_is 401
check "wrongly signed POST is refused (401)" hook_code_is 401 "X-Hub-Signature-256: sha256=00"
check "signed POST is accepted (202)" hook_code_is 202 "X-Hub-Signature-256: sha256=$(sign "$payload")"
cat >"$W/desired.git/hooks/post-receive" <<HOOK
#!/bin/sh
# Tell the reconciler about every push, signed as GitHub does (X-Hub-Signature-256).
body='{"ref":"refs/heads/main"}'
sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')
curl -fsS -X POST -H "X-Hub-Signature-256: sha256=\$sig" --data "\$body" http://$LISTEN/hooks/git
HOOK
chmod +x "$W/desired.git/hooks/post-receive"
set_env WEB_TAG v1
commit_push "shop: web v1"
eventually 20 "the push's hook triggered a pass: web serves v1 (the interval is 1h)" body_is "web v1"
check "the refused webhooks were logged" grep -q "webhook refused" "$W/run.log"

step "9. the run log"
sed 's/^/  | /' "$W/run.log" | tail -25
