#!/usr/bin/env bash
# Build the images the walkthrough deploys and serve them from a local registry on
# 127.0.0.1:5055, with no internet: each is a busybox rootfs (Debian's busybox-static) loaded
# with `docker import`, the same way scripts/demo.sh makes them. Unlike demo.sh it applies
# nothing, and it adds one broken release:
#
#   127.0.0.1:5055/demo/web:v1, web:v2   busybox httpd on :80, / says "web v1" / "web v2",
#                                        /health says ok
#   127.0.0.1:5055/demo/web:v3           a broken release: serves / but has no /health, so the
#                                        stack's healthcheck never passes
#   127.0.0.1:5055/demo/worker:v1, db:v1 as in desired-state/shop
#
# and the images of examples/runbook.md (a web service with a database and its migrations):
#
#   127.0.0.1:5055/demo/notes-db:v1      a tiny "database": busybox httpd on :80 whose CGI
#                                        /cgi-bin/q keeps a schema version and rows in
#                                        /var/lib/notes (the volume); ?migrate=N sets the schema
#   127.0.0.1:5055/demo/notes-web:v1..v3 busybox httpd on :80, / shows the database's content,
#                                        /health says ok; /bin/migrate is the release's migration:
#                                        none (v1), schema 2 (v2), and v3's, which writes half
#                                        of schema 3 and then fails
#
# If nothing answers on 127.0.0.1:5055, a registry (Debian's docker-registry) is started with
# its data under $WALKTHROUGH_DIR/registry and its pid written to $WALKTHROUGH_DIR/registry.pid
# (kill it when you are done). A registry that already runs there (scripts/demo.sh's) is used
# as it is. Tags the registry already has are left alone, so a rerun is quick.
# The scripts in single quotes are the images' own, expanded by their shell, not this one.
# shellcheck disable=SC2016
set -euo pipefail
REGISTRY=${WALKTHROUGH_REGISTRY:-127.0.0.1:5055}  # the example's compose.yaml expects 5055
WORK=${WALKTHROUGH_DIR:-/tmp/reconciler-walkthrough}

need() { command -v "$1" >/dev/null || { echo "build-images: $1 is missing (apt-get install $2)" >&2; exit 2; }; }
need docker docker.io
need docker-registry docker-registry
need curl curl
[ -x /bin/busybox ] || { echo "build-images: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 2; }

mkdir -p "$WORK"
if curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
  echo "build-images: using the registry already on $REGISTRY"
else
  cat > "$WORK/registry.yml" <<YML
version: 0.1
storage: { filesystem: { rootdirectory: $WORK/registry }, delete: { enabled: true } }
http: { addr: $REGISTRY }
log: { level: error }
YML
  nohup docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
  echo $! > "$WORK/registry.pid"
  for _ in $(seq 50); do curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://$REGISTRY/v2/" >/dev/null || { echo "build-images: the registry did not start, see $WORK/registry.log" >&2; exit 1; }
  echo "build-images: started a registry on $REGISTRY (pid $(cat "$WORK/registry.pid"))"
fi

# image NAME TAG SCRIPT [SETUP]: a busybox rootfs whose /bin/start is SCRIPT, pushed to the
# registry; SETUP, a function, is called with the rootfs folder to add files.
image() {
  local name=$1 tag=$2 script=$3 setup=${4:-} root ref=$REGISTRY/demo/$1:$2
  if curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$REGISTRY/v2/demo/$name/manifests/$tag" 2>/dev/null; then
    echo "build-images: $ref is in the registry"
    return
  fi
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/www" "$root/data"
  chmod 755 "$root"
  cp /bin/busybox "$root/bin/"
  for a in sh httpd wget sleep echo cat date test touch rm mkdir printf; do ln -s busybox "$root/bin/$a"; done
  printf '%s\n' "$name $tag" > "$root/www/index.html"
  echo ok > "$root/www/health"
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\n%s\n' "$script" > "$root/bin/start"
  chmod +x "$root/bin/start"
  [ -z "$setup" ] || "$setup" "$root" "$tag"
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/start"]' - "$ref" >/dev/null
  docker push -q "$ref" >/dev/null
  # Drop the local copy, so the reconciler really pulls it from the registry.
  docker image rm "$ref" >/dev/null 2>&1 || true
  rm -rf "$root"
  echo "build-images: pushed $ref"
}
image web v1 'httpd -f -p 80 -h /www & wait $!'
image web v2 'httpd -f -p 80 -h /www & wait $!'
image web v3 'rm -f /www/health; httpd -f -p 80 -h /www & wait $!'
image worker v1 'while true; do echo "worker: polling $QUEUE"; sleep 2 & wait $!; done'
image db v1 'touch /data/ready; while true; do date >> /data/log; sleep 5 & wait $!; done'

# --- examples/runbook.md ------------------------------------------------------------------
# put_file ROOT PATH TEXT: an executable file in the image.
put_file() { mkdir -p "$(dirname "$1/$2")"; printf '%s\n' "$3" > "$1/$2"; chmod 755 "$1/$2"; }
notes_db() {
  put_file "$1" www/cgi-bin/q '#!/bin/sh
D=/var/lib/notes
printf "Content-Type: text/plain\r\n\r\n"
case "$QUERY_STRING" in
  migrate=*) echo "${QUERY_STRING#migrate=}" > $D/schema; echo "schema now ${QUERY_STRING#migrate=}" ;;
  *) echo "schema $(cat $D/schema)"; cat $D/rows ;;
esac'
}
notes_web() {
  put_file "$1" www/cgi-bin/index '#!/bin/sh
printf "Content-Type: text/plain\r\n\r\n"
echo "notes web '"$2"'"
wget -qO- http://db/cgi-bin/q'
  case $2 in
    v1) put_file "$1" bin/migrate '#!/bin/sh
echo "v1 has no migration"' ;;
    v2) put_file "$1" bin/migrate '#!/bin/sh
wget -qO- "http://db/cgi-bin/q?migrate=2" || exit 1' ;;
    v3) put_file "$1" bin/migrate '#!/bin/sh
echo "migration 3: adding column email"
wget -qO- "http://db/cgi-bin/q?migrate=3-half-applied" || exit 1
echo "migration 3: ERROR: column email already exists" >&2
exit 1' ;;
  esac
}
image notes-db v1 'D=/var/lib/notes; mkdir -p $D; [ -f $D/schema ] || { echo 1 > $D/schema; printf "alice: buy milk\nbob: call home\n" > $D/rows; }; httpd -f -p 80 -h /www & wait $!' notes_db
for v in v1 v2 v3; do
  image notes-web $v 'httpd -f -p 80 -h /www & wait $!' notes_web
done
