#!/usr/bin/env bash
# Run the reconciler on the shipped desired-state/ example, on a machine with no registry access:
# build the example's images from Debian's static busybox, serve them from a local registry on
# 127.0.0.1:5055 (Debian's docker-registry), then `reconciler apply`. Rerun it: the second apply
# changes nothing. Edit desired-state/shop/.env (WEB_TAG=v2) and rerun to see an update.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${DEMO_DIR:-/tmp/reconciler-demo}
export RECONCILER_STATE_DIR=${RECONCILER_STATE_DIR:-$WORK/state}

# The example's images (busybox, no internet) in a registry on 127.0.0.1:5055: the same builder
# the walkthrough uses. It removes the local copies, so apply really pulls.
WALKTHROUGH_DIR=$WORK bash examples/build-images.sh

cargo build --release -q
./target/release/reconciler validate --repo desired-state
./target/release/reconciler diff --repo desired-state || true
./target/release/reconciler apply --repo desired-state
echo "demo: shop is up: curl http://127.0.0.1:8080/ ; docker-compose -p shop ps ; ./target/release/reconciler status"
