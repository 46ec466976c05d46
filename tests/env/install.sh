#!/usr/bin/env bash
# Install everything the integration-test environment needs (idempotent, no prompts):
#   redis-server   (Debian package; the system service is NOT started)
#   etcd, kube-apiserver, kube-controller-manager, kubectl, helm -> ~/.cache/k8s-envtest/<version>/bin
#                  (built from Go modules by install-k8s.sh; versions in versions.env)
#   SecantusDB + pymongo venv                                    -> ~/.cache/secantus-venv
# A no-op taking well under a second when everything is already there.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$HERE/versions.env"
BIN="${K8S_BIN_DIR:-$HOME/.cache/k8s-envtest/$K8S_VERSION/bin}"
VENV="${SECANTUS_VENV:-$HOME/.cache/secantus-venv}"
SECANTUS_VERSION=0.7.0b3
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$HOME/.cache"
# Serialise concurrent installs (e.g. two test jobs starting at once).
exec 9>"$HOME/.cache/librechat-operator-env-install.lock"; flock 9

# 1. redis-server. `apt-get update` only when the package index doesn't know it yet.
if ! command -v redis-server >/dev/null; then
  apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq
  # Debian starts services from postinst unless policy-rc.d says no (exit 101); up.sh runs
  # its own redis on a private port, so keep the system one from grabbing 6379.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

# 2. Kubernetes binaries (built the first time, then cached; install-k8s.sh checks the
# version stamps itself, so this is cheap when everything is there).
need_k8s=0
command -v openssl >/dev/null && command -v curl >/dev/null || need_k8s=1
for b in etcd kube-apiserver kube-controller-manager kubectl helm; do
  case "$b" in etcd) v="$ETCD_VERSION" ;; helm) v="$HELM_VERSION" ;; *) v="$K8S_VERSION" ;; esac
  [ -x "$BIN/$b" ] && [ "$(cat "$BIN/.$b.version" 2>/dev/null)" = "$v" ] || need_k8s=1
done
if [ "$need_k8s" = 1 ]; then
  K8S_BIN_DIR="$BIN" bash "$HERE/install-k8s.sh" >/dev/null
fi

# 3. SecantusDB (MongoDB wire protocol server) + pymongo (used for readiness pings).
if ! "$VENV/bin/python" -c "import pymongo, importlib.metadata as m; assert m.version('SecantusDB') == '$SECANTUS_VERSION'" 2>/dev/null; then
  # Debian ships venv's pip bootstrap separately (python3-venv).
  if ! command -v python3 >/dev/null ||
     ! dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q 'install ok installed'; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check pymongo "SecantusDB==$SECANTUS_VERSION"
fi
