#!/usr/bin/env bash
# Start/stop a real etcd + kube-apiserver (+ kube-controller-manager with ENVTEST_KCM=1)
# on 127.0.0.1, envtest-style: no kubelet, so Pods are created but never run.
#   envtest.sh start   -> prints KUBECONFIG path; writes $RUN_DIR/env (no-op if already running)
#   envtest.sh stop
# Needs: etcd, kube-apiserver, kube-controller-manager (built by install-k8s.sh at the
# versions in versions.env), openssl.
set -euo pipefail

RUN_DIR="${ENVTEST_DIR:-${TMPDIR:-/tmp}/envtest-$(id -u)}"
# shellcheck source=versions.env
. "$(dirname "${BASH_SOURCE[0]}")/versions.env"
# Binaries built by install-k8s.sh come first (a machine-wide kubectl or etcd may be older).
PATH="${K8S_BIN_DIR:-$HOME/.cache/k8s-envtest/$K8S_VERSION/bin}:$PATH"
KUBE_APISERVER="${KUBE_APISERVER:-kube-apiserver}"
KUBE_CONTROLLER_MANAGER="${KUBE_CONTROLLER_MANAGER:-kube-controller-manager}"
WITH_KCM="${ENVTEST_KCM:-0}"   # 1 = also run kube-controller-manager (GC, namespace finalization, SA tokens, Deployment->RS->Pod)
ETCD_BIN="${ETCD_BIN:-etcd}"
API_PORT="${ENVTEST_API_PORT:-16443}"
ETCD_PORT="${ENVTEST_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${ENVTEST_ETCD_PEER_PORT:-12380}"

# Alive = exists and is not a zombie (this machine's PID 1 reaps orphans late, and a
# zombie has already released its ports).
pid_alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" && [ "${s:0:1}" != Z ]; }
running() { [ -f "$RUN_DIR/$1.pid" ] && pid_alive "$(cat "$RUN_DIR/$1.pid")"; }

start() {
  # Already running: keep it (wiping $RUN_DIR would orphan the servers and their certs).
  if running apiserver && { [ "$WITH_KCM" != 1 ] || running kcm; }; then
    echo "$RUN_DIR/kubeconfig"; return 0
  fi
  stop  # reap leftovers of a half-dead previous run (e.g. etcd alive, apiserver crashed)
  local p; for p in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "port $p already in use" >&2; return 1; fi
  done
  umask 077  # kubeconfig and tokens.csv hold the admin token
  rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR"/{certs,etcd,logs}; chmod 700 "$RUN_DIR/etcd"
  local c="$RUN_DIR/certs"

  # --- certs & keys (self-generated, loopback only) ---
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=envtest-ca" \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$c/apiserver.key" -out "$c/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > "$c/ext.cnf"
  openssl x509 -req -in "$c/apiserver.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
    -days 30 -extfile "$c/ext.cnf" -out "$c/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$c/sa.key" 2048 2>/dev/null
  openssl rsa -in "$c/sa.key" -pubout -out "$c/sa.pub" 2>/dev/null
  local token; token="$(openssl rand -hex 24)"
  echo "$token,envtest-admin,envtest-admin,system:masters" > "$c/tokens.csv"

  # --- etcd ---
  "$ETCD_BIN" --name envtest --data-dir "$RUN_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "envtest=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --logger zap --log-level warn </dev/null > "$RUN_DIR/logs/etcd.log" 2>&1 &
  echo $! > "$RUN_DIR/etcd.pid"

  # --- kube-apiserver ---
  "$KUBE_APISERVER" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --tls-cert-file="$c/apiserver.crt" --tls-private-key-file="$c/apiserver.key" \
    --client-ca-file="$c/ca.crt" \
    --token-auth-file="$c/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$c/sa.pub" --service-account-signing-key-file="$c/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount \
    --v=1 </dev/null > "$RUN_DIR/logs/kube-apiserver.log" 2>&1 &
  echo $! > "$RUN_DIR/apiserver.pid"

  # --- kubeconfig ---
  cat > "$RUN_DIR/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $c/ca.crt
users:
- name: envtest-admin
  user:
    token: $token
contexts:
- name: envtest
  context: {cluster: envtest, user: envtest-admin, namespace: default}
current-context: envtest
KC

  # --- wait until ready (/readyz needs etcd + all post-start hooks incl. CRD controller) ---
  for _ in $(seq 1 120); do
    if curl -fsS --cacert "$c/ca.crt" -H "Authorization: Bearer $token" \
         "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
      if [ "$WITH_KCM" = 1 ]; then
        "$KUBE_CONTROLLER_MANAGER" --kubeconfig="$RUN_DIR/kubeconfig" --leader-elect=false \
          --bind-address=127.0.0.1 --secure-port=0 \
          --controllers='*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-pvc-protection,-pv-protection,-ttl,-bootstrapsigner,-tokencleaner,-csrsigning,-csrapproving,-csrcleaner' \
          --service-account-private-key-file="$c/sa.key" --root-ca-file="$c/ca.crt" \
          --v=1 </dev/null > "$RUN_DIR/logs/kube-controller-manager.log" 2>&1 &
        echo $! > "$RUN_DIR/kcm.pid"
      fi
      echo "export KUBECONFIG=$RUN_DIR/kubeconfig" > "$RUN_DIR/env"
      echo "$RUN_DIR/kubeconfig"; return 0
    fi
    running apiserver || { tail -30 "$RUN_DIR/logs/kube-apiserver.log" >&2; stop; return 1; }
    sleep 0.5
  done
  echo "kube-apiserver not ready after 60s" >&2; tail -30 "$RUN_DIR/logs/kube-apiserver.log" >&2; stop; return 1
}

stop() {
  local p
  for p in kcm apiserver etcd; do
    if [ -f "$RUN_DIR/$p.pid" ]; then
      kill "$(cat "$RUN_DIR/$p.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$p" || break; sleep 0.1; done
      kill -9 "$(cat "$RUN_DIR/$p.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do running "$p" || break; sleep 0.1; done  # gone -> ports free
      rm -f "$RUN_DIR/$p.pid"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
