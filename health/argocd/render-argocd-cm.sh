#!/usr/bin/env bash
# Prints argocd-cm.yaml: health.lua under one argocd-cm key per kind of group librechat.ai.
# Regenerate after editing health.lua: bash health/argocd/render-argocd-cm.sh > health/argocd/argocd-cm.yaml
# (tests/e2e/health.rs fails while the two disagree).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cat <<'HEAD'
# Argo CD health checks for the kinds of group librechat.ai, generated from health.lua by
# render-argocd-cm.sh. Merge into Argo CD's argocd-cm ConfigMap, e.g.
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file health/argocd/argocd-cm.yaml
# One key per kind: Argo CD's wildcard form (group/*) exists only inside the single
# `resource.customizations` key, because ConfigMap keys cannot contain `*`; see
# docs/health-checks.md.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
HEAD
for kind in LibreChatInstance LibreChatUser UserBan UserInvite LibreChatGroup LibreChatRole; do
  echo "  resource.customizations.health.librechat.ai_$kind: |"
  sed -e 's/^\(.\)/    \1/' "$HERE/health.lua"
done
