#!/usr/bin/env bash
# Builds (once; later runs reuse Go's build cache) and runs tests/health/kstatus, which judges
# captured objects with kstatus (sigs.k8s.io/cli-utils) and with Flux's own CEL health-check
# evaluator (github.com/fluxcd/pkg/runtime/cel) fed health/flux/healthcheckexprs.yaml.
# Usage: tests/health/judge.sh HEALTHCHECKEXPRS_YAML CAPTURE_DIR   (see kstatus/main.go)
# Go's caches live under ~/.cache/lco-go as for tests/env/install-k8s.sh; the binary goes to
# ${LCO_HEALTH_JUDGE:-~/.cache/lco-go/bin/lco-health-judge}.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/lco-go/mod}" GOCACHE="${GOCACHE:-$HOME/.cache/lco-go/build}"
# The committed go.sum is the record: fetch what it names, change nothing.
export GOFLAGS="-mod=readonly" CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
BIN="${LCO_HEALTH_JUDGE:-$HOME/.cache/lco-go/bin/lco-health-judge}"
GO="$(command -v go 2>/dev/null || true)"
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; } ||
  { echo "judge.sh: no Go found (bash hack/setup.sh installs one)" >&2; exit 1; }
mkdir -p "$(dirname "$BIN")"
(cd "$HERE/kstatus" && "$GO" build -p "${LCO_GO_PARALLEL:-2}" -trimpath -o "$BIN" .)
exec "$BIN" "$@"
