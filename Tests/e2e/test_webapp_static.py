"""The gateway serving the stock web app's files: the single-page fallback, caching headers and 304s, byte ranges,
gzip, the generated manifest, search description and changelog, and API paths that stay JSON 404s."""

from __future__ import annotations

import gzip
import re

import pytest
import requests

from stacklib import REPO, expect_error, expect_ok

pytestmark = pytest.mark.skipif(not (REPO / ".data" / "webui" / "frontend" / "index.html").exists(),
                                reason="no web app build (./scripts/test unpacks it into .data/webui)")


def get(stack, path: str, **headers) -> requests.Response:
    return requests.get(stack.base + path, headers=headers, allow_redirects=False, timeout=30)


def test_client_routes_answer_the_app_page(stack):
    page = get(stack, "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/_app/immutable/" in page.text and page.headers["cache-control"] == "no-cache"
    for path in ("/auth", "/c/0b6f2c2e-1234", "/workspace/knowledge/create", "/admin/users", "/notes"):
        other = get(stack, path)
        assert other.status_code == 200 and other.text == page.text, path
    # API paths stay JSON, never the page.
    for path in ("/api/nope", "/api/v1/nope/deeper", "/ws/nope"):
        expect_error(get(stack, path), 404, "Not Found")
    # A missing script is a 404, not the page; so is any path leaving the build.
    expect_error(get(stack, "/_app/immutable/missing.js"), 404, "Not Found")
    expect_error(get(stack, "/%2e%2e/%2e%2e/etc/passwd"), 404, "Not Found")
    expect_error(get(stack, "/..%2F%CC%81x"), 404, "Not Found")
    assert requests.post(stack.base + "/c/abc", timeout=10).status_code == 404


def test_files_carry_validators_ranges_and_gzip(stack):
    page = get(stack, "/").text
    chunk = sorted(set(re.findall(r'/_app/immutable/[^"\']+\.js', page)))[0]
    first = get(stack, chunk)
    assert first.status_code == 200 and first.headers["content-type"] == "text/javascript"
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    tag, modified = first.headers["etag"], first.headers["last-modified"]
    assert get(stack, chunk, **{"If-None-Match": tag}).status_code == 304
    assert get(stack, chunk, **{"If-Modified-Since": modified}).status_code == 304

    # A larger text file is gzipped for clients that take it, with the same bytes inside.
    css = "/static/custom.css" if len(get(stack, "/static/custom.css").content) > 512 else None
    candidates = [p for p in re.findall(r'/_app/immutable/[^"\']+\.(?:js|css)', page)]
    big = next(p for p in [css, *candidates] if p and len(get(stack, p).content) > 512)
    plain = get(stack, big, **{"Accept-Encoding": "identity"})
    zipped = requests.get(stack.base + big, headers={"Accept-Encoding": "gzip"}, stream=True, timeout=30)
    raw = zipped.raw.read(decode_content=False)
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(raw) == plain.content and len(raw) < len(plain.content)
    assert "content-encoding" not in plain.headers
    assert get(stack, big, **{"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}).status_code == 304

    # Byte ranges (the onboarding video).
    video = get(stack, "/assets/welcome.mp4")
    size = len(video.content)
    part = get(stack, "/assets/welcome.mp4", Range="bytes=10-109")
    assert part.status_code == 206 and part.content == video.content[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{size}"
    tail = get(stack, "/assets/welcome.mp4", Range="bytes=-5")
    assert tail.status_code == 206 and tail.content == video.content[-5:]
    outside = get(stack, "/assets/welcome.mp4", Range=f"bytes={size + 10}-")
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{size}"

    # The static folder, and HEAD.
    favicon = get(stack, "/static/favicon.png")
    assert favicon.status_code == 200 and favicon.headers["content-type"] == "image/png"
    head = requests.head(stack.base + "/static/favicon.png", timeout=10)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(favicon.content)


def test_generated_manifest_search_and_changelog(stack):
    manifest = expect_ok(get(stack, "/manifest.json"))
    assert list(manifest) == ["name", "short_name", "description", "start_url", "display", "background_color", "icons",
                              "share_target"]
    assert manifest["name"] == "Open WebUI" and manifest["icons"][0]["src"] == "/static/logo.png"
    search = get(stack, "/opensearch.xml")
    assert search.headers["content-type"] == "application/xml" and "<ShortName>Open WebUI</ShortName>" in search.text
    changelog = expect_ok(get(stack, "/api/changelog"))
    assert list(changelog)[0] == "0.12.4" and len(changelog) == 5
    entry = changelog["0.12.4"]
    assert entry["date"] == "2026-10-25" and list(entry)[:2] == ["date", "added"]
    item = entry["added"][0]
    assert list(item) == ["title", "content", "raw"] and item["raw"].startswith("<li>") and "<strong>" in item["raw"]


def test_small_routes_the_app_calls(stack, admin):
    token = admin["token"]
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/terminals/", "/api/v1/channels/"):
        assert requests.get(stack.base + path, headers=headers, timeout=10).json() == []
        expect_error(get(stack, path), 401, "Not authenticated")
    updates = requests.get(stack.base + "/api/version/updates", headers=headers, timeout=10).json()
    assert updates == {"current": "0.12.4", "latest": "0.12.4"}
    mfa = requests.get(stack.base + "/api/v1/auths/mfa/status", headers=headers, timeout=10)
    assert mfa.json() == {"enabled": False, "required": False, "recovery_codes_remaining": 0}
