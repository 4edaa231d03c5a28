#!/usr/bin/env bash
# Install what the reconciler needs on Debian 12, and start the Docker Engine if it is not running.
#
#   bash scripts/setup.sh           what the demo needs: Docker Engine (running), docker-compose,
#                                   docker-registry, busybox-static, curl, git, a C compiler, and
#                                   Rust >= 1.85 (through rustup when none or an older one is found)
#   bash scripts/setup.sh --tests   also what the tests need: openssh-server, python3, rustfmt,
#                                   clippy and cargo-nextest
#
# Run it as root, or as a user with sudo. It changes only what is missing, says what it does
# before each step that takes a while, and stops with a message naming what to do when it cannot.
# scripts/demo.sh and .ci/run call it; running it twice is harmless.
set -euo pipefail
cd "$(dirname "$0")/.."

RUST_MIN=1.85 # Cargo.toml's rust-version
TESTS=no
case "${1:-}" in
  "") ;;
  --tests) TESTS=yes ;;
  *)
    echo "usage: bash scripts/setup.sh [--tests]" >&2
    exit 2
    ;;
esac

say() { echo "setup: $*" >&2; }
die() {
  echo "setup: ERROR: $*" >&2
  exit 1
}

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  die "run this as root (it installs Debian packages and may start dockerd); sudo is not installed"
fi

# --- Debian packages ---------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep 'ok installed' >/dev/null; }
want=()
want_pkg() { installed "$1" || want+=("$1"); }

engine_up() { "${SUDO[@]}" docker info >/dev/null 2>&1; }
# The engine and its CLI: Debian's docker.io, unless both are here (or the CLI reaches an engine).
if ! command -v docker >/dev/null || { ! engine_up && ! command -v dockerd >/dev/null; }; then
  want_pkg docker.io
fi
want_pkg docker-compose
want_pkg docker-registry
# The package busybox also ships /bin/busybox, but dynamically linked: useless in an image with
# no libc. The example's images need busybox-static.
want_pkg busybox-static
want_pkg curl
want_pkg ca-certificates
want_pkg git
# The build compiles libgit2, libssh2 and OpenSSL from source (no -dev packages needed).
want_pkg gcc
want_pkg libc6-dev
want_pkg make
want_pkg perl
want_pkg pkg-config
if [ "$TESTS" = yes ]; then
  # The loop's tests serve git remotes themselves: git daemon, git http-backend behind python3,
  # and sshd, started on a loopback port (never the system one).
  want_pkg openssh-server
  want_pkg python3
fi

if [ "${#want[@]}" -gt 0 ]; then
  say "installing Debian packages: ${want[*]} (apt-get; a minute or two)"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}"
else
  say "Debian packages: all there"
fi
if ldd /bin/busybox >/dev/null 2>&1; then
  die "/bin/busybox is dynamically linked; the example's images need busybox-static (apt-get install busybox-static)"
fi

# --- Docker Engine -----------------------------------------------------------------------------
wait_for_engine() {
  for _ in $(seq "$1"); do
    engine_up && return 0
    sleep 1
  done
  return 1
}
if engine_up; then
  say "Docker Engine: running ($("${SUDO[@]}" docker version --format '{{.Server.Version}}'))"
else
  say "the Docker Engine is not running; starting it (up to a minute)"
  # The init script where there is one (systemd or not), else dockerd itself.
  if "${SUDO[@]}" service docker start >&2 && wait_for_engine 30; then
    :
  else
    say "service docker start did not bring it up; starting dockerd directly (log: /var/log/reconciler-setup-dockerd.log)"
    "${SUDO[@]}" sh -c 'nohup dockerd >/var/log/reconciler-setup-dockerd.log 2>&1 &'
    if ! wait_for_engine 60; then
      "${SUDO[@]}" tail -n 20 /var/log/docker.log /var/log/reconciler-setup-dockerd.log >&2 || true
      die "the Docker Engine did not come up within 60 s (its log is above)"
    fi
  fi
  say "Docker Engine: running ($("${SUDO[@]}" docker version --format '{{.Server.Version}}'))"
fi
if ! docker info >/dev/null 2>&1; then
  # Only root and the group docker may use the engine; a new member has it from the next login.
  if [ "${#SUDO[@]}" -gt 0 ] && ! id -nG | grep -w docker >/dev/null; then
    "${SUDO[@]}" usermod -aG docker "$(id -un)"
    die "$(id -un) was added to the group docker, which this shell does not have yet: run \`newgrp docker\` (or log in again), then run this again"
  fi
  die "the Docker Engine runs, but $(id -un) may not use it: run this as root, or as a member of the group docker"
fi

# --- Rust --------------------------------------------------------------------------------------
# rustup installs into ~/.cargo/bin, which a fresh shell may not have on PATH yet.
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# rust_version: the version of the rustc on PATH (1.63.0), or nothing.
rust_version() { rustc --version 2>/dev/null | awk '{print $2}'; }
rust_new_enough() {
  local v
  v=$(rust_version)
  [ -n "$v" ] && [ "$(printf '%s\n%s\n' "$RUST_MIN" "$v" | sort -V | head -n 1)" = "$RUST_MIN" ]
}
if rust_new_enough; then
  say "Rust: $(rustc --version)"
else
  found=$(rustc --version 2>/dev/null || echo "no rustc on PATH")
  if command -v rustup >/dev/null; then
    say "Rust $RUST_MIN or newer is needed (found: $found); rustup installs the stable toolchain (a minute or two)"
    rustup toolchain install stable --profile minimal || die "rustup could not install the stable toolchain (see above); the reconciler needs Rust $RUST_MIN or newer"
    # For this repository only: the user's default toolchain stays as it is.
    rustup override set stable
  else
    say "Rust $RUST_MIN or newer is needed (found: $found); installing it with rustup from https://sh.rustup.rs into ~/.cargo (a minute or two)"
    rustup_init=$(mktemp)
    if ! curl --proto '=https' --tlsv1.2 -sSf --max-time 60 https://sh.rustup.rs -o "$rustup_init"; then
      rm -f "$rustup_init"
      die "rustup could not be reached (https://sh.rustup.rs). The reconciler needs Rust $RUST_MIN or newer (found: $found); Debian 12's own rustc is 1.63, too old. Install Rust $RUST_MIN+ another way, put its cargo on PATH, and run this again."
    fi
    sh "$rustup_init" -y --profile minimal --default-toolchain stable >&2 ||
      die "rustup-init failed (see above). The reconciler needs Rust $RUST_MIN or newer (found: $found): install it another way, put its cargo on PATH, and run this again."
    rm -f "$rustup_init"
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  rust_new_enough || die "still no Rust $RUST_MIN or newer on PATH (found: $(rustc --version 2>/dev/null || echo none))"
  say "Rust: $(rustc --version)"
fi

if [ "$TESTS" = yes ]; then
  for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
      command -v rustup >/dev/null || die "cargo $component is missing and there is no rustup to add it"
      say "adding the Rust component $component"
      rustup component add "$component"
    fi
  done
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest from crates.io (cargo install; about 5 minutes on 2 cores)"
    cargo install --locked cargo-nextest
  fi
  say "cargo-nextest: $(cargo nextest --version | head -n 1)"
fi
say "done"
