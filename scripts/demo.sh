#!/usr/bin/env bash
# The main job, end to end: the example C++ app in a container, `ckptd run` checkpointing it on
# examples/demo-policy.yaml, checkpoints taken and pruned, and the metrics. Run by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPTD=${CKPTD:-.venv/bin/ckptd}
IMAGE=${IMAGE:-ckptd-example-app:latest}
SECONDS_TO_RUN=${DEMO_SECONDS:-30}
CONTAINER=${DEMO_CONTAINER:-ckptd-example}
PORT=${DEMO_PORT:-9479}
STATE=${DEMO_STATE:-/var/lib/ckptd-demo}
# The demo's container carries this label: the demo removes a container of that name only when
# it made it, never somebody else's.
LABEL=org.ckptd.demo=1

POLICY=$(mktemp --suffix=.yaml /tmp/ckptd-demo-policy.XXXXXX)
trap 'rm -f "$POLICY"' EXIT
sed -e "s|container: ckptd-example|container: $CONTAINER|" \
  -e "s|127.0.0.1:9479|127.0.0.1:$PORT|" \
  -e "s|state_dir: /var/lib/ckptd-demo|state_dir: $STATE|" \
  -e "s|/run/ckptd-demo/control.sock|$STATE/control.sock|" \
  examples/demo-policy.yaml > "$POLICY"
chmod 0600 "$POLICY"

step() { printf '\n== %s\n' "$*"; }

step "starting container $CONTAINER from $IMAGE (5 s start-up)"
if docker inspect "$CONTAINER" >/dev/null 2>&1; then
  if [ "$(docker inspect -f '{{index .Config.Labels "org.ckptd.demo"}}' "$CONTAINER")" != 1 ]; then
    echo "demo: a container named $CONTAINER exists and the demo did not make it;" \
      "set DEMO_CONTAINER to another name" >&2
    exit 1
  fi
  docker rm -f "$CONTAINER" >/dev/null
fi
docker run -d --name "$CONTAINER" --label "$LABEL" -e STARTUP_SECONDS=5 "$IMAGE" >/dev/null
until docker logs "$CONTAINER" 2>&1 | grep -q '^step='; do sleep 0.5; done
docker logs "$CONTAINER" 2>&1 | tail -n 3

step "ckptd check-config (examples/demo-policy.yaml, as $POLICY)"
"$CKPTD" check-config "$POLICY"

step "ckptd run for ${SECONDS_TO_RUN} s (logs below)"
"$CKPTD" run --config "$POLICY" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true; rm -f "$POLICY"' EXIT
sleep "$SECONDS_TO_RUN"

step "metrics at http://127.0.0.1:$PORT/metrics"
python3 -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())' \
  "http://127.0.0.1:$PORT/metrics" \
  | grep -E '^ckptd_' | grep -vE '_bucket|_created' || true

kill -TERM "$daemon"
wait "$daemon" || true
trap 'rm -f "$POLICY"' EXIT

step "ckptd list --config $POLICY (at most 3 kept, older ones pruned)"
"$CKPTD" list --config "$POLICY"
step "all checkpoints of $CONTAINER"
docker checkpoint ls "$CONTAINER"
printf '\nRestore the newest with: docker stop %s && docker start --checkpoint NAME %s\n' \
  "$CONTAINER" "$CONTAINER"
