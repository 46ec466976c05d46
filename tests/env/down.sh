#!/usr/bin/env bash
# Stop what tests/env/up.sh started, each server by the PID it saved in $LCO_ENV_DIR.
# Externally provided servers (KUBECONFIG/MONGODB_URI/REDIS_URL set before up.sh) never
# got a pidfile there, so they are left alone. Logs stay in $LCO_ENV_DIR for post-mortems.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${LCO_ENV_DIR:-/tmp/librechat-operator-env}"
[ -d "$DIR" ] || exit 0
# Alive = exists and is not a zombie (this machine's PID 1 reaps orphans late, and a
# zombie has already released its ports).
pid_alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" && [ "${s:0:1}" != Z ]; }

# Remove the env file first, so nobody sources URIs of servers that are going away.
rm -f "$DIR/env"

if [ -f "$DIR/redis.pid" ]; then
  pid="$(cat "$DIR/redis.pid")"
  kill -TERM "$pid" 2>/dev/null || true   # no persistence configured, so TERM exits at once
  for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/redis.pid"
fi
bash "$HERE/secantus.sh" stop "$DIR/mongo"
[ -d "$DIR/k8s" ] && ENVTEST_DIR="$DIR/k8s" bash "$HERE/envtest.sh" stop
echo "test environment in $DIR stopped"
