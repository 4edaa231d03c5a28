#!/usr/bin/env bash
# How long a volume backup before an update and a `reconciler restore` take, and how much memory
# the reconciler holds meanwhile (it streams: engine tar -> gzip -> file).
#
#   bash bench/backup.sh            # 512 MiB volume: 256 MiB random, 256 MiB zeros
#   BENCH_MIB=1024 bash bench/backup.sh
#
# Needs docker, busybox-static and target/release/reconciler (built when missing). Makes a local
# image (`docker import` of busybox, no registry), the Compose project `bkbench` and a temp dir;
# removes all of them at the end, on failure and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${BENCH_MIB:-256}
BIN=$PWD/target/release/reconciler
[ -x "$BIN" ] || cargo build --release -q
[ -x /bin/busybox ] || { echo "bench/backup: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 2; }
[ -z "$(docker ps -aq --filter label=com.docker.compose.project=bkbench)" ] ||
  { echo "bench/backup: project bkbench exists; remove it first" >&2; exit 2; }
W=$(mktemp -d)
cleanup() {
  docker ps -aq --filter label=com.docker.compose.project=bkbench | xargs -r docker rm -f >/dev/null
  docker volume rm bkbench_data >/dev/null 2>&1 || true
  docker network rm bkbench_default >/dev/null 2>&1 || true
  docker image rm bkbench/vol:v1 bkbench/vol:v2 >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/root/bin" "$W/repo/bkbench"
cp /bin/busybox "$W/root/bin/"
for a in sh sleep dd; do ln -s busybox "$W/root/bin/$a"; done
tar -C "$W/root" -c . | docker import --change 'CMD ["/bin/sh","-c","trap \"exit 0\" TERM; sleep 1000000 & wait $!"]' - bkbench/vol:v1 >/dev/null
docker tag bkbench/vol:v1 bkbench/vol:v2
cat > "$W/repo/bkbench/compose.yaml" <<'YML'
services:
  db:
    image: bkbench/vol:${TAG}
    volumes: ["data:/data"]
    x-reconciler: {backup: [data], min_ready: 1s}
volumes:
  data: {}
YML
echo TAG=v1 > "$W/repo/bkbench/.env"
rc() { "$BIN" --state-dir "$W/state" "$@"; }
rc apply --repo "$W/repo" >/dev/null 2>&1
docker exec bkbench-db-1 sh -c "dd if=/dev/urandom of=/data/random bs=1M count=$MIB 2>/dev/null; dd if=/dev/zero of=/data/zeros bs=1M count=$MIB 2>/dev/null"
echo TAG=v2 > "$W/repo/bkbench/.env"
echo "bench/backup: volume of $((2 * MIB)) MiB ($MIB MiB random, $MIB MiB zeros), $(date -u +%F)"
/usr/bin/time -f "  apply with the backup: %e s wall, max RSS %M KiB" "$BIN" --state-dir "$W/state" \
  apply --repo "$W/repo" 2>&1 | grep -E "apply with|backed up" | sed 's|/tmp/[^ ]*|<file>|'
for f in "$W"/state/backups/bkbench/data/*.tar.gz; do echo "  backup file: $(($(stat -c %s "$f") / 1048576)) MiB"; done
/usr/bin/time -f "  restore: %e s wall, max RSS %M KiB" "$BIN" --state-dir "$W/state" \
  restore bkbench data 2>&1 | grep -E "^  restore"
