#!/usr/bin/env bash
# `make bench` (N=10000 by default; `make bench N=1000`): bench/bench.py against servers of its
# own (a private environment in $BENCH_ENV_DIR on ports apart from the tests'), with a release
# build of the operator. Writes bench/results/latest.{json,md} and cold-start.svg. Asserts
# nothing: the figures and the goals they meet or miss are the output.
# KUBECONFIG / MONGODB_URI / REDIS_URL set beforehand point it at servers of your own instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export BENCH_N="${BENCH_N:-${N:-10000}}"
export BENCH_ENV_DIR="${BENCH_ENV_DIR:-/tmp/librechat-operator-bench}"
bash hack/setup.sh

# The bench's own Python (pymongo, bcrypt), cached like the test servers.
VENV="$HOME/.cache/lco-bench-venv"
if ! "$VENV/bin/python" -c 'import pymongo, bcrypt' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'pymongo>=4.6,<5' 'bcrypt>=4.1,<5'
fi

# The MongoDB-wire server: SecantusDB's Rust server (crate secantus-mdb) when it builds with
# this machine's Rust, else its Python server (which slows as collections grow: said in the
# results).
bash hack/secantus-rs.sh >/dev/null 2>&1 && export SECANTUS_SERVER="$HOME/.cache/secantus-rs/bin/secantusd-rs" || true
export BENCH_MONGO_SERVER="${SECANTUS_SERVER:+SecantusDB Rust (secantus-mdb)}"
export BENCH_MONGO_SERVER="${BENCH_MONGO_SERVER:-SecantusDB Python (secantusd-py): the Rust server did not build here, see hack/secantus-rs.sh}"

# A fresh environment each run (servers of your own are left alone by down.sh).
LCO_ENV_DIR="$BENCH_ENV_DIR" bash tests/env/down.sh >/dev/null 2>&1 || true
[ -z "${KUBECONFIG:-}${MONGODB_URI:-}${REDIS_URL:-}" ] && rm -rf "$BENCH_ENV_DIR"
LCO_ENV_DIR="$BENCH_ENV_DIR" ENVTEST_API_PORT="${BENCH_API_PORT:-36643}" ENVTEST_ETCD_PORT="${BENCH_ETCD_PORT:-36679}" \
  ENVTEST_ETCD_PEER_PORT="${BENCH_ETCD_PEER_PORT:-36680}" LCO_MONGO_PORT="${BENCH_MONGO_PORT:-47017}" \
  LCO_REDIS_PORT="${BENCH_REDIS_PORT:-36379}" bash tests/env/up.sh
# shellcheck disable=SC1091
. "$BENCH_ENV_DIR/env"
cargo build --release --quiet
"$VENV/bin/python" bench/bench.py
