#!/usr/bin/env bash
# Start/stop one private SecantusDB (MongoDB-wire-compatible) server on 127.0.0.1.
#   secantus.sh start PORT DATADIR  -> prints the server PID once a real `ping` succeeds
#   secantus.sh stop DATADIR        -> TERM, wait, KILL (by the PID saved in DATADIR)
# Data lives in DATADIR/db, so stop + start with the same DATADIR keeps the data;
# tests use this to simulate an outage and a recovery on a fixed port.
# URI for clients: mongodb://127.0.0.1:PORT/?replicaSet=secantus (the server advertises
# itself as primary of the single-node replica set "secantus", hosts = 127.0.0.1:PORT,
# which is what makes transactions and change streams work).
# Needs the venv made by install.sh (SECANTUS_VENV, default ~/.cache/secantus-venv).
set -euo pipefail
VENV="${SECANTUS_VENV:-$HOME/.cache/secantus-venv}"
# The server binary: SecantusDB's Python server, or another with the same flags (make bench
# sets SecantusDB's Rust server, secantusd-rs).
SERVER="${SECANTUS_SERVER:-$VENV/bin/secantusd-py}"

usage() { echo "usage: $0 start PORT DATADIR | stop DATADIR" >&2; exit 2; }
# Alive = exists and is not a zombie (this machine's PID 1 reaps orphans late, and a
# zombie has already released its ports).
pid_alive() { local s; s="$(ps -o stat= -p "$1" 2>/dev/null)" && [ "${s:0:1}" != Z ]; }
alive() { [ -f "$1/secantus.pid" ] && pid_alive "$(cat "$1/secantus.pid")"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local port="$1" dir="$2"
  [ -x "$SERVER" ] || { echo "SecantusDB server $SERVER not installed; run tests/env/install.sh" >&2; return 1; }
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  if alive "$dir"; then
    # Idempotent: same DATADIR already served. Refuse if it was started on another port.
    [ "$(cat "$dir/secantus.port" 2>/dev/null)" = "$port" ] || { echo "$dir is already served on port $(cat "$dir/secantus.port")" >&2; return 1; }
    cat "$dir/secantus.pid"; return 0
  fi
  # A previous server on this port may still be shutting down (SecantusDB takes ~3 s to
  # exit on TERM); wait up to 15 s for the listener to go away rather than fail to bind.
  local until=$((SECONDS + 15))
  while listening "$port" && [ "$SECONDS" -lt "$until" ]; do sleep 0.5; done
  listening "$port" && { echo "port $port is in use by another process" >&2; return 1; }

  # setsid: own session, so the server outlives the caller's process group / job.
  # The PID is written by the shell that then execs the server, so it is the server's PID.
  rm -f "$dir/secantus.pid"  # stale after a crash; the wait below must see the new one
  # shellcheck disable=SC2016  # $$ and $1.. expand in the inner shell
  setsid bash -c 'echo $$ > "$1/secantus.pid"; exec "$2" --host 127.0.0.1 --port "$3" \
      --storage-path "$1/db" --cache-size 256M --log-level WARNING' _ "$dir" "$SERVER" "$port" \
    </dev/null >>"$dir/secantus.log" 2>&1 &
  echo "$port" > "$dir/secantus.port"
  for _ in $(seq 1 50); do [ -s "$dir/secantus.pid" ] && break; sleep 0.1; done

  # Real round trip (one Python process polls, ~2 s cold start); gives up if the server dies.
  if ! "$VENV/bin/python" - "$port" "$(cat "$dir/secantus.pid")" <<'EOF'
import os, sys, time, pymongo
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                            serverSelectionTimeoutMS=300).admin.command("ping")
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(1)
EOF
  then
    echo "SecantusDB failed to start on port $port; log tail:" >&2
    tail -20 "$dir/secantus.log" >&2; stop "$dir"; return 1
  fi
  cat "$dir/secantus.pid"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/secantus.pid" ] || return 0
  pid="$(cat "$dir/secantus.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do pid_alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  # After KILL, wait until it is gone, so the port is free when we return.
  for _ in $(seq 1 50); do pid_alive "$pid" || break; sleep 0.1; done
  rm -f "$dir/secantus.pid"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
