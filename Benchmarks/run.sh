#!/usr/bin/env bash
# Skiff benchmarks: wrk against GET /api/v1/auths/ and POST /api/v1/auths/signin.
#   Benchmarks/run.sh [BASE_URL]      (default http://127.0.0.1:8080)
# Environment: BENCH_EMAIL / BENCH_PASSWORD (admin; signed up if the system is empty),
# BENCH_USERS (sign-in users to rotate over, default 200), BENCH_DURATION (30s),
# BENCH_CONNECTIONS (32), BENCH_THREADS (2), BENCH_WARMUP (5s, 0 = none),
# BENCH_ONLY (auths_get | signin), BENCH_OUT (folder for raw wrk output; default a temp dir).
set -euo pipefail

BASE_URL="${1:-${BASE_URL:-http://127.0.0.1:8080}}"
BASE_URL="${BASE_URL%/}"
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DURATION="${BENCH_DURATION:-30s}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
WARMUP="${BENCH_WARMUP:-5s}"
ONLY="${BENCH_ONLY:-}"
OUT="${BENCH_OUT:-$(mktemp -d /tmp/skiff-bench.XXXXXX)}"
mkdir -p "$OUT"

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }
curl -fsS -o /dev/null "$BASE_URL/health" || { echo "no Skiff at $BASE_URL (GET /health failed)" >&2; exit 1; }

export BENCH_USERS="${BENCH_USERS:-200}"
echo "== preparing $BASE_URL (admin sign-in, $BENCH_USERS sign-in users)"
BENCH_TOKEN="$(python3 "$DIR/prepare.py" "$BASE_URL")"
export BENCH_TOKEN

# Prints one summary row from a wrk --latency report.
summarize() { # name file
  python3 - "$1" "$2" <<'PY'
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
def find(pattern, default="-"):
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else default
rps = find(r"^Requests/sec:\s+([\d.]+)")
avg = find(r"^\s+Latency\s+(\S+)")
p50 = find(r"^\s+50%\s+(\S+)")
p99 = find(r"^\s+99%\s+(\S+)")
total = find(r"^\s+(\d+) requests in")
non2xx = find(r"Non-2xx or 3xx responses:\s+(\d+)", "0")
errors = find(r"Socket errors:\s+(.*)$", "none")
print(f"| {name} | {rps} | {avg} | {p50} | {p99} | {total} | {non2xx} | {errors} |")
PY
}

run_wrk() { # name script path extra-args...
  local name="$1" script="$2" path="$3"; shift 3
  if [ "$WARMUP" != "0" ]; then
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$@" -s "$DIR/$script" "$BASE_URL$path" >/dev/null
  fi
  echo "== $name: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $* $BASE_URL$path"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" -s "$DIR/$script" "$BASE_URL$path" \
    | tee "$OUT/$name.txt"
}

rows=()
if [ -z "$ONLY" ] || [ "$ONLY" = auths_get ]; then
  run_wrk auths_get auths_get.lua /api/v1/auths/
  rows+=("$(summarize 'GET /api/v1/auths/' "$OUT/auths_get.txt")")
fi
if [ -z "$ONLY" ] || [ "$ONLY" = signin ]; then
  # bcrypt makes each sign-in cost tens to hundreds of ms: queued requests wait, so allow long
  # latencies; no warm-up, to keep within the per-e-mail sign-in limit.
  WARMUP=0 run_wrk signin signin.lua /api/v1/auths/signin --timeout "${BENCH_SIGNIN_TIMEOUT:-30s}"
  rows+=("$(summarize 'POST /api/v1/auths/signin' "$OUT/signin.txt")")
fi

echo
echo "== summary ($BASE_URL, $THREADS threads, $CONNECTIONS connections, $DURATION; raw output in $OUT)"
echo "| route | req/s | avg latency | p50 | p99 | requests | non-2xx | socket errors |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "== resident memory of local service processes"
"$DIR/memory.sh" || true
