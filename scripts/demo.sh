#!/usr/bin/env bash
# The main job, end to end: the example C++ app in a container, `ckptd run` checkpointing it on
# examples/demo-policy.yaml, checkpoints taken and pruned, and the metrics. Run by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPTD=${CKPTD:-.venv/bin/ckptd}
IMAGE=${IMAGE:-ckptd-example-app:latest}
SECONDS_TO_RUN=${DEMO_SECONDS:-30}
POLICY=examples/demo-policy.yaml
CONTAINER=ckptd-example

step() { printf '\n== %s\n' "$*"; }

step "starting container $CONTAINER from $IMAGE (5 s start-up)"
docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
docker run -d --name "$CONTAINER" -e STARTUP_SECONDS=5 "$IMAGE" >/dev/null
until docker logs "$CONTAINER" 2>&1 | grep -q '^step='; do sleep 0.5; done
docker logs "$CONTAINER" 2>&1 | tail -n 3

step "ckptd check-config $POLICY"
"$CKPTD" check-config "$POLICY"

step "ckptd run for ${SECONDS_TO_RUN} s (logs below)"
"$CKPTD" run --config "$POLICY" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true' EXIT
sleep "$SECONDS_TO_RUN"

step "metrics at http://127.0.0.1:9479/metrics"
python3 -c 'import urllib.request as u; print(u.urlopen("http://127.0.0.1:9479/metrics").read().decode())' \
  | grep -E '^ckptd_' | grep -vE '_bucket|_created' || true

kill -TERM "$daemon"
wait "$daemon" || true
trap - EXIT

step "ckptd list --config $POLICY (3 kept, older ones pruned)"
"$CKPTD" list --config "$POLICY"
step "all checkpoints of $CONTAINER"
docker checkpoint ls "$CONTAINER"
printf '\nRestore the newest with: docker stop %s && docker start --checkpoint NAME %s\n' \
  "$CONTAINER" "$CONTAINER"
