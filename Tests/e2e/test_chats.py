"""Chat history: /api/v1/chats/* — create, list, read, update (history merge under concurrency), messages,
message events on the realtime bus, delete, pin, archive, tags, search, share, clone, folders, import, admin
routes, user deletion, a 10,000-chat user, and bad input.

Shapes and detail strings are those of Open WebUI 0.12.4 (recorded samples and routers/chats.py). Skiff's own
decisions, where it deliberately differs from the real server:
- An admin asking for another user's chat through GET /{id} gets 401 "not found"; admins reach other users'
  chats only through the admin routes (/list/user/{user_id}, /all/db).
- Unknown `order_by` / `direction` on GET /archived answer 400 with a detail (the real server answers 500).
- Deleting a user removes their chats, folders, tags and shares (the real server leaves folders and tags behind).
- Concurrent updates of one chat never lose messages and never answer 400 "database is locked".

Every test uses its own new users, so tests do not depend on each other on the shared stack.
"""

from __future__ import annotations

import copy
import json
import queue
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from stacklib import (
    sample_chat,
    ACCESS_PROHIBITED,
    NOT_AUTHENTICATED,
    NOT_FOUND,
    database_url,
    describe,
    eventually,
    expect_422,
    expect_error,
    expect_ok,
    psql,
)

API = "/api/v1/chats"
DEFAULT = "Something went wrong :/"
AUDIENCE = "You do not have permission to share with the requested audience"
REALTIME_CHANNEL = "skiff:realtime"

CHAT_KEYS = [
    "id", "user_id", "title", "chat", "updated_at", "created_at", "share_id", "archived", "pinned", "meta",
    "variables", "folder_id", "tasks", "summary", "current_message_id", "context_usage",
]
ITEM_KEYS = ["id", "title", "updated_at", "created_at", "last_read_at", "snippet", "active", "archived"]
TAG_KEYS = ["id", "name", "user_id", "meta"]
SHARED_KEYS = ["id", "chat_id", "title", "share_id", "updated_at", "created_at"]


# --------------------------------------------------------------------------------------------------
# Helpers


def empty_chat(title: str) -> dict:
    """A chat without messages (the sample "Create second chat")."""
    return {"title": title, "models": ["fake-gpt"], "messages": [], "history": {"messages": {}, "currentId": None}}


def message(mid: str, parent: str | None, role: str, content: str, children: list[str] | None = None) -> dict:
    m = {"id": mid, "parentId": parent, "childrenIds": list(children or []), "role": role, "content": content,
         "timestamp": 1700000000}
    if role == "assistant":
        m.update(model="fake-gpt", done=True)
    return m


def assert_chat_response(c: dict) -> dict:
    assert isinstance(c, dict), c
    assert list(c.keys()) == CHAT_KEYS, list(c.keys())
    assert isinstance(c["chat"], dict), c
    assert isinstance(c["created_at"], int) and isinstance(c["updated_at"], int), c
    assert isinstance(c["archived"], bool), c
    return c


def assert_items(items: list) -> list:
    assert isinstance(items, list), items
    for item in items:
        assert list(item.keys()) == ITEM_KEYS, list(item.keys())
        assert item["active"] is False, item
    return items


def ids(items: list) -> list[str]:
    return [i["id"] for i in items]


def create_chat(stack, user, chat: dict | None = None, **form) -> dict:
    body = {"chat": sample_chat() if chat is None else chat, **form}
    return assert_chat_response(expect_ok(stack.post(f"{API}/new", user["token"], json=body)))


def get_chat(stack, user, cid: str) -> dict:
    return assert_chat_response(expect_ok(stack.get(f"{API}/{cid}", user["token"])))


def update_chat(stack, user, cid: str, chat: dict, timeout: float = 15, **form) -> dict:
    body = {"chat": chat, **form}
    return assert_chat_response(expect_ok(stack.post(f"{API}/{cid}", user["token"], json=body, timeout=timeout)))


def list_chats(stack, user, path: str = "/", **params) -> list:
    return assert_items(expect_ok(stack.get(f"{API}{path}", user["token"], params=params)))


def import_chats(stack, user, chats: list[dict], timeout: float = 60) -> list:
    body = expect_ok(stack.post(f"{API}/import", user["token"], json={"chats": chats}, timeout=timeout))
    assert isinstance(body, list) and len(body) == len(chats), describe_list(body)
    for c in body:
        assert_chat_response(c)
    return body


def describe_list(body) -> str:
    return repr(body)[:600]


def import_item(title: str, updated_at: int | None = None, **extra) -> dict:
    item = {"chat": empty_chat(title), **extra}
    if updated_at is not None:
        item.setdefault("created_at", updated_at)
        item["updated_at"] = updated_at
    return item


def create_folder(stack, user, name: str | None = None, parent_id: str | None = None) -> dict:
    body = {"name": name or "Folder " + uuid.uuid4().hex[:8]}
    if parent_id is not None:
        body["parent_id"] = parent_id
    return expect_ok(stack.post("/api/v1/folders/", user["token"], json=body))


def all_tags(stack, user) -> list:
    tags = expect_ok(stack.get(f"{API}/all/tags", user["token"]))
    assert isinstance(tags, list), tags
    for t in tags:
        assert list(t.keys()) == TAG_KEYS, t
    return tags


def add_tag(stack, user, cid: str, name: str) -> list:
    return expect_ok(stack.post(f"{API}/{cid}/tags", user["token"], json={"name": name}))


def pg(stack, sql: str) -> str:
    return psql(sql, url=database_url(stack.dbname)).strip()


class RealtimeTap:
    """`redis-cli SUBSCRIBE skiff:realtime` in a subprocess; collects the JSON payloads published on it.

    Pub/sub channels are not per Redis db index, so payloads of other stacks may show up too: callers filter."""

    def __init__(self, redis_url: str, channel: str = REALTIME_CHANNEL):
        self.channel = channel
        self.proc = subprocess.Popen(
            ["redis-cli", "-u", redis_url, "SUBSCRIBE", channel],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: list = []
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 10
        recent: list[str] = []
        while recent != ["subscribe", channel, "1"]:
            line = self._next(deadline)
            if line is None:
                self.close()
                raise AssertionError(f"redis-cli SUBSCRIBE {channel} did not confirm; last lines {recent}")
            recent = (recent + [line])[-3:]

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next(self, deadline: float):
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def wait_for(self, predicate, timeout: float = 10.0):
        for payload in self.seen:
            if predicate(payload):
                return payload
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._next(deadline)
            if line is None:
                break
            if not line.startswith("{"):
                continue
            try:
                payload = json.loads(line)
            except ValueError:
                continue
            self.seen.append(payload)
            if predicate(payload):
                return payload
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "RealtimeTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def about_chat(cid: str):
    return lambda p: isinstance(p, dict) and isinstance(p.get("data"), dict) and p["data"].get("chat_id") == cid


# --------------------------------------------------------------------------------------------------
# Create


def test_create_chat_sample(stack, make_user):
    alice = make_user(name="Alice Tester")
    before = int(time.time())
    chat = sample_chat()
    chat["history"]["messages"]["m2"]["user_id"] = "someone-else"  # overwritten by the server
    c = create_chat(stack, alice, chat)
    assert c["user_id"] == alice["id"]
    assert c["title"] == "First chat"
    assert c["id"] and c["id"] != "m1"
    uuid.UUID(c["id"])
    assert before - 2 <= c["created_at"] <= int(time.time()) + 2
    assert c["updated_at"] == c["created_at"]
    assert c["share_id"] is None and c["archived"] is False and c["pinned"] is False
    assert c["meta"] == {} and c["variables"] == {} and c["folder_id"] is None
    assert c["tasks"] is None and c["summary"] is None and c["context_usage"] is None
    assert c["current_message_id"] == "m2"

    body = c["chat"]
    assert body["title"] == "First chat" and body["models"] == ["fake-gpt"] and body["params"] == {}
    assert body["history"]["currentId"] == "m2"
    hist = body["history"]["messages"]
    assert set(hist) == {"m1", "m2"}
    assert hist["m1"]["user_id"] == alice["id"]
    assert hist["m1"]["user"] == {"id": alice["id"], "name": "Alice Tester"}
    assert hist["m1"]["content"] == "Hello?" and hist["m1"]["childrenIds"] == ["m2"]
    assert hist["m2"]["user_id"] == alice["id"]
    assert "user" not in hist["m2"]
    assert hist["m2"]["done"] is True and hist["m2"]["parentId"] == "m1"
    legacy = body["messages"]
    assert [m["id"] for m in legacy] == ["m1", "m2"]
    assert legacy[0]["user_id"] == alice["id"] and legacy[0]["user"] == {"id": alice["id"], "name": "Alice Tester"}
    assert legacy[1]["user_id"] == alice["id"] and "user" not in legacy[1]

    # The stored chat reads back the same.
    got = get_chat(stack, alice, c["id"])
    assert got["chat"]["history"]["messages"]["m1"]["user"] == {"id": alice["id"], "name": "Alice Tester"}
    assert got["current_message_id"] == "m2"


def test_create_chat_defaults(stack, make_user):
    alice = make_user()
    c = create_chat(stack, alice, sample_chat(title=None))
    assert c["title"] == "New Chat"
    c = create_chat(stack, alice, {})
    assert c["title"] == "New Chat" and c["current_message_id"] is None
    c = create_chat(stack, alice, empty_chat("Second chat about bananas"))
    assert c["title"] == "Second chat about bananas" and c["current_message_id"] is None
    assert c["chat"] == empty_chat("Second chat about bananas")
    c = create_chat(stack, alice, sample_chat("With variables"), variables={"{{CITY}}": "Paris"})
    assert c["variables"] == {"{{CITY}}": "Paris"}


def test_create_chat_in_folder(stack, make_user):
    alice, bob = make_user(), make_user()
    folder = create_folder(stack, alice)
    c = create_chat(stack, alice, sample_chat("Filed"), folder_id=folder["id"])
    assert c["folder_id"] == folder["id"]
    # Bob's folder, or no folder at all: not found.
    bobs = create_folder(stack, bob)
    for fid in (bobs["id"], str(uuid.uuid4())):
        r = stack.post(f"{API}/new", alice["token"], json={"chat": sample_chat("Nope"), "folder_id": fid})
        expect_error(r, 404, NOT_FOUND)
    assert ids(list_chats(stack, alice, include_folders="true")) == [c["id"]]


# --------------------------------------------------------------------------------------------------
# Lists


def test_list_order_and_filters(stack, make_user):
    alice = make_user()
    a, b, cc = import_chats(stack, alice, [
        import_item("Chat A", 1700000100),
        import_item("Chat B", 1700000300),
        import_item("Chat C", 1700000200),
    ])
    assert [a["updated_at"], b["updated_at"], cc["updated_at"]] == [1700000100, 1700000300, 1700000200]
    fresh = create_chat(stack, alice, sample_chat("Fresh"))
    pinned = import_chats(stack, alice, [import_item("Pinned one", 1700000250, pinned=True)])[0]
    archived = import_chats(stack, alice, [import_item("Archived one", 1700000260, archived=True)])[0]
    folder = create_folder(stack, alice)
    filed = create_chat(stack, alice, sample_chat("Filed"), folder_id=folder["id"])

    expected = [fresh["id"], b["id"], cc["id"], a["id"]]
    for path in ("/", "/list"):
        items = list_chats(stack, alice, path)
        assert ids(items) == expected, (path, items)
        first = items[0]
        assert first["title"] == "Fresh" and first["snippet"] is None and first["archived"] is False
        assert isinstance(first["last_read_at"], int)
        assert items[1] == {"id": b["id"], "title": "Chat B", "updated_at": 1700000300, "created_at": 1700000300,
                            "last_read_at": items[1]["last_read_at"], "snippet": None, "active": False,
                            "archived": False}

    with_pinned = ids(list_chats(stack, alice, include_pinned="true"))
    assert with_pinned == [fresh["id"], b["id"], pinned["id"], cc["id"], a["id"]]
    with_folders = ids(list_chats(stack, alice, include_folders="true"))
    assert set(with_folders) == set(expected) | {filed["id"]}
    assert with_folders[0] in (fresh["id"], filed["id"])
    everything = ids(list_chats(stack, alice, include_pinned="true", include_folders="true"))
    assert set(everything) == set(expected) | {filed["id"], pinned["id"]}
    assert archived["id"] not in everything
    assert ids(list_chats(stack, alice, page=1)) == expected
    assert list_chats(stack, alice, page=2) == []
    assert list_chats(stack, alice, page=50) == []


def test_list_paging_60(stack, make_user):
    alice = make_user()
    imported = import_chats(stack, alice, [import_item(f"Paged {i:03d}", 1700000000 + i) for i in range(65)])
    newest_first = [c["id"] for c in sorted(imported, key=lambda c: -c["updated_at"])]
    page1 = list_chats(stack, alice, page=1)
    assert ids(page1) == newest_first[:60]
    page2 = list_chats(stack, alice, page=2)
    assert ids(page2) == newest_first[60:]
    assert list_chats(stack, alice, page=3) == []
    assert ids(list_chats(stack, alice)) == newest_first


def test_list_bad_page(stack, make_user):
    alice = make_user()
    create_chat(stack, alice)
    r = stack.get(f"{API}/", alice["token"], params={"page": 0})
    assert r.status_code == 400, describe(r)
    assert isinstance(r.json().get("detail"), str), describe(r)
    r = stack.get(f"{API}/", alice["token"], params={"page": "abc"})
    expect_422(r, loc=["query", "page"], type_="int_parsing")
    r = stack.get(f"{API}/list", alice["token"], params={"page": "abc"})
    expect_422(r, loc=["query", "page"])
    # A page whose offset does not fit in 64 bits is refused, not a crash, on every paged route.
    huge = str(2**63 - 1)
    for path in ("/", "/archived", "/search?text=x", "/shared", "/folder/none/list"):
        r = stack.get(f"{API}{path}", alice["token"], params={"page": huge})
        assert r.status_code == 400, describe(r)
        assert isinstance(r.json().get("detail"), str), describe(r)
    r = stack.get(f"/api/v1/folders/none/shared/chats", alice["token"], params={"page": huge})
    assert r.status_code in (400, 404), describe(r)
    assert len(list_chats(stack, alice)) == 1


def test_list_needs_a_verified_user(stack, make_user):
    pending = make_user(role="pending")
    expect_error(stack.get(f"{API}/"), 401, NOT_AUTHENTICATED)
    expect_error(stack.get(f"{API}/", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.post(f"{API}/new", pending["token"], json={"chat": sample_chat()}), 401, ACCESS_PROHIBITED)


# --------------------------------------------------------------------------------------------------
# Read


def test_get_chat(stack, admin, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    got = get_chat(stack, alice, c["id"])
    assert got["chat"]["share_mode"] == "continue"
    assert got["chat"]["history"] == c["chat"]["history"]
    assert got["chat"]["messages"] == c["chat"]["messages"]
    for key in CHAT_KEYS:
        if key != "chat":
            assert got[key] == c[key], key
    expect_error(stack.get(f"{API}/{c['id']}", bob["token"]), 401, NOT_FOUND)
    expect_error(stack.get(f"{API}/{uuid.uuid4()}", alice["token"]), 401, NOT_FOUND)
    # Skiff: admins do not read other users' chats through GET /{id}.
    expect_error(stack.get(f"{API}/{c['id']}", admin["token"]), 401, NOT_FOUND)


# --------------------------------------------------------------------------------------------------
# Update


def test_title_only_update_keeps_updated_at(stack, make_user):
    alice = make_user()
    c = create_chat(stack, alice)
    time.sleep(1.2)
    u = update_chat(stack, alice, c["id"], {"title": "Renamed chat"})
    assert u["title"] == "Renamed chat" and u["chat"]["title"] == "Renamed chat"
    assert u["updated_at"] == c["updated_at"]
    assert u["chat"]["history"] == c["chat"]["history"]
    assert u["chat"]["models"] == ["fake-gpt"]
    assert u["current_message_id"] == "m2"
    got = get_chat(stack, alice, c["id"])
    assert got["title"] == "Renamed chat" and got["updated_at"] == c["updated_at"]
    item = list_chats(stack, alice)[0]
    assert item["title"] == "Renamed chat" and item["updated_at"] == c["updated_at"]


def test_history_updates_merge(stack, make_user):
    alice = make_user()
    chat = {"title": "Merging", "models": ["fake-gpt"],
            "history": {"currentId": "m1", "messages": {"m1": message("m1", None, "user", "Question?")}}}
    c = create_chat(stack, alice, chat)
    stale = copy.deepcopy(c["chat"])

    def branch(new_id: str, content: str) -> dict:
        body = copy.deepcopy(stale)
        body["history"]["messages"]["m1"]["childrenIds"] = [new_id]
        body["history"]["messages"][new_id] = message(new_id, "m1", "assistant", content)
        body["history"]["currentId"] = new_id
        return body

    time.sleep(1.2)
    first = update_chat(stack, alice, c["id"], branch("m2", "Answer one"))
    assert first["updated_at"] > c["updated_at"]  # a history change bumps updated_at
    second = update_chat(stack, alice, c["id"], branch("m3", "Answer two"))
    assert set(second["chat"]["history"]["messages"]) == {"m1", "m2", "m3"}

    got = get_chat(stack, alice, c["id"])
    msgs = got["chat"]["history"]["messages"]
    assert set(msgs) == {"m1", "m2", "m3"}
    assert sorted(msgs["m1"]["childrenIds"]) == ["m2", "m3"]
    assert msgs["m2"]["content"] == "Answer one" and msgs["m3"]["content"] == "Answer two"
    assert msgs["m2"]["user_id"] == alice["id"] and msgs["m3"]["user_id"] == alice["id"]
    assert got["chat"]["history"]["currentId"] == "m3"
    assert got["current_message_id"] == "m3"
    assert got["title"] == "Merging"


def test_legacy_messages_are_replaced(stack, make_user):
    alice = make_user()
    c = create_chat(stack, alice)
    replacement = [{"id": "x1", "role": "user", "content": "Only this"}]
    u = update_chat(stack, alice, c["id"], {"messages": replacement})
    assert [m["id"] for m in u["chat"]["messages"]] == ["x1"]
    assert u["chat"]["messages"][0]["content"] == "Only this"
    assert u["chat"]["messages"][0]["user_id"] == alice["id"]
    # History untouched by a messages-only update.
    assert set(u["chat"]["history"]["messages"]) == {"m1", "m2"}
    got = get_chat(stack, alice, c["id"])
    assert [m["id"] for m in got["chat"]["messages"]] == ["x1"]


def test_update_refusals(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    url = f"{API}/{c['id']}"
    expect_error(stack.post(url, bob["token"], json={"chat": {"title": "Mine now"}}), 401, ACCESS_PROHIBITED)
    expect_error(stack.post(url, bob["token"], json={"chat": sample_chat("Mine now")}), 401, ACCESS_PROHIBITED)
    expect_error(stack.post(f"{API}/{uuid.uuid4()}", alice["token"], json={"chat": {"title": "x"}}), 401,
                 ACCESS_PROHIBITED)
    assert get_chat(stack, alice, c["id"])["title"] == "First chat"

    detail = expect_422(stack.post(url, alice["token"], json={}), loc=["body", "chat"], type_="missing")
    assert detail[0]["msg"] == "Field required"
    expect_422(stack.post(url, alice["token"], data='{"chat": ', headers={"Content-Type": "application/json"}),
               type_="json_invalid")
    expect_422(stack.post(url, alice["token"], json={"chat": "not an object"}), loc=["body", "chat"], type_="dict_type")
    expect_422(stack.post(url, alice["token"], json={"chat": [1, 2]}), loc=["body", "chat"], type_="dict_type")
    assert get_chat(stack, alice, c["id"])["title"] == "First chat"


# --------------------------------------------------------------------------------------------------
# Concurrency


def test_concurrent_updates_keep_every_message(stack, make_user):
    alice = make_user()
    c = create_chat(stack, alice, sample_chat("Busy chat"))
    stale = copy.deepcopy(c["chat"])
    n = 20
    barrier = threading.Barrier(n)

    def send(i: int):
        body = copy.deepcopy(stale)
        mid = f"n{i:02d}"
        body["history"]["messages"][mid] = message(mid, "m2", "user", f"follow-up {i}")
        body["history"]["messages"]["m2"]["childrenIds"] = [mid]
        body["history"]["currentId"] = mid
        barrier.wait(timeout=30)
        return stack.post(f"{API}/{c['id']}", alice["token"], json={"chat": body}, timeout=120)

    with ThreadPoolExecutor(max_workers=n) as pool:
        responses = list(pool.map(send, range(n)))
    bad = [describe(r) for r in responses if r.status_code != 200]
    assert not bad, bad
    assert not any("database is locked" in r.text for r in responses)

    got = get_chat(stack, alice, c["id"])
    msgs = got["chat"]["history"]["messages"]
    new_ids = {f"n{i:02d}" for i in range(n)}
    assert new_ids <= set(msgs), sorted(new_ids - set(msgs))
    assert set(msgs) == new_ids | {"m1", "m2"}
    assert set(msgs["m2"]["childrenIds"]) == new_ids
    for i in range(n):
        assert msgs[f"n{i:02d}"]["content"] == f"follow-up {i}"


def test_concurrent_creates(stack, make_user):
    alice = make_user()
    n = 50
    barrier = threading.Barrier(n)

    def send(i: int):
        barrier.wait(timeout=30)
        return stack.post(f"{API}/new", alice["token"], json={"chat": sample_chat(f"Parallel {i}")}, timeout=120)

    with ThreadPoolExecutor(max_workers=n) as pool:
        responses = list(pool.map(send, range(n)))
    bad = [describe(r) for r in responses if r.status_code != 200]
    assert not bad, bad
    created = {r.json()["id"] for r in responses}
    assert len(created) == n
    items = list_chats(stack, alice)
    assert len(items) == n
    assert set(ids(items)) == created
    assert {i["title"] for i in items} == {f"Parallel {i}" for i in range(n)}


# --------------------------------------------------------------------------------------------------
# Messages and message events


def test_edit_message(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    time.sleep(1.2)
    r = stack.post(f"{API}/{c['id']}/messages/m2", alice["token"], json={"content": "Edited answer"})
    u = assert_chat_response(expect_ok(r))
    assert u["chat"]["history"]["messages"]["m2"]["content"] == "Edited answer"
    assert u["updated_at"] > c["updated_at"]
    got = get_chat(stack, alice, c["id"])
    assert got["chat"]["history"]["messages"]["m2"]["content"] == "Edited answer"
    assert got["chat"]["history"]["messages"]["m1"]["content"] == "Hello?"
    assert got["updated_at"] == u["updated_at"]

    expect_error(stack.post(f"{API}/{c['id']}/messages/m2", alice["token"], json={}), 400,
                 "No message changes supplied")
    expect_error(stack.post(f"{API}/{c['id']}/messages/m2", bob["token"], json={"content": "hijack"}), 401,
                 ACCESS_PROHIBITED)
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/messages/m2", alice["token"], json={"content": "x"}), 401,
                 ACCESS_PROHIBITED)
    expect_422(stack.post(f"{API}/{c['id']}/messages/m2", alice["token"], json={"content": 5}),
               loc=["body", "content"])
    assert get_chat(stack, alice, c["id"])["chat"]["history"]["messages"]["m2"]["content"] == "Edited answer"


def test_message_edit_is_published(stack, make_user):
    alice = make_user()
    c = create_chat(stack, alice)
    with RealtimeTap(stack.redis_url) as tap:
        expect_ok(stack.post(f"{API}/{c['id']}/messages/m2", alice["token"], json={"content": "Live edit"}))
        got = tap.wait_for(lambda p: about_chat(c["id"])(p) and p.get("to") == {"room": f"user:{alice['id']}"})
    assert got is not None, tap.seen[-5:]
    assert got["event"] == "events"
    assert got["data"] == {"chat_id": c["id"], "message_id": "m2",
                           "data": {"type": "chat:message",
                                    "data": {"chat_id": c["id"], "message_id": "m2", "content": "Live edit"}}}


def test_message_event_is_published(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    url = f"{API}/{c['id']}/messages/m2/event"
    data = {"description": "Searching the web", "done": False, "n": 3}
    with RealtimeTap(stack.redis_url) as tap:
        assert expect_ok(stack.post(url, alice["token"], json={"type": "status", "data": data})) is True
        expected = {"to": {"room": f"user:{alice['id']}"}, "event": "events",
                    "data": {"chat_id": c["id"], "message_id": "m2", "data": {"type": "status", "data": data}}}
        got = tap.wait_for(lambda p: p == expected)
        assert got == expected, [p for p in tap.seen if about_chat(c["id"])(p)]

        assert expect_ok(stack.post(url, alice["token"], json={"type": "replace", "data": {"content": "X"}})) is True
        expected = {"to": {"room": f"user:{alice['id']}"}, "event": "events",
                    "data": {"chat_id": c["id"], "message_id": "m2",
                             "data": {"type": "replace", "data": {"content": "X"}}}}
        assert tap.wait_for(lambda p: p == expected) == expected, [p for p in tap.seen if about_chat(c["id"])(p)]
    assert get_chat(stack, alice, c["id"])["chat"]["history"]["messages"]["m2"]["content"] == "X"

    expect_422(stack.post(url, alice["token"], json={"data": {}}), loc=["body", "type"], type_="missing")
    expect_422(stack.post(url, alice["token"], json={"type": "status"}), loc=["body", "data"], type_="missing")
    expect_422(stack.post(url, alice["token"], json={"type": "status", "data": "text"}), loc=["body", "data"])
    expect_error(stack.post(url, bob["token"], json={"type": "replace", "data": {"content": "hijack"}}), 401,
                 ACCESS_PROHIBITED)
    assert get_chat(stack, alice, c["id"])["chat"]["history"]["messages"]["m2"]["content"] == "X"


# --------------------------------------------------------------------------------------------------
# Delete


def test_delete_chat(stack, make_user):
    alice, bob = make_user(), make_user()
    keep = create_chat(stack, alice, sample_chat("Keep"))
    gone = create_chat(stack, alice, sample_chat("Gone"))
    add_tag(stack, alice, gone["id"], "Solo")
    add_tag(stack, alice, gone["id"], "Shared Tag")
    add_tag(stack, alice, keep["id"], "Shared Tag")

    expect_error(stack.delete(f"{API}/{gone['id']}", bob["token"]), 404, NOT_FOUND)
    expect_error(stack.delete(f"{API}/{uuid.uuid4()}", alice["token"]), 404, NOT_FOUND)
    assert get_chat(stack, alice, gone["id"])["title"] == "Gone"

    assert expect_ok(stack.delete(f"{API}/{gone['id']}", alice["token"])) is True
    expect_error(stack.get(f"{API}/{gone['id']}", alice["token"]), 401, NOT_FOUND)
    assert ids(list_chats(stack, alice)) == [keep["id"]]
    # A tag only the deleted chat used goes with it; a tag still in use stays.
    assert sorted(t["id"] for t in all_tags(stack, alice)) == ["shared_tag"]
    expect_error(stack.delete(f"{API}/{gone['id']}", alice["token"]), 404, NOT_FOUND)


def test_delete_all_chats(stack, make_user):
    alice, bob = make_user(), make_user()
    bobs = create_chat(stack, bob, sample_chat("Bob's"))
    one = create_chat(stack, alice, sample_chat("One"))
    two = create_chat(stack, alice, sample_chat("Two"))
    add_tag(stack, alice, one["id"], "Work Stuff")
    expect_ok(stack.post(f"{API}/{two['id']}/archive", alice["token"]))
    expect_ok(stack.post(f"{API}/{one['id']}/share", alice["token"]))

    assert expect_ok(stack.delete(f"{API}/", alice["token"])) is True
    assert list_chats(stack, alice) == []
    assert list_chats(stack, alice, include_pinned="true", include_folders="true") == []
    assert expect_ok(stack.get(f"{API}/archived/count", alice["token"])) == 0
    assert all_tags(stack, alice) == []
    assert expect_ok(stack.get(f"{API}/shared", alice["token"])) == []
    expect_error(stack.get(f"{API}/{one['id']}", alice["token"]), 401, NOT_FOUND)
    # Other users keep theirs.
    assert ids(list_chats(stack, bob)) == [bobs["id"]]


# --------------------------------------------------------------------------------------------------
# Pin


def test_pin(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    other = create_chat(stack, alice, sample_chat("Other"))
    assert expect_ok(stack.get(f"{API}/{c['id']}/pinned", alice["token"])) is False
    p = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/pin", alice["token"])))
    assert p["pinned"] is True and p["id"] == c["id"]
    assert expect_ok(stack.get(f"{API}/{c['id']}/pinned", alice["token"])) is True
    pinned = list_chats(stack, alice, "/pinned")
    assert ids(pinned) == [c["id"]]
    assert pinned[0]["title"] == "First chat" and pinned[0]["archived"] is False
    assert ids(list_chats(stack, alice)) == [other["id"]]
    assert set(ids(list_chats(stack, alice, include_pinned="true"))) == {c["id"], other["id"]}

    expect_error(stack.post(f"{API}/{c['id']}/pin", bob["token"]), 401, DEFAULT)
    expect_error(stack.get(f"{API}/{c['id']}/pinned", bob["token"]), 401, DEFAULT)
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/pin", alice["token"]), 401, DEFAULT)
    assert list_chats(stack, bob, "/pinned") == []

    u = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/pin", alice["token"])))
    assert u["pinned"] is False
    assert expect_ok(stack.get(f"{API}/{c['id']}/pinned", alice["token"])) is False
    assert list_chats(stack, alice, "/pinned") == []


# --------------------------------------------------------------------------------------------------
# Archive


def test_archive_toggle(stack, make_user):
    alice, bob = make_user(), make_user()
    folder = create_folder(stack, alice)
    c = create_chat(stack, alice, sample_chat("Archive me please"), folder_id=folder["id"])
    a = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/archive", alice["token"])))
    assert a["archived"] is True and a["folder_id"] is None
    assert c["id"] not in ids(list_chats(stack, alice, include_pinned="true", include_folders="true"))

    archived = list_chats(stack, alice, "/archived")
    assert ids(archived) == [c["id"]]
    assert archived[0]["archived"] is False and archived[0]["last_read_at"] is None  # as the real server
    assert archived[0]["title"] == "Archive me please"
    assert expect_ok(stack.get(f"{API}/archived/count", alice["token"])) == 1
    assert get_chat(stack, alice, c["id"])["archived"] is True

    expect_error(stack.post(f"{API}/{c['id']}/archive", bob["token"]), 401, DEFAULT)
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/archive", alice["token"]), 401, DEFAULT)
    assert expect_ok(stack.get(f"{API}/archived/count", bob["token"])) == 0

    u = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/archive", alice["token"])))
    assert u["archived"] is False and u["folder_id"] is None
    assert list_chats(stack, alice, "/archived") == []
    assert ids(list_chats(stack, alice)) == [c["id"]]


def test_archived_list_query_and_order(stack, make_user):
    alice = make_user()
    made = import_chats(stack, alice, [
        import_item("Archive C kiwi", 1700000100, archived=True),
        import_item("Archive A kiwi", 1700000300, archived=True),
        import_item("Archive B mango", 1700000200, archived=True),
    ])
    by_title = {c["title"]: c["id"] for c in made}
    a, b, cc = by_title["Archive A kiwi"], by_title["Archive B mango"], by_title["Archive C kiwi"]
    live = create_chat(stack, alice, sample_chat("Not archived kiwi"))

    assert ids(list_chats(stack, alice, "/archived")) == [a, b, cc]  # updated_at desc
    assert set(ids(list_chats(stack, alice, "/archived", query="kiwi"))) == {a, cc}
    assert ids(list_chats(stack, alice, "/archived", query="mango")) == [b]
    assert list_chats(stack, alice, "/archived", query="papaya") == []
    assert ids(list_chats(stack, alice, "/archived", order_by="title", direction="asc")) == [a, b, cc]
    assert ids(list_chats(stack, alice, "/archived", order_by="title", direction="desc")) == [cc, b, a]
    assert ids(list_chats(stack, alice, "/archived", order_by="updated_at", direction="asc")) == [cc, b, a]
    assert ids(list_chats(stack, alice, "/archived", page=1, order_by="updated_at", direction="desc")) == [a, b, cc]
    assert list_chats(stack, alice, "/archived", page=2) == []
    assert ids(list_chats(stack, alice, "/archived", query="kiwi", order_by="title", direction="asc")) == [a, cc]

    # Skiff: an unknown column or direction is a 400 with a detail, never a 500.
    for params in ({"order_by": "nonsense", "direction": "asc"}, {"order_by": "title", "direction": "sideways"},
                   {"order_by": "title; DROP TABLE chats", "direction": "asc"}):
        r = stack.get(f"{API}/archived", alice["token"], params=params)
        assert r.status_code == 400, describe(r)
        assert isinstance(r.json().get("detail"), str) and r.json()["detail"], describe(r)
    assert expect_ok(stack.get(f"{API}/archived/count", alice["token"])) == 3

    full = expect_ok(stack.get(f"{API}/all/archived", alice["token"]))
    for c in full:
        assert_chat_response(c)
        assert c["archived"] is True
    assert ids(full) == [a, b, cc]
    assert live["id"] not in ids(full)


def test_archive_and_unarchive_all(stack, make_user):
    alice, bob = make_user(), make_user()
    bobs = create_chat(stack, bob, sample_chat("Bob stays"))
    folder = create_folder(stack, alice)
    made = [create_chat(stack, alice, sample_chat(f"Chat {i}")) for i in range(2)]
    made.append(create_chat(stack, alice, sample_chat("In folder"), folder_id=folder["id"]))
    made.append(import_chats(stack, alice, [import_item("Already archived", 1700000000, archived=True)])[0])
    count = expect_ok(stack.get(f"{API}/archived/count", alice["token"]))
    assert isinstance(count, int) and not isinstance(count, bool) and count == 1

    assert expect_ok(stack.post(f"{API}/archive/all", alice["token"])) is True
    assert expect_ok(stack.get(f"{API}/archived/count", alice["token"])) == 4
    assert list_chats(stack, alice, include_pinned="true", include_folders="true") == []
    assert set(ids(list_chats(stack, alice, "/archived"))) == {c["id"] for c in made}
    assert get_chat(stack, alice, made[2]["id"])["folder_id"] is None
    assert expect_ok(stack.get(f"{API}/archived/count", bob["token"])) == 0
    assert ids(list_chats(stack, bob)) == [bobs["id"]]

    assert expect_ok(stack.post(f"{API}/unarchive/all", alice["token"])) is True
    assert expect_ok(stack.get(f"{API}/archived/count", alice["token"])) == 0
    assert list_chats(stack, alice, "/archived") == []
    assert set(ids(list_chats(stack, alice))) == {c["id"] for c in made}


# --------------------------------------------------------------------------------------------------
# Tags


def test_tags(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    d = create_chat(stack, alice, sample_chat("Second"))
    tag = {"id": "work_stuff", "name": "Work Stuff", "user_id": alice["id"], "meta": None}

    added = add_tag(stack, alice, c["id"], "Work Stuff")
    assert added == [tag]
    assert list(added[0].keys()) == TAG_KEYS
    assert expect_ok(stack.get(f"{API}/{c['id']}/tags", alice["token"])) == [tag]
    assert all_tags(stack, alice) == [tag]
    got = get_chat(stack, alice, c["id"])
    assert got["meta"]["tags"] == ["work_stuff"]
    assert got["updated_at"] == c["updated_at"]  # tags do not bump updated_at
    # Adding the same tag again (in another spelling) changes nothing; the first spelling stays the name.
    assert add_tag(stack, alice, c["id"], "work stuff") == [tag]
    assert get_chat(stack, alice, c["id"])["meta"]["tags"] == ["work_stuff"]

    both = add_tag(stack, alice, c["id"], "Other")
    assert sorted(both, key=lambda t: t["id"]) == [
        {"id": "other", "name": "Other", "user_id": alice["id"], "meta": None}, tag]
    assert sorted(get_chat(stack, alice, c["id"])["meta"]["tags"]) == ["other", "work_stuff"]
    assert add_tag(stack, alice, d["id"], "Work Stuff") == [tag]

    by_tag = assert_items(expect_ok(stack.post(f"{API}/tags", alice["token"], json={"name": "work_stuff"})))
    assert set(ids(by_tag)) == {c["id"], d["id"]}
    assert ids(assert_items(expect_ok(stack.post(f"{API}/tags", alice["token"], json={"name": "Other"})))) == [c["id"]]
    assert expect_ok(stack.post(f"{API}/tags", bob["token"], json={"name": "work_stuff"})) == []

    expect_error(stack.post(f"{API}/{c['id']}/tags", alice["token"], json={"name": "None"}), 400,
                 "[ERROR: Tag name cannot be 'None']")
    expect_error(stack.post(f"{API}/{c['id']}/tags", alice["token"], json={"name": "none"}), 400,
                 "[ERROR: Tag name cannot be 'None']")
    expect_error(stack.post(f"{API}/{c['id']}/tags", bob["token"], json={"name": "x"}), 401, DEFAULT)
    expect_error(stack.get(f"{API}/{c['id']}/tags", bob["token"]), 401, NOT_FOUND)
    expect_error(stack.delete(f"{API}/{c['id']}/tags", bob["token"], json={"name": "Work Stuff"}), 401, NOT_FOUND)
    assert all_tags(stack, bob) == []

    # Removing: the row stays while another chat uses it, and goes with the last use.
    left = expect_ok(stack.delete(f"{API}/{d['id']}/tags", alice["token"], json={"name": "Work Stuff"}))
    assert left == []
    assert "work_stuff" in [t["id"] for t in all_tags(stack, alice)]
    left = expect_ok(stack.delete(f"{API}/{c['id']}/tags", alice["token"], json={"name": "Work Stuff"}))
    assert left == [{"id": "other", "name": "Other", "user_id": alice["id"], "meta": None}]
    assert [t["id"] for t in all_tags(stack, alice)] == ["other"]
    assert get_chat(stack, alice, c["id"])["meta"]["tags"] == ["other"]
    assert expect_ok(stack.delete(f"{API}/{c['id']}/tags", alice["token"], json={"name": "Other"})) == []
    assert all_tags(stack, alice) == []


# --------------------------------------------------------------------------------------------------
# Search


def test_search(stack, make_user):
    alice, bob = make_user(), make_user()
    bananas = create_chat(stack, alice, empty_chat("Second chat about bananas"))
    fruit = create_chat(stack, alice, {
        "title": "Fruit talk", "models": ["fake-gpt"],
        "history": {"currentId": "f2", "messages": {
            "f1": message("f1", None, "user", "What goes on a pizza?", ["f2"]),
            "f2": message("f2", "f1", "assistant", "Some people really like pineapple on their pizza."),
        }},
    })
    tagged = create_chat(stack, alice, sample_chat("Tagged chat"))
    add_tag(stack, alice, tagged["id"], "Work Stuff")
    pinned = create_chat(stack, alice, sample_chat("Pinned chat"))
    expect_ok(stack.post(f"{API}/{pinned['id']}/pin", alice["token"]))
    gone = create_chat(stack, alice, sample_chat("Archived chat about durian"))
    expect_ok(stack.post(f"{API}/{gone['id']}/archive", alice["token"]))
    create_chat(stack, bob, empty_chat("Bob also likes bananas"))

    def search(text: str, who=alice) -> list:
        return assert_items(expect_ok(stack.get(f"{API}/search", who["token"], params={"text": text})))

    found = search("bananas")
    assert ids(found) == [bananas["id"]]
    assert found[0]["snippet"] is None and found[0]["title"] == "Second chat about bananas"
    assert found[0]["archived"] is False

    found = search("pineapple")
    assert ids(found) == [fruit["id"]]
    assert isinstance(found[0]["snippet"], str) and "pineapple" in found[0]["snippet"].lower()

    assert ids(search("tag:work_stuff")) == [tagged["id"]]
    assert search("tag:no_such_tag") == []
    assert ids(search("pinned:true")) == [pinned["id"]]
    assert search("durian") == []  # archived chats are left out unless asked for
    found = search("archived:true")
    assert ids(found) == [gone["id"]]
    assert found[0]["archived"] is True
    assert ids(search("durian archived:true")) == [gone["id"]]
    assert search("papaya") == []

    expect_422(stack.get(f"{API}/search", alice["token"]), loc=["query", "text"], type_="missing")


# --------------------------------------------------------------------------------------------------
# Share


def test_share_and_grants(stack, make_user):
    alice, bob, carol = make_user(), make_user(), make_user()
    chat = sample_chat("Shared chat")
    chat["params"] = {"temperature": 0.3}
    c = create_chat(stack, alice, chat, variables={"{{CITY}}": "Paris"})

    s = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/share", alice["token"])))
    sid = s["share_id"]
    assert s["id"] == c["id"] and isinstance(sid, str)
    uuid.UUID(sid)
    assert sid != c["id"]
    assert get_chat(stack, alice, c["id"])["share_id"] == sid

    # Nobody but the sharer reads it before grants are set.
    expect_error(stack.get(f"{API}/share/{sid}", bob["token"]), 401, ACCESS_PROHIBITED)
    r = stack.get(f"{API}/share/{sid}")
    assert r.status_code == 401, describe(r)
    own = assert_chat_response(expect_ok(stack.get(f"{API}/share/{sid}", alice["token"])))
    assert own["id"] == sid and own["user_id"] == alice["id"] and own["title"] == "Shared chat"
    assert own["chat"]["share_mode"] is None
    assert own["share_id"] == sid

    shared = expect_ok(stack.get(f"{API}/shared", alice["token"]))
    assert len(shared) == 1 and list(shared[0].keys()) == SHARED_KEYS
    assert shared[0]["id"] == c["id"] and shared[0]["chat_id"] == c["id"]
    assert shared[0]["share_id"] == sid and shared[0]["title"] == "Shared chat"
    assert expect_ok(stack.get(f"{API}/shared", bob["token"])) == []

    # Non-admins may not share with everybody.
    grant_all = {"access_grants": [{"principal_type": "user", "principal_id": "*", "permission": "read"}]}
    expect_error(stack.post(f"{API}/shared/{c['id']}/access/update", alice["token"], json=grant_all), 403, AUDIENCE)
    assert expect_ok(stack.get(f"{API}/shared/{c['id']}/access", alice["token"])) == []

    grant_bob = {"access_grants": [{"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}
    u = assert_chat_response(expect_ok(stack.post(f"{API}/shared/{c['id']}/access/update", alice["token"],
                                                  json=grant_bob)))
    assert u["id"] == c["id"]
    grants = expect_ok(stack.get(f"{API}/shared/{c['id']}/access", alice["token"]))
    assert len(grants) == 1 and set(grants[0].keys()) == {"id", "principal_type", "principal_id", "permission"}
    assert (grants[0]["principal_type"], grants[0]["principal_id"], grants[0]["permission"]) == (
        "user", bob["id"], "read")
    expect_error(stack.get(f"{API}/shared/{c['id']}/access", bob["token"]), 404, NOT_FOUND)

    seen = assert_chat_response(expect_ok(stack.get(f"{API}/share/{sid}", bob["token"])))
    assert seen["id"] == sid and seen["title"] == "Shared chat"
    assert seen["variables"] == {}
    assert "params" not in seen["chat"]
    assert seen["chat"]["share_mode"] is None
    assert seen["chat"]["history"]["messages"]["m2"]["content"] == "Hi!"
    expect_error(stack.get(f"{API}/share/{sid}", carol["token"]), 401, ACCESS_PROHIBITED)
    # A grant on the share does not open the chat itself.
    expect_error(stack.get(f"{API}/{c['id']}", bob["token"]), 401, NOT_FOUND)

    clone = assert_chat_response(expect_ok(stack.post(f"{API}/{sid}/clone/shared", bob["token"])))
    assert clone["user_id"] == bob["id"] and clone["title"] == "Clone of Shared chat"
    assert clone["id"] not in (c["id"], sid)
    assert clone["chat"]["title"] == "Clone of Shared chat"
    assert clone["share_id"] is None and clone["variables"] == {}
    assert get_chat(stack, bob, clone["id"])["title"] == "Clone of Shared chat"
    assert ids(list_chats(stack, bob)) == [clone["id"]]
    expect_error(stack.post(f"{API}/{sid}/clone/shared", carol["token"]), 401, ACCESS_PROHIBITED)
    assert list_chats(stack, carol) == []

    assert expect_ok(stack.delete(f"{API}/{c['id']}/share", alice["token"])) is True
    assert get_chat(stack, alice, c["id"])["share_id"] is None
    r = stack.get(f"{API}/share/{sid}", bob["token"])
    assert r.status_code == 401, describe(r)
    assert expect_ok(stack.get(f"{API}/shared", alice["token"])) == []


def test_delete_all_shares(stack, make_user):
    alice = make_user()
    one = create_chat(stack, alice, sample_chat("One"))
    two = create_chat(stack, alice, sample_chat("Two"))
    sids = [expect_ok(stack.post(f"{API}/{c['id']}/share", alice["token"]))["share_id"] for c in (one, two)]
    assert len(set(sids)) == 2
    assert {s["share_id"] for s in expect_ok(stack.get(f"{API}/shared", alice["token"]))} == set(sids)
    assert expect_ok(stack.delete(f"{API}/share/all", alice["token"])) is True
    assert expect_ok(stack.get(f"{API}/shared", alice["token"])) == []
    for c in (one, two):
        assert get_chat(stack, alice, c["id"])["share_id"] is None
    for sid in sids:
        r = stack.get(f"{API}/share/{sid}", alice["token"])
        assert r.status_code == 401, describe(r)


# --------------------------------------------------------------------------------------------------
# Clone


def test_clone(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    add_tag(stack, alice, c["id"], "Work Stuff")
    k = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/clone", alice["token"], json={})))
    assert k["id"] != c["id"] and k["user_id"] == alice["id"]
    assert k["title"] == "Clone of First chat" and k["chat"]["title"] == "Clone of First chat"
    assert k["chat"]["originalChatId"] == c["id"]
    assert k["chat"]["branchPointMessageId"] == "m2"
    assert k["chat"]["history"] == c["chat"]["history"]
    assert k["meta"] == {"tags": ["work_stuff"]}
    assert k["share_id"] is None and k["archived"] is False and k["current_message_id"] == "m2"
    assert set(ids(list_chats(stack, alice))) == {c["id"], k["id"]}
    by_tag = assert_items(expect_ok(stack.post(f"{API}/tags", alice["token"], json={"name": "work_stuff"})))
    assert set(ids(by_tag)) == {c["id"], k["id"]}

    named = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/clone", alice["token"],
                                                      json={"title": "My copy"})))
    assert named["title"] == "My copy" and named["chat"]["title"] == "My copy"

    expect_error(stack.post(f"{API}/{c['id']}/clone", bob["token"], json={}), 401, DEFAULT)
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/clone", alice["token"], json={}), 401, DEFAULT)
    assert list_chats(stack, bob) == []


# --------------------------------------------------------------------------------------------------
# Folder move


def test_move_chat_to_folder(stack, make_user):
    alice, bob = make_user(), make_user()
    folder = create_folder(stack, alice, "Projects")
    c = create_chat(stack, alice)
    expect_ok(stack.post(f"{API}/{c['id']}/pin", alice["token"]))

    m = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/folder", alice["token"],
                                                  json={"folder_id": folder["id"]})))
    assert m["folder_id"] == folder["id"] and m["pinned"] is False and m["archived"] is False
    items = list_chats(stack, alice, f"/folder/{folder['id']}/list")
    assert ids(items) == [c["id"]]
    assert items[0]["title"] == "First chat"
    full = expect_ok(stack.get(f"{API}/folder/{folder['id']}", alice["token"]))
    assert len(full) == 1
    assert_chat_response(full[0])
    assert full[0]["id"] == c["id"] and full[0]["folder_id"] == folder["id"]
    assert list_chats(stack, alice) == []
    assert list_chats(stack, alice, "/pinned") == []

    # Unknown folders, and other users' folders, are not found.
    bobs = create_folder(stack, bob)
    for fid in (str(uuid.uuid4()), bobs["id"]):
        expect_error(stack.post(f"{API}/{c['id']}/folder", alice["token"], json={"folder_id": fid}), 404, NOT_FOUND)
    assert get_chat(stack, alice, c["id"])["folder_id"] == folder["id"]
    assert list_chats(stack, alice, f"/folder/{uuid.uuid4()}/list") == []
    expect_error(stack.post(f"{API}/{c['id']}/folder", bob["token"], json={"folder_id": bobs["id"]}), 401, DEFAULT)
    assert list_chats(stack, bob, f"/folder/{folder['id']}/list") == []

    back = assert_chat_response(expect_ok(stack.post(f"{API}/{c['id']}/folder", alice["token"],
                                                     json={"folder_id": None})))
    assert back["folder_id"] is None
    assert ids(list_chats(stack, alice)) == [c["id"]]
    assert list_chats(stack, alice, f"/folder/{folder['id']}/list") == []


# --------------------------------------------------------------------------------------------------
# Import


def test_import(stack, make_user):
    alice = make_user()
    body = {"chats": [
        {"chat": sample_chat("Imported one"), "meta": {"tags": ["x"]}, "pinned": True, "created_at": 1700000000,
         "updated_at": 1700000001},
        {"chat": empty_chat("Imported two")},
    ]}
    before = int(time.time())
    made = expect_ok(stack.post(f"{API}/import", alice["token"], json=body))
    assert isinstance(made, list) and len(made) == 2
    for c in made:
        assert_chat_response(c)
        assert c["user_id"] == alice["id"]
    one = next(c for c in made if c["title"] == "Imported one")
    two = next(c for c in made if c["title"] == "Imported two")
    assert one["created_at"] == 1700000000 and one["updated_at"] == 1700000001
    assert one["pinned"] is True and one["meta"] == {"tags": ["x"]} and one["archived"] is False
    assert one["current_message_id"] == "m2"
    assert one["chat"]["history"]["messages"]["m1"]["user_id"] == alice["id"]
    assert two["created_at"] >= before - 2 and two["pinned"] is False and two["meta"] == {}
    assert one["id"] != two["id"]

    assert "x" in [t["id"] for t in all_tags(stack, alice)]
    assert ids(list_chats(stack, alice, "/pinned")) == [one["id"]]
    assert ids(list_chats(stack, alice)) == [two["id"]]
    got = get_chat(stack, alice, one["id"])
    assert got["created_at"] == 1700000000 and got["updated_at"] == 1700000001

    expect_422(stack.post(f"{API}/import", alice["token"], json={}), loc=["body", "chats"], type_="missing")
    expect_422(stack.post(f"{API}/import", alice["token"], json={"chats": "x"}), loc=["body", "chats"])
    expect_422(stack.post(f"{API}/import", alice["token"], json={"chats": [{"meta": {}}]}),
               loc=["body", "chats", 0, "chat"], type_="missing")
    assert len(list_chats(stack, alice, include_pinned="true")) == 2


# --------------------------------------------------------------------------------------------------
# Admin routes and export


def test_admin_routes(stack, admin, make_user):
    alice, bob = make_user(), make_user()
    a1 = create_chat(stack, alice, sample_chat("Alice one"))
    a2 = create_chat(stack, alice, sample_chat("Alice archived"))
    expect_ok(stack.post(f"{API}/{a2['id']}/archive", alice["token"]))
    b1 = create_chat(stack, bob, sample_chat("Bob one"))

    listed = assert_items(expect_ok(stack.get(f"{API}/list/user/{alice['id']}", admin["token"])))
    assert set(ids(listed)) == {a1["id"], a2["id"]}
    assert all(i["archived"] is False for i in listed)
    assert ids(assert_items(expect_ok(stack.get(f"{API}/list/user/{bob['id']}", admin["token"])))) == [b1["id"]]
    assert ids(assert_items(expect_ok(stack.get(f"{API}/list/user/{alice['id']}", admin["token"],
                                                params={"query": "archived"})))) == [a2["id"]]
    assert expect_ok(stack.get(f"{API}/list/user/{uuid.uuid4()}", admin["token"])) == []
    expect_error(stack.get(f"{API}/list/user/{alice['id']}", alice["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.get(f"{API}/list/user/{bob['id']}", alice["token"]), 401, ACCESS_PROHIBITED)

    everything = expect_ok(stack.get(f"{API}/all/db", admin["token"], timeout=120))
    assert isinstance(everything, list)
    for c in everything:
        assert list(c.keys()) == CHAT_KEYS
    assert {a1["id"], a2["id"], b1["id"]} <= set(ids(everything))
    expect_error(stack.get(f"{API}/all/db", alice["token"]), 401, ACCESS_PROHIBITED)


def test_export_all_ndjson(stack, make_user):
    alice, bob = make_user(), make_user()
    r = stack.get(f"{API}/all", bob["token"])
    assert r.status_code == 200, describe(r)
    assert r.headers.get("content-type", "").startswith("application/x-ndjson"), describe(r)
    assert r.text.strip() == ""

    a1 = create_chat(stack, alice, sample_chat("Export one"))
    a2 = create_chat(stack, alice, empty_chat("Export two"))
    expect_ok(stack.post(f"{API}/{a2['id']}/archive", alice["token"]))
    r = stack.get(f"{API}/all", alice["token"])
    assert r.status_code == 200, describe(r)
    assert r.headers.get("content-type", "").startswith("application/x-ndjson"), describe(r)
    assert r.text.endswith("\n"), describe(r)
    lines = r.text.splitlines()
    assert len(lines) == 2, describe(r)
    rows = [json.loads(line) for line in lines]
    for row in rows:
        assert_chat_response(row)
    assert {row["id"] for row in rows} == {a1["id"], a2["id"]}
    assert next(row for row in rows if row["id"] == a2["id"])["archived"] is True
    assert next(row for row in rows if row["id"] == a1["id"])["chat"]["history"] == a1["chat"]["history"]


# --------------------------------------------------------------------------------------------------
# User deletion


def test_deleted_users_history_goes(stack, admin, make_user):
    alice, bob = make_user(), make_user()
    folder = create_folder(stack, bob)
    c1 = create_chat(stack, bob, sample_chat("Bob's chat"), folder_id=folder["id"])
    c2 = create_chat(stack, bob, sample_chat("Bob's other chat"))
    add_tag(stack, bob, c2["id"], "Bob Tag")
    sid = expect_ok(stack.post(f"{API}/{c2['id']}/share", bob["token"]))["share_id"]
    expect_ok(stack.post(f"{API}/shared/{c2['id']}/access/update", bob["token"], json={
        "access_grants": [{"principal_type": "user", "principal_id": alice["id"], "permission": "read"}]}))
    assert expect_ok(stack.get(f"{API}/share/{sid}", alice["token"]))["id"] == sid
    mine = create_chat(stack, alice, sample_chat("Alice stays"))

    def counts() -> dict:
        return {table: int(pg(stack, f"SELECT count(*) FROM chat.{table} WHERE user_id = '{bob['id']}'"))
                for table in ("chats", "folders", "tags", "shared_chats")}

    assert counts() == {"chats": 2, "folders": 1, "tags": 1, "shared_chats": 1}
    assert set(ids(expect_ok(stack.get(f"{API}/list/user/{bob['id']}", admin["token"])))) == {c1["id"], c2["id"]}

    assert expect_ok(stack.delete(f"/api/v1/users/{bob['id']}", admin["token"])) is True
    assert eventually(lambda: expect_ok(stack.get(f"{API}/list/user/{bob['id']}", admin["token"])) == [],
                      timeout=10), expect_ok(stack.get(f"{API}/list/user/{bob['id']}", admin["token"]))
    assert eventually(lambda: counts() == {"chats": 0, "folders": 0, "tags": 0, "shared_chats": 0},
                      timeout=10), counts()
    r = stack.get(f"{API}/share/{sid}", alice["token"])
    assert r.status_code == 401, describe(r)
    assert ids(list_chats(stack, alice)) == [mine["id"]]


# --------------------------------------------------------------------------------------------------
# A user with 10,000 chats


def test_ten_thousand_chats(stack, make_user):
    alice = make_user()
    total, batch = 10_000, 500
    needle = "quokka" + uuid.uuid4().hex[:8]
    special = 4321
    base = 1700000000
    for start in range(0, total, batch):
        chats = []
        for i in range(start, start + batch):
            title = f"Bulk chat {i:05d}" + (f" about {needle}" if i == special else "")
            chats.append({"chat": {"title": title, "history": {"messages": {}, "currentId": None}},
                          "created_at": base + i, "updated_at": base + i})
        r = stack.post(f"{API}/import", alice["token"], json={"chats": chats}, timeout=180)
        assert r.status_code == 200, describe(r)
        assert len(r.json()) == batch

    page1 = list_chats(stack, alice, page=1)
    assert len(page1) == 60
    assert page1[0]["title"] == f"Bulk chat {total - 1:05d}" and page1[0]["updated_at"] == base + total - 1
    assert [i["updated_at"] for i in page1] == sorted((i["updated_at"] for i in page1), reverse=True)
    page2 = list_chats(stack, alice, page=2)
    assert len(page2) == 60 and page2[0]["updated_at"] == base + total - 61
    last = list_chats(stack, alice, page=167)
    assert len(last) == 40
    assert last[-1]["title"] == "Bulk chat 00000"
    assert list_chats(stack, alice, page=168) == []
    assert expect_ok(stack.get(f"{API}/archived/count", alice["token"])) == 0

    found = assert_items(expect_ok(stack.get(f"{API}/search", alice["token"], params={"text": needle}, timeout=60)))
    assert len(found) == 1, found
    assert found[0]["title"] == f"Bulk chat {special:05d} about {needle}"
    assert found[0]["snippet"] is None


# --------------------------------------------------------------------------------------------------
# Bad input: other users' chats and unknown ids on every route that takes a chat id


FOREIGN_ROUTES = [
    # name, method, path template, JSON body (None: no body), status, detail
    ("get", "GET", "/{id}", None, 401, NOT_FOUND),
    ("update", "POST", "/{id}", {"chat": {"title": "Hijacked"}}, 401, ACCESS_PROHIBITED),
    ("edit_message", "POST", "/{id}/messages/m1", {"content": "hijacked"}, 401, ACCESS_PROHIBITED),
    ("delete_message", "DELETE", "/{id}/messages/m1", None, 401, ACCESS_PROHIBITED),
    ("message_event", "POST", "/{id}/messages/m1/event", {"type": "replace", "data": {"content": "hijacked"}}, 401,
     ACCESS_PROHIBITED),
    ("params", "PATCH", "/{id}/params", {"temperature": 2}, 401, ACCESS_PROHIBITED),
    ("delete", "DELETE", "/{id}", None, 404, NOT_FOUND),
    ("pinned", "GET", "/{id}/pinned", None, 401, DEFAULT),
    ("pin", "POST", "/{id}/pin", None, 401, DEFAULT),
    ("archive", "POST", "/{id}/archive", None, 401, DEFAULT),
    ("folder", "POST", "/{id}/folder", {"folder_id": None}, 401, DEFAULT),
    ("unread", "POST", "/{id}/unread", None, 404, NOT_FOUND),
    ("get_tags", "GET", "/{id}/tags", None, 401, NOT_FOUND),
    ("add_tag", "POST", "/{id}/tags", {"name": "hijacked"}, 401, DEFAULT),
    ("remove_tag", "DELETE", "/{id}/tags", {"name": "Keep"}, 401, NOT_FOUND),
    ("share", "POST", "/{id}/share", None, 401, ACCESS_PROHIBITED),
    ("unshare", "DELETE", "/{id}/share", None, 401, ACCESS_PROHIBITED),
    ("clone", "POST", "/{id}/clone", {}, 401, DEFAULT),
    ("access_update", "POST", "/shared/{id}/access/update", {"access_grants": []}, 404, NOT_FOUND),
    ("access_get", "GET", "/shared/{id}/access", None, 404, NOT_FOUND),
]


def call_route(stack, token, method, template, chat_id, body):
    kw = {} if body is None else {"json": body}
    return stack.request(method, API + template.replace("{id}", chat_id), token, **kw)


def check_routes(stack, token, chat_id) -> list[str]:
    problems = []
    for name, method, template, body, status, detail in FOREIGN_ROUTES:
        r = call_route(stack, token, method, template, chat_id, body)
        ok = r.status_code == status and r.headers.get("content-type", "").startswith("application/json")
        if ok:
            try:
                ok = r.json().get("detail") == detail
            except ValueError:
                ok = False
        if not ok:
            problems.append(f"{name}: expected {status} {detail!r}; got {describe(r)}")
    return problems


def test_other_users_chat_is_out_of_reach(stack, make_user):
    alice, bob = make_user(), make_user()
    c = create_chat(stack, alice)
    add_tag(stack, alice, c["id"], "Keep")
    before = get_chat(stack, alice, c["id"])

    problems = check_routes(stack, bob["token"], c["id"])
    assert not problems, "\n".join(problems)

    after = get_chat(stack, alice, c["id"])
    assert after == before
    assert expect_ok(stack.get(f"{API}/shared/{c['id']}/access", alice["token"])) == []
    assert expect_ok(stack.get(f"{API}/shared", alice["token"])) == []
    assert list_chats(stack, bob, include_pinned="true", include_folders="true") == []
    assert all_tags(stack, bob) == []


def test_unknown_chat_ids(stack, make_user):
    alice = make_user()
    create_chat(stack, alice)
    for chat_id in (str(uuid.uuid4()), "no-such-chat"):
        problems = check_routes(stack, alice["token"], chat_id)
        assert not problems, "\n".join(problems)
    assert len(list_chats(stack, alice)) == 1


MALFORMED = ['{"chat": ', "not json", "{'single': 'quotes'}", '{"a": 1,}', "[1, 2"]

# path template, bodies that must give 422 with (loc, type or None)
BODY_ROUTES = [
    ("POST", "/new", [({}, ["body", "chat"], "missing"), ({"chat": "x"}, ["body", "chat"], "dict_type"),
                      ({"chat": {}, "variables": "x"}, ["body", "variables"], None),
                      ({"chat": {}, "folder_id": 5}, ["body", "folder_id"], None)]),
    ("POST", "/{id}", [({}, ["body", "chat"], "missing"), ({"chat": 5}, ["body", "chat"], "dict_type")]),
    ("POST", "/{id}/messages/m1", [({"content": 5}, ["body", "content"], None)]),
    ("POST", "/{id}/messages/m1/event", [({"data": {}}, ["body", "type"], "missing"),
                                         ({"type": "x"}, ["body", "data"], "missing"),
                                         ({"type": "x", "data": "y"}, ["body", "data"], None)]),
    ("POST", "/{id}/tags", [({}, ["body", "name"], "missing"), ({"name": 5}, ["body", "name"], None)]),
    ("DELETE", "/{id}/tags", [({}, ["body", "name"], "missing")]),
    ("POST", "/tags", [({}, ["body", "name"], "missing"), ({"name": ["a"]}, ["body", "name"], None)]),
    ("POST", "/{id}/folder", [({"folder_id": 5}, ["body", "folder_id"], None)]),
    ("POST", "/{id}/share", [({"share_mode": "bogus"}, ["body", "share_mode"], None)]),
    ("POST", "/import", [({}, ["body", "chats"], "missing"), ({"chats": {"a": 1}}, ["body", "chats"], None)]),
    ("POST", "/shared/{id}/access/update", [({}, ["body", "access_grants"], "missing"),
                                            ({"access_grants": "x"}, ["body", "access_grants"], None)]),
]


@pytest.mark.parametrize("route", BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
def test_malformed_bodies(stack, make_user, route):
    method, template, bad_bodies = route
    alice = make_user()
    c = create_chat(stack, alice)
    path = API + template.replace("{id}", c["id"])
    for raw in MALFORMED:
        r = stack.request(method, path, alice["token"], data=raw, headers={"Content-Type": "application/json"})
        detail = expect_422(r)
        assert detail[0]["type"] == "json_invalid", describe(r)
        assert detail[0]["loc"][0] == "body", describe(r)
    for body, loc, type_ in bad_bodies:
        expect_422(stack.request(method, path, alice["token"], json=body), loc=loc, type_=type_)
    # Nothing changed.
    got = get_chat(stack, alice, c["id"])
    assert got["title"] == "First chat" and got["share_id"] is None and got["meta"] == {}
    assert got["chat"]["history"] == c["chat"]["history"]
    assert ids(list_chats(stack, alice)) == [c["id"]]
