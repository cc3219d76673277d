"""Memories (/api/v1/memories) through the gateway: the real 0.12.4 shapes (MemoryModel, the query's search
result), the gate (switched off: 404; no `features.memories`: 403), batch operations, search, and ranking by
an embedding engine (a fake OpenAI-compatible provider) and by full text when none is configured.
"""

from __future__ import annotations

from fake_provider import FakeProvider
from stacklib import expect_422, expect_error, expect_ok

API = "/api/v1/memories"
MEMORY_KEYS = ["id", "user_id", "type", "path", "content", "meta", "updated_at", "created_at"]
PROHIBITED = ("You do not have permission to access this resource. Please contact your administrator for "
              "assistance.")


def add(stack, user, content, **extra) -> dict:
    return expect_ok(stack.post(f"{API}/add", user["token"], json={"content": content, **extra}))


def test_crud_shapes_and_bad_input(stack, make_user):
    alice, bob, pending = make_user(), make_user(), make_user(role="pending")
    assert expect_ok(stack.get(f"{API}/", alice["token"])) == []
    m = add(stack, alice, "  Likes green tea  ", path="/prefs//drinks/")
    assert list(m) == MEMORY_KEYS and m["content"] == "Likes green tea" and m["path"] == "prefs/drinks"
    assert m["type"] == "context" and m["meta"] == {"created_by": "manual"} and m["user_id"] == alice["id"]
    assert [x["id"] for x in expect_ok(stack.get(f"{API}/", alice["token"]))] == [m["id"]]
    assert expect_ok(stack.get(f"{API}/", bob["token"])) == []

    expect_error(stack.post(f"{API}/add", alice["token"], json={"content": "   "}), 400, "Memory content cannot be empty")
    expect_error(stack.post(f"{API}/add", alice["token"], json={"content": "x", "path": "a/../b"}), 400,
                 "Invalid memory path")
    expect_422(stack.post(f"{API}/add", alice["token"], json={"content": "x", "type": "other"}), ["body", "type"])
    expect_422(stack.post(f"{API}/add", alice["token"], json={}), ["body", "content"], "missing")
    expect_error(stack.get(f"{API}/", pending["token"]), 401, PROHIBITED)

    upd = expect_ok(stack.post(f"{API}/{m['id']}/update", alice["token"], json={"content": "Likes black tea", "path": ""}))
    assert upd["content"] == "Likes black tea" and upd["path"] is None
    expect_error(stack.post(f"{API}/{m['id']}/update", alice["token"], json={}), 400, "No memory update provided")
    expect_error(stack.post(f"{API}/{m['id']}/update", bob["token"], json={"content": "mine"}), 404)
    assert expect_ok(stack.delete(f"{API}/{m['id']}", bob["token"])) is False
    assert expect_ok(stack.delete(f"{API}/{m['id']}", alice["token"])) is True
    assert expect_ok(stack.delete(f"{API}/{m['id']}", alice["token"])) is False

    expect_error(stack.post(f"{API}/query", alice["token"], json={"content": "tea"}), 404, "No memories found for user")
    add(stack, alice, "one")
    add(stack, alice, "two")
    assert expect_ok(stack.post(f"{API}/reset", alice["token"])) is True
    assert len(expect_ok(stack.get(f"{API}/", alice["token"]))) == 2, "reset re-indexes, it deletes nothing"
    assert expect_ok(stack.delete(f"{API}/delete/user", alice["token"])) is True
    assert expect_ok(stack.get(f"{API}/", alice["token"])) == []


def test_batch_operations_and_search(stack, make_user):
    user = make_user()
    made = expect_ok(stack.post(f"{API}/update", user["token"], json={"operations": [
        {"action": "add", "content": "Lives in Oslo", "path": "home"},
        {"action": "add", "content": "Works at a bakery", "path": "work", "type": "user"}]}))
    assert [r["status"] for r in made] == ["created", "created"]
    assert list(made[0]["memory"]) == ["id", "user_id", "type", "path", "content", "updated_at", "created_at"]
    again = expect_ok(stack.post(f"{API}/update", user["token"], json={"operations": [
        {"action": "add", "content": "Lives in Oslo", "path": "home"}]}))
    assert again[0]["status"] == "skipped" and again[0]["reason"] == "duplicate"
    oslo, bakery = made[0]["memory"]["id"], made[1]["memory"]["id"]
    # One bad operation: nothing is applied.
    expect_error(stack.post(f"{API}/update", user["token"], json={"operations": [
        {"action": "remove", "id": oslo}, {"action": "remove", "id": "nope"}]}), 404, "Memory not found: nope")
    assert len(expect_ok(stack.get(f"{API}/", user["token"]))) == 2
    expect_error(stack.post(f"{API}/update", user["token"], json={"operations": []}), 400, "No memory operations provided")
    expect_error(stack.post(f"{API}/update", user["token"], json={"operations": [{"action": "replace"}]}), 400,
                 "Memory id is required for replace")
    moved = expect_ok(stack.post(f"{API}/update", user["token"], json={"operations": [
        {"action": "move", "id": bakery, "path": "work/jobs"}, {"action": "remove", "id": oslo}]}))
    assert moved[0]["memory"]["path"] == "work/jobs" and moved[1] == {"action": "remove", "status": "deleted", "id": oslo}

    found = expect_ok(stack.post(f"{API}/search", user["token"], json={"query": "BAKERY"}))
    assert [m["id"] for m in found] == [bakery] and list(found[0]) == MEMORY_KEYS
    assert expect_ok(stack.post(f"{API}/search", user["token"], json={"path": "work"}))[0]["id"] == bakery
    assert expect_ok(stack.post(f"{API}/search", user["token"], json={"type": "context"})) == []
    expect_422(stack.post(f"{API}/search", user["token"], json={"type": "nope"}), ["body", "type"])


def ranked(stack, user, text, k=3) -> dict:
    return expect_ok(stack.post(f"{API}/query", user["token"], json={"content": text, "k": k}))


def test_ranking_by_full_text_without_an_engine(stack, make_user):
    user = make_user()
    pizza = add(stack, user, "Favourite food is pizza with olives")
    add(stack, user, "Has a cat called Miso")
    add(stack, user, "Prefers trains to planes")
    result = ranked(stack, user, "what pizza toppings")
    assert list(result) == ["ids", "documents", "metadatas", "distances"]
    assert result["ids"][0][0] == pizza["id"] and len(result["ids"][0]) == 3
    assert result["documents"][0][0] == pizza["content"]
    assert set(result["metadatas"][0][0]) == {"created_at", "updated_at", "type"}
    scores = result["distances"][0]
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
    assert len(ranked(stack, user, "pizza", k=1)["ids"][0]) == 1


def test_ranking_by_embeddings(make_stack):
    with FakeProvider() as provider:
        s = make_stack(RAG_EMBEDDING_ENGINE="openai", RAG_OPENAI_API_BASE_URL=provider.base_url,
                       RAG_OPENAI_API_KEY="sk-test", RAG_EMBEDDING_MODEL="fake-embed")
        admin = s.signup_admin()
        cat = add(s, admin, "My cat Miso sleeps on the sofa", path="pets")
        add(s, admin, "The quarterly report is due on Friday", path="work")
        add(s, admin, "Allergic to peanuts", path="health")
        embedded = [r for r in provider.requests if r["path"].endswith("/embeddings")]
        assert len(embedded) == 3 and embedded[0]["body"]["model"] == "fake-embed"
        assert embedded[0]["body"]["input"] == ["pets\nMy cat Miso sleeps on the sofa"]
        assert embedded[0]["authorization"] == "Bearer sk-test"
        result = ranked(s, admin, "where does the cat Miso sleep", k=2)
        assert result["ids"][0][0] == cat["id"] and len(result["ids"][0]) == 2
        assert result["metadatas"][0][0]["path"] == "pets"
        assert result["distances"][0][0] > result["distances"][0][1]


def test_paths_and_path(stack, make_user):
    alice, bob = make_user(), make_user()
    tea = add(stack, alice, "Likes green tea", path="prefs/drinks")
    add(stack, alice, "Coffee after lunch", path="prefs/drinks/coffee")
    prefs = add(stack, alice, "Prefers short answers", path="prefs")
    add(stack, alice, "Works on Skiff", path="work", type="user")
    add(stack, alice, "No path at all")
    add(stack, bob, "Bob's own", path="prefs/drinks")

    listed = expect_ok(stack.post(f"{API}/paths", alice["token"], json={}))
    assert listed["count"] == 5 and len(listed["paths"]) == 5
    groups = {(g["path"], g["type"]): g for g in listed["paths"]}
    assert list(listed["paths"][0]) == ["path", "type", "count", "updated_at", "children"]
    assert groups[("prefs", "context")]["children"] == ["prefs/drinks"]
    assert groups[("prefs/drinks", "context")]["children"] == ["prefs/drinks/coffee"]
    assert groups[(None, "context")]["count"] == 1
    only_user = expect_ok(stack.post(f"{API}/paths", alice["token"], json={"type": "user"}))
    assert [g["path"] for g in only_user["paths"]] == ["work"]
    assert expect_ok(stack.post(f"{API}/paths", alice["token"], json={"query": "coffee"}))["count"] == 1
    expect_422(stack.post(f"{API}/paths", alice["token"], json={"type": "nope"}))

    view = expect_ok(stack.post(f"{API}/path", alice["token"], json={"path": "/prefs/drinks/"}))
    assert view["path"] == "prefs/drinks" and view["parents"] == ["prefs"] and view["children"] == ["prefs/drinks/coffee"]
    ids = [m["id"] for m in view["memories"]]
    assert ids[0] == tea["id"] and ids[-1] == prefs["id"] and len(ids) == 3
    assert "meta" not in view["memories"][0]
    assert len(expect_ok(stack.post(f"{API}/path", alice["token"], json={"path": "prefs/drinks", "include_children": False}))["memories"]) == 2
    expect_error(stack.post(f"{API}/path", alice["token"], json={"path": "  / "}), 400, "Memory path is required")
    expect_error(stack.post(f"{API}/path", alice["token"], json={"path": "a/../b"}), 400, "Invalid memory path")
    expect_422(stack.post(f"{API}/path", alice["token"], json={}))
    # Bob sees only his own.
    assert [m["content"] for m in expect_ok(stack.post(f"{API}/path", bob["token"], json={"path": "prefs/drinks"}))["memories"]] == ["Bob's own"]
