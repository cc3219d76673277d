"""Files through the gateway: multipart uploads streamed to UPLOAD_DIR with their SHA-256, the real server's file
shapes, lists, glob search, raw content with its headers, rename, delete, access by other users (404 as the
original), size limits and malformed uploads."""

from __future__ import annotations

import hashlib
import json
import os

from stacklib import ACCESS_PROHIBITED, NOT_FOUND, expect_422, expect_error, expect_ok

API = "/api/v1/files"
RESPONSE_KEYS = ["id", "user_id", "hash", "filename", "data", "meta", "created_at", "updated_at"]


def upload(stack, user, name="notes.txt", data=b"bananas are yellow\n", content_type="text/plain", params=None, metadata=None):
    form = {"metadata": json.dumps(metadata)} if metadata is not None else None
    return stack.post(f"{API}/", user["token"], files={"file": (name, data, content_type)}, data=form, params=params)


def test_upload_shapes_and_bytes(stack, make_user):
    user = make_user()
    data = b"bananas are yellow\n" * 1000
    body = expect_ok(upload(stack, user, data=data, metadata={"source": "test"}))
    assert list(body) == RESPONSE_KEYS + ["status", "path"] and body["status"] is True
    assert body["data"] == {"status": "pending"} and body["hash"] is None and body["filename"] == "notes.txt"
    assert list(body["meta"]) == ["name", "content_type", "size", "file_hash", "data"]
    assert body["meta"]["size"] == len(data) and body["meta"]["file_hash"] == hashlib.sha256(data).hexdigest()
    assert body["meta"]["data"] == {"source": "test"} and body["meta"]["content_type"] == "text/plain"
    assert body["path"] == f"{body['id']}_notes.txt" and not body["path"].startswith("/")
    stored = os.path.join(stack.env["DATA_DIR"], "uploads", body["path"])
    with open(stored, "rb") as f:
        assert f.read() == data

    got = expect_ok(stack.get(f"{API}/{body['id']}", user["token"]))
    assert list(got) == ["id", "user_id", "hash", "filename", "path", "data", "meta", "created_at", "updated_at"]
    r = stack.get(f"{API}/{body['id']}/content", user["token"])
    assert r.status_code == 200 and r.content == data and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert "content-disposition" not in r.headers
    r = stack.get(f"{API}/{body['id']}/content", user["token"], params={"attachment": "true"})
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''notes.txt"
    assert expect_ok(stack.get(f"{API}/{body['id']}/process/status", user["token"])) == {"status": "pending"}

    plain = expect_ok(upload(stack, user, name="raw file.bin", data=b"\x00\x01", content_type="application/octet-stream",
                             params={"process": "false"}))
    assert list(plain) == RESPONSE_KEYS and plain["data"] == {}
    r = stack.get(f"{API}/{plain['id']}/content", user["token"])
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''raw%20file.bin"


def test_lists_search_rename_delete_and_access(stack, make_user):
    alice, bob = make_user(), make_user()
    a = expect_ok(upload(stack, alice, name="Report-2026.TXT"))
    b = expect_ok(upload(stack, alice, name="photo.md", data=b"# hi"))
    listed = expect_ok(stack.get(f"{API}/", alice["token"]))
    assert listed["total"] == 2 and {f["id"] for f in listed["items"]} == {a["id"], b["id"]}
    assert [f["updated_at"] for f in listed["items"]] == sorted((f["updated_at"] for f in listed["items"]), reverse=True)
    assert expect_ok(stack.get(f"{API}/", bob["token"]))["total"] == 0
    assert [f["id"] for f in expect_ok(stack.get(f"{API}/search", alice["token"], params={"filename": "report*.txt"}))] == [a["id"]]
    expect_error(stack.get(f"{API}/search", alice["token"], params={"filename": "report"}), 404,
                 "No files found matching the pattern.")
    expect_422(stack.get(f"{API}/search", alice["token"]))
    expect_422(stack.get(f"{API}/", alice["token"], params={"page": 0}))
    assert expect_ok(stack.get(f"{API}/count", alice["token"])) == 2
    assert expect_ok(stack.get(f"{API}/user/count", alice["token"])) == 2
    assert [f["id"] for f in expect_ok(stack.get(f"{API}/user/search", alice["token"], params={"filename": "*.md"}))] == [b["id"]]
    assert expect_ok(stack.get(f"{API}/user/search", bob["token"])) == []

    for path in ("", "/content", "/data/content", "/process/status"):
        expect_error(stack.get(f"{API}/{a['id']}{path}", bob["token"]), 404, NOT_FOUND)
    expect_error(stack.delete(f"{API}/{a['id']}", bob["token"]), 404, NOT_FOUND)
    expect_error(stack.get(f"{API}/nope", alice["token"]), 404, NOT_FOUND)

    from test_retrieval import processed
    processed(stack, alice, a["id"])
    renamed = expect_ok(stack.post(f"{API}/{a['id']}/rename", alice["token"], json={"filename": "final.txt"}))
    assert renamed["filename"] == "final.txt" and renamed["meta"]["name"] == "final.txt"
    expect_422(stack.post(f"{API}/{a['id']}/rename", alice["token"], json={}))
    updated = expect_ok(stack.post(f"{API}/{a['id']}/data/content/update", alice["token"], json={"content": "new text"}))
    assert updated == {"content": "new text"}
    assert expect_ok(stack.get(f"{API}/{a['id']}/data/content", alice["token"])) == {"content": "new text"}
    assert expect_ok(stack.get(f"{API}/{a['id']}", alice["token"]))["hash"] == hashlib.sha256(b"new text").hexdigest()
    expect_error(stack.post(f"{API}/{a['id']}/data/content/update", alice["token"], json={"content": "  "}), 400)

    assert expect_ok(stack.delete(f"{API}/{a['id']}", alice["token"])) == {"message": "File deleted successfully"}
    expect_error(stack.get(f"{API}/{a['id']}", alice["token"]), 404)
    assert not os.path.exists(os.path.join(stack.env["DATA_DIR"], "uploads", a["id"] + "_Report-2026.TXT"))
    expect_error(stack.delete(f"{API}/all", alice["token"]), 401, ACCESS_PROHIBITED)


def test_bad_uploads(stack, make_user, make_stack):
    user = make_user()
    expect_422(stack.post(f"{API}/", user["token"], data={"x": "1"}))
    expect_422(stack.post(f"{API}/", user["token"], json={"file": "x"}))
    expect_error(upload(stack, user, data=b""), 400,
                 "The content provided is empty. Please ensure that there is text or data present before proceeding.")
    r = stack.post(f"{API}/", user["token"], files={"file": ("a.txt", b"x", "text/plain")}, data={"metadata": "{nope"})
    expect_error(r, 400, "[ERROR: Invalid metadata format]")
    r = stack.post(f"{API}/", user["token"], data=b"--b\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 422, r.text
    assert expect_ok(stack.get(f"{API}/", user["token"]))["total"] == 0

    # Cut off before the closing boundary, or a boundary longer than the RFC's 70 characters: no file.
    r = stack.post(f"{API}/", user["token"], data=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello',
                   headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 422, r.text
    long = "-" * 80
    r = stack.post(f"{API}/", user["token"], data=f"--{long}\r\n".encode(),
                   headers={"Content-Type": f"multipart/form-data; boundary={long}"})
    assert r.status_code == 422, r.text
    # Two file parts: the first one counts.
    body = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="one.txt"\r\nContent-Type: text/plain\r\n\r\nfirst'
            b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="two.txt"\r\n\r\nsecond\r\n--b--\r\n')
    two = expect_ok(stack.post(f"{API}/", user["token"], data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}))
    assert two["filename"] == "one.txt" and two["meta"]["size"] == 5
    assert expect_ok(stack.get(f"{API}/", user["token"]))["total"] == 1

    s = make_stack(RAG_FILE_MAX_SIZE="1", RAG_ALLOWED_FILE_EXTENSIONS="txt,md")
    admin = s.signup_admin()
    expect_error(upload(s, admin, data=b"x" * (1024 * 1024 + 1)), 413,
                 "Oops! The file you're trying to upload is too large. Please upload a file that is less than 1 MB.")
    expect_error(upload(s, admin, name="x.pdf", data=b"%PDF"), 400, "[ERROR: File type pdf is not allowed]")
    expect_ok(upload(s, admin, name="x.pdf", data=b"%PDF", params={"process": "false"}))
    assert expect_ok(s.get(f"{API}/", admin["token"]))["total"] == 1
    assert os.listdir(os.path.join(s.env["DATA_DIR"], "uploads")) == [f"{expect_ok(s.get(f'{API}/', admin['token']))['items'][0]['id']}_x.pdf"]
    assert expect_ok(s.delete(f"{API}/all", admin["token"])) == {"message": "All files deleted successfully"}
    assert expect_ok(s.get(f"{API}/", admin["token"]))["total"] == 0


def test_html_pages_only_from_admins(stack, admin, make_user):
    user = make_user()
    page = b"<html><script>steal()</script></html>"
    mine = expect_ok(upload(stack, user, name="page.html", data=page, content_type="text/html"))
    expect_error(stack.get(f"{API}/{mine['id']}/content/html", admin["token"]), 404, NOT_FOUND)
    expect_error(stack.get(f"{API}/{mine['id']}/content/html", user["token"]), 404, NOT_FOUND)
    theirs = expect_ok(upload(stack, admin, name="page.html", data=page, content_type="text/html"))
    r = stack.get(f"{API}/{theirs['id']}/content/html", admin["token"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and r.content == page
