"""Cold load of the stock web app through the gateway (Playwright for Python, Debian's chromium).

    python3 Benchmarks/webapp_load.py SKIFF_URL EMAIL PASSWORD

Signs in through the API, then BENCH_RUNS (5) times opens a new browser context (empty cache) already holding the
token, loads `/` and waits until the chat input is ready. Prints, as medians: requests, bytes transferred (bodies as
sent, plus headers) and milliseconds until the input is ready; once as the browser asks (gzip accepted) and once
with `Accept-Encoding: identity`. The account should be past the first-login notices (sign in once in a browser).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import requests
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("SKIFF_CHROMIUM", "/usr/lib/chromium/chromium")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def load(browser, base: str, token: str, extra_headers: dict) -> tuple[int, int, float, int]:
    context = browser.new_context(extra_http_headers=extra_headers)
    context.add_init_script(f"localStorage.setItem('token', {token!r}); localStorage.setItem('locale', 'en-US');")
    page = context.new_page()
    responses = []
    page.on("requestfinished", lambda request: responses.append(request))
    started = time.perf_counter()
    page.goto(base + "/")
    page.locator("#chat-input").wait_for(state="visible", timeout=60_000)
    ready = (time.perf_counter() - started) * 1000
    page.wait_for_load_state("networkidle")
    transferred = 0
    gzipped = 0
    for request in responses:
        sizes = request.sizes()
        transferred += max(0, sizes["responseBodySize"]) + max(0, sizes["responseHeadersSize"])
        response = request.response()
        if response and response.headers.get("content-encoding") == "gzip":
            gzipped += 1
    context.close()
    return len(responses), transferred, ready, gzipped


def main() -> None:
    base, email, password = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    token = requests.post(f"{base}/api/v1/auths/signin", json={"email": email, "password": password}, timeout=30).json()["token"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        load(browser, base, token, {})  # warm the server's compressed copies once
        for label, headers in (("gzip", {}), ("identity", {"Accept-Encoding": "identity"})):
            runs = [load(browser, base, token, headers) for _ in range(RUNS)]
            count = statistics.median(r[0] for r in runs)
            size = statistics.median(r[1] for r in runs)
            ready = statistics.median(r[2] for r in runs)
            gzipped = statistics.median(r[3] for r in runs)
            print(f"{label:8s}: {count:.0f} requests ({gzipped:.0f} gzipped), {size / 1e6:.2f} MB transferred, "
                  f"chat input ready after {ready:.0f} ms (median of {RUNS}; min {min(r[2] for r in runs):.0f}, "
                  f"max {max(r[2] for r in runs):.0f})")
        browser.close()


if __name__ == "__main__":
    main()
