"""Hybrid query latency over a large knowledge base (standard library, `requests` and `psql`).

    python3 Benchmarks/query_bench.py SKIFF_URL TOKEN DATABASE_URL

Creates a knowledge base through the API, fills its collection with BENCH_CHUNKS (100,000) chunks straight in
Postgres (about 150 words of a 3,000-word vocabulary each, with random embeddings of EMBED_DIMENSIONS (384)
dimensions, as many as the stand-in engine gives, and the HNSW index the service would make), then sends `POST /api/v1/retrieval/query/collection` (k 3, five vocabulary words)
from BENCH_CONCURRENCY threads (`1,4`: one run with one thread, then one with four) for BENCH_SECONDS (20) after a 3 s warm-up. Each query is embedded by the
configured engine (Benchmarks/stream_provider.py), searched by vector and by full text, and fused. Prints queries
per second and latency p50/p90/p99.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time

import requests

CHUNKS = int(os.environ.get("BENCH_CHUNKS", "100000"))
CONCURRENCIES = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,4").split(",")]
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
DIMS = int(os.environ.get("EMBED_DIMENSIONS", "384"))
VOCABULARY = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vu", "zo") for b in range(300)]


def psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql], check=True, capture_output=True,
                          text=True).stdout


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def main() -> None:
    base, token, database = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    headers = {"Authorization": f"Bearer {token}"}
    kb = requests.post(f"{base}/api/v1/knowledge/create", headers=headers,
                       json={"name": "Bench", "description": "query benchmark"}).json()["id"]
    words = "ARRAY[" + ",".join(f"'{w}'" for w in VOCABULARY) + "]"
    started = time.perf_counter()
    psql(database, f"""
        INSERT INTO retrieval.chunks (id, collection, file_id, text, metadata, embedding, dims)
        SELECT gen_random_uuid()::text, '{kb}', NULL,
            (SELECT string_agg(({words})[1 + floor(random() * {len(VOCABULARY)})::int], ' ') FROM generate_series(1, 150 + g % 2)),
            jsonb_build_object('name', 'bench.md', 'start_index', g),
            (SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIMS}) WHERE g.g > 0)::vector, {DIMS}
        FROM generate_series(1, {CHUNKS}) g""")
    psql(database, f"CREATE INDEX IF NOT EXISTS chunks_vectors_{DIMS} ON retrieval.chunks "
                   f"USING hnsw ((embedding::vector({DIMS})) vector_cosine_ops) WITH (m = 16, ef_construction = 32) WHERE dims = {DIMS} AND collection NOT LIKE 'file-%'")
    psql(database, "ANALYZE retrieval.chunks")
    print(f"{CHUNKS} chunks loaded and indexed in {time.perf_counter() - started:.0f} s")

    for concurrency in CONCURRENCIES:
        run(base, headers, kb, concurrency)


def run(base: str, headers: dict, kb: str, concurrency: int) -> None:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    warm_until = time.perf_counter() + 3
    stop_at = warm_until + SECONDS

    def worker(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        s = requests.Session()
        while time.perf_counter() < stop_at:
            query = " ".join(rng.choice(VOCABULARY) for _ in range(5))
            t = time.perf_counter()
            r = s.post(f"{base}/api/v1/retrieval/query/collection", headers=headers,
                       json={"collection_names": [kb], "query": query, "k": 3})
            elapsed = time.perf_counter() - t
            if t >= warm_until:
                with lock:
                    latencies.append(elapsed)
                    errors += r.status_code != 200 or len(r.json()["documents"][0]) == 0

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{len(latencies)} queries, {concurrency} threads, {len(latencies) / SECONDS:.0f} queries/s, "
          f"{errors} errors or empty; p50 {percentile(latencies, 50):.1f} ms, p90 {percentile(latencies, 90):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms")

if __name__ == "__main__":
    main()
