#!/usr/bin/env bash
# Check README's set-up on a clean Debian 12: a minimal root file system (debootstrap, with only
# git and bash added) in a chroot, and the repository's committed HEAD cloned into it. There:
#
#   1. `bash scripts/demo.sh` with no Rust at all. Where rustup can be reached it installs Rust
#      and the demo goes on; where it cannot (a machine without internet), it must stop with exit
#      1 and a message naming the Rust version to install.
#   2. In the second case, this host's rustup toolchains are lent read-only, with rustup's proxies
#      copied into the chroot's ~/.cargo/bin (as if the user had installed Rust), and
#      `bash scripts/demo.sh` must then bring the shop stack up.
#   3. The hints the demo printed are taken from its output and run as printed: the "Try:"
#      lines, then the release of web v2 (its diff must exit 1, its apply 0, and the web then
#      says v2), then the clean-up line, `bash scripts/demo.sh down`, which must leave no
#      container, network or volume of `shop`.
#   4. `bash scripts/setup.sh --tests`, the set-up `.ci/run` does before the tests, must install
#      what they need, cargo-nextest from crates.io among them (about 6 minutes); the tests
#      themselves run in CI, on a fresh clone.
#
# The chroot shares this host's kernel, so it uses this host's Docker Engine through its socket
# (dockerd cannot run twice on one host); Debian packages come from deb.debian.org and crates
# from crates.io, so those must be reachable. It runs as root in a mount namespace of its own
# (no mount it makes is seen by, or can take anything from, the host), in a new folder under
# /var/tmp, and takes 20 to 30 min (the release build, cargo-nextest). At the end, also after a failure or
# Ctrl-C, it takes the demo down, stops what the chroot still runs and removes the folder
# (KEEP=1 keeps the folder). Refuses to start while anything of the Compose project `shop`
# exists or something serves 127.0.0.1:8080 or :5055.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== check: %s\n' "$*" >&2; }
die() {
  echo "check: FAILED: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run it as root (debootstrap, chroot and mounts need it)"
# Every mount below is private to this run: re-run in a mount namespace of its own.
if [ -z "${CHECK_NEW_MACHINE_NS:-}" ]; then
  exec unshare --mount --propagation private env CHECK_NEW_MACHINE_NS=1 bash "$0" "$@"
fi
shop=(--filter label=com.docker.compose.project=shop)
[ -z "$(docker ps -aq "${shop[@]}")$(docker network ls -q "${shop[@]}")$(docker volume ls -q "${shop[@]}")" ] ||
  die "containers, networks or volumes of the project shop exist (bash scripts/demo.sh down removes the demo's)"
for port in 8080 5055; do
  ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "something serves 127.0.0.1:$port"
done
command -v debootstrap >/dev/null || {
  say "installing debootstrap"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
}

ROOT=$(mktemp -d /var/tmp/reconciler-new-machine.XXXXXX)
chmod 755 "$ROOT"
LOGS=$(mktemp -d)

# in_chroot CMD: run CMD in the clone, in a login-like environment with nothing of this host's.
in_chroot() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/reconciler && $1"
}
cleanup() {
  set +e
  if [ -d "$ROOT/tmp/reconciler-demo" ]; then
    in_chroot "bash scripts/demo.sh down" >/dev/null 2>&1
  fi
  # Whatever the chroot still runs (a registry the demo started, say).
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOT" ] && kill "${proc#/proc/}" 2>/dev/null
  done
  # Mounts go with the namespace; these are for KEEP=1 and for rm's sake.
  for m in root/.rustup run/docker.sock dev sys proc; do
    umount -l "$ROOT/$m" 2>/dev/null
  done
  if [ "${KEEP:-0}" != 1 ]; then
    # Never across a mount that is left: --one-file-system.
    rm -rf --one-file-system "$ROOT"
  else
    echo "check: kept $ROOT" >&2
  fi
  rm -rf "$LOGS"
}
trap cleanup EXIT

say "a minimal Debian 12 with git in $ROOT (debootstrap from ${DEBIAN_MIRROR:-deb.debian.org}: a few minutes)"
debootstrap --variant=minbase --include=git,ca-certificates bookworm "$ROOT" \
  "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
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

say "1. bash scripts/demo.sh with no Rust"
log=$LOGS/demo-1.log
code=0
in_chroot "bash scripts/demo.sh" 2>&1 | tee "$log" || code=$?
if [ "$code" -ne 0 ]; then
  grep 'rustup could not be reached' "$log" >/dev/null ||
    die "the demo failed (exit $code), and not for want of rustup (see above)"
  grep 'needs Rust 1.85 or newer' "$log" >/dev/null ||
    die "the demo stopped for want of rustup without naming the Rust version it needs"
  say "2. rustup could not be reached and the demo said which Rust to install; lending this host's toolchains"
  if [ ! -d "$HOME/.rustup" ] || [ ! -d "$HOME/.cargo/bin" ]; then
    die "this host has no rustup toolchains to lend"
  fi
  # The toolchains read-only; rustup's own bin folder copied, so `cargo install` (cargo-nextest
  # in step 4) writes into the chroot's, as on a machine where the user installed Rust.
  mkdir -p "$ROOT/root/.rustup" "$ROOT/root/.cargo/bin"
  mount --bind "$HOME/.rustup" "$ROOT/root/.rustup"
  mount -o remount,bind,ro "$ROOT/root/.rustup"
  cp -a "$HOME/.cargo/bin/rustup" "$ROOT/root/.cargo/bin/"
  for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    ln -s rustup "$ROOT/root/.cargo/bin/$tool"
  done
  log=$LOGS/demo-2.log
  in_chroot "bash scripts/demo.sh" 2>&1 | tee "$log" || die "the demo failed with Rust installed"
fi

say "3. the demo's hints, taken from its output and run as printed"
# The indented lines under "Try:", then those under "Release web v2: ...", then "When you are done: CMD".
mapfile -t try < <(sed -n '/^demo: the shop stack is up. Try:$/,/^Release /{/^  /s/^  //p}' "$log")
mapfile -t release < <(sed -n '/^Release /,/^When you are done/{/^  /s/^  //p}' "$log")
done_cmd=$(sed -n 's/^When you are done: //p' "$log")
if [ "${#try[@]}" -lt 4 ] || [ "${#release[@]}" -ne 2 ] || [ -z "$done_cmd" ]; then
  die "the demo's closing hints are not where this check expects them (see its output above)"
fi
for hint in "${try[@]}"; do
  echo "+ $hint" >&2
  in_chroot "$hint" || die "a hint failed as printed: $hint"
done
in_chroot "grep -q '^WEB_TAG=v1$' desired-state/shop/.env && sed -i 's/^WEB_TAG=v1$/WEB_TAG=v2/' desired-state/shop/.env"
echo "+ ${release[0]}   (must exit 1: drift)" >&2
code=0
in_chroot "${release[0]}" || code=$?
[ "$code" -eq 1 ] || die "the diff of the release exited $code, not 1: ${release[0]}"
echo "+ ${release[1]}" >&2
in_chroot "${release[1]}" || die "the release's apply failed as printed: ${release[1]}"
in_chroot "curl -fsS http://127.0.0.1:8080/" | grep 'web v2' >/dev/null || die "web does not say v2 after the release"
in_chroot "git checkout -q desired-state/shop/.env"
echo "+ $done_cmd" >&2
in_chroot "$done_cmd" || die "the clean-up failed as printed: $done_cmd"
left="$(docker ps -aq "${shop[@]}") $(docker network ls -q "${shop[@]}") $(docker volume ls -q "${shop[@]}")"
[ -z "${left// /}" ] || die "$done_cmd left these behind: $left"

say "4. bash scripts/setup.sh --tests (what .ci/run installs before the tests)"
in_chroot 'bash scripts/setup.sh --tests && [ -x /usr/sbin/sshd ] && command -v python3 && cargo nextest --version' ||
  die "setup.sh --tests did not install what the tests need"

say "PASSED: a clean Debian 12 with git ran the demo, its hints as printed, its clean-up, and the tests' set-up"
