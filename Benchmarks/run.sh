#!/usr/bin/env bash
# Skiff benchmarks: wrk against GET /api/v1/auths/, POST /api/v1/auths/signin, GET /api/v1/chats/?page=1,
# GET /api/v1/chats/<id> and POST /api/v1/chats/new (in that order; chat_new last, as it adds chats).
#   Benchmarks/run.sh [BASE_URL]      (default http://127.0.0.1:8080)
# Environment: BENCH_EMAIL / BENCH_PASSWORD (admin; signed up if the system is empty),
# BENCH_USERS (sign-in users to rotate over, default 200), BENCH_CHATS (chats the admin is given, 100),
# BENCH_DURATION (30s), BENCH_CONNECTIONS (32), BENCH_THREADS (2), BENCH_WARMUP (5s, 0 = none),
# BENCH_ONLY (one or more, comma- or space-separated, of: auths_get signin chats_list chat_get chat_new;
# "chats" = the three chat ones), BENCH_OUT (folder for raw wrk output; default a temp dir).
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

ALL=(auths_get signin chats_list chat_get chat_new)
selected=()
read -r -a names <<<"${ONLY//,/ }"
for name in ${names[@]+"${names[@]}"}; do
  case "$name" in
    auths_get | signin | chats_list | chat_get | chat_new) selected+=("$name") ;;
    chats) selected+=(chats_list chat_get chat_new) ;;
    *) echo "BENCH_ONLY: unknown benchmark '$name' (${ALL[*]}, chats)" >&2; exit 1 ;;
  esac
done
[ ${#selected[@]} -gt 0 ] || selected=("${ALL[@]}")
wanted() { [[ " ${selected[*]} " == *" $1 "* ]]; }

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }
curl -fsS -o /dev/null "$BASE_URL/health" || { echo "no Skiff at $BASE_URL (GET /health failed)" >&2; exit 1; }

export BENCH_USERS="${BENCH_USERS:-200}"
export BENCH_CHATS="${BENCH_CHATS:-100}"
# prepare.py only does what the selected benchmarks need: sign-in users, the admin's chats.
steps=()
if wanted signin; then steps+=(users); fi
if wanted chats_list || wanted chat_get || wanted chat_new; then steps+=(chats); fi
export BENCH_PREPARE="${steps[*]}"
export BENCH_CHAT_ID_FILE="$OUT/chat_id"
rm -f "$BENCH_CHAT_ID_FILE"
echo "== preparing $BASE_URL (admin sign-in${BENCH_PREPARE:+; $BENCH_PREPARE})"
BENCH_TOKEN="$(python3 "$DIR/prepare.py" "$BASE_URL")"
export BENCH_TOKEN
BENCH_CHAT_ID=""
if [ -s "$BENCH_CHAT_ID_FILE" ]; then BENCH_CHAT_ID="$(head -n 1 "$BENCH_CHAT_ID_FILE")"; fi
export BENCH_CHAT_ID
if wanted chat_get && [ -z "$BENCH_CHAT_ID" ]; then
  echo "prepare.py wrote no chat id to $BENCH_CHAT_ID_FILE" >&2; exit 1
fi

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
# chat_new.lua counts every status but 200 itself (wrk's own line counts only >= 400).
non2xx = find(r"^Non-200 responses:\s+(\d+)", None) or find(r"Non-2xx or 3xx responses:\s+(\d+)", "0")
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
if wanted auths_get; then
  run_wrk auths_get auths_get.lua /api/v1/auths/
  rows+=("$(summarize 'GET /api/v1/auths/' "$OUT/auths_get.txt")")
fi
if wanted signin; then
  # bcrypt makes each sign-in cost tens to hundreds of ms: queued requests wait, so allow long
  # latencies; no warm-up, to keep within the per-e-mail sign-in limit.
  WARMUP=0 run_wrk signin signin.lua /api/v1/auths/signin --timeout "${BENCH_SIGNIN_TIMEOUT:-30s}"
  rows+=("$(summarize 'POST /api/v1/auths/signin' "$OUT/signin.txt")")
fi
if wanted chats_list; then
  run_wrk chats_list chats_list.lua '/api/v1/chats/?page=1'
  rows+=("$(summarize 'GET /api/v1/chats/?page=1' "$OUT/chats_list.txt")")
fi
if wanted chat_get; then
  run_wrk chat_get chat_get.lua "/api/v1/chats/$BENCH_CHAT_ID"
  rows+=("$(summarize 'GET /api/v1/chats/{id}' "$OUT/chat_get.txt")")
fi
if wanted chat_new; then
  # Last: every request (warm-up included) adds a chat to the admin's history.
  run_wrk chat_new chat_new.lua /api/v1/chats/new
  rows+=("$(summarize 'POST /api/v1/chats/new' "$OUT/chat_new.txt")")
fi

echo
echo "== summary ($BASE_URL, $THREADS threads, $CONNECTIONS connections, $DURATION; raw output in $OUT)"
echo "| route | req/s | avg latency | p50 | p99 | requests | non-2xx (chat_new: non-200) | socket errors |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "== resident memory of local service processes"
"$DIR/memory.sh" || true
