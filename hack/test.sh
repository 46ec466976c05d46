#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it:
#   lint (fmt, clippy -D warnings) → LibreChat contract self-test → Helm chart checks →
#   unit tests → end-to-end tests against a real kube-apiserver, MongoDB-wire server and Redis.
# KUBECONFIG / MONGODB_URI / REDIS_URL, when set, point the suite at servers of your own
# (a real cluster, a genuine MongoDB); otherwise local ones are started and stopped again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ENV_DIR="${LCO_ENV_DIR:-/tmp/librechat-operator-env}"
export LCO_ENV_DIR="$ENV_DIR"

# shellcheck source=../tests/env/versions.env
. tests/env/versions.env
echo "== test bed: Kubernetes $K8S_VERSION (kube-apiserver, kube-controller-manager, kubectl), etcd $ETCD_VERSION, helm $HELM_VERSION (tests/env/versions.env)"
bash hack/setup.sh

echo "== lint"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

echo "== servers"
already_up=0; [ -f "$ENV_DIR/env" ] && already_up=1
bash tests/env/up.sh
if [ "$already_up" = 0 ] && [ "${LCO_KEEP_ENV:-0}" != 1 ]; then
  trap 'bash tests/env/down.sh >/dev/null 2>&1 || true' EXIT
fi
# shellcheck disable=SC1091
. "$ENV_DIR/env"

echo "== LibreChat contract self-test (the judge judges the fixtures first)"
SELFTEST_DB="lco_contract_selftest_$$" node --test tests/contract/selftest.mjs

echo "== Helm chart: lint, render, schema, apply, RBAC"
bash hack/chart-check.sh

echo "== unit and end-to-end tests"
# End-to-end tests mostly wait on servers, so more threads than cores pays off. A failure
# prints its panic message without a backtrace (LCO_TEST_BACKTRACE=1 for one): CI shows the
# end of the output, where each failed test's message then fits.
RUST_BACKTRACE="${LCO_TEST_BACKTRACE:-0}" cargo test --all-targets -- --test-threads "${TEST_THREADS:-6}"
echo "== property tests: cases run"
cat target/proptest-cases.txt 2>/dev/null || true
