"""Notes (/api/v1/notes) through the gateway: shapes of the real 0.12.4 server (NoteModel, NoteItemResponse,
NoteListResponse), access by owner and access grants, the sharing permissions, pins, and the note's room
(`events:note`) and collaborative document (`ydoc:*`) over Socket.IO.

Facts pinned from the 0.12.4 source (routers/notes.py, models/notes.py, socket/main.py): timestamps are
nanoseconds; lists truncate `data` to `{"content": {"md": <first 1000 characters>}}`; another user's note is
403 "Something went wrong :/", an unknown one 404; users may not share notes unless `sharing.notes` is granted
(grants dropped on create, 403 on access/update); `search` lists notes the caller may write unless
`permission=read`; admins see every note in search.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from stacklib import expect_error, expect_ok
from test_realtime import Client, clients, marker, wait_for  # noqa: F401  (fixture re-export)

API = "/api/v1/notes"
NOTE_KEYS = ["id", "user_id", "title", "data", "meta", "is_pinned", "access_grants", "created_at", "updated_at"]
ITEM_KEYS = ["id", "title", "data", "is_pinned", "updated_at", "created_at", "user"]
SOMETHING_WRONG = "Something went wrong :/"
NOT_FOUND = "We could not find what you're looking for :/"
AUDIENCE = "You do not have permission to share with the requested audience"


def create(stack, user, title="Note", md="hello", **extra) -> dict:
    body = {"title": title, "data": {"content": {"json": None, "html": f"<p>{md}</p>", "md": md}}, **extra}
    return expect_ok(stack.post(f"{API}/create", user["token"], json=body))


def assert_note(note: dict) -> None:
    assert list(note)[: len(NOTE_KEYS)] == NOTE_KEYS, list(note)
    assert note["created_at"] > 10**18 and note["updated_at"] >= note["created_at"], "nanosecond timestamps"


def test_create_get_update_and_shapes(stack, make_user):
    alice = make_user()
    before = time.time_ns()
    note = create(stack, alice, title="Groceries", md="milk")
    assert_note(note)
    assert note["user_id"] == alice["id"] and note["title"] == "Groceries" and note["is_pinned"] is False
    assert note["access_grants"] == [] and note["meta"] is None and note["created_at"] >= before
    assert note["data"]["content"]["md"] == "milk"

    got = expect_ok(stack.get(f"{API}/{note['id']}", alice["token"]))
    assert list(got) == NOTE_KEYS + ["write_access"] and got["write_access"] is True
    assert got["data"] == note["data"]

    # Update merges top-level data keys and keeps the rest; an unchanged note keeps its updated_at.
    upd = expect_ok(stack.post(f"{API}/{note['id']}/update", alice["token"], json={"data": {"files": []}}))
    assert_note(upd)
    assert upd["data"]["content"]["md"] == "milk" and upd["data"]["files"] == []
    same = expect_ok(stack.post(f"{API}/{note['id']}/update", alice["token"], json={"data": {"files": []}}))
    assert same["updated_at"] == upd["updated_at"]
    renamed = expect_ok(stack.post(f"{API}/{note['id']}/update", alice["token"], json={"title": "Shopping", "meta": {"a": 1}}))
    assert renamed["title"] == "Shopping" and renamed["meta"] == {"a": 1} and renamed["updated_at"] > upd["updated_at"]

    # Markdown that is not text is made text, as the original's sanitiser does.
    odd = expect_ok(stack.post(f"{API}/create", alice["token"], json={"title": "Odd", "data": "plain words"}))
    assert odd["data"] == {"content": {"md": "plain words"}}
    empty = expect_ok(stack.post(f"{API}/create", alice["token"], json={"title": "Empty"}))
    assert empty["data"] == {}

    # Lists: NoteItemResponse with the owner and data truncated to the markdown's first 1000 characters.
    long = create(stack, alice, title="Long", md="x" * 1500)
    listed = expect_ok(stack.get(f"{API}/", alice["token"]))
    assert [n["id"] for n in listed][:4] == [long["id"], empty["id"], odd["id"], note["id"]]
    first = listed[0]
    assert list(first) == ITEM_KEYS
    assert first["data"] == {"content": {"md": "x" * 1000}}
    assert first["user"] == {"id": alice["id"], "name": alice["name"], "role": "user", "email": alice["email"]}
    assert next(n for n in listed if n["id"] == empty["id"])["data"] == {}
    assert expect_ok(stack.get(f"{API}/?page=1", alice["token"]))[:1] == listed[:1]
    assert expect_ok(stack.get(f"{API}/?page=2", alice["token"])) == []


def test_bad_input_and_unknown_ids(stack, make_user):
    alice, bob = make_user(), make_user()
    note = create(stack, alice)
    r = stack.post(f"{API}/create", alice["token"], json={"data": {}})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list), r.text
    r = stack.post(f"{API}/create", alice["token"], data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = stack.post(f"{API}/{note['id']}/update", alice["token"], json={"meta": "nope"})
    assert r.status_code == 422
    r = stack.post(f"{API}/{note['id']}/access/update", alice["token"], json={})
    assert r.status_code == 422
    unknown = str(uuid.uuid4())
    for method, path in [("GET", ""), ("POST", "/update"), ("POST", "/pin"), ("DELETE", "/delete"), ("GET", "/chats")]:
        r = stack.request(method, f"{API}/{unknown}{path}", alice["token"], json={} if method == "POST" else None)
        expect_error(r, 404, NOT_FOUND)
        r = stack.request(method, f"{API}/{note['id']}{path}", bob["token"], json={} if method == "POST" else None)
        expect_error(r, 403, SOMETHING_WRONG)
    assert expect_ok(stack.get(f"{API}/{note['id']}", alice["token"]))["title"] == "Note", "stored note changed"
    expect_error(stack.get(f"{API}/", None), 401)


def test_pins(stack, make_user):
    alice = make_user()
    a, b = create(stack, alice, "A"), create(stack, alice, "B")
    assert expect_ok(stack.get(f"{API}/pinned", alice["token"])) == []
    assert expect_ok(stack.post(f"{API}/{a['id']}/pin", alice["token"]))["is_pinned"] is True
    assert expect_ok(stack.post(f"{API}/{b['id']}/pin", alice["token"]))["is_pinned"] is True
    pinned = expect_ok(stack.get(f"{API}/pinned", alice["token"]))
    assert [n["id"] for n in pinned] == [b["id"], a["id"]] and all(n["is_pinned"] for n in pinned)
    assert list(pinned[0]) == ITEM_KEYS
    assert expect_ok(stack.post(f"{API}/{a['id']}/pin", alice["token"]))["is_pinned"] is False
    assert [n["id"] for n in expect_ok(stack.get(f"{API}/pinned", alice["token"]))] == [b["id"]]
    assert expect_ok(stack.get(f"{API}/{b['id']}", alice["token"]))["is_pinned"] is True


def test_sharing_needs_permission_and_grants_give_access(stack, make_user):
    alice, bob, boss = make_user(), make_user(), make_user(role="admin")
    # A user without sharing.notes: grants on create are dropped, access/update is refused.
    mine = create(stack, alice, access_grants=[{"principal_type": "user", "principal_id": bob["id"], "permission": "read"}])
    assert mine["access_grants"] == []
    expect_error(stack.post(f"{API}/{mine['id']}/access/update", alice["token"], json={
        "access_grants": [{"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}), 403, AUDIENCE)

    # An admin shares a note with bob for reading.
    shared = create(stack, boss, title="Plans", md="secret plans")
    grants = [{"principal_type": "user", "principal_id": bob["id"], "permission": "read"},
              {"principal_type": "user", "principal_id": bob["id"], "permission": "read"},
              {"principal_type": "nobody", "principal_id": "x", "permission": "read"}]
    updated = expect_ok(stack.post(f"{API}/{shared['id']}/access/update", boss["token"], json={"access_grants": grants}))
    assert_note(updated)
    assert [(g["principal_type"], g["principal_id"], g["permission"]) for g in updated["access_grants"]] == [
        ("user", bob["id"], "read")]
    g = updated["access_grants"][0]
    assert list(g) == ["id", "resource_type", "resource_id", "principal_type", "principal_id", "permission", "created_at"]
    assert g["resource_type"] == "note" and g["resource_id"] == shared["id"]

    got = expect_ok(stack.get(f"{API}/{shared['id']}", bob["token"]))
    assert got["write_access"] is False and got["title"] == "Plans"
    expect_error(stack.post(f"{API}/{shared['id']}/update", bob["token"], json={"title": "Mine now"}), 403, SOMETHING_WRONG)
    expect_error(stack.delete(f"{API}/{shared['id']}/delete", bob["token"]), 403, SOMETHING_WRONG)
    assert shared["id"] in [n["id"] for n in expect_ok(stack.get(f"{API}/", bob["token"]))]
    # Bob pins a note he may read; it is his pin only.
    assert expect_ok(stack.post(f"{API}/{shared['id']}/pin", bob["token"]))["is_pinned"] is True
    assert expect_ok(stack.get(f"{API}/{shared['id']}", boss["token"]))["is_pinned"] is False

    # Search lists what the caller may write unless asked for read; admins see every note.
    found = expect_ok(stack.get(f"{API}/search", bob["token"], params={"query": "plans"}))
    assert found == {"items": [], "total": 0}
    found = expect_ok(stack.get(f"{API}/search", bob["token"], params={"query": "se-cret", "permission": "read"}))
    assert found["total"] == 1 and found["items"][0]["id"] == shared["id"]
    item = found["items"][0]
    assert list(item) == NOTE_KEYS + ["user"] and item["user"]["id"] == boss["id"]
    assert item["data"] == {"content": {"md": "secret plans"}}
    everyone = expect_ok(stack.get(f"{API}/search", boss["token"], params={"view_option": "shared"}))
    assert mine["id"] in [n["id"] for n in everyone["items"]]

    # Write access granted: bob may edit; the grant revoked: he may not even read.
    expect_ok(stack.post(f"{API}/{shared['id']}/access/update", boss["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": bob["id"], "permission": "write"},
        {"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}))
    assert expect_ok(stack.get(f"{API}/{shared['id']}", bob["token"]))["write_access"] is True
    assert expect_ok(stack.post(f"{API}/{shared['id']}/update", bob["token"], json={"title": "Ours"}))["title"] == "Ours"
    expect_ok(stack.post(f"{API}/{shared['id']}/access/update", boss["token"], json={"access_grants": []}))
    expect_error(stack.get(f"{API}/{shared['id']}", bob["token"]), 403, SOMETHING_WRONG)
    assert shared["id"] not in [n["id"] for n in expect_ok(stack.get(f"{API}/pinned", bob["token"]))]

    assert expect_ok(stack.delete(f"{API}/{shared['id']}/delete", boss["token"])) is True
    expect_error(stack.get(f"{API}/{shared['id']}", boss["token"]), 404, NOT_FOUND)


def test_search_query_order_and_pages(stack, make_user):
    alice = make_user()
    tag = marker().replace("-", "")
    words = ["alpha", "beta", "gamma"]  # not digits: the random tag may hold any hex digit
    ids = [create(stack, alice, title=f"{tag} note {i}", md=f"body {words[i]}")["id"] for i in range(3)]
    res = expect_ok(stack.get(f"{API}/search", alice["token"], params={"query": tag}))
    assert res["total"] == 3 and [n["id"] for n in res["items"]] == ids[::-1]
    res = expect_ok(stack.get(f"{API}/search", alice["token"], params={"query": f"{tag} body beta"}))
    assert [n["id"] for n in res["items"]] == [ids[1]]
    res = expect_ok(stack.get(f"{API}/search", alice["token"], params={"query": tag, "order_by": "name", "direction": "asc"}))
    assert [n["id"] for n in res["items"]] == ids
    res = expect_ok(stack.get(f"{API}/search", alice["token"], params={"query": tag, "page": 2}))
    assert res == {"items": [], "total": 3}
    assert stack.get(f"{API}/search", alice["token"], params={"page": "x"}).status_code == 422


def test_note_room_and_collaborative_document(stack, make_user, clients):
    """join-note puts a socket in `note:<id>` (readers only) and updates reach it as `events:note`; ydoc:*
    relays Yjs updates and awareness to the other sockets in the document, hands a joining socket the stored
    state, refuses writes from readers, and saves the content into the note."""
    alice, bob, carol, boss = make_user(), make_user(), make_user(), make_user(role="admin")
    note = create(stack, boss, title="Doc", md="start")
    expect_ok(stack.post(f"{API}/{note['id']}/access/update", boss["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": alice["id"], "permission": "read"},
        {"principal_type": "user", "principal_id": alice["id"], "permission": "write"},
        {"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}))
    a = clients(stack, token=alice["token"])
    b = clients(stack, token=bob["token"])
    c = clients(stack, token=carol["token"])

    # The note's room: readers join, strangers do not; updates reach the room.
    for client, user in ((a, alice), (b, bob), (c, carol)):
        client.call("join-note", {"note_id": note["id"], "auth": {"token": user["token"]}})
    expect_ok(stack.post(f"{API}/{note['id']}/update", boss["token"], json={"title": "Doc 2"}))
    for client in (a, b):
        got = client.wait_event(lambda d: d.get("id") == note["id"], event="events:note")
        assert got and got["title"] == "Doc 2" and set(got) == set(NOTE_KEYS), client.received[-3:]
    time.sleep(0.5)
    assert not c.find(lambda d: True, event="events:note")

    doc = f"note:{note['id']}"
    join = {"document_id": doc, "user_id": alice["id"], "user_name": alice["name"], "user_color": "#112233"}
    a.call("ydoc:document:join", join)
    state = a.wait_event(lambda d: d.get("document_id") == doc, event="ydoc:document:state")
    assert state["state"] == [0, 0] and state["content"]["md"] == "start", state
    # A stranger cannot join; bob (a reader) can.
    c.call("ydoc:document:join", {"document_id": doc})
    b.call("ydoc:document:join", {"document_id": f"note_{note['id']}", "user_id": bob["id"], "user_name": "Bob"})
    assert b.wait_event(lambda d: d.get("document_id") == doc, event="ydoc:document:state")["state"] == [0, 0]
    joined = a.wait_event(lambda d: d.get("user_name") == "Bob", event="ydoc:user:joined")
    assert joined == {"document_id": doc, "user_id": bob["id"], "user_name": "Bob", "user_color": "#000000"}

    # Seeding: the first initialize wins; a later one gets the stored state back.
    seed = [1, 1, 7, 0, 4, 1, 0, 0]  # opaque bytes: Skiff stores and relays updates without reading them
    assert a.call("ydoc:document:update", {"document_id": doc, "update": seed, "initialize": True}) == seed
    relayed = b.wait_event(lambda d: d.get("document_id") == doc, event="ydoc:document:update")
    assert relayed["update"] == seed and relayed["socket_id"] == a.sid
    late = clients(stack, token=alice["token"])
    late.call("ydoc:document:join", {"document_id": doc})
    assert late.call("ydoc:document:update", {"document_id": doc, "update": [9, 9, 9], "initialize": True}) == seed
    # A reader's seed is refused outright.
    assert b.call("ydoc:document:update", {"document_id": doc, "update": [8, 8], "initialize": True}) is None

    # Edits from the writer are relayed and saved into the note; the reader's are refused.
    edit = [2, 2, 2]
    a.call("ydoc:document:update", {"document_id": doc, "update": edit, "user_id": alice["id"],
                                    "data": {"content": {"md": "edited together", "html": "", "json": None}}})
    assert b.wait_event(lambda d: d.get("update") == edit, event="ydoc:document:update") is not None
    b.call("ydoc:document:update", {"document_id": doc, "update": [3, 3, 3], "data": {"content": {"md": "bob"}}})
    assert wait_for(lambda: expect_ok(stack.get(f"{API}/{note['id']}", boss["token"]))["data"]["content"]["md"]
                    == "edited together", 10)
    time.sleep(1)
    assert expect_ok(stack.get(f"{API}/{note['id']}", boss["token"]))["data"]["content"]["md"] == "edited together"
    assert not a.find(lambda d: d.get("update") == [3, 3, 3], event="ydoc:document:update")

    # Awareness goes to the others, with the sender's user id.
    a.call("ydoc:awareness:update", {"document_id": doc, "update": [5, 5]})
    aw = b.wait_event(lambda d: d.get("document_id") == doc, event="ydoc:awareness:update")
    assert aw == {"document_id": doc, "user_id": alice["id"], "update": [5, 5]}

    # A socket joining now gets the stored updates: the seed as the state, the rest as updates.
    a2 = clients(stack, token=alice["token"])
    a2.call("ydoc:document:join", {"document_id": doc})
    st = a2.wait_event(lambda d: d.get("document_id") == doc, event="ydoc:document:state")
    assert st["state"] == seed
    assert a2.wait_event(lambda d: d.get("update") == edit, event="ydoc:document:update") is not None

    # Leaving tells the others; a deleted note's rooms empty.
    b.call("ydoc:document:leave", {"document_id": doc})
    left = a.wait_event(lambda d: d.get("user_id") == bob["id"], event="ydoc:user:left")
    assert left == {"document_id": doc, "user_id": bob["id"]}
    expect_ok(stack.delete(f"{API}/{note['id']}/delete", boss["token"]))
    time.sleep(0.5)
    a.received.clear()
    a2.call("ydoc:awareness:update", {"document_id": doc, "update": [6]})
    time.sleep(0.5)
    assert not a.find(lambda d: True, event="ydoc:awareness:update")
    assert a.connected and b.connected and c.connected


def test_note_chats_stay_out_of_chat_lists(stack, make_user):
    alice, bob = make_user(), make_user()
    note = create(stack, alice, title="With a chat")
    first = expect_ok(stack.get(f"{API}/{note['id']}/chat", alice["token"]))
    assert first["title"] == "Chat" and first["meta"] == {"internal": True, "type": "note", "note_id": note["id"]}
    system = first["chat"]["params"]["system"]
    assert system.startswith(f"CONTEXT:\nCurrent note id: {note['id']}\n") and "replace_note_content" in system
    assert first["chat"]["models"] == [""] and first["chat"]["history"] == {"messages": {}, "currentId": None}
    again = expect_ok(stack.get(f"{API}/{note['id']}/chat", alice["token"]))
    assert again["id"] == first["id"] and again["updated_at"] == first["updated_at"]
    second = expect_ok(stack.post(f"{API}/{note['id']}/chat", alice["token"]))
    assert second["id"] != first["id"]
    assert {c["id"] for c in expect_ok(stack.get(f"{API}/{note['id']}/chats", alice["token"]))} == {first["id"], second["id"]}
    # Hidden from the chat list, search and counts, but readable by id as any of the owner's chats.
    listed = [c["id"] for c in expect_ok(stack.get("/api/v1/chats/", alice["token"]))]
    assert first["id"] not in listed and second["id"] not in listed
    assert first["id"] not in [c["id"] for c in expect_ok(stack.get("/api/v1/chats/search?text=Chat", alice["token"]))]
    assert expect_ok(stack.get(f"/api/v1/chats/{first['id']}", alice["token"]))["id"] == first["id"]
    # Others: no access to the note, no chat; unknown notes 404.
    expect_error(stack.get(f"{API}/{note['id']}/chat", bob["token"]), 403, "Something went wrong :/")
    expect_error(stack.post(f"{API}/{note['id']}/chat", bob["token"]), 403, "Something went wrong :/")
    expect_error(stack.get(f"{API}/nope/chat", alice["token"]), 404)
