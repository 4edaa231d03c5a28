#!/usr/bin/env bash
# Rerunnable benchmark of `reconciler` against the real Docker Engine (see bench/README.md).
#
#   bash bench/run.sh
#
# From a clean machine state: builds the release binary, builds two tiny images from Debian's
# static busybox (no internet), serves them from a private registry on 127.0.0.1:5066, generates a
# 20-service and a 200-service stack in a temp dir, measures, prints a summary table, and removes
# everything it created (projects bench20 and bench200, their network, the images, the registry
# process, the temp dir), also on failure or Ctrl-C. Bounded: a watchdog stops it after 9.5 min.
# Set BENCH_SUMMARY=/path to also write the summary table to a file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/target/release/reconciler
REGISTRY=127.0.0.1:5066
IMAGE=$REGISTRY/bench/sleeper
PROJECTS=(bench20 bench200)
CHANGED=s10               # the service whose tag the one-tag-change measurement edits
TOGGLES=${BENCH_TOGGLES:-6}
DEADLINE=570              # seconds; every external command also has its own timeout

log() { printf '\n== %s\n' "$*"; }
die() { echo "bench: $*" >&2; exit 1; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }

# --- tools -------------------------------------------------------------------------------------
need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v strace >/dev/null || need+=(strace)
[ -x /usr/bin/time ] || need+=(time)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: apt-get install -y ${need[*]}"
  echo "bench: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
for t in docker docker-compose docker-registry cargo curl awk; do
  command -v "$t" >/dev/null || die "$t is missing"
done
[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
docker info >/dev/null 2>&1 || die "the Docker Engine does not answer"
if curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  die "something already serves $REGISTRY; stop it first (it is not ours to kill)"
fi

WORK=$(mktemp -d /tmp/reconciler-bench.XXXXXX)
STATE=$WORK/state
R20=$WORK/repo20          # one repo per stack, so each command reads only its stack
R200=$WORK/repo200
F20=$R20/bench20/compose.yaml
REG_PID=
WATCHDOG=

# --- cleanup (always) --------------------------------------------------------------------------
remove_project() {
  local p=$1 ids
  ids=$(docker ps -aq --filter "label=com.docker.compose.project=$p")
  [ -z "$ids" ] || echo "$ids" | xargs -n 50 -P 4 timeout 120 docker rm -f >/dev/null 2>&1 || true
  if [ "$(docker network inspect "${p}_default" --format '{{index .Labels "com.docker.compose.project"}}' 2>/dev/null)" = "$p" ]; then
    docker network rm "${p}_default" >/dev/null 2>&1 || true
  fi
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$WATCHDOG" ] || kill "$WATCHDOG" 2>/dev/null || true
  echo
  echo "bench: cleaning up"
  for p in "${PROJECTS[@]}"; do remove_project "$p"; done
  docker image rm "$IMAGE:v1" "$IMAGE:v2" >/dev/null 2>&1 || true
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
  [ "$rc" = 0 ] || echo "bench: FAILED (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
( trap 'kill $sp 2>/dev/null; exit 0' TERM; sleep "$DEADLINE" & sp=$!; wait $sp
  echo "bench: time limit (${DEADLINE}s) reached, stopping" >&2; kill -TERM $$ ) 2>/dev/null &
WATCHDOG=$!
T_START=$(date +%s)

# Leftovers of an interrupted earlier run carry our project names: remove them first.
for p in "${PROJECTS[@]}"; do remove_project "$p"; done

log "machine"
echo "date: $(date -u +%FT%TZ)   cores: $(nproc)   load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "engine: $(docker version --format '{{.Server.Version}}')   compose: $(docker-compose version --short)   $(hyperfine --version)"

log "build (cargo build --release)"
timeout 480 cargo build --release -q
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
for _ in $(seq 100); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$REGISTRY/v2/" >/dev/null || { cat "$WORK/registry.log" >&2; die "registry did not start"; }

# A busybox rootfs whose start script sleeps and exits at once on SIGTERM (so stops are quick).
image() {
  local tag=$1 root
  root=$(mktemp -d "$WORK/rootfs.XXXX")
  mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/"
  ln -s busybox "$root/bin/sh"
  ln -s busybox "$root/bin/sleep"
  echo "$tag" > "$root/VERSION"
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile true; do sleep 3600 & wait $!; done\n' > "$root/bin/start"
  chmod +x "$root/bin/start"
  tar -C "$root" -c . | timeout 60 docker import --change 'CMD ["/bin/start"]' - "$IMAGE:$tag" >/dev/null
  timeout 60 docker push -q "$IMAGE:$tag" >/dev/null
  rm -rf "$root"
}
image v1
image v2
# Only the registry holds them now: the first apply pulls v1, the first tag change pulls v2.
docker image rm "$IMAGE:v1" "$IMAGE:v2" >/dev/null
echo "pushed $IMAGE:v1 and :v2 (busybox, $(du -h /bin/busybox | cut -f1))"

# --- stacks ------------------------------------------------------------------------------------
# N services, each with its own tag variable in .env (a release is one line), two env vars, a
# restart policy, no healthcheck and min_ready 0s (ready as soon as it runs). No top-level
# `name:`, which docker-compose 1.29 rejects.
gen_stack() {
  local dir=$1 n=$2 width=$3 i s
  mkdir -p "$dir"
  {
    echo "# generated by bench/run.sh"
    echo "services:"
    for i in $(seq -f "%0${width}g" 1 "$n"); do
      s=s$i
      cat <<YML
  $s:
    image: $IMAGE:\${${s^^}_TAG}
    environment:
      SERVICE: $s
      LOG_LEVEL: info
    restart: unless-stopped
    x-reconciler:
      min_ready: 0s
YML
    done
  } > "$dir/compose.yaml"
  for i in $(seq -f "%0${width}g" 1 "$n"); do echo "S${i}_TAG=v1"; done > "$dir/.env"
}
gen_stack "$R20/bench20" 20 2
gen_stack "$R200/bench200" 200 3
rc20() { "$BIN" --state-dir "$STATE" "$@" --repo "$R20"; }
rc200() { "$BIN" --state-dir "$STATE" "$@" --repo "$R200"; }
rc20 validate
rc200 validate

snapshot() { # id name service, for one project
  docker ps -a --no-trunc --filter "label=com.docker.compose.project=$1" \
    --format '{{.ID}} {{.Names}} {{.Label "com.docker.compose.service"}}' | sort -k2
}
set_tag() { sed -i "s/^${CHANGED^^}_TAG=.*/${CHANGED^^}_TAG=$1/" "$R20/bench20/.env"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# hyperfine's JSON: "mean ± sd (min … max)" in ms for result $2 of file $1
hf() { jq -r --argjson i "$2" '.results[$i] | "\(.mean*1000*10|round/10) ms ± \(.stddev*1000*10|round/10) (min \(.min*1000*10|round/10), max \(.max*1000*10|round/10))"' "$1"; }
hfmean() { jq -r --argjson i "$2" '.results[$i].mean' "$1"; }
peak_rss() { # max over 5 runs of "Maximum resident set size" (KiB) of the given command
  local max=0 kb
  for _ in 1 2 3 4 5; do
    kb=$( (/usr/bin/time -v "$@" >/dev/null) 2>&1 | awk '/Maximum resident/ { print $NF }')
    [ "${kb:-0}" -gt "$max" ] && max=$kb
  done
  echo "$max"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# strace log -> one line per engine request: "<seconds until the first response byte> METHOD PATH".
# Requests on one connection are sequential (HTTP/1.1, no pipelining), so the response to a request
# is the first successful read on that fd after it.
requests_of() {
  awk '
    function ts(line) { split(line, f, " "); return f[2] }
    /(sendto|write|writev)\([0-9]+, .*(GET|POST|PUT|DELETE|HEAD) \/[^ ]* HTTP\/1\.1/ {
      match($0, /(sendto|writev|write)\([0-9]+/); call = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", call)
      match($0, /(GET|POST|PUT|DELETE|HEAD) \/[^ ]* HTTP/); req = substr($0, RSTART, RLENGTH - 5)
      n++; t0[n] = ts($0); what[n] = req; open[call] = n; next
    }
    /(recvfrom|read)\([0-9]+, .*<unfinished/ {
      match($0, /(recvfrom|read)\([0-9]+/); fd = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", fd)
      split($0, f, " "); pend[f[1]] = fd; next
    }
    /<\.\.\. (recvfrom|read) resumed>/ {
      split($0, f, " "); fd = pend[f[1]]; delete pend[f[1]]
      if (fd != "" && (fd in open) && match($0, /\) = [1-9][0-9]*$/)) { d[open[fd]] = ts($0) - t0[open[fd]]; delete open[fd] }
      next
    }
    /(recvfrom|read)\([0-9]+, / {
      match($0, /(recvfrom|read)\([0-9]+/); fd = substr($0, RSTART, RLENGTH); sub(/.*\(/, "", fd)
      if ((fd in open) && match($0, /\) = [1-9][0-9]*$/)) { d[open[fd]] = ts($0) - t0[open[fd]]; delete open[fd] }
    }
    END { for (i = 1; i <= n; i++) printf "%.6f %s\n", d[i], what[i] }
  ' "$1"
}
# Which service a request is about: "-" for stack-wide calls (lists, networks, images).
# $2: a snapshot file (id name service) covering the containers before and after.
classify() {
  local req=$1 snap=$2 path target
  path=${req#* }
  case $path in
    /containers/json*|/images/*|/networks/*|/volumes/*|/info*|/version*|/_ping*) echo "-" ;;
    /containers/create\?name=*)
      target=${path#*name=}; target=${target%%&*}
      target=${target%-reconciler-new}; target=${target%-reconciler-old}
      awk -v n="$target" '$2 == n { print $3; exit }' "$snap" | grep . || echo "?$target" ;;
    /containers/*)
      target=${path#/containers/}; target=${target%%[/?]*}
      awk -v t="$target" '$1 == t || $2 == t { print $3; exit }' "$snap" | grep . || echo "?$target" ;;
    *) echo "-" ;;
  esac
}
# Trace one apply; sets TR_WALL, TR_ENGINE, TR_N, TR_SERVICES ("s10:11 ...") and prints requests.
traced_apply() {
  local out=$1 snap=$WORK/snap.$RANDOM t0 t1
  snapshot bench20 > "$snap"
  t0=$(now)
  timeout 120 strace -f -qq -ttt -s 400 -e trace=sendto,write,writev,recvfrom,read -o "$out" \
    "$BIN" --state-dir "$STATE" apply --repo "$R20" > "$out.stdout" 2>&1
  t1=$(now)
  snapshot bench20 >> "$snap"
  TR_WALL=$(elapsed "$t0" "$t1")
  requests_of "$out" > "$out.req"
  TR_N=$(wc -l < "$out.req")
  TR_ENGINE=$(awk '{ s += $1 } END { printf "%.3f", s }' "$out.req")
  : > "$out.svc"
  while read -r dur method path; do
    svc=$(classify "$method $path" "$snap")
    echo "$svc" >> "$out.svc"
    printf '    %7.1f ms  %-6s %-70.70s -> %s\n' "$(ms "$dur")" "$method" "$(echo "$path" | sed -E 's/([0-9a-f]{12})[0-9a-f]{52}/\1…/g')" "$svc"
  done < "$out.req"
  TR_SERVICES=$( (grep -v '^-$' "$out.svc" || true) | sort | uniq -c | awk '{ printf "%s%s:%s", sep, $2, $1; sep = " " }')
  TR_WIDE=$(grep -c '^-$' "$out.svc" || true)
}

declare -A R   # results for the summary

# create_and_time_diff REPO KEY LIMIT JSON: bring a generated stack up with `reconciler apply`
# (recording its time as R[KEY]), check it is then in sync, and time `diff` on it into JSON.
create_and_time_diff() {
  local repo=$1 key=$2 limit=$3 json=$4 t0 t1
  t0=$(now); timeout "$limit" "$BIN" --state-dir "$STATE" apply --repo "$repo" > "$WORK/$key.out" 2>&1; t1=$(now)
  tail -1 "$WORK/$key.out"
  R[$key]=$(elapsed "$t0" "$t1")
  echo "initial apply: ${R[$key]} s"
  "$BIN" --state-dir "$STATE" diff --repo "$repo" >/dev/null || die "diff reports drift right after apply ($repo)"
  log "diff on the in-sync stack"
  timeout 120 hyperfine -N --style basic --warmup 3 --runs 20 --export-json "$json" \
    "$BIN --state-dir $STATE diff --repo $repo"
}

# === Phase A: a 20-service stack created by the reconciler =====================================
log "A. bench20: 20 services created by reconciler apply (pulls v1), then diff on it in sync"
create_and_time_diff "$R20" apply20_create 180 "$WORK/hf_diff20m.json"
R[diff20_managed]=$(hf "$WORK/hf_diff20m.json" 0)
R[rss20_managed]=$(peak_rss "$BIN" --state-dir "$STATE" diff --repo "$R20")

log "A. in-sync apply, 20 services (load + observe + plan, nothing to do)"
timeout 120 hyperfine -N --style basic --warmup 2 --runs 20 --export-json "$WORK/hf_apply20.json" \
  "$BIN --state-dir $STATE apply --repo $R20"
R[apply20_insync]=$(hf "$WORK/hf_apply20.json" 0)
traced_apply "$WORK/st_insync"
R[insync_requests]="$TR_N requests (${TR_SERVICES:-no container-level request})"

log "A. one-tag change ($CHANGED v1 -> v2), first time: includes pulling v2"
set_tag v2
t0=$(now); timeout 120 "$BIN" --state-dir "$STATE" apply --repo "$R20" > "$WORK/cold.out" 2>&1; t1=$(now)
R[tag_cold]=$(elapsed "$t0" "$t1")
grep -E '^ *~|converged|failed' "$WORK/cold.out" || true
echo "apply with pull: ${R[tag_cold]} s"

log "A. one-tag change, image present: $TOGGLES applies alternating $CHANGED v1/v2 (untraced)"
walls=()
tag=v2
for _ in $(seq "$TOGGLES"); do
  if [ "$tag" = v2 ]; then tag=v1; else tag=v2; fi
  set_tag "$tag"
  t0=$(now); timeout 120 "$BIN" --state-dir "$STATE" apply --repo "$R20" > "$WORK/toggle.out" 2>&1; t1=$(now)
  grep -q 'converged: 1 service changed' "$WORK/toggle.out" || { cat "$WORK/toggle.out"; die "tag change did not converge"; }
  walls+=("$(elapsed "$t0" "$t1")")
done
echo "wall times (s): ${walls[*]}"
R[tag_warm]=$(printf '%s\n' "${walls[@]}" | awk '{ s += $1; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 } END { printf "%.1f ms (min %.1f, max %.1f, n=%d)", s/NR*1000, min*1000, max*1000, NR }')
R[tag_warm_mean]=$(printf '%s\n' "${walls[@]}" | awk '{ s += $1 } END { printf "%.4f", s/NR }')

log "A. the same change under strace: $TOGGLES traced applies (engine requests and their time)"
overheads=()
for k in $(seq "$TOGGLES"); do
  if [ "$tag" = v2 ]; then tag=v1; else tag=v2; fi
  set_tag "$tag"
  if [ "$k" = 1 ]; then
    echo "  requests of the first traced apply ($CHANGED -> $tag): first-byte latency, method, path -> service"
    traced_apply "$WORK/st_tag"
    FIRST_N=$TR_N; FIRST_SERVICES=$TR_SERVICES; FIRST_WIDE=$TR_WIDE
  else
    traced_apply "$WORK/st_tag" > /dev/null
  fi
  grep -q 'converged: 1 service changed' "$WORK/st_tag.stdout" || { cat "$WORK/st_tag.stdout"; die "traced tag change did not converge"; }
  echo "  traced apply $k: wall ${TR_WALL} s, engine ${TR_ENGINE} s, $TR_N requests, container-level: $TR_SERVICES"
  overheads+=("$TR_WALL $TR_ENGINE $TR_N $TR_SERVICES")
done
R[tag_requests]="$FIRST_N requests: $FIRST_WIDE stack-wide (lists, network, image), container-level only on $FIRST_SERVICES"
all_only_changed=yes
for o in "${overheads[@]}"; do
  read -ra fields <<< "$o"   # wall engine n service:count...
  for sv in "${fields[@]:3}"; do [ "${sv%%:*}" = "$CHANGED" ] || all_only_changed=no; done
done
R[tag_only_changed]=$all_only_changed
R[tag_engine]=$(printf '%s\n' "${overheads[@]}" | awk '{ s += $2 } END { printf "%.4f", s/NR }')
R[tag_overhead_traced]=$(printf '%s\n' "${overheads[@]}" | awk '{ d = $1 - $2; s += d; if (d > m) m = d } END { printf "%.1f ms (max %.1f)", s/NR*1000, m*1000 }')
R[tag_overhead_traced_max]=$(printf '%s\n' "${overheads[@]}" | awk '{ d = $1 - $2; if (d > m) m = d } END { printf "%.4f", m }')
R[tag_traced_wall]=$(printf '%s\n' "${overheads[@]}" | awk '{ s += $1 } END { printf "%.4f", s/NR }')
set_tag v1
timeout 120 "$BIN" --state-dir "$STATE" apply --repo "$R20" >/dev/null 2>&1
rc20 diff >/dev/null || die "bench20 is not back in sync"

# === Phase B: the same stack from docker-compose, side by side ==================================
log "B. docker-compose up -d on the stack the reconciler created (what does Compose do?)"
snapshot bench20 > "$WORK/ids_before"
t0=$(now)
timeout 180 docker-compose -p bench20 -f "$F20" up -d > "$WORK/compose_first.out" 2>&1
t1=$(now)
snapshot bench20 > "$WORK/ids_after"
recreated=$( (grep -o 'Recreating [^ ]*' "$WORK/compose_first.out" || true) | sort -u | wc -l)
uptodate=$( (grep -o '[^ ]* is up-to-date' "$WORK/compose_first.out" || true) | sort -u | wc -l)
R[compose_first]="recreated $recreated of 20 ($(elapsed "$t0" "$t1") s); up-to-date: $uptodate"
echo "docker-compose: ${R[compose_first]}; container ids replaced: $(comm -23 <(cut -d' ' -f1 "$WORK/ids_before" | sort) <(cut -d' ' -f1 "$WORK/ids_after" | sort) | wc -l)"
echo "(its config-hash label differs from the reconciler's: Compose hashes its own view of the service)"

log "B. reconciler apply adopts the Compose-created containers"
snapshot bench20 > "$WORK/ids_compose"
timeout 120 "$BIN" --state-dir "$STATE" apply --repo "$R20" > "$WORK/adopt.out" 2>&1
tail -1 "$WORK/adopt.out"
snapshot bench20 > "$WORK/ids_adopted"
if cmp -s "$WORK/ids_compose" "$WORK/ids_adopted"; then
  R[adopt]="adopted 20/20, none recreated"
else
  R[adopt]="recreated $(comm -23 <(cut -d' ' -f1 "$WORK/ids_compose" | sort) <(cut -d' ' -f1 "$WORK/ids_adopted" | sort) | wc -l) while adopting"
fi
echo "${R[adopt]}"
rc20 diff >/dev/null || die "diff reports drift on the adopted stack"
timeout 120 docker-compose -p bench20 -f "$F20" up -d > "$WORK/compose_second.out" 2>&1
grep -q Recreating "$WORK/compose_second.out" && die "docker-compose still recreates after adoption"
echo "docker-compose up -d now: $(grep -c 'up-to-date' "$WORK/compose_second.out") of 20 up-to-date"

log "B. side by side on the in-sync 20-service stack: reconciler diff vs docker-compose up -d"
snapshot bench20 > "$WORK/ids_pre_hf"
timeout 240 hyperfine -N --style basic --warmup 2 --runs 10 --export-json "$WORK/hf_side.json" \
  "$BIN --state-dir $STATE diff --repo $R20" \
  "docker-compose -p bench20 -f $F20 up -d"
snapshot bench20 > "$WORK/ids_post_hf"
cmp -s "$WORK/ids_pre_hf" "$WORK/ids_post_hf" || die "a container was replaced during the side-by-side measurement"
R[diff20_adopted]=$(hf "$WORK/hf_side.json" 0)
R[compose_up]=$(hf "$WORK/hf_side.json" 1)
R[speedup]=$(jq -r '(.results[1].mean / .results[0].mean * 10 | round / 10)' "$WORK/hf_side.json")
R[rss20_adopted]=$(peak_rss "$BIN" --state-dir "$STATE" diff --repo "$R20")

log "B. one-tag change on the adopted stack (traced once: which containers does it touch?)"
set_tag v2
traced_apply "$WORK/st_adopted"
echo "  wall ${TR_WALL} s, engine ${TR_ENGINE} s, $TR_N requests, container-level: $TR_SERVICES"
R[tag_adopted]="$TR_N requests, container-level: $TR_SERVICES"
remove_project bench20

# === Phase C: 200 services =====================================================================
log "C. bench200: 200 services created by reconciler apply, then diff on it in sync"
create_and_time_diff "$R200" apply200_create 300 "$WORK/hf_diff200.json"
R[diff200]=$(hf "$WORK/hf_diff200.json" 0)
R[diff200_mean]=$(hfmean "$WORK/hf_diff200.json" 0)
R[rss200]=$(peak_rss "$BIN" --state-dir "$STATE" diff --repo "$R200")
timeout 120 hyperfine -N --style basic --warmup 1 --runs 10 --export-json "$WORK/hf_apply200.json" \
  "$BIN --state-dir $STATE apply --repo $R200"
R[apply200_insync]=$(hf "$WORK/hf_apply200.json" 0)

# === Summary ===================================================================================
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo MISS; fi; }
V1=$(verdict "${R[speedup]} >= 10")
V2=$(verdict "${R[diff200_mean]} < 0.5")
V3a=$([ "${R[tag_only_changed]}" = yes ] && echo PASS || echo MISS)
V3b=$(verdict "${R[tag_overhead_traced_max]} < 0.3")
V4a=$(verdict "${R[rss20_adopted]} < 30720 && ${R[rss20_managed]} < 30720")
V4b=$(verdict "${R[rss200]} < 30720")
SUMMARY=$(cat <<TXT
| # | measurement | result | target | verdict |
|---|---|---|---|---|
| 1 | reconciler diff, 20 services in sync (adopted from Compose) | ${R[diff20_adopted]} | | |
| 1 | docker-compose up -d, same stack, same compose.yaml, in sync | ${R[compose_up]} | | |
| 1 | speed-up, measured side by side (hyperfine) | ${R[speedup]}x | >= 10x | $V1 |
| 1 | reconciler diff, 20 services in sync (created by the reconciler) | ${R[diff20_managed]} | info | |
| 1 | docker-compose up -d on the reconciler-created stack | ${R[compose_first]} | info | |
| 1 | reconciler apply on the Compose-created stack | ${R[adopt]} | info | |
| 2 | reconciler diff, 200 services in sync | ${R[diff200]} | < 500 ms | $V2 |
| 2 | reconciler apply, 200 services in sync | ${R[apply200_insync]} | info | |
| 2 | reconciler apply creating 200 services (pull + 200 create/start) | ${R[apply200_create]} s | info | |
| 3 | apply, one tag change in 20, image present (wall, untraced) | ${R[tag_warm]} | | |
| 3 | same apply under strace: wall / engine time (sum of request latencies), mean of $TOGGLES | $(ms "${R[tag_traced_wall]}") ms / $(ms "${R[tag_engine]}") ms | | |
| 3 | overhead beyond the engine: wall - engine, paired per traced run | ${R[tag_overhead_traced]} | < 300 ms | $V3b |
| 3 | apply in sync, 20 services (fixed cost: load + observe + plan) | ${R[apply20_insync]} | info | |
| 3 | engine requests of the one-tag-change apply | ${R[tag_requests]} | only $CHANGED | $V3a |
| 3 | engine requests of an in-sync apply | ${R[insync_requests]} | info | |
| 3 | apply, one tag change, first time (includes pulling v2) | ${R[tag_cold]} s | info | |
| 3 | one tag change on the Compose-adopted stack | ${R[tag_adopted]} | info | |
| 4 | peak RSS of diff, 20 services (reconciler-created / adopted) | $(mib "${R[rss20_managed]}") / $(mib "${R[rss20_adopted]}") MiB | < 30 MiB | $V4a |
| 4 | peak RSS of diff, 200 services | $(mib "${R[rss200]}") MiB | < 30 MiB | $V4b |
TXT
)
log "summary ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(( $(date +%s) - T_START )) s)"
echo "$SUMMARY"
[ -z "${BENCH_SUMMARY:-}" ] || echo "$SUMMARY" > "$BENCH_SUMMARY"
