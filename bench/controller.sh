#!/usr/bin/env bash
# Rerunnable benchmark of how the reconciler converges many services and several stacks against
# the real Docker Engine, side by side with docker-compose (see bench/README.md, "The controller").
#
#   bash bench/controller.sh
#
# From a clean machine state: builds the release binary (if that takes over 2 min, build first),
# builds a web image in two versions like bench/loop.sh (busybox httpd serving "v1" / "v2"), serves
# them from a private registry on 127.0.0.1:5068 and keeps the local copies (no measurement below
# includes a pull), generates the stacks in a temp dir, and measures:
#   1. first deploy of 20 services with 1 s healthchecks: `reconciler apply` against
#      `docker-compose up -d` + polling until all 20 are healthy, each on a fresh project, 3 times;
#   2. a release of all 20 (one shared value in .env) against a release of one, `reconciler apply`;
#   3. first deploy of 200 services without healthcheck (min_ready 0s), reconciler and Compose,
#      and the engine alone (200 x docker run -d, 16 at a time);
#   4. head-of-line: `reconciler run` follows a bare git repository holding two stacks; one push
#      gives stack A a release that never turns healthy and stack B a good one: push -> B served.
# Removes everything it created (projects ctl20, ctl200, ctla, ctlb and ctlfloor, their networks, the
# images, the registry, the `run` and `docker events` processes, the temp dir) on success, failure,
# Ctrl-C and SIGTERM. Bounded: a watchdog stops it after 9 min 30 s; every external command has its
# own timeout.
# CTL_RUNS (default 3) runs per side in figure 1; CTL_RELEASES (default 3) the most releases of
# each kind in figure 2 (fewer when they are slow, see RELEASES_BUDGET); CTL_BIN=/path uses that
# binary instead of building one; BENCH_SUMMARY=/path also writes the summary table to a file.
set -euo pipefail
export LC_ALL=C     # "." as the decimal point of $EPOCHREALTIME and awk
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${CTL_BIN:-$ROOT/target/release/reconciler}
REGISTRY_PORT=5068
REGISTRY=127.0.0.1:$REGISTRY_PORT
IMAGE=$REGISTRY/ctlbench/web
WEB_PORT=18070            # stack B's web service, published on loopback
HOOK_PORT=18071           # --listen of the loop in figure 4
SECRET=ctl-bench-secret
PROJECTS=(ctl20 ctl200 ctla ctlb ctlfloor)
RUNS=${CTL_RUNS:-3}
RELEASES=${CTL_RELEASES:-3}
RELEASES_BUDGET=45        # seconds: figure 2 starts no new pair of releases after this, so slow
                          # releases cannot push the run past its deadline
CHANGED=s10               # the service the one-service release changes
A_HEALTH_TIMEOUT=60       # seconds: stack A's x-reconciler.health_timeout in figure 4
COMPOSE200_LIMIT=45       # seconds given to docker-compose up -d of the 200 (1.29 may stall on them)
DEADLINE=570              # seconds; every external command also has its own timeout

log() { printf '\n== [%s s] %s\n' "$(( $(date +%s) - ${T_START:-$(date +%s)} ))" "$*"; }
die() { echo "controller bench: $*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
older_than() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN { exit !(b - a > l) }'; } # T0 SECONDS

# --- tools -------------------------------------------------------------------------------------
if ! command -v jq >/dev/null; then
  [ "$(id -u)" = 0 ] || die "missing jq: apt-get install -y jq"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q jq >/dev/null
fi
for t in docker docker-compose docker-registry git curl awk; do
  command -v "$t" >/dev/null || die "$t is missing"
done
[ -n "${CTL_BIN:-}" ] || command -v cargo >/dev/null || die "cargo is missing (or set CTL_BIN)"
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
! ldd /bin/busybox >/dev/null 2>&1 || die "/bin/busybox is dynamically linked; install busybox-static"
timeout 30 docker info >/dev/null 2>&1 || die "the Docker Engine does not answer"
for port in $REGISTRY_PORT $WEB_PORT $HOOK_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$port; stop it first (it is not ours to kill)"
  fi
done

WORK=$(mktemp -d /tmp/reconciler-controller-bench.XXXXXX)
R20=$WORK/repo20          # one folder per stack, so each apply reads only its stack
R200=$WORK/repo200
F20=$R20/ctl20/compose.yaml
F200=$R200/ctl200/compose.yaml
REMOTE=$WORK/remote.git   # figure 4's desired state, as a bare "server" repo
WC=$WORK/wc               # the operator's clone, where commits are made and pushed from
REG_PID=
RUN_PID=
EV_PID=
BUILD_PID=
WATCHDOG=

# --- cleanup (always) --------------------------------------------------------------------------
remove_project() {
  local p=$1 ids err
  ids=$(timeout 60 docker ps -aq --filter "label=com.docker.compose.project=$p" || true)
  [ -z "$ids" ] || echo "$ids" | xargs -n 50 -P 4 timeout 120 docker rm -f >/dev/null 2>&1 || true
  [ "$(timeout 30 docker network inspect "${p}_default" --format '{{index .Labels "com.docker.compose.project"}}' 2>/dev/null)" = "$p" ] || return 0
  # Right after many removals the engine may still be releasing their endpoints: try a few times.
  for _ in 1 2 3 4 5; do
    err=$(timeout 60 docker network rm "${p}_default" 2>&1 >/dev/null) && return 0
    sleep 1
  done
  # Seen once with Docker 20.10 under load: the network keeps a count of 1 endpoint that no
  # container holds; only a restart of dockerd clears it. Both tools reuse the network meanwhile.
  echo "controller bench: warning: network ${p}_default is left: ${err%%$'\n'*}" >&2
}
# stop_pid PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null || true
  echo
  echo "controller bench: cleaning up"
  [ -z "$BUILD_PID" ] || stop_pid "$BUILD_PID"
  [ -z "$RUN_PID" ] || stop_pid "$RUN_PID"
  [ -z "$EV_PID" ] || stop_pid "$EV_PID"
  for p in "${PROJECTS[@]}"; do remove_project "$p"; done
  timeout 60 docker image rm "$IMAGE:v1" "$IMAGE:v2" >/dev/null 2>&1 || true
  [ -z "$REG_PID" ] || stop_pid "$REG_PID"
  rm -rf "$WORK"
  [ "$rc" = 0 ] || echo "controller bench: FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
( trap 'kill $sp 2>/dev/null; exit 0' TERM; sleep "$DEADLINE" & sp=$!; wait $sp
  echo "controller bench: time limit (${DEADLINE}s) reached, stopping" >&2; kill -TERM $$ ) 2>/dev/null &
WATCHDOG=$!
T_START=$(date +%s)

# Leftovers of an interrupted earlier run carry our project names: remove them first.
for p in "${PROJECTS[@]}"; do remove_project "$p"; done

log "machine"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "date: $(date -u +%FT%TZ)   cores: $(nproc)   load: $LOAD_START"
echo "engine: $(timeout 30 docker version --format '{{.Server.Version}}')   compose: $(timeout 30 docker-compose version --short)   $(git --version)"
echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -z "$(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] || echo ' + uncommitted changes in src/')"

if [ -z "${CTL_BIN:-}" ]; then
  log "build (cargo build --release)"
  # In the background, so the watchdog's SIGTERM is handled while cargo runs (or waits for a lock).
  timeout 120 cargo build --release -q & BUILD_PID=$!
  wait "$BUILD_PID" || die "cargo build --release failed or took over 2 min (the run must stay under 9.5 min): build first, then rerun"
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

# bench/loop.sh's web app (testdata/images): busybox httpd on port 80 serving /www/index.html
# ("v1" / "v2") and /www/health, every busybox applet on PATH (`true`, `false`, `wget` for the
# healthchecks); the start script stops httpd at once on SIGTERM.
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
echo "pushed $IMAGE:v1 and :v2; local copies kept (pull_policy missing: nothing below pulls)"

# --- helpers -----------------------------------------------------------------------------------
declare -A R   # results for the summary
# stats VALUES...: "median<TAB>min<TAB>max" (three decimals)
stats() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.3f\t%.3f\t%.3f", m, v[1], v[NR] }'
}
field() { echo "$1" | cut -f"$2"; }
count() { # PROJECT [FILTER...]: containers of the project matching docker ps filters
  local p=$1
  shift
  timeout 30 docker ps -q --filter "label=com.docker.compose.project=$p" "$@" | wc -l
}
# apply_timed STATE REPO OUT LIMIT: `reconciler apply`; its wall time (s) in WALL.
apply_timed() {
  local t0 t1 rc=0
  t0=$(now)
  timeout "$4" "$BIN" --state-dir "$1" apply --repo "$2" > "$3" 2>&1 || rc=$?
  t1=$(now)
  [ "$rc" = 0 ] || { tail -20 "$3" >&2; die "reconciler apply --repo $2 exited $rc"; }
  WALL=$(elapsed "$t0" "$t1")
}
expect_converged() { # OUT N: the apply's last line says N services changed
  local want
  want="converged: $2 service$([ "$2" = 1 ] || echo s) changed"
  [ "$(tail -1 "$1")" = "$want" ] || { tail -20 "$1" >&2; die "expected \"$want\""; }
}

# --- stacks ------------------------------------------------------------------------------------
HEALTHCHECK_TRUE='    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      timeout: 1s
      retries: 3'
# ctl20: 20 services with a 1 s healthcheck. Each takes RELEASE (shared: a release of all 20 is
# one line of .env) and its own SNN_RELEASE (a release of one service is one line). No top-level
# `name:`, which docker-compose 1.29 rejects.
mkdir -p "$R20/ctl20"
{
  echo "# generated by bench/controller.sh"
  echo "services:"
  for i in $(seq -w 1 20); do
    cat <<YML
  s$i:
    image: $IMAGE:v1
    environment:
      SERVICE: s$i
      RELEASE: \${RELEASE}
      OWN_RELEASE: \${S${i}_RELEASE}
    restart: unless-stopped
$HEALTHCHECK_TRUE
YML
  done
} > "$F20"
{ echo "RELEASE=1"; for i in $(seq -w 1 20); do echo "S${i}_RELEASE=1"; done; } > "$R20/ctl20/.env"
# ctl200: 200 services as bench/run.sh's stacks: no healthcheck, ready as soon as they run.
mkdir -p "$R200/ctl200"
{
  echo "# generated by bench/controller.sh"
  echo "services:"
  for i in $(seq -w 1 200); do
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
} > "$F200"
timeout 30 "$BIN" --state-dir "$WORK/state-validate" validate --repo "$R20" >/dev/null
timeout 30 "$BIN" --state-dir "$WORK/state-validate" validate --repo "$R200" >/dev/null
timeout 60 docker-compose -p ctl20 -f "$F20" config -q
timeout 60 docker-compose -p ctl200 -f "$F200" config -q

# === Figure 1: first deploy of 20 services with healthchecks ====================================
log "1. first deploy of 20 services, healthcheck every 1s: docker-compose up -d + wait healthy, then reconciler apply; $RUNS times each, each on a fresh project"
# Compose returns once the containers are started; the clock stops when `docker ps` counts 20
# healthy (polled every 0.1 s). The reconciler's apply returns once each service is healthy.
rec1=(); comp1=(); up1=()
for k in $(seq "$RUNS"); do
  remove_project ctl20
  t0=$(now)
  timeout 180 docker-compose -p ctl20 -f "$F20" up -d > "$WORK/compose20.out" 2>&1 ||
    { tail -20 "$WORK/compose20.out" >&2; die "docker-compose up -d (20) failed"; }
  tu=$(now)
  until [ "$(count ctl20 --filter health=healthy)" = 20 ]; do
    older_than "$t0" 120 && die "Compose's 20 containers not all healthy after 120 s"
    sleep 0.1
  done
  t1=$(now)
  comp1+=("$(elapsed "$t0" "$t1")"); up1+=("$(elapsed "$t0" "$tu")")
  remove_project ctl20
  STATE1=$WORK/state1-$k   # a fresh host each time
  apply_timed "$STATE1" "$R20" "$WORK/apply20.out" 180
  rec1+=("$WALL")
  expect_converged "$WORK/apply20.out" 20
  [ "$(count ctl20 --filter health=healthy)" = 20 ] || die "reconciler apply returned before 20 were healthy"
  echo "  run $k: docker-compose up -d ${up1[-1]} s, all healthy ${comp1[-1]} s; reconciler apply ${rec1[-1]} s"
done
R[rec1]=$(stats "${rec1[@]}")
R[comp1]=$(stats "${comp1[@]}")
R[up1]=$(stats "${up1[@]}")
R[ratio1]=$(awk -v r="$(field "${R[rec1]}" 1)" -v c="$(field "${R[comp1]}" 1)" 'BEGIN { printf "%.2f", r / c }')

# === Figure 2: a release of all 20 against a release of one ====================================
log "2. releases on the reconciler's 20 (from the last run above): one service ($CHANGED) vs all 20 (shared RELEASE in .env), alternating; up to $RELEASES of each, no new pair after ${RELEASES_BUDGET} s"
one2=(); all2=()
t2=$(now)
for k in $(seq "$RELEASES"); do
  [ "$k" = 1 ] || ! older_than "$t2" "$RELEASES_BUDGET" || break
  sed -i "s/^${CHANGED^^}_RELEASE=.*/${CHANGED^^}_RELEASE=$((k + 1))/" "$R20/ctl20/.env"
  apply_timed "$STATE1" "$R20" "$WORK/one.out" 120
  one2+=("$WALL")
  expect_converged "$WORK/one.out" 1
  sed -i "s/^RELEASE=.*/RELEASE=$((k + 1))/" "$R20/ctl20/.env"
  apply_timed "$STATE1" "$R20" "$WORK/all.out" 240
  all2+=("$WALL")
  expect_converged "$WORK/all.out" 20
  [ "$(count ctl20 --filter health=healthy)" = 20 ] || die "not 20 healthy after the release of all 20"
  echo "  release $k: one service ${one2[-1]} s; all 20 ${all2[-1]} s"
done
R[one2]=$(stats "${one2[@]}")
R[all2]=$(stats "${all2[@]}")
R[ratio2]=$(awk -v a="$(field "${R[all2]}" 1)" -v o="$(field "${R[one2]}" 1)" 'BEGIN { printf "%.2f", a / o }')
remove_project ctl20

# === Figure 3: first deploy of 200 services =====================================================
log "3. first deploy of 200 services (no healthcheck, min_ready 0s): reconciler apply, then docker-compose up -d"
apply_timed "$WORK/state3" "$R200" "$WORK/apply200.out" 240
R[rec3]=$WALL
expect_converged "$WORK/apply200.out" 200
[ "$(count ctl200 --filter status=running)" = 200 ] || die "not 200 running after reconciler apply"
echo "  reconciler apply: ${R[rec3]} s"
remove_project ctl200
t0=$(now); rc=0
timeout "$COMPOSE200_LIMIT" docker-compose -p ctl200 -f "$F200" up -d > "$WORK/compose200.out" 2>&1 || rc=$?
t1=$(now)
running=$(count ctl200 --filter status=running)
if [ "$rc" = 0 ] && [ "$running" = 200 ]; then
  R[comp3]="$(elapsed "$t0" "$t1") s"
else
  R[comp3]="not done within ${COMPOSE200_LIMIT} s (exit $rc): $running of 200 running then"
  tail -5 "$WORK/compose200.out"
fi
echo "  docker-compose up -d: ${R[comp3]}"
remove_project ctl200

# The engine's own pace for 200 containers on this machine, without either tool: `docker run -d`
# of the same image, 16 at a time (the project label only lets remove_project clean them up).
log "3. engine floor: 200 x docker run -d, 16 at a time"
t0=$(now)
seq 1 200 | timeout 300 xargs -P 16 -I{} docker run -d --name ctlfloor-{} \
  --label com.docker.compose.project=ctlfloor "$IMAGE:v1" >/dev/null 2>&1 || true
t1=$(now)
floor_running=$(timeout 60 docker ps -q --filter label=com.docker.compose.project=ctlfloor | wc -l)
R[floor3]="$(elapsed "$t0" "$t1") s ($floor_running of 200 running)"
echo "  engine floor: ${R[floor3]}"
remove_project ctlfloor

# === Figure 4: head-of-line, two stacks in one push =============================================
log "4. head-of-line: run --interval 1h --listen 127.0.0.1:$HOOK_PORT over stacks ctla and ctlb; one push breaks A (never healthy, health_timeout ${A_HEALTH_TIMEOUT}s) and releases B"
g() { timeout 30 git -C "$WC" -c user.name=bench -c user.email=bench@localhost -c commit.gpgsign=false "$@"; }
timeout 30 git init -q --bare -b main "$REMOTE"
timeout 30 git init -q -b main "$WC"
g remote add origin "$REMOTE"
mkdir -p "$WC/ctla" "$WC/ctlb"
# A: its healthcheck command comes from .env; the bad release sets it to `false`. Many retries, so
# the engine never calls it unhealthy: it stays "starting" and the reconciler waits out
# health_timeout (with the default 3 retries it would fail after ~3 s; the slow case is measured).
cat > "$WC/ctla/compose.yaml" <<YML
# generated by bench/controller.sh
services:
  app:
    image: $IMAGE:v1
    environment:
      RELEASE: \${RELEASE}
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "\${HEALTH_CMD}"]
      interval: 1s
      timeout: 1s
      retries: 1000
    x-reconciler:
      health_timeout: ${A_HEALTH_TIMEOUT}s
YML
printf 'RELEASE=1\nHEALTH_CMD=true\n' > "$WC/ctla/.env"
# B: bench/loop.sh's web service with its 1 s healthcheck, plus a second service that is never
# updated, so the stack's network keeps a port while web is replaced (see loop.sh's notes).
cat > "$WC/ctlb/compose.yaml" <<YML
# generated by bench/controller.sh
services:
  web:
    image: $IMAGE:\${WEB_TAG}
    ports:
      - "127.0.0.1:$WEB_PORT:80"
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"]
      interval: 1s
      timeout: 1s
      retries: 3
  side:
    image: $IMAGE:v1
    restart: unless-stopped
    x-reconciler:
      min_ready: 0s
YML
echo "WEB_TAG=v1" > "$WC/ctlb/.env"
g add -A
g commit -q -m "ctla and ctlb: first release"
g push -q origin main
STATE4=$WORK/state4
timeout 30 "$BIN" --state-dir "$STATE4" validate --repo "$WC" >/dev/null

get() { curl -s --connect-timeout 0.5 --max-time 1 "http://127.0.0.1:$WEB_PORT/" 2>/dev/null || true; }
row() { # STACK SERVICE: "revision sync last_error" from status
  timeout 20 "$BIN" --state-dir "$STATE4" status -o json 2>/dev/null |
    jq -r --arg st "$1" --arg s "$2" '.[] | select(.stack == $st and .service == $s) | "\(.revision) \(.sync) \(.last_error // "-")"'
}
synced() { [ "$(row "$1" "$2" | cut -d' ' -f1-2)" = "$3 Synced" ]; } # STACK SERVICE COMMIT
hook() { # POST /hooks/git as GitLab does; must answer 202
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H "X-Gitlab-Token: $SECRET" \
    -H 'Content-Type: application/json' -d '{"ref":"refs/heads/main"}' "http://127.0.0.1:$HOOK_PORT/hooks/git" || true)
  [ "$code" = 202 ] || die "POST /hooks/git answered ${code:-nothing}, expected 202"
}
# The engine's container events of both projects: "nanoseconds project name action".
timeout "$DEADLINE" docker events --filter type=container \
  --format '{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.project"}} {{index .Actor.Attributes "name"}} {{.Action}}' \
  > "$WORK/events" 2>&1 &
EV_PID=$!
# event PROJECT ACTION T0: seconds from T0 to the project's first event ACTION after T0 ("?" if none)
event() {
  awk -v p="$1" -v a="$2" -v t="$3" '$2 == p && $1 / 1e9 > t {
    act = $4; for (i = 5; i <= NF; i++) act = act " " $i   # "health_status: healthy" has a space
    if (act == a) { printf "%.3f", $1 / 1e9 - t; found = 1; exit } } END { if (!found) print "?" }' "$WORK/events"
}

"$BIN" --state-dir "$STATE4" run --repo "file://$REMOTE" --interval 1h \
  --listen "127.0.0.1:$HOOK_PORT" --webhook-secret "$SECRET" > "$WORK/run.log" 2>&1 &
RUN_PID=$!
C1=$(g rev-parse HEAD)
t0=$(now)
until synced ctla app "$C1" && synced ctlb web "$C1" && synced ctlb side "$C1"; do
  older_than "$t0" 90 && { tail -20 "$WORK/run.log" >&2; die "ctla and ctlb not Synced 90 s after the loop started"; }
  sleep 0.2
done
[ "$(get)" = v1 ] || die "ctlb's web does not serve v1"
echo "first pass: both stacks Synced in $(elapsed "$t0" "$(now)") s; GET / -> v1"
sleep 1.5   # let the extra pass that the first pass's own engine events start run out

sed -i 's/^HEALTH_CMD=.*/HEALTH_CMD=false/; s/^RELEASE=.*/RELEASE=2/' "$WC/ctla/.env"
sed -i 's/^WEB_TAG=.*/WEB_TAG=v2/' "$WC/ctlb/.env"
g commit -q -am "ctla: a release that never turns healthy; ctlb: web v2"
C2=$(g rev-parse HEAD)
g push -q origin main
T_PUSH=$(now)
hook
# A GET / every 30 ms for 10 s, then every 250 ms (today B waits behind A's health timeout: a
# curl every 30 ms for a minute would load the 2 cores), each in the background with its own 5 s
# limit; "served" is the earliest completion of a GET that returned v2 (as in bench/loop.sh).
: > "$WORK/polls"
pids=()
while :; do
  ( a=$EPOCHREALTIME; out=$(curl -s --max-time 5 "http://127.0.0.1:$WEB_PORT/" 2>/dev/null) || true
    echo "$a $EPOCHREALTIME ${out:--}" >> "$WORK/polls" ) &
  pids+=($!)
  grep -q ' v2$' "$WORK/polls" && break
  older_than "$T_PUSH" $((A_HEALTH_TIMEOUT + 40)) && { tail -20 "$WORK/run.log" >&2; die "v2 not served $((A_HEALTH_TIMEOUT + 40)) s after the push"; }
  if older_than "$T_PUSH" 10; then sleep 0.25; else sleep 0.03; fi
done
wait "${pids[@]}"
SERVED=$(awk '$3 == "v2" && (s == "" || $2 < s) { s = $2 } END { print s }' "$WORK/polls")
R[served4]=$(elapsed "$T_PUSH" "$SERVED")
echo "  push -> B serves v2: ${R[served4]} s"
until synced ctlb web "$C2"; do
  older_than "$T_PUSH" $((A_HEALTH_TIMEOUT + 40)) && { tail -20 "$WORK/run.log" >&2; die "ctlb/web not Synced at ${C2:0:12}"; }
  sleep 0.1
done
R[synced4]=$(elapsed "$T_PUSH" "$(now)")
# A's row keeps the revision of the container that runs (the last good one): only its sync moves.
until [ "$(row ctla app | cut -d' ' -f1-2)" = "$C1 Failed" ]; do
  older_than "$T_PUSH" $((A_HEALTH_TIMEOUT + 40)) && { tail -20 "$WORK/run.log" >&2; die "ctla/app not Failed (still running ${C1:0:12})"; }
  sleep 0.25
done
R[a_reason]=$(row ctla app | cut -d' ' -f3-)
[ "$(get)" = v2 ] || die "ctlb's web stopped serving v2"
[ "$(count ctla --filter health=healthy)" = 1 ] || die "A's last good container is not running healthy"
sleep 0.5   # the engine's events of the last removal reach the reader
R[b_start4]=$(event ctlb start "$T_PUSH")
R[b_healthy4]=$(event ctlb "health_status: healthy" "$T_PUSH")
R[a_start4]=$(event ctla start "$T_PUSH")
R[a_failed4]=$(event ctla destroy "$T_PUSH")
echo "  push -> B's new container started ${R[b_start4]} s, healthy ${R[b_healthy4]} s, Synced in status ${R[synced4]} s"
echo "  push -> A's candidate started ${R[a_start4]} s, removed as failed ${R[a_failed4]} s (${R[a_reason]})"
stop_pid "$RUN_PID"; RUN_PID=
stop_pid "$EV_PID"; EV_PID=
remove_project ctla
remove_project ctlb

# === Summary ===================================================================================
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }
med() { printf '%.2f s' "$(field "$1" 1)"; }
range() { printf 'min %.2f, max %.2f' "$(field "$1" 2)" "$(field "$1" 3)"; }
secs() { if [ "$1" = "?" ]; then echo "?"; else printf '%.2f s' "$1"; fi; }
V1=$(verdict "${R[ratio1]} <= 1.2")
V2=$(verdict "${R[ratio2]} <= 2")
V3=$(verdict "${R[rec3]} < 25")
V4=$(verdict "${R[served4]} < 5")
SUMMARY=$(cat <<TXT
| # | measurement | result | target | verdict |
|---|---|---|---|---|
| 1 | reconciler apply, first deploy of 20 services with a 1 s healthcheck, until all healthy (median of $RUNS; runs: ${rec1[*]} s) | $(med "${R[rec1]}") ($(range "${R[rec1]}")) | | |
| 1 | docker-compose up -d + polling until the 20 are healthy, same stack (median of $RUNS; runs: ${comp1[*]} s) | $(med "${R[comp1]}") ($(range "${R[comp1]}")) | | |
| 1 | of which docker-compose up -d itself (median) | $(med "${R[up1]}") | info | |
| 1 | reconciler / Compose, medians | ${R[ratio1]}x | <= 1.2x | $V1 |
| 2 | reconciler apply, release of one service ($CHANGED), healthcheck 1 s (median of ${#one2[@]}; runs: ${one2[*]} s) | $(med "${R[one2]}") | | |
| 2 | reconciler apply, release of all 20 (shared RELEASE in .env) (median of ${#all2[@]}; runs: ${all2[*]} s) | $(med "${R[all2]}") | | |
| 2 | all 20 / one, medians | ${R[ratio2]}x | <= 2x | $V2 |
| 3 | reconciler apply, first deploy of 200 services (no healthcheck, min_ready 0s) | $(secs "${R[rec3]}") | < 25 s | $V3 |
| 3 | docker-compose up -d, the same 200, fresh project | ${R[comp3]} | info | |
| 3 | the engine alone: 200 x docker run -d of the same image, 16 at a time | ${R[floor3]} | info | |
| 4 | git push (A never healthy + B good, one commit) -> B's new container serves v2 (webhook loop) | $(secs "${R[served4]}") | < 5 s | $V4 |
| 4 | push -> B's new container started / healthy (engine events) / ctlb/web Synced in status | $(secs "${R[b_start4]}") / $(secs "${R[b_healthy4]}") / $(secs "${R[synced4]}") | info | |
| 4 | push -> A's candidate started / removed as failed (engine events); reason in status | $(secs "${R[a_start4]}") / $(secs "${R[a_failed4]}"); ${R[a_reason]} | info | |
TXT
)
log "summary ($(date -u +%F), $(nproc) cores, load $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) now, $(( $(date +%s) - T_START )) s)"
echo "$SUMMARY"
[ -z "${BENCH_SUMMARY:-}" ] || echo "$SUMMARY" > "$BENCH_SUMMARY"
