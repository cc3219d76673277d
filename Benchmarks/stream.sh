#!/usr/bin/env bash
# What Skiff adds to a streamed completion: the same streamed chat completion straight to a stand-in provider
# and through Skiff's gateway, 32 concurrent streams each way; prints time to first byte and total time.
#   Benchmarks/stream.sh [BASE_URL]      (default http://127.0.0.1:8080)
# The Skiff at BASE_URL must have the stand-in provider among its connections, e.g. its chat service started
# with OPENAI_API_BASE_URLS=http://127.0.0.1:8099/v1 (or added by an admin through /openai/config/update).
# The provider (Benchmarks/stream_provider.py) is started here on BENCH_PROVIDER_PORT (8099) unless one answers
# there already. Environment: BENCH_STREAMS (32), BENCH_SECONDS (20), BENCH_WARMUP (3), CHUNK_DELAY_MS (5, the
# provider's pause between chunks), BENCH_EMAIL / BENCH_PASSWORD (the admin, as for run.sh).
set -euo pipefail
BASE_URL="${1:-${BASE_URL:-http://127.0.0.1:8080}}"
BASE_URL="${BASE_URL%/}"
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${BENCH_PROVIDER_PORT:-8099}"
PROVIDER="http://127.0.0.1:$PORT/v1"

curl -fsS -o /dev/null "$BASE_URL/health" || { echo "no Skiff at $BASE_URL (GET /health failed)" >&2; exit 1; }
if ! curl -fsS -o /dev/null "$PROVIDER/models" 2>/dev/null; then
  python3 "$DIR/stream_provider.py" "$PORT" >/dev/null &
  provider_pid=$!
  trap 'kill $provider_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do curl -fsS -o /dev/null "$PROVIDER/models" 2>/dev/null && break; sleep 0.1; done
fi
TOKEN="$(BENCH_PREPARE="" python3 "$DIR/prepare.py" "$BASE_URL")"
curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE_URL/api/models?refresh=true" | grep -q '"bench-model"' || {
  echo "Skiff at $BASE_URL does not list bench-model: add $PROVIDER to its OpenAI connections" >&2; exit 1; }
python3 "$DIR/stream_bench.py" "$PROVIDER" "$BASE_URL" "$TOKEN" bench-model
