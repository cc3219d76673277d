#!/usr/bin/env bash
# Prints the resident memory (VmRSS, and the peak VmHWM) of every running Skiff service process,
# found by executable name in /proc. Works for ./scripts/run and for docker compose on this host
# (containers' processes are visible in the host's /proc; run as root to see other users').
#   Benchmarks/memory.sh            # all six
#   Benchmarks/memory.sh auth chat  # some
set -euo pipefail
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(gateway auth chat files retrieval realtime)

kb() { awk -v k="$1" '$1 == k":" { print $2 }' "$2" 2>/dev/null || true; }

printf '%-10s %8s %10s %10s\n' service pid "rss MiB" "peak MiB"
total=0
for name in "${names[@]}"; do
  found=0
  for dir in /proc/[0-9]*; do
    [ "$(cat "$dir/comm" 2>/dev/null)" = "$name" ] || continue
    # Only our executables: the binary's file name must be the service name.
    exe=$(readlink "$dir/exe" 2>/dev/null || true)
    [ -z "$exe" ] || [ "$(basename "${exe% (deleted)}")" = "$name" ] || continue
    rss=$(kb VmRSS "$dir/status"); hwm=$(kb VmHWM "$dir/status")
    [ -n "$rss" ] || continue
    found=1; total=$((total + rss))
    awk -v n="$name" -v p="${dir#/proc/}" -v r="$rss" -v h="${hwm:-0}" \
      'BEGIN { printf "%-10s %8s %10.1f %10.1f\n", n, p, r / 1024, h / 1024 }'
  done
  [ $found -eq 1 ] || printf '%-10s %8s %10s %10s\n' "$name" - "not running" -
done
awk -v t="$total" 'BEGIN { printf "%-10s %8s %10.1f\n", "total", "", t / 1024 }'
