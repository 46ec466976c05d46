#!/usr/bin/env bash
# Build promtool (Prometheus' rule checker, used by hack/chart-check.sh to check the chart's
# PrometheusRule) from its published Go module, idempotently, into
# ${PROMTOOL_BIN_DIR:-~/.cache/promtool/$PROMTOOL_VERSION}/promtool, and print its path.
# Go's caches are the test bed's (~/.cache/lco-go) unless GOMODCACHE/GOCACHE are set.
# Prometheus 3.x publishes its Go module as v0.3xx.y (v0.316.0 is Prometheus 3.16.0).
set -euo pipefail
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
BIN="${PROMTOOL_BIN_DIR:-$HOME/.cache/promtool/$PROMTOOL_VERSION}"
if [ -x "$BIN/promtool" ]; then echo "$BIN/promtool"; exit 0; fi
command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"
mkdir -p "$BIN"
export GOMODCACHE="${GOMODCACHE:-$HOME/.cache/lco-go/mod}" GOCACHE="${GOCACHE:-$HOME/.cache/lco-go/build}"
export GOBIN="$BIN" CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=
echo "install-promtool: building promtool $PROMTOOL_VERSION (first time: several minutes)" >&2
go install -p "${LCO_GO_PARALLEL:-2}" -trimpath -ldflags "-s -w" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2
echo "$BIN/promtool"
