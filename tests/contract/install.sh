#!/usr/bin/env bash
# Installs the contract tests' npm dependencies exactly as pinned in package-lock.json.
# Idempotent: skipped when node_modules was installed from the same package.json +
# package-lock.json (stamp file node_modules/.contract-install-stamp). Non-interactive
# (works with CI=true); uses the local npm cache first (--prefer-offline).
#   bash tests/contract/install.sh          # install if needed
#   FORCE=1 bash tests/contract/install.sh  # reinstall
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

command -v node >/dev/null || { echo "contract install: node not found (need Node.js >= 20)" >&2; exit 1; }
command -v npm >/dev/null || { echo "contract install: npm not found" >&2; exit 1; }
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "contract install: Node.js >= 20 required, found $(node --version)" >&2
  exit 1
fi

stamp=node_modules/.contract-install-stamp
want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node-$major"
if [ "${FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "contract install: node_modules up to date"
  exit 0
fi

npm ci --prefer-offline --no-audit --no-fund --no-progress
printf '%s\n' "$want" > "$stamp"
echo "contract install: done"
