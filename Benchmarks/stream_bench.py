"""What Skiff adds to a streamed completion (standard library only).

    python3 Benchmarks/stream_bench.py PROVIDER_URL SKIFF_URL TOKEN [MODEL]

Runs the same streamed chat completion two ways, one after the other: straight to the provider
(`PROVIDER_URL/chat/completions`, e.g. http://127.0.0.1:8099/v1) and through Skiff's gateway
(`SKIFF_URL/api/chat/completions` with `Authorization: Bearer TOKEN`). Each way: BENCH_STREAMS (32) concurrent
keep-alive connections, each sending requests back to back for BENCH_SECONDS (20) after a BENCH_WARMUP (3)
second warm-up. For every request it records the time to the first `data:` byte (TTFB) and to the end of
`data: [DONE]` (total). Prints p50/p90/p99 of both, for both ways, and the difference (what Skiff adds).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

STREAMS = int(os.environ.get("BENCH_STREAMS", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))


async def read_chunked_stream(reader: asyncio.StreamReader, started: float) -> tuple[float, float, int]:
    """Reads one chunked SSE response; returns (ttfb, total, status)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}
    ttfb = None
    if b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
        now = time.perf_counter()
        return now - started, now - started, status
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        data = await reader.readexactly(size + 2)
        if ttfb is None and b"data:" in data:
            ttfb = time.perf_counter() - started
    return ttfb or 0.0, time.perf_counter() - started, status


async def worker(url: str, headers: dict, body: bytes, until: float, record: list, warm_until: float) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    while time.perf_counter() < until:
        started = time.perf_counter()
        writer.write(head + body)
        await writer.drain()
        ttfb, total, status = await read_chunked_stream(reader, started)
        if started >= warm_until:
            record.append((ttfb, total, status))
    writer.close()


async def run(url: str, headers: dict, body: bytes) -> list:
    record: list = []
    start = time.perf_counter()
    warm_until = start + WARMUP
    until = warm_until + SECONDS
    await asyncio.gather(*(worker(url, headers, body, until, record, warm_until) for _ in range(STREAMS)))
    return record


def percentile(values: list, p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def summary(name: str, record: list) -> dict:
    errors = sum(1 for r in record if r[2] != 200)
    row = {"name": name, "requests": len(record), "errors": errors, "rps": len(record) / SECONDS}
    for index, label in ((0, "ttfb"), (1, "total")):
        for p in (50, 90, 99):
            row[f"{label}_p{p}"] = percentile([r[index] for r in record], p)
    return row


def main() -> None:
    provider, skiff, token = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3]
    model = sys.argv[4] if len(sys.argv) > 4 else "bench-model"
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "Say hi"}]}).encode()
    direct = summary("direct", asyncio.run(run(provider + "/chat/completions", {}, body)))
    through = summary("skiff", asyncio.run(run(skiff + "/api/chat/completions", {"Authorization": f"Bearer {token}"}, body)))
    print(f"{STREAMS} concurrent streams, {SECONDS:.0f} s each way (after {WARMUP:.0f} s warm-up); milliseconds")
    print(f"{'':8} {'req/s':>8} {'errors':>6} {'ttfb p50':>9} {'p90':>7} {'p99':>7} {'total p50':>10} {'p90':>7} {'p99':>7}")
    for row in (direct, through):
        print(f"{row['name']:8} {row['rps']:8.0f} {row['errors']:6d} {row['ttfb_p50']:9.2f} {row['ttfb_p90']:7.2f} "
              f"{row['ttfb_p99']:7.2f} {row['total_p50']:10.2f} {row['total_p90']:7.2f} {row['total_p99']:7.2f}")
    added = {k: through[k] - direct[k] for k in direct if k.startswith(("ttfb", "total"))}
    print(f"{'added':8} {'':8} {'':6} {added['ttfb_p50']:9.2f} {added['ttfb_p90']:7.2f} {added['ttfb_p99']:7.2f} "
          f"{added['total_p50']:10.2f} {added['total_p90']:7.2f} {added['total_p99']:7.2f}")


if __name__ == "__main__":
    main()
