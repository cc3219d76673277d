#!/usr/bin/env bash
# Realtime fan-out: FANOUT_CLIENTS Socket.IO clients (5000) on websocket through the gateway, spread over two
# realtime replicas, one event per user per second published on the Redis bus; prints delivery latency and
# the memory each process holds per connection.
#   Benchmarks/fanout.sh [BASE_URL]     (default http://127.0.0.1:8080)
# Needs the stack running from release builds (`swift build -c release`, services from .build/release, as
# ./scripts/run starts them with SKIFF_BUILD_CONFIGURATION=release). This script starts the second realtime replica
# (port FANOUT_REPLICA_PORT, 8086) with the same settings and stops it at the end.
# Environment: FANOUT_CLIENTS, FANOUT_DURATION (30), FANOUT_IDLE (10), FANOUT_USERS_FILE, REDIS_URL,
# DATABASE_URL, WEBUI_SECRET_KEY, SKIFF_INTERNAL_SECRET (default: those ./scripts/run uses).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/lib.sh
source scripts/lib.sh
export_runtime_env
export FANOUT_BASE_URL="${1:-${FANOUT_BASE_URL:-http://127.0.0.1:8080}}"
BIN="${SKIFF_BIN_DIR:-$ROOT/.build/release}"
PORT="${FANOUT_REPLICA_PORT:-8086}"

# Each client holds a socket here, and two in the gateway.
ulimit -n "$(ulimit -Hn)" || true
[ -x "$BIN/FanoutBench" ] || { echo "build it first: swift build -c release --product FanoutBench" >&2; exit 1; }
curl -fsS -o /dev/null "$FANOUT_BASE_URL/health" || { echo "no Skiff at $FANOUT_BASE_URL" >&2; exit 1; }

pid_of() {
  for dir in /proc/[0-9]*; do
    [ "$(cat "$dir/comm" 2>/dev/null)" = "$1" ] || continue
    exe=$(readlink "$dir/exe" 2>/dev/null || true)
    [ "$(basename "${exe% (deleted)}")" = "$1" ] && { echo "${dir#/proc/}"; return; }
  done
}

first=$(pid_of realtime)
gateway=$(pid_of gateway)
[ -n "$first" ] && [ -n "$gateway" ] || { echo "gateway and realtime must be running" >&2; exit 1; }

PORT=$PORT SKIFF_REALTIME_REPLICA_ID=fan2 SKIFF_REALTIME_ADVERTISE_URL="http://127.0.0.1:$PORT" \
  GLOBAL_LOG_LEVEL="${GLOBAL_LOG_LEVEL:-warning}" "$BIN/realtime" >"${TMPDIR:-/tmp}/skiff-fanout-replica.log" 2>&1 &
second=$!
trap 'kill -TERM $second 2>/dev/null; wait $second 2>/dev/null || true' EXIT
# The gateways re-read the replica registry every second; the replica registers at start.
for _ in $(seq 50); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null && break
  sleep 0.2
done
sleep 2

FANOUT_PIDS="gateway:$gateway,realtime-1:$first,realtime-2:$second" "$BIN/FanoutBench"
