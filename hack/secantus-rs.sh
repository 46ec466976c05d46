#!/usr/bin/env bash
# Builds SecantusDB's Rust server (crate secantus-mdb, binary secantusd-rs) into
# ~/.cache/secantus-rs for `make bench` (idempotent). Its releases declare Rust 1.98; this
# tries the machine's Rust anyway (--ignore-rust-version) and exits non-zero if that fails,
# in which case the bench says so and uses the Python server.
set -euo pipefail
VERSION=0.5.3-beta.196
ROOT="$HOME/.cache/secantus-rs"
[ -x "$ROOT/bin/secantusd-rs" ] && [ "$(cat "$ROOT/version" 2>/dev/null)" = "$VERSION" ] && exit 0
cargo install --quiet --ignore-rust-version --root "$ROOT" secantus-mdb --version "$VERSION"
echo "$VERSION" > "$ROOT/version"
