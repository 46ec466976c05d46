#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine (idempotent, no prompts):
# the test servers (tests/env/install.sh), Node.js for LibreChat's own contract checks, the
# contract checks' pinned npm packages, and Lua 5.1 for the Argo CD health check's tests
# (tests/e2e/health.rs). Rust itself comes with the machine (rustup).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
# clippy and rustfmt: `make test` starts with both. Only rustup can add them; say so if that fails.
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add clippy rustfmt >/dev/null 2>&1 || true
  cargo clippy --version >/dev/null 2>&1 && cargo fmt --version >/dev/null 2>&1 ||
    { echo "setup: cargo clippy / cargo fmt missing; run: rustup component add clippy rustfmt" >&2; exit 1; }
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# Lua 5.1: Argo CD runs health checks in a Lua 5.1 VM (gopher-lua); tests/e2e/health.rs runs
# health/argocd/health.lua under the reference interpreter.
if ! command -v lua5.1 >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends lua5.1 >/dev/null
fi

bash tests/env/install.sh
bash tests/contract/install.sh
