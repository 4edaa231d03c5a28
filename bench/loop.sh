#!/usr/bin/env bash
# Rerunnable benchmark of the GitOps loop (`reconciler run`) against the real Docker Engine
# (see bench/README.md, "The loop").
#
#   bash bench/loop.sh
#
# From a clean machine state: builds the release binary (if that takes over 2 min, build first),
# builds a web image in two versions like testdata/images (busybox httpd serving "v1" / "v2"),
# serves them from a private registry on 127.0.0.1:5067, makes a bare git repository (the remote)
# and a working clone in a temp dir, and measures:
#   1. git push -> first GET on the published port that returns the new body (and git revert +
#      push -> the old body), with `run --interval 1s` (polling) and with `run --interval 1h` +
#      POST /hooks/git, each without a healthcheck (min_ready 0s) and with a 1 s healthcheck; the
#      engine's events split each update into the loop's part and the engine's; the same swap done
#      by hand with the docker CLI gives the engine's floor;
#   2. an idle `run` over 20 in-sync services: VmRSS/VmHWM and CPU ticks over 60 s, at
#      --interval 30s and --interval 1s.
# Removes everything it created (projects loopweb and loopidle, the CLI baseline's containers and
# network loopcli, the images, the registry, the `run` and `docker events` processes, the temp
# dir) on success, failure, Ctrl-C and SIGTERM. Bounded: a watchdog stops it after 7 min 50 s
# (a run takes ~6 min); every external command has its own timeout.
# LOOP_REPEAT (default 5) pushes and as many reverts per configuration; LOOP_IDLE (default 60)
# seconds per idle window; LOOP_BIN=/path uses that binary instead of building one;
# BENCH_SUMMARY=/path also writes the summary table to a file.
set -euo pipefail
export LC_ALL=C     # "." as the decimal point of $EPOCHREALTIME and awk
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${LOOP_BIN:-$ROOT/target/release/reconciler}
REGISTRY=127.0.0.1:5067
IMAGE=$REGISTRY/loopbench/web
WEB_PORT=18067            # the web service's published port (loopback)
HOOK_PORT=18068           # --listen of the loop under test (latency)
IDLE_PORT=18069           # --listen of the idle loop
SECRET=loop-bench-secret
PROJECTS=(loopweb loopidle)
REPEAT=${LOOP_REPEAT:-5}
IDLE=${LOOP_IDLE:-60}
DEADLINE=470              # seconds; every external command also has its own timeout

log() { printf '\n== %s\n' "$*"; }
die() { echo "loop bench: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- tools -------------------------------------------------------------------------------------
if ! command -v jq >/dev/null; then
  [ "$(id -u)" = 0 ] || die "missing jq: apt-get install -y jq"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q jq >/dev/null
fi
for t in docker docker-registry git curl awk; do
  command -v "$t" >/dev/null || die "$t is missing"
done
[ -n "${LOOP_BIN:-}" ] || command -v cargo >/dev/null || die "cargo is missing (or set LOOP_BIN)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
! ldd /bin/busybox >/dev/null 2>&1 || die "/bin/busybox is dynamically linked; install busybox-static"
timeout 30 docker info >/dev/null 2>&1 || die "the Docker Engine does not answer"
for port in 5067 $WEB_PORT $HOOK_PORT $IDLE_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$port; stop it first (it is not ours to kill)"
  fi
done

WORK=$(mktemp -d /tmp/reconciler-loop-bench.XXXXXX)
REMOTE=$WORK/remote.git   # the desired-state repository, as a bare "server" repo
WC=$WORK/wc               # the operator's clone, where commits are made and pushed from
STATE=$WORK/state
REG_PID=
RUN_PID=
EV_PID=
BUILD_PID=
WATCHDOG=

# --- cleanup (always) --------------------------------------------------------------------------
remove_project() {
  local p=$1 ids
  ids=$(timeout 60 docker ps -aq --filter "label=com.docker.compose.project=$p" || true)
  [ -z "$ids" ] || echo "$ids" | xargs -n 50 -P 4 timeout 120 docker rm -f >/dev/null 2>&1 || true
  if [ "$(timeout 30 docker network inspect "${p}_default" --format '{{index .Labels "com.docker.compose.project"}}' 2>/dev/null)" = "$p" ]; then
    timeout 60 docker network rm "${p}_default" >/dev/null 2>&1 || true
  fi
}
# stop_pid PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
remove_cli() { # the containers and network of the docker CLI baseline
  local ids
  ids=$(timeout 60 docker ps -aq --filter label=reconciler-loop-bench=1 || true)
  [ -z "$ids" ] || echo "$ids" | xargs timeout 120 docker rm -f >/dev/null 2>&1 || true
  if [ "$(timeout 30 docker network inspect loopcli --format '{{index .Labels "reconciler-loop-bench"}}' 2>/dev/null)" = 1 ]; then
    timeout 60 docker network rm loopcli >/dev/null 2>&1 || true
  fi
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null || true
  echo
  echo "loop bench: cleaning up"
  [ -z "$BUILD_PID" ] || stop_pid "$BUILD_PID"
  [ -z "$RUN_PID" ] || stop_pid "$RUN_PID"
  [ -z "$EV_PID" ] || stop_pid "$EV_PID"
  for p in "${PROJECTS[@]}"; do remove_project "$p"; done
  remove_cli
  timeout 60 docker image rm "$IMAGE:v1" "$IMAGE:v2" >/dev/null 2>&1 || true
  [ -z "$REG_PID" ] || stop_pid "$REG_PID"
  rm -rf "$WORK"
  [ "$rc" = 0 ] || echo "loop bench: FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
( trap 'kill $sp 2>/dev/null; exit 0' TERM; sleep "$DEADLINE" & sp=$!; wait $sp
  echo "loop bench: time limit (${DEADLINE}s) reached, stopping" >&2; kill -TERM $$ ) 2>/dev/null &
WATCHDOG=$!
T_START=$(date +%s)

# Leftovers of an interrupted earlier run carry our project names: remove them first.
for p in "${PROJECTS[@]}"; do remove_project "$p"; done
remove_cli

log "machine"
echo "date: $(date -u +%FT%TZ)   cores: $(nproc)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "engine: $(timeout 30 docker version --format '{{.Server.Version}}')   $(git --version)"
echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] || echo ' + uncommitted changes in src/')"

if [ -z "${LOOP_BIN:-}" ]; then
  log "build (cargo build --release)"
  # In the background, so the watchdog's SIGTERM is handled while cargo runs (or waits for a lock).
  timeout 120 cargo build --release -q & BUILD_PID=$!
  wait "$BUILD_PID" || die "cargo build --release failed or took over 2 min (the run must stay under 8 min): build first, then rerun"
  BUILD_PID=
fi
[ -x "$BIN" ] || die "$BIN is missing"
echo "binary: $BIN ($(du -h "$BIN" | cut -f1))"

# --- registry and images -----------------------------------------------------------------------
log "registry on $REGISTRY and images"
cat > "$WORK/registry.yml" <<YML
version: 0.1
storage: { filesystem: { rootdirectory: $WORK/registry } }
http: { addr: $REGISTRY }
log: { level: error }
YML
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fsS --max-time 1 "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS --max-time 2 "http://$REGISTRY/v2/" >/dev/null || { cat "$WORK/registry.log" >&2; die "registry did not start"; }

# The test images' web app (testdata/images): busybox httpd on port 80 serving /www/index.html
# ("v1" / "v2") and /www/health; the start script stops httpd at once on SIGTERM.
image() {
  local tag=$1 root applet
  root=$(mktemp -d "$WORK/rootfs.XXXX")
  mkdir -p "$root"/{bin,etc,www,tmp}
  chmod 755 "$root" "$root"/{bin,etc,www}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  install -m 644 testdata/images/rootfs/etc/passwd testdata/images/rootfs/etc/group "$root/etc/"
  install -m 755 testdata/images/web/start "$root/bin/start"
  echo "$tag" > "$root/www/index.html"
  echo ok > "$root/www/health"
  tar -C "$root" --owner=0 --group=0 --numeric-owner -c . |
    timeout 60 docker import --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'EXPOSE 80' --change 'CMD ["/bin/start"]' - "$IMAGE:$tag" >/dev/null
  timeout 60 docker push -q "$IMAGE:$tag" >/dev/null
  rm -rf "$root"
}
image v1
image v2
# Both stay present locally: the measured updates include no pull (pull_policy: missing).
echo "pushed $IMAGE:v1 and :v2; local copies kept"

# --- the desired-state repository ---------------------------------------------------------------
g() { timeout 30 git -C "$WC" -c user.name=bench -c user.email=bench@localhost -c commit.gpgsign=false "$@"; }
timeout 30 git init -q --bare -b main "$REMOTE"
timeout 30 git init -q -b main "$WC"
g remote add origin "$REMOTE"
mkdir -p "$WC/loopweb"
HEALTHCHECK='    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"]
      interval: 1s
      timeout: 1s
      retries: 3'
# write_web HEALTH SIDE (yes|no each): the web stack, with or without the 1 s healthcheck, with or
# without a second service (`side`, never updated) on the stack's network. web publishes a port,
# so its default order is stop-first.
write_web() {
  {
    cat <<YML
# generated by bench/loop.sh
services:
  web:
    image: $IMAGE:\${WEB_TAG}
    ports:
      - "127.0.0.1:$WEB_PORT:80"
    restart: unless-stopped
    x-reconciler:
      min_ready: 0s
YML
    [ "$1" = no ] || echo "$HEALTHCHECK"
    [ "$2" = no ] || cat <<YML
  side:
    image: $IMAGE:v1
    restart: unless-stopped
    x-reconciler:
      min_ready: 0s
YML
  } > "$WC/loopweb/compose.yaml"
}
write_web no no
echo "WEB_TAG=v1" > "$WC/loopweb/.env"
g add -A
g commit -q -m "loopweb: web v1"
g push -q origin main
timeout 30 "$BIN" --state-dir "$STATE" validate --repo "$WC" >/dev/null

get() { curl -s --connect-timeout 0.5 --max-time 1 "http://127.0.0.1:$WEB_PORT/" 2>/dev/null || true; }
web_status() { # the status row of loopweb/SERVICE (default web), as "revision sync"
  timeout 20 "$BIN" --state-dir "$STATE" status -o json 2>/dev/null |
    jq -r --arg s "${1:-web}" '.[] | select(.stack == "loopweb" and .service == $s) | "\(.revision) \(.sync)"'
}
# start_loop NAME ARGS...: `reconciler run` on the bare repo, in the background (RUN_PID).
start_loop() {
  local name=$1
  shift
  "$BIN" --state-dir "$STATE" run --repo "file://$REMOTE" "$@" > "$WORK/$name.log" 2>&1 &
  RUN_PID=$!
  RUN_NAME=$name
}
# stop_loop: SIGTERM, then expect a clean exit (code 0) within 10 s; records the time it took.
STOPS=()
stop_loop() {
  local t0 t1 rc i
  t0=$(now)
  kill -TERM "$RUN_PID"
  for i in $(seq 200); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.05; done
  t1=$(now)
  if kill -0 "$RUN_PID" 2>/dev/null; then
    tail -20 "$WORK/$RUN_NAME.log" >&2
    die "run ($RUN_NAME) still alive 10 s after SIGTERM"
  fi
  rc=0; wait "$RUN_PID" || rc=$?
  RUN_PID=
  STOPS+=("$RUN_NAME: exit $rc after $(awk -v s="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.0f", s * 1000 }') ms")
  echo "stopped $RUN_NAME: exit $rc ($(tail -1 "$WORK/$RUN_NAME.log"))"
  [ "$rc" = 0 ] || { tail -20 "$WORK/$RUN_NAME.log" >&2; die "run ($RUN_NAME) exited $rc on SIGTERM"; }
}
# wait_converged COMMIT LIMIT [SERVICE]: until status shows loopweb/SERVICE (web) Synced at COMMIT.
wait_converged() {
  local commit=$1 limit=$2 service=${3:-web} t0 row
  t0=$(now)
  while :; do
    row=$(web_status "$service" || true)
    [ "$row" = "$commit Synced" ] && return 0
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
      echo "status: ${row:-none}; run log:" >&2; tail -20 "$WORK/$RUN_NAME.log" >&2
      die "loopweb/$service not Synced at ${commit:0:12} after ${limit} s"
    fi
    sleep 0.05
  done
}
hook() { # POST /hooks/git as GitLab does; must answer 202
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H "X-Gitlab-Token: $SECRET" \
    -H 'Content-Type: application/json' -d '{"ref":"refs/heads/main"}' "http://127.0.0.1:$HOOK_PORT/hooks/git" || true)
  [ "$code" = 202 ] || die "POST /hooks/git answered ${code:-nothing}, expected 202"
}

# poll_until T0 NEW OLD WHAT: start a GET / every 30 ms, each in the background with its own 5 s
# limit, so that requests held by the engine while the new container's network comes up do not
# delay the ones after them; stop once one returned NEW. Sets SERVED (the earliest completion of a
# GET that returned NEW) and LAST_OLD (the latest completion before it of a GET that returned OLD).
poll_until() {
  local t0=$1 new=$2 old=$3 what=$4 pids=()
  : > "$WORK/polls"
  while :; do
    ( a=$EPOCHREALTIME; out=$(curl -s --max-time 5 "http://127.0.0.1:$WEB_PORT/" 2>/dev/null) || true
      echo "$a $EPOCHREALTIME ${out:--}" >> "$WORK/polls" ) &
    pids+=($!)
    grep -q " $new\$" "$WORK/polls" && break
    if awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a > 30) }'; then
      [ -z "${RUN_NAME:-}" ] || tail -20 "$WORK/$RUN_NAME.log" >&2
      die "$new not served 30 s after $what"
    fi
    sleep 0.03
  done
  wait "${pids[@]}"
  SERVED=$(awk -v n="$new" '$3 == n && (s == "" || $2 < s) { s = $2 } END { print s }' "$WORK/polls")
  LAST_OLD=$(awk -v o="$old" -v s="$SERVED" -v t="$t0" 'BEGIN { l = t } $3 == o && $2 < s && $2 > l { l = $2 } END { print l }' "$WORK/polls")
}
# event ACTION T0: seconds from T0 to the first engine event ACTION of the project after T0
event() { awk -v a="$1" -v t="$2" '$2 == a && $1 / 1e9 > t { printf "%.3f", $1 / 1e9 - t; exit }' "$WORK/events"; }

# measure KEY NEW OLD HOOK: push the commit at HEAD of the clone, then (HOOK=1) POST the webhook,
# and poll until GET / returns NEW. Appends one line to $WORK/KEY.tsv:
#   1 served   push returned -> first GET with NEW
#   2 gap      last GET with OLD -> first GET with NEW (the outage, as a client sees it)
#   3 done     push returned -> the engine's `destroy` of the old container: the update is over
#              (new one ready, old one removed)
#   4 journal  the update's duration_ms in the journal (stop + create + start + ready + remove)
#   5 acting   push returned -> the engine's `kill` of the old container (the loop noticed the
#              push, fetched, planned and asked for the stop)
#   6 started  push returned -> the engine's `start` of the new container
# Then checks that `status` shows the commit Synced.
measure() {
  local key=$1 new=$2 old=$3 hook=$4 commit t0 dur done_ kill start
  commit=$(g rev-parse HEAD)
  [ "$(get)" = "$old" ] || die "before the push, GET / does not return $old"
  g push -q origin main
  t0=$(now)
  [ "$hook" = 0 ] || hook
  poll_until "$t0" "$new" "$old" "the push of ${commit:0:12}"
  wait_converged "$commit" 30
  dur=$(timeout 20 "$BIN" --state-dir "$STATE" history --stack loopweb --service web -o json |
    jq -r --arg c "$commit" '[.[] | select(.revision == $c)][0].duration_ms // "?"')
  kill=$(event kill "$t0"); start=$(event start "$t0"); done_=$(event destroy "$t0")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(elapsed "$t0" "$SERVED")" "$(elapsed "$LAST_OLD" "$SERVED")" \
    "${done_:-?}" "$dur" "${kill:-?}" "${start:-?}" >> "$WORK/$key.tsv"
  printf '  %-7s -> %s  served %s s (kill %s, start %s)  gap %s s  done %s s  journal %s ms\n' \
    "${commit:0:7}" "$new" "$(elapsed "$t0" "$SERVED")" "${kill:-?}" "${start:-?}" \
    "$(elapsed "$LAST_OLD" "$SERVED")" "${done_:-?}" "$dur"
}
# cli_swap NEW: the engine's floor, without the reconciler: the same stop-first swap typed by hand
# (docker stop; docker rename; docker run -d -p <same port> NEW; docker rm old). Appends
# "served gap" to $WORK/cli.tsv.
cli_swap() {
  local new=$1 old=$2 t0 swap
  [ "$(get)" = "$old" ] || die "before the swap, GET / does not return $old"
  t0=$(now)
  ( timeout 30 docker stop loopcli-web >/dev/null
    timeout 30 docker rename loopcli-web loopcli-old
    timeout 30 docker run -d --name loopcli-web --label reconciler-loop-bench=1 --network loopcli \
      -p "127.0.0.1:$WEB_PORT:80" "$IMAGE:$new" >/dev/null ) &
  swap=$!
  poll_until "$t0" "$new" "$old" "docker stop + docker run"
  wait "$swap" || die "docker stop / rename / run failed"
  timeout 30 docker rm -f loopcli-old >/dev/null
  printf '%s\t%s\n' "$(elapsed "$t0" "$SERVED")" "$(elapsed "$LAST_OLD" "$SERVED")" >> "$WORK/cli.tsv"
  printf '  docker CLI -> %s  served %s s  gap %s s\n' "$new" "$(elapsed "$t0" "$SERVED")" "$(elapsed "$LAST_OLD" "$SERVED")"
}
# cycle KEY HOOK: REPEAT times: commit WEB_TAG=v2 and measure, `git revert` it and measure.
# Before each push a pause: random in 0-1 s when polling (pushes land at random points of the 1 s
# interval), 0.4 s with the webhook (see bench/README.md, "The loop").
pause() { if [ "$1" = 0 ]; then sleep "$(awk -v s="$RANDOM" 'BEGIN { printf "%.3f", s / 32768 }')"; else sleep 0.4; fi; }
cycle() {
  local key=$1 hook=$2 k
  : > "$WORK/$key.tsv"
  for k in $(seq "$REPEAT"); do
    pause "$hook"
    sed -i 's/^WEB_TAG=.*/WEB_TAG=v2/' "$WC/loopweb/.env"
    g commit -q -am "loopweb: web v2 ($key $k)"
    measure "$key" v2 v1 "$hook"
    pause "$hook"
    g revert --no-edit HEAD >/dev/null
    measure "$key" v1 v2 "$hook"
  done
}
# change_spec HEALTH SIDE: commit the healthcheck / the side service on or off, push, and wait
# until the loop applied it.
change_spec() {
  write_web "$1" "$2"
  g commit -q -am "loopweb: healthcheck $1, side $2"
  g push -q origin main
  [ "$RUN_NAME" != webhook ] || hook
  if [ "$2" = yes ]; then wait_converged "$(g rev-parse HEAD)" 60 side; else wait_converged "$(g rev-parse HEAD)" 60; fi
}
# stats FILE COLUMN: "median<TAB>max<TAB>min<TAB>n" (two decimals)
stats() {
  cut -f"$2" "$1" | { grep -v '?' || true; } | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.2f\t%.2f\t%.2f\t%d", m, v[NR], v[1], NR }'
}
declare -A R   # results for the summary
summarize() { # KEY: R[KEY.served] etc.
  local key=$1
  R[$key.served]=$(stats "$WORK/$key.tsv" 1)
  R[$key.gap]=$(stats "$WORK/$key.tsv" 2)
  R[$key.done]=$(stats "$WORK/$key.tsv" 3)
  R[$key.journal]=$(stats "$WORK/$key.tsv" 4)
  R[$key.acting]=$(stats "$WORK/$key.tsv" 5)
  R[$key.started]=$(stats "$WORK/$key.tsv" 6)
  # per push: started - acting (engine: stop, rename, create, start) and served - started
  R[$key.engine]=$(awk -F'\t' '$5 != "?" && $6 != "?" { printf "%.3f\n", $6 - $5 }' "$WORK/$key.tsv" > "$WORK/$key.eng"; stats "$WORK/$key.eng" 1)
  R[$key.net]=$(awk -F'\t' '$6 != "?" { printf "%.3f\n", $1 - $6 }' "$WORK/$key.tsv" > "$WORK/$key.net"; stats "$WORK/$key.net" 1)
}
# === Phase 1: push -> served, polling every second =============================================
log "1. polling: run --interval 1s; $REPEAT pushes (v1 -> v2) and $REPEAT reverts, no healthcheck"
# The engine's events of the project, to split each update into the loop's part and the engine's.
timeout "$DEADLINE" docker events --filter "label=com.docker.compose.project=loopweb" \
  --format '{{.TimeNano}} {{.Action}}' > "$WORK/events" 2>&1 &
EV_PID=$!
t0=$(now)
start_loop polling --interval 1s
wait_converged "$(g rev-parse HEAD)" 60
echo "first pass (clone + pull-free create): $(elapsed "$t0" "$(now)") s; GET / -> $(get)"
cycle poll_nohealth 0
summarize poll_nohealth

log "1. polling, with a 1 s-interval healthcheck (reference)"
change_spec yes no
cycle poll_health 0
summarize poll_health
stop_loop

# === Phase 2: the webhook ======================================================================
log "2. webhook: run --interval 1h --listen 127.0.0.1:$HOOK_PORT; POST /hooks/git after each push"
start_loop webhook --interval 1h --listen "127.0.0.1:$HOOK_PORT" --webhook-secret "$SECRET"
for _ in $(seq 100); do curl -fsS --max-time 1 "http://127.0.0.1:$HOOK_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS --max-time 2 "http://127.0.0.1:$HOOK_PORT/healthz" >/dev/null || die "run --listen does not answer /healthz"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H "X-Gitlab-Token: wrong" "http://127.0.0.1:$HOOK_PORT/hooks/git" || true)
echo "POST /hooks/git with a wrong token: $code (expected 401)"
R[hook_wrong]=$code
cycle hook_health 1
summarize hook_health
log "2. webhook, no healthcheck (min_ready 0s)"
change_spec no no
cycle hook_nohealth 1
summarize hook_nohealth
log "2. webhook, no healthcheck, a second service on the stack's network (its bridge stays up)"
change_spec no yes
cycle hook_side 1
summarize hook_side
R[hook_passes]=$(curl -fsS --max-time 2 "http://127.0.0.1:$HOOK_PORT/status" | jq -r .passes)
R[hook_posts]=$((6 * REPEAT + 2))
echo "passes of the webhook loop: ${R[hook_passes]} (1 at start + ${R[hook_posts]} webhook POSTs)"
stop_loop
stop_pid "$EV_PID"; EV_PID=
remove_project loopweb

log "1. the engine's floor: the same stop-first swap by hand with the docker CLI, no reconciler"
RUN_NAME=
timeout 30 docker network create --label reconciler-loop-bench=1 loopcli >/dev/null
timeout 30 docker run -d --name loopcli-web --label reconciler-loop-bench=1 --network loopcli \
  -p "127.0.0.1:$WEB_PORT:80" "$IMAGE:v1" >/dev/null
for _ in $(seq 100); do [ "$(get)" = v1 ] && break; sleep 0.05; done
for key in cli cli_side; do
  if [ "$key" = cli_side ]; then
    echo "  ... with a second container on the network"
    timeout 30 docker run -d --name loopcli-side --label reconciler-loop-bench=1 --network loopcli "$IMAGE:v1" >/dev/null
  fi
  : > "$WORK/cli.tsv"
  for k in $(seq "$REPEAT"); do cli_swap v2 v1; cli_swap v1 v2; done
  R[$key.served]=$(stats "$WORK/cli.tsv" 1)
  R[$key.gap]=$(stats "$WORK/cli.tsv" 2)
done
remove_cli

# === Phase 3: an idle loop over 20 in-sync services ============================================
log "3. idle: run over 20 services (web v1, no published port), --interval 30s"
g rm -rq loopweb
mkdir -p "$WC/loopidle"
{
  echo "# generated by bench/loop.sh"
  echo "services:"
  for i in $(seq -w 1 20); do
    cat <<YML
  s$i:
    image: $IMAGE:v1
    environment:
      SERVICE: s$i
    restart: unless-stopped
    x-reconciler:
      min_ready: 0s
YML
  done
} > "$WC/loopidle/compose.yaml"
g add -A
g commit -q -m "loopidle: 20 services; loopweb leaves"
g push -q origin main
IDLE_COMMIT=$(g rev-parse HEAD)
STATE=$WORK/state-idle     # a fresh host: its own state dir and clone
TICK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$RUN_PID/stat"; }
passes() { curl -fsS --max-time 2 "http://127.0.0.1:$IDLE_PORT/status" | jq -r .passes; }
synced20() {
  timeout 20 "$BIN" --state-dir "$STATE" status -o json 2>/dev/null |
    jq -r --arg c "$IDLE_COMMIT" '[.[] | select(.stack == "loopidle" and .revision == $c and .sync == "Synced")] | length'
}
pass_metrics() { # "sum count" of the pass-duration histogram
  curl -fsS --max-time 2 "http://127.0.0.1:$IDLE_PORT/metrics" |
    awk '/^reconciler_reconcile_duration_seconds_sum/ { s = $2 } /^reconciler_reconcile_duration_seconds_count/ { c = $2 } END { print s, c }'
}
# idle_window KEY: sample the run process once a second for $IDLE s; VmRSS/VmHWM at the end.
idle_window() {
  local key=$1 t0 p0 p1 prev cur busy=0 i
  t0=$(ticks); p0=$(passes); prev=$t0
  m0=$(pass_metrics)
  for i in $(seq "$IDLE"); do
    sleep 1
    cur=$(ticks)
    [ "$cur" = "$prev" ] || busy=$((busy + 1))
    prev=$cur
  done
  p1=$(passes)
  R[$key.cpu]=$(awk -v t=$((cur - t0)) -v hz="$TICK" -v s="$IDLE" 'BEGIN { printf "%.2f s CPU in %d s (%.2f%% of one core)", t / hz, s, t / hz / s * 100 }')
  R[$key.pct]=$(awk -v t=$((cur - t0)) -v hz="$TICK" -v s="$IDLE" 'BEGIN { printf "%.3f", t / hz / s * 100 }')
  R[$key.busy]="$busy of $IDLE one-second samples saw CPU ticks; $((p1 - p0)) passes in the window"
  R[$key.perpass]=$(awk -v t=$((cur - t0)) -v hz="$TICK" -v p=$((p1 - p0)) 'BEGIN {
    if (p == 0) print "-"; else if (t == 0) printf "no tick in %d passes (< %d ms each)", p, 1000 / hz; else printf "%.1f ms", t / hz / p * 1000 }')
  R[$key.rss]=$(awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { printf "%.1f\t%.1f", r / 1024, h / 1024 }' "/proc/$RUN_PID/status")
  R[$key.threads]=$(awk '/^Threads/ { print $2 }' "/proc/$RUN_PID/status")
  R[$key.passdur]=$(echo "$m0 $(pass_metrics)" | awk '{ if ($4 > $2) printf "%.1f ms (%d passes)", ($3 - $1) / ($4 - $2) * 1000, $4 - $2; else print "-" }')
  echo "  CPU: ${R[$key.cpu]}; ${R[$key.busy]}; per pass ${R[$key.perpass]}"
  echo "  VmRSS / VmHWM (MiB): ${R[$key.rss]/$'\t'/ / }; threads ${R[$key.threads]}; mean pass ${R[$key.passdur]}"
}
t0=$(now)
start_loop idle30 --interval 30s --listen "127.0.0.1:$IDLE_PORT" --webhook-secret "$SECRET"
while [ "$(synced20 || echo 0)" != 20 ]; do
  awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a > 150) }' && { tail -20 "$WORK/idle30.log" >&2; die "20 services not Synced after 150 s"; }
  sleep 0.5
done
R[idle_create]=$(elapsed "$t0" "$(now)")
echo "first pass created 20 services in ${R[idle_create]} s; idling ${IDLE} s"
idle_window idle30
stop_loop

log "3. idle: the same 20 services, run --interval 1s (restarted; in sync from the start)"
start_loop idle1 --interval 1s --listen "127.0.0.1:$IDLE_PORT" --webhook-secret "$SECRET"
for _ in $(seq 100); do [ "$(passes 2>/dev/null || echo 0)" -ge 1 ] && break; sleep 0.1; done
[ "$(synced20)" = 20 ] || die "the restarted loop does not see 20 services Synced"
idle_window idle1
stop_loop

# === Summary ===================================================================================
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }
field() { echo "$1" | cut -f"$2"; }
mm() { echo "$(field "$1" 1) / $(field "$1" 2)"; }   # "median / max"
row() { # KEY LABEL TARGET_SECONDS|-
  local key=$1 s=${R[$1.served]} v=info t=info
  if [ "$3" != - ]; then v=$(verdict "$(field "$s" 2) < $3"); t="< $3 s"; fi
  echo "| 1 | $2 | $(field "$s" 1) s | $(field "$s" 2) s | $(field "$s" 3) s | $t | $v |"
}
brow() { # KEY LABEL: where the time goes, medians / max
  local k=$1
  echo "| $2 | $(mm "${R[$k.acting]}") | $(mm "${R[$k.engine]}") | $(mm "${R[$k.net]}") | $(mm "${R[$k.served]}") | $(mm "${R[$k.gap]}") | $(awk -v m="$(field "${R[$k.journal]}" 1)" -v x="$(field "${R[$k.journal]}" 2)" 'BEGIN { printf "%d / %d ms", m, x }') | $(mm "${R[$k.done]}") |"
}
SUMMARY=$(cat <<TXT
| # | git push (or revert + push) -> first GET with the new body, n=$((2 * REPEAT)) each | median | max | min | target | verdict |
|---|---|---|---|---|---|---|
$(row poll_nohealth "polling, run --interval 1s; no healthcheck, min_ready 0s" 3)
$(row hook_nohealth "webhook: run --interval 1h, POST /hooks/git after the push; no healthcheck, min_ready 0s" 1)
$(row poll_health "polling, --interval 1s; healthcheck every 1s (reference)" -)
$(row hook_health "webhook, --interval 1h; healthcheck every 1s (reference)" -)
$(row hook_side "webhook, --interval 1h; no healthcheck; a second service on the network" -)
| 1 | no reconciler: docker stop + rename + docker run -p (same port) by hand, from the stop command | $(field "${R[cli.served]}" 1) s | $(field "${R[cli.served]}" 2) s | $(field "${R[cli.served]}" 3) s | the engine's floor | info |
| 1 | the same by hand, a second container on the network | $(field "${R[cli_side.served]}" 1) s | $(field "${R[cli_side.served]}" 2) s | $(field "${R[cli_side.served]}" 3) s | the engine's floor | info |

Where the time goes (seconds after the push returned, median / max; engine event times from \`docker events\`):

| configuration | push -> engine's kill of the old container (loop) | kill -> start event of the new one (engine: stop, rename, create, start) | start event -> first new body | served | gap: last old body -> first new | journal duration_ms | push -> old container removed (update over) |
|---|---|---|---|---|---|---|---|
$(brow poll_nohealth "polling 1s, no healthcheck")
$(brow hook_nohealth "webhook, no healthcheck")
$(brow poll_health "polling 1s, healthcheck 1s")
$(brow hook_health "webhook, healthcheck 1s")
$(brow hook_side "webhook, no healthcheck, + a second service")
| docker CLI by hand (stop; rename; run) | - | - | - | $(mm "${R[cli.served]}") | $(mm "${R[cli.gap]}") | - | - |
| docker CLI by hand, + a second container | - | - | - | $(mm "${R[cli_side.served]}") | $(mm "${R[cli_side.gap]}") | - | - |

| # | idle \`run\`, 20 in-sync services, ${IDLE} s window | --interval 30s | --interval 1s | target | verdict |
|---|---|---|---|---|---|
| 2 | VmRSS after the window (MiB) | $(field "${R[idle30.rss]}" 1) | $(field "${R[idle1.rss]}" 1) | < 25 MiB | $(verdict "$(field "${R[idle30.rss]}" 1) < 25 && $(field "${R[idle1.rss]}" 1) < 25") |
| 2 | VmHWM, peak since start (MiB) | $(field "${R[idle30.rss]}" 2) (incl. creating the 20) | $(field "${R[idle1.rss]}" 2) | < 25 MiB | $(verdict "$(field "${R[idle30.rss]}" 2) < 25 && $(field "${R[idle1.rss]}" 2) < 25") |
| 2 | CPU (utime + stime, /proc/PID/stat) | ${R[idle30.cpu]} | ${R[idle1.cpu]} | < 1% of one core at 30s | $(verdict "${R[idle30.pct]} < 1") |
| 2 | when | ${R[idle30.busy]} | ${R[idle1.busy]} | | |
| 2 | CPU per pass | ${R[idle30.perpass]} | ${R[idle1.perpass]} | | |
| 2 | mean duration of the in-sync passes in the window (/metrics) | ${R[idle30.passdur]} | ${R[idle1.passdur]} | | |
| 2 | threads | ${R[idle30.threads]} | ${R[idle1.threads]} | | |

Creating the 20 services (first pass of a fresh state dir): ${R[idle_create]} s. Passes of the webhook loop: ${R[hook_passes]} for ${R[hook_posts]} POSTs (+1 at start). Webhook with a wrong token: ${R[hook_wrong]}. SIGTERM: $(printf '%s; ' "${STOPS[@]}")
TXT
)
log "summary ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(( $(date +%s) - T_START )) s)"
echo "$SUMMARY"
[ -z "${BENCH_SUMMARY:-}" ] || echo "$SUMMARY" > "$BENCH_SUMMARY"
