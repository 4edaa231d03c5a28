#!/usr/bin/env bash
# Run the reconciler on the shipped desired-state/ example, on a machine with no registry access:
# build the example's images from Debian's static busybox, serve them from a local registry on
# 127.0.0.1:5055 (Debian's docker-registry), then `reconciler apply`. Rerun it: the second apply
# changes nothing. Edit desired-state/shop/.env (WEB_TAG=v2) and rerun to see an update.
set -euo pipefail
cd "$(dirname "$0")/.."
REGISTRY=127.0.0.1:5055
WORK=${DEMO_DIR:-/tmp/reconciler-demo}
export RECONCILER_STATE_DIR=${RECONCILER_STATE_DIR:-$WORK/state}

need() { command -v "$1" >/dev/null || { echo "demo: $1 is missing (apt-get install $2)" >&2; exit 2; }; }
need docker docker.io
need docker-registry docker-registry
[ -x /bin/busybox ] || { echo "demo: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 2; }

mkdir -p "$WORK"
if ! curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  cat > "$WORK/registry.yml" <<YML
version: 0.1
storage: { filesystem: { rootdirectory: $WORK/registry }, delete: { enabled: true } }
http: { addr: $REGISTRY }
log: { level: error }
YML
  nohup docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
  for _ in $(seq 50); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
fi

# image NAME TAG SCRIPT: a busybox rootfs whose /bin/start is SCRIPT, pushed to the registry.
image() {
  local name=$1 tag=$2 script=$3 root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/www" "$root/data"
  cp /bin/busybox "$root/bin/"
  for a in sh httpd wget sleep echo cat date test touch; do ln -s busybox "$root/bin/$a"; done
  printf '%s\n' "$name $tag" > "$root/www/index.html"
  echo ok > "$root/www/health"
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\n%s\n' "$script" > "$root/bin/start"
  chmod +x "$root/bin/start"
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/start"]' - "$REGISTRY/demo/$name:$tag" >/dev/null
  docker push -q "$REGISTRY/demo/$name:$tag" >/dev/null
  rm -rf "$root"
}
echo "demo: building images into $REGISTRY"
image web v1 'httpd -f -p 80 -h /www & wait $!'
image web v2 'httpd -f -p 80 -h /www & wait $!'
image worker v1 'while true; do echo "worker: polling $QUEUE"; sleep 2 & wait $!; done'
image db v1 'touch /data/ready; while true; do date >> /data/log; sleep 5 & wait $!; done'
# Remove the local copies so apply really pulls them from the registry.
docker image rm -f "$REGISTRY/demo/web:v1" "$REGISTRY/demo/web:v2" "$REGISTRY/demo/worker:v1" "$REGISTRY/demo/db:v1" >/dev/null 2>&1 || true

cargo build --release -q
./target/release/reconciler validate --repo desired-state
./target/release/reconciler diff --repo desired-state || true
./target/release/reconciler apply --repo desired-state
echo "demo: shop is up: curl http://127.0.0.1:8080/ ; docker-compose -p shop ps ; ./target/release/reconciler status"
