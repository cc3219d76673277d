"""Folders: /api/v1/folders/* — create, list, get, rename and meta/data merge, move, expand, delete (with and
without the chats inside), unread counts, mark read, sharing stubs; other users' folders and bad input.

Shapes and detail strings are those of Open WebUI 0.12.4 (routers/folders.py and the recorded samples). Folder
list order is unspecified on the real server, so lists are compared as sets. Every test uses its own new users.
"""

from __future__ import annotations

import time
import uuid

from stacklib import (
    ACCESS_PROHIBITED, NOT_AUTHENTICATED, NOT_FOUND, describe, expect_422, expect_error, expect_ok, sample_chat,
)

API = "/api/v1/folders"
CHATS = "/api/v1/chats"
EXISTS = "[ERROR: Folder already exists]"
INTO_ITSELF = "[ERROR: Cannot move a folder into itself or one of its subfolders]"
UPDATE_ERROR = "[ERROR: Error updating folder]"
AUDIENCE = "You do not have permission to share with the requested audience"

FOLDER_KEYS = ["id", "parent_id", "user_id", "name", "items", "meta", "data", "is_expanded", "created_at",
               "updated_at"]
LIST_KEYS = ["id", "name", "meta", "parent_id", "is_expanded", "unread_count", "created_at", "updated_at"]
READ_KEYS = {"folder_id", "folder_ids", "updated_count", "folder_unread_counts"}


# --------------------------------------------------------------------------------------------------
# Helpers


def assert_folder(f: dict) -> dict:
    assert isinstance(f, dict), f
    assert list(f.keys()) == FOLDER_KEYS, list(f.keys())
    assert f["items"] is None, f
    assert isinstance(f["created_at"], int) and isinstance(f["updated_at"], int), f
    assert isinstance(f["is_expanded"], bool), f
    return f


def create_folder(stack, user, name: str | None = None, parent_id: str | None = None, **extra) -> dict:
    body = {"name": name if name is not None else "Folder " + uuid.uuid4().hex[:8], **extra}
    if parent_id is not None:
        body["parent_id"] = parent_id
    f = assert_folder(expect_ok(stack.post(f"{API}/", user["token"], json=body)))
    assert f["user_id"] == user["id"] and f["name"] == body["name"] and f["parent_id"] == parent_id
    return f


def list_folders(stack, user) -> dict:
    """The caller's folders by id (the list order is unspecified)."""
    rows = expect_ok(stack.get(f"{API}/", user["token"]))
    assert isinstance(rows, list), rows
    for row in rows:
        assert list(row.keys()) == LIST_KEYS, list(row.keys())
        assert isinstance(row["unread_count"], int), row
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), rows
    return by_id


def get_folder(stack, user, fid: str) -> dict:
    f = expect_ok(stack.get(f"{API}/{fid}", user["token"]))
    assert list(f.keys()) == FOLDER_KEYS + ["access_grants", "write_access"], list(f.keys())
    return f


def create_chat(stack, user, title: str, folder_id: str | None = None) -> dict:
    body = {"chat": sample_chat(title)}
    if folder_id is not None:
        body["folder_id"] = folder_id
    c = expect_ok(stack.post(f"{CHATS}/new", user["token"], json=body))
    assert c["folder_id"] == folder_id, c
    return c


def import_unread_chat(stack, user, title: str, folder_id: str) -> dict:
    """A chat in the folder whose updated_at lies after its last_read_at (import sets last_read_at to now)."""
    later = int(time.time()) + 100_000
    body = {"chats": [{"chat": sample_chat(title), "folder_id": folder_id, "created_at": later - 10,
                       "updated_at": later}]}
    c = expect_ok(stack.post(f"{CHATS}/import", user["token"], json=body))[0]
    assert c["folder_id"] == folder_id and c["updated_at"] == later, c
    return c


# --------------------------------------------------------------------------------------------------
# Create


def test_create_folder(stack, make_user):
    alice = make_user()
    before = int(time.time())
    f = create_folder(stack, alice, "Projects")
    uuid.UUID(f["id"])
    assert f["parent_id"] is None and f["meta"] is None and f["data"] is None and f["is_expanded"] is False
    assert f["created_at"] == f["updated_at"]
    assert before - 2 <= f["created_at"] <= int(time.time()) + 2

    g = create_folder(stack, alice, "Icons", meta={"icon": "📁", "color": "red"}, data={"system_prompt": "Be brief"})
    assert g["meta"] == {"icon": "📁", "color": "red"} and g["data"] == {"system_prompt": "Be brief"}


def test_folder_names_are_unique_per_parent(stack, make_user):
    alice, bob = make_user(), make_user()
    top = create_folder(stack, alice, "Projects")
    for name in ("Projects", "projects", "PROJECTS"):
        expect_error(stack.post(f"{API}/", alice["token"], json={"name": name}), 400, EXISTS)
    # The same name under another parent, or for another user, is fine.
    child = create_folder(stack, alice, "Projects", parent_id=top["id"])
    assert child["parent_id"] == top["id"]
    expect_error(stack.post(f"{API}/", alice["token"], json={"name": "projects", "parent_id": top["id"]}), 400, EXISTS)
    create_folder(stack, alice, "Projects", parent_id=child["id"])
    create_folder(stack, bob, "Projects")
    assert len([f for f in list_folders(stack, alice).values() if f["name"].lower() == "projects"]) == 3


def test_create_bad_bodies(stack, make_user):
    alice = make_user()
    for extra in ({"is_expanded": True}, {"items": []}, {"id": "mine"}, {"user_id": alice["id"]}):
        key = next(iter(extra))
        r = stack.post(f"{API}/", alice["token"], json={"name": "Extra " + key, **extra})
        expect_422(r, loc=["body", key], type_="extra_forbidden")
    expect_422(stack.post(f"{API}/", alice["token"], json={}), loc=["body", "name"], type_="missing")
    expect_422(stack.post(f"{API}/", alice["token"], json={"name": 5}), loc=["body", "name"])
    expect_422(stack.post(f"{API}/", alice["token"], json={"name": "x", "meta": "icon"}), loc=["body", "meta"])
    expect_422(stack.post(f"{API}/", alice["token"], json={"name": "x", "data": [1]}), loc=["body", "data"])
    for raw in ('{"name": ', "not json", '{"name": "a",}'):
        r = stack.post(f"{API}/", alice["token"], data=raw, headers={"Content-Type": "application/json"})
        assert expect_422(r)[0]["type"] == "json_invalid", describe(r)
    assert list_folders(stack, alice) == {}


def test_folders_need_a_verified_user(stack, make_user):
    pending = make_user(role="pending")
    expect_error(stack.get(f"{API}/"), 401, NOT_AUTHENTICATED)
    expect_error(stack.get(f"{API}/", pending["token"]), 401, ACCESS_PROHIBITED)
    expect_error(stack.post(f"{API}/", pending["token"], json={"name": "x"}), 401, ACCESS_PROHIBITED)


# --------------------------------------------------------------------------------------------------
# List and get


def test_list_folders(stack, make_user):
    alice, bob = make_user(), make_user()
    a = create_folder(stack, alice, "Alpha", meta={"icon": "⭐", "color": "blue"}, data={"k": "v"})
    b = create_folder(stack, alice, "Beta")
    c = create_folder(stack, alice, "Gamma", parent_id=a["id"], meta={"color": "green"})
    d = create_folder(stack, bob, "Bob's")

    rows = list_folders(stack, alice)
    assert set(rows) == {a["id"], b["id"], c["id"]}
    assert rows[a["id"]] == {"id": a["id"], "name": "Alpha", "meta": {"icon": "⭐"}, "parent_id": None,
                             "is_expanded": False, "unread_count": 0, "created_at": a["created_at"],
                             "updated_at": a["updated_at"]}
    assert rows[b["id"]]["meta"] is None
    assert rows[c["id"]]["meta"] == {"icon": None}
    assert rows[c["id"]]["parent_id"] == a["id"]
    assert set(list_folders(stack, bob)) == {d["id"]}


def test_get_folder(stack, make_user):
    alice, bob = make_user(), make_user()
    f = create_folder(stack, alice, "Mine", meta={"icon": "x"})
    got = get_folder(stack, alice, f["id"])
    assert got["access_grants"] == [] and got["write_access"] is True
    assert {k: got[k] for k in FOLDER_KEYS} == f
    expect_error(stack.get(f"{API}/{f['id']}", bob["token"]), 404, NOT_FOUND)
    expect_error(stack.get(f"{API}/{uuid.uuid4()}", alice["token"]), 404, NOT_FOUND)


# --------------------------------------------------------------------------------------------------
# Update


def test_rename(stack, make_user):
    alice, bob = make_user(), make_user()
    f = create_folder(stack, alice, "Drafts")
    create_folder(stack, alice, "Other")
    u = assert_folder(expect_ok(stack.post(f"{API}/{f['id']}/update", alice["token"], json={"name": "Renamed"})))
    assert u["id"] == f["id"] and u["name"] == "Renamed" and u["parent_id"] is None
    assert list_folders(stack, alice)[f["id"]]["name"] == "Renamed"

    expect_error(stack.post(f"{API}/{f['id']}/update", alice["token"], json={"name": "other"}), 400, EXISTS)
    # A case variant of its own name is no conflict.
    u = assert_folder(expect_ok(stack.post(f"{API}/{f['id']}/update", alice["token"], json={"name": "RENAMED"})))
    assert u["name"] == "RENAMED"
    # A sibling under another parent may share the name.
    parent = create_folder(stack, alice, "Parent")
    nested = create_folder(stack, alice, "Nested", parent_id=parent["id"])
    u = assert_folder(expect_ok(stack.post(f"{API}/{nested['id']}/update", alice["token"], json={"name": "Other"})))
    assert u["name"] == "Other" and u["parent_id"] == parent["id"]

    expect_error(stack.post(f"{API}/{f['id']}/update", bob["token"], json={"name": "Hijacked"}), 404, NOT_FOUND)
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/update", alice["token"], json={"name": "x"}), 404, NOT_FOUND)
    assert get_folder(stack, alice, f["id"])["name"] == "RENAMED"


def test_meta_and_data_merge(stack, make_user):
    alice = make_user()
    f = create_folder(stack, alice, "Merge", meta={"icon": "1"}, data={"a": 1, "b": {"x": 1}})
    u = assert_folder(expect_ok(stack.post(f"{API}/{f['id']}/update", alice["token"], json={
        "data": {"b": {"y": 2}, "c": 3}, "meta": {"color": "red"}})))
    assert u["name"] == "Merge"
    assert u["data"] == {"a": 1, "b": {"y": 2}, "c": 3}
    assert u["meta"] == {"icon": "1", "color": "red"}
    got = get_folder(stack, alice, f["id"])
    assert got["data"] == u["data"] and got["meta"] == u["meta"]
    u = assert_folder(expect_ok(stack.post(f"{API}/{f['id']}/update", alice["token"], json={"meta": {"icon": "2"}})))
    assert u["meta"] == {"icon": "2", "color": "red"}
    assert list_folders(stack, alice)[f["id"]]["meta"] == {"icon": "2"}

    for body in ({"name": None}, {"data": None}, {"meta": None}):
        expect_error(stack.post(f"{API}/{f['id']}/update", alice["token"], json=body), 400, UPDATE_ERROR)
    for key, value in (("parent_id", None), ("is_expanded", True), ("items", [])):
        expect_422(stack.post(f"{API}/{f['id']}/update", alice["token"], json={key: value}),
                   loc=["body", key], type_="extra_forbidden")
    expect_422(stack.post(f"{API}/{f['id']}/update", alice["token"], json={"data": "x"}), loc=["body", "data"])
    got = get_folder(stack, alice, f["id"])
    assert got["name"] == "Merge" and got["meta"] == {"icon": "2", "color": "red"}
    assert got["data"] == {"a": 1, "b": {"y": 2}, "c": 3}


def test_move_folder(stack, make_user):
    alice, bob = make_user(), make_user()
    a = create_folder(stack, alice, "A")
    b = create_folder(stack, alice, "B")
    a1 = create_folder(stack, alice, "A1", parent_id=a["id"])
    a1x = create_folder(stack, alice, "A1x", parent_id=a1["id"])
    url = f"{API}/{{}}/update/parent"

    m = assert_folder(expect_ok(stack.post(url.format(b["id"]), alice["token"], json={"parent_id": a["id"]})))
    assert m["id"] == b["id"] and m["parent_id"] == a["id"]
    assert list_folders(stack, alice)[b["id"]]["parent_id"] == a["id"]

    for target in (a["id"], a1["id"], a1x["id"]):
        expect_error(stack.post(url.format(a["id"]), alice["token"], json={"parent_id": target}), 400, INTO_ITSELF)
    expect_error(stack.post(url.format(a1["id"]), alice["token"], json={"parent_id": a1x["id"]}), 400, INTO_ITSELF)
    assert list_folders(stack, alice)[a["id"]]["parent_id"] is None

    m = assert_folder(expect_ok(stack.post(url.format(a1["id"]), alice["token"], json={"parent_id": None})))
    assert m["parent_id"] is None
    rows = list_folders(stack, alice)
    assert rows[a1["id"]]["parent_id"] is None and rows[a1x["id"]]["parent_id"] == a1["id"]

    # A folder of the same name under the target parent blocks the move.
    clash_top = create_folder(stack, alice, "Clash")
    clash_in_b = create_folder(stack, alice, "clash", parent_id=b["id"])
    expect_error(stack.post(url.format(clash_in_b["id"]), alice["token"], json={"parent_id": None}), 400, EXISTS)
    assert get_folder(stack, alice, clash_in_b["id"])["parent_id"] == b["id"]
    assert clash_top["parent_id"] is None

    # An empty body moves to the top level.
    m = assert_folder(expect_ok(stack.post(url.format(b["id"]), alice["token"], json={})))
    assert m["parent_id"] is None

    bobs = create_folder(stack, bob, "Bob's")
    expect_error(stack.post(url.format(a["id"]), bob["token"], json={"parent_id": bobs["id"]}), 404, NOT_FOUND)
    expect_error(stack.post(url.format(uuid.uuid4()), alice["token"], json={"parent_id": None}), 404, NOT_FOUND)
    assert get_folder(stack, alice, a["id"])["parent_id"] is None


def test_expanded(stack, make_user):
    alice, bob = make_user(), make_user()
    f = create_folder(stack, alice)
    url = f"{API}/{f['id']}/update/expanded"
    u = assert_folder(expect_ok(stack.post(url, alice["token"], json={"is_expanded": True})))
    assert u["is_expanded"] is True and u["id"] == f["id"]
    assert get_folder(stack, alice, f["id"])["is_expanded"] is True
    assert list_folders(stack, alice)[f["id"]]["is_expanded"] is True
    u = assert_folder(expect_ok(stack.post(url, alice["token"], json={"is_expanded": False})))
    assert u["is_expanded"] is False

    expect_422(stack.post(url, alice["token"], json={}), loc=["body", "is_expanded"], type_="missing")
    expect_422(stack.post(url, alice["token"], json={"is_expanded": "maybe"}), loc=["body", "is_expanded"])
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/update/expanded", alice["token"], json={"is_expanded": True}), 404,
                 NOT_FOUND)
    # Another user cannot expand it (the real server answers 200 null here; Skiff may say 404).
    r = stack.post(url, bob["token"], json={"is_expanded": True})
    assert r.status_code in (200, 404), describe(r)
    if r.status_code == 200:
        assert r.json() is None, describe(r)
    assert get_folder(stack, alice, f["id"])["is_expanded"] is False


# --------------------------------------------------------------------------------------------------
# Delete


def test_delete_folder_with_its_chats(stack, make_user):
    alice = make_user()
    parent = create_folder(stack, alice, "Parent")
    child = create_folder(stack, alice, "Child", parent_id=parent["id"])
    other = create_folder(stack, alice, "Other")
    in_parent = create_chat(stack, alice, "In parent", parent["id"])
    in_child = create_chat(stack, alice, "In child", child["id"])
    pinned = create_chat(stack, alice, "Pinned in child", child["id"])
    assert expect_ok(stack.post(f"{CHATS}/{pinned['id']}/pin", alice["token"]))["pinned"] is True
    elsewhere = create_chat(stack, alice, "In other", other["id"])
    loose = create_chat(stack, alice, "Loose")

    assert expect_ok(stack.delete(f"{API}/{parent['id']}", alice["token"])) is True
    for c in (in_parent, in_child, pinned):
        expect_error(stack.get(f"{CHATS}/{c['id']}", alice["token"]), 401, NOT_FOUND)
    for fid in (parent["id"], child["id"]):
        expect_error(stack.get(f"{API}/{fid}", alice["token"]), 404, NOT_FOUND)
    assert set(list_folders(stack, alice)) == {other["id"]}
    assert expect_ok(stack.get(f"{CHATS}/{elsewhere['id']}", alice["token"]))["folder_id"] == other["id"]
    assert expect_ok(stack.get(f"{CHATS}/{loose['id']}", alice["token"]))["folder_id"] is None
    listed = expect_ok(stack.get(f"{CHATS}/", alice["token"], params={"include_pinned": "true",
                                                                         "include_folders": "true"}))
    assert {c["id"] for c in listed} == {elsewhere["id"], loose["id"]}
    expect_error(stack.delete(f"{API}/{parent['id']}", alice["token"]), 404, NOT_FOUND)


def test_delete_folder_keeping_its_chats(stack, make_user):
    alice = make_user()
    parent = create_folder(stack, alice, "Parent")
    child = create_folder(stack, alice, "Child", parent_id=parent["id"])
    in_parent = create_chat(stack, alice, "In parent", parent["id"])
    in_child = create_chat(stack, alice, "In child", child["id"])

    r = stack.delete(f"{API}/{parent['id']}", alice["token"], params={"delete_contents": "false"})
    assert expect_ok(r) is True
    assert list_folders(stack, alice) == {}
    for c in (in_parent, in_child):
        got = expect_ok(stack.get(f"{CHATS}/{c['id']}", alice["token"]))
        assert got["folder_id"] is None
        assert got["updated_at"] == c["updated_at"]
    listed = expect_ok(stack.get(f"{CHATS}/", alice["token"]))
    assert {c["id"] for c in listed} == {in_parent["id"], in_child["id"]}


def test_delete_refusals(stack, make_user):
    alice, bob = make_user(), make_user()
    f = create_folder(stack, alice, "Keep me")
    c = create_chat(stack, alice, "Inside", f["id"])
    for value in ("maybe", ""):
        r = stack.delete(f"{API}/{f['id']}", alice["token"], params={"delete_contents": value})
        expect_422(r, loc=["query", "delete_contents"])
    expect_error(stack.delete(f"{API}/{uuid.uuid4()}", alice["token"]), 404, NOT_FOUND)
    # Another user may not delete it (the real server says 403 to a non-admin, Skiff may say 404).
    r = stack.delete(f"{API}/{f['id']}", bob["token"])
    assert r.status_code in (403, 404), describe(r)
    assert get_folder(stack, alice, f["id"])["name"] == "Keep me"
    assert expect_ok(stack.get(f"{CHATS}/{c['id']}", alice["token"]))["folder_id"] == f["id"]


# --------------------------------------------------------------------------------------------------
# Unread counts and mark read


def test_unread_counts_and_mark_read(stack, make_user):
    alice, bob = make_user(), make_user()
    parent = create_folder(stack, alice, "Parent")
    child = create_folder(stack, alice, "Child", parent_id=parent["id"])
    empty = create_folder(stack, alice, "Empty")
    create_chat(stack, alice, "Read in parent", parent["id"])  # created now: read
    import_unread_chat(stack, alice, "Unread in parent", parent["id"])
    import_unread_chat(stack, alice, "Unread in child", child["id"])

    rows = list_folders(stack, alice)
    assert rows[parent["id"]]["unread_count"] == 2  # its own plus its subfolder's
    assert rows[child["id"]]["unread_count"] == 1
    assert rows[empty["id"]]["unread_count"] == 0

    r = expect_ok(stack.post(f"{API}/{child['id']}/read", alice["token"]))
    assert set(r.keys()) == READ_KEYS, r
    assert r["folder_id"] == child["id"] and r["folder_ids"] == [child["id"]]
    assert r["updated_count"] == 1
    assert r["folder_unread_counts"] == {parent["id"]: 1, child["id"]: 0, empty["id"]: 0}
    rows = list_folders(stack, alice)
    assert rows[parent["id"]]["unread_count"] == 1 and rows[child["id"]]["unread_count"] == 0

    r = expect_ok(stack.post(f"{API}/{parent['id']}/read", alice["token"]))
    assert set(r.keys()) == READ_KEYS, r
    assert r["folder_id"] == parent["id"]
    assert sorted(r["folder_ids"]) == sorted([parent["id"], child["id"]])
    assert isinstance(r["updated_count"], int) and r["updated_count"] >= 1
    assert r["folder_unread_counts"] == {parent["id"]: 0, child["id"]: 0, empty["id"]: 0}
    assert all(row["unread_count"] == 0 for row in list_folders(stack, alice).values())

    expect_error(stack.post(f"{API}/{uuid.uuid4()}/read", alice["token"]), 404, NOT_FOUND)
    r = stack.post(f"{API}/{parent['id']}/read", bob["token"])
    assert r.status_code in (403, 404), describe(r)


# --------------------------------------------------------------------------------------------------
# Sharing (single-owner folders)


def test_shared_and_access(stack, make_user):
    alice, bob = make_user(), make_user()
    f = create_folder(stack, alice, "Private", meta={"icon": "🔒"})
    assert expect_ok(stack.get(f"{API}/shared", alice["token"])) == []

    r = expect_ok(stack.post(f"{API}/{f['id']}/access/update", alice["token"], json={"access_grants": []}))
    assert list(r.keys()) == FOLDER_KEYS + ["access_grants"], list(r.keys())
    assert r["access_grants"] == []
    assert {k: r[k] for k in FOLDER_KEYS} == f

    for grant in ({"principal_type": "user", "principal_id": bob["id"], "permission": "read"},
                  {"principal_type": "user", "principal_id": "*", "permission": "read"}):
        expect_error(stack.post(f"{API}/{f['id']}/access/update", alice["token"], json={"access_grants": [grant]}), 403,
                     AUDIENCE)
    expect_422(stack.post(f"{API}/{f['id']}/access/update", alice["token"], json={}),
               loc=["body", "access_grants"], type_="missing")
    expect_error(stack.post(f"{API}/{uuid.uuid4()}/access/update", alice["token"], json={"access_grants": []}), 404,
                 NOT_FOUND)
    r = stack.post(f"{API}/{f['id']}/access/update", bob["token"], json={"access_grants": []})
    assert r.status_code in (403, 404), describe(r)

    assert expect_ok(stack.get(f"{API}/shared", bob["token"])) == []
    expect_error(stack.get(f"{API}/{f['id']}", bob["token"]), 404, NOT_FOUND)
    assert get_folder(stack, alice, f["id"])["access_grants"] == []


def test_folder_chats_view(stack, make_user):
    alice = make_user()
    f = create_folder(stack, alice, "Work")
    c = create_chat(stack, alice, "Work chat", f["id"])
    r = expect_ok(stack.get(f"{API}/{f['id']}/shared/chats", alice["token"]))
    assert r["folder_permission"] == "write"
    assert [x["id"] for x in r["chats"]] == [c["id"]]
    assert r["chats"][0]["readonly"] is False and r["chats"][0]["user_id"] == alice["id"]
    assert "total" not in r
    r = expect_ok(stack.get(f"{API}/{f['id']}/shared/chats", alice["token"], params={"page": 1}))
    assert r["total"] == 1 and r["has_more"] is False
    expect_422(stack.get(f"{API}/{f['id']}/shared/chats", alice["token"], params={"page": 0}), loc=["query", "page"])
    expect_error(stack.get(f"{API}/{uuid.uuid4()}/shared/chats", alice["token"]), 404, NOT_FOUND)
