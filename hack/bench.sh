#!/usr/bin/env bash
# `make bench`: the benchmark in tests/e2e/bench.rs against the local servers (or yours, via
# KUBECONFIG/MONGODB_URI/REDIS_URL). Figures are appended to target/bench/results.md.
#   BENCH_USERS=500 make bench
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENV_DIR="${LCO_ENV_DIR:-/tmp/librechat-operator-env}"
export LCO_ENV_DIR="$ENV_DIR"
bash hack/setup.sh
bash tests/env/up.sh
# shellcheck disable=SC1091
. "$ENV_DIR/env"
cargo test --release --test e2e bench -- --ignored --nocapture --test-threads 1
