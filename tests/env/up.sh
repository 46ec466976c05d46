#!/usr/bin/env bash
# Bring up the integration-test environment on 127.0.0.1 and write $LCO_ENV_DIR/env:
#   Kubernetes : etcd + kube-apiserver + kube-controller-manager (tests/env/envtest.sh; versions
#                in tests/env/versions.env)
#   MongoDB    : SecantusDB on $LCO_MONGO_PORT (default 37017)  (tests/env/secantus.sh)
#   Redis      : redis-server on $LCO_REDIS_PORT (default 16379), no persistence
# A server whose variable (KUBECONFIG, MONGODB_URI, REDIS_URL) is already set in the
# environment is treated as external: it is reused, not started (and down.sh leaves it alone).
# Running up.sh again while everything is up only rewrites the env file.
# Usage: tests/env/up.sh && . "${LCO_ENV_DIR:-/tmp/librechat-operator-env}/env"
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${LCO_ENV_DIR:-/tmp/librechat-operator-env}"
# shellcheck source=versions.env
. "$HERE/versions.env"
BIN="${K8S_BIN_DIR:-$HOME/.cache/k8s-envtest/$K8S_VERSION/bin}"
MONGO_PORT="${LCO_MONGO_PORT:-37017}"
REDIS_PORT="${LCO_REDIS_PORT:-16379}"
mkdir -p "$DIR"; DIR="$(cd "$DIR" && pwd)"
export PATH="$BIN:$PATH"

bash "$HERE/install.sh"

# Alive = exists and is not a zombie (this machine's PID 1 reaps orphans late, and a
# zombie has already released its ports).
pid_alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" && [ "${s:0:1}" != Z ]; }
alive() { [ -f "$1" ] && pid_alive "$(cat "$1")"; }
# Values this script itself would produce. A variable equal to one of these came from a
# previously sourced env file, so it is ours (restart it if it died), not external.
OWN_KUBECONFIG="$DIR/k8s/kubeconfig"
OWN_MONGO="mongodb://127.0.0.1:$MONGO_PORT/?replicaSet=secantus"
OWN_REDIS="redis://127.0.0.1:$REDIS_PORT/"
external() { [ -n "${!1:-}" ] && [ "${!1}" != "$2" ]; }
state() { alive "$1" && echo "already running" || echo started; }

# --- Kubernetes -------------------------------------------------------------------------
if external KUBECONFIG "$OWN_KUBECONFIG"; then what_k8s=external
else
  what_k8s="$(state "$DIR/k8s/apiserver.pid")"
  # setsid: the servers get their own session, so they outlive this script's process group.
  # envtest.sh start is itself a no-op when the servers in $DIR/k8s are alive.
  KUBECONFIG="$(ENVTEST_DIR="$DIR/k8s" ENVTEST_KCM=1 setsid -w bash "$HERE/envtest.sh" start </dev/null)"
  # Ready = the controller-manager works too: its serviceaccount controller creates
  # default/default shortly after start (operators' Deployments/ReplicaSets need KCM).
  for _ in $(seq 1 60); do
    kubectl --kubeconfig "$KUBECONFIG" get serviceaccount default -n default >/dev/null 2>&1 && break
    sleep 0.5
  done
  kubectl --kubeconfig "$KUBECONFIG" get serviceaccount default -n default >/dev/null ||
    { echo "kube-controller-manager not working; see $DIR/k8s/logs/" >&2; exit 1; }
fi

# --- MongoDB (SecantusDB) ---------------------------------------------------------------
if external MONGODB_URI "$OWN_MONGO"; then what_mongo=external
else
  what_mongo="$(state "$DIR/mongo/secantus.pid")"
  # A fresh database whenever it is (re)started, like the freshly wiped etcd above.
  alive "$DIR/mongo/secantus.pid" || rm -rf "$DIR/mongo"
  bash "$HERE/secantus.sh" start "$MONGO_PORT" "$DIR/mongo" >/dev/null
  MONGODB_URI="$OWN_MONGO"
fi

# --- Redis ------------------------------------------------------------------------------
if external REDIS_URL "$OWN_REDIS"; then what_redis=external
else
  what_redis="$(state "$DIR/redis.pid")"
  if ! alive "$DIR/redis.pid"; then
    # Fail fast rather than silently talk to someone else's server on that port.
    if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then echo "port $REDIS_PORT already in use" >&2; exit 1; fi
    # --daemonize: redis forks, calls setsid and writes its own pidfile.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$DIR/redis.pid" \
      --dir "$DIR" --logfile "$DIR/redis.log" --save '' --appendonly no </dev/null >/dev/null
    for _ in $(seq 1 50); do
      [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && alive "$DIR/redis.pid" && break
      sleep 0.1
    done
    alive "$DIR/redis.pid" || { echo "redis-server failed to start:" >&2; tail -20 "$DIR/redis.log" >&2; exit 1; }
  fi
  REDIS_URL="$OWN_REDIS"
fi

# --- env file (written atomically: others may be sourcing it right now) -----------------
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
(umask 077; : > "$DIR/env.tmp")   # external URIs may carry passwords
cat > "$DIR/env.tmp" <<EOF
# Written by tests/env/up.sh; source it: . $(q "$DIR/env")
export LCO_ENV_DIR=$(q "$DIR")
export KUBECONFIG=$(q "$KUBECONFIG")
export MONGODB_URI=$(q "$MONGODB_URI")
export REDIS_URL=$(q "$REDIS_URL")
export LCO_SECANTUS=$(q "$HERE/secantus.sh")
case ":\$PATH:" in *:$(q "$BIN"):*) ;; *) export PATH=$(q "$BIN"):"\$PATH" ;; esac
EOF
mv "$DIR/env.tmp" "$DIR/env"

# Summary; credentials in externally provided URIs are masked. The kube token stays in
# the kubeconfig file and is never printed.
mask() { sed -E 's#://[^/@]*@#://***@#'; }
echo "test environment up; source $DIR/env"
echo "  KUBECONFIG=$KUBECONFIG ($what_k8s)"
echo "  MONGODB_URI=$(mask <<<"$MONGODB_URI") ($what_mongo)"
echo "  REDIS_URL=$(mask <<<"$REDIS_URL") ($what_redis)"
