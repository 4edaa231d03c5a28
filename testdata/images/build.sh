#!/usr/bin/env bash
# Build the images the end-to-end tests run, with no registry and no internet: each is a tiny
# rootfs around Debian's static busybox (package busybox-static), loaded with `docker import`.
#
#   reconciler-test/web:v1, web:v2   busybox httpd on port 80 serving /www/index.html ("v1"/"v2")
#                                     and /www/health; env IMAGE_DEFAULT=from-image; EXPOSE 80
#   reconciler-test/unhealthy:v1      a broken release: serves "broken" but has no /www/health, so
#                                     a healthcheck on /health never passes
#   reconciler-test/crasher:v1        logs "crasher starting", then "crasher: cannot open
#                                     database" and exits 1, about 2 s after starting
#   reconciler-test/worker:v1         logs a line every second until SIGTERM
#
# Idempotent: every image carries a label with the hash of what it is made from (this script,
# busybox, the files, the image config); an image whose label matches is left alone, so this is
# cheap to call from every test process. A lock serialises concurrent callers (nextest runs tests
# in parallel processes), so two of them never import the same tag at once.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
HASH_LABEL=reconciler-test.content-hash

die() { echo "testdata/images/build.sh: $*" >&2; exit 1; }

command -v docker >/dev/null || die "the docker CLI is missing (apt-get install docker.io)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing (apt-get install busybox-static)"
# The images hold no libc: a dynamically linked busybox (package busybox) would not start.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked; install busybox-static"
fi

exec 9>/tmp/reconciler-test-images.lock
flock -w 600 9 || die "timed out waiting for /tmp/reconciler-test-images.lock"

REBUILT=no
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The hash of everything an image is made from: this script (the layout), busybox, the files and
# the image config. Computed from the inputs, so an up-to-date image costs no rootfs build.
input_hash() {
  local start=$1 index=$2 health=$3
  shift 3
  {
    sha256sum <"$HERE/build.sh"
    sha256sum <"$BUSYBOX"
    cat "$HERE"/rootfs/etc/passwd "$HERE"/rootfs/etc/group "$start" | sha256sum
    printf '%s\n' "$index" "$health" "$@"
  } | sha256sum | cut -c1-32
}

# build REF START_SCRIPT INDEX_HTML|- HEALTH(yes|no) [extra --change values...]
build() {
  local ref=$1 start=$2 index=$3 health=$4
  shift 4
  local changes=(
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    # Env that the image sets: the reconciler must not report it as drift.
    'ENV IMAGE_DEFAULT=from-image'
    'CMD ["/bin/start"]'
    "$@"
  )
  local hash current old_id
  hash=$(input_hash "$start" "$index" "$health" "${changes[@]}")
  current=$(docker image inspect --format "{{index .Config.Labels \"$HASH_LABEL\"}}" "$ref" 2>/dev/null || true)
  if [ "$current" = "$hash" ]; then
    echo "images: $ref is up to date"
    return
  fi
  old_id=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)

  local root="$WORK/root"
  rm -rf "$root"
  mkdir -p "$root"/{bin,etc,www,data,root,tmp}
  # Explicit modes: mktemp's 0700 would otherwise become the image's / and lock out services
  # that run as a non-root `user:`.
  chmod 755 "$root" "$root"/{bin,etc,www,data}
  chmod 700 "$root/root"
  chmod 1777 "$root/tmp"
  cp "$BUSYBOX" "$root/bin/busybox"
  local applet
  for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  install -m 644 "$HERE"/rootfs/etc/passwd "$HERE"/rootfs/etc/group "$root/etc/"
  install -m 755 "$start" "$root/bin/start"
  if [ "$index" != - ]; then
    printf '%s\n' "$index" >"$root/www/index.html"
  fi
  if [ "$health" = yes ]; then
    echo ok >"$root/www/health"
  fi

  local args=() change
  for change in "${changes[@]}" "LABEL $HASH_LABEL=$hash"; do
    args+=(--change "$change")
  done
  tar -C "$root" --owner=0 --group=0 --numeric-owner -c . | docker import "${args[@]}" - "$ref" >/dev/null
  echo "images: built $ref ($hash)"
  REBUILT=yes

  # The previous build is now untagged; drop it unless something still uses it.
  if [ -n "$old_id" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
}

build reconciler-test/web:v1 "$HERE/web/start" v1 yes 'EXPOSE 80'
build reconciler-test/web:v2 "$HERE/web/start" v2 yes 'EXPOSE 80'
build reconciler-test/unhealthy:v1 "$HERE/web/start" broken no 'EXPOSE 80'
build reconciler-test/crasher:v1 "$HERE/crasher/start" - no
build reconciler-test/worker:v1 "$HERE/worker/start" - no

# Earlier builds that lost their tag while still referenced elsewhere (a registry tag, a
# container) could not be removed then; drop those that are now unused. Only when this call
# rebuilt something, so never while tests run: an image a test commits from ours carries our
# label and is dangling between its commit and its tag (a sweep then made `docker commit` fail
# with "No such image"). Only parentless images, which is what `docker import` makes.
if [ "$REBUILT" = yes ]; then
  docker image ls -q --no-trunc --filter dangling=true --filter "label=$HASH_LABEL" |
    while read -r id; do
      [ -z "$(docker image inspect --format '{{.Parent}}' "$id" 2>/dev/null)" ] || continue
      docker image rm "$id" >/dev/null 2>&1 || true
    done
fi
