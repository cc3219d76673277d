"""Ingestion: Markdown files uploaded through the gateway until every one is `completed` (standard library and
`requests`).

    python3 Benchmarks/ingest_bench.py SKIFF_URL TOKEN

Uploads BENCH_FILES (1,000) generated Markdown files of about 5 KB each (`POST /api/v1/files/`, processed in the
background as the web app asks) from BENCH_CONCURRENCY (8) threads, then polls the file list until all are
`completed` or `failed`. Prints files per second from the first upload to the last completed file, and the upload
latency p50/p99 (the time until the upload's answer). BENCH_KNOWLEDGE=1 uploads into a new knowledge base (the
`metadata.knowledge_id` of the upload form), whose chunks also go into the HNSW graph. The Skiff under test should embed with a stand-in engine
(`RAG_EMBEDDING_ENGINE=openai`, `RAG_OPENAI_API_BASE_URL` pointing at Benchmarks/stream_provider.py).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

FILES = int(os.environ.get("BENCH_FILES", "1000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
KNOWLEDGE = os.environ.get("BENCH_KNOWLEDGE", "") == "1"
VOCABULARY = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vu", "zo") for b in range(300)]


def document(rng: random.Random, index: int) -> bytes:
    parts = [f"# Document {index}\n"]
    while sum(len(p) for p in parts) < 5000:
        parts.append(f"\n## Section {len(parts)}\n\n")
        parts.append(" ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(40, 90))) + ".\n")
    return "".join(parts).encode()


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def main() -> None:
    base, token = sys.argv[1].rstrip("/"), sys.argv[2]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(7)
    form: dict = {}
    if KNOWLEDGE:
        kb = requests.post(f"{base}/api/v1/knowledge/create", headers=headers,
                           json={"name": "Ingest", "description": "ingestion benchmark"}).json()["id"]
        form = {"metadata": json.dumps({"knowledge_id": kb})}
    docs = [document(rng, i) for i in range(FILES)]
    latencies: list[float] = []
    ids: list[str] = []
    lock = threading.Lock()
    session = threading.local()

    def upload(i: int) -> None:
        if not hasattr(session, "s"):
            session.s = requests.Session()
        started = time.perf_counter()
        r = session.s.post(f"{base}/api/v1/files/", headers=headers,
                           files={"file": (f"doc-{i}.md", docs[i], "text/markdown")}, data=form)
        elapsed = time.perf_counter() - started
        r.raise_for_status()
        with lock:
            latencies.append(elapsed)
            ids.append(r.json()["id"])

    start = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(upload, range(FILES)))
    uploaded = time.perf_counter() - start
    pending = set(ids)
    failed = 0
    s = requests.Session()
    while pending:
        page = 1
        while True:
            body = s.get(f"{base}/api/v1/files/", headers=headers, params={"page": page, "content": "false"}).json()
            for item in body["items"]:
                if item["id"] in pending and item["data"].get("status") in ("completed", "failed"):
                    pending.discard(item["id"])
                    failed += item["data"]["status"] == "failed"
            if len(body["items"]) < 50:
                break
            page += 1
        if pending:
            time.sleep(1)
    total = time.perf_counter() - start
    print(f"{FILES} Markdown files of ~5 KB, {CONCURRENCY} uploading threads" + (", into a knowledge base" if KNOWLEDGE else ""))
    print(f"uploads: {uploaded:.1f} s ({FILES / uploaded:.0f} files/s), latency p50 {percentile(latencies, 50):.1f} ms, "
          f"p99 {percentile(latencies, 99):.1f} ms")
    print(f"all processed after {total:.1f} s: {FILES / total:.0f} files/s ingested, {failed} failed")


if __name__ == "__main__":
    main()
