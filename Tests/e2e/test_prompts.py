"""Prompts (/api/v1/prompts) through the gateway: the real 0.12.4 shapes (PromptModel, PromptAccessResponse,
PromptAccessListResponse, PromptHistoryModel), who may create, read and write, the command rule, lists, tags and
paging, and the version history with its diff (checked against Python's own difflib, which the original uses).

Facts pinned from the 0.12.4 source (routers/prompts.py, models/prompts.py, models/prompt_history.py): seconds
timestamps; creating needs `workspace.prompts` (or `_import`) unless admin, else 401 "401 Unauthorized"; a taken
command is 400; another user's prompt is 404 on get and 401 on writes and history; `/list` pages by 30 with
`total`; `/` lists active prompts only; history entries on create and on changes of name, command, content or
tags; the production version cannot be deleted.
"""

from __future__ import annotations

import difflib
import uuid

from stacklib import expect_422, expect_error, expect_ok

API = "/api/v1/prompts"
PROMPT_KEYS = ["id", "command", "user_id", "name", "content", "data", "meta", "tags", "is_active", "version_id",
               "created_at", "updated_at", "access_grants"]
HISTORY_KEYS = ["id", "prompt_id", "parent_id", "snapshot", "user_id", "commit_message", "created_at"]
NOT_FOUND = "We could not find what you're looking for :/"
PROHIBITED = ("You do not have permission to access this resource. Please contact your administrator for "
              "assistance.")
TAKEN = "Uh-oh! This command is already registered. Please choose another command string."
AUDIENCE = "You do not have permission to share with the requested audience"


def grant_permissions(stack, admin, user, permissions: dict) -> str:
    """Puts `user` in a new group carrying `permissions`; returns the group id."""
    group = expect_ok(stack.post("/api/v1/groups/create", admin["token"], json={
        "name": f"g-{uuid.uuid4().hex[:8]}", "description": "perms", "permissions": permissions}))
    expect_ok(stack.post(f"/api/v1/groups/id/{group['id']}/users/add", admin["token"], json={"user_ids": [user["id"]]}))
    return group["id"]


def command() -> str:
    return f"cmd-{uuid.uuid4().hex[:10]}"


def create(stack, user, **fields) -> dict:
    body = {"command": command(), "name": "Summarise", "content": "Summarise this:\n{{CLIPBOARD}}", **fields}
    return expect_ok(stack.post(f"{API}/create", user["token"], json=body))


def test_create_get_and_shapes(stack, admin, make_user):
    boss = make_user(role="admin")
    prompt = create(stack, boss, tags=["writing", "Work"], data={"x": 1})
    assert list(prompt) == PROMPT_KEYS
    assert prompt["user_id"] == boss["id"] and prompt["is_active"] is True and prompt["access_grants"] == []
    assert prompt["data"] == {"x": 1} and prompt["meta"] == {} and prompt["tags"] == ["writing", "Work"]
    assert 10**9 < prompt["created_at"] < 10**11 and prompt["updated_at"] == prompt["created_at"]
    assert prompt["version_id"]

    got = expect_ok(stack.get(f"{API}/id/{prompt['id']}", boss["token"]))
    assert list(got) == PROMPT_KEYS + ["user", "write_access"]
    assert got["user"] is None and got["write_access"] is True and got["content"] == prompt["content"]

    # The command is taken, exactly as sent (case-sensitive).
    expect_error(stack.post(f"{API}/create", boss["token"], json={
        "command": prompt["command"], "name": "x", "content": "y"}), 400, TAKEN)
    other = create(stack, boss, command=prompt["command"].upper())
    assert other["command"] == prompt["command"].upper()

    # One history entry, the production version, with the full snapshot.
    entries = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history", boss["token"]))
    assert len(entries) == 1 and entries[0]["id"] == prompt["version_id"]
    assert list(entries[0]) == HISTORY_KEYS + ["user"]
    assert entries[0]["commit_message"] == "Initial version" and entries[0]["parent_id"] is None
    assert entries[0]["user"] == {"id": boss["id"], "name": boss["name"], "role": "admin", "email": boss["email"]}
    assert list(entries[0]["snapshot"]) == ["name", "content", "command", "data", "meta", "tags", "access_grants"]


def test_who_may_create_read_and_write(stack, admin, make_user):
    alice, bob, pending = make_user(), make_user(), make_user(role="pending")
    # Users need workspace.prompts; pending users are refused before that.
    expect_error(stack.post(f"{API}/create", bob["token"], json={"command": command(), "name": "n", "content": "c"}),
                 401, "401 Unauthorized")
    expect_error(stack.get(f"{API}/", pending["token"]), 401, PROHIBITED)
    expect_error(stack.get(f"{API}/list", pending["token"]), 401, PROHIBITED)
    grant_permissions(stack, admin, alice, {"workspace": {"prompts": True}})
    mine = create(stack, alice, access_grants=[{"principal_type": "user", "principal_id": bob["id"], "permission": "read"}])
    assert mine["access_grants"] == [], "sharing needs sharing.prompts; the grant is dropped"

    # Bob cannot see or touch it: 404 on get, 401 on writes and history.
    expect_error(stack.get(f"{API}/id/{mine['id']}", bob["token"]), 404, NOT_FOUND)
    expect_error(stack.post(f"{API}/id/{mine['id']}/update", bob["token"], json={
        "command": mine["command"], "name": "n", "content": "c"}), 401, PROHIBITED)
    expect_error(stack.post(f"{API}/id/{mine['id']}/toggle", bob["token"]), 401, PROHIBITED)
    expect_error(stack.delete(f"{API}/id/{mine['id']}/delete", bob["token"]), 401, PROHIBITED)
    expect_error(stack.get(f"{API}/id/{mine['id']}/history", bob["token"]), 401, PROHIBITED)
    assert mine["id"] not in [p["id"] for p in expect_ok(stack.get(f"{API}/", bob["token"]))]
    expect_error(stack.post(f"{API}/id/{mine['id']}/access/update", alice["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": bob["id"], "permission": "read"}]}), 403, AUDIENCE)

    # An admin reads and shares anything; a read grant lets bob read but not write.
    expect_ok(stack.get(f"{API}/id/{mine['id']}", admin["token"]))
    shared = expect_ok(stack.post(f"{API}/id/{mine['id']}/access/update", admin["token"], json={"access_grants": [
        {"principal_type": "user", "principal_id": bob["id"], "permission": "read"},
        {"principal_type": "anyone", "principal_id": "*", "permission": "read"}][:1]}))
    assert [(g["principal_type"], g["principal_id"], g["permission"]) for g in shared["access_grants"]] == [
        ("user", bob["id"], "read")]
    expect_error(stack.post(f"{API}/id/{mine['id']}/access/update", admin["token"], json={"access_grants": [
        {"principal_type": "anyone", "principal_id": "*", "permission": "read"}]}), 403, AUDIENCE)
    got = expect_ok(stack.get(f"{API}/id/{mine['id']}", bob["token"]))
    assert got["write_access"] is False
    assert mine["id"] in [p["id"] for p in expect_ok(stack.get(f"{API}/", bob["token"]))]
    assert len(expect_ok(stack.get(f"{API}/id/{mine['id']}/history", bob["token"]))) == 1
    expect_error(stack.post(f"{API}/id/{mine['id']}/update/meta", bob["token"], json={
        "name": "n", "command": mine["command"]}), 401, PROHIBITED)

    # Unknown ids.
    expect_error(stack.get(f"{API}/id/nope", alice["token"]), 404, NOT_FOUND)
    expect_error(stack.post(f"{API}/id/nope/toggle", alice["token"]), 404, NOT_FOUND)
    expect_error(stack.get(f"{API}/id/{mine['id']}/history/nope", alice["token"]), 404, NOT_FOUND)


def test_bad_bodies(stack, admin):
    expect_422(stack.post(f"{API}/create", admin["token"], json={"name": "n", "content": "c"}), ["body", "command"],
               "missing")
    expect_422(stack.post(f"{API}/create", admin["token"], json={"command": "c", "name": "n", "content": 5}),
               ["body", "content"])
    expect_422(stack.post(f"{API}/create", admin["token"], json={"command": command(), "name": "n", "content": "c",
                                                                  "tags": "notalist"}), ["body", "tags"])
    r = stack.request("POST", f"{API}/create", admin["token"], data="{not json",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    prompt = create(stack, admin)
    expect_422(stack.get(f"{API}/id/{prompt['id']}/history/diff", admin["token"], params={"from_id": "x"}),
               ["query", "to_id"], "missing")
    expect_error(stack.post(f"{API}/id/{prompt['id']}/update/version", admin["token"], json={"version_id": "nope"}),
                 400, "Something went wrong :/")
    # Nothing was harmed.
    assert expect_ok(stack.get(f"{API}/id/{prompt['id']}", admin["token"]))["content"] == prompt["content"]


def test_lists_query_tags_and_pages(stack, admin, make_user):
    carol = make_user()
    grant_permissions(stack, admin, carol, {"workspace": {"prompts": True}})
    word = uuid.uuid4().hex[:8]
    made = [create(stack, carol, name=f"{word} {i:02d}", tags=["Alpha"] if i % 2 else ["beta"]) for i in range(33)]
    page1 = expect_ok(stack.get(f"{API}/list", carol["token"], params={"query": word}))
    assert page1["total"] == 33 and len(page1["items"]) == 30
    assert list(page1["items"][0]) == PROMPT_KEYS + ["user", "write_access"]
    assert page1["items"][0]["user"]["id"] == carol["id"] and page1["items"][0]["write_access"] is True
    page2 = expect_ok(stack.get(f"{API}/list", carol["token"], params={"query": word, "page": 2}))
    assert len(page2["items"]) == 3 and page2["total"] == 33
    assert expect_ok(stack.get(f"{API}/list", carol["token"], params={"query": word, "page": 3})) == {
        "items": [], "total": 33}
    named = expect_ok(stack.get(f"{API}/list", carol["token"], params={
        "query": word, "order_by": "name", "direction": "asc"}))
    assert [p["name"] for p in named["items"]] == sorted(p["name"] for p in made)[:30]
    tagged = expect_ok(stack.get(f"{API}/list", carol["token"], params={"query": word, "tag": "alpha"}))
    assert tagged["total"] == 16
    # The owner's name finds their prompts too.
    by_owner = expect_ok(stack.get(f"{API}/list", carol["token"], params={"query": carol["name"]}))
    assert by_owner["total"] >= 33
    assert expect_ok(stack.get(f"{API}/list", carol["token"], params={"view_option": "shared", "query": word}))[
        "total"] == 0
    assert {"Alpha", "beta"} <= set(expect_ok(stack.get(f"{API}/tags", carol["token"])))

    # Toggled off: still in /list, gone from / and its tags.
    off = expect_ok(stack.post(f"{API}/id/{made[0]['id']}/toggle", carol["token"]))
    assert off["is_active"] is False
    assert made[0]["id"] not in [p["id"] for p in expect_ok(stack.get(f"{API}/", carol["token"]))]
    assert expect_ok(stack.get(f"{API}/list", carol["token"], params={"query": word}))["total"] == 33


def test_updates_history_versions_and_diff(stack, admin):
    prompt = create(stack, admin, content="line one\nline two\nline three\n")
    first = prompt["version_id"]
    # A data-only change makes no history entry.
    same = expect_ok(stack.post(f"{API}/id/{prompt['id']}/update", admin["token"], json={
        "command": prompt["command"], "name": prompt["name"], "content": prompt["content"], "data": {"k": 1}}))
    assert same["version_id"] == first and same["data"] == {"k": 1}
    # A content change is a new production version whose parent is the first.
    new_content = "line one\nline 2\nline three\nline four"
    second = expect_ok(stack.post(f"{API}/id/{prompt['id']}/update", admin["token"], json={
        "command": prompt["command"], "name": "Renamed", "content": new_content, "commit_message": "edit"}))
    assert second["version_id"] != first and second["content"] == new_content and second["name"] == "Renamed"
    entries = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history", admin["token"]))
    assert [e["id"] for e in entries] == [second["version_id"], first]
    assert entries[0]["parent_id"] == first and entries[0]["commit_message"] == "edit"
    # A draft keeps the live prompt and the production version.
    draft = expect_ok(stack.post(f"{API}/id/{prompt['id']}/update", admin["token"], json={
        "command": prompt["command"], "name": "Draft", "content": "draft text", "is_production": False}))
    assert draft["content"] == new_content and draft["version_id"] == second["version_id"]
    entries = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history", admin["token"]))
    assert len(entries) == 3 and entries[0]["snapshot"]["content"] == "draft text"

    one = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history/{first}", admin["token"]))
    assert list(one) == HISTORY_KEYS and one["snapshot"]["content"] == prompt["content"]

    diff = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history/diff", admin["token"], params={
        "from_id": first, "to_id": second["version_id"]}))
    assert list(diff) == ["from_id", "to_id", "from_snapshot", "to_snapshot", "content_diff", "line_endings_only",
                          "name_changed"]
    expected = list(difflib.unified_diff(prompt["content"].splitlines(), new_content.splitlines(),
                                         fromfile=f"v{first[:8]}", tofile=f"v{second['version_id'][:8]}", lineterm=""))
    assert diff["content_diff"] == expected and diff["name_changed"] is True and diff["line_endings_only"] is False

    # Back to the first version: name and content return, the command stays.
    back = expect_ok(stack.post(f"{API}/id/{prompt['id']}/update/version", admin["token"], json={"version_id": first}))
    assert back["version_id"] == first and back["content"] == prompt["content"] and back["name"] == prompt["name"]
    expect_error(stack.delete(f"{API}/id/{prompt['id']}/history/{first}", admin["token"]), 400,
                 "Cannot delete the active production version")
    # Deleting the middle entry hands its child to its parent.
    assert expect_ok(stack.delete(f"{API}/id/{prompt['id']}/history/{second['version_id']}", admin["token"])) is True
    entries = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history", admin["token"]))
    assert [e["parent_id"] for e in entries] == [first, None]

    meta = expect_ok(stack.post(f"{API}/id/{prompt['id']}/update/meta", admin["token"], json={
        "name": "Meta", "command": prompt["command"] + "-x", "tags": ["t"]}))
    assert meta["name"] == "Meta" and meta["tags"] == ["t"] and meta["version_id"] == first
    assert len(expect_ok(stack.get(f"{API}/id/{prompt['id']}/history", admin["token"]))) == 2

    assert expect_ok(stack.delete(f"{API}/id/{prompt['id']}/delete", admin["token"])) is True
    expect_error(stack.get(f"{API}/id/{prompt['id']}", admin["token"]), 404, NOT_FOUND)


def test_diff_matches_python_difflib(stack, admin):
    """Our diff against the reference implementation, on texts that exercise hunks, context and line endings."""
    texts = [
        "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm",
        "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nK\nl\nm\nn",
        "",
        "only\r\nwindows\r\nlines",
        "only\nwindows\nlines\n",
        "\n".join(f"row {i % 7}" for i in range(260)),
        "\n".join(f"row {i % 5}" for i in range(250)),
        "x\u2028y\x0bz\x85w",
    ]
    prompt = create(stack, admin, content=texts[0])
    versions = [prompt["version_id"]]
    for i, text in enumerate(texts[1:], start=1):
        updated = expect_ok(stack.post(f"{API}/id/{prompt['id']}/update", admin["token"], json={
            "command": prompt["command"], "name": f"v{i}", "content": text}))
        versions.append(updated["version_id"])
    for i in range(len(texts)):
        for j in range(len(texts)):
            diff = expect_ok(stack.get(f"{API}/id/{prompt['id']}/history/diff", admin["token"], params={
                "from_id": versions[i], "to_id": versions[j]}))
            expected = list(difflib.unified_diff(texts[i].splitlines(), texts[j].splitlines(),
                                                 fromfile=f"v{versions[i][:8]}", tofile=f"v{versions[j][:8]}",
                                                 lineterm=""))
            assert diff["content_diff"] == expected, (i, j)
            assert diff["line_endings_only"] == (expected == [] and texts[i] != texts[j])
