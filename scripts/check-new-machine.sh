#!/usr/bin/env bash
# Check README's set-up on a clean Debian 12: a minimal root file system (debootstrap, with only
# git and bash added) in a chroot, and the repository's committed HEAD cloned into it. There:
#
#   1. `bash scripts/demo.sh` with no Rust at all. Where rustup can be reached it installs Rust
#      and the demo goes on; where it cannot (a machine without internet), it must stop with exit
#      1 and a message naming the Rust version to install.
#   2. In the second case, this host's rustup toolchains are lent read-only (as if the user had
#      installed Rust) and `bash scripts/demo.sh` must then bring the shop stack up.
#   3. Every hint the demo prints is run as printed, a release of web:v2 is applied, and
#      `bash scripts/demo.sh down` must leave no container, network or volume of `shop`.
#   4. `bash scripts/setup.sh --tests`, the set-up `.ci/run` does before the tests, must install
#      what they need (the tests themselves run in CI, on a fresh clone).
#
# The chroot shares this host's kernel, so it uses this host's Docker Engine through its socket
# (dockerd cannot run twice on one host); Debian packages come from deb.debian.org and crates
# from crates.io, so those must be reachable. It runs as root, takes ~15 min (the release build),
# and removes the chroot at the end (KEEP=1 keeps it). Refuses to start while anything of the
# Compose project `shop` exists or something serves 127.0.0.1:8080 or :5055.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${CHECK_DIR:-/var/tmp/reconciler-new-machine}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '\n== check: %s\n' "$*" >&2; }
die() {
  echo "check: FAILED: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run it as root (debootstrap, chroot and mounts need it)"
[ -z "$(docker ps -aq --filter label=com.docker.compose.project=shop)" ] ||
  die "containers of the project shop exist (bash scripts/demo.sh down removes the demo's)"
for port in 8080 5055; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "something serves 127.0.0.1:$port"
done
command -v debootstrap >/dev/null || {
  say "installing debootstrap"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
}

mounts=(dev proc sys run/docker.sock root/.rustup root/.cargo/bin)
unmount_all() {
  for m in "${mounts[@]}"; do
    umount -l "$ROOT/$m" 2>/dev/null || true
  done
}
cleanup() {
  unmount_all
  if [ "${KEEP:-0}" != 1 ]; then
    # Never across a mount that is left: --one-file-system.
    rm -rf --one-file-system "$ROOT"
  fi
}
trap cleanup EXIT
unmount_all
rm -rf --one-file-system "$ROOT"

say "a minimal Debian 12 with git (debootstrap from $MIRROR: a few minutes)"
debootstrap --variant=minbase --include=git,ca-certificates "$SUITE" "$ROOT" "$MIRROR" >/dev/null
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# This host's extra CAs, for a network that reaches the internet through a TLS proxy.
if cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null; then
  chroot "$ROOT" update-ca-certificates >/dev/null
fi
# No init in a chroot: packages must not start services (a second dockerd would take the socket).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
touch "$ROOT/run/docker.sock"
mount --bind /var/run/docker.sock "$ROOT/run/docker.sock"
git clone -q "$PWD" "$ROOT/root/reconciler"
echo "cloned $(git rev-parse --short HEAD) (committed work only)" >&2

# in_chroot CMD: run CMD in the clone, in a login-like environment with nothing of this host's.
in_chroot() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/reconciler && $1"
}

say "1. bash scripts/demo.sh with no Rust"
set +e
log=$(mktemp)
in_chroot "bash scripts/demo.sh" 2>&1 | tee "$log"
code=${PIPESTATUS[0]}
set -e
if [ "$code" -ne 0 ]; then
  grep 'Rust 1.85 or newer' "$log" >/dev/null ||
    die "the demo failed without naming the Rust version it needs"
  say "2. rustup could not be reached and the demo said which Rust to install; lending this host's toolchains"
  if [ ! -d "$HOME/.rustup" ] || [ ! -d "$HOME/.cargo/bin" ]; then
    die "this host has no rustup toolchains to lend"
  fi
  mkdir -p "$ROOT/root/.rustup" "$ROOT/root/.cargo/bin"
  mount --bind "$HOME/.rustup" "$ROOT/root/.rustup"
  mount -o remount,bind,ro "$ROOT/root/.rustup"
  mount --bind "$HOME/.cargo/bin" "$ROOT/root/.cargo/bin"
  mount -o remount,bind,ro "$ROOT/root/.cargo/bin"
  in_chroot "bash scripts/demo.sh" || die "the demo failed with Rust installed"
fi

say "3. the demo's hints, as printed"
# shellcheck disable=SC2016 # expanded by the chroot's shell
in_chroot '
set -euo pipefail
state=/tmp/reconciler-demo/state
curl -fsS http://127.0.0.1:8080/ | grep "web v1"
./target/release/reconciler --state-dir $state status | grep -E "^shop +web .* Synced"
./target/release/reconciler --state-dir $state history | grep "shop/web"
docker-compose -p shop -f desired-state/shop/compose.yaml ps | grep "shop-web-1"
sed -i s/WEB_TAG=v1/WEB_TAG=v2/ desired-state/shop/.env
code=0; ./target/release/reconciler --state-dir $state diff --repo desired-state || code=$?
[ $code -eq 1 ]
./target/release/reconciler --state-dir $state apply --repo desired-state
curl -fsS http://127.0.0.1:8080/ | grep "web v2"
git checkout -q desired-state/shop/.env
bash scripts/demo.sh down
' || die "a hint did not work as printed (see above)"

say "4. bash scripts/setup.sh --tests (what .ci/run installs before the tests)"
in_chroot 'bash scripts/setup.sh --tests && [ -x /usr/sbin/sshd ] && command -v python3 && cargo nextest --version' ||
  die "setup.sh --tests did not install what the tests need"

left=$(
  docker ps -aq --filter label=com.docker.compose.project=shop
  docker network ls -q --filter label=com.docker.compose.project=shop
  docker volume ls -q --filter label=com.docker.compose.project=shop
)
[ -z "$left" ] || die "demo.sh down left these behind: $left"
say "PASSED: a clean Debian 12 with git ran the demo, its hints and its clean-up"
