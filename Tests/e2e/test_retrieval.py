"""Files processed by retrieval (text extracted, split, stored with full text and embeddings), knowledge bases
and their files, queries over files and collections, and who may search what."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from fake_provider import FakeProvider
from stacklib import ACCESS_PROHIBITED, NOT_FOUND, expect_422, expect_error, expect_ok, psql

FILES = "/api/v1/files"
KNOWLEDGE = "/api/v1/knowledge"
RETRIEVAL = "/api/v1/retrieval"

CODEWORD = "The secret codeword is PELICAN-42. Bananas grow in Coralia.\n"


def upload(stack, user, name="notes.md", data=CODEWORD.encode(), content_type="text/markdown", metadata=None):
    form = {"metadata": json.dumps(metadata)} if metadata is not None else None
    return expect_ok(stack.post(f"{FILES}/", user["token"], files={"file": (name, data, content_type)}, data=form))


def processed(stack, user, file_id, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = expect_ok(stack.get(f"{FILES}/{file_id}/process/status", user["token"]))["status"]
        if status in ("completed", "failed"):
            return expect_ok(stack.get(f"{FILES}/{file_id}", user["token"]))
        time.sleep(0.1)
    raise AssertionError(f"file {file_id} not processed in {timeout}s")


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows `text` (enough for pdftotext)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return out


def test_files_are_processed(stack, make_user):
    user = make_user()
    f = upload(stack, user)
    got = processed(stack, user, f["id"])
    assert got["data"]["status"] == "completed" and got["data"]["content"] == CODEWORD
    assert got["hash"] == hashlib.sha256(CODEWORD.encode()).hexdigest()
    assert expect_ok(stack.get(f"{FILES}/{f['id']}/data/content", user["token"])) == {"content": CODEWORD}
    r = stack.get(f"{FILES}/{f['id']}/process/status", user["token"], params={"stream": "true"})
    assert r.headers["content-type"].startswith("text/event-stream") and r.text == 'data: {"status":"completed"}\n\n'
    # Only the content flag's `content` goes from lists.
    item = expect_ok(stack.get(f"{FILES}/", user["token"], params={"content": "false"}))["items"][0]
    assert item["data"] == {"status": "completed", "error": None}

    pdf = upload(stack, user, name="doc.pdf", data=minimal_pdf("Pelicans fly over Coralia"), content_type="application/pdf")
    assert "Pelicans fly over Coralia" in processed(stack, user, pdf["id"])["data"]["content"]
    image = upload(stack, user, name="pic.png", data=b"\x89PNG\r\n\x1a\n\x00\x00", content_type="image/png")
    failed = processed(stack, user, image["id"])
    assert failed["data"]["status"] == "failed" and "not supported" in failed["data"]["error"]
    r = stack.get(f"{FILES}/{image['id']}/process/status", user["token"], params={"stream": "true"})
    assert json.loads(r.text.removeprefix("data: "))["status"] == "failed"

    hits = expect_ok(stack.post(f"{RETRIEVAL}/query/doc", user["token"],
                                json={"collection_name": f"file-{f['id']}", "query": "secret codeword"}))
    assert list(hits) == ["ids", "documents", "metadatas", "distances"]
    assert "PELICAN-42" in hits["documents"][0][0]
    meta = hits["metadatas"][0][0]
    assert meta["file_id"] == f["id"] and meta["name"] == "notes.md" and meta["created_by"] == user["id"]
    assert meta["start_index"] == 0 and meta["hash"] == hashlib.sha256(CODEWORD.encode()).hexdigest()
    assert 0 < hits["distances"][0][0] <= 1


def test_knowledge_bases(stack, admin, make_user):
    token = admin["token"]
    kb = expect_ok(stack.post(f"{KNOWLEDGE}/create", token, json={"name": "Docs", "description": "shared docs"}))
    assert list(kb) == ["id", "user_id", "name", "description", "meta", "access_grants", "created_at", "updated_at", "files"]
    f = upload(stack, admin)
    processed(stack, admin, f["id"])
    added = expect_ok(stack.post(f"{KNOWLEDGE}/{kb['id']}/file/add", token, json={"file_id": f["id"]}))
    assert [x["id"] for x in added["files"]] == [f["id"]] and added["write_access"] is False
    listed = expect_ok(stack.get(f"{KNOWLEDGE}/{kb['id']}/files", token))
    assert listed["total"] == 1 and listed["items"][0]["filename"] == "notes.md" and listed["directories"] == []
    result = expect_ok(stack.post(f"{RETRIEVAL}/query/collection", token,
                                  json={"collection_names": [kb["id"]], "query": "what is the codeword", "k": 2}))
    assert list(result) == ["distances", "documents", "metadatas"] and "PELICAN-42" in result["documents"][0][0]
    page = expect_ok(stack.get(f"{KNOWLEDGE}/", token))
    item = next(i for i in page["items"] if i["id"] == kb["id"])
    assert item["file_count"] == 1 and item["write_access"] is True and item["user"]["id"] == admin["id"]

    # Uploading with the knowledge base's id adds the file to it once processed, as the web app does.
    second = upload(stack, admin, name="more.txt", data=b"Flamingos are pink.", content_type="text/plain",
                    metadata={"knowledge_id": kb["id"]})
    processed(stack, admin, second["id"])
    assert expect_ok(stack.get(f"{KNOWLEDGE}/{kb['id']}/files", token))["total"] == 2
    # The same text again under another file is refused.
    copy = upload(stack, admin, name="copy.md")
    processed(stack, admin, copy["id"])
    expect_error(stack.post(f"{KNOWLEDGE}/{kb['id']}/file/add", token, json={"file_id": copy["id"]}), 400,
                 "400: Duplicate content detected. Please provide unique content to proceed.")

    user = make_user()
    expect_error(stack.get(f"{KNOWLEDGE}/{kb['id']}", user["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.get(f"{FILES}/{f['id']}/content", user["token"]), 404, NOT_FOUND)
    expect_error(stack.post(f"{RETRIEVAL}/query/collection", user["token"],
                            json={"collection_names": [kb["id"]], "query": "codeword"}), 403, ACCESS_PROHIBITED)
    expect_error(stack.post(f"{RETRIEVAL}/query/doc", user["token"],
                            json={"collection_name": f"file-{f['id']}", "query": "codeword"}), 403, ACCESS_PROHIBITED)
    assert kb["id"] not in [i["id"] for i in expect_ok(stack.get(f"{KNOWLEDGE}/", user["token"]))["items"]]
    expect_error(stack.post(f"{KNOWLEDGE}/create", user["token"], json={"name": "x", "description": "y"}), 401, "401 Unauthorized")
    expect_error(stack.post(f"{KNOWLEDGE}/{kb['id']}/file/add", user["token"], json={"file_id": f["id"]}), 400, ACCESS_PROHIBITED)
    # Shared for reading: the user may now query it, but not change it.
    expect_ok(stack.post(f"{KNOWLEDGE}/{kb['id']}/access/update", token, json={
        "access_grants": [{"principal_type": "user", "principal_id": user["id"], "permission": "read"}]}))
    assert expect_ok(stack.get(f"{KNOWLEDGE}/{kb['id']}", user["token"]))["write_access"] is False
    # The knowledge base's files are readable through it, not writable.
    assert stack.get(f"{FILES}/{f['id']}/content", user["token"]).content == CODEWORD.encode()
    expect_error(stack.delete(f"{FILES}/{f['id']}", user["token"]), 404, NOT_FOUND)
    assert expect_ok(stack.post(f"{RETRIEVAL}/query/collection", user["token"],
                                json={"collection_names": [kb["id"]], "query": "codeword"}))["documents"][0]
    expect_422(stack.post(f"{RETRIEVAL}/query/collection", token, json={"query": "x"}))
    expect_422(stack.post(f"{KNOWLEDGE}/create", token, json={"name": "x"}))
    expect_error(stack.get(f"{KNOWLEDGE}/nope", token), 404, NOT_FOUND)

    removed = expect_ok(stack.post(f"{KNOWLEDGE}/{kb['id']}/file/remove", token, json={"file_id": f["id"]}))
    assert [x["id"] for x in removed["files"]] == [second["id"]]
    # Deleting a file takes its chunks out of every collection.
    expect_ok(stack.delete(f"{FILES}/{second['id']}", token))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        docs = expect_ok(stack.post(f"{RETRIEVAL}/query/collection", token,
                                    json={"collection_names": [kb["id"]], "query": "flamingos pink"}))["documents"][0]
        if not docs:
            break
        time.sleep(0.1)
    assert docs == []
    assert expect_ok(stack.delete(f"{KNOWLEDGE}/{kb['id']}/delete", token)) is True
    expect_error(stack.get(f"{KNOWLEDGE}/{kb['id']}", token), 404)


def test_hybrid_search_with_embeddings(make_stack):
    with FakeProvider() as provider:
        s = make_stack(RAG_EMBEDDING_ENGINE="openai", RAG_OPENAI_API_BASE_URL=provider.base_url,
                       RAG_OPENAI_API_KEY="sk-test", RAG_EMBEDDING_MODEL="fake-embed", CHUNK_SIZE="60", CHUNK_OVERLAP="0")
        admin = s.signup_admin()
        text = ("Pelicans live near the sea.\n\nThe quarterly report is due on Friday.\n\n"
                "Bananas grow in warm places like Coralia.\n")
        f = upload(s, admin, name="mix.txt", data=text.encode(), content_type="text/plain")
        assert processed(s, admin, f["id"])["data"]["status"] == "completed"
        embedded = [r for r in provider.requests if r["path"].endswith("/embeddings")]
        assert embedded and embedded[0]["body"]["model"] == "fake-embed" and len(embedded[0]["body"]["input"]) >= 1
        hits = expect_ok(s.post(f"{RETRIEVAL}/query/doc", admin["token"],
                                json={"collection_name": f"file-{f['id']}", "query": "where do bananas grow", "k": 3}))
        assert "Bananas" in hits["documents"][0][0] and len(hits["documents"][0]) == 3
        assert hits["distances"][0][0] >= hits["distances"][0][-1]
        assert "openai" in hits["metadatas"][0][0]["embedding_config"]

        # Into a knowledge base: the file's chunks (text, metadata, embedding) are copied, not embedded again, and
        # the knowledge base's chunks are in the HNSW graph, the file's own are not (searched exactly).
        kb = expect_ok(s.post(f"{KNOWLEDGE}/create", admin["token"], json={"name": "Fruit", "description": ""}))
        before = len([r for r in provider.requests if r["path"].endswith("/embeddings")])
        expect_ok(s.post(f"{KNOWLEDGE}/{kb['id']}/file/add", admin["token"], json={"file_id": f["id"]}))
        assert len([r for r in provider.requests if r["path"].endswith("/embeddings")]) == before
        db = s.env["DATABASE_URL"]
        same = psql(f"""SELECT count(*) FROM retrieval.chunks k JOIN retrieval.chunks c ON c.collection = 'file-{f["id"]}'
                        AND c.text = k.text AND c.metadata = k.metadata AND c.embedding = k.embedding
                        WHERE k.collection = '{kb["id"]}'""", url=db)
        assert int(same.strip()) == len(hits["documents"][0]) == 3
        hits = expect_ok(s.post(f"{RETRIEVAL}/query/collection", admin["token"],
                                json={"collection_names": [kb["id"]], "query": "where do bananas grow", "k": 1}))
        assert "Bananas" in hits["documents"][0][0]
        index = psql("SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'retrieval' "
                     "AND indexdef LIKE '%hnsw%'", url=db).strip()
        assert index.startswith("chunks_vectors_") and "(collection !~~ 'file-%'::text)" in index, index
        dims = index.split()[0].removeprefix("chunks_vectors_")
        plan = psql(f"""SET enable_seqscan = off; EXPLAIN SELECT id FROM retrieval.chunks
                        WHERE collection = ANY(ARRAY['{kb["id"]}']) AND dims = {dims} AND collection NOT LIKE 'file-%'
                        ORDER BY (embedding::vector({dims})) <=> (SELECT embedding FROM retrieval.chunks LIMIT 1)::vector({dims})
                        LIMIT 3""", url=db)
        assert f"chunks_vectors_{dims}" in plan, plan


@pytest.mark.slow
def test_a_replica_killed_mid_processing(make_stack):
    """The retrieval process dies while it embeds a file: a new replica reclaims the unacknowledged event and
    processes the file once more, which leaves exactly one set of its chunks."""
    with FakeProvider() as provider:
        s = make_stack(RAG_EMBEDDING_ENGINE="openai", RAG_OPENAI_API_BASE_URL=provider.base_url,
                       RAG_OPENAI_API_KEY="sk-test", SKIFF_EVENT_RECLAIM_AFTER="2")
        admin = s.signup_admin()
        f = upload(s, admin, name="slow.txt", data=b"slowembed pelicans of Coralia", content_type="text/plain")
        deadline = time.monotonic() + 10
        while not any(r["path"].endswith("/embeddings") for r in provider.requests):
            assert time.monotonic() < deadline, "retrieval never asked for embeddings"
            time.sleep(0.05)
        s.kill("retrieval")
        assert expect_ok(s.get(f"{FILES}/{f['id']}/process/status", admin["token"]))["status"] == "pending"
        s.spawn_extra("retrieval-b", "retrieval")
        got = processed(s, admin, f["id"], timeout=30)
        assert got["data"]["status"] == "completed" and got["data"]["content"] == "slowembed pelicans of Coralia"
        count = psql(f"SELECT count(*) FROM retrieval.chunks WHERE file_id = '{f['id']}'", url=s.env["DATABASE_URL"])
        assert int(count.strip()) == 1


def test_settings_and_process_routes(make_stack):
    s = make_stack()
    admin = s.signup_admin()
    token = admin["token"]
    config = expect_ok(s.get(f"{RETRIEVAL}/config", token))
    assert config["status"] is True and config["TOP_K"] == 3 and config["CHUNK_SIZE"] == 1000 and config["CHUNK_OVERLAP"] == 100
    assert config["RELEVANCE_THRESHOLD"] == 0 and config["ENABLE_RAG_HYBRID_SEARCH"] is False
    updated = expect_ok(s.post(f"{RETRIEVAL}/config/update", token, json={"TOP_K": 1, "CHUNK_SIZE": 40, "CHUNK_OVERLAP": 0}))
    assert updated["TOP_K"] == 1 and updated["CHUNK_SIZE"] == 40
    expect_422(s.post(f"{RETRIEVAL}/config/update", token, json={"TOP_K": "many"}))
    expect_422(s.post(f"{RETRIEVAL}/config/update", token, json=[1]))
    embedding = expect_ok(s.get(f"{RETRIEVAL}/embedding", token))
    assert list(embedding)[:3] == ["status", "RAG_EMBEDDING_ENGINE", "RAG_EMBEDDING_MODEL"] and embedding["RAG_EMBEDDING_ENGINE"] == ""
    expect_422(s.post(f"{RETRIEVAL}/embedding/update", token, json={"RAG_EMBEDDING_MODEL": "m"}))

    # Smaller chunks and one result per query from now on.
    text = "Pelicans nest on quiet islands far away.\n\nFlamingos stand on one leg in shallow lakes.\n"
    f = upload(s, admin, name="birds.txt", data=text.encode(), content_type="text/plain")
    processed(s, admin, f["id"])
    hits = expect_ok(s.post(f"{RETRIEVAL}/query/doc", token, json={"collection_name": f"file-{f['id']}", "query": "flamingos lakes"}))
    assert len(hits["documents"][0]) == 1 and hits["documents"][0][0].startswith("Flamingos")
    # New text for the file: indexed again, and the files service shows it.
    done = expect_ok(s.post(f"{RETRIEVAL}/process/file", token, json={"file_id": f["id"], "content": "Herons fish at dawn."}))
    assert done == {"status": True, "collection_name": f"file-{f['id']}", "filename": "birds.txt", "content": "Herons fish at dawn."}
    hits = expect_ok(s.post(f"{RETRIEVAL}/query/doc", token, json={"collection_name": f"file-{f['id']}", "query": "herons"}))
    assert hits["documents"][0] == ["Herons fish at dawn."]
    deadline = time.monotonic() + 5
    while expect_ok(s.get(f"{FILES}/{f['id']}/data/content", token))["content"] != "Herons fish at dawn.":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    text_done = expect_ok(s.post(f"{RETRIEVAL}/process/text", token, json={"name": "note", "content": "Owls hunt at night."}))
    assert text_done["collection_name"] == hashlib.sha256(b"Owls hunt at night.").hexdigest()
    s.set_admin_config(token, ENABLE_SIGNUP=True)
    user = s.create_user(token, role="user")
    expect_error(s.get(f"{RETRIEVAL}/config", user["token"]), 401, ACCESS_PROHIBITED)
    expect_error(s.post(f"{RETRIEVAL}/process/file", user["token"], json={"file_id": f["id"]}), 404, NOT_FOUND)


def test_knowledge_batch_add_update_and_pending(stack, admin):
    token = admin["token"]
    kb = expect_ok(stack.post(f"{KNOWLEDGE}/create", token, json={"name": "Batch", "description": ""}))
    a = upload(stack, admin, name="a.txt", data=b"Alpha text about otters.", content_type="text/plain")
    b = upload(stack, admin, name="b.txt", data=b"Beta text about beavers.", content_type="text/plain")
    for f in (a, b):
        processed(stack, admin, f["id"])
    assert expect_ok(stack.get(f"{KNOWLEDGE}/{kb['id']}/files/pending", token)) == []
    # A rename reaches the knowledge base's listing and the chunks' names.
    expect_ok(stack.post(f"{FILES}/{b['id']}/rename", token, json={"filename": "beavers.txt"}))
    added = expect_ok(stack.post(f"{KNOWLEDGE}/{kb['id']}/files/batch/add", token,
                                 json=[{"file_id": a["id"]}, {"file_id": b["id"]}]))
    assert {x["id"] for x in added["files"]} == {a["id"], b["id"]}
    again = expect_ok(stack.post(f"{KNOWLEDGE}/{kb['id']}/files/batch/add", token, json=[{"file_id": a["id"]}]))
    assert len(again["files"]) == 2
    expect_error(stack.post(f"{KNOWLEDGE}/{kb['id']}/files/batch/add", token, json=[{"file_id": "nope"}]), 400,
                 "File nope not found")
    expect_ok(stack.post(f"{FILES}/{a['id']}/data/content/update", token, json={"content": "Alpha text about herons."}))
    deadline = time.monotonic() + 10
    while True:
        docs = expect_ok(stack.post(f"{RETRIEVAL}/query/collection", token,
                                    json={"collection_names": [kb["id"]], "query": "herons"}))["documents"][0]
        if docs and "herons" in docs[0]:
            break
        assert time.monotonic() < deadline, docs
        time.sleep(0.1)
    assert expect_ok(stack.post(f"{KNOWLEDGE}/{kb['id']}/file/update", token, json={"file_id": a["id"]}))["id"] == kb["id"]
    names = {f["filename"] for f in expect_ok(stack.get(f"{KNOWLEDGE}/{kb['id']}/files", token))["items"]}
    assert names == {"a.txt", "beavers.txt"}
    hit = expect_ok(stack.post(f"{RETRIEVAL}/query/collection", token, json={"collection_names": [kb["id"]], "query": "beavers"}))
    assert hit["metadatas"][0][0]["name"] == "beavers.txt"
    expect_error(stack.post(f"{KNOWLEDGE}/{kb['id']}/file/update", token, json={"file_id": "nope"}), 400, NOT_FOUND)
