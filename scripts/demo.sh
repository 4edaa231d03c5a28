#!/usr/bin/env bash
# The reconciler on the shipped desired-state/ example, on a Debian 12 machine with no registry
# access.
#
#   bash scripts/demo.sh        set up (scripts/setup.sh: packages, Docker Engine, Rust), build the
#                               example's images from Debian's static busybox and serve them from
#                               a local registry on 127.0.0.1:5055, build the reconciler, then
#                               validate, diff and apply desired-state/. Rerun it: the second
#                               apply changes nothing. Edit desired-state/shop/.env (WEB_TAG=v2)
#                               and rerun to see an update.
#   bash scripts/demo.sh down   stop and remove what the demo created, and only that: the shop
#                               stack's containers (those the reconciler labelled), its network
#                               and volume, the images it pulled, the registry the demo started
#                               (not one that already ran), and /tmp/reconciler-demo (state dir
#                               and registry data).
#
# DEMO_DIR (default /tmp/reconciler-demo) holds the state dir and the registry's data.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${DEMO_DIR:-/tmp/reconciler-demo}
STATE=$WORK/state
BIN=./target/release/reconciler
STACK=shop
REGISTRY=127.0.0.1:5055

step() { printf '\n== demo: %s\n' "$*" >&2; }

down() {
  step "removing what the demo created"
  # The stack's containers, network, volume and images only when the demo's state dir records
  # the stack (a Compose project `shop` of someone else's is none of the demo's business), and
  # of the containers only those the reconciler labelled. The network and the volume carry
  # Compose's labels only (so Compose sees them as its own); the engine refuses to remove one
  # that another container still uses.
  if [ -f "$STATE/state.json" ] && grep "\"$STACK\"" "$STATE/state.json" >/dev/null; then
    docker info >/dev/null 2>&1 ||
      { echo "demo: cannot reach the Docker Engine (run this as root, or as a member of the group docker)" >&2; exit 1; }
    local project=(--filter "label=com.docker.compose.project=$STACK")
    local ids
    ids=$(docker ps -aq "${project[@]}" --filter "label=reconciler.managed")
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086 # one id a word
      docker rm -f $ids >/dev/null
      echo "removed $(wc -w <<<"$ids") container(s) of $STACK" >&2
    fi
    for net in $(docker network ls --format '{{.Name}}' "${project[@]}"); do
      docker network rm "$net" >/dev/null && echo "removed network $net" >&2
    done
    for vol in $(docker volume ls -q "${project[@]}"); do
      docker volume rm "$vol" >/dev/null && echo "removed volume $vol (the demo's data)" >&2
    done
    # The images the shop stack pulled (any tag); the builder's other images were never pulled.
    for repo in web worker db; do
      for img in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$REGISTRY/demo/$repo"); do
        docker image rm "$img" >/dev/null && echo "removed image $img" >&2
      done
    done
  else
    echo "the state dir $STATE records no $STACK stack: no container, network, volume or image to remove" >&2
  fi
  if [ -f "$WORK/registry.pid" ]; then
    local pid
    pid=$(cat "$WORK/registry.pid")
    # Only the registry this demo started: the pid must still be a docker-registry.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = docker-registry ]; then
      kill "$pid" && echo "stopped the registry on $REGISTRY (pid $pid)" >&2
    fi
  fi
  # What the demo and the image builder write there, by name: DEMO_DIR may be a folder that
  # holds other things too.
  if [ -d "$WORK" ]; then
    rm -rf "${WORK:?}/state" "${WORK:?}/registry"
    rm -f "$WORK/registry.yml" "$WORK/registry.log" "$WORK/registry.pid"
    if rmdir "$WORK" 2>/dev/null; then
      echo "removed $WORK" >&2
    else
      echo "removed the demo's state and registry data from $WORK (it holds other files, so it stays)" >&2
    fi
  fi
  echo "demo: everything it created is gone (the build in target/ stays; cargo clean removes it)"
}

up() {
  step "1/5 setting up the machine (scripts/setup.sh: only what is missing is installed)"
  bash scripts/setup.sh
  # shellcheck disable=SC1091 # rustup's PATH, when setup.sh just installed it
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

  step "2/5 building the example's images and serving them on $REGISTRY (about 30 s the first time)"
  # The same builder the walkthrough uses. It removes the local copies, so apply really pulls.
  WALKTHROUGH_DIR=$WORK bash examples/build-images.sh

  step "3/5 building the reconciler (cargo build --release: about 10 minutes on 2 cores the first time, seconds after)"
  cargo build --release

  export RECONCILER_STATE_DIR=$STATE
  step "4/5 reconciler validate and diff (diff exits 1 when something is to be done)"
  $BIN validate --repo desired-state
  $BIN diff --repo desired-state || [ $? -eq 1 ]

  step "5/5 reconciler apply: pull, create, wait for health (up to a minute)"
  $BIN apply --repo desired-state

  cat <<EOF

demo: the shop stack is up. Try:
  curl http://127.0.0.1:8080/
  $BIN --state-dir $STATE status
  $BIN --state-dir $STATE history
  docker-compose -p $STACK -f desired-state/$STACK/compose.yaml ps
Release web v2: set WEB_TAG=v2 in desired-state/$STACK/.env, then
  $BIN --state-dir $STATE diff --repo desired-state
  $BIN --state-dir $STATE apply --repo desired-state
When you are done: bash scripts/demo.sh down
EOF
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *)
    echo "usage: bash scripts/demo.sh [up|down]" >&2
    exit 2
    ;;
esac
